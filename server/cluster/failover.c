/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/failover.c — moving work: claims of a dead owner's entries, fencing of stale copies, evacuation of a
 * draining node (contracts in cluster/internal.h).
 *
 * Claims.  Every node sees the same bucket and nearly the same peer table, so every node computes the same
 * assignment of a dead owner's restartable entries: in key order, each to the best live node by the placement
 * rule, whose free resources are then lowered by the entry's reservation (so a dead node's work spreads out
 * instead of landing on one node).  The node an entry is assigned to claims it at once; any other live node
 * claims it only after it has stayed unclaimed for another node_timeout (the assigned node may have died too).
 * A claim is an update of the entry conditioned on the revision seen: of all the nodes trying, exactly one
 * writes, the others get "wrong last sequence" and let go.  The winner then deploys the spec locally and
 * writes the new workload id.  A non-restartable entry of a dead owner is marked `lost` (event workload_lost).
 *
 * Fencing.  A copy is legitimate only on the node its entry names: whenever the entry of a workload this node
 * runs is deleted or names another owner, this node stops its copy (event workload_fenced).  That is checked
 * on every change the watcher reports and, once, for every local copy when the node starts following the
 * bucket — which is how a node that comes back after being declared dead learns that it lost its claims. */
#include "server/cluster/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"
#include "server/supervisor.h"

#define FENCE_GRACE_MS 2000 /* a fenced copy gets SIGTERM, then SIGKILL after this */

static int
owned_by (const json_t *value, const char *id)
{
  const char *owner = json_string_value (json_object_get (value, "owner"));
  return owner && strcmp (owner, id) == 0;
}

/* Stops this node's copy W of entry KEY, which names OWNER (NULL: the entry is gone). */
static void
fence_one (nex_cluster_t *c, const nex_workload_t *w, const char *key, const char *owner)
{
  nex_warn ("cluster: workload %s (%s) is %s: stopping this copy", w->id, key,
            owner ? "owned by another node now" : "no longer in the desired state");
  nex_node_emit (c->node, "workload_fenced", w, json_pack ("{s:s, s:s?}", "key", key, "owner", owner));
  nex_supervisor_stop (c->node->sup, w->id, FENCE_GRACE_MS);
}

/* Stops every local live copy of KEY, whose entry is now VALUE (NULL: deleted). */
static void
fence (nex_cluster_t *c, const char *key, const json_t *value)
{
  nex_workload_t *list = NULL;
  size_t n = 0;
  if (nex_cluster_local_live (c, key, &list, &n, NULL) < 0)
    return;
  for (size_t i = 0; i < n; i++)
    fence_one (c, &list[i], key, json_string_value (json_object_get (value, "owner")));
  nex_cluster_list_free (list, n);
}

void
nex_failover_entry_changed (nex_cluster_t *c, const char *key, const json_t *value)
{
  if (value == NULL || !owned_by (value, c->node->id))
    fence (c, key, value);
}

/* Runs entry KEY (its VALUE at revision REV) on this node as its new owner: claim, deploy, record the workload.
 * FROM is the previous owner.  0 when this node runs it now, 1 when another node won the claim, -1 on failure. */
static int
take_over (nex_cluster_t *c, const char *key, const json_t *value, uint64_t rev, const char *from)
{
  cleanup_json json_t *claim = json_deep_copy (value);
  json_object_set_new (claim, "owner", json_string (c->node->id));
  json_object_set_new (claim, "from", from ? json_string (from) : json_null ());
  json_object_set_new (claim, "state", json_string ("claimed"));
  json_object_set_new (claim, "workload_id", json_null ());
  uint64_t claimed_rev = 0;
  cleanup_error nex_error_t err = NULL;
  int r = nex_desired_update (c, key, claim, rev, &claimed_rev, &err);
  if (r != 0)
    {
      if (r < 0)
        nex_log_error (NEX_LOG_WARN, err, "cluster: cannot claim %s", key);
      return r;
    }
  cleanup_json json_t *answer = nex_cluster_deploy_on (c, c->node->id, json_object_get (value, "spec"), &err);
  if (answer == NULL)
    {
      nex_log_error (NEX_LOG_WARN, err, "cluster: claimed %s but cannot run it", key);
      json_object_set_new (claim, "state", json_string ("failed"));
      json_object_set_new (claim, "reason", json_string (err->msg));
      nex_desired_update (c, key, claim, claimed_rev, NULL, NULL);
      return -1;
    }
  const char *id = json_string_value (json_object_get (answer, "id"));
  json_object_set_new (claim, "state", json_string ("running"));
  json_object_set (claim, "workload_id", json_object_get (answer, "id"));
  nex_error_free (&err);
  if (nex_desired_update (c, key, claim, claimed_rev, NULL, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "cluster: %s runs as %s but the entry does not say so", key, id);
  nex_info ("cluster: workload %s rescheduled from %s to this node as %s", key, from ? from : "?", id);
  nex_workload_t w = { 0 };
  if (nex_registry_workload_get (c->node->reg, id, &w, NULL) == 0)
    nex_node_emit (c->node, "workload_rescheduled", &w,
                   json_pack ("{s:s?, s:s, s:s, s:O?}", "from", from, "to", c->node->id, "key", key,
                              "previous_workload_id", json_object_get (value, "workload_id")));
  nex_workload_release (&w);
  return 0;
}

/* Marks the non-restartable entry KEY of a dead owner lost (one node wins the update and reports it). */
static void
mark_lost (nex_cluster_t *c, const char *key, const json_t *value, uint64_t rev)
{
  cleanup_json json_t *lost = json_deep_copy (value);
  json_object_set_new (lost, "state", json_string ("lost"));
  json_object_set_new (lost, "lost_at", json_integer (nex_clock_now_ms ()));
  if (nex_desired_update (c, key, lost, rev, NULL, NULL) != 0)
    return;
  nex_warn ("cluster: workload %s (%s) was lost with node %s (restart policy never)", key,
            json_string_value (json_object_get (value, "workload_id")),
            json_string_value (json_object_get (value, "owner")));
  nex_node_emit (c->node, "workload_lost", NULL,
                 json_pack ("{s:s, s:O?, s:O?, s:O?, s:O?}", "key", key, "node", json_object_get (value, "owner"),
                            "workload_id", json_object_get (value, "workload_id"), "name",
                            json_object_get (value, "name"), "namespace", json_object_get (value, "namespace")));
}

static int
key_order (const void *a, const void *b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

/* The live node documents ALIVE of the best place for entry VALUE, lowered by its reservation; NULL when none
 * fits. */
static json_t *
assign (json_t *alive, const json_t *value)
{
  nex_requirements_t r;
  if (nex_cluster_requirements (json_object_get (value, "spec"), json_object_get (value, "placement"), &r, NULL) < 0)
    return NULL;
  json_t *best = NULL;
  size_t i;
  json_t *doc;
  json_array_foreach (alive, i, doc)
  {
    if (nex_cluster_fits (doc, &r, NULL) && (best == NULL || nex_cluster_rank (doc, best) < 0))
      best = doc;
  }
  if (best == NULL)
    return NULL;
  json_t *free_ = json_object_get (best, "free");
  json_object_set_new (
      free_, "memory_mb",
      json_integer ((json_int_t)json_number_value (json_object_get (free_, "memory_mb")) - r.memory_mb));
  json_object_set_new (free_, "vcpus", json_real (json_number_value (json_object_get (free_, "vcpus")) - r.vcpus));
  json_object_set_new (best, "workloads",
                       json_integer ((json_int_t)json_number_value (json_object_get (best, "workloads")) + 1));
  return best;
}

/* Whether this node is the smallest id among the live ones in ALIVE (the one that does the chores of the dead). */
static int
first_alive (nex_cluster_t *c, const json_t *alive)
{
  size_t i;
  json_t *doc;
  json_array_foreach ((json_t *)alive, i, doc)
  {
    const char *id = json_string_value (json_object_get (doc, "node_id"));
    if (id && strcmp (id, c->node->id) < 0)
      return 0;
  }
  return 1;
}

/* Removes the `lost` entries of dead owners older than --lost-ttl (event workload_forgotten): their node is not
 * coming back, or it would have dropped or revived them.  Done by one node (first_alive) so that it is said once. */
static void
forget_expired (nex_cluster_t *c, const json_t *snap, const json_t *alive)
{
  int64_t ttl_ms = c->node->cfg->lost_ttl * 1000, now = nex_clock_now_ms ();
  if (ttl_ms <= 0 || !first_alive (c, alive))
    return;
  const char *key;
  json_t *e;
  json_object_foreach ((json_t *)snap, key, e)
  {
    const json_t *v = json_object_get (e, "value");
    const char *state = json_string_value (json_object_get (v, "state"));
    json_int_t at = json_integer_value (json_object_get (v, "lost_at"));
    if (state == NULL || strcmp (state, "lost") != 0 || at <= 0 || now - at < ttl_ms
        || !nex_cluster_peer_is_dead (c, json_string_value (json_object_get (v, "owner"))))
      continue;
    if (nex_desired_delete (c, key, NULL) < 0)
      continue;
    nex_info ("cluster: workload %s (%s) was lost %lld s ago: removed from the desired state", key,
              json_string_value (json_object_get (v, "workload_id")), (long long)((now - at) / 1000));
    nex_node_emit (c->node, "workload_forgotten", NULL,
                   json_pack ("{s:s, s:O?, s:O?, s:O?, s:O?}", "key", key, "node", json_object_get (v, "owner"),
                              "workload_id", json_object_get (v, "workload_id"), "name", json_object_get (v, "name"),
                              "namespace", json_object_get (v, "namespace")));
  }
}

void
nex_failover_round (nex_cluster_t *c)
{
  cleanup_json json_t *snap = nex_desired_snapshot (c);
  if (snap == NULL || __atomic_load_n (&c->node->lameduck, __ATOMIC_SEQ_CST))
    return;
  /* The orphans, in key order (every node walks them in the same order). */
  size_t n = 0, cap = json_object_size (snap);
  cleanup_free const char **keys = nex_xmalloc ((cap ? cap : 1) * sizeof *keys);
  const char *key;
  json_t *e;
  json_object_foreach (snap, key, e)
  {
    const json_t *v = json_object_get (e, "value");
    const char *owner = json_string_value (json_object_get (v, "owner"));
    const char *state = json_string_value (json_object_get (v, "state"));
    if (owner && (state == NULL || strcmp (state, "lost") != 0) && nex_cluster_peer_is_dead (c, owner))
      keys[n++] = key;
  }
  qsort (keys, n, sizeof *keys, key_order);
  cleanup_json json_t *alive = nex_cluster_peers_alive (c, 0);
  int64_t now = nex_clock_mono_ms ();
  cleanup_json json_t *still = json_object ();
  for (size_t i = 0; i < n; i++)
    {
      json_t *entry = json_object_get (snap, keys[i]);
      const json_t *v = json_object_get (entry, "value");
      uint64_t rev = (uint64_t)json_integer_value (json_object_get (entry, "rev"));
      const char *owner = json_string_value (json_object_get (v, "owner"));
      json_t *since = json_object_get (c->orphans, keys[i]);
      int64_t first = since ? json_integer_value (since) : now;
      json_object_set_new (still, keys[i], json_integer (first));
      if (!json_is_true (json_object_get (v, "restartable")))
        {
          mark_lost (c, keys[i], v, rev);
          continue;
        }
      json_t *to = assign (alive, v);
      const char *to_id = json_string_value (json_object_get (to, "node_id"));
      int mine = to_id && strcmp (to_id, c->node->id) == 0;
      if (mine || now - first > c->timeout_ms)
        take_over (c, keys[i], v, rev, owner);
    }
  json_decref (c->orphans);
  c->orphans = NEX_STEAL_PTR (still);
  forget_expired (c, snap, alive);
}

/* The workload of live list LIST (N of them) that is the copy of entry KEY with id ID (any copy of KEY when ID
 * is NULL), or NULL. */
static const nex_workload_t *
copy_of (const nex_workload_t *list, size_t n, const char *key, const char *id)
{
  for (size_t i = 0; i < n; i++)
    {
      const char *k = nex_cluster_key_of (&list[i]);
      if (k && strcmp (k, key) == 0 && (id == NULL || strcmp (list[i].id, id) == 0))
        return &list[i];
    }
  return NULL;
}

/* Entry KEY (E: {rev, value}) names this node, which runs copy W of it: the entry is made to say so (state
 * running, W's id) when it does not (a claim interrupted by a crash, or a `lost` verdict the copy outlived). */
static void
confirm (nex_cluster_t *c, const char *key, const json_t *e, const nex_workload_t *w)
{
  const json_t *v = json_object_get (e, "value");
  const char *state = json_string_value (json_object_get (v, "state"));
  const char *id = json_string_value (json_object_get (v, "workload_id"));
  if (state && strcmp (state, "running") == 0 && id && strcmp (id, w->id) == 0)
    return;
  cleanup_json json_t *back = json_deep_copy (v);
  json_object_set_new (back, "state", json_string ("running"));
  json_object_set_new (back, "workload_id", json_string (w->id));
  json_object_del (back, "lost_at");
  nex_desired_update (c, key, back, (uint64_t)json_integer_value (json_object_get (e, "rev")), NULL, NULL);
}

void
nex_failover_fence_all (nex_cluster_t *c)
{
  cleanup_json json_t *snap = nex_desired_snapshot (c);
  nex_workload_t *list = NULL;
  size_t n = 0;
  if (snap == NULL || nex_cluster_local_live (c, NULL, &list, &n, NULL) < 0)
    return;
  /* Local copies: each must be the one its entry names. */
  for (size_t i = 0; i < n; i++)
    {
      const char *key = nex_cluster_key_of (&list[i]);
      const json_t *v = json_object_get (json_object_get (snap, key), "value");
      const char *id = json_string_value (json_object_get (v, "workload_id"));
      if (v == NULL || !owned_by (v, c->node->id) || (id && strcmp (id, list[i].id) != 0))
        fence_one (c, &list[i], key, json_string_value (json_object_get (v, "owner")));
    }
  /* Entries naming this node: a copy that ended while nexd was away runs again (restartable) or is done. */
  const char *key;
  json_t *e;
  json_object_foreach (snap, key, e)
  {
    const json_t *v = json_object_get (e, "value");
    if (!owned_by (v, c->node->id))
      continue;
    const nex_workload_t *w = copy_of (list, n, key, json_string_value (json_object_get (v, "workload_id")));
    if (w)
      confirm (c, key, e, w);
    else if (json_is_true (json_object_get (v, "restartable")))
      take_over (c, key, v, (uint64_t)json_integer_value (json_object_get (e, "rev")), c->node->id);
    else
      nex_desired_delete (c, key, NULL);
  }
  nex_cluster_list_free (list, n);
}

void
nex_failover_workload_ended (nex_cluster_t *c, const char *id)
{
  nex_workload_t w = { 0 };
  if (nex_registry_workload_get (c->node->reg, id, &w, NULL) < 0)
    return;
  const char *key = nex_cluster_key_of (&w);
  cleanup_json json_t *e = key ? nex_desired_get (c, key) : NULL;
  const json_t *v = json_object_get (e, "value");
  const char *owner_id = json_string_value (json_object_get (v, "workload_id"));
  /* Only the owner's own copy ending means the workload is done; a fenced or moved copy ends too, and the entry
   * lives on elsewhere. */
  int lease = w.reason && strncmp (w.reason, NEX_LEASE_EXPIRED_REASON, strlen (NEX_LEASE_EXPIRED_REASON)) == 0;
  if (lease)
    nex_info ("cluster: workload %s (%s) ended with its lease; it stays in the desired state", w.id, key ? key : "-");
  else if (v && owned_by (v, c->node->id) && owner_id && strcmp (owner_id, w.id) == 0)
    {
      cleanup_error nex_error_t err = NULL;
      if (nex_desired_delete (c, key, &err) < 0)
        nex_log_error (NEX_LOG_WARN, err, "cluster: %s ended but stays in the desired state", key);
      else
        nex_info ("cluster: workload %s (%s) ended %s; removed from the desired state", w.id, key,
                  nex_state_name (w.state));
    }
  nex_workload_release (&w);
}

int
nex_cluster_evacuate (nex_cluster_t *c)
{
  nex_workload_t *list = NULL;
  size_t n = 0;
  int moved = 0;
  if (c == NULL || nex_cluster_local_live (c, NULL, &list, &n, NULL) < 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    {
      const char *key = nex_cluster_key_of (&list[i]);
      cleanup_json json_t *e = nex_desired_get (c, key);
      const json_t *v = json_object_get (e, "value");
      if (v == NULL || !owned_by (v, c->node->id) || !json_is_true (json_object_get (v, "restartable")))
        continue;
      nex_requirements_t r;
      cleanup_error nex_error_t err = NULL;
      cleanup_json json_t *winner = NULL;
      cleanup_json json_t *answer = NULL;
      if (nex_cluster_requirements (json_object_get (v, "spec"), json_object_get (v, "placement"), &r, &err) < 0
          || (winner = nex_cluster_auction (c, &r, 1, &err)) == NULL
          || (answer = nex_cluster_deploy_on (c, json_string_value (json_object_get (winner, "node_id")),
                                              json_object_get (v, "spec"), &err))
                 == NULL)
        {
          nex_log_error (NEX_LOG_WARN, err, "cluster: cannot move %s off this node", key);
          continue;
        }
      cleanup_json json_t *next = json_deep_copy (v);
      json_object_set (next, "owner", json_object_get (answer, "node"));
      json_object_set (next, "workload_id", json_object_get (answer, "id"));
      json_object_set_new (next, "from", json_string (c->node->id));
      json_object_set_new (next, "state", json_string ("running"));
      if (nex_desired_update (c, key, next, (uint64_t)json_integer_value (json_object_get (e, "rev")), NULL, &err) != 0)
        {
          nex_log_error (NEX_LOG_WARN, err, "cluster: moved %s but could not hand it over", key);
          continue;
        }
      moved++;
      nex_node_emit (c->node, "workload_rescheduled", &list[i],
                     json_pack ("{s:s, s:O, s:s, s:O}", "from", c->node->id, "to", json_object_get (answer, "node"),
                                "key", key, "workload_id", json_object_get (answer, "id")));
    }
  nex_cluster_list_free (list, n);
  return moved;
}
