/* SPDX-License-Identifier: Apache-2.0 */
/* cgroup.h — resource limits and accounting for sandboxes, on cgroup v1, v2 and hybrid hosts.
 *
 * Every sandbox gets one cgroup, named after its workload id, under a `nex` parent that nexd places below its own
 * cgroup (so that whatever limits nexd's service manager set still bound the workloads).  The driver puts the
 * sandbox's root process into it before that process runs anything (nex_launch_t.place), so every process of
 * the sandbox — the agent, the workload, exec sessions — is limited and counted from its first instruction.
 *
 * How cgroups are spelled differs per host: cgroup v1 has one hierarchy per controller (memory, pids, cpu,
 * cpuacct, possibly co-mounted), v2 one unified tree with controllers enabled per subtree; hybrid hosts (v1
 * controllers plus an empty v2 tree, as systemd sets up) use v1.  The mode is detected once, at open, with statfs
 * on /sys/fs/cgroup, and a backend (cgroup-v1.c, cgroup-v2.c) behind a struct of function pointers does the
 * rest.  Callers see only the functions below.
 *
 * Thread safety: a manager is read-only after open; its functions touch only the files of the cgroup named, so
 * the supervisor (create, attach, destroy) and API threads (stats) may call them at once. */
#ifndef NEX_CGROUP_H
#define NEX_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

/* Limits of one cgroup; 0 members mean "no limit". */
typedef struct nex_cgroup_limits
{
  double vcpus;         /* CPU quota as a number of CPUs (CFS quota / period) */
  int64_t memory_bytes; /* memory limit; swap is limited to the same total, so a full limit means an OOM kill */
  int64_t pids;         /* processes + threads */
} nex_cgroup_limits_t;

/* What a cgroup used.  -1: not known on this host (a controller or file is missing). */
typedef struct nex_cgroup_stats
{
  int64_t memory_current;    /* bytes charged now */
  int64_t memory_peak;       /* most bytes ever charged */
  int64_t memory_limit;      /* bytes; -1 when unlimited */
  int64_t memory_limit_hits; /* times a charge hit the limit (v1 memory.failcnt, v2 memory.events max) */
  int64_t oom_kills;         /* processes the OOM killer ended in this cgroup */
  int64_t cpu_usage_ns;      /* CPU time used, user + system */
  int64_t cpu_user_ns;
  int64_t cpu_system_ns;
  int64_t cpu_periods;           /* CFS enforcement periods that elapsed with the quota in force */
  int64_t cpu_throttled_periods; /* ... of which the cgroup was throttled */
  int64_t cpu_throttled_ns;      /* time spent throttled */
  int64_t pids_current;          /* processes + threads now */
  int64_t pids_limit;            /* -1 when unlimited */
  int64_t pids_limit_hits;       /* forks refused by the limit */
} nex_cgroup_stats_t;

typedef struct nex_cgroups nex_cgroups_t;

/* Detects the host's cgroup mode, chooses the backend and prepares the `nex` parent cgroup(s).  NULL with
 * NEX_ERR_UNAVAILABLE when this host offers no usable cgroups (not root, controllers missing or not delegated),
 * saying why. */
nex_cgroups_t *nex_cgroups_open (nex_error_t *err);

/* Frees the manager (cgroups on the host are left as they are).  Safe on NULL. */
void nex_cgroups_close (nex_cgroups_t *cg);

/* "v1", "hybrid" or "v2": what the host has (hybrid and v1 use the v1 backend).  Static storage. */
const char *nex_cgroups_mode (const nex_cgroups_t *cg);

/* Creates cgroup NAME (a workload id) with limits L.  An existing, empty cgroup of that name (a leftover) is
 * reused.  On failure nothing is left behind. */
int nex_cgroups_create (nex_cgroups_t *cg, const char *name, const nex_cgroup_limits_t *l, nex_error_t *err);

/* Gives cgroup FROM (a warm sandbox's, made ahead with no limits) the name TO (the workload id that takes it),
 * with its processes, and then limits L.  cgroup v1 renames the directories; v2, whose kernel cannot rename, makes
 * TO, moves FROM's processes into it and removes FROM.  On failure FROM's processes may be in either. */
int nex_cgroups_rename (nex_cgroups_t *cg, const char *from, const char *to, const nex_cgroup_limits_t *l,
                        nex_error_t *err);

/* Moves process PID (and so its future children) into cgroup NAME. */
int nex_cgroups_attach (nex_cgroups_t *cg, const char *name, pid_t pid, nex_error_t *err);

/* Reads what cgroup NAME used.  NEX_ERR_NOT_FOUND when it does not exist. */
int nex_cgroups_stats (nex_cgroups_t *cg, const char *name, nex_cgroup_stats_t *out, nex_error_t *err);

/* Freezes every process of cgroup NAME (FROZEN true: the v1 freezer, v2's cgroup.freeze) or thaws them, and
 * returns once the kernel reports it done (at most 2 s).  NEX_ERR_NOT_FOUND when NAME has no such cgroup (one
 * made before nexd knew how to freeze). */
int nex_cgroups_freeze (nex_cgroups_t *cg, const char *name, int frozen, nex_error_t *err);

/* Whether process PID is in cgroup NAME (per /proc/PID/cgroup).  1, 0, or -1 when PID cannot be inspected. */
int nex_cgroups_holds (nex_cgroups_t *cg, const char *name, pid_t pid);

/* Kills every process left in cgroup NAME (SIGKILL) and removes it; waits a bounded time (under a second) for
 * the processes to go.  A cgroup that does not exist is not an error. */
int nex_cgroups_destroy (nex_cgroups_t *cg, const char *name, nex_error_t *err);

/* The names of the cgroups under the `nex` parent, as a NULL-terminated array the caller frees (each string,
 * then the array), for cleaning up after a crash. */
char **nex_cgroups_list (nex_cgroups_t *cg);

#endif
