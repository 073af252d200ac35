/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/placement.c — where a workload goes: nex's auction, the rule, the deploy on the chosen node, and the
 * REST front door `node`/`placement` (contracts in cluster/cluster.h and cluster/internal.h).
 *
 * The auction is nex's: $NEX.AUCTION with the requirements, every node that can run the workload answers with
 * its ping document, the others stay silent.  Our nodes add their heartbeat document (`cluster`) to the answer;
 * answers without one (nex's own nodes) are not bid on, since the deploy that follows uses our REST fields.
 * How long to listen: until every live peer that the table says fits has answered, at most AUCTION_MS; with
 * none expected, AUCTION_EMPTY_MS for nodes the table does not know yet.  When nobody answered although some
 * should have, the auction runs once more (nex_cluster_auction says why) before the client gets a 503.
 *
 * The remote deploy is $NEX.DEPLOY.<ns>.<node> with the header `Nex-Fields: rest`: the body is the REST request
 * as it came (argv meaning the whole vector), and the answer carries the workload's JSON and, on failure, the
 * error's kind and field, so that the client gets the status the chosen node would have answered itself. */
#include "server/cluster/internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/deploy.h"
#include "server/id.h"
#include "server/log.h"

#define AUCTION_MS 500
#define AUCTION_RETRY_MS 1500      /* the second auction's window, when nobody answered the first */
#define RECONNECT_PATIENCE_MS 3000 /* how long the second auction waits for this node's connection */
#define AUCTION_EMPTY_MS 250
#define DEPLOY_TIMEOUT_MS 10000
#define MAX_REPLY_BYTES (4 * 1024 * 1024)

static void
sub_destroyp (natsSubscription **s)
{
  if (*s)
    natsSubscription_Destroy (*s);
}

static void
msg_destroyp (natsMsg **m)
{
  if (*m)
    natsMsg_Destroy (*m);
}

/* Whether array IDS holds ID. */
static int
listed (const json_t *ids, const char *id)
{
  size_t i;
  const json_t *v;
  json_array_foreach ((json_t *)ids, i, v)
  {
    if (json_is_string (v) && id && strcmp (json_string_value (v), id) == 0)
      return 1;
  }
  return 0;
}

/* The error when nobody fits: NEX_ERR_INVALID listing why each live node does not, or NEX_ERR_UNAVAILABLE when
 * no node is known or the table says some fit but none answered. */
static json_t *
no_winner (nex_cluster_t *c, const nex_requirements_t *r, int exclude_self, nex_error_t *err, int64_t window_ms)
{
  cleanup_json json_t *alive = nex_cluster_peers_alive (c, exclude_self);
  if (json_array_size (alive) == 0)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "no node answered the auction (no other node is alive)");
      return NULL;
    }
  size_t i;
  json_t *info;
  cleanup_free char *reasons = nex_xstrdup ("");
  int fitting = 0;
  json_array_foreach (alive, i, info)
  {
    cleanup_free char *why = NULL;
    if (nex_cluster_fits (info, r, &why))
      {
        fitting++;
        continue;
      }
    char *more = nex_xasprintf ("%s%snode %s %s", reasons, *reasons ? "; " : "",
                                json_string_value (json_object_get (info, "node_id")), why);
    free (reasons);
    reasons = more;
  }
  if (fitting > 0)
    nex_error_set (err, NEX_ERR_UNAVAILABLE, "no node answered the auction in %lld ms (%d should fit)",
                   (long long)window_ms, fitting);
  else
    nex_error_set (err, NEX_ERR_INVALID, "no node meets the requirements: %s", reasons);
  return NULL;
}

/* The heartbeat document of auction answer MSG, when it is one of ours and fits R; NULL otherwise. */
static json_t *
bid_of (natsMsg *msg, const nex_requirements_t *r)
{
  int len = natsMsg_GetDataLength (msg);
  if (len <= 0 || len > MAX_REPLY_BYTES)
    return NULL;
  cleanup_json json_t *env = json_loadb (natsMsg_GetData (msg), (size_t)len, 0, NULL);
  json_t *doc = json_object_get (json_object_get (env, "data"), "cluster");
  if (!json_is_object (doc) || !json_is_string (json_object_get (doc, "node_id")) || !nex_cluster_fits (doc, r, NULL))
    return NULL;
  return json_incref (doc);
}

/* One auction, listening for at most WINDOW_MS (or until every expected node answered). */
static json_t *
auction_round (nex_cluster_t *c, const nex_requirements_t *r, int exclude_self, int64_t window_ms, nex_error_t *err)
{
  /* Whom to wait for: the live peers that the table says fit. */
  cleanup_json json_t *alive = nex_cluster_peers_alive (c, exclude_self);
  cleanup_json json_t *expected = json_array ();
  size_t i;
  json_t *info;
  json_array_foreach (alive, i, info)
  {
    if (nex_cluster_fits (info, r, NULL))
      json_array_append (expected, json_object_get (info, "node_id"));
  }
  char inbox[64];
  natsInbox *box = NULL;
  natsInbox_Create (&box);
  snprintf (inbox, sizeof inbox, "%s", box);
  natsInbox_Destroy (box);
  cleanup_with (sub_destroyp) natsSubscription *sub = NULL;
  cleanup_json json_t *body = nex_cluster_requirements_json (r);
  cleanup_free char *text = json_dumps (body, JSON_COMPACT);
  natsStatus s = natsConnection_SubscribeSync (&sub, c->nc, inbox);
  if (s == NATS_OK)
    s = natsConnection_PublishRequestString (c->nc, "$NEX.AUCTION", inbox, text);
  if (s != NATS_OK)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "cannot run the auction: NATS: %s", natsStatus_GetText (s));
      return NULL;
    }
  int64_t deadline = nex_clock_mono_ms () + (json_array_size (expected) ? window_ms : AUCTION_EMPTY_MS);
  cleanup_json json_t *best = NULL;
  size_t heard = 0;
  for (;;)
    {
      int64_t left = deadline - nex_clock_mono_ms ();
      if (left <= 0 || (json_array_size (expected) > 0 && heard >= json_array_size (expected)))
        break;
      cleanup_with (msg_destroyp) natsMsg *msg = NULL;
      if (natsSubscription_NextMsg (&msg, sub, left) != NATS_OK)
        break;
      cleanup_json json_t *doc = bid_of (msg, r);
      const char *id = json_string_value (json_object_get (doc, "node_id"));
      if (doc == NULL || (exclude_self && strcmp (id, c->node->id) == 0))
        continue;
      if (listed (expected, id))
        heard++;
      if (best == NULL || nex_cluster_rank (doc, best) < 0)
        {
          json_decref (best);
          best = json_incref (doc);
        }
    }
  if (best == NULL)
    return no_winner (c, r, exclude_self, err, window_ms);
  return NEX_STEAL_PTR (best);
}

/* Waits up to RECONNECT_PATIENCE_MS for this node's NATS connection to be up (it may be reconnecting to another
 * server after its own died). */
static void
wait_connected (nex_cluster_t *c)
{
  int64_t until = nex_clock_mono_ms () + RECONNECT_PATIENCE_MS;
  while (natsConnection_Status (c->nc) != NATS_CONN_STATUS_CONNECTED && nex_clock_mono_ms () < until)
    usleep (50 * 1000);
}

json_t *
nex_cluster_auction (nex_cluster_t *c, const nex_requirements_t *r, int exclude_self, nex_error_t *err)
{
  /* Nobody answering although the table says some fit is what a moment of trouble looks like (this node or the
   * bidders reconnecting after a nats-server died, a loaded machine): once more, with this node connected and a
   * longer window, before the client gets a 503.  A refusal (nobody fits) is final at once. */
  cleanup_error nex_error_t first = NULL;
  json_t *winner = auction_round (c, r, exclude_self, AUCTION_MS, &first);
  if (winner || first->kind != NEX_ERR_UNAVAILABLE)
    {
      if (err && winner == NULL)
        *err = NEX_STEAL_PTR (first);
      return winner;
    }
  nex_info ("cluster: %s; running the auction once more", first->msg);
  wait_connected (c);
  return auction_round (c, r, exclude_self, AUCTION_RETRY_MS, err);
}

/* The error kind named NAME (nex_error_kind_name's inverse); NEX_ERR_INVALID when unknown. */
static nex_error_kind_t
kind_named (const char *name)
{
  for (int k = NEX_ERR_SYSTEM; k <= NEX_ERR_NO_SPACE; k++)
    if (name && strcmp (nex_error_kind_name ((nex_error_kind_t)k), name) == 0)
      return (nex_error_kind_t)k;
  return NEX_ERR_INVALID;
}

char *
nex_cluster_ns_token (const char *ns)
{
  char *token = nex_xstrdup (ns ? ns : "default");
  for (char *p = token; *p; p++)
    if (*p == '.')
      *p = '_';
  return token;
}

/* Sends SPEC to node NODE_ID over $NEX.DEPLOY (see the file's comment). */
static json_t *
deploy_remote (nex_cluster_t *c, const char *node_id, const json_t *spec, nex_error_t *err)
{
  cleanup_free char *ns_token = nex_cluster_ns_token (json_string_value (json_object_get (spec, "namespace")));
  cleanup_free char *subject = nex_xasprintf ("$NEX.DEPLOY.%s.%s", ns_token, node_id);
  cleanup_free char *text = json_dumps (spec, JSON_COMPACT);
  cleanup_with (msg_destroyp) natsMsg *req = NULL;
  cleanup_with (msg_destroyp) natsMsg *reply = NULL;
  natsStatus s = natsMsg_Create (&req, subject, NULL, text, (int)strlen (text));
  if (s == NATS_OK)
    s = natsMsgHeader_Set (req, "Nex-Fields", "rest");
  if (s == NATS_OK)
    s = natsConnection_RequestMsg (&reply, c->nc, req, DEPLOY_TIMEOUT_MS);
  if (s != NATS_OK)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "node %s did not take the deploy: %s", node_id,
                     s == NATS_NO_RESPONDERS ? "it is not listening" : natsStatus_GetText (s));
      return NULL;
    }
  cleanup_json json_t *env = json_loadb (natsMsg_GetData (reply), (size_t)natsMsg_GetDataLength (reply), 0, NULL);
  const char *error = json_string_value (json_object_get (env, "error"));
  if (error)
    {
      nex_error_kind_t kind = kind_named (json_string_value (json_object_get (env, "error_kind")));
      const char *field = json_string_value (json_object_get (env, "error_field"));
      if (kind == NEX_ERR_INVALID && field)
        nex_error_field (err, field, "node %s: %s", node_id, error);
      else
        nex_error_set (err, kind, "node %s: %s", node_id, error);
      return NULL;
    }
  json_t *w = json_object_get (json_object_get (env, "data"), "workload");
  if (!json_is_object (w))
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "node %s answered the deploy without the workload", node_id);
      return NULL;
    }
  json_t *out = json_deep_copy (w);
  json_object_set_new (out, "node", json_string (node_id));
  return out;
}

json_t *
nex_cluster_deploy_on (nex_cluster_t *c, const char *node_id, const json_t *spec, nex_error_t *err)
{
  if (strcmp (node_id, c->node->id) != 0)
    return deploy_remote (c, node_id, spec, err);
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_deploy_submit (c->node, spec, &w, err) < 0)
    return NULL;
  json_t *out = nex_workload_to_json (&w);
  json_object_set_new (out, "node", json_string (c->node->id));
  return out;
}

/* Refuses what cannot be placed on another node: an environment sealed to one node's xkey. */
static int
check_portable (const json_t *spec, nex_error_t *err)
{
  static const char *const sealed[] = { "environment", "sender_public_key", "workload_jwt" };
  for (size_t i = 0; i < sizeof sealed / sizeof sealed[0]; i++)
    if (json_object_get (spec, sealed[i]))
      return nex_error_field (err, sealed[i],
                              "a secure launch is sealed to one node's xkey: deploy it to that node, not with "
                              "`node: auto`");
  const json_t *labels = json_object_get (spec, "labels");
  if (json_object_get (labels, NEX_CLUSTER_KEY_LABEL))
    return nex_error_field (err, "labels", "label `%s` is the cluster's own", NEX_CLUSTER_KEY_LABEL);
  return 0;
}

/* The entry of the bucket for a workload placed with `node: auto` (ANSWER is the deploy's answer). */
static json_t *
entry_new (const char *key, const json_t *spec, const json_t *placement, const json_t *answer, int restartable)
{
  return json_pack ("{s:s, s:O, s:O, s:O, s:O, s:b, s:s, s:O, s:O?, s:I}", "key", key, "namespace",
                    json_object_get (answer, "namespace"), "name", json_object_get (answer, "name"), "owner",
                    json_object_get (answer, "node"), "workload_id", json_object_get (answer, "id"), "restartable",
                    restartable, "state", "running", "spec", spec, "placement", placement, "placed_at",
                    (json_int_t)nex_clock_now_ms ());
}

int
nex_cluster_deploy (nex_cluster_t *c, const json_t *request, json_t **out, nex_error_t *err)
{
  const json_t *node_v = json_object_get (request, "node");
  const json_t *placement = json_object_get (request, "placement");
  if (node_v && (!json_is_string (node_v) || json_string_length (node_v) == 0 || json_string_length (node_v) > 63))
    return nex_error_field (err, "node", "must be \"auto\" or a node id");
  const char *target = node_v ? json_string_value (node_v) : "auto";
  cleanup_json json_t *spec = json_deep_copy (request);
  json_object_del (spec, "node");
  json_object_del (spec, "placement");
  int is_self = strcmp (target, c->node->id) == 0, is_auto = strcmp (target, "auto") == 0;
  if (placement && !is_auto)
    return nex_error_field (err, "placement", "placement goes with `node: \"auto\"` (or no node)");
  /* Every check a node would make of the fields, here first, so that a bad request costs no auction. */
  cleanup_with (nex_workload_release) nex_workload_t probe = { 0 };
  if ((!is_self && check_portable (spec, err) < 0)
      || nex_workload_from_request (spec, c->node->cfg->default_driver, &probe, err) < 0)
    return -1;
  nex_requirements_t r;
  if (nex_cluster_requirements (spec, placement, &r, err) < 0)
    return -1;
  if (r.driver && !json_object_get (spec, "driver"))
    json_object_set_new (spec, "driver", json_string (r.driver));
  cleanup_json json_t *winner = NULL;
  if (is_auto && (winner = nex_cluster_auction (c, &r, 0, err)) == NULL)
    return -1;
  const char *node_id = winner ? json_string_value (json_object_get (winner, "node_id")) : target;
  if (!is_auto && !is_self)
    {
      cleanup_json json_t *alive = nex_cluster_peers_alive (c, 1);
      size_t i;
      json_t *info;
      int known = 0;
      json_array_foreach (alive, i, info)
      {
        known |= strcmp (json_string_value (json_object_get (info, "node_id")), target) == 0;
      }
      if (!known)
        return nex_error_set (err, NEX_ERR_NOT_FOUND, "no live node `%s` in the cluster", target);
    }
  char key[NEX_ID_LEN + 1] = "";
  if (is_auto)
    {
      nex_id_new (key);
      json_t *labels = json_object_get (spec, "labels");
      if (!json_is_object (labels))
        json_object_set_new (spec, "labels", labels = json_object ());
      json_object_set_new (labels, NEX_CLUSTER_KEY_LABEL, json_string (key));
    }
  json_t *answer = nex_cluster_deploy_on (c, node_id, spec, err);
  if (answer == NULL)
    return -1;
  if (is_auto)
    {
      cleanup_json json_t *entry = entry_new (key, spec, placement, answer, probe.restart_policy != NEX_RESTART_NEVER);
      cleanup_error nex_error_t kv_err = NULL;
      if (nex_desired_create (c, key, entry, &kv_err) < 0)
        nex_log_error (NEX_LOG_WARN, kv_err, "cluster: workload %s runs on %s but is not in the desired state",
                       json_string_value (json_object_get (answer, "id")), node_id);
    }
  *out = answer;
  return 0;
}
