/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/stop.c — stopping a workload on the node that runs it (contract in cluster/cluster.h).
 *
 * REST's DELETE /v1/workloads/{id} on a node that does not have the workload asks the cluster: every node's
 * workloads are gathered ($NEX.cluster.ps, as GET /v1/cluster/workloads does), and the stop goes to the node
 * that lists the id, over nex's own $NEX.STOP.<ns>.<node> — so the owner checks it as it checks every stop (the
 * namespace of the subject, a secure launch's JWT) and its end removes the desired state as a local stop does. */
#include "server/cluster/internal.h"

#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/workload.h"

#define STOP_TIMEOUT_MS 5000

static void
msg_destroyp (natsMsg **m)
{
  if (*m)
    natsMsg_Destroy (*m);
}

/* The workload ID as some node listed it (new reference), or NULL with NEX_ERR_NOT_FOUND. */
static json_t *
find (nex_cluster_t *c, const char *id, const json_t *namespaces, nex_error_t *err)
{
  cleanup_json json_t *filter = json_object ();
  if (namespaces)
    json_object_set (filter, "namespaces", (json_t *)namespaces);
  cleanup_json json_t *all = nex_cluster_workloads (c, filter, err);
  if (all == NULL)
    return NULL;
  size_t i;
  json_t *w;
  json_array_foreach (json_object_get (all, "workloads"), i, w)
  {
    const char *wid = json_string_value (json_object_get (w, "id"));
    if (wid && strcmp (wid, id) == 0 && json_is_string (json_object_get (w, "node")))
      return json_incref (w);
  }
  nex_error_set (err, NEX_ERR_NOT_FOUND, "no workload %s on any node of the cluster", id);
  return NULL;
}

int
nex_cluster_stop_remote (nex_cluster_t *c, const char *id, int64_t grace_s, const char *jwt, const json_t *namespaces,
                         json_t **out, int *live, nex_error_t *err)
{
  cleanup_json json_t *w = find (c, id, namespaces, err);
  if (w == NULL)
    return -1;
  const char *node = json_string_value (json_object_get (w, "node"));
  nex_state_t state;
  const char *st = json_string_value (json_object_get (w, "state"));
  *live = st && nex_state_parse (st, &state, NULL) == 0 && !nex_state_is_final (state);
  if (*live)
    {
      cleanup_free char *ns_token = nex_cluster_ns_token (json_string_value (json_object_get (w, "namespace")));
      cleanup_free char *subject = nex_xasprintf ("$NEX.STOP.%s.%s", ns_token, node);
      cleanup_json json_t *body
          = json_pack ("{s:s, s:I, s:s?}", "workload_id", id, "grace_s", (json_int_t)grace_s, "workload_jwt", jwt);
      cleanup_free char *text = json_dumps (body, JSON_COMPACT);
      cleanup_with (msg_destroyp) natsMsg *reply = NULL;
      natsStatus s = natsConnection_RequestString (&reply, c->nc, subject, text, STOP_TIMEOUT_MS);
      if (s != NATS_OK)
        return nex_error_set (err, NEX_ERR_UNAVAILABLE, "node %s did not take the stop: %s", node,
                              s == NATS_NO_RESPONDERS ? "it is not listening" : natsStatus_GetText (s));
      cleanup_json json_t *env = json_loadb (natsMsg_GetData (reply), (size_t)natsMsg_GetDataLength (reply), 0, NULL);
      const char *error = json_string_value (json_object_get (env, "error"));
      if (error && strncmp (error, "workload already ended", 22) == 0)
        *live = 0; /* it ended between the listing and the stop: as idempotent as a local DELETE */
      else if (error)
        return nex_error_set (err, NEX_ERR_CONFLICT, "node %s: %s", node, error);
    }
  *out = NEX_STEAL_PTR (w);
  return 0;
}
