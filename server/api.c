/* api.c — the HTTP server and router (see api.h). */
#include "server/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/id.h"
#include "server/log.h"
#include "server/problem.h"

struct nex_api
{
  nex_node_t *node;
  struct MHD_Daemon *daemon;
};

/* Per-request state, from the first call of the access handler to the completion callback. */
typedef struct request_ctx
{
  int64_t start_ms;
  char *body;
  size_t body_len;
  int too_large;     /* the body passed the bound: it is discarded, the answer will be 413 */
  unsigned status;   /* status answered, for the log line */
  char request_id[64];
} request_ctx_t;

static const nex_api_route_t *const route_tables[] = { nex_api_node_routes, nex_api_workload_routes, NULL };

const char *
nex_api_query (const nex_api_request_t *req, const char *key)
{
  return MHD_lookup_connection_value (req->conn, MHD_GET_ARGUMENT_KIND, key);
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

#define MAX_SEGMENTS 8

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

/* Matches the split path SEGS against PATTERN, pointing PARAMS at the placeholders' segments. */
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
          params[n_params++] = segs[i];
        }
      else if (strcmp (psegs[i], segs[i]) != 0)
        return 0;
    }
  return 1;
}

/* Queues STATUS with BODY (JSON), or with R's raw bytes when R has them (R's raw buffer is handed over). */
static enum MHD_Result
send_response (struct MHD_Connection *conn, request_ctx_t *ctx, unsigned status, json_t *body, const char *location,
               const char *allow, nex_api_response_t *r_raw)
{
  char *text;
  size_t len;
  const char *type = status >= 400 ? "application/problem+json" : "application/json";
  if (r_raw && r_raw->raw)
    {
      text = NEX_STEAL_PTR (r_raw->raw);
      len = r_raw->raw_len;
      type = r_raw->content_type;
    }
  else
    {
      text = json_dumps (body, JSON_COMPACT | JSON_PRESERVE_ORDER);
      if (text == NULL)
        text = nex_xstrdup ("{}");
      len = strlen (text);
      text = nex_xrealloc (text, len + 2);
      text[len++] = '\n';
    }
  struct MHD_Response *res = MHD_create_response_from_buffer (len, text, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header (res, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (r_raw && r_raw->cache_control)
    MHD_add_response_header (res, MHD_HTTP_HEADER_CACHE_CONTROL, r_raw->cache_control);
  MHD_add_response_header (res, "X-Request-Id", ctx->request_id);
  if (location)
    MHD_add_response_header (res, MHD_HTTP_HEADER_LOCATION, location);
  if (allow)
    MHD_add_response_header (res, MHD_HTTP_HEADER_ALLOW, allow);
  ctx->status = status;
  enum MHD_Result r = MHD_queue_response (conn, status, res);
  MHD_destroy_response (res);
  return r;
}

static enum MHD_Result
send_json (struct MHD_Connection *conn, request_ctx_t *ctx, unsigned status, json_t *body, const char *location,
           const char *allow)
{
  return send_response (conn, ctx, status, body, location, allow, NULL);
}

static enum MHD_Result
send_problem (struct MHD_Connection *conn, request_ctx_t *ctx, unsigned status, const char *detail,
              const char *path, const char *allow)
{
  cleanup_json json_t *p = nex_problem_new (status, detail, NULL, path);
  return send_json (conn, ctx, status, p, NULL, allow);
}

static enum MHD_Result
dispatch (nex_api_t *api, struct MHD_Connection *conn, request_ctx_t *ctx, const char *url, const char *method)
{
  const nex_api_route_t *match = NULL;
  const char *params[NEX_API_MAX_PARAMS] = { NULL };
  cleanup_free char *copy = nex_xstrdup (url);
  char *segs[MAX_SEGMENTS];
  int n_segs = split_path (copy, segs);
  char allow[128] = "";

  for (size_t t = 0; n_segs > 0 && route_tables[t]; t++)
    for (const nex_api_route_t *r = route_tables[t]; r->method; r++)
      {
        const char *p[NEX_API_MAX_PARAMS] = { NULL };
        if (!route_match (r->pattern, segs, n_segs, p))
          continue;
        if (strcmp (r->method, method) == 0)
          {
            match = r;
            memcpy (params, p, sizeof params);
            goto found;
          }
        if (strlen (allow) + strlen (r->method) + 3 < sizeof allow)
          {
            if (allow[0])
              strcat (allow, ", ");
            strcat (allow, r->method);
          }
      }
found:
  if (match == NULL && !allow[0] && strcmp (method, "GET") == 0 && strncmp (url, "/v1/", 4) != 0)
    {
      nex_api_request_t req = { .node = api->node, .conn = conn, .method = method, .path = url };
      nex_api_response_t res = { 0 };
      cleanup_error nex_error_t err = NULL;
      if (nex_api_static_get (&req, &res, &err) == 0)
        {
          enum MHD_Result r = send_response (conn, ctx, 200, NULL, NULL, NULL, &res);
          free (res.raw);
          return r;
        }
    }
  if (match == NULL)
    {
      if (allow[0])
        {
          cleanup_free char *d = nex_xasprintf ("%s is not allowed on %s (allowed: %s)", method, url, allow);
          return send_problem (conn, ctx, 405, d, url, allow);
        }
      cleanup_free char *d = nex_xasprintf ("no such resource: %s", url);
      return send_problem (conn, ctx, 404, d, url, NULL);
    }
  if (ctx->too_large)
    {
      cleanup_free char *d = nex_xasprintf ("the request body exceeds %lld bytes",
                                            (long long) api->node->cfg->max_body_bytes);
      return send_problem (conn, ctx, 413, d, url, NULL);
    }

  nex_api_request_t req = { .node = api->node, .conn = conn, .method = method, .path = url };
  memcpy (req.params, params, sizeof params);
  cleanup_json json_t *body = NULL;
  if (match->wants_body)
    {
      if (ctx->body_len == 0)
        return send_problem (conn, ctx, 400, "the request body is empty; a JSON object is expected", url, NULL);
      json_error_t jerr;
      /* Duplicate keys are refused: two values for one field would be ambiguous. */
      body = json_loadb (ctx->body, ctx->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
      if (body == NULL)
        {
          cleanup_free char *d = nex_xasprintf ("the request body is not valid JSON: %s (line %d, column %d)",
                                                jerr.text, jerr.line, jerr.column);
          return send_problem (conn, ctx, 400, d, url, NULL);
        }
      req.body = body;
    }

  nex_api_response_t res = { 0 };
  cleanup_error nex_error_t err = NULL;
  if (match->handler (&req, &res, &err) < 0)
    {
      json_decref (res.body);
      free (res.location);
      unsigned status;
      cleanup_json json_t *p = nex_problem_from_error (err, url, &status);
      if (status >= 500)
        nex_log_error (NEX_LOG_ERROR, err, "%s %s failed", method, url);
      return send_json (conn, ctx, status, p, NULL, NULL);
    }
  if (res.body == NULL && res.raw == NULL)
    res.body = json_object ();
  enum MHD_Result r = send_response (conn, ctx, res.status ? res.status : 200, res.body, res.location, NULL, &res);
  json_decref (res.body);
  free (res.location);
  free (res.raw);
  return r;
}

static void
set_request_id (struct MHD_Connection *conn, request_ctx_t *ctx)
{
  const char *given = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, "X-Request-Id");
  size_t n = given ? strlen (given) : 0;
  /* Echo a client's id only when it is short and plain: it goes into our logs and headers. */
  if (n > 0 && n < sizeof ctx->request_id && strspn (given, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                           "0123456789-_.:")
                                                 == n)
    memcpy (ctx->request_id, given, n + 1);
  else
    nex_id_new (ctx->request_id);
}

static enum MHD_Result
access_handler (void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
                const char *upload_data, size_t *upload_data_size, void **con_cls)
{
  nex_api_t *api = cls;
  request_ctx_t *ctx = *con_cls;
  size_t max = (size_t) api->node->cfg->max_body_bytes;
  if (ctx == NULL)
    {
      ctx = nex_xzalloc (sizeof *ctx);
      ctx->start_ms = nex_clock_mono_ms ();
      set_request_id (conn, ctx);
      *con_cls = ctx;
      const char *cl = MHD_lookup_connection_value (conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
      if (cl && strtoull (cl, NULL, 10) > max)
        {
          /* Refuse before reading a byte of it: a declared oversized body is never buffered. */
          cleanup_free char *d = nex_xasprintf ("the request body exceeds %zu bytes", max);
          return send_problem (conn, ctx, 413, d, url, NULL);
        }
      return MHD_YES;
    }
  if (*upload_data_size > 0)
    {
      if (!ctx->too_large && ctx->body_len + *upload_data_size > max)
        {
          ctx->too_large = 1;
          free (ctx->body);
          ctx->body = NULL;
          ctx->body_len = 0;
        }
      if (!ctx->too_large)
        {
          ctx->body = nex_xrealloc (ctx->body, ctx->body_len + *upload_data_size + 1);
          memcpy (ctx->body + ctx->body_len, upload_data, *upload_data_size);
          ctx->body_len += *upload_data_size;
        }
      *upload_data_size = 0;
      return MHD_YES;
    }
  return dispatch (api, conn, ctx, url, method);
}

static void
request_completed (void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
  request_ctx_t *ctx = *con_cls;
  if (ctx == NULL)
    return;
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info (conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char addr[INET6_ADDRSTRLEN] = "?";
  if (ci && ci->client_addr)
    {
      const struct sockaddr *sa = ci->client_addr;
      if (sa->sa_family == AF_INET)
        inet_ntop (AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, addr, sizeof addr);
      else if (sa->sa_family == AF_INET6)
        inet_ntop (AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, addr, sizeof addr);
    }
  nex_log (NEX_LOG_INFO, "request %s status=%u ms=%lld client=%s completed=%s", ctx->request_id, ctx->status,
           (long long) (nex_clock_mono_ms () - ctx->start_ms), addr,
           toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "yes" : "no");
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
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  /* The logger goes first: libmicrohttpd reports problems with the options that follow through it. */
  api->daemon = MHD_start_daemon (flags, (uint16_t) port, NULL, NULL, access_handler, api,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, api,
                                  MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                  MHD_OPTION_THREAD_POOL_SIZE, (unsigned) node->cfg->api_threads,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 60,
                                  MHD_OPTION_NOTIFY_COMPLETED, request_completed, api,
                                  MHD_OPTION_END);
  freeaddrinfo (ai);
  if (api->daemon == NULL)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "cannot listen on %s (in use, or not an address of this host?)",
                     node->cfg->listen);
      free (api);
      return NULL;
    }
  return api;
}

void
nex_api_stop (nex_api_t *api)
{
  if (api == NULL)
    return;
  MHD_stop_daemon (api->daemon);
  free (api);
}
