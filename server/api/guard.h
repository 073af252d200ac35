/* SPDX-License-Identifier: Apache-2.0 */
/* guard.h — a deadline on every HTTP request, against clients that send slowly on purpose (slowloris).
 *
 * libmicrohttpd's connection timeout is an idle timeout: a client that sends one byte of its headers every few
 * seconds is never idle and holds its connection (and, multiplied, every connection slot) forever.  The guard
 * gives each request a deadline instead: from the moment its connection is ready for a request (accepted, or
 * the previous answer sent) until its body is complete, and a shorter one for its headers alone.  A request
 * still incomplete at its deadline has its socket shut down (shutdown(2), not close: libmicrohttpd still owns
 * the descriptor and sees end-of-file, then closes the connection the usual way).  While an answer is being
 * sent, a long poll is parked or a websocket is open, the connection is exempt: those have their own bounds.
 *
 * The guard also holds the connection cap.  A plain limit refuses the newcomer, so a few thousand slow sockets
 * that fill the cap lock every normal client out until their deadlines pass.  Instead libmicrohttpd is given a
 * little headroom above the cap, and a connection that arrives beyond it sheds one that has spent at least a
 * second on its headers and sent the fewest bytes (TCP_INFO) — the newcomer only when there is no such one.
 *
 * api.c registers nex_guard_notify as libmicrohttpd's connection notifier and tells the guard when a request's
 * headers are in (nex_guard_headers), when its answer is queued (nex_guard_busy) and when it is complete
 * (nex_guard_idle).  One thread checks deadlines a few times a second.  Every function may be called from any
 * thread. */
#ifndef NEX_GUARD_H
#define NEX_GUARD_H

#include <stdint.h>

#include <microhttpd.h>

#include "common/error.h"

typedef struct nex_guard nex_guard_t;

/* Starts the guard: a request has HEADER_DEADLINE_MS for its headers and DEADLINE_MS in all (both from its start;
 * the first is capped by the second), and CAP connections are served at once.  NULL on failure. */
nex_guard_t *nex_guard_start (int64_t header_deadline_ms, int64_t deadline_ms, long cap, nex_error_t *err);

/* How far above CAP libmicrohttpd's own connection limit must be, so that newcomers reach the guard to shed. */
#define NEX_GUARD_HEADROOM(cap) ((cap) / 8 > 64 ? (cap) / 8 : 64)

/* Stops the thread and frees the guard (after the daemon stopped: no connection may be left).  Safe on NULL. */
void nex_guard_stop (nex_guard_t *g);

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback; CLS is the guard. */
void nex_guard_notify (void *cls, struct MHD_Connection *conn, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);

/* CONN's request has sent its headers: from now on only the whole request's deadline applies. */
void nex_guard_headers (struct MHD_Connection *conn);

/* CONN's request has its answer (or is parked, or upgraded): no deadline until nex_guard_idle. */
void nex_guard_busy (struct MHD_Connection *conn);

/* CONN's request is complete: the next one's deadline starts now. */
void nex_guard_idle (struct MHD_Connection *conn);

/* Connections shut down for missing their deadline, so far. */
uint64_t nex_guard_expired (nex_guard_t *g);

/* Connections shut down to make room for a newcomer beyond the cap, so far. */
uint64_t nex_guard_shed (nex_guard_t *g);

#endif
