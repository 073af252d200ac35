/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot.c — see snapshot.h.  The files and their record: the files (the driver's: nex_driver_snapshot_size
 * and _remove know them) are written first and recorded once complete, so a record always names whole files; a
 * delete removes the files first, so a record without files (a crash in between) is refused at deploy and can
 * still be deleted. */
#include "server/snapshot.h"

#include <pthread.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/drivers/driver.h"
#include "server/drivers/vm.h"
#include "server/id.h"

/* One snapshot at a time on the node: a VM's QMP takes one client, and two migrations would share the disk. */
static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;

/* The deploy fields a restore takes from the record; a request may give only the others listed here. */
static const char *const request_may_give[] = { "from_snapshot", "name", "namespace", "description", "labels", NULL };

/* R's resources without the members it left unset (the deploy request refuses nulls). */
static json_t *
resources_set (const nex_resources_t *r)
{
  json_t *o = nex_resources_to_json (r);
  const char *key;
  json_t *v;
  void *tmp;
  json_object_foreach_safe (o, tmp, key, v)
  {
    if (json_is_null (v))
      json_object_del (o, key);
  }
  return o;
}

/* What a restore of W's VM must repeat (snapshot.h). */
static json_t *
spec_of (const nex_workload_t *w, const nex_driver_t *d)
{
  cleanup_free char *why = NULL;
  cleanup_free char *kvm_reason = NULL;
  cleanup_free char *kernel = d->kernel_file ? nex_vm_kernel_file (d->kernel_file, &why) : NULL;
  const char *accel = nex_driver_accel (d, &kvm_reason);
  return json_pack ("{s:s, s:s, s:s?, s:s?, s:o, s:O, s:O, s:s?, s:s?}", "name", w->name, "namespace", w->namespace_,
                    "artifact", w->artifact, "digest", w->digest, "resources", resources_set (&w->resources), "argv",
                    w->argv, "env", w->env, "kernel", kernel, "accel", accel);
}

/* Checks that workload W can be snapshotted by D now; 0 or -1. */
static int
check_source (const nex_workload_t *w, const nex_driver_t *d, nex_error_t *err)
{
  if (d == NULL || d->snapshot == NULL)
    return nex_error_set (err, NEX_ERR_INVALID, "snapshots are for microVMs: workload %s runs in the %s driver", w->id,
                          w->driver);
  if (w->net)
    return nex_error_set (err, NEX_ERR_INVALID,
                          "workload %s is on network bridge: snapshots of networked VMs are not supported yet", w->id);
  if (w->state != NEX_STATE_RUNNING && w->state != NEX_STATE_PAUSED)
    return nex_error_set (err, NEX_ERR_CONFLICT, "workload %s is %s: only a running or paused VM can be snapshotted",
                          w->id, nex_state_name (w->state));
  if (w->artifact == NULL || w->digest == NULL)
    return nex_error_set (err, NEX_ERR_INVALID,
                          "workload %s runs an image: snapshots of image VMs are not supported yet", w->id);
  return 0;
}

json_t *
nex_snapshot_take (nex_node_t *node, const char *workload_id, nex_error_t *err)
{
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_registry_workload_get (node->reg, workload_id, &w, err) < 0)
    return NULL;
  const nex_driver_t *d = nex_driver_find (w.driver);
  if (check_source (&w, d, err) < 0)
    return NULL;
  cleanup_free char *dir = nex_xasprintf ("%s/snapshots", node->data_dir);
  if (nex_mkdir_p (dir, 0700, err) < 0)
    return NULL;
  cleanup_with (nex_snapshot_row_release) nex_snapshot_row_t row = { 0 };
  nex_id_new (row.id);
  snprintf (row.workload_id, sizeof row.workload_id, "%s", w.id);
  row.driver = nex_xstrdup (d->name);
  row.path = nex_xasprintf ("%s/%s.vmstate", dir, row.id);
  row.spec = spec_of (&w, d);
  cleanup_free char *run_dir = nex_xasprintf ("%s/%s", node->run_dir, w.id);
  nex_instance_t inst = { .pid = (pid_t)w.pid, .endpoint = w.endpoint, .run_dir = run_dir };
  int64_t t0 = nex_clock_mono_ms ();
  pthread_mutex_lock (&snapshot_lock);
  int r = nex_driver_snapshot (d, &inst, row.path, w.state == NEX_STATE_PAUSED, err);
  pthread_mutex_unlock (&snapshot_lock);
  if (r < 0)
    {
      nex_error_wrap (err, "snapshot of workload %s", w.id);
      return NULL;
    }
  row.size_bytes = nex_driver_snapshot_size (d, row.path);
  row.created_at = nex_clock_now_ms ();
  if (nex_registry_snapshot_put (node->reg, &row, err) < 0)
    {
      nex_driver_snapshot_remove (d, row.path, NULL);
      return NULL;
    }
  nex_node_emit (node, "workload_snapshotted", &w,
                 json_pack ("{s:s, s:I, s:I}", "snapshot_id", row.id, "size_bytes", (json_int_t)row.size_bytes,
                            "took_ms", (json_int_t)(nex_clock_mono_ms () - t0)));
  return nex_snapshot_to_json (&row);
}

json_t *
nex_snapshot_to_json (const nex_snapshot_row_t *r)
{
  char at[NEX_CLOCK_RFC3339_LEN];
  json_t *o = json_pack ("{s:s, s:s, s:s, s:s, s:I}", "id", r->id, "workload_id", r->workload_id, "driver", r->driver,
                         "created_at", nex_clock_format (r->created_at, at, sizeof at), "size_bytes",
                         (json_int_t)r->size_bytes);
  json_object_update_missing (o, r->spec);
  return o;
}

int
nex_snapshot_delete (nex_node_t *node, const char *id, nex_error_t *err)
{
  cleanup_with (nex_snapshot_row_release) nex_snapshot_row_t row = { 0 };
  int found = nex_registry_snapshot_get (node->reg, id, &row, err);
  if (found <= 0)
    return found < 0 ? -1 : nex_error_set (err, NEX_ERR_NOT_FOUND, "no snapshot %s", id);
  const nex_driver_t *d = nex_driver_find (row.driver);
  if (d && nex_driver_snapshot_remove (d, row.path, err) < 0)
    return -1;
  return nex_registry_snapshot_delete (node->reg, id, err);
}

char *
nex_snapshot_file (nex_node_t *node, const char *id, nex_error_t *err)
{
  cleanup_with (nex_snapshot_row_release) nex_snapshot_row_t row = { 0 };
  int found = nex_registry_snapshot_get (node->reg, id, &row, err);
  if (found <= 0)
    {
      if (found == 0)
        nex_error_set (err, NEX_ERR_NOT_FOUND, "snapshot %s was deleted", id);
      return NULL;
    }
  return NEX_STEAL_PTR (row.path);
}

/* Refuses members of REQUEST that a restore takes from the snapshot. */
static int
check_request_fields (const json_t *request, nex_error_t *err)
{
  const char *key;
  const json_t *v;
  json_object_foreach ((json_t *)request, key, v)
  {
    size_t i = 0;
    while (request_may_give[i] && strcmp (request_may_give[i], key) != 0)
      i++;
    if (request_may_give[i] == NULL)
      return nex_error_field (err, key,
                              "cannot be given with from_snapshot: a restore runs what the snapshot holds (only "
                              "name, namespace, description and labels may be given)");
  }
  return 0;
}

/* Sets KEY of REQUEST to SPEC's KEY when the request has none and the spec has one. */
static void
take_from (json_t *request, const json_t *spec, const char *key)
{
  json_t *v = json_object_get (spec, key);
  if (v && !json_is_null (v) && json_object_get (request, key) == NULL)
    json_object_set (request, key, v);
}

int
nex_snapshot_expand_request (nex_node_t *node, json_t *request, char **snapshot_id, nex_error_t *err)
{
  *snapshot_id = NULL;
  const json_t *id = json_object_get (request, "from_snapshot");
  if (id == NULL)
    return 0;
  if (!json_is_string (id) || json_string_length (id) > NEX_ID_LEN)
    return nex_error_field (err, "from_snapshot", "must be a snapshot id (GET /v1/snapshots lists them)");
  if (check_request_fields (request, err) < 0)
    return -1;
  cleanup_with (nex_snapshot_row_release) nex_snapshot_row_t row = { 0 };
  int found = nex_registry_snapshot_get (node->reg, json_string_value (id), &row, err);
  if (found < 0)
    return -1;
  if (found == 0)
    return nex_error_field (err, "from_snapshot", "no snapshot `%s` on this node", json_string_value (id));
  const nex_driver_t *d = nex_driver_find (row.driver);
  if (d == NULL || nex_driver_snapshot_size (d, row.path) < 0)
    return nex_error_field (err, "from_snapshot", "snapshot %s has lost its file (delete it)", row.id);
  cleanup_free char *kvm_reason = NULL;
  const char *accel = nex_driver_accel (d, &kvm_reason);
  const char *was = json_string_value (json_object_get (row.spec, "accel"));
  if (accel && was && strcmp (accel, was) != 0)
    return nex_error_set (err, NEX_ERR_CONFLICT, "snapshot %s was taken under %s, and this node's VMs now get %s",
                          row.id, was, accel);
  static const char *const repeated[] = { "name", "namespace", "artifact", "resources", "argv", "env", NULL };
  for (size_t i = 0; repeated[i]; i++)
    take_from (request, row.spec, repeated[i]);
  json_t *digest = json_object_get (row.spec, "digest");
  if (json_is_string (digest))
    json_object_set (request, "sha256", digest); /* the same bytes, or the restore fails before it starts */
  json_object_set_new (request, "driver", json_string (row.driver));
  json_object_del (request, "from_snapshot");
  *snapshot_id = nex_xstrdup (row.id);
  return 0;
}
