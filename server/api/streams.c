/* SPDX-License-Identifier: Apache-2.0 */
/* api/streams.c — the websocket forms of GET /v1/workloads/{id}/logs and GET /v1/events, and the table of every
 * websocket route (the interactive exec session's opener lives with the other exec code, in api/sandbox.c).
 *
 * A request to either path that asks to be upgraded to a websocket (and any request with ?follow=1) comes here
 * instead of to the plain route: the opener checks it like any request (unknown workload 404, bad parameters
 * 422, all as problem JSON before the upgrade) and says what to stream; api.c answers the handshake and
 * api/ws.c streams.  ?follow=1 without a websocket handshake is answered 426: following needs a stream. */
#include "server/api/api.h"

#include <string.h>

#include "common/cleanup.h"
#include "server/id.h"

static int
open_logs (nex_api_request_t *req, nex_ws_stream_t *out, nex_error_t *err)
{
  long long tail;
  if (nex_api_query_int (req, "tail", 1, 1000000000, INT64_MAX, &tail, err) < 0)
    return -1;
  nex_workload_t w = { 0 };
  if (nex_api_workload_load (req, &w, err) < 0)
    return -1;
  out->kind = NEX_WS_LOGS;
  memcpy (out->workload_id, w.id, sizeof out->workload_id);
  out->tail = tail;
  nex_workload_release (&w);
  return 0;
}

/* Copies filter parameter KEY (at most SIZE - 1 bytes) into OUT. */
static int
filter_param (const nex_api_request_t *req, const char *key, char *out, size_t size, nex_error_t *err)
{
  const char *v = nex_api_query (req, key);
  if (v == NULL)
    return 0;
  if (strlen (v) >= size || *v == '\0')
    return nex_error_field (err, key, "must be 1 to %zu characters", size - 1);
  memcpy (out, v, strlen (v) + 1);
  return 0;
}

static int
open_events (nex_api_request_t *req, nex_ws_stream_t *out, nex_error_t *err)
{
  out->kind = NEX_WS_EVENTS;
  out->filter.kinds = NEX_BUS_EVENT;
  if (filter_param (req, "namespace", out->filter.namespace_, sizeof out->filter.namespace_, err) < 0
      || filter_param (req, "type", out->filter.type, sizeof out->filter.type, err) < 0
      || filter_param (req, "workload", out->filter.workload_id, sizeof out->filter.workload_id, err) < 0)
    return -1;
  if (out->filter.workload_id[0] && !nex_id_valid (out->filter.workload_id))
    return nex_error_field (err, "workload", "must be a workload id");
  /* The live stream filters one namespace at most: a token limited to some must name one of them. */
  if (req->who && req->who->namespaces)
    {
      if (out->filter.namespace_[0] == '\0')
        return nex_error_set (err, NEX_ERR_FORBIDDEN, "this token is limited to some namespaces: add ?namespace=");
      if (nex_api_check_namespace (req, out->filter.namespace_, err) < 0)
        return -1;
    }
  return 0;
}

const nex_api_ws_route_t nex_api_ws_routes[] = {
  { "/v1/workloads/{id}/logs", open_logs, 0 },
  { "/v1/events", open_events, 0 },
  { "/v1/workloads/{id}/exec", nex_api_exec_open, 1 },
  { NULL, NULL, 0 },
};
