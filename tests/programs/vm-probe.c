/* SPDX-License-Identifier: Apache-2.0 */
/* vm-probe.c — a test workload for the microVM drivers; what it does is chosen by argv[1]:
 *
 *   info             prints "kernel <release>", "host <hostname>" and "memtotal_kib <n>" (from /proc/meminfo),
 *                    so a test can tell that it ran in a VM of the size it asked for, then exits 0
 *   alloc MIB        allocates MIB MiB and touches every page, printing "allocated N MiB" every 16 MiB; exits 0
 *                    (in a VM smaller than that, the guest's OOM killer ends it with SIGKILL instead)
 *   garbage PATH     writes 256 KiB of pseudo-random bytes to PATH (the agent's channel in the guest), prints
 *                    "garbage written", then waits: a hostile guest, to show that it cannot hurt the node
 *   tick N           prints "tick I" every 200 ms, N times, then exits 0
 *
 * Like every test workload it is static, and it ends itself after PROBE_MAX_S seconds whatever happens. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#define PROBE_MAX_S 300

static int
info (void)
{
  struct utsname u;
  if (uname (&u) < 0)
    return 1;
  printf ("kernel %s\nhost %s\n", u.release, u.nodename);
  FILE *f = fopen ("/proc/meminfo", "r");
  char line[256];
  while (f && fgets (line, sizeof line, f))
    if (strncmp (line, "MemTotal:", 9) == 0)
      printf ("memtotal_kib %ld\n", strtol (line + 9, NULL, 10));
  if (f)
    fclose (f);
  printf ("cpus %ld\n", sysconf (_SC_NPROCESSORS_ONLN));
  return 0;
}

static int
alloc (long mib)
{
  for (long i = 1; i <= mib; i++)
    {
      char *p = malloc (1 << 20);
      if (p == NULL)
        {
          printf ("malloc failed after %ld MiB\n", i - 1);
          return 2;
        }
      memset (p, (int)i, 1 << 20);
      if (i % 16 == 0 || i == mib)
        {
          printf ("allocated %ld MiB\n", i);
          fflush (stdout);
        }
    }
  return 0;
}

static int
garbage (const char *path)
{
  int fd = open (path, O_WRONLY | O_NOCTTY);
  if (fd < 0)
    {
      perror (path);
      return 1;
    }
  uint32_t x = 2463534242u;
  unsigned char buf[4096];
  for (int round = 0; round < 64; round++)
    {
      for (size_t i = 0; i < sizeof buf; i++)
        {
          x ^= x << 13;
          x ^= x >> 17;
          x ^= x << 5;
          buf[i] = (unsigned char)x;
        }
      if (write (fd, buf, sizeof buf) < 0)
        break;
    }
  printf ("garbage written\n");
  fflush (stdout);
  for (;;)
    pause ();
}

static int
tick (long n)
{
  for (long i = 1; i <= n; i++)
    {
      printf ("tick %ld\n", i);
      fflush (stdout);
      usleep (200 * 1000);
    }
  return 0;
}

int
main (int argc, char **argv)
{
  alarm (PROBE_MAX_S);
  if (argc >= 2 && strcmp (argv[1], "info") == 0)
    return info ();
  if (argc >= 3 && strcmp (argv[1], "alloc") == 0)
    return alloc (strtol (argv[2], NULL, 10));
  if (argc >= 3 && strcmp (argv[1], "garbage") == 0)
    return garbage (argv[2]);
  if (argc >= 3 && strcmp (argv[1], "tick") == 0)
    return tick (strtol (argv[2], NULL, 10));
  fprintf (stderr, "usage: vm-probe info | alloc MIB | garbage PATH | tick N\n");
  return 2;
}
