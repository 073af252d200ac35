/* SPDX-License-Identifier: Apache-2.0 */
/* test-cgroup.c — unit tests of the cgroup manager (server/drivers/cgroup*.c) on this host's real cgroups, and of the
 * /proc and cgroup-file parsers beside it (server/drivers/proc.c).
 *
 * The parsers are checked on files this test writes.  The manager is checked end to end when the test runs as
 * root on a host with usable cgroups (else those checks are skipped, saying why): a cgroup is created with
 * limits, a forked child is moved into it and shows up in its stats and in /proc/<pid>/cgroup, the cgroup is
 * listed under the `nex` parent, and destroy kills the child and removes the cgroup.  Rename (a warm sandbox's
 * cgroup given to its workload) is checked on the host's backend and on the v2 one, whose rename is a move. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/drivers/cgroup-internal.h"
#include "server/id.h"
#include "server/drivers/proc.h"
#include "tests/unit/tap.h"
#include "tests/unit/testutil.h"

static void
test_parsers (void)
{
  cleanup_free char *path = test_path ("stat");
  test_write_text (path, "usage_usec 1200\nuser_usec 7\nnr_throttled 3\n", 0600);
  TAP_OK (nex_cgroup_read_key (path, "user_usec") == 7 && nex_cgroup_read_key (path, "nr_throttled") == 3
              && nex_cgroup_read_key (path, "usage") == -1 && nex_cgroup_read_key (path, "missing") == -1,
          "read_key finds whole keys only");
  test_write_text (path, "max\n", 0600);
  TAP_OK (nex_cgroup_read_int (path) == -1, "\"max\" reads as unlimited (-1)");
  test_write_text (path, "4096\n", 0600);
  TAP_OK (nex_cgroup_read_int (path) == 4096 && nex_cgroup_read_int ("/nonexistent/x") == -1, "read_int");

  int64_t self = nex_proc_start_time (getpid ());
  TAP_OK (self > 0 && nex_proc_start_time (getpid ()) == self, "a process's start time is stable");
  /* A command name with spaces and parentheses must not shift the fields. */
  int go[2];
  if (pipe (go) < 0)
    return;
  pid_t child = fork ();
  if (child == 0)
    {
      prctl (PR_SET_NAME, "a) b (c", 0, 0, 0);
      close (go[0]);
      (void)!write (go[1], "x", 1);
      pause ();
      _exit (0);
    }
  char c;
  close (go[1]);
  (void)!read (go[0], &c, 1);
  close (go[0]);
  int64_t t = nex_proc_start_time (child);
  TAP_OK (t >= self, "start time of a child named `a) b (c` parses (%lld >= %lld)", (long long)t, (long long)self);
  kill (child, SIGKILL);
  waitpid (child, NULL, 0);
  TAP_OK (nex_proc_start_time (child) == -1, "a reaped process has no start time");
}

static void
test_manager (void)
{
  cleanup_error nex_error_t err = NULL;
  nex_cgroups_t *cg = nex_cgroups_open (&err);
  if (cg == NULL)
    {
      for (int i = 0; i < 8; i++)
        TAP_SKIP ("no usable cgroups here: %s", err->msg);
      return;
    }
  const char *mode = nex_cgroups_mode (cg);
  TAP_OK (strcmp (mode, "v1") == 0 || strcmp (mode, "hybrid") == 0 || strcmp (mode, "v2") == 0, "mode %s", mode);

  char id[37];
  nex_id_new (id);
  nex_cgroup_limits_t lim = { .vcpus = 0.5, .memory_bytes = 64 << 20, .pids = 10 };
  TAP_OK (nex_cgroups_create (cg, id, &lim, &err) == 0, "create %s", id);
  TAP_OK (nex_cgroups_create (cg, "../escape", &lim, &err) < 0 && err->kind == NEX_ERR_INVALID,
          "a name that is not a workload id is refused");
  nex_error_free (&err);

  pid_t child = fork ();
  if (child == 0)
    {
      pause ();
      _exit (0);
    }
  TAP_OK (nex_cgroups_attach (cg, id, child, &err) == 0 && nex_cgroups_holds (cg, id, child) == 1
              && nex_cgroups_holds (cg, id, getpid ()) == 0,
          "attach: the child is in the cgroup, the test is not");
  nex_cgroup_stats_t st;
  TAP_OK (nex_cgroups_stats (cg, id, &st, &err) == 0 && st.pids_current == 1 && st.pids_limit == 10
              && st.memory_limit == 64 << 20 && st.oom_kills == 0 && st.memory_current >= 0,
          "stats: 1 process of 10, memory limit 64 MiB, no OOM kill");
  char **names = nex_cgroups_list (cg);
  int listed = 0;
  for (char **n = names; *n; n++)
    {
      listed |= strcmp (*n, id) == 0;
      free (*n);
    }
  free (names);
  TAP_OK (listed, "list shows the cgroup under the nex parent");
  TAP_OK (nex_cgroups_destroy (cg, id, &err) == 0, "destroy");
  int status = 0;
  TAP_OK (waitpid (child, &status, 0) == child && WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL,
          "destroy killed the process inside");
  TAP_OK (nex_cgroups_stats (cg, id, &st, &err) < 0 && err->kind == NEX_ERR_NOT_FOUND
              && nex_cgroups_destroy (cg, id, NULL) == 0,
          "the cgroup is gone; destroying it again is fine");
  nex_cgroups_close (cg);
}

/* The v2 backend on whatever cgroup2 tree this host has — on hybrid hosts a controller-less one, which still
 * has cgroups, cgroup.procs and cpu.stat: create, attach, stats, destroy work; a limit needing a controller the
 * tree lacks is refused with the reason. */
static void
test_v2_backend (void)
{
  cleanup_error nex_error_t err = NULL;
  nex_cgroups_t *cg = geteuid () == 0 ? nex_cgroups_open_with (&nex_cgroup_backend_v2, "v2", &err) : NULL;
  if (cg == NULL)
    {
      for (int i = 0; i < 5; i++)
        TAP_SKIP ("no usable cgroup2 tree: %s", err ? err->msg : "not root");
      return;
    }
  char id[37];
  nex_id_new (id);
  nex_cgroup_limits_t none = { 0 };
  TAP_OK (nex_cgroups_create (cg, id, &none, &err) == 0, "v2: create without limits");
  pid_t child = fork ();
  if (child == 0)
    {
      pause ();
      _exit (0);
    }
  nex_cgroup_stats_t st;
  TAP_OK (nex_cgroups_attach (cg, id, child, &err) == 0 && nex_cgroups_holds (cg, id, child) == 1
              && nex_cgroups_stats (cg, id, &st, &err) == 0 && st.cpu_usage_ns >= 0,
          "v2: attach, holds, stats (cpu.stat is always there)");
  /* Limits on a tree without the controller: a clear refusal (on a real v2 host with delegation: accepted). */
  char id2[37];
  nex_id_new (id2);
  nex_cgroup_limits_t pids = { .pids = 5 };
  int r = nex_cgroups_create (cg, id2, &pids, &err);
  TAP_OK ((r == 0 && nex_cgroups_destroy (cg, id2, NULL) == 0)
              || (r < 0 && err->kind == NEX_ERR_UNAVAILABLE && strstr (err->msg, "pids controller")),
          "v2: a pids limit is set or refused naming the missing controller (%s)", r < 0 ? err->msg : "set");
  nex_error_free (&err);
  TAP_OK (nex_cgroups_destroy (cg, id, &err) == 0, "v2: destroy");
  int status = 0;
  TAP_OK (waitpid (child, &status, 0) == child && WIFSIGNALED (status) && WTERMSIG (status) == SIGKILL,
          "v2: destroy killed the process inside");
  nex_cgroups_close (cg);
}

/* A warm sandbox's cgroup given to a workload (sandbox-pool.h): renamed with its process and then limited (v1),
 * or, where the kernel cannot rename (v2), a new cgroup with the process moved in and the old one removed. */
static void
check_rename (nex_cgroups_t *cg, const char *label, const nex_cgroup_limits_t *lim)
{
  cleanup_error nex_error_t err = NULL;
  char from[37], to[37];
  nex_id_new (from);
  nex_id_new (to);
  nex_cgroup_limits_t none = { 0 };
  pid_t child = fork ();
  if (child == 0)
    {
      pause ();
      _exit (0);
    }
  TAP_OK (nex_cgroups_create (cg, from, &none, &err) == 0 && nex_cgroups_attach (cg, from, child, &err) == 0,
          "%s: a cgroup without limits holds a process", label);
  TAP_OK (nex_cgroups_rename (cg, from, to, lim, &err) == 0, "%s: renamed (%s)", label, err ? err->msg : "ok");
  nex_cgroup_stats_t st;
  TAP_OK (nex_cgroups_holds (cg, to, child) == 1 && nex_cgroups_holds (cg, from, child) == 0
              && nex_cgroups_stats (cg, from, &st, NULL) < 0,
          "%s: the process is in the new name, the old one is gone", label);
  TAP_OK (nex_cgroups_stats (cg, to, &st, &err) == 0 && (lim->pids == 0 || st.pids_limit == lim->pids),
          "%s: the new name has the limits (pids %lld)", label, (long long)st.pids_limit);
  TAP_OK (nex_cgroups_rename (cg, from, "../escape", lim, &err) < 0 && err->kind == NEX_ERR_INVALID,
          "%s: a name that is not a workload id is refused", label);
  nex_cgroups_destroy (cg, to, NULL);
  waitpid (child, NULL, 0);
}

static void
test_rename (void)
{
  cleanup_error nex_error_t err = NULL;
  nex_cgroups_t *cg = nex_cgroups_open (&err);
  nex_cgroup_limits_t pids = { .pids = 12 };
  if (cg == NULL)
    for (int i = 0; i < 5; i++)
      TAP_SKIP ("no usable cgroups here: %s", err->msg);
  else
    check_rename (cg, nex_cgroups_mode (cg), &pids);
  nex_cgroups_close (cg);
  nex_error_free (&err);
  nex_cgroups_t *v2 = geteuid () == 0 ? nex_cgroups_open_with (&nex_cgroup_backend_v2, "v2", &err) : NULL;
  nex_cgroup_limits_t none = { 0 };
  if (v2 == NULL)
    for (int i = 0; i < 5; i++)
      TAP_SKIP ("no usable cgroup2 tree: %s", err ? err->msg : "not root");
  else
    check_rename (v2, "v2 (moved, not renamed)", &none);
  nex_cgroups_close (v2);
}

int
main (void)
{
  test_parsers ();
  test_manager ();
  test_v2_backend ();
  test_rename ();
  return tap_done ();
}
