/* SPDX-License-Identifier: Apache-2.0 */
/* upcase-server.c — a test function for function_mode "persistent": one process that answers calls one after
 * another (the protocol of the README's "Function workloads"): reads `<length> <subject>\n` and length bytes of
 * payload from stdin, and answers `<status> <length>\n` and length bytes on stdout, the payload upper-cased (ASCII
 * letters only).  It ends when stdin does.
 *
 * Some payloads ask for something else, so that the tests can reach every outcome of a call:
 *   "fail"     answers status 3 with "failing on request";
 *   "subject"  answers the call's subject;
 *   "count"    answers how many calls this process has answered before this one (it is the same process);
 *   "log"      writes "logged on stderr" to stderr (the workload's log) and answers "ok";
 *   "crash"    exits 7 without answering;
 *   "sleep"    sleeps 60 s (past any test's function_timeout_s);
 *   "garbage"  answers with a line that is not a header.
 * Started with the argument `--nap`, it sleeps one second before each answer (the tests of concurrent calls). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
answer (int status, const char *data, size_t len)
{
  printf ("%d %zu\n", status, len);
  fwrite (data, 1, len, stdout);
  return fflush (stdout);
}

static int
is (const char *buf, size_t len, const char *word)
{
  return len == strlen (word) && memcmp (buf, word, len) == 0;
}

int
main (int argc, char **argv)
{
  int nap = argc > 1 && strcmp (argv[1], "--nap") == 0;
  char head[512];
  long served = 0;
  while (fgets (head, sizeof head, stdin) != NULL)
    {
      char subject[300];
      size_t len;
      if (sscanf (head, "%zu %299s", &len, subject) != 2)
        {
          fprintf (stderr, "upcase-server: malformed call header `%.100s`\n", head);
          return 2;
        }
      char *buf = malloc (len + 1);
      if (buf == NULL || fread (buf, 1, len, stdin) != len)
        {
          fprintf (stderr, "upcase-server: the payload of `%.100s` ended early\n", head);
          return 2;
        }
      if (nap)
        sleep (1);
      char text[64];
      if (is (buf, len, "fail"))
        answer (3, "failing on request", 18);
      else if (is (buf, len, "subject"))
        answer (0, subject, strlen (subject));
      else if (is (buf, len, "count"))
        answer (0, text, (size_t)snprintf (text, sizeof text, "%ld", served));
      else if (is (buf, len, "log"))
        {
          fputs ("logged on stderr\n", stderr);
          answer (0, "ok", 2);
        }
      else if (is (buf, len, "crash"))
        return 7;
      else if (is (buf, len, "sleep"))
        sleep (60);
      else if (is (buf, len, "garbage"))
        {
          fputs ("this is not a header\n", stdout);
          fflush (stdout);
        }
      else
        {
          for (size_t i = 0; i < len; i++)
            if (buf[i] >= 'a' && buf[i] <= 'z')
              buf[i] = (char)(buf[i] - 'a' + 'A');
          answer (0, buf, len);
        }
      free (buf);
      served++;
    }
  return 0;
}
