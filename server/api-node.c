/* api-node.c — routes about the node itself: GET /v1/node. */
#include "server/api.h"

#include "autoconfig.h"
#include "common/cleanup.h"
#include "server/clock.h"
#include "server/driver.h"
#include "server/nats-bridge.h"

static int
node_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_node_t *node = req->node;
  int64_t counts[NEX_STATE__COUNT] = { 0 };
  if (nex_registry_count_by_state (node->reg, counts, err) < 0)
    return -1;
  json_t *by_state = json_object ();
  int64_t total = 0;
  for (int s = 0; s < NEX_STATE__COUNT; s++)
    {
      json_object_set_new (by_state, nex_state_name ((nex_state_t) s), json_integer (counts[s]));
      total += counts[s];
    }
  json_object_set_new (by_state, "total", json_integer (total));

  json_t *drivers = json_array ();
  for (const nex_driver_t *const *d = nex_driver_all (); *d; d++)
    {
      cleanup_free char *reason = NULL;
      int ok = (*d)->probe (*d, &reason);
      json_array_append_new (drivers, json_pack ("{s:s, s:b, s:s?}", "name", (*d)->name, "available", ok, "reason",
                                                 reason));
    }
  char started[NEX_CLOCK_RFC3339_LEN];
  res->body = json_pack ("{s:s, s:s, s:s, s:s, s:f, s:s, s:o, s:o}", "id", node->id, "name", node->hostname,
                         "version", PACKAGE_VERSION, "started_at",
                         nex_clock_format (node->started_at, started, sizeof started), "uptime_s",
                         (double) (nex_clock_mono_ms () - node->started_mono) / 1000.0, "default_driver",
                         node->cfg->default_driver, "drivers", drivers, "workloads", by_state);
  json_object_set_new (res->body, "public_xkey", json_string (node->identity.xkey.public_text));
  json_object_set_new (res->body, "lameduck", json_boolean (__atomic_load_n (&node->lameduck, __ATOMIC_SEQ_CST)));
  json_object_set_new (res->body, "nats", node->nats ? nex_nats_status (node->nats) : json_null ());
  return 0;
}

const nex_api_route_t nex_api_node_routes[] = {
  { "GET", "/v1/node", node_get, 0 },
  { NULL, NULL, NULL, 0 },
};
