/* SPDX-License-Identifier: Apache-2.0 */
/* api/wait.c — GET /v1/workloads/{id}/wait: answers when the workload reaches a state, without polling.
 *
 * ?state= names one or more states (comma-separated) or `final` (exited, failed or stopped: the default);
 * ?timeout_s= bounds the wait (default 60, at most 3600; 0 looks once).  The answer is the workload (200) as soon
 * as it is in one of the states; 408 when the time is up first; 409 when it ended in another state (it will
 * never get there).  While it waits the request is parked (api.h): it holds no worker thread, so any number of
 * waiters leave the API responsive. */
#include "server/api/api.h"

#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/id.h"

#define DEFAULT_TIMEOUT_S 60
#define MAX_TIMEOUT_S 3600

/* Parses ?state= into WANTED (one flag per nex_state_t). */
static int
parse_states (const nex_api_request_t *req, int wanted[NEX_STATE__COUNT], nex_error_t *err)
{
  const char *v = nex_api_query (req, "state");
  memset (wanted, 0, NEX_STATE__COUNT * sizeof *wanted);
  if (v == NULL || strcmp (v, "final") == 0)
    {
      wanted[NEX_STATE_EXITED] = wanted[NEX_STATE_FAILED] = wanted[NEX_STATE_STOPPED] = 1;
      return 0;
    }
  cleanup_free char *copy = nex_xstrdup (v);
  char *save = NULL;
  int any = 0;
  for (char *tok = strtok_r (copy, ",", &save); tok; tok = strtok_r (NULL, ",", &save))
    {
      nex_state_t s;
      if (nex_state_parse (tok, &s, NULL) < 0)
        return nex_error_field (err, "state", "unknown state `%s` (use %s)", tok,
                                "pending, starting, running, exited, failed, stopped or final");
      wanted[s] = any = 1;
    }
  if (!any)
    return nex_error_field (err, "state", "names no state");
  return 0;
}

static int
workload_wait (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  int wanted[NEX_STATE__COUNT];
  long long timeout_s;
  if (parse_states (req, wanted, err) < 0
      || nex_api_query_int (req, "timeout_s", 0, MAX_TIMEOUT_S, DEFAULT_TIMEOUT_S, &timeout_s, err) < 0)
    return -1;
  const char *id = req->params[0];
  nex_workload_t w = { 0 };
  if (nex_api_workload_load (req, &w, err) < 0)
    return -1;
  int r = 0;
  if (wanted[w.state])
    res->body = nex_workload_to_json (&w);
  else if (nex_state_is_final (w.state))
    r = nex_error_set (err, NEX_ERR_CONFLICT, "workload `%s` ended %s: it will not reach the state waited for", id,
                       nex_state_name (w.state));
  else if (req->timed_out || timeout_s == 0)
    r = nex_error_set (err, NEX_ERR_TIMEOUT, "workload `%s` is still %s after %lld s", id, nex_state_name (w.state),
                       timeout_s);
  else
    {
      snprintf (res->park_key, sizeof res->park_key, "%s", w.id);
      res->park_ms = timeout_s * 1000;
    }
  nex_workload_release (&w);
  return r;
}

const nex_api_route_t nex_api_wait_routes[] = {
  { "GET", "/v1/workloads/{id}/wait", workload_wait, 0 },
  { NULL, NULL, NULL, 0 },
};
