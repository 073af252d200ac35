/* SPDX-License-Identifier: Apache-2.0 */
/* event.c — see event.h. */
#include "server/event.h"

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/id.h"

json_t *
nex_event_new (const char *node_id, const char *type, const char *subject, json_t *data)
{
  char id[37], ts[NEX_CLOCK_RFC3339_LEN];
  nex_id_new (id);
  cleanup_free char *source = nex_xasprintf ("/nex/nodes/%s", node_id);
  json_t *ev = json_pack ("{s:s, s:s, s:s, s:s, s:s, s:s}", "specversion", "1.0", "id", id, "source", source, "type",
                          type, "time", nex_clock_format (nex_clock_now_ms (), ts, sizeof ts), "datacontenttype",
                          "application/json");
  if (subject)
    json_object_set_new (ev, "subject", json_string (subject));
  json_object_set_new (ev, "data", data ? data : json_object ());
  return ev;
}
