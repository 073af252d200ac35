/* SPDX-License-Identifier: Apache-2.0 */
/* cgroup-internal.h — what cgroup.c shares with its backends (cgroup-v1.c, cgroup-v2.c); not for other callers,
 * who use cgroup.h.
 *
 * A backend is a table of operations on cgroups named by workload id under the `nex` parent; cgroup.c chooses
 * one at open (by statfs) and adds what is the same for every backend (killing what is left, listing, waiting).
 * The helpers below are the one way cgroup files are read and written. */
#ifndef NEX_CGROUP_INTERNAL_H
#define NEX_CGROUP_INTERNAL_H

#include "server/drivers/cgroup.h"

typedef struct nex_cgroup_backend
{
  const char *name; /* "v1", "v2" */

  /* Finds the hierarchies and makes the `nex` parent(s); fills cg->priv. */
  int (*open) (nex_cgroups_t *cg, nex_error_t *err);
  void (*close) (nex_cgroups_t *cg);

  /* Creates NAME with limits.  On failure nex_cgroups_create removes what it made (remove below). */
  int (*create) (nex_cgroups_t *cg, const char *name, const nex_cgroup_limits_t *l, nex_error_t *err);
  int (*attach) (nex_cgroups_t *cg, const char *name, pid_t pid, nex_error_t *err);
  int (*stats) (nex_cgroups_t *cg, const char *name, nex_cgroup_stats_t *out, nex_error_t *err);
  /* Freezes (FROZEN) or thaws NAME's processes, returning once the kernel says it is done. */
  int (*freeze) (nex_cgroups_t *cg, const char *name, int frozen, nex_error_t *err);

  /* The directory whose cgroup.procs lists NAME's processes (one of them, for v1), and the `nex` parent's.  New
   * strings. */
  char *(*procs_dir) (nex_cgroups_t *cg, const char *name);
  char *(*parent_dir) (nex_cgroups_t *cg);

  /* The hierarchy whose line of /proc/PID/cgroup nex_cgroups_holds looks at, as nex_cgroup_self_path takes it:
   * a v1 controller ("pids"), or "" for v2's "0::" line. */
  const char *holds_controller;

  /* rmdir of NAME in every hierarchy; -1 with errno (EBUSY while processes remain; ENOENT is success). */
  int (*remove) (nex_cgroups_t *cg, const char *name);

  /* Renames FROM to TO in every hierarchy, processes and limits kept; -1 with errno.  NULL where the kernel has
   * no rename (cgroup v2): nex_cgroups_rename then moves the processes into a new cgroup instead. */
  int (*rename) (nex_cgroups_t *cg, const char *from, const char *to);
} nex_cgroup_backend_t;

struct nex_cgroups
{
  const nex_cgroup_backend_t *backend;
  const char *mode; /* "v1", "hybrid", "v2" */
  void *priv;       /* the backend's */
};

extern const nex_cgroup_backend_t nex_cgroup_backend_v1;
extern const nex_cgroup_backend_t nex_cgroup_backend_v2;

/* A manager on BACKEND, whatever the host's mode (nex_cgroups_open detects it and calls this); MODE is what
 * nex_cgroups_mode reports.  For the unit tests, which run the v2 backend on hybrid hosts too. */
nex_cgroups_t *nex_cgroups_open_with (const nex_cgroup_backend_t *backend, const char *mode, nex_error_t *err);

/* Writes TEXT to the cgroup file PATH (one write, as the kernel wants it).  0 or -1. */
int nex_cgroup_write (const char *path, const char *text, nex_error_t *err);

/* The first integer in file PATH ("max" reads as -1); -1 when the file cannot be read. */
int64_t nex_cgroup_read_int (const char *path);

/* The value of KEY in a flat-keyed file PATH ("key value" lines, as cpu.stat or memory.events); -1 if absent. */
int64_t nex_cgroup_read_key (const char *path, const char *key);

/* This process's cgroup path in the hierarchy whose /proc/self/cgroup line has CONTROLLERS equal to or
 * containing CONTROLLER ("" selects the v2 line "0::").  New string ("/" at the root), NULL if none. */
char *nex_cgroup_self_path (const char *controller);

/* Whether the directory PATH exists. */
int nex_cgroup_dir_exists (const char *path);

/* The CFS period every backend sets (100 ms), and the quota per period for VCPUS CPUs (at least the kernel's
 * minimum of 1 ms). */
#define NEX_CGROUP_CFS_PERIOD_US 100000
long long nex_cgroup_cfs_quota_us (double vcpus);

#endif
