/* SPDX-License-Identifier: Apache-2.0 */
/* node.h — the node: what one running nexd is and owns.
 *
 * nex_node_t ties the long-lived parts together — configuration, registry, supervisor, API — and holds the
 * node's identity: a server nkey made at first start, its seed kept in data_dir/identity.json (nats/identity.h);
 * the registry keeps a copy of the id (meta `node_id`) only to say which node wrote it.  It is created once by
 * main and passed to every subsystem; its members are read-only after nex_node_open, except through the
 * subsystems' own thread-safe functions.  nex_node_emit is the one place an event is recorded and fanned out. */
#ifndef NEX_NODE_H
#define NEX_NODE_H

#include <stdint.h>

#include <jansson.h>

#include "common/error.h"
#include "server/config.h"
#include "server/nats/identity.h"
#include "server/registry.h"

typedef struct nex_supervisor nex_supervisor_t;
typedef struct nex_cgroups nex_cgroups_t;
typedef struct nex_bus nex_bus_t;
typedef struct nex_auth nex_auth_t;
typedef struct nex_nats nex_nats_t;
typedef struct nex_image_store nex_image_store_t;
typedef struct nex_cluster nex_cluster_t;
typedef struct nex_net nex_net_t;

typedef struct nex_node
{
  const nex_config_t *cfg;
  nex_registry_t *reg;
  nex_supervisor_t *sup;
  nex_bus_t *bus;          /* live events and log lines for subscribers (bus.h) */
  nex_auth_t *auth;        /* API tokens (auth.h); made and freed by the API */
  nex_nats_t *nats;        /* the NATS bridge, NULL when the node runs alone (set before the supervisor starts,
                              cleared after it stopped) */
  nex_cluster_t *cluster;  /* the cluster over NATS (cluster/cluster.h), NULL without NATS; set once serving */
  nex_identity_t identity; /* the node's nkey (its id) and xkey; secrets, never shown */
  char id[64];             /* node id: the node's public server nkey ("N...") */
  int lameduck;            /* set once (any thread, atomically): the node takes no more deploys */
  int64_t lease_until;     /* monotonic ms (atomic) up to which the agents of restartable cluster workloads may
                              run without news from nexd: set by the cluster each time it hears its own heartbeat,
                              handed to them as LEASE by the supervisor (supervisor-lease.c); 0: never set */
  char *hostname;
  char *data_dir;            /* absolute */
  char *artifacts_dir;       /* data_dir/artifacts: content-addressed executables */
  char *run_dir;             /* data_dir/run: one directory per live sandbox */
  nex_image_store_t *images; /* OCI images: data_dir/oci (artifacts/image-store.h) */
  char *agent_path;          /* absolute path of nex-agent */
  int64_t started_at;        /* Unix ms */
  int64_t started_mono;      /* monotonic ms, for uptime */
  nex_cgroups_t *cgroups;    /* resource limits for sandboxes (cgroup.h); NULL when this host offers none */
  char *cgroups_error;       /* why cgroups is NULL */
  int64_t logs_paused_until; /* monotonic ms (atomic): output is not stored before then (the registry is full) */
  int logs_full;             /* supervisor thread: a full registry is dropping output (logged once per spell) */
  nex_net_t *net;            /* workload networking (server/net/net.h); NULL when this host cannot do it */
  char *net_error;           /* why net is NULL */
} nex_node_t;

/* While the registry is full, output lines give way to state changes: none is stored before UNTIL (monotonic
 * ms), they are dropped and counted (nex_log_lines_lost_total).  Called by the supervisor while it holds
 * transitions the registry refused.  Any thread. */
void nex_node_pause_logs (nex_node_t *node, int64_t until);

/* Prepares the data directory (artifacts/, run/), finds nex-agent (CFG's `agent`) and the microVM kernel
 * directory, opens cgroups (their absence is recorded in cgroups_error, not an error), the
 * registry, and loads (or creates) the node's identity (nats/identity.h).  CFG must outlive the node.  A new node
 * for nex_node_close, or NULL with ERR. */
nex_node_t *nex_node_open (const nex_config_t *cfg, nex_error_t *err);

/* Closes the registry and frees the node (the supervisor and API must have been stopped).  Safe on NULL. */
void nex_node_close (nex_node_t *node);

/* Records an event of TYPE about workload W (may be NULL) with DATA (stolen; may be NULL): builds the
 * CloudEvent (event.h) and stores it.  Failures are logged, not returned: an event lost must not fail the
 * operation it reports.  Any thread. */
void nex_node_emit (nex_node_t *node, const char *type, const nex_workload_t *w, json_t *data);

/* The two halves of nex_node_emit, for a caller that stores the event itself (in the transaction of the change
 * it reports: nex_registry_workload_transition_event).  nex_node_event_new builds the CloudEvent of TYPE about W
 * (may be NULL) with DATA (stolen; may be NULL): a new reference.  nex_node_event_publish passes a stored (or
 * unstorable) event EV on to the bus, the counters and NATS.  Any thread. */
json_t *nex_node_event_new (nex_node_t *node, const char *type, const nex_workload_t *w, json_t *data);
void nex_node_event_publish (nex_node_t *node, json_t *ev, const nex_workload_t *w);

/* As nex_node_emit, but the event is not stored: it reaches live watchers (the bus, NATS) and the counters only.
 * For events too frequent to keep one row each (a function's successful runs).  Any thread. */
void nex_node_announce (nex_node_t *node, const char *type, const nex_workload_t *w, json_t *data);

/* Stores N output lines of workload ID (keeping the node's log_lines bound), after SKIPPED lines that were passed
 * over before storing (numbered and counted as dropped, see output.h), and publishes them, numbered, to the bus
 * for live followers and to NATS.  OFFSETS (may be NULL) is how much of the workload's stdout and stderr the lines
 * cover, recorded with them (nex_registry_log_append_seq).  Failures are logged, not returned: the workload must
 * go on.  Any thread (the supervisor's, in practice). */
void nex_node_store_logs (nex_node_t *node, const char *id, const nex_log_line_t *lines, size_t n, int64_t skipped,
                          const int64_t offsets[2]);

#endif
