/* SPDX-License-Identifier: Apache-2.0 */
/* supervisor-record.c — a workload's state transitions written to the registry, and reported as events; those
 * the registry could not write kept in order and written again.
 *
 * The supervisor's state machine lives in memory and must not stop when the registry cannot write: a full disk
 * (SQLITE_FULL, ENOSPC) refuses every write for as long as it lasts, and a transition that is only logged and
 * forgotten leaves the record wrong for good (a workload shown `starting` that runs, one shown `running` that
 * ended).  So a transition the registry refuses for a passing reason is kept, with its event, and written again
 * every RETRY_MS until it succeeds, in the order the transitions happened; later transitions of the same
 * workload queue behind it so that the history keeps its order.  A refusal that a retry cannot cure (leaving a
 * final state: NEX_ERR_CONFLICT, an unknown id) is logged and dropped as before.
 *
 * Supervisor thread only (recovery included, which runs before the thread starts). */
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"
#include "server/node.h"
#include "server/registry.h"
#include "server/supervisor-internal.h"
#include "server/net/net.h"

#define RETRY_MS 500

struct nex_sup_unrecorded
{
  char id[NEX_ID_LEN + 1];
  nex_state_change_t c; /* its strings are owned copies */
  char *type;           /* event type, or NULL */
  json_t *extra;        /* owned, or NULL */
  nex_sup_unrecorded_t *next;
};

static char *
dup_or_null (const char *s)
{
  return s ? nex_xstrdup (s) : NULL;
}

static void
unrecorded_free (nex_sup_unrecorded_t *u)
{
  free ((char *)u->c.reason);
  free ((char *)u->c.endpoint);
  free ((char *)u->c.digest);
  free (u->type);
  json_decref (u->extra);
  free (u);
}

typedef struct event_ctx
{
  nex_node_t *node;
  const char *type;
  const json_t *extra;
} event_ctx_t;

/* The event of a transition, from the workload as it left it (nex_registry_event_fn): its state, reason, exit
 * code and signal, with the caller's EXTRA merged in. */
static json_t *
build_event (const nex_workload_t *w, void *ctx)
{
  const event_ctx_t *ec = ctx;
  json_t *data = json_pack ("{s:s}", "state", nex_state_name (w->state));
  if (w->reason)
    json_object_set_new (data, "reason", json_string (w->reason));
  if (w->has_exit_code)
    json_object_set_new (data, "exit_code", json_integer (w->exit_code));
  if (w->exit_signal)
    json_object_set_new (data, "exit_signal", json_integer (w->exit_signal));
  if (ec->extra)
    json_object_update (data, (json_t *)ec->extra);
  return nex_node_event_new (ec->node, ec->type, w, data);
}

/* Writes C for ID and, in the same transaction, its event TYPE (NULL: none) with EXTRA (borrowed) merged into its
 * data; then publishes the event.  1 written, 0 refused for a reason that may pass (keep it), -1 refused for
 * good (QUIET: not logged). */
static int
record (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type, const json_t *extra,
        int quiet)
{
  cleanup_error nex_error_t err = NULL;
  event_ctx_t ec = { sup->node, type, extra };
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  cleanup_json json_t *ev = NULL;
  if (nex_registry_workload_transition_event (sup->node->reg, id, c, type ? build_event : NULL, &ec, &w, &ev, &err)
      == 0)
    {
      nex_info ("workload %s: %s%s%s", id, nex_state_name (c->state), c->reason ? ": " : "",
                c->reason ? c->reason : "");
      if (ev)
        nex_node_event_publish (sup->node, ev, &w);
      return 1;
    }
  int passing = err->kind == NEX_ERR_NO_SPACE || err->kind == NEX_ERR_SYSTEM;
  if (!quiet)
    nex_log_error (passing ? NEX_LOG_WARN : NEX_LOG_ERROR, err, "workload %s: cannot record state %s%s", id,
                   nex_state_name (c->state), passing ? " now; it will be written again" : "");
  return passing ? 0 : -1;
}

static int
has_unrecorded (const nex_supervisor_t *sup, const char *id)
{
  for (const nex_sup_unrecorded_t *u = sup->unrecorded; u; u = u->next)
    if (strcmp (u->id, id) == 0)
      return 1;
  return 0;
}

static void
keep (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type, json_t *extra)
{
  nex_sup_unrecorded_t *u = nex_xzalloc (sizeof *u);
  snprintf (u->id, sizeof u->id, "%s", id);
  u->c = *c;
  u->c.reason = dup_or_null (c->reason);
  u->c.endpoint = dup_or_null (c->endpoint);
  u->c.digest = dup_or_null (c->digest);
  u->type = dup_or_null (type);
  u->extra = extra;
  nex_sup_unrecorded_t **tail = &sup->unrecorded;
  while (*tail)
    tail = &(*tail)->next;
  *tail = u;
  if (sup->unrecorded_retry_at == 0)
    sup->unrecorded_retry_at = nex_clock_mono_ms () + RETRY_MS;
  nex_node_pause_logs (sup->node, sup->unrecorded_retry_at); /* state changes first */
}

void
nex_sup_transition (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type, json_t *extra)
{
  cleanup_json json_t *more = extra;
  /* What the workload printed before this change is stored before it: a reader that sees `exited` sees the
   * output too. */
  nex_sup_entry_t *e = nex_sup_entry_find (sup, id);
  if (e)
    nex_sup_output_flush (sup, e);
  /* A workload that ends gives its address, ports and rules back (nothing for one without a lease). */
  if (nex_state_is_final (c->state))
    nex_net_release (sup->node->net, id);
  if (has_unrecorded (sup, id))
    {
      keep (sup, id, c, type, NEX_STEAL_PTR (more));
      return;
    }
  int r = record (sup, id, c, type, more, 0);
  if (r == 0)
    keep (sup, id, c, type, NEX_STEAL_PTR (more));
}

int64_t
nex_sup_unrecorded_deadline (const nex_supervisor_t *sup)
{
  return sup->unrecorded ? sup->unrecorded_retry_at : 0;
}

void
nex_sup_unrecorded_retry (nex_supervisor_t *sup, int64_t now)
{
  if (sup->unrecorded == NULL || now < sup->unrecorded_retry_at)
    return;
  sup->unrecorded_retry_at = 0;
  /* In order; a workload whose transition failed again keeps its later ones for the next round. */
  char blocked[64][NEX_ID_LEN + 1];
  size_t n_blocked = 0;
  nex_sup_unrecorded_t **p = &sup->unrecorded;
  while (*p)
    {
      nex_sup_unrecorded_t *u = *p;
      int skip = 0;
      for (size_t i = 0; i < n_blocked && !skip; i++)
        skip = strcmp (blocked[i], u->id) == 0;
      int r = skip || n_blocked == sizeof blocked / sizeof blocked[0]
                  ? 0
                  : record (sup, u->id, &u->c, u->type, u->extra, 1);
      if (r == 0)
        {
          if (!skip && n_blocked < sizeof blocked / sizeof blocked[0])
            snprintf (blocked[n_blocked++], sizeof blocked[0], "%s", u->id);
          p = &u->next;
          continue;
        }
      *p = u->next;
      unrecorded_free (u);
    }
  if (sup->unrecorded)
    {
      sup->unrecorded_retry_at = now + RETRY_MS;
      nex_node_pause_logs (sup->node, sup->unrecorded_retry_at); /* state changes first */
    }
  else
    nex_info ("the registry is writable again: every state change kept meanwhile is recorded");
}

void
nex_sup_unrecorded_free (nex_supervisor_t *sup)
{
  while (sup->unrecorded)
    {
      nex_sup_unrecorded_t *u = sup->unrecorded;
      sup->unrecorded = u->next;
      nex_warn ("workload %s: state %s was never recorded (nexd stops)", u->id, nex_state_name (u->c.state));
      unrecorded_free (u);
    }
}
