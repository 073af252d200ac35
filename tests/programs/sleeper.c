/* SPDX-License-Identifier: Apache-2.0 */
/* sleeper.c — a long-running test workload, for stopping workloads.
 *
 * It prints "sleeper started" once its SIGTERM handling is in place (so a test that has seen that line knows a
 * SIGTERM will be handled), then waits.  On SIGTERM it prints "sleeper got SIGTERM" and exits 0.
 *
 * With argv[1] == "--ignore-term" it ignores SIGTERM instead, so stopping it must escalate to SIGKILL after the
 * grace period.
 *
 * As a safety net against test runs that leak workloads, it ends itself (by SIGALRM's default action) after
 * SLEEPER_MAX_S seconds; no test waits that long. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SLEEPER_MAX_S 600

static volatile sig_atomic_t got_term;

static void
on_term (int signo)
{
  (void)signo;
  got_term = 1;
}

int
main (int argc, char **argv)
{
  int ignore_term = argc > 1 && strcmp (argv[1], "--ignore-term") == 0;
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sigemptyset (&sa.sa_mask);
  sa.sa_handler = ignore_term ? SIG_IGN : on_term;
  if (sigaction (SIGTERM, &sa, NULL) < 0)
    {
      perror ("sigaction");
      return 1;
    }

  /* SIGTERM stays blocked except inside sigsuspend(), so one arriving between the check and the wait is not
     lost. */
  sigset_t block, wait_mask;
  sigemptyset (&block);
  sigaddset (&block, SIGTERM);
  if (sigprocmask (SIG_BLOCK, &block, &wait_mask) < 0)
    {
      perror ("sigprocmask");
      return 1;
    }
  sigdelset (&wait_mask, SIGTERM);

  alarm (SLEEPER_MAX_S);
  printf ("sleeper started\n");
  fflush (stdout);

  while (!got_term)
    sigsuspend (&wait_mask);

  printf ("sleeper got SIGTERM\n");
  fflush (stdout);
  return 0;
}
