/* SPDX-License-Identifier: Apache-2.0 */
/* hostile.c — a test workload that attacks the resources a sandbox shares with its node.
 *
 *   hostile fds N      raises RLIMIT_NOFILE as far as it may, opens up to N descriptors, prints
 *                      "fds: opened K (stopped by ...)", then waits
 *   hostile agent      writes garbage into every descriptor of PID 1 (the agent) it can reach through
 *                      /proc/1/fd, prints "agent: wrote to K of M" with the errors met, then waits
 *   hostile flood      writes to stdout as fast as it can, in long lines, forever
 *
 * Each waits (so the test can check that the node and the neighbours keep working, then stop it) and ends
 * itself after 600 s as a safety net. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void
wait_forever (void)
{
  fflush (stdout);
  alarm (600);
  for (;;)
    pause ();
}

static void
open_fds (long want)
{
  struct rlimit rl;
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }
  long n = 0;
  int err = 0;
  while (n < want)
    {
      int fd = open ("/", O_RDONLY | O_DIRECTORY);
      if (fd < 0)
        {
          err = errno;
          break;
        }
      n++;
    }
  printf ("fds: opened %ld (stopped by %s)\n", n, err ? strerror (err) : "reaching the goal");
  wait_forever ();
}

static void
attack_agent (void)
{
  char junk[4096];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (char)(i * 131 + 7);
  int seen = 0, wrote = 0;
  DIR *d = opendir ("/proc/1/fd");
  if (d == NULL)
    printf ("agent: cannot list /proc/1/fd: %s\n", strerror (errno));
  else
    {
      struct dirent *e;
      while ((e = readdir (d)) != NULL)
        {
          if (e->d_name[0] == '.')
            continue;
          seen++;
          char path[300];
          snprintf (path, sizeof path, "/proc/1/fd/%s", e->d_name);
          int fd = open (path, O_WRONLY | O_NONBLOCK);
          if (fd < 0)
            {
              printf ("agent: open %s: %s\n", path, strerror (errno));
              continue;
            }
          if (write (fd, junk, sizeof junk) > 0)
            wrote++;
          close (fd);
        }
      closedir (d);
    }
  printf ("agent: wrote to %d of %d\n", wrote, seen);
  wait_forever ();
}

static void
flood (void)
{
  static char line[8192];
  memset (line, 'x', sizeof line - 1);
  line[sizeof line - 1] = '\n';
  for (;;)
    if (write (1, line, sizeof line) < 0 && errno != EINTR && errno != EAGAIN)
      exit (1);
}

int
main (int argc, char **argv)
{
  setvbuf (stdout, NULL, _IOLBF, 0);
  if (argc > 2 && strcmp (argv[1], "fds") == 0)
    open_fds (atol (argv[2]));
  else if (argc > 1 && strcmp (argv[1], "agent") == 0)
    attack_agent ();
  else if (argc > 1 && strcmp (argv[1], "flood") == 0)
    flood ();
  fprintf (stderr, "usage: hostile fds N | agent | flood\n");
  return 2;
}
