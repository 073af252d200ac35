/* SPDX-License-Identifier: Apache-2.0 */
/* event.h — the one constructor of Nex's events: CloudEvents 1.0 in their JSON form.
 *
 * Every event Nex reports (stored in the registry, later streamed over websockets and NATS) is built here, so
 * they all carry the same envelope: specversion "1.0", a fresh id, source "/nex/nodes/<node id>", type (a short
 * name such as "workload_started"), subject (the workload id, when about one), time (RFC 3339),
 * datacontenttype "application/json" and data (an object). */
#ifndef NEX_EVENT_H
#define NEX_EVENT_H

#include <jansson.h>

/* Builds an event.  SUBJECT may be NULL; DATA (an object, may be NULL for {}) is stolen.  New reference. */
json_t *nex_event_new (const char *node_id, const char *type, const char *subject, json_t *data);

#endif
