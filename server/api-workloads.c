/* api-workloads.c — routes about workloads: deploy (through deploy.c, shared with every front door), list,
 * inspect, stop, logs. */
#include "server/api.h"

#include <string.h>

#include <microhttpd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/deploy.h"
#include "server/id.h"
#include "server/secure.h"
#include "server/supervisor.h"

/* Loads the workload named by the route's {id}; NEX_ERR_NOT_FOUND for a malformed or unknown id. */
static int
load (nex_api_request_t *req, nex_workload_t *w, nex_error_t *err)
{
  const char *id = req->params[0];
  if (!nex_id_valid (id))
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no workload with id `%s`", id);
  return nex_registry_workload_get (req->node->reg, id, w, err);
}

static int
workload_create (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_workload_t w = { 0 };
  if (nex_deploy_submit (req->node, req->body, &w, err) < 0)
    return -1;
  res->status = 202;
  res->body = nex_workload_to_json (&w);
  res->location = nex_xasprintf ("/v1/workloads/%s", w.id);
  nex_workload_release (&w);
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
  nex_workload_t *list = NULL;
  size_t n = 0;
  if (nex_registry_workload_list (req->node->reg, &f, &list, &n, err) < 0)
    return -1;
  json_t *arr = json_array ();
  for (size_t i = 0; i < n; i++)
    {
      json_array_append_new (arr, nex_workload_to_json (&list[i]));
      nex_workload_release (&list[i]);
    }
  free (list);
  res->body = json_pack ("{s:o, s:I}", "workloads", arr, "count", (json_int_t) n);
  return 0;
}

static int
workload_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_workload_t w = { 0 };
  if (load (req, &w, err) < 0)
    return -1;
  json_t *history = nex_registry_workload_history (req->node->reg, w.id, err);
  if (history == NULL)
    {
      nex_workload_release (&w);
      return -1;
    }
  res->body = nex_workload_to_json (&w);
  json_object_set_new (res->body, "history", history);
  nex_workload_release (&w);
  return 0;
}

static int
workload_stop (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  long long grace_s;
  if (nex_api_query_int (req, "grace_s", 0, 3600, req->node->cfg->stop_grace_s, &grace_s, err) < 0)
    return -1;
  nex_workload_t w = { 0 };
  if (load (req, &w, err) < 0)
    return -1;
  /* A workload launched with a JWT is stopped only with a fresh one from its issuer (secure.h). */
  if (!nex_state_is_final (w.state)
      && nex_secure_check_stop (req->node, w.id,
                                MHD_lookup_connection_value (req->conn, MHD_HEADER_KIND, "Nex-Workload-Jwt"), err)
             < 0)
    {
      nex_workload_release (&w);
      return -1;
    }
  /* Already ended: nothing to do, and saying so with 200 keeps DELETE idempotent. */
  res->status = nex_state_is_final (w.state) ? 200 : 202;
  if (res->status == 202)
    nex_supervisor_stop (req->node->sup, w.id, grace_s * 1000);
  res->body = nex_workload_to_json (&w);
  nex_workload_release (&w);
  return 0;
}

static int
workload_logs (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  long long tail;
  if (nex_api_query_int (req, "tail", 1, 1000000000, 0, &tail, err) < 0)
    return -1;
  nex_workload_t w = { 0 };
  if (load (req, &w, err) < 0)
    return -1;
  json_t *lines = nex_registry_log_tail (req->node->reg, w.id, tail, err);
  if (lines)
    res->body = json_pack ("{s:s, s:o, s:I}", "workload_id", w.id, "lines", lines, "dropped",
                           (json_int_t) w.log_dropped);
  nex_workload_release (&w);
  return lines ? 0 : -1;
}

const nex_api_route_t nex_api_workload_routes[] = {
  { "POST", "/v1/workloads", workload_create, 1 },
  { "GET", "/v1/workloads", workload_list, 0 },
  { "GET", "/v1/workloads/{id}", workload_get, 0 },
  { "DELETE", "/v1/workloads/{id}", workload_stop, 0 },
  { "GET", "/v1/workloads/{id}/logs", workload_logs, 0 },
  { NULL, NULL, NULL, 0 },
};
