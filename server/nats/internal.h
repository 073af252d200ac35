/* SPDX-License-Identifier: Apache-2.0 */
/* nats/internal.h — what the files of the NATS bridge (server/nats/) share; nothing outside them includes it.
 *
 * The bridge's state: the connection, the outbound queue (under lock, signalled by cond), counters, the
 * control subscriptions, the lame-duck drain thread and the function workloads' state. */
#ifndef NEX_NATS_INTERNAL_H
#define NEX_NATS_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <nats/nats.h>

#include "server/nats/bridge.h"

#define NEX_NATS_MAX_SUBS 16
#define NEX_NATS_LOG_CACHE 32

/* One queued publication. */
typedef struct nex_nats_out
{
  char *subject;
  char *data;
  size_t len;
  uint64_t seq; /* order of enqueueing, for its Nats-Msg-Id */
  struct nex_nats_out *next;
} nex_nats_out_t;

/* What the log publisher remembers of a workload, so that each batch costs no registry read. */
typedef struct nex_nats_logref
{
  char id[NEX_ID_LEN + 1];
  char *ns_token;   /* namespace as a subject token */
  char *name_token; /* name as a subject token */
  int64_t next_seq; /* seq of the next line to be stored */
  uint64_t used;    /* for eviction: larger is more recent */
} nex_nats_logref_t;

/* What a control subscription's callback gets as its closure. */
typedef struct nex_nats_binding
{
  struct nex_nats *b;
  const void *route; /* the route (nats/control.c) */
} nex_nats_binding_t;

struct nex_nats
{
  nex_node_t *node;
  natsOptions *opts;
  natsConnection *nc;
  char *node_token; /* node id as a subject token */

  pthread_mutex_t lock;
  pthread_cond_t cond;
  nex_nats_out_t *head, *tail;           /* queue; under lock */
  nex_nats_out_t *sent_head, *sent_tail; /* handed to nats.c, not yet confirmed by a flush; publisher only */
  int64_t sent;                          /* entries in that list */
  uint64_t next_seq;                     /* seq of the next entry enqueued */
  int64_t queued;                        /* entries in the queue */
  int64_t dropped;                       /* entries dropped because the queue was full */
  int64_t published;   /* entries the server confirmed having received (a flush after them succeeded) */
  int64_t republished; /* entries sent again because the connection fell before their flush */
  int64_t reconnects;
  int connected; /* connection status as last reported by nats.c */
  int stopping;  /* nex_nats_close has begun */
  int closed;    /* nats.c reported the connection closed */
  int serving;   /* control callbacks may act on the node (cleared by quiesce) */
  int inflight;  /* control callbacks running now (quiesce waits for 0) */
  pthread_t publisher;
  int publisher_started;
  pthread_t drainer; /* lame-duck drain thread */
  int drainer_started;

  natsSubscription *subs[NEX_NATS_MAX_SUBS]; /* control subscriptions */
  nex_nats_binding_t bindings[NEX_NATS_MAX_SUBS];
  int n_subs;

  nex_nats_logref_t logrefs[NEX_NATS_LOG_CACHE]; /* touched by the supervisor thread only */
  uint64_t log_clock;

  struct nex_nats_functions *fns; /* function workloads (nats/functions.c); set once by nex_nats_serve */
};

/* Copies S into a new string usable as one subject token ('.', '*', '>' and spaces become '_'). */
char *nex_nats_token (const char *s);

/* Queues a publication of N bytes at DATA on SUBJECT (both copied). */
void nex_nats_enqueue (nex_nats_t *b, const char *subject, const char *data, size_t len);

/* Node uptime in nex's format ("1h2m3s"), into BUF. */
char *nex_nats_uptime (int64_t ms, char *buf, size_t size);

/* The control API's payload checks (nats/control.c), pure, for any thread (tests/fuzz/fuzz-nats-control.c feeds
 * them hostile bytes).  body_parse: a request body of LEN bytes as a JSON object (an empty body is {} when
 * EMPTY_OK); a new reference, or NULL with NEX_ERR_INVALID whose message is the reply's error.  deploy_fields: a
 * nex deploy request BODY (nex's field names) as the REST deploy fields for nex_workload_from_request, for
 * namespace NS of the subject on node NODE_ID; a new reference, or NULL with NEX_ERR_INVALID naming the field.
 * auction_matches: whether auction request BODY (arch, os, tags, workload_types, sandboxed) matches a node with
 * TAGS (nex_nats_tags; nex.arch present). */
json_t *nex_nats_body_parse (const char *data, size_t len, int empty_ok, nex_error_t *err);
json_t *nex_nats_deploy_fields (const char *node_id, json_t *body, const char *ns, nex_error_t *err);
int nex_nats_auction_matches (const json_t *tags, json_t *body);

/* Subscribes the control API handlers (nats/control.c). */
int nex_nats_control_subscribe (nex_nats_t *b, nex_error_t *err);

/* Function workloads (nats/functions.c).  start: the functions thread, which first subscribes the functions
 * already running (call once, from nex_nats_serve, after the supervisor started).  notice: EVENT was just
 * recorded (any thread; workload start and end events (un)subscribe functions).  quiesce: unsubscribe every
 * function (after b->serving was cleared).  stop: answer what is still in flight and end the thread (after the
 * supervisor stopped, before the connection closes).  free: after nats.c's threads are gone.  All are safe when
 * start never ran. */
int nex_nats_functions_start (nex_nats_t *b, nex_error_t *err);
void nex_nats_functions_notice (nex_nats_t *b, const json_t *event);
void nex_nats_functions_quiesce (nex_nats_t *b);
void nex_nats_functions_stop (nex_nats_t *b);
void nex_nats_functions_free (nex_nats_t *b);

#endif
