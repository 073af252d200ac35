/* SPDX-License-Identifier: Apache-2.0 */
/* nats/off.c — the NATS bridge's functions in a build without nats.c (configure --disable-nats): a node that is
 * asked to join NATS refuses to start rather than silently running alone. */
#include "server/nats/bridge.h"

nex_nats_t *
nex_nats_start (nex_node_t *node, nex_error_t *err)
{
  nex_error_field (err, "nats", "this nexd was built without NATS support (configure --enable-nats)");
  return NULL;
}

int
nex_nats_serve (nex_nats_t *b, nex_error_t *err)
{
  return 0;
}

void
nex_nats_quiesce (nex_nats_t *b)
{
}

void
nex_nats_close_if_down (nex_nats_t *b)
{
}

void
nex_nats_close (nex_nats_t *b)
{
}

void
nex_nats_publish_event (nex_nats_t *b, const json_t *event, const char *namespace_)
{
}

void
nex_nats_publish_logs (nex_nats_t *b, const char *id, const nex_log_line_t *lines, size_t n)
{
}

json_t *
nex_nats_status (nex_nats_t *b)
{
  return json_null ();
}
