/* SPDX-License-Identifier: Apache-2.0 */
/* api/cluster.c — routes about the cluster (cluster/cluster.h): its nodes, every node's workloads, draining a
 * node.  On a node without NATS they answer 503 saying so. */
#include "server/api/api.h"

#include <string.h>

#include "common/cleanup.h"
#include "server/cluster/cluster.h"
#include "server/id.h"

/* The node's cluster, or NULL with NEX_ERR_UNAVAILABLE. */
static nex_cluster_t *
cluster_of (nex_api_request_t *req, nex_error_t *err)
{
  nex_cluster_t *c = req->node->cluster;
  if (c == NULL)
    nex_error_set (err, NEX_ERR_UNAVAILABLE, "this node is not in a cluster (start nexd with --nats)");
  return c;
}

static int
nodes_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_cluster_t *c = cluster_of (req, err);
  if (c == NULL)
    return -1;
  res->body = nex_cluster_nodes (c);
  return 0;
}

static int
workloads_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_cluster_t *c = cluster_of (req, err);
  if (c == NULL)
    return -1;
  cleanup_json json_t *filter = json_object ();
  static const char *const keys[] = { "namespace", "state", "node", "key" };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    {
      const char *v = nex_api_query (req, keys[i]);
      if (v && (*v == '\0' || strlen (v) > 255))
        return nex_error_field (err, keys[i], "`%s` must be 1 to 255 characters", keys[i]);
      if (v)
        json_object_set_new (filter, keys[i], json_string (v));
    }
  const char *st = nex_api_query (req, "state");
  nex_state_t state;
  if (st && strcmp (st, "lost") != 0 && nex_state_parse (st, &state, NULL) < 0)
    return nex_error_field (err, "state", "unknown state `%s`", st);
  const char *ns = nex_api_query (req, "namespace");
  if (ns && nex_api_check_namespace (req, ns, err) < 0)
    return -1;
  if (req->who && req->who->namespaces)
    json_object_set (filter, "namespaces", req->who->namespaces);
  res->body = nex_cluster_workloads (c, filter, err);
  return res->body ? 0 : -1;
}

/* DELETE /v1/cluster/workloads/{key}: forgets a desired-state entry (a `lost` one of a node that never returns;
 * a live one's copy is then stopped by its owner).  The answer is the entry as it was. */
static int
entry_forget (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_cluster_t *c = cluster_of (req, err);
  if (c == NULL)
    return -1;
  const char *key = req->params[0];
  cleanup_json json_t *v = nex_id_valid (key) ? nex_cluster_entry (c, key) : NULL;
  if (v == NULL)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no desired-state entry `%.64s`", key);
  const char *ns = json_string_value (json_object_get (v, "namespace"));
  if (nex_api_check_namespace (req, ns ? ns : "default", err) < 0 || nex_cluster_forget (c, key, err) < 0)
    return -1;
  res->body = json_pack ("{s:s, s:O?, s:O?, s:O?, s:O?, s:O?}", "key", key, "name", json_object_get (v, "name"),
                         "namespace", json_object_get (v, "namespace"), "owner", json_object_get (v, "owner"),
                         "workload_id", json_object_get (v, "workload_id"), "state", json_object_get (v, "state"));
  return 0;
}

static int
node_drain (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_cluster_t *c = cluster_of (req, err);
  if (c == NULL)
    return -1;
  json_t *data = NULL;
  if (nex_cluster_drain (c, req->params[0], &data, err) < 0)
    return -1;
  res->status = 202;
  res->body = data;
  return 0;
}

const nex_api_route_t nex_api_cluster_routes[] = {
  { "GET", "/v1/cluster/nodes", nodes_get, 0 },
  { "GET", "/v1/cluster/workloads", workloads_get, 0 },
  { "DELETE", "/v1/cluster/workloads/{key}", entry_forget, 0 },
  { "POST", "/v1/cluster/nodes/{id}/drain", node_drain, 0 },
  { NULL, NULL, NULL, 0 },
};
