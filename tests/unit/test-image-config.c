/* SPDX-License-Identifier: Apache-2.0 */
/* test-image-config.c — unit tests of the OCI config's conversion into a process (server/artifacts/image-config.c):
 * argv from Entrypoint and Cmd, the user looked up in the image's own /etc/passwd and /etc/group, HOME, and the
 * inputs fuzz-image-config found wrong once. */
#include <string.h>
#include <sys/stat.h>

#include "common/cleanup.h"
#include "server/artifacts/image-config.h"
#include "tests/unit/tap.h"
#include "tests/unit/testutil.h"

/* The process for config CONFIG (JSON text) in the scratch tree, whose /etc/passwd is PASSWD (NULL: none). */
static json_t *
process (const char *config, const char *passwd, const char *group, nex_error_t *err)
{
  cleanup_free char *etc = test_path ("etc");
  mkdir (etc, 0755);
  cleanup_free char *p = test_path ("etc/passwd");
  cleanup_free char *g = test_path ("etc/group");
  unlink (p);
  unlink (g);
  if (passwd)
    test_write_text (p, passwd, 0644);
  if (group)
    test_write_text (g, group, 0644);
  cleanup_json json_t *cfg = json_loads (config, 0, NULL);
  nex_workload_t w = { 0 };
  w.env = json_object ();
  json_t *proc = nex_image_config_process (cfg, &w, test_dir (), err);
  nex_workload_release (&w);
  return proc;
}

static const char *
env_of (const json_t *proc, const char *key)
{
  return json_string_value (json_object_get (json_object_get (proc, "env"), key));
}

int
main (void)
{
  static const char passwd[] = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";
  static const char group[] = "root:x:0:\nwheel:x:10:app\napp:x:1000:\n";
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *proc = process ("{\"config\":{\"Entrypoint\":[\"/bin/sh\",\"-c\"],\"Cmd\":[\"echo\"],"
                                       "\"User\":\"app\",\"WorkingDir\":\"/srv\"}}",
                                       passwd, group, &err);
  TAP_OK (proc && json_array_size (json_object_get (proc, "argv")) == 3
              && strcmp (json_string_value (json_object_get (proc, "path")), "/bin/sh") == 0
              && json_integer_value (json_object_get (proc, "uid")) == 1000
              && json_integer_value (json_array_get (json_object_get (proc, "groups"), 0)) == 10
              && strcmp (json_string_value (json_object_get (proc, "cwd")), "/srv") == 0,
          "a named user: argv, uid, supplementary group, cwd (%s)", proc ? "ok" : err->msg);
  TAP_OK (proc && env_of (proc, "HOME") && strcmp (env_of (proc, "HOME"), "/home/app") == 0,
          "HOME is the user's home from /etc/passwd");
  json_decref (proc);

  /* fuzz-image-config: a home that is not UTF-8 made no JSON string, and HOME went missing. */
  proc = process ("{\"config\":{\"Cmd\":[\"x\"],\"User\":\"app\"}}", "app:x:1000:1000::/home/\xe0\xe0:/bin/sh\n", NULL,
                  &err);
  TAP_OK (proc && env_of (proc, "HOME") && strcmp (env_of (proc, "HOME"), "/") == 0,
          "a home that is not UTF-8 gives HOME=/ (%s)", proc ? "ok" : err->msg);
  json_decref (proc);

  nex_error_free (&err);
  proc = process ("{\"config\":{\"Cmd\":[\"x\"],\"User\":\"ghost\"}}", passwd, group, &err);
  TAP_OK (proc == NULL && err && err->kind == NEX_ERR_INVALID && strcmp (err->field, "user") == 0,
          "a user not in /etc/passwd is refused on field user");
  return tap_done ();
}
