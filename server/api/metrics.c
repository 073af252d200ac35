/* SPDX-License-Identifier: Apache-2.0 */
/* api/metrics.c — GET /metrics: the node's Prometheus metrics (server/metrics.h), as text format 0.0.4.  Needs
 * scope read like any other read (auth.h); Prometheus sends the token with `authorization: {credentials: ...}`. */
#include "server/api/api.h"

static int
metrics_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_metrics_gauges_t g;
  nex_api_gauges (req->api, &g);
  res->text = nex_metrics_render (req->node, &g);
  res->content_type = "text/plain; version=0.0.4; charset=utf-8";
  return 0;
}

const nex_api_route_t nex_api_metrics_routes[] = {
  { "GET", "/metrics", metrics_get, 0 },
  { NULL, NULL, NULL, 0 },
};
