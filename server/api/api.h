/* SPDX-License-Identifier: Apache-2.0 */
/* api.h — nexd's REST API on libmicrohttpd: the server, the router and what route handlers see.
 *
 * api.c owns everything HTTP: listening, matching the route as soon as the request line and headers are in
 * (so that 404, 405 and 413 are answered before a byte of the body is read), body collection with its size
 * bound (413), JSON parsing (400), request ids, the per-request log line, and turning a handler's nex_error_t
 * into problem JSON (problem.h).  Route handlers (api/node.c, api/workloads.c, api/artifacts.c, ...) deal only
 * in JSON and nex_error_t.  Handlers run on MHD's worker threads and must not block for long: they read the
 * registry and queue commands to the supervisor. */
#ifndef NEX_API_H
#define NEX_API_H

#include <stdint.h>

#include <jansson.h>

#include "common/error.h"
#include "server/node.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/api/ws.h"

struct MHD_Connection;

#define NEX_API_MAX_PARAMS 4

/* How a route takes its request body (nex_api_route_t.wants_body). */
#define NEX_API_BODY_NONE 0 /* ignored */
#define NEX_API_BODY_JSON 1 /* parsed as JSON (required: an empty body is a 400) */

/* One request as a handler sees it. */
typedef struct nex_api_request
{
  nex_node_t *node;
  struct MHD_Connection *conn;
  const char *method;
  const char *path;
  const char *params[NEX_API_MAX_PARAMS]; /* values of the route's {placeholders}, in order */
  json_t *body;                           /* the parsed JSON body (routes with wants_body), else NULL */
  void *upload;                           /* upload routes: the state their begin made, after the last byte */
  int timed_out;                          /* a parked request (see below) is run again because its time is up */
  const nex_principal_t *who;             /* who sent it (auth.h); its scopes were checked before the handler */
  struct nex_api *api;                    /* the server (for nex_api_gauges) */
} nex_api_request_t;

/* What a handler answers when it succeeds.
 *
 * Long polls: a handler that cannot answer yet (GET .../wait) sets PARK_KEY (a workload id) and PARK_MS instead
 * of a body.  api.c then suspends the request — it holds no worker thread meanwhile — and runs the handler again
 * when an event about PARK_KEY is published on the bus (or any event, if the waiters' queue overflowed), or
 * with REQ->timed_out set once PARK_MS (counted from the first park) have passed.  No event can be missed
 * between the handler's look at the registry and the suspension: api.c re-runs the handler at once instead of
 * parking when any event was published since it started. */
typedef struct nex_api_response
{
  unsigned status;               /* 200 when left 0 */
  json_t *body;                  /* owned by the response */
  char *location;                /* optional Location header; owned */
  char park_key[NEX_ID_LEN + 1]; /* non-empty: park the request (see above) */
  int64_t park_ms;               /* how long in all, from the first park */
  char *text;                    /* instead of BODY: these bytes (owned), sent as CONTENT_TYPE */
  size_t text_len;               /* of TEXT; 0: strlen (TEXT) */
  const char *content_type;      /* static storage */
  const char *cache_control;     /* optional Cache-Control header (static storage) */
} nex_api_response_t;

/* Fills RES and returns 0, or returns -1 with ERR (mapped to problem JSON by api.c). */
typedef int (*nex_api_handler_t) (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err);

typedef struct nex_api_route
{
  const char *method;  /* "GET", "POST", ... */
  const char *pattern; /* "/v1/workloads/{id}/logs": literal segments and {placeholders} */
  nex_api_handler_t handler;
  int wants_body; /* NEX_API_BODY_* */
} nex_api_route_t;

/* Serves the dashboard's static files (GET of any path outside /v1/): web/ at "/", and the browser libraries
 * installed by npm under /vendor/.  NEX_ERR_NOT_FOUND when there is no such file.  See api/static.c. */
int nex_api_static_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err);

/* A route whose body is a byte stream handed over as it arrives, never held in memory whole (artifact
 * uploads).  BEGIN runs once the headers are in (REQ->body is NULL; DECLARED is the Content-Length, or -1) and
 * makes the STATE that WRITE appends to; a failure of either is answered at once and the rest of the body
 * discarded.  After the last byte FINISH runs with REQ->upload = STATE.  DISCARD frees STATE in every case. */
typedef struct nex_api_upload_route
{
  const char *method;
  const char *pattern;
  int (*begin) (nex_api_request_t *req, int64_t declared, void **state, nex_error_t *err);
  int (*write) (void *state, const void *data, size_t n, nex_error_t *err);
  nex_api_handler_t finish;
  void (*discard) (void *state);
} nex_api_upload_route_t;

/* A path that can also be a websocket stream (GET with an upgrade handshake, or ?follow=1).  OPEN checks the
 * request (its errors are answered as problem JSON, before any upgrade) and fills what to stream.  A route that
 * STARTS something (an exec session) is a websocket only: every GET to it is taken as a handshake, which is
 * checked (426, 400) before OPEN runs, so that nothing is started for a request that cannot be upgraded; what
 * OPEN started is given back with nex_ws_stream_release if the upgrade does not happen after all. */
typedef struct nex_api_ws_route
{
  const char *pattern;
  int (*open) (nex_api_request_t *req, nex_ws_stream_t *out, nex_error_t *err);
  int starts;
} nex_api_ws_route_t;

/* Route tables, each ending with a NULL method (pattern for nex_api_ws_routes). */
extern const nex_api_route_t nex_api_node_routes[];
extern const nex_api_route_t nex_api_workload_routes[];
extern const nex_api_route_t nex_api_sandbox_routes[]; /* stats, signal, exec (api/sandbox.c) */

/* The opener of GET /v1/workloads/{id}/exec, the interactive exec session over a websocket (api/sandbox.c):
 * checks the request and starts the session (nex_supervisor_exec_open). */
int nex_api_exec_open (nex_api_request_t *req, nex_ws_stream_t *out, nex_error_t *err);

/* A POST /v1/workloads/{id}/exec body, checked (api/sandbox.c).  Pointers borrow from the body. */
typedef struct nex_api_exec_request
{
  const json_t *argv;     /* non-empty array of strings without NUL, argv[0] (the program's path) not empty */
  const char *argv0;      /* the name the program sees instead of its path, or NULL */
  const json_t *env;      /* object of strings named without '=', or NULL */
  const char *stdin_data; /* at most NEX_EXEC_MAX_STDIN bytes, or NULL */
  size_t stdin_len;
  int64_t timeout_ms; /* at least 1 */
} nex_api_exec_request_t;

/* Checks an exec request's BODY (argv, argv0, env, stdin, timeout_s; any other member is refused) into *OUT.
 * 0, or -1 with NEX_ERR_INVALID naming the field.  Pure: any thread (tests/fuzz/fuzz-exec.c feeds it). */
int nex_api_exec_request_parse (const json_t *body, nex_api_exec_request_t *out, nex_error_t *err);
extern const nex_api_route_t nex_api_artifact_routes[];
extern const nex_api_route_t nex_api_event_routes[];
extern const nex_api_route_t nex_api_wait_routes[];
extern const nex_api_ws_route_t nex_api_ws_routes[];
extern const nex_api_route_t nex_api_token_routes[];
extern const nex_api_route_t nex_api_image_routes[];    /* api/images.c */
extern const nex_api_route_t nex_api_snapshot_routes[]; /* VM snapshots (api/snapshots.c) */
extern const nex_api_route_t nex_api_health_routes[];
extern const nex_api_route_t nex_api_metrics_routes[];
extern const nex_api_route_t nex_api_docs_routes[];
extern const nex_api_route_t nex_api_cluster_routes[]; /* /v1/cluster/... (api/cluster.c) */
extern const nex_api_upload_route_t nex_api_artifact_uploads[];
extern const nex_api_upload_route_t nex_api_image_uploads[];

/* Loads the workload named by the route's first {id} parameter into W, checking that the request's token may
 * touch its namespace: NEX_ERR_NOT_FOUND for a malformed or unknown id, NEX_ERR_FORBIDDEN otherwise.  The caller
 * releases W on success (api/workloads.c). */
int nex_api_workload_load (nex_api_request_t *req, nex_workload_t *w, nex_error_t *err);

typedef struct nex_api nex_api_t;

/* The server's cache of answers (api/cache.h). */
struct nex_api_cache *nex_api_answers (nex_api_t *api);

/* What the server knows that /metrics reports (metrics.h). */
void nex_api_gauges (nex_api_t *api, nex_metrics_gauges_t *out);

/* Starts serving NODE's API on node->cfg->listen.  NULL on failure (address in use, bad address). */
nex_api_t *nex_api_start (nex_node_t *node, nex_error_t *err);

/* Stops accepting, finishes in-flight requests and frees the server.  Safe on NULL. */
void nex_api_stop (nex_api_t *api);

/* Requires BODY to be a JSON object whose members are all named in KNOWN (NULL-terminated): NEX_ERR_INVALID
 * naming the first unknown member ("" when BODY is no object). */
int nex_api_body_fields (const json_t *body, const char *const *known, nex_error_t *err);

/* The value of query parameter KEY of REQ, or NULL. */
const char *nex_api_query (const nex_api_request_t *req, const char *key);

/* Parses query parameter KEY as an integer in [MIN, MAX]; absent: *OUT = DEF.  -1 with NEX_ERR_INVALID naming
 * KEY otherwise. */
int nex_api_query_int (const nex_api_request_t *req, const char *key, long long min, long long max, long long def,
                       long long *out, nex_error_t *err);

/* The values of every query parameter KEY of REQ (?k=a&k=b), in order: stores at most MAX of them in OUT and
 * returns how many there are (which may be more than MAX). */
size_t nex_api_query_all (const nex_api_request_t *req, const char *key, const char **out, size_t max);

/* Refuses (NEX_ERR_FORBIDDEN) when REQ's token is limited to namespaces that do not include NS. */
int nex_api_check_namespace (const nex_api_request_t *req, const char *ns, nex_error_t *err);

/* Parses a JSON request body of LEN bytes as every JSON route receives it: not empty, nested at most 32 levels
 * deep (brackets inside strings ignored), valid JSON without duplicate keys (any value, not only objects: the
 * route says what it needs).  A new reference, or NULL with NEX_ERR_INVALID whose message is the 400's detail.
 * Pure: any thread (tests/fuzz/fuzz-deploy.c feeds it hostile bytes). */
json_t *nex_api_body_parse (const char *body, size_t len, nex_error_t *err);

/* The value of request header NAME (case-insensitive), or NULL. */
const char *nex_api_header (const nex_api_request_t *req, const char *name);

#endif
