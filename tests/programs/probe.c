/* SPDX-License-Identifier: Apache-2.0 */
/* probe.c — a multi-purpose static test workload for the sandbox tests (tests/integration/test_sandbox_*.py).
 *
 *   probe hog                 allocates and touches memory 1 MiB at a time until something stops it
 *   probe forkbomb            forks sleeping children until fork fails 100 times, prints the counts, then waits
 *   probe spin [SECONDS]      burns CPU (default: until killed)
 *   probe syscalls            tries what the seccomp profile and dropped capabilities must refuse, prints
 *                             "<name>: <errno name or ok>" per attempt, then its CapEff/CapBnd/NoNewPrivs/Seccomp
 *   probe cat                 copies stdin to stdout
 *   probe echo ARGS...        prints ARGS on one line; "probe echo-err ARGS..." prints them on stderr
 *   probe exit CODE           exits with CODE
 *   probe sleep SECONDS       sleeps (SIGTERM ends it with status 0)
 *   probe pwd                 prints the working directory
 *   probe env NAMES...        prints NAME=value (or NAME unset) for each NAME
 *   probe net                 prints the network interfaces it sees ("net: lo eth0 ...")
 *   probe tick N MS           prints "tick I" for I = 0..N-1, one every MS milliseconds, then exits 0
 *
 * Everything it prints is one line per fact, flushed, so the tests can read its log while it runs. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

static void
say (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  vprintf (fmt, ap);
  va_end (ap);
  putchar ('\n');
  fflush (stdout);
}

static int
hog (void)
{
  size_t total = 0;
  for (;;)
    {
      char *p = malloc (1 << 20);
      if (p == NULL)
        {
          say ("hog: malloc failed at %zu MiB", total >> 20);
          return 1;
        }
      memset (p, 0x5a, 1 << 20);
      total += 1 << 20;
      if ((total >> 20) % 16 == 0)
        say ("hog: %zu MiB", total >> 20);
    }
}

static int
forkbomb (void)
{
  int ok = 0, failed = 0, attempts = 0;
  while (failed < 100 && attempts < 100000)
    {
      attempts++;
      pid_t pid = fork ();
      if (pid == 0)
        {
          pause ();
          _exit (0);
        }
      if (pid < 0)
        failed++;
      else
        ok++;
    }
  say ("forkbomb: ok=%d failed=%d", ok, failed);
  for (;;)
    pause ();
}

static int
spin (int seconds)
{
  time_t end = seconds > 0 ? time (NULL) + seconds : 0;
  volatile unsigned long x = 0;
  say ("spin: started");
  while (end == 0 || time (NULL) < end)
    for (int i = 0; i < 1000000; i++)
      x += (unsigned long)i;
  return 0;
}

static const char *
outcome (long r)
{
  if (r >= 0)
    return "ok";
  switch (errno)
    {
    case EPERM:
      return "EPERM";
    case EACCES:
      return "EACCES";
    case ENOSYS:
      return "ENOSYS";
    case EINVAL:
      return "EINVAL";
    default:
      return strerror (errno);
    }
}

static void
status_line (const char *key)
{
  FILE *f = fopen ("/proc/self/status", "r");
  char line[256];
  while (f && fgets (line, sizeof line, f))
    if (strncmp (line, key, strlen (key)) == 0 && line[strlen (key)] == ':')
      {
        line[strcspn (line, "\n")] = '\0';
        char *v = line + strlen (key) + 1;
        while (*v == ' ' || *v == '\t')
          v++;
        say ("%s: %s", key, v);
      }
  if (f)
    fclose (f);
}

static void *
thread_main (void *arg)
{
  return arg;
}

static int
syscalls (void)
{
  say ("mount: %s", outcome (mount ("none", "/tmp", "tmpfs", 0, NULL)));
  say ("unshare-user: %s", outcome (unshare (CLONE_NEWUSER)));
  say ("unshare-ns: %s", outcome (unshare (CLONE_NEWNS)));
  say ("unshare-net: %s", outcome (unshare (CLONE_NEWNET)));
  /* clone with a namespace flag, straight through the system call (glibc may prefer clone3). */
  long r = syscall (SYS_clone, (long)(CLONE_NEWPID | SIGCHLD), 0L, 0L, 0L, 0L);
  if (r == 0)
    _exit (0);
  if (r > 0)
    waitpid ((pid_t)r, NULL, 0);
  say ("clone-newpid: %s", outcome (r));
  say ("keyctl: %s", outcome (syscall (SYS_keyctl, 0L /* KEYCTL_GET_KEYRING_ID */, -3L, 0L)));
  say ("ptrace: %s", outcome (ptrace (PTRACE_TRACEME, 0, NULL, NULL)));
  say ("bpf: %s", outcome (syscall (SYS_bpf, 0L, NULL, 0L)));
  say ("chroot: %s", outcome (chroot ("/tmp")));
  say ("setns: %s", outcome (syscall (SYS_setns, 0L, 0L)));
  /* Ordinary calls must still work. */
  pid_t child = fork ();
  if (child == 0)
    _exit (7);
  int st = 0;
  waitpid (child, &st, 0);
  say ("fork: %s", child > 0 && WIFEXITED (st) && WEXITSTATUS (st) == 7 ? "ok" : "broken");
  /* Threads: libc tries clone3 (refused with ENOSYS by the profile) and falls back to clone. */
  pthread_t t;
  void *back = NULL;
  int tr = pthread_create (&t, NULL, thread_main, (void *)42);
  if (tr == 0)
    pthread_join (t, &back);
  say ("thread: %s", tr == 0 && back == (void *)42 ? "ok" : strerror (tr));
  int fd = open ("/tmp/probe-file", O_CREAT | O_WRONLY | O_TRUNC, 0600);
  say ("write-tmp: %s", outcome (fd >= 0 ? write (fd, "x", 1) : -1));
  if (fd >= 0)
    close (fd);
  status_line ("CapEff");
  status_line ("CapPrm");
  status_line ("CapBnd");
  status_line ("CapAmb");
  status_line ("NoNewPrivs");
  status_line ("Seccomp");
  /* Descriptors the workload inherited: only 0, 1, 2. */
  int open_fds = 0;
  for (int i = 3; i < 1024; i++)
    if (fcntl (i, F_GETFD) >= 0)
      open_fds++;
  say ("extra-fds: %d", open_fds);
  return 0;
}

static int
cat (void)
{
  char buf[4096];
  ssize_t n;
  while ((n = read (0, buf, sizeof buf)) > 0)
    if (write (1, buf, (size_t)n) != n)
      return 1;
  return n < 0 ? 1 : 0;
}

static int
echo (int argc, char **argv, FILE *out)
{
  for (int i = 0; i < argc; i++)
    fprintf (out, "%s%s", i ? " " : "", argv[i]);
  fputc ('\n', out);
  fflush (out);
  return 0;
}

static void
on_term (int sig)
{
  (void)sig;
  _exit (0);
}

int
main (int argc, char **argv)
{
  const char *cmd = argc > 1 ? argv[1] : "";
  if (strcmp (cmd, "hog") == 0)
    return hog ();
  if (strcmp (cmd, "forkbomb") == 0)
    return forkbomb ();
  if (strcmp (cmd, "spin") == 0)
    return spin (argc > 2 ? atoi (argv[2]) : 0);
  if (strcmp (cmd, "syscalls") == 0)
    return syscalls ();
  if (strcmp (cmd, "cat") == 0)
    return cat ();
  if (strcmp (cmd, "echo") == 0)
    return echo (argc - 2, argv + 2, stdout);
  if (strcmp (cmd, "echo-err") == 0)
    return echo (argc - 2, argv + 2, stderr);
  if (strcmp (cmd, "exit") == 0)
    {
      say ("exit: %s", argc > 2 ? argv[2] : "0");
      return argc > 2 ? atoi (argv[2]) : 0;
    }
  if (strcmp (cmd, "sleep") == 0)
    {
      signal (SIGTERM, on_term);
      say ("sleep: started");
      sleep ((unsigned)(argc > 2 ? atoi (argv[2]) : 600));
      return 0;
    }
  if (strcmp (cmd, "pwd") == 0)
    {
      char buf[4096];
      say ("pwd: %s", getcwd (buf, sizeof buf) ? buf : strerror (errno));
      return 0;
    }
  if (strcmp (cmd, "net") == 0)
    {
      FILE *f = fopen ("/proc/self/net/dev", "r");
      char line[512], names[2048] = "";
      for (int n = 0; f && fgets (line, sizeof line, f); n++)
        {
          char *colon = strchr (line, ':');
          if (n < 2 || colon == NULL)
            continue;
          *colon = '\0';
          char *name = line + strspn (line, " ");
          if (strlen (names) + strlen (name) + 2 < sizeof names)
            {
              strcat (names, " ");
              strcat (names, name);
            }
        }
      if (f)
        fclose (f);
      say ("net:%s", names);
      return 0;
    }
  if (strcmp (cmd, "tick") == 0 && argc > 3)
    {
      int n = atoi (argv[2]), ms = atoi (argv[3]);
      for (int i = 0; i < n; i++)
        {
          say ("tick %d", i);
          struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
          nanosleep (&ts, NULL);
        }
      return 0;
    }
  if (strcmp (cmd, "env") == 0)
    {
      for (int i = 2; i < argc; i++)
        {
          const char *v = getenv (argv[i]);
          if (v)
            say ("%s=%s", argv[i], v);
          else
            say ("%s unset", argv[i]);
        }
      return 0;
    }
  fprintf (stderr, "usage: probe hog|forkbomb|spin|syscalls|cat|echo|echo-err|exit|sleep|pwd|env|tick|net ...\n");
  return 2;
}
