/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/image-config.c — the OCI config's conversion into a process (contract in image-config.h). */
#include "server/artifacts/image-config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/drivers/driver.h"

#define ID_FILE_MAX (1024 * 1024) /* /etc/passwd or /etc/group read at most */

static void
append_all (json_t *to, const json_t *from)
{
  size_t i;
  json_t *v;
  json_array_foreach (from, i, v)
  {
    if (json_is_string (v))
      json_array_append_new (to, json_string (json_string_value (v)));
  }
}

static json_t *
build_argv (const json_t *cfg, const nex_workload_t *w, nex_error_t *err)
{
  json_t *argv = json_array ();
  if (w->entrypoint)
    {
      append_all (argv, w->entrypoint);
      append_all (argv, w->cmd);
    }
  else
    {
      append_all (argv, json_object_get (cfg, "Entrypoint"));
      append_all (argv, w->cmd ? w->cmd : json_object_get (cfg, "Cmd"));
    }
  if (json_array_size (argv) == 0 || json_string_length (json_array_get (argv, 0)) == 0)
    {
      json_decref (argv);
      nex_error_field (err, "cmd", "the image has no Entrypoint or Cmd: give `entrypoint` or `cmd`");
      return NULL;
    }
  return argv;
}

/* The image's file PATH (absolute inside TREE), read with the image's symlinks resolved inside it; NULL when it
 * cannot be read. */
static char *
read_in_image (const char *tree, const char *path)
{
  cleanup_close int root = open (tree, O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct open_how how
      = { .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
  cleanup_close int fd = root < 0 ? -1 : (int)syscall (SYS_openat2, root, path, &how, sizeof how);
  if (fd < 0)
    return NULL;
  char *buf = nex_xmalloc (ID_FILE_MAX + 1);
  size_t len = 0;
  for (;;)
    {
      ssize_t n = read (fd, buf + len, ID_FILE_MAX - len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      len += (size_t)n;
      if (len == ID_FILE_MAX)
        break;
    }
  buf[len] = '\0';
  return buf;
}

/* Field I (0-based) of colon-separated LINE into OUT (at most CAP-1 bytes). */
static int
field_of (const char *line, int i, char *out, size_t cap)
{
  const char *p = line;
  for (int k = 0; k < i; k++)
    {
      p = strchr (p, ':');
      if (p == NULL)
        return -1;
      p++;
    }
  size_t n = strcspn (p, ":\n");
  if (n >= cap)
    n = cap - 1;
  memcpy (out, p, n);
  out[n] = '\0';
  return 0;
}

static int
parse_id (const char *s, int64_t *out)
{
  if (s[0] == '\0')
    return -1;
  int64_t v = 0;
  for (const char *p = s; *p; p++)
    {
      if (!isdigit ((unsigned char)*p) || v > (1LL << 32))
        return -1;
      v = v * 10 + (*p - '0');
    }
  *out = v;
  return 0;
}

/* Finds the entry of TEXT (passwd or group format) whose name (field 0) is NAME, or whose id (field 2) is ID
 * when NAME is NULL; fills *ID, and for passwd *GID (field 3) and HOME (field 5).  1 when found. */
static int
lookup (const char *text, const char *name, int64_t *id, int64_t *gid, char *home, size_t home_cap, char *found_name,
        size_t name_cap)
{
  for (const char *line = text; line && *line; line = strchr (line, '\n') ? strchr (line, '\n') + 1 : NULL)
    {
      char f0[256], f2[32], f3[32];
      if (line[0] == '#' || field_of (line, 0, f0, sizeof f0) < 0 || field_of (line, 2, f2, sizeof f2) < 0)
        continue;
      int64_t v;
      if (parse_id (f2, &v) < 0)
        continue;
      if (name ? strcmp (f0, name) != 0 : v != *id)
        continue;
      *id = v;
      if (gid && field_of (line, 3, f3, sizeof f3) == 0 && parse_id (f3, &v) == 0)
        *gid = v;
      if (home && field_of (line, 5, home, home_cap) < 0)
        home[0] = '\0';
      if (found_name)
        snprintf (found_name, name_cap, "%s", f0);
      return 1;
    }
  return 0;
}

/* The groups of /etc/group (TEXT) that list USER as a member, appended to GROUPS. */
static void
member_groups (const char *text, const char *user, json_t *groups)
{
  for (const char *line = text; line && *line; line = strchr (line, '\n') ? strchr (line, '\n') + 1 : NULL)
    {
      char f2[32], members[4096];
      int64_t gid;
      if (field_of (line, 2, f2, sizeof f2) < 0 || parse_id (f2, &gid) < 0 || gid >= NEX_SANDBOX_ID_COUNT
          || field_of (line, 3, members, sizeof members) < 0)
        continue;
      for (char *save = NULL, *m = strtok_r (members, ",", &save); m; m = strtok_r (NULL, ",", &save))
        if (strcmp (m, user) == 0)
          json_array_append_new (groups, json_integer (gid));
    }
}

/* Resolves USER ("" for root) inside TREE into uid, gid, groups and home, set on PROC. */
static int
resolve_user (const char *tree, const char *user, json_t *proc, char *home, size_t home_cap, nex_error_t *err)
{
  char u[256] = "", g[256] = "";
  const char *colon = strchr (user, ':');
  snprintf (u, sizeof u, "%.*s", colon ? (int)(colon - user) : (int)strlen (user), user);
  if (colon)
    snprintf (g, sizeof g, "%s", colon + 1);
  if (u[0] == '\0')
    snprintf (u, sizeof u, "0");
  cleanup_free char *passwd = read_in_image (tree, "/etc/passwd");
  cleanup_free char *group = read_in_image (tree, "/etc/group");
  int64_t uid = 0, gid = 0;
  char name[256] = "";
  home[0] = '\0';
  if (parse_id (u, &uid) == 0)
    lookup (passwd ? passwd : "", NULL, &uid, &gid, home, home_cap, name, sizeof name);
  else if (!passwd || !lookup (passwd, u, &uid, &gid, home, home_cap, name, sizeof name))
    return nex_error_field (err, "user", "user `%s` is not in the image's /etc/passwd", u);
  if (g[0] && parse_id (g, &gid) < 0 && (!group || !lookup (group, g, &gid, NULL, NULL, 0, NULL, 0)))
    return nex_error_field (err, "user", "group `%s` is not in the image's /etc/group", g);
  if (uid >= NEX_SANDBOX_ID_COUNT || gid >= NEX_SANDBOX_ID_COUNT)
    return nex_error_field (err, "user", "user `%s` (%lld:%lld) is beyond the sandbox's ids (0 to %d)", user,
                            (long long)uid, (long long)gid, NEX_SANDBOX_ID_COUNT - 1);
  json_t *groups = json_array ();
  if (name[0] && group && !g[0])
    member_groups (group, name, groups);
  json_object_set_new (proc, "uid", json_integer (uid));
  json_object_set_new (proc, "gid", json_integer (gid));
  json_object_set_new (proc, "groups", groups);
  json_object_set_new (proc, "user", json_string (user[0] ? user : "0"));
  return 0;
}

/* CWD: absolute, no `.`/`..` components, not under /proc. */
static int
check_cwd (const char *cwd, const char *field, nex_error_t *err)
{
  if (cwd[0] != '/')
    return nex_error_field (err, field, "working directory `%s` is not absolute", cwd);
  for (const char *p = cwd; *p; p++)
    if (p[0] == '/' && p[1] == '.' && (p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || p[3] == '\0'))))
      return nex_error_field (err, field, "working directory `%s` has `.` or `..` components", cwd);
  if (strcmp (cwd, "/proc") == 0 || strncmp (cwd, "/proc/", 6) == 0)
    return nex_error_field (err, field, "working directory `%s` is under /proc (it could lead out of the root)", cwd);
  return 0;
}

static json_t *
build_env (const json_t *cfg, const nex_workload_t *w, const char *home)
{
  json_t *env = json_object ();
  size_t i;
  json_t *v;
  json_array_foreach (json_object_get (cfg, "Env"), i, v)
  {
    const char *kv = json_string_value (v);
    const char *eq = kv ? strchr (kv, '=') : NULL;
    if (eq == NULL || eq == kv)
      continue;
    cleanup_free char *key = nex_xstrndup (kv, (size_t)(eq - kv));
    json_object_set_new (env, key, json_string (eq + 1));
  }
  json_object_update (env, w->env);
  if (json_object_get (env, "PATH") == NULL)
    json_object_set_new (env, "PATH", json_string (NEX_IMAGE_DEFAULT_PATH));
  if (json_object_get (env, "HOME") == NULL)
    {
      /* A home from the image's /etc/passwd that is not UTF-8 makes no JSON string: `/` then, as for no home at all
       * (found by fuzz-image-config: HOME was left out). */
      json_t *h = json_string (home[0] ? home : "/");
      json_object_set_new (env, "HOME", h ? h : json_string ("/"));
    }
  return env;
}

json_t *
nex_image_config_process (const json_t *config, const nex_workload_t *w, const char *tree, nex_error_t *err)
{
  const json_t *cfg = json_object_get (config, "config");
  cleanup_json json_t *proc = json_object ();
  json_t *argv = build_argv (cfg, w, err);
  if (argv == NULL)
    return NULL;
  json_object_set_new (proc, "path", json_string (json_string_value (json_array_get (argv, 0))));
  json_object_set_new (proc, "argv", argv);

  const char *wd = json_string_value (json_object_get (cfg, "WorkingDir"));
  const char *cwd = w->cwd ? w->cwd : wd && wd[0] ? wd : "/";
  if (check_cwd (cwd, w->cwd ? "cwd" : "image", err) < 0)
    return NULL;
  json_object_set_new (proc, "cwd", json_string (cwd));

  const char *img_user = json_string_value (json_object_get (cfg, "User"));
  const char *user = w->user ? w->user : img_user ? img_user : "";
  char home[1024];
  if (resolve_user (tree, user, proc, home, sizeof home, err) < 0)
    return NULL;
  json_object_set_new (proc, "env", build_env (cfg, w, home));
  return NEX_STEAL_PTR (proc);
}
