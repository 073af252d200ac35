/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/ps.c — every node's workloads and drain requests, over NATS (contracts in cluster/cluster.h).
 *
 * $NEX.cluster.ps is a scatter-gather: the asking node publishes the filter with a reply inbox, every node
 * answers with a summary of its matching workloads ({id, name, namespace, state, driver, restart_policy, key,
 * labels, pid, reason, created_at, started_at}, at most PS_LIMIT), and the asker listens until every live peer
 * has answered or PS_WAIT_MS passed.  Entries of the bucket given up for `lost` are added as summaries of their
 * own: no node runs them. */
#include "server/cluster/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

#define PS_WAIT_MS 1000
#define PS_LIMIT 500
#define MAX_FILTER_BYTES 65536
#define MAX_REPLY_BYTES (8 * 1024 * 1024)
#define DRAIN_TIMEOUT_MS 5000

static json_t *
time_json (int64_t ms)
{
  char buf[NEX_CLOCK_RFC3339_LEN];
  return ms ? json_string (nex_clock_format (ms, buf, sizeof buf)) : json_null ();
}

static json_t *
summary (const nex_workload_t *w)
{
  const char *key = nex_cluster_key_of (w);
  json_t *s
      = json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:O?, s:s?}", "id", w->id, "name", w->name, "namespace",
                   w->namespace_, "state", nex_state_name (w->state), "driver", w->driver, "restart_policy",
                   nex_restart_policy_name (w->restart_policy), "key", key, "labels", w->labels, "reason", w->reason);
  json_object_set_new (s, "pid", w->pid ? json_integer (w->pid) : json_null ());
  json_object_set_new (s, "created_at", time_json (w->created_at));
  json_object_set_new (s, "started_at", time_json (w->started_at));
  return s;
}

/* This node's answer to FILTER ({namespace, state, namespaces}; other members ignored). */
static json_t *
local_answer (nex_cluster_t *c, const json_t *filter)
{
  nex_state_t state;
  const char *st = json_string_value (json_object_get (filter, "state"));
  const json_t *nss = json_object_get (filter, "namespaces");
  nex_workload_filter_t f = { .namespace_ = json_string_value (json_object_get (filter, "namespace")),
                              .limit = PS_LIMIT + 1,
                              .namespaces = json_is_array (nss) ? nss : NULL };
  int none = 0; /* a state no node has (lost: only the bucket knows those) */
  if (st && nex_state_parse (st, &state, NULL) == 0)
    f.state = &state;
  else if (st)
    none = 1;
  nex_workload_t *list = NULL;
  size_t n = 0;
  json_t *arr = json_array ();
  if (!none && nex_registry_workload_list (c->node->reg, &f, &list, &n, NULL) == 0)
    {
      for (size_t i = 0; i < n; i++)
        {
          if (i < PS_LIMIT)
            json_array_append_new (arr, summary (&list[i]));
          nex_workload_release (&list[i]);
        }
      free (list);
    }
  return json_pack ("{s:s, s:o, s:b}", "node_id", c->node->id, "workloads", arr, "truncated", n > PS_LIMIT);
}

static void
on_ps (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  nex_cluster_t *c = closure;
  const char *reply = natsMsg_GetReply (msg);
  int len = natsMsg_GetDataLength (msg);
  if (reply && *reply && len <= MAX_FILTER_BYTES)
    {
      cleanup_json json_t *filter = len > 0 ? json_loadb (natsMsg_GetData (msg), (size_t)len, 0, NULL) : NULL;
      cleanup_json json_t *answer = local_answer (c, json_is_object (filter) ? filter : NULL);
      cleanup_free char *text = json_dumps (answer, JSON_COMPACT);
      if (text)
        natsConnection_PublishString (nc, reply, text);
    }
  natsMsg_Destroy (msg);
}

int
nex_cluster_ps_subscribe (nex_cluster_t *c, nex_error_t *err)
{
  natsStatus s = natsConnection_Subscribe (&c->ps_sub, c->nc, NEX_CLUSTER_PS_SUBJECT, on_ps, c);
  if (s != NATS_OK)
    return nex_error_set (err, NEX_ERR_SYSTEM, "cluster: subscribe to %s: %s", NEX_CLUSTER_PS_SUBJECT,
                          natsStatus_GetText (s));
  return 0;
}

/* Whether summary S passes the filter members that the answering node does not apply (node, key). */
static int
passes (const json_t *s, const json_t *filter)
{
  const char *node = json_string_value (json_object_get (filter, "node"));
  const char *key = json_string_value (json_object_get (filter, "key"));
  const char *sn = json_string_value (json_object_get (s, "node"));
  const char *sk = json_string_value (json_object_get (s, "key"));
  return (node == NULL || (sn && strcmp (node, sn) == 0)) && (key == NULL || (sk && strcmp (key, sk) == 0));
}

/* The bucket's `lost` entries as summaries, into ARR. */
static void
add_lost (nex_cluster_t *c, json_t *arr, const json_t *filter)
{
  cleanup_json json_t *snap = nex_desired_snapshot (c);
  const char *key;
  json_t *e;
  const char *ns = json_string_value (json_object_get (filter, "namespace"));
  const char *st = json_string_value (json_object_get (filter, "state"));
  json_object_foreach (snap, key, e)
  {
    const json_t *v = json_object_get (e, "value");
    const char *state = json_string_value (json_object_get (v, "state"));
    const char *vns = json_string_value (json_object_get (v, "namespace"));
    if (state == NULL || strcmp (state, "lost") != 0 || (st && strcmp (st, "lost") != 0)
        || (ns && (vns == NULL || strcmp (ns, vns) != 0)))
      continue;
    json_t *s = json_pack ("{s:O?, s:O?, s:O?, s:s, s:O?, s:s}", "id", json_object_get (v, "workload_id"), "name",
                           json_object_get (v, "name"), "namespace", json_object_get (v, "namespace"), "state", "lost",
                           "node", json_object_get (v, "owner"), "key", key);
    if (s && passes (s, filter))
      json_array_append_new (arr, s);
    else
      json_decref (s);
  }
}

json_t *
nex_cluster_workloads (nex_cluster_t *c, const json_t *filter, nex_error_t *err)
{
  cleanup_json json_t *alive = nex_cluster_peers_alive (c, 0);
  char inbox[64];
  natsInbox *box = NULL;
  natsInbox_Create (&box);
  snprintf (inbox, sizeof inbox, "%s", box);
  natsInbox_Destroy (box);
  natsSubscription *sub = NULL;
  cleanup_free char *text = json_dumps (filter, JSON_COMPACT);
  natsStatus s = natsConnection_SubscribeSync (&sub, c->nc, inbox);
  if (s == NATS_OK)
    s = natsConnection_PublishRequestString (c->nc, NEX_CLUSTER_PS_SUBJECT, inbox, text);
  if (s != NATS_OK)
    {
      if (sub)
        natsSubscription_Destroy (sub);
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "cannot ask the cluster: NATS: %s", natsStatus_GetText (s));
      return NULL;
    }
  json_t *arr = json_array ();
  size_t answered = 0;
  int truncated = 0;
  int64_t deadline = nex_clock_mono_ms () + PS_WAIT_MS;
  while (answered < json_array_size (alive) || answered == 0)
    {
      int64_t left = deadline - nex_clock_mono_ms ();
      natsMsg *msg = NULL;
      if (left <= 0 || natsSubscription_NextMsg (&msg, sub, left) != NATS_OK)
        break;
      int len = natsMsg_GetDataLength (msg);
      cleanup_json json_t *a
          = len > 0 && len <= MAX_REPLY_BYTES ? json_loadb (natsMsg_GetData (msg), (size_t)len, 0, NULL) : NULL;
      natsMsg_Destroy (msg);
      const char *node = json_string_value (json_object_get (a, "node_id"));
      if (node == NULL)
        continue;
      answered++;
      truncated |= json_is_true (json_object_get (a, "truncated"));
      size_t i;
      json_t *w;
      json_array_foreach (json_object_get (a, "workloads"), i, w)
      {
        if (!json_is_object (w))
          continue;
        json_object_set_new (w, "node", json_string (node));
        if (passes (w, filter))
          json_array_append (arr, w);
      }
    }
  natsSubscription_Destroy (sub);
  add_lost (c, arr, filter);
  return json_pack ("{s:o, s:I, s:I, s:I, s:b}", "workloads", arr, "count", (json_int_t)json_array_size (arr),
                    "nodes_asked", (json_int_t)json_array_size (alive), "nodes_answered", (json_int_t)answered,
                    "truncated", truncated);
}

int
nex_cluster_drain (nex_cluster_t *c, const char *node_id, json_t **out, nex_error_t *err)
{
  const char *id = strcmp (node_id, "self") == 0 ? c->node->id : node_id;
  if (strlen (id) > 63 || strpbrk (id, ".*> ") != NULL || *id == '\0')
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no node `%s`", node_id);
  cleanup_free char *subject = nex_xasprintf ("$NEX.LAMEDUCK.%s", id);
  natsMsg *reply = NULL;
  natsStatus s = natsConnection_RequestString (&reply, c->nc, subject, "{}", DRAIN_TIMEOUT_MS);
  if (s != NATS_OK)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "node %s did not answer the drain request: %s", id,
                          s == NATS_NO_RESPONDERS ? "nobody listens for it" : natsStatus_GetText (s));
  cleanup_json json_t *env = json_loadb (natsMsg_GetData (reply), (size_t)natsMsg_GetDataLength (reply), 0, NULL);
  natsMsg_Destroy (reply);
  json_t *data = json_object_get (env, "data");
  if (!json_is_object (data))
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "node %s answered the drain request without data", id);
  *out = json_incref (data);
  return 0;
}
