/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-image-config.c — feeds hostile bytes to the conversion of an OCI image config into a process
 * (nex_image_config_process, server/artifacts/image-config.c): the config's Entrypoint, Cmd, Env, WorkingDir and
 * User, the image's own /etc/passwd and /etc/group (read inside the image's tree, parsed for names, ids, homes and
 * supplementary groups), and the request's overrides.  The input is up to four parts separated by NUL bytes:
 *
 *   config JSON \0 /etc/passwd \0 /etc/group \0 overrides JSON {entrypoint, cmd, env, cwd, user}
 *
 * A missing passwd or group part means the image has no such file.  The overrides are taken only with the types
 * nex_workload_from_request lets through (arrays of strings, an object of strings, strings), as nexd calls the
 * function only after that check; the config only when it is a JSON object, as distribution.c's read_config
 * hands over nothing else.  The tree is a temporary directory made and removed in each run.
 *
 * Invariants: a refusal is NEX_ERR_INVALID naming cmd, cwd, image or user; an accepted process has a non-empty
 * argv of strings whose first is `path`, a working directory that is absolute, without `.`/`..` and not under
 * /proc (CVE-2024-21626), uid, gid and groups inside the sandbox's ids, `user` as asked ("0" for none), and an
 * env object of strings with PATH and HOME. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifacts/image-config.h"
#include "server/artifacts/layer.h"
#include "server/drivers/driver.h"
#include "tests/fuzz/fuzz.h"

/* The image's tree for one run: a temporary directory with etc/. */
static void
make_tree (char tree[64])
{
  snprintf (tree, 64, "%s/nex-fuzz-image-config.XXXXXX", fuzz_tmp_base ());
  fuzz_check (mkdtemp (tree) != NULL, "a temporary directory is made");
  cleanup_free char *etc = nex_xasprintf ("%s/etc", tree);
  fuzz_check (mkdir (etc, 0755) == 0, "etc/ is made");
}

/* Writes LEN bytes at P as the image's file NAME, or removes it when P is NULL. */
static void
put_file (const char *tree, const char *name, const char *p, size_t len)
{
  if (p == NULL)
    return;
  cleanup_free char *path = nex_xasprintf ("%s/etc/%s", tree, name);
  cleanup_close int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  fuzz_check (fd >= 0 && write (fd, p, len) == (ssize_t)len, "the image's file is written");
}

/* The next NUL-separated part of [*P, END): its start and length; NULL when there is none. */
static const char *
next_part (const char **p, const char *end, size_t *len)
{
  if (*p == NULL || *p > end)
    return NULL;
  const char *start = *p;
  const char *nul = memchr (start, '\0', (size_t)(end - start));
  *len = nul ? (size_t)(nul - start) : (size_t)(end - start);
  *p = nul ? nul + 1 : NULL;
  return start;
}

static int
all_strings (const json_t *a)
{
  size_t i;
  json_t *v;
  json_array_foreach (a, i, v)
  {
    if (!json_is_string (v))
      return 0;
  }
  return json_is_array (a);
}

static int
all_string_values (const json_t *o)
{
  const char *k;
  json_t *v;
  json_object_foreach ((json_t *)o, k, v)
  {
    if (!json_is_string (v))
      return 0;
  }
  return json_is_object (o);
}

/* The request's overrides from OVR onto W, each only with the type the deploy check lets through. */
static void
overrides (const json_t *ovr, nex_workload_t *w)
{
  const json_t *v;
  if (all_strings (v = json_object_get (ovr, "entrypoint")))
    w->entrypoint = json_incref ((json_t *)v);
  if (all_strings (v = json_object_get (ovr, "cmd")))
    w->cmd = json_incref ((json_t *)v);
  w->env = all_string_values (v = json_object_get (ovr, "env")) ? json_incref ((json_t *)v) : json_object ();
  if (json_is_string (v = json_object_get (ovr, "cwd")))
    w->cwd = nex_xstrdup (json_string_value (v));
  if (json_is_string (v = json_object_get (ovr, "user")))
    w->user = nex_xstrdup (json_string_value (v));
}

static int
cwd_ok (const char *cwd)
{
  if (cwd == NULL || cwd[0] != '/' || strcmp (cwd, "/proc") == 0 || strncmp (cwd, "/proc/", 6) == 0)
    return 0;
  for (const char *p = cwd; *p; p++)
    if (p[0] == '/' && p[1] == '.' && (p[2] == '/' || p[2] == '\0' || (p[2] == '.' && (p[3] == '/' || p[3] == '\0'))))
      return 0;
  return 1;
}

static int
id_ok (const json_t *v)
{
  return json_is_integer (v) && json_integer_value (v) >= 0 && json_integer_value (v) < NEX_SANDBOX_ID_COUNT;
}

static void
check_process (const json_t *proc, const nex_workload_t *w, const json_t *config)
{
  const json_t *argv = json_object_get (proc, "argv");
  const char *path = json_string_value (json_object_get (proc, "path"));
  fuzz_check (all_strings (argv) && json_array_size (argv) > 0 && path && path[0]
                  && strcmp (path, json_string_value (json_array_get (argv, 0))) == 0,
              "argv is a non-empty array of strings whose first is path");
  fuzz_check (cwd_ok (json_string_value (json_object_get (proc, "cwd"))),
              "the working directory is absolute, without . or .., not under /proc");
  fuzz_check (id_ok (json_object_get (proc, "uid")) && id_ok (json_object_get (proc, "gid")),
              "uid and gid lie in the sandbox's range");
  const json_t *groups = json_object_get (proc, "groups");
  size_t i;
  const json_t *g;
  fuzz_check (json_is_array (groups), "groups is an array");
  json_array_foreach (groups, i, g) fuzz_check (id_ok (g), "each group lies in the sandbox's range");
  const char *img_user = json_string_value (json_object_get (json_object_get (config, "config"), "User"));
  const char *want = w->user ? w->user : img_user ? img_user : "";
  fuzz_check (strcmp (json_string_value (json_object_get (proc, "user")), want[0] ? want : "0") == 0,
              "user is the one asked for");
  const json_t *env = json_object_get (proc, "env");
  fuzz_check (all_string_values (env) && json_object_get (env, "PATH") && json_object_get (env, "HOME"),
              "env is an object of strings with PATH and HOME");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  const char *p = (const char *)data, *end = p + size;
  size_t clen = 0, plen = 0, glen = 0, olen = 0;
  const char *ctext = next_part (&p, end, &clen);
  const char *passwd = next_part (&p, end, &plen);
  const char *group = next_part (&p, end, &glen);
  const char *otext = next_part (&p, end, &olen);
  cleanup_json json_t *config = ctext ? json_loadb (ctext, clen, 0, NULL) : NULL;
  if (!json_is_object (config))
    return 0;
  cleanup_json json_t *ovr = otext ? json_loadb (otext, olen, 0, NULL) : NULL;
  char tree[64];
  make_tree (tree);
  put_file (tree, "passwd", passwd, plen);
  put_file (tree, "group", group, glen);
  nex_workload_t w = { 0 };
  overrides (ovr, &w);
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *proc = nex_image_config_process (config, &w, tree, &err);
  if (proc == NULL)
    {
      static const char *const fields[] = { "cmd", "cwd", "image", "user" };
      int known = 0;
      for (size_t i = 0; err && err->field && i < 4; i++)
        known |= strcmp (err->field, fields[i]) == 0;
      fuzz_check (err && err->kind == NEX_ERR_INVALID && known,
                  "a refusal is NEX_ERR_INVALID naming cmd, cwd, image or user");
    }
  else
    check_process (proc, &w, config);
  nex_workload_release (&w);
  fuzz_check (nex_layer_remove_tree (AT_FDCWD, tree) == 0, "the tree is removed");
  return 0;
}
