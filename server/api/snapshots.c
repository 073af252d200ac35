/* SPDX-License-Identifier: Apache-2.0 */
/* api/snapshots.c — VM snapshots (snapshot.h): POST /v1/workloads/{id}/snapshot takes one (201 with its
 * record, once the file is written), GET /v1/snapshots lists them (?workload=ID: of one workload), GET and
 * DELETE /v1/snapshots/{id} show and remove one.  A restore is a deploy with `from_snapshot` (deploy.c). */
#include "server/api/api.h"

#include <stdlib.h>

#include "common/cleanup.h"
#include "server/id.h"
#include "server/snapshot.h"

static int
snapshot_take (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_api_workload_load (req, &w, err) < 0)
    return -1;
  res->body = nex_snapshot_take (req->node, w.id, err);
  if (res->body == NULL)
    return -1;
  res->status = 201;
  return 0;
}

/* Snapshot params[0] into *ROW, when it exists and is of a namespace the caller may see.  0 or -1. */
static int
snapshot_load (nex_api_request_t *req, nex_snapshot_row_t *row, nex_error_t *err)
{
  const char *id = req->params[0];
  int found = nex_id_valid (id) ? nex_registry_snapshot_get (req->node->reg, id, row, err) : 0;
  if (found < 0)
    return -1;
  if (found == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no snapshot with id `%s`", id);
  return nex_api_check_namespace (req, json_string_value (json_object_get (row->spec, "namespace")), err);
}

static int
snapshot_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  cleanup_with (nex_snapshot_row_release) nex_snapshot_row_t row = { 0 };
  if (snapshot_load (req, &row, err) < 0)
    return -1;
  res->body = nex_snapshot_to_json (&row);
  return 0;
}

static int
snapshot_delete (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  cleanup_with (nex_snapshot_row_release) nex_snapshot_row_t row = { 0 };
  if (snapshot_load (req, &row, err) < 0 || nex_snapshot_delete (req->node, row.id, err) < 0)
    return -1;
  res->body = json_pack ("{s:s, s:b}", "id", row.id, "deleted", 1);
  return 0;
}

static int
snapshot_list (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  const char *workload = nex_api_query (req, "workload");
  nex_snapshot_row_t *rows = NULL;
  size_t n = 0;
  if (nex_registry_snapshot_list (req->node->reg, workload, &rows, &n, err) < 0)
    return -1;
  json_t *list = json_array ();
  for (size_t i = 0; i < n; i++)
    {
      const char *ns = json_string_value (json_object_get (rows[i].spec, "namespace"));
      if (nex_api_check_namespace (req, ns, NULL) == 0)
        json_array_append_new (list, nex_snapshot_to_json (&rows[i]));
      nex_snapshot_row_release (&rows[i]);
    }
  free (rows);
  res->body = json_pack ("{s:o, s:I}", "snapshots", list, "count", (json_int_t)json_array_size (list));
  return 0;
}

const nex_api_route_t nex_api_snapshot_routes[] = {
  { "POST", "/v1/workloads/{id}/snapshot", snapshot_take, NEX_API_BODY_NONE },
  { "GET", "/v1/snapshots", snapshot_list, 0 },
  { "GET", "/v1/snapshots/{id}", snapshot_get, 0 },
  { "DELETE", "/v1/snapshots/{id}", snapshot_delete, 0 },
  { NULL, NULL, NULL, 0 },
};
