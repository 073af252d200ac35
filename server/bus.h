/* SPDX-License-Identifier: Apache-2.0 */
/* bus.h — the node's in-process publish/subscribe: live events and log lines, fanned out to whoever watches.
 *
 * Publishers are nex_node_emit (every CloudEvent, once it is stored) and nex_node_store_logs (every output line,
 * once it is stored, with its sequence number).  Subscribers are the websocket streams (api/ws.c), the
 * long-poll waiters of GET .../wait (api/api.c) and anyone else who needs to hear about things as they happen.
 *
 * A publisher never waits for a subscriber: each subscription has a bounded queue (a number of messages and a
 * number of bytes); when a new message does not fit, the OLDEST queued ones are dropped and counted, so a slow
 * subscriber skips ahead to what is recent and learns how many it missed (nex_bus_next), and neither the
 * workload, the supervisor nor other subscribers are slowed.  A subscription is woken by a write to its
 * eventfd when its queue goes from empty to non-empty.
 *
 * Messages are immutable and reference-counted: one copy is shared by every subscription that queued it.
 * Thread safety: every function may be called from any thread; one mutex guards the subscription list and the
 * queues, held only to match and enqueue (never across I/O or a callback). */
#ifndef NEX_BUS_H
#define NEX_BUS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "server/workload.h"

typedef enum nex_bus_kind
{
  NEX_BUS_EVENT = 1, /* a CloudEvent (event.h) */
  NEX_BUS_LOG = 2,   /* one stored output line */
} nex_bus_kind_t;

/* One published message.  Read-only for subscribers; release with nex_bus_msg_unref. */
typedef struct nex_bus_msg
{
  nex_bus_kind_t kind;
  char workload_id[NEX_ID_LEN + 1]; /* what it is about; "" for node events */
  char *namespace_;                 /* the workload's namespace, NULL when unknown */
  json_t *event;                    /* EVENT: the CloudEvent (do not modify) */
  const char *type;                 /* EVENT: its type (points into event) */
  int64_t seq;                      /* LOG: the line's sequence number in the workload's log */
  int stream;                       /* LOG: nex_stream_t */
  int64_t ts;                       /* LOG: Unix ms */
  char *text;                       /* LOG: the line (UTF-8, as stored), NUL-terminated */
  size_t len;                       /* LOG: bytes of text */
  uint8_t *frame;                   /* LOG: the line as a websocket text frame, made once for every client by the
                                       websocket thread (api/ws.c), which alone reads and writes it; NULL until */
  size_t frame_len;
  int refs; /* internal */
} nex_bus_msg_t;

void nex_bus_msg_unref (nex_bus_msg_t *m);

/* What a subscription wants; empty strings match anything. */
typedef struct nex_bus_filter
{
  unsigned kinds; /* NEX_BUS_EVENT | NEX_BUS_LOG */
  char workload_id[NEX_ID_LEN + 1];
  char namespace_[64];
  char type[64]; /* events only */
} nex_bus_filter_t;

typedef struct nex_bus nex_bus_t;
typedef struct nex_bus_sub nex_bus_sub_t;

nex_bus_t *nex_bus_new (void);

/* Frees the bus.  Every subscription must have been cancelled.  Safe on NULL. */
void nex_bus_free (nex_bus_t *bus);

/* Counts published events (not log lines); increases before subscribers hear of one.  A waiter reads it before
 * reading the state it waits on, and refuses to sleep if it changed meanwhile (see api.c), so that no event
 * falls between its check and its sleep. */
uint64_t nex_bus_event_count (nex_bus_t *bus);

/* Subscribes to what F matches, queueing at most MAX_MSGS messages and MAX_BYTES bytes of log text.  When the
 * queue goes from empty to non-empty, 1 is added to the eventfd NOTIFY_FD (if >= 0).  Never fails. */
nex_bus_sub_t *nex_bus_subscribe (nex_bus_t *bus, const nex_bus_filter_t *f, size_t max_msgs, size_t max_bytes,
                                  int notify_fd);

/* Ends a subscription, dropping what it queued.  Safe on NULL. */
void nex_bus_unsubscribe (nex_bus_t *bus, nex_bus_sub_t *sub);

/* Takes the oldest queued message: 1 with *OUT (the caller unrefs it), 0 when the queue is empty.  *MISSED
 * receives how many messages were dropped just before this one because the queue was full (0 usually). */
int nex_bus_next (nex_bus_t *bus, nex_bus_sub_t *sub, nex_bus_msg_t **out, uint64_t *missed);

/* Messages dropped from SUB so far, in total. */
uint64_t nex_bus_dropped (nex_bus_t *bus, nex_bus_sub_t *sub);

/* Publishes EVENT (a CloudEvent; a reference is taken) about workload W (NULL for node events). */
void nex_bus_publish_event (nex_bus_t *bus, json_t *event, const nex_workload_t *w);

/* Publishes one stored log line of workload ID (in NAMESPACE): its sequence number, stream, time and text. */
void nex_bus_publish_log (nex_bus_t *bus, const char *id, const char *namespace_, int64_t seq, int stream, int64_t ts,
                          const char *text, size_t len);

/* Whether anyone subscribes to log lines of workload ID (so that publishers can skip building them). */
int nex_bus_wants_logs (nex_bus_t *bus, const char *id);

#endif
