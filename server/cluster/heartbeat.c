/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/heartbeat.c — this node's heartbeat out, the peers' in (contract in cluster/internal.h).
 *
 * The heartbeat is published straight to nats.c, not through the bridge's queue: a heartbeat kept through an
 * outage and sent late would say a node was alive when nobody could hear it.  Every node subscribes to every
 * heartbeat, its own included, so that hearing itself tells a node that its own link works (directory.c). */
#include "server/cluster/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/log.h"

#define MAX_HEARTBEAT_BYTES (64 * 1024)

void
nex_cluster_heartbeat_publish (nex_cluster_t *c)
{
  cleanup_json json_t *info = nex_cluster_self_info (c);
  cleanup_free char *text = json_dumps (info, JSON_COMPACT);
  cleanup_free char *subject = nex_xasprintf (NEX_CLUSTER_HB_PREFIX "%s", c->node->id);
  if (text)
    natsConnection_PublishString (c->nc, subject, text);
}

/* A heartbeat from anyone on the NATS system: checked (its subject names the node its body names, an id of
 * sane length) before it enters the table; the rest of the document is read with type checks where it is
 * used. */
static void
on_heartbeat (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  nex_cluster_t *c = closure;
  const char *subject = natsMsg_GetSubject (msg);
  const char *id = subject + strlen (NEX_CLUSTER_HB_PREFIX);
  int len = natsMsg_GetDataLength (msg);
  json_t *info = NULL;
  if (strlen (subject) > strlen (NEX_CLUSTER_HB_PREFIX) && len > 0 && len <= MAX_HEARTBEAT_BYTES)
    info = json_loadb (natsMsg_GetData (msg), (size_t)len, JSON_REJECT_DUPLICATES, NULL);
  const char *claimed = json_string_value (json_object_get (info, "node_id"));
  if (json_is_object (info) && claimed && strcmp (claimed, id) == 0 && strlen (id) < sizeof ((nex_peer_t *)0)->id)
    nex_cluster_peer_heard (c, id, NEX_STEAL_PTR (info));
  else
    nex_debug ("cluster: ignored a malformed heartbeat on %s", subject);
  json_decref (info);
  natsMsg_Destroy (msg);
}

int
nex_cluster_heartbeat_subscribe (nex_cluster_t *c, nex_error_t *err)
{
  natsStatus s = natsConnection_Subscribe (&c->hb_sub, c->nc, NEX_CLUSTER_HB_PREFIX "*", on_heartbeat, c);
  if (s != NATS_OK)
    return nex_error_set (err, NEX_ERR_SYSTEM, "cluster: subscribe to heartbeats: %s", natsStatus_GetText (s));
  return 0;
}
