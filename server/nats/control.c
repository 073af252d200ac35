/* SPDX-License-Identifier: Apache-2.0 */
/* nats/control.c — the control API on NATS: request/reply handlers for ping, info, deploy, stop, workload
 * ping, lame duck and auction (subjects and envelope in nats/bridge.h; field names follow nex's control API).
 *
 * Every handler runs on a nats.c delivery thread and does little: parse, validate, call a thread-safe node
 * function, reply.  A request that can be answered always is: malformed JSON, unknown fields, a wrong node or
 * namespace and refusals all get an envelope whose "error" says why.  Only $NEX.WPING and $NEX.AUCTION stay
 * silent by design when this node does not match (every node receives them; only matches answer). */
#include "server/nats/internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "autoconfig.h"
#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/cluster/cluster.h"
#include "server/deploy.h"
#include "server/log.h"
#include "server/nats/secure.h"
#include "server/supervisor.h"

#define TYPE_PREFIX "io.nats.nex.v1."
#define MAX_REQUEST_BYTES (1024 * 1024)
#define DRAIN_SLACK_MS 15000

typedef struct request
{
  nex_nats_t *b;
  natsMsg *msg;
  const char *subject;
  const char *tokens[8]; /* subject split at '.' (pointers into toks) */
  int n_tokens;
  char *toks;
} request_t;

/* Replies to R (when it has a reply subject) with the envelope {type: OP_response, data: DATA (stolen),
 * error: ERROR}. */
static void
reply (request_t *r, const char *op, json_t *data, const char *error)
{
  const char *to = natsMsg_GetReply (r->msg);
  cleanup_json json_t *d = data;
  if (to == NULL || *to == '\0')
    return;
  cleanup_free char *type = nex_xasprintf (TYPE_PREFIX "%s_response", op);
  cleanup_json json_t *env
      = json_pack ("{s:s, s:O?, s:s?}", "type", type, "data", d ? d : json_null (), "error", error);
  cleanup_free char *text = json_dumps (env, JSON_COMPACT);
  natsStatus s = natsConnection_PublishString (r->b->nc, to, text);
  if (s != NATS_OK)
    nex_warn ("nats: cannot reply to %s: %s", r->subject, natsStatus_GetText (s));
}

static void
reply_error (request_t *r, const char *op, const nex_error_s *e)
{
  cleanup_free char *msg
      = e->field && *e->field ? nex_xasprintf ("%s (field `%s`)", e->msg, e->field) : nex_xstrdup (e->msg);
  /* As on the REST API, internal errors do not leak details to the client; the log has them. */
  if (e->kind == NEX_ERR_SYSTEM)
    {
      nex_log_error (NEX_LOG_WARN, (nex_error_t)e, "nats: %s request failed", op);
      reply (r, op, NULL, "internal error (see the node's log)");
      return;
    }
  reply (r, op, NULL, msg);
}

json_t *
nex_nats_body_parse (const char *data, size_t len, int empty_ok, nex_error_t *err)
{
  if (len == 0 && empty_ok)
    return json_object ();
  if (len > MAX_REQUEST_BYTES)
    {
      nex_error_set (err, NEX_ERR_INVALID, "request is larger than 1 MiB");
      return NULL;
    }
  json_error_t jerr;
  json_t *j = json_loadb (data ? data : "", len, JSON_REJECT_DUPLICATES, &jerr);
  if (j == NULL)
    {
      nex_error_set (err, NEX_ERR_INVALID, "request is not valid JSON: %s", jerr.text);
      return NULL;
    }
  if (!json_is_object (j))
    {
      json_decref (j);
      nex_error_set (err, NEX_ERR_INVALID, "request must be a JSON object");
      return NULL;
    }
  return j;
}

/* R's body as a JSON object (nex_nats_body_parse); NULL after replying with the error. */
static json_t *
parse_body (request_t *r, const char *op, int empty_ok)
{
  cleanup_error nex_error_t err = NULL;
  json_t *j = nex_nats_body_parse (natsMsg_GetData (r->msg), (size_t)natsMsg_GetDataLength (r->msg), empty_ok, &err);
  if (j == NULL)
    reply (r, op, NULL, err->msg);
  return j;
}

static int
live_state (nex_state_t s)
{
  return s == NEX_STATE_PENDING || s == NEX_STATE_STARTING || s == NEX_STATE_RUNNING;
}

/* Live workloads, optionally of namespace NS, into *OUT and *N (as nex_registry_workload_list).  0 or -1. */
static int
live_workloads (nex_nats_t *b, const char *ns, nex_workload_t **out, size_t *n, nex_error_t *err)
{
  nex_workload_filter_t f = { .namespace_ = ns };
  nex_workload_t *all = NULL;
  size_t total = 0;
  if (nex_registry_workload_list (b->node->reg, &f, &all, &total, err) < 0)
    return -1;
  size_t k = 0;
  for (size_t i = 0; i < total; i++)
    {
      if (live_state (all[i].state))
        all[k++] = all[i];
      else
        nex_workload_release (&all[i]);
    }
  *out = all;
  *n = k;
  return 0;
}

static void
release_list (nex_workload_t *list, size_t n)
{
  for (size_t i = 0; i < n; i++)
    nex_workload_release (&list[i]);
  free (list);
}

static const char *
workload_type (const nex_workload_t *w)
{
  return "native";
}

/* The ping document, shared by ping, auction and (with another running_machines) workload ping. */
static json_t *
ping_data (nex_nats_t *b, json_t *running)
{
  nex_node_t *node = b->node;
  char up[64];
  json_t *d = json_pack ("{s:s, s:s, s:s, s:s, s:s, s:o}", "node_id", node->id, "version", PACKAGE_VERSION, "uptime",
                         nex_nats_uptime (nex_clock_mono_ms () - node->started_mono, up, sizeof up), "target_xkey",
                         node->identity.xkey.public_text, "public_xkey", node->identity.xkey.public_text, "tags",
                         nex_nats_tags (b));
  json_object_set_new (d, "running_machines", running);
  json_object_set_new (d, "lameduck", json_boolean (__atomic_load_n (&node->lameduck, __ATOMIC_SEQ_CST)));
  return d;
}

static json_t *
running_count (nex_nats_t *b)
{
  int64_t counts[NEX_STATE__COUNT] = { 0 };
  nex_registry_count_by_state (b->node->reg, counts, NULL);
  return json_integer (counts[NEX_STATE_PENDING] + counts[NEX_STATE_STARTING] + counts[NEX_STATE_RUNNING]);
}

/* --- handlers ------------------------------------------------------------------------------------------------- */

static void
handle_ping (request_t *r)
{
  reply (r, "ping", ping_data (r->b, running_count (r->b)), NULL);
}

static json_t *
memory_json (void)
{
  size_t len = 0;
  cleanup_free char *text = nex_file_read ("/proc/meminfo", 65536, &len, NULL);
  long long total = 0, free_kb = 0, avail = 0;
  for (char *line = text; line && *line;)
    {
      char *nl = strchr (line, '\n');
      sscanf (line, "MemTotal: %lld", &total);
      sscanf (line, "MemFree: %lld", &free_kb);
      sscanf (line, "MemAvailable: %lld", &avail);
      line = nl ? nl + 1 : NULL;
    }
  return json_pack ("{s:I, s:I, s:I}", "total", (json_int_t)total, "free", (json_int_t)free_kb, "available",
                    (json_int_t)avail);
}

static json_t *
machine_json (const nex_workload_t *w)
{
  char up[64];
  int64_t since = w->started_at ? w->started_at : w->created_at;
  nex_nats_uptime (nex_clock_now_ms () - since, up, sizeof up);
  return json_pack ("{s:s, s:b, s:s, s:s, s:{s:s, s:s, s:s?, s:b, s:s?, s:s, s:s, s:s, s:s}}", "id", w->id, "healthy",
                    w->state == NEX_STATE_RUNNING, "uptime", up, "namespace", w->namespace_, "workload", "id", w->id,
                    "name", w->name, "description", w->description, "essential", w->restart_policy != NEX_RESTART_NEVER,
                    "hash", w->digest, "runtime", up, "uptime", up, "type", workload_type (w), "state",
                    nex_state_name (w->state));
}

static void
handle_info (request_t *r)
{
  const char *ns = r->tokens[2];
  nex_workload_t *list = NULL;
  size_t n = 0;
  cleanup_error nex_error_t err = NULL;
  if (live_workloads (r->b, ns, &list, &n, &err) < 0)
    {
      reply_error (r, "info", err);
      return;
    }
  json_t *machines = json_array ();
  for (size_t i = 0; i < n; i++)
    json_array_append_new (machines, machine_json (&list[i]));
  release_list (list, n);
  nex_node_t *node = r->b->node;
  char up[64];
  json_t *d = json_pack ("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:[s], s:i, s:b}", "node_id", node->id, "version",
                         PACKAGE_VERSION, "uptime",
                         nex_nats_uptime (nex_clock_mono_ms () - node->started_mono, up, sizeof up), "public_xkey",
                         node->identity.xkey.public_text, "tags", nex_nats_tags (r->b), "machines", machines, "memory",
                         memory_json (), "supported_workload_types", "native", "available_agents", 0, "lameduck",
                         __atomic_load_n (&node->lameduck, __ATOMIC_SEQ_CST));
  reply (r, "info", d, NULL);
}

/* Copies member FROM of SRC to TO in DST (the REST name) when present; refuses both names at once. */
static int
alias (json_t *src, json_t *dst, const char *from, const char *to, nex_error_t *err)
{
  json_t *v = json_object_get (src, from);
  if (v == NULL)
    return 0;
  if (json_object_get (src, to) != NULL)
    return nex_error_field (err, from, "give either `%s` or `%s`, not both", from, to);
  json_object_set (dst, to, v);
  json_object_del (dst, from);
  return 0;
}

/* Member KEY of LOC as a string ("" when absent or null) into *OUT; -1 when it is something else. */
static int
url_member (json_t *loc, const char *key, const char **out, nex_error_t *err)
{
  json_t *v = json_object_get (loc, key);
  *out = "";
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_string (v) || strlen (json_string_value (v)) != json_string_length (v))
    return nex_error_field (err, "location", "member `%s` must be a string", key);
  *out = json_string_value (v);
  return 0;
}

/* nex's Go client sends `location` as Go's url.URL, which has no JSON form of its own and so is marshalled field
 * by field ({"Scheme": "nats", "Opaque": "", "User": null, "Host": "bucket", "Path": "/key", "RawPath": "",
 * "OmitHost": false, "ForceQuery": false, "RawQuery": "", "Fragment": "", "RawFragment": ""}).  Returns the URL's
 * text as URL.String() writes it (a new JSON string), or NULL with the error.  User information cannot travel
 * this way (url.Userinfo marshals as {}), so a non-null User is refused rather than dropped. */
static json_t *
location_text (json_t *loc, nex_error_t *err)
{
  static const char *const known[] = { "Scheme",   "Opaque",     "User",     "Host",     "Path",        "RawPath",
                                       "OmitHost", "ForceQuery", "RawQuery", "Fragment", "RawFragment", NULL };
  const char *key;
  json_t *v;
  json_object_foreach (loc, key, v)
  {
    size_t i = 0;
    while (known[i] != NULL && strcmp (known[i], key) != 0)
      i++;
    if (known[i] == NULL)
      {
        nex_error_field (err, "location", "unknown member `%s` (a URL string, or Go's url.URL fields)", key);
        return NULL;
      }
  }
  json_t *user = json_object_get (loc, "User");
  if (user != NULL && !json_is_null (user))
    {
      nex_error_field (err, "location", "a URL with user information cannot be sent as Go's url.URL fields");
      return NULL;
    }
  const char *scheme, *opaque, *host, *path, *raw_path, *query, *fragment, *raw_fragment;
  if (url_member (loc, "Scheme", &scheme, err) < 0 || url_member (loc, "Opaque", &opaque, err) < 0
      || url_member (loc, "Host", &host, err) < 0 || url_member (loc, "Path", &path, err) < 0
      || url_member (loc, "RawPath", &raw_path, err) < 0 || url_member (loc, "RawQuery", &query, err) < 0
      || url_member (loc, "Fragment", &fragment, err) < 0 || url_member (loc, "RawFragment", &raw_fragment, err) < 0)
    return NULL;
  if (*scheme == '\0')
    {
      nex_error_field (err, "location", "member `Scheme` must be a non-empty string");
      return NULL;
    }
  const char *p = *raw_path ? raw_path : path;
  const char *frag = *raw_fragment ? raw_fragment : fragment;
  /* As URL.String(): an opaque URL is scheme:opaque; otherwise "//" comes before a host, or before a path when
   * there is no host (file:///srv/prog), and a relative path after a host gets its "/". */
  cleanup_free char *text = *opaque ? nex_xasprintf ("%s:%s", scheme, opaque)
                                    : nex_xasprintf ("%s:%s%s%s%s", scheme, *host || *p ? "//" : "", host,
                                                     *host && *p && *p != '/' ? "/" : "", p);
  cleanup_free char *full
      = nex_xasprintf ("%s%s%s%s%s", text, *query || json_is_true (json_object_get (loc, "ForceQuery")) ? "?" : "",
                       query, *frag ? "#" : "", frag);
  return json_string (full);
}

/* Refuses member KEY of BODY unless it is absent, null or empty ("" or {}): a nex option this node does not
 * provide (WHY says so), which would otherwise be dropped without the client knowing. */
static int
refuse_set (json_t *body, const char *key, const char *why, nex_error_t *err)
{
  json_t *v = json_object_get (body, key);
  if (v == NULL || json_is_null (v) || (json_is_string (v) && json_string_length (v) == 0)
      || (json_is_object (v) && json_object_size (v) == 0))
    return 0;
  return nex_error_field (err, key, "%s", why);
}

/* Turns a nex deploy request into the REST deploy fields (nex_workload_from_request), checking the parts that
 * only exist on NATS.  NS is the namespace of the subject.  The differences from nex, and why, are listed in
 * ARCHITECTURE.md ("nex compatibility"). */
json_t *
nex_nats_deploy_fields (const char *node_id, json_t *body, const char *ns, nex_error_t *err)
{
  cleanup_json json_t *f = json_deep_copy (body);
  /* nex's names for the REST fields.  nex's `argv` is the arguments (its agent runs exec.Command(path,
   * argv...)), which REST calls `args`: the node supplies argv[0]. */
  if (alias (body, f, "workload_name", "name", err) < 0 || alias (body, f, "location", "artifact", err) < 0
      || alias (body, f, "hash", "sha256", err) < 0 || alias (body, f, "argv", "args", err) < 0)
    return NULL;
  json_t *loc = json_object_get (f, "artifact");
  if (json_is_object (loc))
    {
      json_t *text = location_text (loc, err);
      if (text == NULL)
        return NULL;
      json_object_set_new (f, "artifact", text);
    }
  static const char no_domains[] = "JetStream domains are not supported: object stores are read from the node's "
                                   "own JetStream";
  if (refuse_set (body, "jsdomain", no_domains, err) < 0
      || refuse_set (body, "host_services_config", "this node provides no host services", err) < 0)
    return NULL;
  json_object_del (f, "jsdomain");
  json_object_del (f, "host_services_config");
  const char *target = json_string_value (json_object_get (body, "target_node"));
  if (json_object_get (body, "target_node") && !json_is_null (json_object_get (body, "target_node"))
      && (target == NULL || strcmp (target, node_id) != 0))
    {
      nex_error_field (err, "target_node", "this is node %s", node_id);
      return NULL;
    }
  json_object_del (f, "target_node");
  /* `type`: nex's `native` (the executable kind), or no type, is a service, or a function when trigger subjects
   * come with it (as in nex); the REST values `service` and `function` are taken as they are. */
  json_t *subjects = json_object_get (body, "trigger_subjects");
  if (json_is_null (subjects) || (json_is_array (subjects) && json_array_size (subjects) == 0))
    json_object_del (f, "trigger_subjects"); /* nex clients send an empty list for services */
  json_t *type = json_object_get (body, "type");
  if (type == NULL || json_is_null (type)
      || (json_is_string (type) && strcmp (json_string_value (type), "native") == 0))
    {
      int fn = json_is_array (subjects) && json_array_size (subjects) > 0;
      json_object_set_new (f, "type", json_string (fn ? "function" : "service"));
    }
  else if (!(json_is_string (type)
             && (strcmp (json_string_value (type), "service") == 0
                 || strcmp (json_string_value (type), "function") == 0)))
    {
      nex_error_field (err, "type", "must be native (nex's name), service or function");
      return NULL;
    }
  /* Fields nex clients send that carry nothing for this node: the client's request id (the node names the
   * workload), and the bookkeeping of nex's own re-deploys of essential workloads (restarts happen inside the
   * node here). */
  json_object_del (f, "id");
  json_object_del (f, "retry_count");
  json_object_del (f, "retried_at");
  const char *body_ns = json_string_value (json_object_get (body, "namespace"));
  if (json_object_get (body, "namespace") && (body_ns == NULL || strcmp (body_ns, ns) != 0))
    {
      nex_error_field (err, "namespace", "the subject names namespace `%s`", ns);
      return NULL;
    }
  json_object_set_new (f, "namespace", json_string (ns));
  return NEX_STEAL_PTR (f);
}

/* A deploy with the header `Nex-Fields: rest` (how cluster placement sends one, cluster/placement.c): BODY has
 * the REST deploy fields as they are (argv is the whole vector); its namespace must be the subject's.  The
 * reply's data carries the workload's JSON as REST shows it, and a failure its kind and field, so that the
 * placing node can answer its client as this node would have. */
static void
deploy_rest (request_t *r, json_t *body)
{
  nex_nats_t *b = r->b;
  cleanup_error nex_error_t err = NULL;
  const char *ns = json_string_value (json_object_get (body, "namespace"));
  cleanup_free char *ns_token = nex_nats_token (ns ? ns : "default");
  nex_workload_t w = { 0 };
  if (strcmp (ns_token, r->tokens[2]) != 0)
    nex_error_field (&err, "namespace", "the subject names namespace `%s`", r->tokens[2]);
  else if (nex_deploy_submit (b->node, body, &w, &err) == 0)
    {
      json_t *d = json_pack ("{s:b, s:s, s:s, s:s, s:s, s:o}", "started", 1, "id", w.id, "name", w.name, "namespace",
                             w.namespace_, "state", nex_state_name (w.state), "workload", nex_workload_to_json (&w));
      nex_workload_release (&w);
      reply (r, "run", d, NULL);
      return;
    }
  const char *to = natsMsg_GetReply (r->msg);
  if (to == NULL || *to == '\0')
    return;
  cleanup_json json_t *env
      = json_pack ("{s:s, s:n, s:s, s:s, s:s?}", "type", TYPE_PREFIX "run_response", "data", "error",
                   err->kind == NEX_ERR_SYSTEM ? "internal error (see the node's log)" : err->msg, "error_kind",
                   nex_error_kind_name (err->kind), "error_field", err->field);
  cleanup_free char *text = json_dumps (env, JSON_COMPACT);
  natsConnection_PublishString (b->nc, to, text);
}

/* A nex deploy with the header `Nex-Placement` (ours: nex 0.3 has no such field; its CLI auctions and picks a
 * node itself): `auto`, or a placement object as REST takes it ({"tags": {...}, "driver": ...}).  The cluster
 * places it by the rule as for REST's `node: "auto"` (cluster/placement.c) — from this node, whichever node the
 * subject named — and the reply's data says which node took it (`node`).  Blocks this delivery thread for the
 * auction (at most about half a second) and the remote deploy. */
static void
deploy_placed (request_t *r, json_t *body, const char *placement)
{
  nex_nats_t *b = r->b;
  cleanup_error nex_error_t err = NULL;
  /* Parsed before the check: json_is_object is a macro that evaluates its argument twice (a json_loads inside it
   * ran twice and leaked the first result). */
  cleanup_json json_t *where
      = strcmp (placement, "auto") != 0 ? json_loads (placement, JSON_REJECT_DUPLICATES, NULL) : NULL;
  if (strcmp (placement, "auto") != 0 && !json_is_object (where))
    nex_error_field (&err, "Nex-Placement", "must be `auto` or a JSON placement object");
  else if (b->node->cluster == NULL)
    nex_error_set (&err, NEX_ERR_UNAVAILABLE, "this node is not in a cluster");
  cleanup_json json_t *fields = err ? NULL : nex_nats_deploy_fields (b->node->id, body, r->tokens[2], &err);
  cleanup_json json_t *out = NULL;
  if (fields)
    {
      json_object_set_new (fields, "node", json_string ("auto"));
      if (where)
        json_object_set (fields, "placement", where);
    }
  if (fields == NULL || nex_cluster_deploy (b->node->cluster, fields, &out, &err) < 0)
    {
      reply_error (r, "run", err);
      return;
    }
  json_t *d = json_pack ("{s:b, s:O?, s:O?, s:O?, s:O?, s:O?}", "started", 1, "id", json_object_get (out, "id"), "name",
                         json_object_get (out, "name"), "namespace", json_object_get (out, "namespace"), "state",
                         json_object_get (out, "state"), "node", json_object_get (out, "node"));
  reply (r, "run", d, NULL);
}

static void
handle_deploy (request_t *r)
{
  nex_nats_t *b = r->b;
  if (__atomic_load_n (&b->node->lameduck, __ATOMIC_SEQ_CST))
    {
      reply (r, "run", NULL, "node is in lame duck mode: deploy request denied");
      return;
    }
  cleanup_json json_t *body = parse_body (r, "run", 0);
  if (body == NULL)
    return;
  const char *fields_kind = NULL;
  if (natsMsgHeader_Get (r->msg, "Nex-Fields", &fields_kind) == NATS_OK && fields_kind
      && strcmp (fields_kind, "rest") == 0)
    {
      deploy_rest (r, body);
      return;
    }
  const char *placement = NULL;
  if (natsMsgHeader_Get (r->msg, "Nex-Placement", &placement) == NATS_OK && placement)
    {
      deploy_placed (r, body, placement);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *fields = nex_nats_deploy_fields (b->node->id, body, r->tokens[2], &err);
  nex_workload_t w = { 0 };
  if (fields == NULL || nex_deploy_submit (b->node, fields, &w, &err) < 0)
    {
      reply_error (r, "run", err);
      return;
    }
  nex_secure_row_t sec;
  nex_registry_secure_get (b->node->reg, w.id, &sec, NULL);
  json_t *d = json_pack ("{s:b, s:s, s:s, s:s, s:s, s:s?}", "started", 1, "id", w.id, "name", w.name, "namespace",
                         w.namespace_, "state", nex_state_name (w.state), "issuer", sec.jwt_issuer);
  nex_secure_row_release (&sec);
  nex_workload_release (&w);
  reply (r, "run", d, NULL);
}

static void
handle_stop (request_t *r)
{
  nex_nats_t *b = r->b;
  cleanup_json json_t *body = parse_body (r, "stop", 0);
  if (body == NULL)
    return;
  const char *id = json_string_value (json_object_get (body, "workload_id"));
  if (id == NULL)
    {
      reply (r, "stop", NULL, "workload_id is required");
      return;
    }
  /* The node the client meant: nex 0.3 names it `node_id`, nex 0.2 `target_node`; either must be this one. */
  static const char *const node_keys[] = { "node_id", "target_node" };
  for (size_t i = 0; i < sizeof node_keys / sizeof node_keys[0]; i++)
    {
      json_t *v = json_object_get (body, node_keys[i]);
      if (v != NULL && !json_is_null (v) && (!json_is_string (v) || strcmp (json_string_value (v), b->node->id) != 0))
        {
          cleanup_free char *m = nex_xasprintf ("%s is not this node", node_keys[i]);
          reply (r, "stop", NULL, m);
          return;
        }
    }
  nex_workload_t w = { 0 };
  cleanup_error nex_error_t err = NULL;
  /* A workload of another namespace is answered like a missing one, so that ids cannot be probed across
   * namespaces. */
  if (nex_registry_workload_get (b->node->reg, id, &w, &err) < 0 || strcmp (w.namespace_, r->tokens[2]) != 0)
    {
      nex_workload_release (&w);
      reply (r, "stop", NULL, "no such workload");
      return;
    }
  if (!live_state (w.state))
    {
      cleanup_free char *m = nex_xasprintf ("workload already ended (%s)", nex_state_name (w.state));
      nex_workload_release (&w);
      reply (r, "stop", NULL, m);
      return;
    }
  if (nex_secure_check_stop (b->node, w.id, json_string_value (json_object_get (body, "workload_jwt")), &err) < 0)
    {
      nex_workload_release (&w);
      reply_error (r, "stop", err);
      return;
    }
  json_t *grace = json_object_get (body, "grace_s");
  int64_t grace_ms = b->node->cfg->stop_grace_s * 1000;
  if (json_is_integer (grace) && json_integer_value (grace) >= 0 && json_integer_value (grace) <= 3600)
    grace_ms = json_integer_value (grace) * 1000;
  nex_supervisor_stop (b->node->sup, w.id, grace_ms);
  nex_secure_row_t sec;
  nex_registry_secure_get (b->node->reg, w.id, &sec, NULL);
  json_t *d = json_pack ("{s:b, s:s, s:s, s:s?}", "stopped", 1, "id", w.id, "name", w.name, "issuer", sec.jwt_issuer);
  nex_secure_row_release (&sec);
  nex_workload_release (&w);
  reply (r, "stop", d, NULL);
}

static void
handle_wping (request_t *r)
{
  const char *ns = r->n_tokens > 2 ? r->tokens[2] : NULL;
  const char *which = r->n_tokens > 3 ? r->tokens[3] : NULL;
  nex_workload_t *list = NULL;
  size_t n = 0;
  if (live_workloads (r->b, ns, &list, &n, NULL) < 0)
    return;
  json_t *machines = json_array ();
  for (size_t i = 0; i < n; i++)
    if (which == NULL || strcmp (list[i].id, which) == 0 || strcasecmp (list[i].name, which) == 0)
      json_array_append_new (machines,
                             json_pack ("{s:s, s:s, s:s, s:s}", "id", list[i].id, "namespace", list[i].namespace_,
                                        "name", list[i].name, "type", workload_type (&list[i])));
  release_list (list, n);
  if (json_array_size (machines) == 0)
    {
      json_decref (machines); /* only nodes running a match answer */
      return;
    }
  reply (r, "ping", ping_data (r->b, machines), NULL);
}

/* Lame duck: no more deploys; stop every workload; when they have all ended (or the grace ran out), ask the
 * main thread to shut the node down as SIGTERM would. */
static void *
drain_main (void *arg)
{
  nex_nats_t *b = arg;
  nex_node_t *node = b->node;
  int64_t grace_ms = node->cfg->stop_grace_s * 1000;
  nex_workload_t *list = NULL;
  size_t n = 0;
  /* In a cluster, restartable workloads placed with node: auto first start on another node (cluster.h). */
  int moved = nex_cluster_evacuate (__atomic_load_n (&node->cluster, __ATOMIC_ACQUIRE));
  if (moved > 0)
    nex_info ("lame duck: %d workloads moved to other nodes", moved);
  if (live_workloads (b, NULL, &list, &n, NULL) == 0)
    {
      pthread_mutex_lock (&b->lock);
      if (b->serving)
        for (size_t i = 0; i < n; i++)
          nex_supervisor_stop (node->sup, list[i].id, grace_ms);
      pthread_mutex_unlock (&b->lock);
      release_list (list, n);
    }
  int64_t deadline = nex_clock_mono_ms () + grace_ms + DRAIN_SLACK_MS;
  for (;;)
    {
      pthread_mutex_lock (&b->lock);
      int stopping = b->stopping;
      pthread_mutex_unlock (&b->lock);
      if (stopping)
        return NULL;
      if (live_workloads (b, NULL, &list, &n, NULL) == 0)
        {
          release_list (list, n);
          if (n == 0)
            break;
        }
      if (nex_clock_mono_ms () >= deadline)
        {
          nex_warn ("lame duck: workloads still live after the grace period; shutting down anyway");
          break;
        }
      usleep (100 * 1000);
    }
  nex_info ("lame duck: drained; shutting down");
  kill (getpid (), SIGTERM);
  return NULL;
}

static void
handle_lameduck (request_t *r)
{
  nex_nats_t *b = r->b;
  nex_node_t *node = b->node;
  int was = __atomic_exchange_n (&node->lameduck, 1, __ATOMIC_SEQ_CST);
  if (!was)
    {
      nex_info ("lame duck: requested over NATS");
      nex_node_emit (node, "node_entered_lameduck", NULL, NULL);
      pthread_mutex_lock (&b->lock);
      if (!b->drainer_started && pthread_create (&b->drainer, NULL, drain_main, b) == 0)
        b->drainer_started = 1;
      pthread_mutex_unlock (&b->lock);
    }
  reply (r, "lameduck", json_pack ("{s:s, s:b}", "node_id", node->id, "success", 1), NULL);
}

int
nex_nats_auction_matches (const json_t *tags, json_t *body)
{
  const char *arch = json_string_value (json_object_get (body, "arch"));
  const char *os = json_string_value (json_object_get (body, "os"));
  if (arch && strcasecmp (arch, json_string_value (json_object_get (tags, "nex.arch"))) != 0)
    return 0;
  if (os && strcasecmp (os, "linux") != 0)
    return 0;
  json_t *sandboxed = json_object_get (body, "sandboxed");
  if (json_is_false (sandboxed))
    return 0; /* every workload here runs sandboxed */
  const char *key;
  json_t *want;
  json_object_foreach (json_object_get (body, "tags"), key, want)
  {
    const char *have = json_string_value (json_object_get (tags, key));
    if (have == NULL || !json_is_string (want) || strcasecmp (have, json_string_value (want)) != 0)
      return 0;
  }
  size_t i;
  json_t *t;
  json_array_foreach (json_object_get (body, "workload_types"), i, t)
  {
    if (!json_is_string (t) || strcmp (json_string_value (t), "native") != 0)
      return 0;
  }
  return 1;
}

static void
handle_auction (request_t *r)
{
  cleanup_json json_t *body = parse_body (r, "auction", 1);
  if (body == NULL)
    return;
  cleanup_json json_t *tags = nex_nats_tags (r->b);
  if (!nex_nats_auction_matches (tags, body) || __atomic_load_n (&r->b->node->lameduck, __ATOMIC_SEQ_CST))
    return;
  /* A member of a cluster also checks the cluster's requirements (driver, free memory and CPU) and bids with its
   * heartbeat document, which the placement rule compares (cluster/placement.c). */
  nex_cluster_t *cluster = __atomic_load_n (&r->b->node->cluster, __ATOMIC_ACQUIRE);
  json_t *bid = cluster ? nex_cluster_bid (cluster, body) : NULL;
  if (cluster && bid == NULL)
    return;
  json_t *d = ping_data (r->b, running_count (r->b));
  if (bid)
    json_object_set_new (d, "cluster", bid);
  reply (r, "auction", d, NULL);
}

/* --- dispatch ------------------------------------------------------------------------------------------------- */

typedef void (*handler_t) (request_t *r);

typedef struct route
{
  const char *subject; /* the subject, or its prefix when PER_NODE */
  int per_node;        /* the subject is SUBJECT.<node id> */
  handler_t handler;
  int min_tokens, max_tokens;
} route_t;

static const route_t routes[] = {
  { "$NEX.PING", 0, handle_ping, 2, 2 },         { "$NEX.PING", 1, handle_ping, 3, 3 },
  { "$NEX.INFO.*", 1, handle_info, 4, 4 },       { "$NEX.DEPLOY.*", 1, handle_deploy, 4, 4 },
  { "$NEX.STOP.*", 1, handle_stop, 4, 4 },       { "$NEX.WPING.>", 0, handle_wping, 3, 4 },
  { "$NEX.LAMEDUCK", 1, handle_lameduck, 3, 3 }, { "$NEX.AUCTION", 0, handle_auction, 2, 2 },
};

static void
on_message (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  const nex_nats_binding_t *binding = closure;
  const route_t *route = binding->route;
  nex_nats_t *b = binding->b;
  request_t r = { .b = b, .msg = msg, .subject = natsMsg_GetSubject (msg) };
  r.toks = nex_xstrdup (r.subject);
  for (char *save = NULL, *t = strtok_r (r.toks, ".", &save); t; t = strtok_r (NULL, ".", &save))
    {
      if (r.n_tokens == (int)(sizeof r.tokens / sizeof r.tokens[0]))
        {
          r.n_tokens++;
          break;
        }
      r.tokens[r.n_tokens++] = t;
    }
  pthread_mutex_lock (&b->lock);
  int serving = b->serving;
  b->inflight += serving;
  pthread_mutex_unlock (&b->lock);
  if (!serving)
    ; /* shutting down: nothing may reach the supervisor any more */
  else if (r.n_tokens < route->min_tokens || r.n_tokens > route->max_tokens)
    {
      if (route->handler != handle_wping)
        reply (&r, "ping", NULL, "malformed subject");
    }
  else
    route->handler (&r);
  if (serving)
    {
      pthread_mutex_lock (&b->lock);
      if (--b->inflight == 0)
        pthread_cond_broadcast (&b->cond);
      pthread_mutex_unlock (&b->lock);
    }
  free (r.toks);
  natsMsg_Destroy (msg);
}

int
nex_nats_control_subscribe (nex_nats_t *b, nex_error_t *err)
{
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
    {
      cleanup_free char *subject = routes[i].per_node ? nex_xasprintf ("%s.%s", routes[i].subject, b->node_token)
                                                      : nex_xstrdup (routes[i].subject);
      natsSubscription *sub = NULL;
      b->bindings[b->n_subs] = (nex_nats_binding_t){ .b = b, .route = &routes[i] };
      natsStatus s = natsConnection_Subscribe (&sub, b->nc, subject, on_message, &b->bindings[b->n_subs]);
      if (s != NATS_OK)
        return nex_error_set (err, NEX_ERR_SYSTEM, "nats: subscribe to %s: %s", subject, natsStatus_GetText (s));
      b->subs[b->n_subs++] = sub;
    }
  return 0;
}
