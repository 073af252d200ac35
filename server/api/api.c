/* SPDX-License-Identifier: Apache-2.0 */
/* api.c — the HTTP server and router (see api.h).
 *
 * libmicrohttpd calls access_handler several times per request: first with the headers (ctx is NULL), then once
 * per piece of body, then a last time with no data.  The route is matched on the first call and kept in the
 * request's context, so that every refusal that does not need the body (no such route, method not allowed,
 * declared body too large) is answered before any of it is read.  JSON bodies are collected in memory up to
 * max_body_bytes; upload routes stream theirs to the route's own sink. */
#include "server/api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/jsontext.h"
#include "common/xalloc.h"
#include "server/api/cache.h"
#include "server/bus.h"
#include "server/clock.h"
#include "server/api/guard.h"
#include "server/id.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/api/problem.h"
#include "server/api/ws-accept.h"

typedef struct parked parked_t;

struct nex_api
{
  nex_node_t *node;
  struct MHD_Daemon *daemon;
  nex_ws_t *ws;             /* the websocket streams */
  nex_guard_t *guard;       /* request deadlines */
  nex_api_cache_t *answers; /* read answers kept while the registry is unchanged */
  int in_flight;            /* requests begun and not completed (atomic), for the drain at shutdown */
  int stopping;             /* set once at shutdown (atomic): parked requests answer 503 */
  /* The parking lot of long polls (see api.h): */
  pthread_mutex_t lot_lock;
  parked_t *parked;       /* under lot_lock */
  int lot_fd;             /* eventfd: the bus says events are queued, or the lot changed, or stop */
  nex_bus_sub_t *lot_sub; /* every event, for waking parked requests */
  pthread_t lot_thread;
  int lot_started;
};

/* A suspended request waiting for an event about KEY or its deadline. */
struct parked
{
  struct MHD_Connection *conn;
  struct request_ctx *ctx;
  char key[NEX_ID_LEN + 1];
  int64_t deadline; /* monotonic ms */
  parked_t *next;
};

#define MAX_SEGMENTS 8
/* A refused body whose length was not declared (chunked) is read and dropped so that the refusal can be
 * answered; past this much, the connection is closed instead: a client cannot keep a worker busy forever. */
#define MAX_DISCARD_BYTES (64 * 1024 * 1024)

/* Per-request state, from the first call of the access handler to the completion callback. */
typedef struct request_ctx
{
  int64_t start_ms;
  char request_id[64];
  unsigned status;                        /* status answered, for the log line */
  int answered;                           /* a response is queued: ignore the rest of the body */
  char method[16];                        /* for the log line */
  char *url;                              /* the URL path as requested, for the log line */
  char *path;                             /* the URL path, split in place: params point into it */
  const char *params[NEX_API_MAX_PARAMS]; /* the matched route's placeholders */
  const nex_api_route_t *route;           /* the matched JSON route, or NULL */
  const nex_api_upload_route_t *upload;   /* the matched upload route, or NULL */
  const nex_api_ws_route_t *ws_route;     /* the matched websocket stream, or NULL */
  nex_ws_stream_t ws_stream;              /* what it streams, once upgraded */
  const char *pattern;                    /* the matched route's pattern, for the log line */
  char *body;                             /* JSON routes: the body so far */
  size_t body_len;
  int too_large;          /* the body passed the bound: discarded, the answer is 413 */
  uint64_t discarded;     /* body bytes dropped after a refusal */
  void *upload_state;     /* upload routes: what begin made */
  nex_error_t upload_err; /* upload routes: why a write failed (answered at the end) */
  nex_principal_t who;    /* who sent it */
  int64_t park_deadline;  /* parked requests: monotonic ms when their time is up; 0: never parked */
  int timed_out;          /* resumed because the deadline passed */
} request_ctx_t;

static const nex_api_route_t *const route_tables[] = { nex_api_node_routes,     nex_api_workload_routes,
                                                       nex_api_sandbox_routes,  nex_api_artifact_routes,
                                                       nex_api_event_routes,    nex_api_wait_routes,
                                                       nex_api_token_routes,    nex_api_image_routes,
                                                       nex_api_snapshot_routes, nex_api_health_routes,
                                                       nex_api_metrics_routes,  nex_api_docs_routes,
                                                       nex_api_cluster_routes,  NULL };
static const nex_api_upload_route_t *const upload_tables[] = { nex_api_artifact_uploads, nex_api_image_uploads, NULL };

const char *
nex_api_query (const nex_api_request_t *req, const char *key)
{
  return MHD_lookup_connection_value (req->conn, MHD_GET_ARGUMENT_KIND, key);
}

typedef struct query_all
{
  const char *key;
  const char **out;
  size_t max, n;
} query_all_t;

static enum MHD_Result
query_all_one (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
  query_all_t *q = cls;
  if (strcmp (key, q->key) == 0)
    {
      if (q->n < q->max)
        q->out[q->n] = value ? value : "";
      q->n++;
    }
  return MHD_YES;
}

size_t
nex_api_query_all (const nex_api_request_t *req, const char *key, const char **out, size_t max)
{
  query_all_t q = { key, out, max, 0 };
  MHD_get_connection_values (req->conn, MHD_GET_ARGUMENT_KIND, query_all_one, &q);
  return q.n;
}

const char *
nex_api_header (const nex_api_request_t *req, const char *name)
{
  return MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND, name);
}

int
nex_api_body_fields (const json_t *body, const char *const *known, nex_error_t *err)
{
  if (!json_is_object (body))
    return nex_error_field (err, "", "request body must be a JSON object");
  const char *key;
  json_t *value;
  json_object_foreach ((json_t *)body, key, value)
  {
    size_t i = 0;
    while (known[i] && strcmp (known[i], key) != 0)
      i++;
    if (known[i] == NULL)
      return nex_error_field (err, key, "unknown field");
  }
  return 0;
}

int
nex_api_query_int (const nex_api_request_t *req, const char *key, long long min, long long max, long long def,
                   long long *out, nex_error_t *err)
{
  const char *v = nex_api_query (req, key);
  if (v == NULL)
    {
      *out = def;
      return 0;
    }
  char *end = NULL;
  errno = 0;
  long long n = strtoll (v, &end, 10);
  if (errno || end == v || *end || n < min || n > max)
    return nex_error_field (err, key, "query parameter `%s` must be an integer from %lld to %lld", key, min, max);
  *out = n;
  return 0;
}

/* Splits S (modified in place) at '/' into at most MAX_SEGMENTS segments; -1 when there are more, or when S
 * does not start with '/' or has an empty segment. */
static int
split_path (char *s, char **segs)
{
  int n = 0;
  if (*s != '/')
    return -1;
  while (*s == '/')
    {
      *s++ = '\0';
      if (*s == '\0' || *s == '/' || n == MAX_SEGMENTS)
        return -1;
      segs[n++] = s;
      s = strchrnul (s, '/');
    }
  return n;
}

/* Matches the split path SEGS against PATTERN, pointing PARAMS at the placeholders' segments.  A `{digest}`
 * placeholder matches only a segment that starts with "sha256:", so that /v1/images/{digest} does not claim the
 * literal /v1/images/pull (whose Allow would otherwise list DELETE). */
static int
route_match (const char *pattern, char **segs, int n_segs, const char **params)
{
  char buf[128];
  char *psegs[MAX_SEGMENTS];
  snprintf (buf, sizeof buf, "%s", pattern);
  int n = split_path (buf, psegs);
  if (n != n_segs)
    return 0;
  int n_params = 0;
  for (int i = 0; i < n; i++)
    {
      if (psegs[i][0] == '{')
        {
          if (n_params == NEX_API_MAX_PARAMS)
            return 0;
          if (strcmp (psegs[i], "{digest}") == 0 && strncmp (segs[i], "sha256:", 7) != 0)
            return 0;
          params[n_params++] = segs[i];
        }
      else if (strcmp (psegs[i], segs[i]) != 0)
        return 0;
    }
  return 1;
}

/* Adds METHOD to the comma-separated list ALLOW (of SIZE bytes) unless it is there already. */
static void
allow_add (char *allow, size_t size, const char *method)
{
  size_t ml = strlen (method);
  for (const char *p = allow; (p = strstr (p, method)) != NULL; p += ml)
    if ((p == allow || p[-1] == ' ') && (p[ml] == ',' || p[ml] == '\0'))
      return;
  if (strlen (allow) + ml + 3 >= size)
    return;
  if (allow[0])
    strcat (allow, ", ");
  strcat (allow, method);
}

/* Finds the route for METHOD on the path in CTX (split in place); sets ctx->route, ctx->upload or (when STREAM:
 * the request asks for a websocket stream) ctx->ws_route, and the params.  When nothing matches, ALLOW receives
 * the methods the path does have (empty: no such path). */
static void
route_find (request_ctx_t *ctx, const char *method, int stream, char *allow, size_t allow_size)
{
  char *segs[MAX_SEGMENTS];
  int n_segs = split_path (ctx->path, segs);
  allow[0] = '\0';
  if (n_segs <= 0)
    return;
  for (const nex_api_ws_route_t *r = nex_api_ws_routes; strcmp (method, "GET") == 0 && r->pattern; r++)
    {
      const char *p[NEX_API_MAX_PARAMS] = { NULL };
      if ((stream || r->starts) && route_match (r->pattern, segs, n_segs, p))
        {
          ctx->ws_route = r;
          ctx->pattern = r->pattern;
          memcpy (ctx->params, p, sizeof p);
          return;
        }
    }
  for (size_t t = 0; route_tables[t]; t++)
    for (const nex_api_route_t *r = route_tables[t]; r->method; r++)
      {
        const char *p[NEX_API_MAX_PARAMS] = { NULL };
        if (!route_match (r->pattern, segs, n_segs, p))
          continue;
        if (strcmp (r->method, method) == 0)
          {
            ctx->route = r;
            ctx->pattern = r->pattern;
            memcpy (ctx->params, p, sizeof p);
            return;
          }
        allow_add (allow, allow_size, r->method);
      }
  for (size_t t = 0; upload_tables[t]; t++)
    for (const nex_api_upload_route_t *r = upload_tables[t]; r->method; r++)
      {
        const char *p[NEX_API_MAX_PARAMS] = { NULL };
        if (!route_match (r->pattern, segs, n_segs, p))
          continue;
        if (strcmp (r->method, method) == 0)
          {
            ctx->upload = r;
            ctx->pattern = r->pattern;
            memcpy (ctx->params, p, sizeof p);
            return;
          }
        allow_add (allow, allow_size, r->method);
      }
  /* A websocket-only route is a GET too. */
  for (const nex_api_ws_route_t *r = nex_api_ws_routes; r->pattern; r++)
    {
      const char *p[NEX_API_MAX_PARAMS] = { NULL };
      if (r->starts && route_match (r->pattern, segs, n_segs, p))
        allow_add (allow, allow_size, "GET");
    }
}

/* Queues STATUS with BODY as JSON (problem JSON from 400 on) and the headers given: LOCATION, ALLOW and EXTRA
 * (NULL-terminated name/value pairs), each when not NULL. */
static enum MHD_Result
send_json_headers (struct MHD_Connection *conn, request_ctx_t *ctx, unsigned status, json_t *body, const char *location,
                   const char *allow, const char *const *extra)
{
  nex_jsontext_t t = { 0 };
  if (body)
    nex_jsontext_value (&t, body);
  else
    nex_jsontext_raw (&t, "{}", 2);
  nex_jsontext_raw (&t, "\n", 1);
  size_t len;
  char *text = nex_jsontext_steal (&t, &len);
  const char *type = status >= 400 ? "application/problem+json" : "application/json";
  struct MHD_Response *res = MHD_create_response_from_buffer (len, text, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header (res, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header (res, "X-Request-Id", ctx->request_id);
  if (location)
    MHD_add_response_header (res, MHD_HTTP_HEADER_LOCATION, location);
  if (allow)
    MHD_add_response_header (res, MHD_HTTP_HEADER_ALLOW, allow);
  for (size_t i = 0; extra && extra[i]; i += 2)
    MHD_add_response_header (res, extra[i], extra[i + 1]);
  ctx->status = status;
  ctx->answered = 1;
  nex_guard_busy (conn);
  enum MHD_Result r = MHD_queue_response (conn, status, res);
  MHD_destroy_response (res);
  return r;
}

static enum MHD_Result
send_json (struct MHD_Connection *conn, request_ctx_t *ctx, unsigned status, json_t *body, const char *location,
           const char *allow)
{
  return send_json_headers (conn, ctx, status, body, location, allow, NULL);
}

/* Queues STATUS with RES's text (taken from RES) as its content type, with its Cache-Control when set. */
static enum MHD_Result
send_response (struct MHD_Connection *conn, request_ctx_t *ctx, unsigned status, nex_api_response_t *res)
{
  size_t len = res->text_len ? res->text_len : strlen (res->text);
  struct MHD_Response *r = MHD_create_response_from_buffer (len, NEX_STEAL_PTR (res->text), MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header (r, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type ? res->content_type : "text/plain");
  if (res->cache_control)
    MHD_add_response_header (r, MHD_HTTP_HEADER_CACHE_CONTROL, res->cache_control);
  MHD_add_response_header (r, "X-Request-Id", ctx->request_id);
  ctx->status = status;
  ctx->answered = 1;
  nex_guard_busy (conn);
  enum MHD_Result q = MHD_queue_response (conn, status, r);
  MHD_destroy_response (r);
  return q;
}

static enum MHD_Result
send_problem (struct MHD_Connection *conn, request_ctx_t *ctx, unsigned status, const char *detail, const char *path,
              const char *allow)
{
  cleanup_json json_t *p = nex_problem_new (status, detail, NULL, path);
  return send_json (conn, ctx, status, p, NULL, allow);
}

static enum MHD_Result
send_error (struct MHD_Connection *conn, request_ctx_t *ctx, const nex_error_s *err, const char *method,
            const char *url)
{
  unsigned status;
  cleanup_json json_t *p = nex_problem_from_error (err, url, &status);
  if (status >= 500)
    nex_log_error (NEX_LOG_ERROR, (nex_error_t)err, "%s %s failed", method, url);
  return send_json (conn, ctx, status, p, NULL, NULL);
}

/* Deepest nesting of arrays and objects a request body may have.  jansson would refuse beyond 2048 levels
 * itself; nothing nexd takes is nested more than a few, and a shallow bound keeps the parser's recursion (and
 * the time a hostile body costs) small. */
#define MAX_JSON_DEPTH 32

/* Whether the JSON text BODY (LEN bytes) nests deeper than MAX_JSON_DEPTH (brackets inside strings ignored). */
static int
json_too_deep (const char *body, size_t len)
{
  int depth = 0, in_string = 0;
  for (size_t i = 0; i < len; i++)
    {
      char c = body[i];
      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = 0;
        }
      else if (c == '"')
        in_string = 1;
      else if ((c == '[' || c == '{') && ++depth > MAX_JSON_DEPTH)
        return 1;
      else if (c == ']' || c == '}')
        depth--;
    }
  return 0;
}

json_t *
nex_api_body_parse (const char *body, size_t len, nex_error_t *err)
{
  if (len == 0)
    {
      nex_error_set (err, NEX_ERR_INVALID, "the request body is empty; a JSON object is expected");
      return NULL;
    }
  if (json_too_deep (body, len))
    {
      nex_error_set (err, NEX_ERR_INVALID, "the request body nests arrays and objects deeper than %d levels",
                     MAX_JSON_DEPTH);
      return NULL;
    }
  json_error_t jerr;
  /* Duplicate keys are refused: two values for one field would be ambiguous. */
  json_t *j = json_loadb (body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
  if (j == NULL)
    nex_error_set (err, NEX_ERR_INVALID, "the request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                   jerr.line, jerr.column);
  return j;
}

/* Frees an upload route's state (removing whatever it left on disk).  Idempotent. */
static void
upload_discard (request_ctx_t *ctx)
{
  if (ctx->upload && ctx->upload_state)
    ctx->upload->discard (ctx->upload_state);
  ctx->upload_state = NULL;
}

/* --- the parking lot of long polls --------------------------------------------------------------------------- */

/* Parks the request of CTX as RES asks, unless an event was published since SEEN (and FORCE is not set): then
 * returns 0 and the caller runs the handler again.  Returns 1 once the connection is suspended. */
static int
park (nex_api_t *api, struct MHD_Connection *conn, request_ctx_t *ctx, const nex_api_response_t *res, uint64_t seen,
      int force)
{
  if (ctx->park_deadline == 0)
    ctx->park_deadline = nex_clock_mono_ms () + (res->park_ms > 0 ? res->park_ms : 0);
  pthread_mutex_lock (&api->lot_lock);
  /* Checked under the lot's lock, which the lot thread takes to wake anyone: an event published after this
   * check is handled by the lot thread after the request is on the list. */
  if (!force && nex_bus_event_count (api->node->bus) != seen)
    {
      pthread_mutex_unlock (&api->lot_lock);
      return 0;
    }
  parked_t *p = nex_xzalloc (sizeof *p);
  p->conn = conn;
  p->ctx = ctx;
  snprintf (p->key, sizeof p->key, "%s", res->park_key);
  p->deadline = ctx->park_deadline;
  p->next = api->parked;
  api->parked = p;
  /* Suspended before the lock is released, so that the lot thread never resumes a connection not yet
   * suspended. */
  nex_guard_busy (conn);
  MHD_suspend_connection (conn);
  pthread_mutex_unlock (&api->lot_lock);
  uint64_t one = 1;
  (void)!write (api->lot_fd, &one, sizeof one); /* the lot thread recomputes its next deadline */
  return 1;
}

/* Resumes the parked requests that KEY (NULL: every one) or their deadline release, or all when ALL. */
static void
lot_release (nex_api_t *api, const char *key, int all)
{
  int64_t now = nex_clock_mono_ms ();
  parked_t *go = NULL;
  pthread_mutex_lock (&api->lot_lock);
  for (parked_t **pp = &api->parked; *pp;)
    {
      parked_t *p = *pp;
      int late = p->deadline <= now;
      if (all || late || (key && strcmp (key, p->key) == 0))
        {
          p->ctx->timed_out = late;
          *pp = p->next;
          p->next = go;
          go = p;
        }
      else
        pp = &p->next;
    }
  /* Resumed under the lock: park() suspends under it too, so a connection is never resumed before it is
   * suspended.  MHD_resume_connection only flags the connection and wakes its thread. */
  for (parked_t *p = go; p; p = p->next)
    MHD_resume_connection (p->conn);
  pthread_mutex_unlock (&api->lot_lock);
  while (go)
    {
      parked_t *next = go->next;
      free (go);
      go = next;
    }
}

/* The lot's thread: sleeps until an event is queued for it or the nearest deadline, then resumes whom it
 * concerns. */
static void *
lot_main (void *arg)
{
  nex_api_t *api = arg;
  while (!__atomic_load_n (&api->stopping, __ATOMIC_ACQUIRE))
    {
      int timeout = -1;
      int64_t now = nex_clock_mono_ms ();
      pthread_mutex_lock (&api->lot_lock);
      for (parked_t *p = api->parked; p; p = p->next)
        {
          int64_t left = p->deadline > now ? p->deadline - now : 0;
          if (timeout < 0 || left < timeout)
            timeout = (int)(left > 3600000 ? 3600000 : left);
        }
      pthread_mutex_unlock (&api->lot_lock);
      struct pollfd pfd = { .fd = api->lot_fd, .events = POLLIN };
      if (poll (&pfd, 1, timeout) > 0)
        {
          uint64_t v;
          (void)!read (api->lot_fd, &v, sizeof v);
        }
      nex_bus_msg_t *m;
      uint64_t missed;
      while (nex_bus_next (api->node->bus, api->lot_sub, &m, &missed))
        {
          /* Overflow: some events were not seen; every waiter looks again. */
          lot_release (api, missed ? NULL : m->workload_id, missed > 0);
          nex_bus_msg_unref (m);
        }
      lot_release (api, NULL, 0); /* deadlines */
    }
  return NULL;
}

/* Runs the matched route's handler once the whole body is in. */
static enum MHD_Result
dispatch (nex_api_t *api, struct MHD_Connection *conn, request_ctx_t *ctx, const char *url, const char *method)
{
  nex_api_request_t req
      = { .node = api->node, .conn = conn, .method = method, .path = url, .who = &ctx->who, .api = api };
  memcpy (req.params, ctx->params, sizeof req.params);
  cleanup_json json_t *body = NULL;
  nex_api_handler_t handler;
  if (ctx->upload)
    {
      if (ctx->upload_err)
        {
          upload_discard (ctx);
          return send_error (conn, ctx, ctx->upload_err, method, url);
        }
      req.upload = ctx->upload_state;
      handler = ctx->upload->finish;
    }
  else
    {
      handler = ctx->route->handler;
      if (ctx->too_large)
        {
          cleanup_free char *d
              = nex_xasprintf ("the request body exceeds %lld bytes", (long long)api->node->cfg->max_body_bytes);
          return send_problem (conn, ctx, 413, d, url, NULL);
        }
      if (ctx->route->wants_body == NEX_API_BODY_JSON)
        {
          cleanup_error nex_error_t perr = NULL;
          if ((body = nex_api_body_parse (ctx->body, ctx->body_len, &perr)) == NULL)
            return send_problem (conn, ctx, 400, perr->msg, url, NULL);
          req.body = body;
        }
    }

  if (ctx->park_deadline && __atomic_load_n (&api->stopping, __ATOMIC_ACQUIRE))
    return send_problem (conn, ctx, 503, "the node is shutting down", url, NULL);
  req.timed_out = ctx->timed_out;
  nex_api_response_t res;
  cleanup_error nex_error_t err = NULL;
  int failed;
  for (int round = 0;; round++)
    {
      memset (&res, 0, sizeof res);
      uint64_t seen = nex_bus_event_count (api->node->bus);
      failed = handler (&req, &res, &err) < 0;
      if (failed || res.park_key[0] == '\0')
        break;
      json_decref (res.body);
      free (res.location);
      free (res.text);
      /* An event published since the handler began may be the one it waits for: look again instead of
       * sleeping through it.  After many rounds (a storm of events) it parks anyway; it will be woken. */
      if (park (api, conn, ctx, &res, seen, round >= 100))
        return MHD_YES;
    }
  /* An upload's leftovers go before the answer does: a client that hears it must find the cache as it says. */
  upload_discard (ctx);
  if (failed)
    {
      json_decref (res.body);
      free (res.location);
      free (res.text);
      return send_error (conn, ctx, err, method, url);
    }
  enum MHD_Result r;
  if (res.text)
    r = send_response (conn, ctx, res.status ? res.status : 200, &res);
  else
    r = send_json (conn, ctx, res.status ? res.status : 200, res.body ? res.body : json_object (), res.location, NULL);
  json_decref (res.body);
  free (res.location);
  return r;
}

static void
set_request_id (struct MHD_Connection *conn, request_ctx_t *ctx)
{
  const char *given = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "X-Request-Id");
  size_t n = given ? strlen (given) : 0;
  /* Echo a client's id only when it is short and plain: it goes into our logs and headers. */
  if (n > 0 && n < sizeof ctx->request_id
      && strspn (given, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789-_.:")
             == n)
    memcpy (ctx->request_id, given, n + 1);
  else
    nex_id_new (ctx->request_id);
}

/* The declared Content-Length, or -1 when there is none or it does not parse. */
static int64_t
declared_length (struct MHD_Connection *conn)
{
  const char *cl = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl == NULL)
    return -1;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull (cl, &end, 10);
  if (errno || end == cl || *end || v > INT64_MAX)
    return -1;
  return (int64_t)v;
}

struct nex_api_cache *
nex_api_answers (nex_api_t *api)
{
  return api->answers;
}

void
nex_api_gauges (nex_api_t *api, nex_metrics_gauges_t *out)
{
  memset (out, 0, sizeof *out);
  out->websocket_clients = nex_ws_clients (api->ws);
  out->websocket_dropped = nex_ws_dropped (api->ws);
  out->http_expired = nex_guard_expired (api->guard);
  out->http_shed = nex_guard_shed (api->guard);
  pthread_mutex_lock (&api->lot_lock);
  for (parked_t *p = api->parked; p; p = p->next)
    out->parked_requests++;
  pthread_mutex_unlock (&api->lot_lock);
}

/* --- who may --------------------------------------------------------------------------------------------- */

int
nex_api_check_namespace (const nex_api_request_t *req, const char *ns, nex_error_t *err)
{
  if (req->who == NULL || nex_principal_allows_namespace (req->who, ns))
    return 0;
  return nex_error_set (err, NEX_ERR_FORBIDDEN, "this token may not touch namespace `%s`", ns ? ns : "");
}

/* The bearer token of the request: "Authorization: Bearer T", or for a websocket handshake (browsers cannot set
 * headers on those) ?access_token=T.  NULL when there is none; *MALFORMED when an Authorization header is not a
 * bearer token. */
static const char *
bearer_token (struct MHD_Connection *conn, int upgrade, int *malformed)
{
  const char *h = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  *malformed = 0;
  if (h)
    {
      if (strncasecmp (h, "Bearer ", 7) != 0)
        {
          *malformed = 1;
          return NULL;
        }
      h += 7;
      while (*h == ' ')
        h++;
      return h;
    }
  return upgrade ? MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "access_token") : NULL;
}

/* Decides whether the request may go on (1), or answers 401/403 (0 with *R set). */
static int
authorize (nex_api_t *api, struct MHD_Connection *conn, request_ctx_t *ctx, const char *url, const char *method,
           int upgrade, enum MHD_Result *r)
{
  unsigned need = nex_auth_required (method, url);
  if (need == 0)
    return 1;
  int malformed;
  const char *token = bearer_token (conn, upgrade, &malformed);
  cleanup_error nex_error_t err = NULL;
  if (malformed || nex_auth_identify (api->node->auth, token, &ctx->who, &err) < 0)
    {
      /* RFC 6750 3.1: the challenge says the token was the problem, so that clients know to get another. */
      static const char *const invalid[]
          = { "WWW-Authenticate", "Bearer realm=\"nex\", error=\"invalid_token\"", NULL };
      cleanup_json json_t *p = nex_problem_new (
          401, malformed ? "the Authorization header must be `Bearer <token>`" : err->msg, NULL, url);
      *r = send_json_headers (conn, ctx, 401, p, NULL, NULL, invalid);
      return 0;
    }
  if ((ctx->who.scopes & need) == need)
    return 1;
  const char *scope = need == NEX_SCOPE_ADMIN ? "admin" : need == NEX_SCOPE_DEPLOY ? "deploy" : "read";
  if (token == NULL)
    {
      static const char *const challenge[] = { "WWW-Authenticate", "Bearer realm=\"nex\"", NULL };
      cleanup_free char *d
          = nex_xasprintf ("a bearer token with scope `%s` is needed (Authorization: Bearer ...)", scope);
      cleanup_json json_t *p = nex_problem_new (401, d, NULL, url);
      *r = send_json_headers (conn, ctx, 401, p, NULL, NULL, challenge);
      return 0;
    }
  cleanup_free char *challenge_value
      = nex_xasprintf ("Bearer realm=\"nex\", error=\"insufficient_scope\", scope=\"%s\"", scope);
  const char *insufficient[] = { "WWW-Authenticate", challenge_value, NULL };
  cleanup_free char *d = nex_xasprintf ("this token lacks scope `%s`", scope);
  cleanup_json json_t *p = nex_problem_new (403, d, NULL, url);
  *r = send_json_headers (conn, ctx, 403, p, NULL, NULL, insufficient);
  return 0;
}

/* --- websocket streams ------------------------------------------------------------------------------------ */

/* Whether request header NAME holds TOKEN in its comma-separated list (case-insensitive, RFC 9110 5.6.1). */
static int
header_has_token (struct MHD_Connection *conn, const char *name, const char *token)
{
  const char *v = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, name);
  size_t tl = strlen (token);
  while (v && *v)
    {
      v += strspn (v, " \t,");
      size_t n = strcspn (v, ",");
      size_t end = n;
      while (end > 0 && (v[end - 1] == ' ' || v[end - 1] == '\t'))
        end--;
      if (end == tl && strncasecmp (v, token, tl) == 0)
        return 1;
      v += n;
    }
  return 0;
}

/* After the 101 went out: the socket is the websocket thread's now. */
static void
upgraded (void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra_in, size_t extra_in_size,
          MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
  nex_api_t *api = cls;
  request_ctx_t *ctx = con_cls;
  nex_ws_adopt (api->ws, sock, urh, extra_in, extra_in_size, &ctx->ws_stream);
  ctx->ws_stream.exec = NULL; /* the stream's now */
}

/* Answers a request for a websocket stream: checks it like any request, then the handshake (RFC 6455 4.2),
 * then switches protocols. */
static enum MHD_Result
ws_handshake (nex_api_t *api, struct MHD_Connection *conn, request_ctx_t *ctx, const char *url, const char *method,
              int upgrade)
{
  nex_api_request_t req
      = { .node = api->node, .conn = conn, .method = method, .path = url, .who = &ctx->who, .api = api };
  memcpy (req.params, ctx->params, sizeof req.params);
  cleanup_error nex_error_t err = NULL;
  if (!ctx->ws_route->starts && ctx->ws_route->open (&req, &ctx->ws_stream, &err) < 0)
    return send_error (conn, ctx, err, method, url);
  static const char *const upgrade_headers[] = { "Upgrade", "websocket", "Connection", "Upgrade", NULL };
  if (!upgrade)
    {
      cleanup_json json_t *p = nex_problem_new (
          426, "following streams over a websocket: send the opening handshake (Upgrade: websocket)", NULL, url);
      return send_json_headers (conn, ctx, 426, p, NULL, NULL, upgrade_headers);
    }
  if (!header_has_token (conn, "Connection", "upgrade"))
    return send_problem (conn, ctx, 400, "a websocket handshake needs `Connection: Upgrade`", url, NULL);
  const char *version = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
  if (version == NULL || strcmp (version, "13") != 0)
    {
      static const char *const v13[]
          = { "Sec-WebSocket-Version", "13", "Upgrade", "websocket", "Connection", "Upgrade", NULL };
      cleanup_json json_t *p = nex_problem_new (426, "only websocket version 13 is spoken here", NULL, url);
      return send_json_headers (conn, ctx, 426, p, NULL, NULL, v13);
    }
  char accept[29];
  if (nex_ws_accept_key (MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "Sec-WebSocket-Key"), accept, &err) < 0)
    return send_error (conn, ctx, err, method, url);
  if (ctx->ws_route->starts && ctx->ws_route->open (&req, &ctx->ws_stream, &err) < 0)
    return send_error (conn, ctx, err, method, url);
  struct MHD_Response *res = MHD_create_response_for_upgrade (upgraded, api);
  MHD_add_response_header (res, MHD_HTTP_HEADER_UPGRADE, "websocket");
  MHD_add_response_header (res, "Sec-WebSocket-Accept", accept);
  MHD_add_response_header (res, "X-Request-Id", ctx->request_id);
  ctx->status = 101;
  ctx->answered = 1;
  nex_guard_busy (conn); /* a websocket lives as long as it likes */
  enum MHD_Result r = MHD_queue_response (conn, MHD_HTTP_SWITCHING_PROTOCOLS, res);
  MHD_destroy_response (res);
  return r;
}

/* The first call of a request: the request line and headers are in, no body yet. */
static enum MHD_Result
request_begin (nex_api_t *api, struct MHD_Connection *conn, request_ctx_t *ctx, const char *url, const char *method)
{
  char allow[128];
  snprintf (ctx->method, sizeof ctx->method, "%s", method);
  ctx->url = nex_xstrdup (url);
  ctx->path = nex_xstrdup (url);
  if (__atomic_load_n (&api->stopping, __ATOMIC_ACQUIRE))
    {
      /* Draining: what is in flight finishes, anything new is turned away at once. */
      cleanup_free char *d = nex_xasprintf ("the node is shutting down");
      return send_problem (conn, ctx, 503, d, url, NULL);
    }
  int upgrade = header_has_token (conn, "Upgrade", "websocket");
  const char *follow = MHD_lookup_connection_value (conn, MHD_GET_ARGUMENT_KIND, "follow");
  int stream = upgrade || (follow && strcmp (follow, "0") != 0 && strcmp (follow, "false") != 0);
  route_find (ctx, method, stream, allow, sizeof allow);
  enum MHD_Result r;
  if ((ctx->ws_route || ctx->route || ctx->upload) && !authorize (api, conn, ctx, url, method, upgrade, &r))
    return r;
  if (ctx->ws_route)
    return ws_handshake (api, conn, ctx, url, method, upgrade);
  if (ctx->route == NULL && ctx->upload == NULL && !allow[0] && strcmp (method, "GET") == 0
      && strncmp (url, "/v1/", 4) != 0)
    {
      /* The dashboard's files (api/static.c): public, like /docs; what they fetch needs a token. */
      nex_api_request_t req = { .node = api->node, .conn = conn, .method = method, .path = url, .api = api };
      nex_api_response_t res = { 0 };
      cleanup_error nex_error_t err = NULL;
      if (nex_api_static_get (&req, &res, &err) == 0)
        return send_response (conn, ctx, 200, &res);
    }
  if (ctx->route == NULL && ctx->upload == NULL)
    {
      if (allow[0])
        {
          cleanup_free char *d = nex_xasprintf ("%s is not allowed on %s (allowed: %s)", method, url, allow);
          return send_problem (conn, ctx, 405, d, url, allow);
        }
      cleanup_free char *d = nex_xasprintf ("no such resource: %s", url);
      return send_problem (conn, ctx, 404, d, url, NULL);
    }

  int64_t declared = declared_length (conn);
  if (ctx->upload)
    {
      nex_api_request_t req
          = { .node = api->node, .conn = conn, .method = method, .path = url, .who = &ctx->who, .api = api };
      memcpy (req.params, ctx->params, sizeof req.params);
      cleanup_error nex_error_t err = NULL;
      if (ctx->upload->begin (&req, declared, &ctx->upload_state, &err) < 0)
        return send_error (conn, ctx, err, method, url);
      return MHD_YES;
    }
  size_t max = (size_t)api->node->cfg->max_body_bytes;
  if (declared > 0 && (uint64_t)declared > max)
    {
      /* Refuse before reading a byte of it: a declared oversized body is never buffered. */
      cleanup_free char *d = nex_xasprintf ("the request body exceeds %zu bytes", max);
      return send_problem (conn, ctx, 413, d, url, NULL);
    }
  return MHD_YES;
}

/* A piece of the body.  MHD_NO closes the connection. */
static enum MHD_Result
request_data (nex_api_t *api, request_ctx_t *ctx, const char *data, size_t n)
{
  if (ctx->answered || ctx->too_large || ctx->upload_err)
    {
      ctx->discarded += n;
      return ctx->discarded > MAX_DISCARD_BYTES ? MHD_NO : MHD_YES;
    }
  if (ctx->upload)
    {
      if (ctx->upload->write (ctx->upload_state, data, n, &ctx->upload_err) < 0)
        nex_debug ("request %s: upload refused: %s", ctx->request_id, ctx->upload_err->msg);
      return MHD_YES;
    }
  size_t max = (size_t)api->node->cfg->max_body_bytes;
  if (!ctx->too_large && ctx->body_len + n > max)
    {
      ctx->too_large = 1;
      free (ctx->body);
      ctx->body = NULL;
      ctx->body_len = 0;
    }
  if (!ctx->too_large)
    {
      ctx->body = nex_xrealloc (ctx->body, ctx->body_len + n + 1);
      memcpy (ctx->body + ctx->body_len, data, n);
      ctx->body_len += n;
    }
  return MHD_YES;
}

static enum MHD_Result
access_handler (void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
                const char *upload_data, size_t *upload_data_size, void **con_cls)
{
  nex_api_t *api = cls;
  request_ctx_t *ctx = *con_cls;
  if (ctx == NULL)
    {
      ctx = nex_xzalloc (sizeof *ctx);
      __atomic_add_fetch (&api->in_flight, 1, __ATOMIC_ACQ_REL);
      ctx->start_ms = nex_clock_mono_ms ();
      set_request_id (conn, ctx);
      *con_cls = ctx;
      nex_guard_headers (conn);
      return request_begin (api, conn, ctx, url, method);
    }
  if (*upload_data_size > 0)
    {
      size_t n = *upload_data_size;
      *upload_data_size = 0;
      return request_data (api, ctx, upload_data, n);
    }
  if (ctx->answered)
    return MHD_YES;
  return dispatch (api, conn, ctx, url, method);
}

static void
request_completed (void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
  nex_api_t *api = cls;
  request_ctx_t *ctx = *con_cls;
  if (ctx == NULL)
    return;
  __atomic_sub_fetch (&api->in_flight, 1, __ATOMIC_ACQ_REL);
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info (conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char addr[INET6_ADDRSTRLEN] = "?";
  if (ci && ci->client_addr)
    {
      const struct sockaddr *sa = ci->client_addr;
      if (sa->sa_family == AF_INET)
        inet_ntop (AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof addr);
      else if (sa->sa_family == AF_INET6)
        inet_ntop (AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof addr);
    }
  int64_t ms = nex_clock_mono_ms () - ctx->start_ms;
  /* A websocket's time is its stream's, not a request's: left out of the duration histogram. */
  nex_metrics_request (ctx->pattern, ctx->method, ctx->status, ctx->status == 101 ? -1 : ms);
  json_t *fields = json_pack ("{s:s, s:I, s:I, s:s, s:s}", "request_id", ctx->request_id, "status",
                              (json_int_t)ctx->status, "ms", (json_int_t)ms, "client", addr, "completed",
                              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "yes" : "no");
  /* Set one by one: json_string refuses text that is not UTF-8 (a hostile URL), losing only that member. */
  json_object_set_new (fields, "method", json_string (ctx->method));
  if (ctx->url)
    json_object_set_new (fields, "path", json_string (ctx->url));
  if (ctx->pattern)
    json_object_set_new (fields, "route", json_string (ctx->pattern));
  nex_log_fields (NEX_LOG_INFO, "request", fields);
  upload_discard (ctx);
  nex_ws_stream_release (api->node, &ctx->ws_stream); /* started, but never upgraded */
  nex_error_free (&ctx->upload_err);
  nex_principal_release (&ctx->who);
  nex_guard_idle (conn);
  free (ctx->url);
  free (ctx->path);
  free (ctx->body);
  free (ctx);
  *con_cls = NULL;
}

static void
mhd_logger (void *cls, const char *fmt, va_list ap)
{
  cleanup_free char *msg = nex_xvasprintf (fmt, ap);
  size_t n = strlen (msg);
  if (n && msg[n - 1] == '\n')
    msg[n - 1] = '\0';
  nex_debug ("libmicrohttpd: %s", msg);
}

/* Lets nexd have a descriptor for every connection it accepts and every workload it runs (the soft limit is often
 * 1024): the soft limit goes to the hard one.  Connections alone want max_connections plus headroom, and each live
 * workload holds two more (its agent's socket and pidfd), so 1000 idle sandboxes and 500 websocket tails need
 * 2,500 and more, past a bound computed from the connections.  Nothing in nexd uses select(2), so a large limit
 * costs nothing. */
static void
raise_fd_limit (const nex_config_t *cfg)
{
  struct rlimit rl;
  if (getrlimit (RLIMIT_NOFILE, &rl) < 0)
    return;
  rlim_t want = (rlim_t)cfg->max_connections + NEX_GUARD_HEADROOM (cfg->max_connections) + 1024;
  if (rl.rlim_cur < rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }
  if (rl.rlim_cur < want)
    nex_log (NEX_LOG_WARN, "the descriptor limit (%llu) is below what %lld connections need (%llu): raise it",
             (unsigned long long)rl.rlim_cur, (long long)cfg->max_connections, (unsigned long long)want);
}

/* Reads the PEM certificate and key named by CFG. */
static int
load_tls (const nex_config_t *cfg, char **cert, char **key, nex_error_t *err)
{
  if (MHD_is_feature_supported (MHD_FEATURE_TLS) != MHD_YES)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this libmicrohttpd was built without TLS");
  size_t len;
  *cert = nex_file_read (cfg->tls_cert, 1 << 20, &len, err);
  if (*cert == NULL)
    return nex_error_wrap (err, "tls_cert");
  *key = nex_file_read (cfg->tls_key, 1 << 20, &len, err);
  if (*key == NULL)
    return nex_error_wrap (err, "tls_key");
  return 0;
}

nex_api_t *
nex_api_start (nex_node_t *node, nex_error_t *err)
{
  cleanup_free char *host = NULL;
  int port;
  if (nex_config_listen_addr (node->cfg, &host, &port, err) < 0)
    return NULL;
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
  struct addrinfo *ai = NULL;
  char portstr[16];
  snprintf (portstr, sizeof portstr, "%d", port);
  int gai = getaddrinfo (host, portstr, &hints, &ai);
  if (gai != 0)
    {
      nex_error_field (err, "listen", "cannot resolve listen address `%s`: %s", host, gai_strerror (gai));
      return NULL;
    }
  nex_api_t *api = nex_xzalloc (sizeof *api);
  api->node = node;
  api->answers = nex_api_cache_new (1024);
  pthread_mutex_init (&api->lot_lock, NULL);
  node->auth = nex_auth_open (node, err);
  if (node->auth == NULL)
    {
      freeaddrinfo (ai);
      api->lot_fd = -1;
      nex_api_stop (api);
      return NULL;
    }
  api->lot_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (api->lot_fd < 0)
    {
      nex_error_sys (err, errno, "eventfd");
      freeaddrinfo (ai);
      nex_api_stop (api);
      return NULL;
    }
  nex_bus_filter_t everything = { .kinds = NEX_BUS_EVENT };
  api->lot_sub = nex_bus_subscribe (node->bus, &everything, 4096, 0, api->lot_fd);
  int pr = pthread_create (&api->lot_thread, NULL, lot_main, api);
  if (pr != 0)
    {
      nex_error_sys (err, pr, "start the API's waiter thread");
      freeaddrinfo (ai);
      nex_api_stop (api);
      return NULL;
    }
  api->lot_started = 1;
  api->ws = nex_ws_start (node, err);
  if (api->ws == NULL)
    {
      freeaddrinfo (ai);
      nex_api_stop (api);
      return NULL;
    }
  const nex_config_t *cfg = node->cfg;
  api->guard = nex_guard_start (cfg->header_timeout_s * 1000, cfg->request_timeout_s * 1000, cfg->max_connections, err);
  if (api->guard == NULL)
    {
      freeaddrinfo (ai);
      nex_api_stop (api);
      return NULL;
    }
  raise_fd_limit (cfg);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME
                   | MHD_ALLOW_UPGRADE;
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  cleanup_free char *cert = NULL;
  cleanup_free char *key = NULL;
  if (cfg->tls_cert && load_tls (cfg, &cert, &key, err) < 0)
    {
      freeaddrinfo (ai);
      nex_api_stop (api);
      return NULL;
    }
  if (cert)
    flags |= MHD_USE_TLS;
  /* The limits are what keeps one client (or many) from taking every connection and every byte of memory:
   * total and per-address connection counts (more are closed at accept), 32 KiB for a request's headers (431
   * beyond), an idle timeout, and the guard's deadline per request (guard.h). */
  struct MHD_OptionItem opts[] = {
    /* The logger goes first: libmicrohttpd reports problems with the options that follow through it. */
    { MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, api },
    { MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr },
    { MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)cfg->api_threads, NULL },
    { MHD_OPTION_CONNECTION_LIMIT, (intptr_t)(cfg->max_connections + NEX_GUARD_HEADROOM (cfg->max_connections)), NULL },
    { MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)cfg->max_connections_per_ip, NULL },
    { MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)(32 * 1024), NULL },
    { MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)cfg->idle_timeout_s, NULL },
    { MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)request_completed, api },
    { MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)nex_guard_notify, api->guard },
    /* Last, so that without TLS the list simply ends here. */
    { cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, cert },
    { cert ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, key },
    { MHD_OPTION_END, 0, NULL },
  };
  api->daemon = MHD_start_daemon (flags, (uint16_t)port, NULL, NULL, access_handler, api, MHD_OPTION_ARRAY, opts,
                                  MHD_OPTION_END);
  if (key)
    sodium_memzero (key, strlen (key));
  freeaddrinfo (ai);
  if (api->daemon == NULL)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE,
                     "cannot listen on %s (in use, not an address of this host, or a bad TLS certificate or key?)",
                     node->cfg->listen);
      nex_api_stop (api);
      return NULL;
    }
  return api;
}

#define DRAIN_MS 5000

void
nex_api_stop (nex_api_t *api)
{
  if (api == NULL)
    return;
  /* Graceful: new requests are answered 503 at once; parked requests are answered (503); requests in flight get
   * up to DRAIN_MS to finish before the daemon is stopped (which closes what is left).  Not MHD_quiesce_daemon:
   * with a thread pool on epoll it races the workers, which drop the listening socket from their epoll sets
   * themselves once they see the quiesce flag, and libmicrohttpd then aborts the process ("Failed to remove
   * listen FD from epoll set"); seen in this suite about once in six runs. */
  __atomic_store_n (&api->stopping, 1, __ATOMIC_RELEASE);
  nex_ws_stop (api->ws); /* streams get a close frame (1001) */
  if (api->lot_started)
    {
      uint64_t one = 1;
      (void)!write (api->lot_fd, &one, sizeof one);
      pthread_join (api->lot_thread, NULL);
    }
  lot_release (api, NULL, 1);
  int64_t until = nex_clock_mono_ms () + DRAIN_MS;
  while (api->daemon && __atomic_load_n (&api->in_flight, __ATOMIC_ACQUIRE) > 0 && nex_clock_mono_ms () < until)
    usleep (10000);
  if (api->daemon)
    MHD_stop_daemon (api->daemon);
  nex_ws_free (api->ws); /* only now: an upgrade in flight until the daemon stopped still reached nex_ws_adopt */
  nex_guard_stop (api->guard);
  nex_bus_unsubscribe (api->node->bus, api->lot_sub);
  if (api->lot_fd >= 0)
    close (api->lot_fd);
  pthread_mutex_destroy (&api->lot_lock);
  nex_auth_close (api->node->auth);
  api->node->auth = NULL;
  nex_api_cache_free (api->answers);
  free (api);
}
