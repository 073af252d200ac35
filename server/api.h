/* api.h — nexd's REST API on libmicrohttpd: the server, the router and what route handlers see.
 *
 * api.c owns everything HTTP: listening, body collection with its size bound (413), JSON parsing (400), routing
 * (404/405 with Allow), request ids, the per-request log line, and turning a handler's nex_error_t into problem
 * JSON (problem.h).  Route handlers (api-node.c, api-workloads.c) deal only in JSON and nex_error_t.  Handlers
 * run on MHD's worker threads and must not block for long: they read the registry and queue commands to the
 * supervisor. */
#ifndef NEX_API_H
#define NEX_API_H

#include <jansson.h>

#include "common/error.h"
#include "server/node.h"

struct MHD_Connection;

#define NEX_API_MAX_PARAMS 4

/* One request as a handler sees it. */
typedef struct nex_api_request
{
  nex_node_t *node;
  struct MHD_Connection *conn;
  const char *method;
  const char *path;
  const char *params[NEX_API_MAX_PARAMS]; /* values of the route's {placeholders}, in order */
  json_t *body;                           /* the parsed JSON body (routes with wants_body), else NULL */
} nex_api_request_t;

/* What a handler answers when it succeeds. */
typedef struct nex_api_response
{
  unsigned status;          /* 200 when left 0 */
  json_t *body;             /* owned by the response */
  char *location;           /* optional Location header; owned */
  char *raw;                /* instead of BODY: RAW_LEN bytes sent as they are (static files); owned */
  size_t raw_len;
  const char *content_type; /* of RAW (static storage) */
  const char *cache_control; /* optional Cache-Control header (static storage) */
} nex_api_response_t;

/* Fills RES and returns 0, or returns -1 with ERR (mapped to problem JSON by api.c). */
typedef int (*nex_api_handler_t) (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err);

typedef struct nex_api_route
{
  const char *method;  /* "GET", "POST", ... */
  const char *pattern; /* "/v1/workloads/{id}/logs": literal segments and {placeholders} */
  nex_api_handler_t handler;
  int wants_body;      /* parse the body as JSON (required: an empty body is a 400) */
} nex_api_route_t;

/* Serves the dashboard's static files (GET of any path outside /v1/): web/ at "/", and the browser libraries
 * installed by npm under /vendor/.  NEX_ERR_NOT_FOUND when there is no such file.  See api-static.c. */
int nex_api_static_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err);

/* Route tables, each ending with a NULL method. */
extern const nex_api_route_t nex_api_node_routes[];
extern const nex_api_route_t nex_api_workload_routes[];

typedef struct nex_api nex_api_t;

/* Starts serving NODE's API on node->cfg->listen.  NULL on failure (address in use, bad address). */
nex_api_t *nex_api_start (nex_node_t *node, nex_error_t *err);

/* Stops accepting, finishes in-flight requests and frees the server.  Safe on NULL. */
void nex_api_stop (nex_api_t *api);

/* The value of query parameter KEY of REQ, or NULL. */
const char *nex_api_query (const nex_api_request_t *req, const char *key);

/* Parses query parameter KEY as an integer in [MIN, MAX]; absent: *OUT = DEF.  -1 with NEX_ERR_INVALID naming
 * KEY otherwise. */
int nex_api_query_int (const nex_api_request_t *req, const char *key, long long min, long long max, long long def,
                       long long *out, nex_error_t *err);

#endif
