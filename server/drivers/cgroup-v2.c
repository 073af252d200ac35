/* SPDX-License-Identifier: Apache-2.0 */
/* cgroup-v2.c — the cgroup v2 (unified) backend.
 *
 * One tree; nexd's own cgroup comes from the "0::" line of /proc/self/cgroup.  Controllers reach a cgroup only
 * when its parent lists them in cgroup.subtree_control, and (outside the root) a cgroup with processes cannot
 * pass controllers down — the "no internal processes" rule.  So at open, when nexd's own cgroup holds processes
 * (nexd itself, as a service manager starts it), they are moved into a leaf `<own>/nexd` first; then memory,
 * pids and cpu are enabled for `<own>` and for `<own>/nex`, and every sandbox gets `<own>/nex/<id>`.  This is
 * what a delegated service is allowed to do with the subtree it was given.
 *
 *   memory   memory.max, memory.swap.max = 0 (a hog is OOM-killed, not swapped); memory.events oom_kill / max;
 *            memory.peak where the kernel has it (5.19+)
 *   pids     pids.max; pids.events max
 *   cpu      cpu.max "<quota> 100000"; cpu.stat usage/user/system_usec and throttling
 *
 * The cgroup2 mount is found in mountinfo (hybrid hosts mount it at /sys/fs/cgroup/unified).  On the hybrid
 * development hosts the unit tests run this backend against that controller-less tree (create, attach, stats,
 * destroy, no limits); the limits themselves are exercised only on real v2 hosts.  See README.md. */
#include "server/drivers/cgroup-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

enum
{
  V2_MEMORY = 1,
  V2_PIDS = 2,
  V2_CPU = 4,
};

static const struct
{
  const char *name;
  int bit;
} v2_controllers[] = { { "memory", V2_MEMORY }, { "pids", V2_PIDS }, { "cpu", V2_CPU } };

typedef struct v2
{
  char *own;    /* absolute dir of nexd's cgroup */
  char *parent; /* own/nex */
  int avail;    /* V2_* controllers delegated to nexd's cgroup (and so enabled for every sandbox) */
} v2_t;

/* The mount point of the cgroup2 filesystem (/sys/fs/cgroup on v2 hosts, often /sys/fs/cgroup/unified on hybrid
 * ones), from mountinfo; NULL when there is none. */
static char *
v2_mount (void)
{
  cleanup_free char *text = nex_file_read ("/proc/self/mountinfo", 1 << 20, NULL, NULL);
  char *save = NULL;
  for (char *line = text ? strtok_r (text, "\n", &save) : NULL; line; line = strtok_r (NULL, "\n", &save))
    {
      char *sep = strstr (line, " - ");
      char root[1024], point[1024], fstype[32];
      if (sep && sscanf (sep + 3, "%31s", fstype) == 1 && strcmp (fstype, "cgroup2") == 0
          && sscanf (line, "%*s %*s %*s %1023s %1023s", root, point) == 2 && strcmp (root, "/") == 0)
        return nex_xstrdup (point);
    }
  return NULL;
}

/* The V2_* controllers listed in DIR/cgroup.controllers (those the cgroup at DIR may pass to its children). */
static int
controllers_of (const char *dir)
{
  cleanup_free char *path = nex_xasprintf ("%s/cgroup.controllers", dir);
  cleanup_free char *text = nex_file_read (path, 4096, NULL, NULL);
  int bits = 0;
  char *save = NULL;
  for (char *tok = text ? strtok_r (text, " \n", &save) : NULL; tok; tok = strtok_r (NULL, " \n", &save))
    for (size_t i = 0; i < sizeof v2_controllers / sizeof v2_controllers[0]; i++)
      if (strcmp (tok, v2_controllers[i].name) == 0)
        bits |= v2_controllers[i].bit;
  return bits;
}

/* Enables the controllers in BITS for the children of DIR. */
static int
enable_controllers (const char *dir, int bits, nex_error_t *err)
{
  if (bits == 0)
    return 0;
  char text[64] = "";
  for (size_t i = 0; i < sizeof v2_controllers / sizeof v2_controllers[0]; i++)
    if (bits & v2_controllers[i].bit)
      {
        strcat (text, text[0] ? " +" : "+");
        strcat (text, v2_controllers[i].name);
      }
  cleanup_free char *path = nex_xasprintf ("%s/cgroup.subtree_control", dir);
  return nex_cgroup_write (path, text, err);
}

/* Moves every process of DIR into DIR/nexd (the leaf that leaves DIR free to delegate controllers). */
static int
evacuate (const char *dir, nex_error_t *err)
{
  cleanup_free char *leaf = nex_xasprintf ("%s/nexd", dir);
  if (mkdir (leaf, 0755) < 0 && errno != EEXIST)
    return nex_error_sys (err, errno, "mkdir `%s`", leaf);
  cleanup_free char *procs = nex_xasprintf ("%s/cgroup.procs", dir);
  cleanup_free char *dest = nex_xasprintf ("%s/cgroup.procs", leaf);
  cleanup_free char *text = nex_file_read (procs, 1 << 20, NULL, err);
  if (text == NULL)
    return -1;
  char *save = NULL;
  for (char *tok = strtok_r (text, "\n", &save); tok; tok = strtok_r (NULL, "\n", &save))
    {
      cleanup_error nex_error_t ignored = NULL;
      nex_cgroup_write (dest, tok, &ignored); /* a process that exited meanwhile is fine */
    }
  return 0;
}

/* Controllers that are not delegated to nexd's cgroup are not an error here: the node still runs workloads
 * whose limits need only the others, and a workload asking for a missing one fails with the reason (v2_create).
 * This is also what lets the unit tests exercise this backend on hosts whose v2 tree has no controllers. */
static void
v2_freep (v2_t **pv)
{
  v2_t *v = *pv;
  if (v == NULL)
    return;
  free (v->own);
  free (v->parent);
  free (v);
}

static int
v2_open (nex_cgroups_t *cg, nex_error_t *err)
{
  cleanup_free char *mount = v2_mount ();
  cleanup_free char *own = nex_cgroup_self_path ("");
  if (mount == NULL || own == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "no cgroup2 mount or no v2 line in /proc/self/cgroup");
  cleanup_with (v2_freep) v2_t *v = nex_xzalloc (sizeof *v);
  v->own = nex_xasprintf ("%s%s", mount, strcmp (own, "/") == 0 ? "" : own);
  v->parent = nex_xasprintf ("%s/nex", v->own);
  v->avail = controllers_of (v->own);
  cleanup_error nex_error_t first = NULL;
  if (enable_controllers (v->own, v->avail, &first) < 0
      && (first->errnum != EBUSY || evacuate (v->own, err) < 0 || enable_controllers (v->own, v->avail, err) < 0))
    {
      if (err && *err == NULL)
        *err = NEX_STEAL_PTR (first);
      return -1;
    }
  if (mkdir (v->parent, 0755) < 0 && errno != EEXIST)
    return nex_error_sys (err, errno, "mkdir `%s`", v->parent);
  if (enable_controllers (v->parent, v->avail, err) < 0)
    return -1;
  cg->priv = NEX_STEAL_PTR (v);
  return 0;
}

/* Whether controller BIT (named NAME) is there for a limit; else NEX_ERR_UNAVAILABLE saying so. */
static int
need (const v2_t *v, int bit, const char *name, nex_error_t *err)
{
  if (v->avail & bit)
    return 0;
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "the %s controller is not delegated to nexd's cgroup `%s`", name,
                        v->own);
}

static void
v2_close (nex_cgroups_t *cg)
{
  v2_t *v = cg->priv;
  v2_freep (&v);
}

static int
set (const v2_t *v, const char *name, const char *file, const char *text, nex_error_t *err)
{
  cleanup_free char *path = nex_xasprintf ("%s/%s/%s", v->parent, name, file);
  return nex_cgroup_write (path, text, err);
}

static int
v2_remove (nex_cgroups_t *cg, const char *name)
{
  v2_t *v = cg->priv;
  cleanup_free char *dir = nex_xasprintf ("%s/%s", v->parent, name);
  if (rmdir (dir) < 0 && errno != ENOENT)
    return -1;
  return 0;
}

static int
v2_create (nex_cgroups_t *cg, const char *name, const nex_cgroup_limits_t *l, nex_error_t *err)
{
  v2_t *v = cg->priv;
  cleanup_free char *dir = nex_xasprintf ("%s/%s", v->parent, name);
  if (mkdir (dir, 0755) < 0 && errno != EEXIST)
    return nex_error_sys (err, errno, "mkdir `%s`", dir);
  char text[64];
  if (l->memory_bytes > 0)
    {
      snprintf (text, sizeof text, "%lld", (long long)l->memory_bytes);
      if (need (v, V2_MEMORY, "memory", err) < 0 || set (v, name, "memory.max", text, err) < 0)
        return -1;
      cleanup_error nex_error_t ignored = NULL; /* absent without swap accounting */
      set (v, name, "memory.swap.max", "0", &ignored);
    }
  if (l->pids > 0)
    {
      snprintf (text, sizeof text, "%lld", (long long)l->pids);
      if (need (v, V2_PIDS, "pids", err) < 0 || set (v, name, "pids.max", text, err) < 0)
        return -1;
    }
  if (l->vcpus > 0)
    {
      snprintf (text, sizeof text, "%lld %d", nex_cgroup_cfs_quota_us (l->vcpus), NEX_CGROUP_CFS_PERIOD_US);
      if (need (v, V2_CPU, "cpu", err) < 0 || set (v, name, "cpu.max", text, err) < 0)
        return -1;
    }
  return 0;
}

static int
v2_attach (nex_cgroups_t *cg, const char *name, pid_t pid, nex_error_t *err)
{
  char text[32];
  snprintf (text, sizeof text, "%d", (int)pid);
  if (set (cg->priv, name, "cgroup.procs", text, err) < 0)
    return nex_error_wrap (err, "join cgroup `%s`", name);
  return 0;
}

static int
v2_freeze (nex_cgroups_t *cg, const char *name, int frozen, nex_error_t *err)
{
  v2_t *v = cg->priv;
  if (set (v, name, "cgroup.freeze", frozen ? "1" : "0", err) < 0)
    return -1;
  /* cgroup.events says `frozen 1` once every process has stopped. */
  cleanup_free char *events = nex_xasprintf ("%s/%s/cgroup.events", v->parent, name);
  for (int i = 0; i < 2000; i++)
    {
      if (nex_cgroup_read_key (events, "frozen") == (frozen ? 1 : 0))
        return 0;
      usleep (1000);
    }
  return nex_error_set (err, NEX_ERR_SYSTEM, "cgroup `%s` did not become %s within 2 s", name,
                        frozen ? "frozen" : "thawed");
}

static int
v2_stats (nex_cgroups_t *cg, const char *name, nex_cgroup_stats_t *out, nex_error_t *err)
{
  v2_t *v = cg->priv;
  cleanup_free char *dir = nex_xasprintf ("%s/%s", v->parent, name);
  if (!nex_cgroup_dir_exists (dir))
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no cgroup `%s`", name);
  cleanup_free char *mem_current = nex_xasprintf ("%s/memory.current", dir);
  cleanup_free char *mem_peak = nex_xasprintf ("%s/memory.peak", dir);
  cleanup_free char *mem_max = nex_xasprintf ("%s/memory.max", dir);
  cleanup_free char *mem_events = nex_xasprintf ("%s/memory.events", dir);
  cleanup_free char *cpu_stat = nex_xasprintf ("%s/cpu.stat", dir);
  cleanup_free char *pids_current = nex_xasprintf ("%s/pids.current", dir);
  cleanup_free char *pids_max = nex_xasprintf ("%s/pids.max", dir);
  cleanup_free char *pids_events = nex_xasprintf ("%s/pids.events", dir);
  out->memory_current = nex_cgroup_read_int (mem_current);
  out->memory_peak = nex_cgroup_read_int (mem_peak);
  out->memory_limit = nex_cgroup_read_int (mem_max);
  out->memory_limit_hits = nex_cgroup_read_key (mem_events, "max");
  out->oom_kills = nex_cgroup_read_key (mem_events, "oom_kill");
  int64_t usage = nex_cgroup_read_key (cpu_stat, "usage_usec");
  int64_t user = nex_cgroup_read_key (cpu_stat, "user_usec");
  int64_t sys = nex_cgroup_read_key (cpu_stat, "system_usec");
  int64_t throttled = nex_cgroup_read_key (cpu_stat, "throttled_usec");
  out->cpu_usage_ns = usage >= 0 ? usage * 1000 : -1;
  out->cpu_user_ns = user >= 0 ? user * 1000 : -1;
  out->cpu_system_ns = sys >= 0 ? sys * 1000 : -1;
  out->cpu_periods = nex_cgroup_read_key (cpu_stat, "nr_periods");
  out->cpu_throttled_periods = nex_cgroup_read_key (cpu_stat, "nr_throttled");
  out->cpu_throttled_ns = throttled >= 0 ? throttled * 1000 : -1;
  out->pids_current = nex_cgroup_read_int (pids_current);
  out->pids_limit = nex_cgroup_read_int (pids_max);
  out->pids_limit_hits = nex_cgroup_read_key (pids_events, "max");
  return 0;
}

static char *
v2_procs_dir (nex_cgroups_t *cg, const char *name)
{
  return nex_xasprintf ("%s/%s", ((v2_t *)cg->priv)->parent, name);
}

static char *
v2_parent_dir (nex_cgroups_t *cg)
{
  return nex_xstrdup (((v2_t *)cg->priv)->parent);
}

const nex_cgroup_backend_t nex_cgroup_backend_v2 = {
  .name = "v2",
  .open = v2_open,
  .close = v2_close,
  .create = v2_create,
  .attach = v2_attach,
  .stats = v2_stats,
  .freeze = v2_freeze,
  .procs_dir = v2_procs_dir,
  .parent_dir = v2_parent_dir,
  .holds_controller = "",
  .remove = v2_remove,
};
