/* SPDX-License-Identifier: Apache-2.0 */
/* api/workloads.c — routes about workloads: deploy (through deploy.c, shared with every front door), list,
 * inspect, stop, logs. */
#include "server/api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/api/cache.h"
#include "server/cluster/cluster.h"
#include "server/deploy.h"
#include "server/id.h"
#include "server/nats/secure.h"
#include "server/supervisor.h"

int
nex_api_workload_load (nex_api_request_t *req, nex_workload_t *w, nex_error_t *err)
{
  const char *id = req->params[0];
  if (!nex_id_valid (id))
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no workload with id `%s`", id);
  if (nex_registry_workload_get (req->node->reg, id, w, err) < 0)
    return -1;
  if (nex_api_check_namespace (req, w->namespace_, err) < 0)
    {
      nex_workload_release (w);
      return -1;
    }
  return 0;
}

/* The namespace a deploy request names ("default" when none; NULL when it is no string, which the validation
 * refuses anyway). */
static const char *
requested_namespace (const json_t *body)
{
  const json_t *ns = json_object_get (body, "namespace");
  if (ns == NULL || json_is_null (ns))
    return "default";
  return json_string_value (ns);
}

/* A deploy that names a node (or asks for one to be chosen): answered with the workload as the node that took it
 * shows it, plus `node`. */
static int
workload_place (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  if (req->node->cluster == NULL)
    return nex_error_field (err, json_object_get (req->body, "node") ? "node" : "placement",
                            "this node is not in a cluster (start nexd with --nats)");
  json_t *answer = NULL;
  if (nex_cluster_deploy (req->node->cluster, req->body, &answer, err) < 0)
    return -1;
  res->status = 202;
  res->body = answer;
  /* Where the workload can be read: on the node that runs it (its announced address, in this node's scheme). */
  const char *node = json_string_value (json_object_get (answer, "node"));
  const char *id = json_string_value (json_object_get (answer, "id"));
  cleanup_free char *api
      = node && strcmp (node, req->node->id) != 0 ? nex_cluster_api_of (req->node->cluster, node) : NULL;
  res->location = api ? nex_xasprintf ("%s://%s/v1/workloads/%s", req->node->cfg->tls_cert ? "https" : "http", api, id)
                      : nex_xasprintf ("/v1/workloads/%s", id);
  return 0;
}

static int
workload_create (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  /* A token limited to some namespaces deploys only there: checked before anything is stored. */
  const char *ns = requested_namespace (req->body);
  if (ns && nex_api_check_namespace (req, ns, err) < 0)
    return -1;
  /* `node` or `placement`: the cluster decides where it runs (cluster/cluster.h). */
  if (json_object_get (req->body, "node") || json_object_get (req->body, "placement"))
    return workload_place (req, res, err);
  nex_workload_t w = { 0 };
  if (nex_deploy_submit (req->node, req->body, &w, err) < 0)
    return -1;
  res->status = 202;
  res->body = nex_workload_to_json (&w);
  res->location = nex_xasprintf ("/v1/workloads/%s", w.id);
  nex_workload_release (&w);
  return 0;
}

#define LIST_DEFAULT_LIMIT 1000
#define LIST_MAX_LIMIT 1000

/* The cursor of the list position after W: "<created_at ms>_<id>" (opaque to clients). */
static char *
list_cursor (int64_t created, const char *id)
{
  return nex_xasprintf ("%lld_%s", (long long)created, id);
}

/* Parses ?cursor= into F's after_created/after_id (ID_BUF keeps the id). */
static int
parse_list_cursor (const nex_api_request_t *req, nex_workload_filter_t *f, char id_buf[NEX_ID_LEN + 1],
                   nex_error_t *err)
{
  const char *c = nex_api_query (req, "cursor");
  if (c == NULL)
    return 0;
  size_t digits = strspn (c, "0123456789");
  if (digits == 0 || digits > 18 || c[digits] != '_' || !nex_id_valid (c + digits + 1))
    return nex_error_field (err, "cursor", "not a cursor this node gave out (use next_cursor of an earlier page)");
  f->after_created = strtoll (c, NULL, 10);
  snprintf (id_buf, NEX_ID_LEN + 1, "%s", c + digits + 1);
  f->after_id = id_buf;
  return 0;
}

/* Parses every ?label=KEY=VALUE (or ?label=KEY: has the label) into MATCHES (KEYS holds the keys). */
static int
parse_label_filters (const nex_api_request_t *req, nex_workload_filter_t *f,
                     nex_label_match_t matches[NEX_WORKLOAD_FILTER_MAX_LABELS],
                     char keys[NEX_WORKLOAD_FILTER_MAX_LABELS][64], nex_error_t *err)
{
  const char *values[NEX_WORKLOAD_FILTER_MAX_LABELS + 1];
  size_t n = nex_api_query_all (req, "label", values, NEX_WORKLOAD_FILTER_MAX_LABELS + 1);
  if (n > NEX_WORKLOAD_FILTER_MAX_LABELS)
    return nex_error_field (err, "label", "at most %d label filters", NEX_WORKLOAD_FILTER_MAX_LABELS);
  for (size_t i = 0; i < n; i++)
    {
      const char *eq = strchr (values[i], '=');
      size_t klen = eq ? (size_t)(eq - values[i]) : strlen (values[i]);
      if (!nex_label_key_valid (values[i], klen))
        return nex_error_field (err, "label", "`label` takes KEY=VALUE (or KEY) with a valid label key");
      memcpy (keys[i], values[i], klen);
      keys[i][klen] = '\0';
      matches[i] = (nex_label_match_t){ .key = keys[i], .value = eq ? eq + 1 : NULL };
    }
  f->labels = matches;
  f->n_labels = n;
  return 0;
}

static int
workload_list (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_workload_filter_t f = { .namespace_ = nex_api_query (req, "namespace") };
  nex_state_t state;
  const char *s = nex_api_query (req, "state");
  if (s)
    {
      if (nex_state_parse (s, &state, err) < 0)
        {
          nex_error_free (err);
          return nex_error_field (err, "state", "unknown state `%s`", s);
        }
      f.state = &state;
    }
  long long limit;
  char after_id[NEX_ID_LEN + 1];
  nex_label_match_t matches[NEX_WORKLOAD_FILTER_MAX_LABELS];
  char keys[NEX_WORKLOAD_FILTER_MAX_LABELS][64];
  if (nex_api_query_int (req, "limit", 1, LIST_MAX_LIMIT, LIST_DEFAULT_LIMIT, &limit, err) < 0
      || parse_list_cursor (req, &f, after_id, err) < 0 || parse_label_filters (req, &f, matches, keys, err) < 0)
    return -1;
  f.limit = limit + 1; /* one more tells whether there are more */
  /* A token limited to some namespaces lists only those. */
  if (f.namespace_ && nex_api_check_namespace (req, f.namespace_, err) < 0)
    return -1;
  f.namespaces = req->who ? req->who->namespaces : NULL;
  nex_workload_t *list = NULL;
  size_t n = 0;
  if (nex_registry_workload_list (req->node->reg, &f, &list, &n, err) < 0)
    return -1;
  int more = n > (size_t)limit;
  size_t shown = more ? (size_t)limit : n;
  /* Written as text, not built as a json_t and dumped: a page of 1000 costs a third of that (jsontext.h). */
  nex_jsontext_t t = { 0 };
  nex_jsontext_open (&t, '{');
  nex_jsontext_key (&t, "workloads");
  nex_jsontext_open (&t, '[');
  for (size_t i = 0; i < shown; i++)
    nex_workload_write_json (&t, &list[i]);
  nex_jsontext_close (&t, ']');
  nex_jsontext_key (&t, "count");
  nex_jsontext_int (&t, (int64_t)shown);
  cleanup_free char *next = shown        ? list_cursor (list[shown - 1].created_at, list[shown - 1].id)
                            : f.after_id ? list_cursor (f.after_created, f.after_id)
                                         : list_cursor (0, "00000000-0000-0000-0000-000000000000");
  nex_jsontext_key (&t, "next_cursor");
  nex_jsontext_string (&t, next);
  nex_jsontext_key (&t, "has_more");
  nex_jsontext_bool (&t, more);
  nex_jsontext_close (&t, '}');
  nex_jsontext_raw (&t, "\n", 1);
  for (size_t i = 0; i < n; i++)
    nex_workload_release (&list[i]);
  free (list);
  res->text = nex_jsontext_steal (&t, &res->text_len);
  res->content_type = "application/json";
  return 0;
}

static int
workload_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  /* Read before the registry: the kept answer is served only while nothing was written since (api/cache.h). */
  uint64_t generation = nex_registry_generation (req->node->reg);
  cleanup_free char *ns = NULL;
  if (nex_id_valid (req->params[0])
      && nex_api_cache_get (nex_api_answers (req->api), req->params[0], generation, &res->text, &ns))
    {
      res->content_type = "application/json";
      return nex_api_check_namespace (req, ns, err);
    }
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_api_workload_load (req, &w, err) < 0)
    return -1;
  json_t *history = nex_registry_workload_history (req->node->reg, w.id, err);
  if (history == NULL)
    return -1;
  res->body = nex_workload_to_json (&w);
  json_object_set_new (res->body, "history", history);
  /* The same text api.c would send. */
  nex_jsontext_t t = { 0 };
  nex_jsontext_value (&t, res->body);
  nex_jsontext_raw (&t, "\n", 1);
  nex_api_cache_put (nex_api_answers (req->api), w.id, generation, t.data, w.namespace_);
  nex_jsontext_release (&t);
  return 0;
}

/* Not on this node (*ERR says so): in a cluster, the stop goes to the node that runs it (cluster/stop.c), and the
 * answer is the workload as that node listed it, with `node`.  -1 with *ERR otherwise. */
static int
stop_elsewhere (nex_api_request_t *req, nex_api_response_t *res, long long grace_s, nex_error_t *err)
{
  nex_cluster_t *c = req->node->cluster;
  if (c == NULL || (*err)->kind != NEX_ERR_NOT_FOUND || !nex_id_valid (req->params[0]))
    return -1;
  cleanup_error nex_error_t mine = *err;
  *err = NULL;
  int live = 0;
  const char *jwt = MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND, "Nex-Workload-Jwt");
  if (nex_cluster_stop_remote (c, req->params[0], grace_s, jwt, req->who ? req->who->namespaces : NULL, &res->body,
                               &live, err)
      < 0)
    {
      if ((*err)->kind == NEX_ERR_NOT_FOUND)
        {
          nex_error_free (err);
          *err = NEX_STEAL_PTR (mine); /* this node's own answer */
        }
      return -1;
    }
  res->status = live ? 202 : 200;
  return 0;
}

static int
workload_stop (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  long long grace_s;
  if (nex_api_query_int (req, "grace_s", 0, 3600, req->node->cfg->stop_grace_s, &grace_s, err) < 0)
    return -1;
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_api_workload_load (req, &w, err) < 0)
    return stop_elsewhere (req, res, grace_s, err);
  /* A workload launched with a JWT is stopped only with a fresh one from its issuer (secure.h). */
  if (!nex_state_is_final (w.state)
      && nex_secure_check_stop (req->node, w.id,
                                MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND, "Nex-Workload-Jwt"), err)
             < 0)
    return -1;
  /* Already ended: nothing to do, and saying so with 200 keeps DELETE idempotent. */
  res->status = nex_state_is_final (w.state) ? 200 : 202;
  if (res->status == 202)
    nex_supervisor_stop (req->node->sup, w.id, grace_s * 1000);
  res->body = nex_workload_to_json (&w);
  return 0;
}

static int
workload_logs (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  long long tail, after;
  if (nex_api_query_int (req, "tail", 1, 1000000000, 0, &tail, err) < 0
      || nex_api_query_int (req, "after", 0, INT64_MAX, -1, &after, err) < 0)
    return -1;
  nex_workload_t w = { 0 };
  if (nex_api_workload_load (req, &w, err) < 0)
    return -1;
  /* after=SEQ: the lines written since line SEQ (how followers poll), at most TAIL of them when given. */
  json_t *lines = after >= 0 ? nex_registry_log_after (req->node->reg, w.id, after, tail, err)
                             : nex_registry_log_tail (req->node->reg, w.id, tail, err);
  if (lines)
    res->body
        = json_pack ("{s:s, s:o, s:I}", "workload_id", w.id, "lines", lines, "dropped", (json_int_t)w.log_dropped);
  nex_workload_release (&w);
  return lines ? 0 : -1;
}

const nex_api_route_t nex_api_workload_routes[] = {
  { "POST", "/v1/workloads", workload_create, 1 },        { "GET", "/v1/workloads", workload_list, 0 },
  { "GET", "/v1/workloads/{id}", workload_get, 0 },       { "DELETE", "/v1/workloads/{id}", workload_stop, 0 },
  { "GET", "/v1/workloads/{id}/logs", workload_logs, 0 }, { NULL, NULL, NULL, 0 },
};
