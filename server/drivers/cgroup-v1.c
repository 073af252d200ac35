/* SPDX-License-Identifier: Apache-2.0 */
/* cgroup-v1.c — the cgroup v1 backend (also used on hybrid hosts, whose controllers are all v1).
 *
 * v1 has one hierarchy per controller, or a few controllers co-mounted (cpu,cpuacct is common).  The hierarchies
 * are found in /proc/self/mountinfo by the controller in their super options, so any mount layout works; nexd's
 * own cgroup in each (from /proc/self/cgroup) gets a `nex` child, and every sandbox a cgroup below that in each
 * hierarchy.  Co-mounted controllers share one directory, which is created, joined and removed once.
 *
 *   memory   memory.limit_in_bytes, and memory.memsw.limit_in_bytes at the same value when swap accounting
 *            exists (otherwise a hog would swap instead of being OOM-killed); oom_kill in memory.oom_control
 *   pids     pids.max; pids.events "max" counts refused forks
 *   cpu      cpu.cfs_quota_us over a 100 ms cpu.cfs_period_us; cpu.stat counts throttling
 *   cpuacct  cpuacct.usage (ns), cpuacct.stat (user/system in USER_HZ ticks) */
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
  C_MEMORY,
  C_PIDS,
  C_CPU,
  C_CPUACCT,
  C_FREEZER,
  C__COUNT
};

static const char *const controllers[C__COUNT] = { "memory", "pids", "cpu", "cpuacct", "freezer" };

typedef struct v1
{
  char *parent[C__COUNT]; /* <mount><own path>/nex per controller */
  int distinct[C__COUNT]; /* 1 for the first controller of each hierarchy (co-mounted ones share a dir) */
} v1_t;

/* The mount point of the v1 hierarchy holding CONTROLLER, from mountinfo; NULL if it is not mounted. */
static char *
mount_of (const char *controller)
{
  cleanup_free char *text = nex_file_read ("/proc/self/mountinfo", 1 << 20, NULL, NULL);
  if (text == NULL)
    return NULL;
  char *save = NULL;
  for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save))
    {
      /* id parent major:minor root mountpoint options [optional...] - fstype source superoptions */
      char *sep = strstr (line, " - ");
      if (sep == NULL)
        continue;
      char fstype[32], source[256], super[1024];
      if (sscanf (sep + 3, "%31s %255s %1023s", fstype, source, super) != 3 || strcmp (fstype, "cgroup") != 0)
        continue;
      char root[1024], point[1024];
      if (sscanf (line, "%*s %*s %*s %1023s %1023s", root, point) != 2 || strcmp (root, "/") != 0)
        continue;
      char *s2 = NULL;
      for (char *tok = strtok_r (super, ",", &s2); tok; tok = strtok_r (NULL, ",", &s2))
        if (strcmp (tok, controller) == 0)
          return nex_xstrdup (point);
    }
  return NULL;
}

static void
v1_freep (v1_t **pv)
{
  v1_t *v = *pv;
  if (v == NULL)
    return;
  for (int c = 0; c < C__COUNT; c++)
    free (v->parent[c]);
  free (v);
}

static int
v1_open (nex_cgroups_t *cg, nex_error_t *err)
{
  cleanup_with (v1_freep) v1_t *v = nex_xzalloc (sizeof *v);
  for (int c = 0; c < C__COUNT; c++)
    {
      cleanup_free char *point = mount_of (controllers[c]);
      cleanup_free char *own = nex_cgroup_self_path (controllers[c]);
      if (point == NULL || own == NULL)
        return nex_error_set (err, NEX_ERR_UNAVAILABLE, "the %s controller is not mounted", controllers[c]);
      v->parent[c] = nex_xasprintf ("%s%s/nex", point, strcmp (own, "/") == 0 ? "" : own);
      v->distinct[c] = 1;
      for (int o = 0; o < c; o++)
        if (strcmp (v->parent[o], v->parent[c]) == 0)
          v->distinct[c] = 0;
      if (v->distinct[c] && mkdir (v->parent[c], 0755) < 0 && errno != EEXIST)
        return nex_error_sys (err, errno, "mkdir `%s`", v->parent[c]);
    }
  cg->priv = NEX_STEAL_PTR (v);
  return 0;
}

static void
v1_close (nex_cgroups_t *cg)
{
  v1_t *v = cg->priv;
  v1_freep (&v);
}

static char *
dir_of (const v1_t *v, int c, const char *name)
{
  return nex_xasprintf ("%s/%s", v->parent[c], name);
}

static int
v1_remove (nex_cgroups_t *cg, const char *name)
{
  v1_t *v = cg->priv;
  int r = 0, saved = 0;
  for (int c = 0; c < C__COUNT; c++)
    if (v->distinct[c])
      {
        cleanup_free char *dir = dir_of (v, c, name);
        if (rmdir (dir) < 0 && errno != ENOENT)
          {
            r = -1;
            saved = errno;
          }
      }
  errno = saved;
  return r;
}

static int
v1_rename (nex_cgroups_t *cg, const char *from, const char *to)
{
  v1_t *v = cg->priv;
  for (int c = 0; c < C__COUNT; c++)
    if (v->distinct[c])
      {
        cleanup_free char *a = dir_of (v, c, from);
        cleanup_free char *b = dir_of (v, c, to);
        if (rename (a, b) < 0)
          return -1;
      }
  return 0;
}

/* Writes TEXT to FILE of NAME's cgroup in controller C. */
static int
set (const v1_t *v, int c, const char *name, const char *file, const char *text, nex_error_t *err)
{
  cleanup_free char *path = nex_xasprintf ("%s/%s/%s", v->parent[c], name, file);
  return nex_cgroup_write (path, text, err);
}

static int
v1_create (nex_cgroups_t *cg, const char *name, const nex_cgroup_limits_t *l, nex_error_t *err)
{
  v1_t *v = cg->priv;
  for (int c = 0; c < C__COUNT; c++)
    if (v->distinct[c])
      {
        cleanup_free char *dir = dir_of (v, c, name);
        if (mkdir (dir, 0755) < 0 && errno != EEXIST)
          return nex_error_sys (err, errno, "mkdir `%s`", dir);
      }
  char text[64];
  if (l->memory_bytes > 0)
    {
      snprintf (text, sizeof text, "%lld", (long long)l->memory_bytes);
      if (set (v, C_MEMORY, name, "memory.limit_in_bytes", text, err) < 0)
        return -1;
      /* Memory + swap at the same total: no swapping around the limit (absent without swap accounting). */
      cleanup_free char *memsw = nex_xasprintf ("%s/%s/memory.memsw.limit_in_bytes", v->parent[C_MEMORY], name);
      if (access (memsw, F_OK) == 0 && nex_cgroup_write (memsw, text, err) < 0)
        return -1;
    }
  if (l->pids > 0)
    {
      snprintf (text, sizeof text, "%lld", (long long)l->pids);
      if (set (v, C_PIDS, name, "pids.max", text, err) < 0)
        return -1;
    }
  if (l->vcpus > 0)
    {
      char period[32];
      snprintf (period, sizeof period, "%d", NEX_CGROUP_CFS_PERIOD_US);
      snprintf (text, sizeof text, "%lld", nex_cgroup_cfs_quota_us (l->vcpus));
      if (set (v, C_CPU, name, "cpu.cfs_period_us", period, err) < 0
          || set (v, C_CPU, name, "cpu.cfs_quota_us", text, err) < 0)
        return -1;
    }
  return 0;
}

static int
v1_attach (nex_cgroups_t *cg, const char *name, pid_t pid, nex_error_t *err)
{
  v1_t *v = cg->priv;
  char text[32];
  snprintf (text, sizeof text, "%d", (int)pid);
  for (int c = 0; c < C__COUNT; c++)
    if (v->distinct[c] && set (v, c, name, "cgroup.procs", text, err) < 0)
      return nex_error_wrap (err, "join cgroup `%s`", name);
  return 0;
}

/* FILE of NAME in controller C as an integer, -1 when unknown. */
static int64_t
get (const v1_t *v, int c, const char *name, const char *file)
{
  cleanup_free char *path = nex_xasprintf ("%s/%s/%s", v->parent[c], name, file);
  return nex_cgroup_read_int (path);
}

static int64_t
get_key (const v1_t *v, int c, const char *name, const char *file, const char *key)
{
  cleanup_free char *path = nex_xasprintf ("%s/%s/%s", v->parent[c], name, file);
  return nex_cgroup_read_key (path, key);
}

static int
v1_stats (nex_cgroups_t *cg, const char *name, nex_cgroup_stats_t *out, nex_error_t *err)
{
  v1_t *v = cg->priv;
  cleanup_free char *dir = dir_of (v, C_MEMORY, name);
  if (!nex_cgroup_dir_exists (dir))
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no cgroup `%s`", name);
  out->memory_current = get (v, C_MEMORY, name, "memory.usage_in_bytes");
  out->memory_peak = get (v, C_MEMORY, name, "memory.max_usage_in_bytes");
  out->memory_limit = get (v, C_MEMORY, name, "memory.limit_in_bytes");
  /* An unlimited v1 memory cgroup reports a huge page-rounded number rather than "max". */
  if (out->memory_limit >= (INT64_C (1) << 60))
    out->memory_limit = -1;
  out->memory_limit_hits = get (v, C_MEMORY, name, "memory.failcnt");
  out->oom_kills = get_key (v, C_MEMORY, name, "memory.oom_control", "oom_kill");
  out->cpu_usage_ns = get (v, C_CPUACCT, name, "cpuacct.usage");
  long hz = sysconf (_SC_CLK_TCK);
  int64_t user = get_key (v, C_CPUACCT, name, "cpuacct.stat", "user");
  int64_t sys = get_key (v, C_CPUACCT, name, "cpuacct.stat", "system");
  out->cpu_user_ns = user >= 0 && hz > 0 ? user * (1000000000 / hz) : -1;
  out->cpu_system_ns = sys >= 0 && hz > 0 ? sys * (1000000000 / hz) : -1;
  out->cpu_periods = get_key (v, C_CPU, name, "cpu.stat", "nr_periods");
  out->cpu_throttled_periods = get_key (v, C_CPU, name, "cpu.stat", "nr_throttled");
  out->cpu_throttled_ns = get_key (v, C_CPU, name, "cpu.stat", "throttled_time");
  out->pids_current = get (v, C_PIDS, name, "pids.current");
  out->pids_limit = get (v, C_PIDS, name, "pids.max");
  out->pids_limit_hits = get_key (v, C_PIDS, name, "pids.events", "max");
  return 0;
}

static int
v1_freeze (nex_cgroups_t *cg, const char *name, int frozen, nex_error_t *err)
{
  v1_t *v = cg->priv;
  if (set (v, C_FREEZER, name, "freezer.state", frozen ? "FROZEN" : "THAWED", err) < 0)
    return -1;
  /* FREEZING until every task has stopped. */
  cleanup_free char *path = nex_xasprintf ("%s/%s/freezer.state", v->parent[C_FREEZER], name);
  for (int i = 0; i < 2000; i++)
    {
      cleanup_free char *state = nex_file_read (path, 64, NULL, NULL);
      if (state && strncmp (state, frozen ? "FROZEN" : "THAWED", 6) == 0)
        return 0;
      usleep (1000);
    }
  return nex_error_set (err, NEX_ERR_SYSTEM, "cgroup `%s` did not become %s within 2 s", name,
                        frozen ? "frozen" : "thawed");
}

static char *
v1_procs_dir (nex_cgroups_t *cg, const char *name)
{
  /* Every process of a sandbox is in all its hierarchies; pids lists them as well as any. */
  return dir_of (cg->priv, C_PIDS, name);
}

static char *
v1_parent_dir (nex_cgroups_t *cg)
{
  return nex_xstrdup (((v1_t *)cg->priv)->parent[C_PIDS]);
}

const nex_cgroup_backend_t nex_cgroup_backend_v1 = {
  .name = "v1",
  .open = v1_open,
  .close = v1_close,
  .create = v1_create,
  .attach = v1_attach,
  .stats = v1_stats,
  .freeze = v1_freeze,
  .procs_dir = v1_procs_dir,
  .parent_dir = v1_parent_dir,
  .holds_controller = "pids", /* every process of a sandbox is in all its hierarchies */
  .remove = v1_remove,
  .rename = v1_rename,
};
