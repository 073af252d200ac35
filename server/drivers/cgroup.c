/* SPDX-License-Identifier: Apache-2.0 */
/* cgroup.c — the cgroup manager: mode detection, the helpers every backend uses, and what is the same for every
 * backend (see cgroup.h for the contract, cgroup-internal.h for the backend table). */
#include "server/drivers/cgroup-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/id.h"

#define CGROUP_ROOT "/sys/fs/cgroup"
#define DESTROY_TRIES 50           /* kill + rmdir rounds */
#define DESTROY_PAUSE_NS 10000000L /* 10 ms between rounds: under a second in all */
#define CFS_MIN_QUOTA_US 1000      /* the kernel's minimum */

/* ---- helpers ------------------------------------------------------------------------------------------------ */

int
nex_cgroup_write (const char *path, const char *text, nex_error_t *err)
{
  cleanup_close int fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "open `%s`", path);
  size_t n = strlen (text);
  ssize_t w = write (fd, text, n);
  if (w < 0 || (size_t)w != n)
    return nex_error_sys (err, w < 0 ? errno : EIO, "write `%s` to `%s`", text, path);
  return 0;
}

int64_t
nex_cgroup_read_int (const char *path)
{
  cleanup_free char *text = nex_file_read (path, 4096, NULL, NULL);
  if (text == NULL)
    return -1;
  if (strncmp (text, "max", 3) == 0)
    return -1;
  char *end;
  errno = 0;
  long long v = strtoll (text, &end, 10);
  if (errno || end == text)
    return -1;
  return v;
}

int64_t
nex_cgroup_read_key (const char *path, const char *key)
{
  cleanup_free char *text = nex_file_read (path, 65536, NULL, NULL);
  if (text == NULL)
    return -1;
  size_t klen = strlen (key);
  for (char *line = text; line && *line; line = strchr (line, '\n') ? strchr (line, '\n') + 1 : NULL)
    if (strncmp (line, key, klen) == 0 && line[klen] == ' ')
      return strtoll (line + klen + 1, NULL, 10);
  return -1;
}

/* The path on the line of TEXT (a /proc/PID/cgroup, cut up by the search) that nex_cgroup_self_path selects
 * with CONTROLLER; a new string, or NULL when there is no such line. */
static char *
path_in (char *text, const char *controller)
{
  char *save = NULL;
  for (char *line = strtok_r (text, "\n", &save); line; line = strtok_r (NULL, "\n", &save))
    {
      /* hierarchy-id:controller-list:path */
      char *c1 = strchr (line, ':');
      char *c2 = c1 ? strchr (c1 + 1, ':') : NULL;
      if (c2 == NULL)
        continue;
      *c2 = '\0';
      const char *list = c1 + 1;
      if (controller[0] == '\0')
        {
          if (strcmp (line, "0:") == 0 && list[0] == '\0')
            return nex_xstrdup (c2 + 1);
          continue;
        }
      cleanup_free char *copy = nex_xstrdup (list);
      char *s2 = NULL;
      for (char *tok = strtok_r (copy, ",", &s2); tok; tok = strtok_r (NULL, ",", &s2))
        if (strcmp (tok, controller) == 0)
          return nex_xstrdup (c2 + 1);
    }
  return NULL;
}

char *
nex_cgroup_self_path (const char *controller)
{
  cleanup_free char *text = nex_file_read ("/proc/self/cgroup", 65536, NULL, NULL);
  return text ? path_in (text, controller) : NULL;
}

int
nex_cgroup_dir_exists (const char *path)
{
  struct stat st;
  return stat (path, &st) == 0 && S_ISDIR (st.st_mode);
}

long long
nex_cgroup_cfs_quota_us (double vcpus)
{
  long long quota = (long long)(vcpus * NEX_CGROUP_CFS_PERIOD_US + 0.5);
  return quota < CFS_MIN_QUOTA_US ? CFS_MIN_QUOTA_US : quota;
}

/* ---- the manager -------------------------------------------------------------------------------------------- */

nex_cgroups_t *
nex_cgroups_open_with (const nex_cgroup_backend_t *backend, const char *mode, nex_error_t *err)
{
  nex_cgroups_t *cg = nex_xzalloc (sizeof *cg);
  cg->backend = backend;
  cg->mode = mode;
  if (cg->backend->open (cg, err) < 0)
    {
      if (err && *err)
        (*err)->kind = NEX_ERR_UNAVAILABLE;
      nex_error_wrap (err, "cgroups (%s)", mode);
      free (cg);
      return NULL;
    }
  return cg;
}

nex_cgroups_t *
nex_cgroups_open (nex_error_t *err)
{
  struct statfs root, unified;
  if (geteuid () != 0)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "cgroups: nexd is not root");
      return NULL;
    }
  if (statfs (CGROUP_ROOT, &root) < 0)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "cgroups: statfs " CGROUP_ROOT ": %s", strerror (errno));
      return NULL;
    }
  if (root.f_type == CGROUP2_SUPER_MAGIC)
    return nex_cgroups_open_with (&nex_cgroup_backend_v2, "v2", err);
  /* A tmpfs of per-controller v1 mounts; systemd's hybrid layout adds a controller-less v2 tree at unified/,
   * which changes nothing for limits: the controllers are all bound to v1. */
  int hybrid = statfs (CGROUP_ROOT "/unified", &unified) == 0 && unified.f_type == CGROUP2_SUPER_MAGIC;
  return nex_cgroups_open_with (&nex_cgroup_backend_v1, hybrid ? "hybrid" : "v1", err);
}

void
nex_cgroups_close (nex_cgroups_t *cg)
{
  if (cg == NULL)
    return;
  cg->backend->close (cg);
  free (cg);
}

const char *
nex_cgroups_mode (const nex_cgroups_t *cg)
{
  return cg->mode;
}

/* Names are workload ids: nothing else may become a path component under the parent. */
static int
check_name (const char *name, nex_error_t *err)
{
  if (!nex_id_valid (name))
    return nex_error_set (err, NEX_ERR_INVALID, "cgroup name `%s` is not a workload id", name);
  return 0;
}

int
nex_cgroups_create (nex_cgroups_t *cg, const char *name, const nex_cgroup_limits_t *l, nex_error_t *err)
{
  if (check_name (name, err) < 0)
    return -1;
  if (cg->backend->create (cg, name, l, err) < 0)
    {
      cg->backend->remove (cg, name);
      return nex_error_wrap (err, "create cgroup `%s`", name);
    }
  return 0;
}

int
nex_cgroups_attach (nex_cgroups_t *cg, const char *name, pid_t pid, nex_error_t *err)
{
  if (check_name (name, err) < 0)
    return -1;
  return cg->backend->attach (cg, name, pid, err);
}

int
nex_cgroups_stats (nex_cgroups_t *cg, const char *name, nex_cgroup_stats_t *out, nex_error_t *err)
{
  if (check_name (name, err) < 0)
    return -1;
  return cg->backend->stats (cg, name, out, err);
}

int
nex_cgroups_freeze (nex_cgroups_t *cg, const char *name, int frozen, nex_error_t *err)
{
  if (check_name (name, err) < 0)
    return -1;
  if (cg->backend->freeze (cg, name, frozen, err) < 0)
    {
      if (err && *err && (*err)->errnum == ENOENT)
        (*err)->kind = NEX_ERR_NOT_FOUND;
      return nex_error_wrap (err, "%s cgroup `%s`", frozen ? "freezing" : "thawing", name);
    }
  return 0;
}

int
nex_cgroups_holds (nex_cgroups_t *cg, const char *name, pid_t pid)
{
  if (!nex_id_valid (name))
    return 0;
  cleanup_free char *proc = nex_xasprintf ("/proc/%d/cgroup", (int)pid);
  cleanup_free char *text = nex_file_read (proc, 65536, NULL, NULL);
  if (text == NULL)
    return -1;
  cleanup_free char *path = path_in (text, cg->backend->holds_controller);
  cleanup_free char *suffix = nex_xasprintf ("/nex/%s", name);
  size_t n = path ? strlen (path) : 0, k = strlen (suffix);
  return n >= k && strcmp (path + n - k, suffix) == 0;
}

/* Moves every process listed in FROM_DIR/cgroup.procs into cgroup TO. */
static int
move_procs (nex_cgroups_t *cg, const char *from_dir, const char *to, nex_error_t *err)
{
  cleanup_free char *path = nex_xasprintf ("%s/cgroup.procs", from_dir);
  cleanup_free char *text = nex_file_read (path, 1 << 20, NULL, err);
  if (text == NULL)
    return -1;
  for (char *p = text; *p;)
    {
      char *end;
      long pid = strtol (p, &end, 10);
      if (end == p)
        break;
      if (pid > 0 && cg->backend->attach (cg, to, (pid_t)pid, err) < 0)
        return -1;
      p = end;
      while (*p == '\n')
        p++;
    }
  return 0;
}

int
nex_cgroups_rename (nex_cgroups_t *cg, const char *from, const char *to, const nex_cgroup_limits_t *l, nex_error_t *err)
{
  if (check_name (from, err) < 0 || check_name (to, err) < 0)
    return -1;
  if (cg->backend->rename)
    {
      if (cg->backend->rename (cg, from, to) < 0)
        return nex_error_sys (err, errno, "rename cgroup `%s` to `%s`", from, to);
      /* create on an existing cgroup only writes the limits (those of 0 stay unlimited, as made). */
      return cg->backend->create (cg, to, l, err) < 0 ? nex_error_wrap (err, "limit cgroup `%s`", to) : 0;
    }
  if (nex_cgroups_create (cg, to, l, err) < 0)
    return -1;
  cleanup_free char *dir = cg->backend->procs_dir (cg, from);
  if (move_procs (cg, dir, to, err) < 0)
    return nex_error_wrap (err, "move cgroup `%s` to `%s`", from, to);
  cg->backend->remove (cg, from);
  return 0;
}

/* SIGKILLs every process listed in DIR/cgroup.procs; how many were listed. */
static int
kill_procs (const char *dir)
{
  cleanup_free char *path = nex_xasprintf ("%s/cgroup.procs", dir);
  cleanup_free char *text = nex_file_read (path, 1 << 20, NULL, NULL);
  int n = 0;
  if (text == NULL)
    return 0;
  for (char *p = text; *p;)
    {
      char *end;
      long pid = strtol (p, &end, 10);
      if (end == p)
        break;
      if (pid > 1)
        {
          kill ((pid_t)pid, SIGKILL);
          n++;
        }
      p = end;
      while (*p == '\n')
        p++;
    }
  return n;
}

int
nex_cgroups_destroy (nex_cgroups_t *cg, const char *name, nex_error_t *err)
{
  if (check_name (name, err) < 0)
    return -1;
  cleanup_free char *dir = cg->backend->procs_dir (cg, name);
  for (int i = 0; i < DESTROY_TRIES; i++)
    {
      kill_procs (dir);
      if (cg->backend->remove (cg, name) == 0 || errno == ENOENT)
        return 0;
      if (errno != EBUSY)
        return nex_error_sys (err, errno, "remove cgroup `%s`", name);
      /* Killed processes take a moment to exit and leave the cgroup. */
      struct timespec pause = { 0, DESTROY_PAUSE_NS };
      nanosleep (&pause, NULL);
    }
  return nex_error_sys (err, EBUSY, "remove cgroup `%s`: processes remain", name);
}

char **
nex_cgroups_list (nex_cgroups_t *cg)
{
  cleanup_free char *parent = cg->backend->parent_dir (cg);
  char **names = nex_xzalloc (sizeof *names);
  size_t n = 0;
  cleanup_dir DIR *d = opendir (parent);
  if (d == NULL)
    return names;
  struct dirent *de;
  while ((de = readdir (d)) != NULL)
    if (de->d_type == DT_DIR && nex_id_valid (de->d_name))
      {
        names = nex_xrealloc (names, (n + 2) * sizeof *names);
        names[n++] = nex_xstrdup (de->d_name);
        names[n] = NULL;
      }
  return names;
}
