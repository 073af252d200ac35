/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/cluster.c — joining and leaving the cluster, and the cluster thread (contract in cluster/cluster.h).
 *
 * The heartbeat thread publishes every NEX_CLUSTER_HEARTBEAT_MS.  The cluster thread wakes every
 * NEX_CLUSTER_TICK_MS and, in this order: opens the bucket if it is not open yet, sweeps the peer table, handles the
 * workloads that ended, does the start-up fencing once the bucket is followed, and runs a failover round.  Everything
 * that deploys or stops on behalf of the cluster happens here (or in the drain thread), never on a nats.c thread. */
#include "server/cluster/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"
#include "server/nats/bridge.h"

const char *
nex_cluster_key_of (const nex_workload_t *w)
{
  return json_string_value (json_object_get (w->labels, NEX_CLUSTER_KEY_LABEL));
}

void
nex_cluster_list_free (nex_workload_t *list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    nex_workload_release (&list[i]);
  free (list);
}

int
nex_cluster_local_live (nex_cluster_t *c, const char *key, nex_workload_t **out, size_t *n, nex_error_t *err)
{
  nex_label_match_t m = { .key = NEX_CLUSTER_KEY_LABEL, .value = key };
  nex_workload_filter_t f = { .labels = &m, .n_labels = 1 };
  nex_workload_t *all = NULL;
  size_t total = 0, k = 0;
  if (nex_registry_workload_list (c->node->reg, &f, &all, &total, err) < 0)
    return -1;
  for (size_t i = 0; i < total; i++)
    {
      if (!nex_state_is_final (all[i].state))
        all[k++] = all[i];
      else
        nex_workload_release (&all[i]);
    }
  *out = all;
  *n = k;
  return 0;
}

void
nex_cluster_notice (nex_cluster_t *c, const json_t *event)
{
  if (c == NULL)
    return;
  const json_t *data = json_object_get (event, "data");
  const char *id = json_string_value (json_object_get (data, "workload_id"));
  nex_state_t state;
  const char *st = json_string_value (json_object_get (data, "state"));
  if (id == NULL || st == NULL || nex_state_parse (st, &state, NULL) < 0 || !nex_state_is_final (state))
    return;
  pthread_mutex_lock (&c->lock);
  if (!c->stopping)
    json_array_append_new (c->ends, json_string (id));
  pthread_cond_broadcast (&c->cond);
  pthread_mutex_unlock (&c->lock);
}

/* The ids of the workloads that ended since the last call (new reference). */
static json_t *
take_ends (nex_cluster_t *c)
{
  pthread_mutex_lock (&c->lock);
  json_t *ends = c->ends;
  c->ends = json_array ();
  pthread_mutex_unlock (&c->lock);
  return ends;
}

/* While this node does not hear itself its lease runs down, and the agents of its restartable cluster workloads
 * end them when it is out (supervisor-lease.c).  Once it is heard again, the start-up pass runs again: the
 * entries it still owns whose copy ended that way run again, the others were claimed elsewhere meanwhile. */
static void
check_lease (nex_cluster_t *c)
{
  int64_t until = __atomic_load_n (&c->node->lease_until, __ATOMIC_SEQ_CST);
  int held = until > nex_clock_mono_ms ();
  pthread_mutex_lock (&c->lock);
  int ran_out = c->lease_lapsed; /* while this thread was busy elsewhere (a JetStream request waiting) */
  c->lease_lapsed = 0;
  pthread_mutex_unlock (&c->lock);
  if ((ran_out || (!held && until != 0)) && !c->lapsed)
    {
      nex_warn ("cluster: this node has not heard itself for %lld ms: its lease ran out", (long long)c->lease_ms);
      c->lapsed = 1;
    }
  else if (held && c->lapsed)
    {
      nex_info ("cluster: this node hears itself again: checking its workloads against the desired state");
      c->lapsed = 0;
      c->fenced_at_start = 0;
    }
}

static void
tick (nex_cluster_t *c)
{
  nex_desired_open (c);
  nex_desired_check (c);
  cleanup_json json_t *died = nex_cluster_peers_sweep (c);
  size_t i;
  json_t *v;
  json_array_foreach (died, i, v)
  {
    nex_warn ("cluster: node %s is silent for %lld ms: declared dead", json_string_value (v), (long long)c->timeout_ms);
    nex_node_emit (c->node, "node_lost", NULL, json_pack ("{s:O}", "node", v));
  }
  cleanup_json json_t *ends = take_ends (c);
  json_array_foreach (ends, i, v) { nex_failover_workload_ended (c, json_string_value (v)); }
  pthread_mutex_lock (&c->lock);
  int ready = c->desired_ready;
  pthread_mutex_unlock (&c->lock);
  check_lease (c);
  if (!ready)
    return;
  if (!c->fenced_at_start)
    {
      c->fenced_at_start = 1;
      nex_failover_fence_all (c);
    }
  nex_failover_round (c);
}

/* Waits on the cluster's condition for at most MS, the lock held; whether the cluster is stopping. */
static int
wait_locked (nex_cluster_t *c, int64_t ms)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L)
    {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
  if (!c->stopping)
    pthread_cond_timedwait (&c->cond, &c->lock, &ts);
  return c->stopping;
}

static void *
cluster_main (void *arg)
{
  nex_cluster_t *c = arg;
  pthread_mutex_lock (&c->lock);
  while (!c->stopping)
    {
      pthread_mutex_unlock (&c->lock);
      tick (c);
      pthread_mutex_lock (&c->lock);
      wait_locked (c, NEX_CLUSTER_TICK_MS);
    }
  pthread_mutex_unlock (&c->lock);
  return NULL;
}

/* The heartbeat has a thread of its own: the cluster thread's bucket writes may wait seconds on JetStream (a
 * leader election), and a heartbeat that waits with them would get this node declared dead. */
static void *
beat_main (void *arg)
{
  nex_cluster_t *c = arg;
  pthread_mutex_lock (&c->lock);
  while (!c->stopping)
    {
      pthread_mutex_unlock (&c->lock);
      nex_cluster_heartbeat_publish (c);
      pthread_mutex_lock (&c->lock);
      wait_locked (c, NEX_CLUSTER_HEARTBEAT_MS);
    }
  pthread_mutex_unlock (&c->lock);
  return NULL;
}

void
nex_cluster_free (nex_cluster_t *c)
{
  if (c == NULL)
    return;
  nex_cluster_stop (c);
  if (c->hb_sub)
    natsSubscription_Destroy (c->hb_sub);
  if (c->ps_sub)
    natsSubscription_Destroy (c->ps_sub);
  nex_desired_close (c);
  nex_cluster_peers_free (c);
  json_decref (c->ends);
  json_decref (c->desired);
  json_decref (c->orphans);
  json_decref (c->resync_seen);
  free (c->kv_error);
  pthread_mutex_destroy (&c->lock);
  pthread_cond_destroy (&c->cond);
  free (c);
}

static void
cluster_freep (nex_cluster_t **c)
{
  nex_cluster_free (*c);
}

nex_cluster_t *
nex_cluster_start (nex_node_t *node, nex_error_t *err)
{
  cleanup_with (cluster_freep) nex_cluster_t *c = nex_xzalloc (sizeof *c);
  c->node = node;
  c->nc = nex_nats_connection (node->nats);
  c->timeout_ms = node->cfg->node_timeout * 1000;
  c->lease_ms = c->timeout_ms - (c->timeout_ms / 2 < 2000 ? c->timeout_ms / 2 : 2000);
  c->started_mono = nex_clock_mono_ms ();
  c->ends = json_array ();
  c->desired = json_object ();
  c->orphans = json_object ();
  pthread_mutex_init (&c->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init (&ca);
  pthread_condattr_setclock (&ca, CLOCK_MONOTONIC);
  pthread_cond_init (&c->cond, &ca);
  pthread_condattr_destroy (&ca);
  if (nex_cluster_heartbeat_subscribe (c, err) < 0 || nex_cluster_ps_subscribe (c, err) < 0)
    return NULL;
  int r = pthread_create (&c->thread, NULL, cluster_main, c);
  if (r != 0)
    {
      nex_error_sys (err, r, "start the cluster thread");
      return NULL;
    }
  c->thread_started = 1;
  r = pthread_create (&c->beat_thread, NULL, beat_main, c);
  if (r != 0)
    {
      nex_error_sys (err, r, "start the heartbeat thread");
      return NULL;
    }
  c->beat_started = 1;
  nex_info ("cluster: joined (heartbeat every %d ms, node timeout %lld s)", NEX_CLUSTER_HEARTBEAT_MS,
            (long long)node->cfg->node_timeout);
  return NEX_STEAL_PTR (c);
}

void
nex_cluster_stop (nex_cluster_t *c)
{
  if (c == NULL)
    return;
  pthread_mutex_lock (&c->lock);
  int was = c->stopping;
  c->stopping = 1;
  pthread_cond_broadcast (&c->cond);
  pthread_mutex_unlock (&c->lock);
  if (was)
    return;
  if (c->hb_sub)
    natsSubscription_Unsubscribe (c->hb_sub);
  if (c->ps_sub)
    natsSubscription_Unsubscribe (c->ps_sub);
  if (c->thread_started)
    pthread_join (c->thread, NULL);
  if (c->beat_started)
    pthread_join (c->beat_thread, NULL);
  c->thread_started = c->beat_started = 0;
  nex_desired_stop_watching (c);
}

json_t *
nex_cluster_nodes (nex_cluster_t *c)
{
  json_t *nodes = nex_cluster_peers_json (c);
  return json_pack ("{s:o, s:I, s:s, s:o}", "nodes", nodes, "node_timeout_s", (json_int_t)c->node->cfg->node_timeout,
                    "self", c->node->id, "desired", nex_desired_status (c));
}

json_t *
nex_cluster_bid (nex_cluster_t *c, const json_t *body)
{
  if (c == NULL)
    return NULL;
  nex_requirements_t r;
  nex_cluster_requirements_from_json (body, &r);
  json_t *info = nex_cluster_self_info (c);
  if (!nex_cluster_fits (info, &r, NULL))
    {
      json_decref (info);
      return NULL;
    }
  return info;
}

json_t *
nex_cluster_entry (nex_cluster_t *c, const char *key)
{
  cleanup_json json_t *e = nex_desired_get (c, key);
  return json_incref (json_object_get (e, "value"));
}

int
nex_cluster_forget (nex_cluster_t *c, const char *key, nex_error_t *err)
{
  if (nex_desired_delete (c, key, err) < 0)
    return -1;
  nex_info ("cluster: entry %s removed from the desired state on request", key);
  return 0;
}
