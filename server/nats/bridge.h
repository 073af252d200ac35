/* SPDX-License-Identifier: Apache-2.0 */
/* nats/bridge.h — the node on NATS: connection, control API, events and logs (nats.c underneath).
 *
 * With `--nats URL` the node connects to a NATS system and stays connected: the first connection and every
 * reconnection are retried forever, and the node runs (REST included) whether or not NATS is reachable.
 *
 * Out: every event the node records (nex_node_emit) is published as the same CloudEvents JSON on
 * $NEX.events.<namespace>.<type> (namespace "system" for node events), a `heartbeat` event every heartbeat_s
 * seconds, and every stored log line as {text, stream, level, ts, seq} on
 * $NEX.logs.<namespace>.<node>.<workload name>.<workload id>.  Publications go through one bounded queue
 * (nats_buffer entries) drained by the bridge's publisher thread while connected; when the queue is full the
 * oldest entry is dropped and counted, so a long outage costs old entries, never memory or a blocked caller.
 * Subject tokens cannot hold '.', so a '.' inside a namespace or name is published as '_'.
 *
 * In: the control API (nats/control.c) — request/reply on $NEX.PING, $NEX.PING.<node>, $NEX.INFO.<ns>.<node>,
 * $NEX.DEPLOY.<ns>.<node>, $NEX.STOP.<ns>.<node>, $NEX.WPING.<ns>[.<id>], $NEX.LAMEDUCK.<node> and
 * $NEX.AUCTION, with replies in nex's envelope {"type": "io.nats.nex.v1.<op>_response", "data", "error"}.
 * Function workloads (nats/functions.c): each running function's trigger subjects, in a queue group per
 * function; a message runs the function once in its sandbox and is answered with its stdout (or a Nex-Error
 * header).
 *
 * Threads: nats.c runs its own (socket reader, reconnects, one delivery thread per subscription); their
 * callbacks only validate, call thread-safe node functions (nex_deploy_submit, nex_supervisor_stop, the
 * registry) and reply.  The bridge adds a publisher thread (queue, heartbeats), a functions thread (replies
 * and events of function runs) and, after a lame-duck request, a drain thread. */
#ifndef NEX_NATS_BRIDGE_H
#define NEX_NATS_BRIDGE_H

#include <stddef.h>

#include <jansson.h>

#include "common/error.h"
#include "server/node.h"
#include "server/registry.h"

/* Starts the bridge for NODE (node->cfg->nats must be set): credentials and TLS from the configuration, the
 * connection (retried in the background when the server is not reachable yet), the publisher thread.  Call
 * before the supervisor starts and store the result in node->nats.  NULL on failure (bad options, unreadable
 * credentials). */
nex_nats_t *nex_nats_start (nex_node_t *node, nex_error_t *err);

/* Subscribes the control API (after node->sup exists).  0 or -1. */
int nex_nats_serve (nex_nats_t *b, nex_error_t *err);

/* Stops taking control requests and waits until callbacks in progress are done (call before the supervisor
 * shuts down).  Publications keep flowing.  Safe on NULL and more than once. */
void nex_nats_quiesce (nex_nats_t *b);

/* At shutdown: when the connection is down, closes it at once, so that JetStream requests waiting on it (the
 * cluster thread's, and the consumer a KV watcher deletes when it stops) end now instead of waiting out their
 * timeouts — a nexd stopped while NATS was away took 5-10 s.  What is queued could not be published anyway; it
 * is reported unsent by nex_nats_close.  Nothing when connected.  Safe on NULL. */
void nex_nats_close_if_down (nex_nats_t *b);

/* Publishes what is still queued (for at most ~2 s when connected), closes the connection, joins the bridge's
 * threads and frees it.  Call after the supervisor has stopped; clear node->nats first.  Safe on NULL. */
void nex_nats_close (nex_nats_t *b);

/* Queues EVENT (a CloudEvent from nex_node_emit) for $NEX.events.<NAMESPACE or "system">.<type>.  Never
 * blocks on the network.  Any thread. */
void nex_nats_publish_event (nex_nats_t *b, const json_t *event, const char *namespace_);

/* Queues N log lines of workload ID just stored in the registry (so their sequence numbers are known).  Called
 * by the supervisor thread after each successful append. */
void nex_nats_publish_logs (nex_nats_t *b, const char *id, const nex_log_line_t *lines, size_t n);

/* The bridge's state for GET /v1/node: {url, connected, reconnects, queued, dropped, published}.  New
 * reference.  Any thread. */
json_t *nex_nats_status (nex_nats_t *b);

/* The node's tags as a JSON object: nex.os, nex.arch, nex.cpucount plus the configured ones (--tags).  New
 * reference.  Any thread. */
json_t *nex_nats_tags (nex_nats_t *b);

/* The bridge's connection, which the cluster (cluster/cluster.h) shares: owned by the bridge, valid until
 * nex_nats_close. */
struct __natsConnection *nex_nats_connection (nex_nats_t *b);

#endif
