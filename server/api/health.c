/* SPDX-License-Identifier: Apache-2.0 */
/* api/health.c — GET /healthz (the process serves HTTP) and GET /readyz (it can do its job: the registry answers
 * and the supervisor runs), for load balancers and orchestrators.  Both need no token (auth.h) and say little. */
#include "server/api/api.h"

static int
healthz (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  res->body = json_pack ("{s:s}", "status", "ok");
  return 0;
}

static int
readyz (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  int64_t counts[NEX_STATE__COUNT];
  if (req->node->sup == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "the supervisor is not running");
  if (nex_registry_count_by_state (req->node->reg, counts, err) < 0)
    {
      /* The registry's own message is for the log; the prober needs the verdict. */
      nex_error_free (err);
      return nex_error_set (err, NEX_ERR_UNAVAILABLE, "the registry does not answer");
    }
  res->body = json_pack ("{s:s}", "status", "ready");
  return 0;
}

const nex_api_route_t nex_api_health_routes[] = {
  { "GET", "/healthz", healthz, 0 },
  { "GET", "/readyz", readyz, 0 },
  { NULL, NULL, NULL, 0 },
};
