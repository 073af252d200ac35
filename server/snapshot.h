/* SPDX-License-Identifier: Apache-2.0 */
/* snapshot.h — VM snapshots: a running (or paused) microVM's whole state written to a file, recorded, listed,
 * deleted, and deployed again with `from_snapshot`.
 *
 * A snapshot is the driver's (driver.h: the snapshot op; QEMU's migration stream) written to
 * data_dir/snapshots/<id>.vmstate and recorded in the registry (schema 011) with what a restore must repeat:
 * the workload's artifact and digest, its driver, resources (the VM's memory and vCPUs), argv and env, the
 * kernel and the accelerator.  A deploy with `from_snapshot` takes those from the record (a request may only
 * add name, namespace, description and labels) and the supervisor starts the VM from the file instead of
 * booting it (nex_launch_t.snapshot_path); the agent inside is already running the workload and is greeted as
 * after a nexd restart.  The source workload is not touched: it goes on (or stays paused). */
#ifndef NEX_SNAPSHOT_H
#define NEX_SNAPSHOT_H

#include <jansson.h>

#include "common/error.h"
#include "server/node.h"
#include "server/registry.h"

/* Takes a snapshot of workload WORKLOAD_ID (running or paused; its driver must have the snapshot op, and its
 * network must be none): the new record as JSON (new reference), or NULL with *ERR: 404 no such workload, 422
 * a driver or network that cannot, 409 not running.  Blocks for as long as the driver writes (a second
 * snapshot on the node waits for the first).  API thread. */
json_t *nex_snapshot_take (nex_node_t *node, const char *workload_id, nex_error_t *err);

/* R as the API shows it: {id, workload_id, driver, created_at, size_bytes, artifact, digest, kernel, ...}. */
json_t *nex_snapshot_to_json (const nex_snapshot_row_t *r);

/* Removes snapshot ID, its file and its record; NEX_ERR_NOT_FOUND when there is none. */
int nex_snapshot_delete (nex_node_t *node, const char *id, nex_error_t *err);

/* For a deploy REQUEST (a JSON object, changed in place) with `from_snapshot`: replaces it with what the
 * snapshot recorded and sets *SNAPSHOT_ID (caller frees); without it, *SNAPSHOT_ID stays NULL.  0, or -1 with
 * NEX_ERR_INVALID naming the field (no such snapshot, its file gone, a field a restore cannot change) or
 * NEX_ERR_CONFLICT (the node's VMs now get another accelerator than the snapshot's). */
int nex_snapshot_expand_request (nex_node_t *node, json_t *request, char **snapshot_id, nex_error_t *err);

/* The file of snapshot ID (caller frees), or NULL with NEX_ERR_NOT_FOUND. */
char *nex_snapshot_file (nex_node_t *node, const char *id, nex_error_t *err);

#endif
