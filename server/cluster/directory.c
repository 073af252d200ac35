/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/directory.c — the peer table: who was heard when, who is dead (contract in cluster/internal.h).
 *
 * A peer is dead once it has been silent for node_timeout; the verdict is only given while this node hears its
 * own heartbeat (a node cut off from NATS hears nobody, and must not take everybody for dead).  A peer never
 * heard at all counts as dead once this node has listened for node_timeout: that is how an owner that died
 * before this node started is recognised from its entries in the bucket.  Peers silent for FORGET_MS leave the
 * table.  The table is bounded (MAX_PEERS): heartbeats are accepted from anyone on the NATS system. */
#include "server/cluster/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

#define FORGET_MS (300 * 1000)
#define MAX_PEERS 10000
#define SELF_HEARD_MS (3 * NEX_CLUSTER_HEARTBEAT_MS)

static nex_peer_t *
find_locked (nex_cluster_t *c, const char *id)
{
  for (nex_peer_t *p = c->peers; p; p = p->next)
    if (strcmp (p->id, id) == 0)
      return p;
  return NULL;
}

void
nex_cluster_peer_heard (nex_cluster_t *c, const char *id, json_t *info)
{
  pthread_mutex_lock (&c->lock);
  nex_peer_t *p = find_locked (c, id);
  size_t count = 0;
  for (nex_peer_t *q = c->peers; q && p == NULL; q = q->next)
    count++;
  if (p == NULL && count < MAX_PEERS)
    {
      p = nex_xzalloc (sizeof *p);
      snprintf (p->id, sizeof p->id, "%s", id);
      p->next = c->peers;
      c->peers = p;
      if (strcmp (id, c->node->id) != 0)
        nex_info ("cluster: node %s joined", id);
    }
  if (p)
    {
      if (p->dead)
        nex_info ("cluster: node %s is back", id);
      json_decref (p->info);
      p->info = info;
      info = NULL;
      p->seen_mono = nex_clock_mono_ms ();
      p->seen_at = nex_clock_now_ms ();
      p->dead = 0;
      /* Hearing itself is what this node's lease rests on (supervisor-lease.c).  A lease that had run out before
       * this heartbeat is remembered for the cluster thread, which may not have been looking at the time. */
      if (strcmp (id, c->node->id) == 0)
        {
          int64_t until = __atomic_load_n (&c->node->lease_until, __ATOMIC_SEQ_CST);
          if (until != 0 && until <= p->seen_mono)
            c->lease_lapsed = 1;
          __atomic_store_n (&c->node->lease_until, p->seen_mono + c->lease_ms, __ATOMIC_SEQ_CST);
        }
    }
  pthread_mutex_unlock (&c->lock);
  json_decref (info);
}

/* Whether this node heard its own heartbeat lately (its link to NATS works both ways).  Under lock. */
static int
self_heard_locked (nex_cluster_t *c, int64_t now)
{
  nex_peer_t *self = find_locked (c, c->node->id);
  return self && now - self->seen_mono <= SELF_HEARD_MS;
}

json_t *
nex_cluster_peers_sweep (nex_cluster_t *c)
{
  json_t *died = json_array ();
  int64_t now = nex_clock_mono_ms ();
  pthread_mutex_lock (&c->lock);
  int judge = self_heard_locked (c, now);
  for (nex_peer_t **pp = &c->peers; *pp;)
    {
      nex_peer_t *p = *pp;
      int self = strcmp (p->id, c->node->id) == 0;
      if (!self && now - p->seen_mono > FORGET_MS)
        {
          *pp = p->next;
          json_decref (p->info);
          free (p);
          continue;
        }
      if (!self && judge && !p->dead && now - p->seen_mono > c->timeout_ms)
        {
          p->dead = 1;
          json_array_append_new (died, json_string (p->id));
        }
      pp = &p->next;
    }
  pthread_mutex_unlock (&c->lock);
  return died;
}

int
nex_cluster_peer_is_dead (nex_cluster_t *c, const char *id)
{
  if (id == NULL || strcmp (id, c->node->id) == 0)
    return 0;
  int64_t now = nex_clock_mono_ms ();
  pthread_mutex_lock (&c->lock);
  int dead = 0;
  if (self_heard_locked (c, now))
    {
      nex_peer_t *p = find_locked (c, id);
      dead = p ? p->dead : now - c->started_mono > c->timeout_ms;
    }
  pthread_mutex_unlock (&c->lock);
  return dead;
}

json_t *
nex_cluster_peers_alive (nex_cluster_t *c, int exclude_self)
{
  json_t *out = json_array ();
  int64_t now = nex_clock_mono_ms ();
  pthread_mutex_lock (&c->lock);
  for (nex_peer_t *p = c->peers; p; p = p->next)
    {
      if (p->dead || now - p->seen_mono > c->timeout_ms || (exclude_self && strcmp (p->id, c->node->id) == 0))
        continue;
      json_array_append_new (out, json_deep_copy (p->info));
    }
  pthread_mutex_unlock (&c->lock);
  return out;
}

json_t *
nex_cluster_peers_json (nex_cluster_t *c)
{
  json_t *out = json_array ();
  int64_t now = nex_clock_mono_ms ();
  pthread_mutex_lock (&c->lock);
  for (nex_peer_t *p = c->peers; p; p = p->next)
    {
      char when[NEX_CLOCK_RFC3339_LEN];
      const json_t *i = p->info;
      int alive = !p->dead && now - p->seen_mono <= c->timeout_ms;
      json_t *n
          = json_pack ("{s:s, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:b, s:s, s:I, s:b, s:b, s:O?}", "id", p->id, "name",
                       json_object_get (i, "name"), "tags", json_object_get (i, "tags"), "drivers",
                       json_object_get (i, "drivers"), "free", json_object_get (i, "free"), "total",
                       json_object_get (i, "total"), "workloads", json_object_get (i, "workloads"), "lame_duck",
                       json_is_true (json_object_get (i, "lame_duck")), "last_heartbeat",
                       nex_clock_format (p->seen_at, when, sizeof when), "age_ms", (json_int_t)(now - p->seen_mono),
                       "alive", alive, "self", strcmp (p->id, c->node->id) == 0, "api", json_object_get (i, "api"));
      if (n)
        json_array_append_new (out, n);
    }
  pthread_mutex_unlock (&c->lock);
  return out;
}

void
nex_cluster_peers_free (nex_cluster_t *c)
{
  while (c->peers)
    {
      nex_peer_t *p = c->peers;
      c->peers = p->next;
      json_decref (p->info);
      free (p);
    }
}

char *
nex_cluster_api_of (nex_cluster_t *c, const char *node_id)
{
  pthread_mutex_lock (&c->lock);
  nex_peer_t *p = find_locked (c, node_id);
  const char *api = p ? json_string_value (json_object_get (p->info, "api")) : NULL;
  char *copy = api ? nex_xstrdup (api) : NULL;
  pthread_mutex_unlock (&c->lock);
  return copy;
}
