/* SPDX-License-Identifier: Apache-2.0 */
/* chatter.c — a test workload that writes numbered output lines over time, for following logs.
 *
 *   chatter COUNT INTERVAL_MS [BYTES]
 *
 * Prints COUNT lines (0: until SIGTERM) to stdout, "line N" padded with 'x' to BYTES characters (default: no
 * padding), sleeping INTERVAL_MS between them (0: no sleep), then "chatter done" and exits 0.  Every tenth line
 * goes to stderr instead, so that both streams are exercised.  SIGTERM ends it early with exit status 0. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void
on_term (int signo)
{
  (void)signo;
  stop = 1;
}

int
main (int argc, char **argv)
{
  if (argc < 3)
    {
      fprintf (stderr, "usage: chatter COUNT INTERVAL_MS [BYTES]\n");
      return 2;
    }
  long long count = atoll (argv[1]);
  long interval = atol (argv[2]);
  long bytes = argc > 3 ? atol (argv[3]) : 0;
  if (bytes < 0 || bytes > 1 << 20)
    bytes = 0;
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction (SIGTERM, &sa, NULL);

  char *pad = malloc ((size_t)bytes + 1);
  if (pad == NULL)
    return 1;
  memset (pad, 'x', (size_t)bytes);
  pad[bytes] = '\0';
  for (long long i = 1; !stop && (count == 0 || i <= count); i++)
    {
      FILE *out = i % 10 == 0 ? stderr : stdout;
      int n = fprintf (out, "line %lld ", i);
      fprintf (out, "%s\n", n < bytes ? pad + n : "");
      fflush (out);
      if (interval > 0)
        {
          struct timespec ts = { interval / 1000, (interval % 1000) * 1000000L };
          nanosleep (&ts, NULL);
        }
    }
  printf ("chatter done\n");
  free (pad);
  return 0;
}
