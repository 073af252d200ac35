/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/cluster.h — nodes joined by NATS: a directory of peers, placement anywhere, desired state in JetStream
 * and failover (ARCHITECTURE.md, "Cluster").
 *
 * Every node started with --nats is a member: it publishes its heartbeat (what it offers and has free, after the
 * reservations of its live workloads) every second on $NEX.cluster.heartbeat.<node> and keeps a table of the
 * peers it hears.  A deploy with `node: "auto"` runs nex's auction ($NEX.AUCTION), takes the winner by the
 * placement rule (rank.c) and deploys there over $NEX.DEPLOY.<ns>.<node>.  What was placed that way is kept in
 * the JetStream key-value bucket NEX_DESIRED (spec, owner, workload id); when an owner stays silent for
 * node_timeout seconds the other nodes claim its restartable workloads with a compare-and-set on the entry's
 * revision, so exactly one of them runs each, and a node that finds an entry it held owned by another stops its
 * own copy (fencing).
 *
 * There is no scheduler process and no consensus of our own: the auction is nex's, the shared state is
 * JetStream's (replicated by its Raft groups), and the one atomic step, the claim, is the KV's update with an
 * expected revision.
 *
 * Threads: the cluster runs a heartbeat thread, a cluster thread (the peer sweep, claims, fencing, the ends of
 * workloads) and one that follows the bucket; nats.c's delivery threads update the peer table and answer
 * $NEX.cluster.ps.  The functions below may be called from any thread unless they say otherwise. */
#ifndef NEX_CLUSTER_H
#define NEX_CLUSTER_H

#include <jansson.h>

#include "common/error.h"
#include "server/node.h"

/* The label every workload placed with `node: "auto"` carries: the key of its entry in the bucket, which stays
 * the same when the workload moves to another node (the workload id does not). */
#define NEX_CLUSTER_KEY_LABEL "nex.cluster/key"

/* Joins NODE's cluster over the bridge's connection (node->nats and node->sup must exist): subscriptions,
 * the cluster thread; the bucket is opened (or made) in the background, so that a NATS system that is not
 * reachable yet, or has no JetStream, does not keep the node from starting.  NULL with ERR when a thread or a
 * subscription could not be made. */
nex_cluster_t *nex_cluster_start (nex_node_t *node, nex_error_t *err);

/* Leaves: ends the threads and subscriptions (workloads keep running; peers will declare this node dead after
 * node_timeout unless it comes back).  Call before the supervisor shuts down.  Safe on NULL and more than once. */
void nex_cluster_stop (nex_cluster_t *c);

/* Frees what start made (stopping first if needed).  Call after nex_nats_close: nats.c's threads, which call
 * the cluster's callbacks, must be gone.  Safe on NULL. */
void nex_cluster_free (nex_cluster_t *c);

/* The peer table for GET /v1/cluster/nodes: {nodes: [{id, name, tags, drivers, free, total, workloads,
 * last_heartbeat, age_ms, lame_duck, alive, self}], desired: {ready, entries}}.  New reference. */
json_t *nex_cluster_nodes (nex_cluster_t *c);

/* Deploys REQUEST, a REST deploy body with `node` ("auto", a node id, or this node's) and/or `placement`
 * ({tags: {k: v}, driver}): validated here first; then placed by the auction and the rule (auto), or sent to
 * the node named.  *OUT is the workload as the node that took it answered, with `node` set (new reference).
 * Errors: NEX_ERR_INVALID naming the field; NEX_ERR_INVALID too when nodes answer but none meets the
 * requirements (the message says why each one does not); NEX_ERR_UNAVAILABLE when no node answered;
 * NEX_ERR_NOT_FOUND for a node id nobody heard; whatever the chosen node refused with.  An MHD thread. */
int nex_cluster_deploy (nex_cluster_t *c, const json_t *request, json_t **out, nex_error_t *err);

/* Every node's workloads for GET /v1/cluster/workloads, gathered over $NEX.cluster.ps within ~1 s, FILTER
 * ({namespace, state, node, namespaces}) applied, plus the entries of the bucket reported `lost`:
 * {workloads: [workload + node], nodes_asked, nodes_answered}.  New reference, or NULL with ERR. */
json_t *nex_cluster_workloads (nex_cluster_t *c, const json_t *filter, nex_error_t *err);

/* Stops workload ID on whichever node of the cluster runs it (found with nex_cluster_workloads, limited to
 * NAMESPACES, an array, when not NULL), over that node's $NEX.STOP.<ns>.<node> with GRACE_S and JWT (a secure
 * launch's stop token, or NULL).  *OUT is the workload as that node listed it, with `node` (new reference); *LIVE
 * whether it was still live (the stop was sent) or had ended already.  NEX_ERR_NOT_FOUND when no node has it;
 * the owner's refusal as NEX_ERR_CONFLICT; NEX_ERR_UNAVAILABLE when it does not answer.  An MHD thread. */
int nex_cluster_stop_remote (nex_cluster_t *c, const char *id, int64_t grace_s, const char *jwt,
                             const json_t *namespaces, json_t **out, int *live, nex_error_t *err);

/* The desired-state entry KEY as this node last saw it (its value: {key, namespace, name, owner, workload_id,
 * restartable, state, ...}; new reference), or NULL when there is none. */
json_t *nex_cluster_entry (nex_cluster_t *c, const char *key);

/* Removes entry KEY from the desired state: a `lost` one is forgotten; a live one's copy is then stopped by its
 * owner (fencing), and it is not run again anywhere.  0, or -1 with ERR (NEX_ERR_UNAVAILABLE: the bucket is not
 * reachable). */
int nex_cluster_forget (nex_cluster_t *c, const char *key, nex_error_t *err);

/* The REST address (its --listen, host:port) that node NODE_ID announces in its heartbeat, or NULL (caller
 * frees). */
char *nex_cluster_api_of (nex_cluster_t *c, const char *node_id);

/* Asks node NODE_ID (its id, or "self") to drain over $NEX.LAMEDUCK.<node>: it moves its restartable cluster
 * workloads to other nodes, stops the rest and exits.  *OUT is its reply's data.  NEX_ERR_NOT_FOUND when no
 * node answers. */
int nex_cluster_drain (nex_cluster_t *c, const char *node_id, json_t **out, nex_error_t *err);

/* EVENT was just recorded (nex_node_emit, through the bridge): the end of a cluster workload on its owner
 * removes its entry from the bucket (queued for the cluster thread).  Never blocks. */
void nex_cluster_notice (nex_cluster_t *c, const json_t *event);

/* Lame duck: moves every restartable cluster workload of this node to another node chosen by the rule (the
 * new copy is running before the entry names its new owner; this node's copy is then stopped by fencing).
 * Returns how many moved.  The drain thread. */
int nex_cluster_evacuate (nex_cluster_t *c);

/* For $NEX.AUCTION: whether this node meets the cluster members of auction request BODY (driver, memory_mb,
 * vcpus, tags; nex's own members are matched by nex_nats_auction_matches), and this node's heartbeat document
 * for the reply's `cluster` member (new reference; NULL when it does not fit). */
json_t *nex_cluster_bid (nex_cluster_t *c, const json_t *body);

#endif
