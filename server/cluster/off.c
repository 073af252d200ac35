/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/off.c — the cluster's functions in a build without nats.c (configure --disable-nats): such a node is
 * never in a cluster (its node->cluster stays NULL), so these are only reached through that NULL. */
#include "server/cluster/cluster.h"

nex_cluster_t *
nex_cluster_start (nex_node_t *node, nex_error_t *err)
{
  nex_error_field (err, "nats", "this nexd was built without NATS support (configure --enable-nats)");
  return NULL;
}

void
nex_cluster_stop (nex_cluster_t *c)
{
}

void
nex_cluster_free (nex_cluster_t *c)
{
}

json_t *
nex_cluster_nodes (nex_cluster_t *c)
{
  return json_null ();
}

int
nex_cluster_deploy (nex_cluster_t *c, const json_t *request, json_t **out, nex_error_t *err)
{
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this nexd was built without NATS support");
}

json_t *
nex_cluster_workloads (nex_cluster_t *c, const json_t *filter, nex_error_t *err)
{
  nex_error_set (err, NEX_ERR_UNAVAILABLE, "this nexd was built without NATS support");
  return NULL;
}

int
nex_cluster_stop_remote (nex_cluster_t *c, const char *id, int64_t grace_s, const char *jwt, const json_t *namespaces,
                         json_t **out, int *live, nex_error_t *err)
{
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this nexd was built without NATS support");
}

json_t *
nex_cluster_entry (nex_cluster_t *c, const char *key)
{
  return NULL;
}

int
nex_cluster_forget (nex_cluster_t *c, const char *key, nex_error_t *err)
{
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this nexd was built without NATS support");
}

int
nex_cluster_drain (nex_cluster_t *c, const char *node_id, json_t **out, nex_error_t *err)
{
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this nexd was built without NATS support");
}

void
nex_cluster_notice (nex_cluster_t *c, const json_t *event)
{
}

int
nex_cluster_evacuate (nex_cluster_t *c)
{
  return 0;
}

json_t *
nex_cluster_bid (nex_cluster_t *c, const json_t *body)
{
  return NULL;
}

char *
nex_cluster_api_of (nex_cluster_t *c, const char *node_id)
{
  return NULL;
}
