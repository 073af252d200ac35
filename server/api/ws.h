/* SPDX-License-Identifier: Apache-2.0 */
/* ws.h — nexd's websocket streams: live log tails, live events and interactive exec sessions, on the REST API's
 * own port.
 *
 * api.c answers the opening handshake of `GET /v1/workloads/{id}/logs` and `GET /v1/events` when they ask to be
 * upgraded (after checking the request like any other: 404, 422, ... as problem JSON), has libmicrohttpd send
 * the 101, and hands the socket to this module with what to stream (nex_ws_stream_t, made by the route's opener
 * in api/streams.c).  One thread serves every stream: an epoll loop over the sockets and one eventfd that bus
 * subscriptions and new streams poke.
 *
 * Messages are text frames holding one JSON object each:
 *   log streams   {seq, stream, ts, text} per line (the last TAIL stored lines first, then live ones);
 *                 {"notice": "missed", "count": N} when N lines were skipped because the client read too slowly;
 *                 {"notice": "end", "state", "exit_code", "exit_signal", "reason"} once the workload has ended,
 *                 followed by a close frame (1000).
 *   event streams CloudEvents as they are published (filtered), and {"notice": "missed", "count": N}.
 *   exec sessions binary frames both ways: what the client sends is the process's input (typed into its
 *                 terminal), what nexd sends is its output.  Text frames from the client are control messages
 *                 ({"type": "resize", "rows", "cols"}, {"type": "signal", "signal"}); nexd answers a bad one with
 *                 {"type": "error", "message"} and goes on.  The end is {"type": "exit", "exit_code", "signal",
 *                 "lost_bytes"} (or {"type": "error", "message"} when the session was lost), then a close (1000).
 *                 A client that goes away ends the session: its process is killed.
 * A client that reads slowly never slows the workload or other clients: what waits for it is bounded (its bus
 * queue and its output buffer) and the oldest is dropped first.  Frames from clients are parsed as hostile
 * (ws-frame.h); pings are answered, close frames echoed, data frames ignored (except by exec sessions).
 *
 * Thread safety: nex_ws_adopt and nex_ws_clients from any thread; start/stop from the main thread. */
#ifndef NEX_WS_H
#define NEX_WS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "server/bus.h"
#include "server/node.h"

/* What a websocket streams. */
typedef struct nex_ws_stream
{
  enum
  {
    NEX_WS_LOGS = 1,
    NEX_WS_EVENTS,
    NEX_WS_EXEC,
  } kind;
  char workload_id[NEX_ID_LEN + 1]; /* LOGS: whose */
  int64_t tail;                     /* LOGS: stored lines to send first */
  nex_bus_filter_t filter;          /* EVENTS: which */
  struct nex_exec *exec;            /* EXEC: the running session (exec.h), a reference given back with
                                       nex_supervisor_exec_close when the stream ends */
} nex_ws_stream_t;

typedef struct nex_ws nex_ws_t;

/* Starts the websocket thread.  NULL on failure. */
nex_ws_t *nex_ws_start (nex_node_t *node, nex_error_t *err);

/* Closes every stream (close code 1001, going away) and stops the thread; a stream adopted from now on is closed
 * the same way at once.  Safe on NULL. */
void nex_ws_stop (nex_ws_t *ws);

/* Frees WS, once nothing can adopt a stream any more (the HTTP daemon has stopped).  Safe on NULL. */
void nex_ws_free (nex_ws_t *ws);

/* Takes over an upgraded connection: FD (not to be closed: URH, libmicrohttpd's upgrade handle, closes it),
 * EXTRA (bytes the client sent after the handshake, already read) and what to stream.  Any thread. */
void nex_ws_adopt (nex_ws_t *ws, int fd, void *urh, const char *extra, size_t extra_len, const nex_ws_stream_t *s);

/* Gives up stream S that was never adopted (the upgrade did not happen): ends its exec session, if any.  Any
 * thread. */
void nex_ws_stream_release (nex_node_t *node, nex_ws_stream_t *s);

/* Checks a control message of an interactive exec client: a text frame of LEN bytes, {"type": "resize", "rows",
 * "cols"} (only when the session has a terminal, TTY) or {"type": "signal", "signal"}.  Returns 0 with the wire
 * frame it becomes: *TYPE (NEX_WIRE_RESIZE or NEX_WIRE_SIGNAL) and *FRAME, its JSON payload rebuilt from the
 * checked values, never the client's text (the caller frees it); or -1 with NEX_ERR_INVALID saying what was wrong,
 * which the client is told (the session goes on).  Pure: any thread (tests/fuzz/fuzz-exec.c feeds it). */
int nex_ws_exec_control_parse (const uint8_t *text, size_t len, int tty, int *type, char **frame, nex_error_t *err);

/* Streams open now; messages dropped so far because clients read too slowly. */
int nex_ws_clients (nex_ws_t *ws);
uint64_t nex_ws_dropped (nex_ws_t *ws);

#endif
