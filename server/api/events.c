/* SPDX-License-Identifier: Apache-2.0 */
/* api/events.c — GET /v1/events: the node's stored CloudEvents, oldest first, a page at a time.
 *
 * Pages are read with a cursor: each answer carries `next_cursor` (the position after its last event, or the
 * given cursor when it is empty) and `has_more`; passing next_cursor back reads on from there, so a client that
 * polls with it sees every event exactly once, in order (how `nex events -f` follows).  Cursors are opaque to
 * clients; today they are the registry's event positions in decimal. */
#include "server/api/api.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/id.h"

#define DEFAULT_LIMIT 100
#define MAX_LIMIT 1000

/* Parses the optional ?cursor= into *AFTER (0 when absent). */
static int
parse_cursor (const nex_api_request_t *req, int64_t *after, nex_error_t *err)
{
  const char *c = nex_api_query (req, "cursor");
  *after = 0;
  if (c == NULL)
    return 0;
  size_t n = strspn (c, "0123456789");
  if (n == 0 || n > 18 || c[n] != '\0')
    return nex_error_field (err, "cursor", "not a cursor this node gave out (use next_cursor of an earlier page)");
  *after = (int64_t)strtoll (c, NULL, 10);
  return 0;
}

static int
events_list (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  long long limit;
  nex_event_filter_t f = { .namespace_ = nex_api_query (req, "namespace"),
                           .workload_id = nex_api_query (req, "workload"),
                           .type = nex_api_query (req, "type") };
  if (nex_api_query_int (req, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT, &limit, err) < 0
      || parse_cursor (req, &f.after, err) < 0)
    return -1;
  f.limit = limit;
  if (f.workload_id && !nex_id_valid (f.workload_id))
    return nex_error_field (err, "workload", "must be a workload id");
  /* A token limited to some namespaces sees only events about their workloads. */
  if (f.namespace_ && nex_api_check_namespace (req, f.namespace_, err) < 0)
    return -1;
  f.namespaces = req->who ? req->who->namespaces : NULL;
  json_t *events;
  int64_t position;
  int more;
  if (nex_registry_event_list (req->node->reg, &f, &events, &position, &more, err) < 0)
    return -1;
  char cursor[24];
  snprintf (cursor, sizeof cursor, "%" PRId64, position);
  res->body = json_pack ("{s:o, s:s, s:b}", "events", events, "next_cursor", cursor, "has_more", more);
  return 0;
}

const nex_api_route_t nex_api_event_routes[] = {
  { "GET", "/v1/events", events_list, 0 },
  { NULL, NULL, NULL, 0 },
};
