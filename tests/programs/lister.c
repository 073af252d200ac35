/* SPDX-License-Identifier: Apache-2.0 */
/* lister.c — a test workload that reports what it can see, for the isolation tests.
 *
 * It prints one line each:
 *     pid: <its pid>                    (2 in a fresh pid namespace, under nex-agent as PID 1)
 *     hostname: <its hostname>
 *     uid: <its uid>
 *     proc: <numeric entries of /proc>  (the pids it can see, in increasing order, space separated)
 *     root: <entries of />              (sorted by name, space separated)
 *     net: <network interfaces>         (from /proc/net/dev, sorted; "lo" alone in a sandbox)
 * and for each of /etc/passwd, /home, /root and /usr, "host-file <path>: visible" or "host-file <path>: absent".
 * A directory it cannot read prints "<name>: unreadable (<error>)".  It exits 0. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENTRIES 4096

static int
compare_names (const void *a, const void *b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

static int
compare_longs (const void *a, const void *b)
{
  long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

/* True when NAME is a non-empty string of decimal digits. */
static int
is_number (const char *name)
{
  if (*name == '\0')
    return 0;
  for (; *name; name++)
    if (*name < '0' || *name > '9')
      return 0;
  return 1;
}

static void
print_proc (void)
{
  DIR *d = opendir ("/proc");
  if (d == NULL)
    {
      printf ("proc: unreadable (%s)\n", strerror (errno));
      return;
    }
  static long pids[MAX_ENTRIES];
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir (d)) != NULL && n < MAX_ENTRIES)
    if (is_number (e->d_name))
      pids[n++] = strtol (e->d_name, NULL, 10);
  closedir (d);
  qsort (pids, n, sizeof pids[0], compare_longs);
  printf ("proc:");
  for (size_t i = 0; i < n; i++)
    printf (" %ld", pids[i]);
  printf ("\n");
}

static void
print_root (void)
{
  DIR *d = opendir ("/");
  if (d == NULL)
    {
      printf ("root: unreadable (%s)\n", strerror (errno));
      return;
    }
  static char *names[MAX_ENTRIES];
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir (d)) != NULL && n < MAX_ENTRIES)
    {
      if (strcmp (e->d_name, ".") == 0 || strcmp (e->d_name, "..") == 0)
        continue;
      names[n] = strdup (e->d_name);
      if (names[n] != NULL)
        n++;
    }
  closedir (d);
  qsort (names, n, sizeof names[0], compare_names);
  printf ("root:");
  for (size_t i = 0; i < n; i++)
    {
      printf (" %s", names[i]);
      free (names[i]);
    }
  printf ("\n");
}

static void
print_net (void)
{
  FILE *f = fopen ("/proc/net/dev", "r");
  if (f == NULL)
    {
      printf ("net: unreadable (%s)\n", strerror (errno));
      return;
    }
  static char *names[MAX_ENTRIES];
  size_t n = 0;
  char line[512];
  /* Two header lines, then "  name: counters..." per interface. */
  while (fgets (line, sizeof line, f) != NULL && n < MAX_ENTRIES)
    {
      char *colon = strchr (line, ':');
      if (colon == NULL)
        continue;
      *colon = '\0';
      char *name = line + strspn (line, " ");
      names[n] = strdup (name);
      if (names[n] != NULL)
        n++;
    }
  fclose (f);
  qsort (names, n, sizeof names[0], compare_names);
  printf ("net:");
  for (size_t i = 0; i < n; i++)
    {
      printf (" %s", names[i]);
      free (names[i]);
    }
  printf ("\n");
}

int
main (void)
{
  static const char *const host_files[] = { "/etc/passwd", "/home", "/root", "/usr" };
  char hostname[256] = "";

  if (gethostname (hostname, sizeof hostname - 1) < 0)
    snprintf (hostname, sizeof hostname, "(error: %s)", strerror (errno));

  printf ("pid: %ld\n", (long)getpid ());
  printf ("hostname: %s\n", hostname);
  printf ("uid: %ld\n", (long)getuid ());
  print_proc ();
  print_root ();
  print_net ();
  for (size_t i = 0; i < sizeof host_files / sizeof host_files[0]; i++)
    {
      struct stat st;
      printf ("host-file %s: %s\n", host_files[i], lstat (host_files[i], &st) == 0 ? "visible" : "absent");
    }
  return 0;
}
