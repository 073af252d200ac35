/* SPDX-License-Identifier: Apache-2.0 */
/* client.h — the `nex` CLI's HTTP client: one libcurl handle talking JSON to one nexd, and websockets (the
 * interactive exec session) over the same handle's connection.
 *
 * Every call returns 0 with the parsed JSON answer of a 2xx response, or -1 with an error whose message is one
 * line a user can act on: the problem's `detail` (prefixed with its `field` when it names one) for an API error,
 * or what went wrong on the way (connection refused, timeout, an answer that is not JSON).  The CLI prints that
 * message and exits 1.  Not thread-safe: the CLI is single-threaded. */
#ifndef NEX_CLI_CLIENT_H
#define NEX_CLI_CLIENT_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/error.h"

typedef struct nex_client nex_client_t;

/* A client of the node at SERVER ("http://host:port", no trailing path), sending TOKEN (NULL: none) as a
 * bearer token.  Never fails except on OOM (which aborts). */
nex_client_t *nex_client_new (const char *server, const char *token);

/* Trusts the CA certificate(s) in the PEM file PATH for https:// servers (instead of the system's). */
void nex_client_set_cacert (nex_client_t *c, const char *path);
void nex_client_free (nex_client_t *c);

/* Performs METHOD on PATH (which may carry a query built with nex_client_path) with BODY (NULL: none) as
 * JSON.  On 2xx: 0, *OUT the answer (new reference; {} when it had no body) and *STATUS the HTTP status.  On an
 * API error: -1 with the problem's message and *STATUS set; on a transport failure: -1 and *STATUS 0. */
int nex_client_call (nex_client_t *c, const char *method, const char *path, const json_t *body, long *status,
                     json_t **out, nex_error_t *err);

/* As nex_client_call for POST of the SIZE bytes of file F (read from its current position) as the raw body. */
int nex_client_upload (nex_client_t *c, const char *path, FILE *f, int64_t size, long *status, json_t **out,
                       nex_error_t *err);

/* Builds "PATH?k1=v1&k2=v2..." from NULL-terminated pairs of key and value (pairs with a NULL value are left
 * out), percent-encoding the values.  Caller frees. */
char *nex_client_path (nex_client_t *c, const char *path, ...) __attribute__ ((sentinel));

/* Websockets (`nex exec -it`).  libcurl 7.88 has no websocket client, so libcurl makes the connection — TCP and,
 * for https://, TLS with the same CA settings as every call (CURLOPT_CONNECT_ONLY) — and the handshake and
 * frames (common/ws-frame.h) go over it with curl_easy_send/recv.  One websocket per client, which then makes no
 * other call.
 *
 * nex_client_ws_open sends the opening handshake for PATH (bearer token in the Authorization header) and reads
 * the answer: 0 once it is 101; -1 with the problem's message (as nex_client_call, *STATUS set) when the node
 * refused, or on a transport failure (*STATUS 0). */
int nex_client_ws_open (nex_client_t *c, const char *path, long *status, nex_error_t *err);

/* The connection's socket, to poll for input (POLLIN: call nex_client_ws_recv). */
int nex_client_ws_fd (nex_client_t *c);

/* Sends one message (NEX_WS_BINARY or NEX_WS_TEXT, or a NEX_WS_CLOSE) in full, masked; waits for room.  0 or -1. */
int nex_client_ws_send (nex_client_t *c, int opcode, const void *data, size_t len, nex_error_t *err);

/* Receives what the socket has and returns the next whole message: 1 with *OPCODE, *DATA (valid until the next
 * call) and *LEN; 0 when none is complete yet (poll again); -1 when the connection failed or the server broke the
 * protocol.  Pings are answered here; a close frame is returned as NEX_WS_CLOSE. */
int nex_client_ws_recv (nex_client_t *c, int *opcode, const uint8_t **data, size_t *len, nex_error_t *err);

#endif
