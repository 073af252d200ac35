/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/internal.h — what the files of server/cluster/ share; nothing outside them includes it.
 *
 *   cluster.c    start, stop, the cluster thread (its tick), the queue of workload ends
 *   capacity.c   what this node offers and has free after its reservations (its heartbeat document)
 *   heartbeat.c  publishing the heartbeat, hearing the peers'
 *   directory.c  the peer table: alive, dead, snapshots for placement
 *   rank.c       the placement rule and the requirement check, pure
 *   placement.c  the auction, the remote deploy, the REST front door
 *   desired.c    the NEX_DESIRED bucket: opening, following it (a local copy), writes with revisions
 *   failover.c   claims of a dead owner's entries, fencing, moving work off a draining node
 *   ps.c         every node's workloads ($NEX.cluster.ps) and drain requests
 *   stop.c       stopping a workload on the node that runs it ($NEX.STOP.<ns>.<node>), for REST's DELETE */
#ifndef NEX_CLUSTER_INTERNAL_H
#define NEX_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <nats/nats.h>

#include "server/cluster/cluster.h"

#define NEX_CLUSTER_HEARTBEAT_MS 1000
#define NEX_CLUSTER_TICK_MS 200
#define NEX_CLUSTER_BUCKET "NEX_DESIRED"
#define NEX_CLUSTER_HB_PREFIX "$NEX.cluster.heartbeat."
#define NEX_CLUSTER_PS_SUBJECT "$NEX.cluster.ps"

/* One peer as last heard (the node itself included: its own heartbeat comes back from the server). */
typedef struct nex_peer
{
  char id[64];
  json_t *info;      /* its last heartbeat document (capacity.c's form) */
  int64_t seen_mono; /* monotonic ms of that heartbeat's arrival */
  int64_t seen_at;   /* Unix ms, for display */
  int dead;          /* declared dead: silent for node_timeout (cleared when it is heard again) */
  struct nex_peer *next;
} nex_peer_t;

/* The requirements of a placement (rank.c), borrowed from the request. */
typedef struct nex_requirements
{
  const json_t *tags; /* object of strings, or NULL */
  const char *driver; /* NULL: any (the node's default) */
  int64_t memory_mb;  /* 0: none */
  double vcpus;       /* 0: none */
} nex_requirements_t;

struct nex_cluster
{
  nex_node_t *node;
  natsConnection *nc;
  int64_t timeout_ms;   /* node_timeout */
  int64_t lease_ms;     /* how long the agents of restartable cluster workloads run on after this node last heard
                           itself: timeout_ms less min(2 s, timeout_ms / 2) (supervisor-lease.c) */
  int lapsed;           /* cluster thread: the lease ran out; the start-up pass runs again once it is held */
  int64_t started_mono; /* monotonic ms of nex_cluster_start */

  pthread_mutex_t lock;
  pthread_cond_t cond;
  int stopping;
  nex_peer_t *peers; /* under lock */
  int lease_lapsed;  /* under lock: this node heard itself again after its lease had run out (directory.c) */
  json_t *ends;      /* under lock: [{workload_id, state}] of workloads that ended, for the cluster thread */

  /* the bucket (desired.c) */
  jsCtx *js;
  kvStore *kv;              /* NULL until opened */
  int64_t kv_next_try;      /* monotonic ms of the next attempt to open it (cluster thread) */
  char *kv_error;           /* why it is not open yet (under lock) */
  int replicas;             /* of the bucket as made or found */
  kvWatcher *watcher;       /* follows every key once the bucket is open (replaced when it falls behind) */
  int watch_gen;            /* under lock: bumped to end the current watch thread (a new watcher replaces it) */
  uint64_t watch_seq;       /* under lock: the highest revision the watcher delivered */
  json_t *resync_seen;      /* under lock: keys a replacing watcher delivered before its initial values were in */
  int64_t watch_check_at;   /* cluster thread: monotonic ms of the next check of the watcher */
  uint64_t stale_mark;      /* cluster thread: the bucket's last revision at a check the watcher was behind */
  uint64_t reconnects_seen; /* cluster thread: the connection's reconnect count at the last check */
  int rewatch_pending;      /* cluster thread: a reconnect was seen; the watcher is replaced once JetStream can */
  json_t *desired;          /* under lock: key -> {rev, value}: the bucket as last seen */
  int desired_ready;        /* under lock: the watcher delivered the initial values */
  int fenced_at_start;      /* cluster thread: the start-up check of local copies was done */
  json_t *orphans;          /* cluster thread: key -> monotonic ms its owner was first seen dead */

  pthread_t thread, watch_thread, beat_thread;
  int thread_started, watch_started, beat_started;
  natsSubscription *hb_sub, *ps_sub;
};

/* --- capacity.c --- */
/* This node's heartbeat document: {node_id, name, version, tags, drivers: [available names], total: {memory_mb,
 * vcpus}, free: {memory_mb, vcpus}, workloads (live), lame_duck, api}.  New reference.  Reads the registry. */
json_t *nex_cluster_self_info (nex_cluster_t *c);

/* --- heartbeat.c --- */
int nex_cluster_heartbeat_subscribe (nex_cluster_t *c, nex_error_t *err);
void nex_cluster_heartbeat_publish (nex_cluster_t *c);

/* --- directory.c --- */
/* Records INFO (stolen) as peer ID's latest heartbeat. */
void nex_cluster_peer_heard (nex_cluster_t *c, const char *id, json_t *info);
/* Marks peers silent for timeout_ms dead; returns a new array of the ids that became dead now. */
json_t *nex_cluster_peers_sweep (nex_cluster_t *c);
/* Whether node ID is to be taken as dead: declared dead, or never heard although this node has listened for
 * longer than timeout_ms.  Never true for this node, nor while this node does not hear itself (its own link is
 * down: then it cannot tell). */
int nex_cluster_peer_is_dead (nex_cluster_t *c, const char *id);
/* Copies of the live peers' documents (this node included unless EXCLUDE_SELF), each with `node_id`. */
json_t *nex_cluster_peers_alive (nex_cluster_t *c, int exclude_self);
/* The table as GET /v1/cluster/nodes shows it. */
json_t *nex_cluster_peers_json (nex_cluster_t *c);
void nex_cluster_peers_free (nex_cluster_t *c);

/* --- rank.c (pure) --- */
/* Requirements of a deploy SPEC (a REST body; resources.memory_mb, resources.vcpus, driver) and PLACEMENT
 * (tags, driver), borrowed.  -1 with NEX_ERR_INVALID naming the field when placement is malformed or names
 * another driver than the spec. */
int nex_cluster_requirements (const json_t *spec, const json_t *placement, nex_requirements_t *out, nex_error_t *err);
/* Whether a node whose heartbeat document is INFO meets R; when it does not and WHY is not NULL, *WHY is the
 * first reason (caller frees). */
int nex_cluster_fits (const json_t *info, const nex_requirements_t *r, char **why);
/* The placement rule: < 0 when node document A is the better place, > 0 when B is: more free memory, then more
 * free CPU, then fewer workloads, then the smaller node id. */
int nex_cluster_rank (const json_t *a, const json_t *b);
/* R as an auction request body: nex's members (tags, workload_types) and ours (driver, memory_mb, vcpus). */
json_t *nex_cluster_requirements_json (const nex_requirements_t *r);
/* The inverse, for a node answering an auction: borrowed from BODY. */
void nex_cluster_requirements_from_json (const json_t *body, nex_requirements_t *out);

/* --- placement.c --- */
/* Runs the auction for R (excluding this node when EXCLUDE_SELF) and returns the winner's document (new
 * reference), or NULL with ERR (no node answered: NEX_ERR_UNAVAILABLE; none fits: NEX_ERR_INVALID with the
 * reasons). */
json_t *nex_cluster_auction (nex_cluster_t *c, const nex_requirements_t *r, int exclude_self, nex_error_t *err);
/* Deploys SPEC (REST fields, namespace included) on node NODE_ID: locally through nex_deploy_submit when it is
 * this node, else over $NEX.DEPLOY.<ns>.<node>.  The workload's JSON with `node` (new reference), or NULL. */
json_t *nex_cluster_deploy_on (nex_cluster_t *c, const char *node_id, const json_t *spec, nex_error_t *err);

/* Namespace NS (NULL: default) as one token of a control subject ($NEX.DEPLOY.<ns>.<node>): dots become
 * underscores, as the nodes' control subscriptions expect.  Caller frees. */
char *nex_cluster_ns_token (const char *ns);

/* --- desired.c --- */
/* Tries to open (or make) the bucket when it is time; the cluster thread. */
void nex_desired_open (nex_cluster_t *c);
/* Checks, every WATCH_CHECK_MS, that the watcher keeps up with the bucket (nats.c recreates a KV watcher's
 * consumer lost with its server only on a later missed heartbeat, and gives up on a timeout while JetStream
 * elects a leader): a watcher behind the bucket's last revision at two checks in a row, or one that lived
 * through a reconnect, is replaced by a new one (all entries delivered again; the keys it no longer has are
 * taken as deleted).  The cluster thread. */
void nex_desired_check (nex_cluster_t *c);
/* Ends the watch thread, once `stopping` is set (nex_cluster_stop); close: frees the bucket's handles too
 * (nex_cluster_free). */
void nex_desired_stop_watching (nex_cluster_t *c);
void nex_desired_close (nex_cluster_t *c);
/* Writes a new entry KEY = VALUE (must not exist).  0 or -1. */
int nex_desired_create (nex_cluster_t *c, const char *key, const json_t *value, nex_error_t *err);
/* Replaces entry KEY with VALUE if its revision is still REV; the new revision into *NEW_REV.  0, 1 when
 * another write came first (the caller lost), or -1.  At most one call per (KEY, REV) succeeds in the whole
 * cluster, even when several are in flight at once (the message id KEY@REV; desired.c says why). */
int nex_desired_update (nex_cluster_t *c, const char *key, const json_t *value, uint64_t rev, uint64_t *new_rev,
                        nex_error_t *err);
/* Removes entry KEY.  0 or -1. */
int nex_desired_delete (nex_cluster_t *c, const char *key, nex_error_t *err);
/* A copy of entry KEY as last seen ({rev, value}), or NULL. */
json_t *nex_desired_get (nex_cluster_t *c, const char *key);
/* A copy of the local copy of the bucket: {key: {rev, value}}; NULL before the initial values arrived. */
json_t *nex_desired_snapshot (nex_cluster_t *c);
/* Status for GET /v1/cluster/nodes: {bucket, ready, replicas, entries, error}. */
json_t *nex_desired_status (nex_cluster_t *c);

/* --- failover.c --- */
/* One round: claims the entries of dead owners that the rule gives to this node (or that nobody claimed
 * within a grace), marks dead owners' non-restartable entries lost.  The cluster thread. */
void nex_failover_round (nex_cluster_t *c);
/* The start-up check, once the bucket is followed: every local live copy whose entry is gone or names another
 * owner is stopped.  The cluster thread. */
void nex_failover_fence_all (nex_cluster_t *c);
/* The watcher saw entry KEY change to VALUE (NULL: deleted): stops this node's copy if it is no longer the
 * owner's.  The watch thread. */
void nex_failover_entry_changed (nex_cluster_t *c, const char *key, const json_t *value);
/* A cluster workload of this node ended (ID, final STATE): removes its entry when this node still owns it. */
void nex_failover_workload_ended (nex_cluster_t *c, const char *id);

/* --- ps.c --- */
int nex_cluster_ps_subscribe (nex_cluster_t *c, nex_error_t *err);

/* --- helpers (cluster.c) --- */
/* The live workloads of this node carrying the cluster label (with value KEY, or any when KEY is NULL), into *OUT
 * (release each, free the array). */
int nex_cluster_local_live (nex_cluster_t *c, const char *key, nex_workload_t **out, size_t *n, nex_error_t *err);
void nex_cluster_list_free (nex_workload_t *list, size_t n);
/* The cluster key of W (its label), or NULL. */
const char *nex_cluster_key_of (const nex_workload_t *w);

#endif
