/* client.h — the `nex` CLI's HTTP client: one libcurl handle talking JSON to one nexd.
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

#endif
