/* SPDX-License-Identifier: Apache-2.0 */
/* supervisor-lease.c — the leases of restartable cluster workloads (see supervisor-internal.h, and common/wire.h
 * "Leases" for the agent's side).
 *
 * A workload that the cluster may run elsewhere when this node goes silent (it carries the cluster key label and
 * its restart policy is not `never`) must stop when this node can no longer say it is alive: otherwise a nexd
 * killed with SIGKILL, or cut off from NATS, leaves a copy running beside the one another node started.  So its
 * agent holds a lease that only nexd renews: every LEASE_RENEW_MS the supervisor sends each such agent LEASE
 * {ttl_ms}, the time left until node->lease_until, which the cluster moves forward each time it hears this node's
 * own heartbeat (cluster/directory.c).  A nexd that is gone renews nothing, a nexd that does not hear itself
 * renews up to where it last heard itself: either way the agent ends the workload at that point, which is before
 * the other nodes can declare this one dead (ARCHITECTURE.md, "Cluster", has the bound). */
#include "server/supervisor-internal.h"

#include <string.h>

#include "common/cleanup.h"
#include "server/clock.h"
#include "server/cluster/cluster.h"
#include "server/log.h"

#define LEASE_RENEW_MS 500

void
nex_sup_lease_init (nex_supervisor_t *sup, nex_sup_entry_t *e)
{
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_registry_workload_get (sup->node->reg, e->id, &w, NULL) < 0)
    return;
  e->leased = json_object_get (w.labels, NEX_CLUSTER_KEY_LABEL) != NULL && w.restart_policy != NEX_RESTART_NEVER;
  e->lease_at = e->leased ? nex_clock_mono_ms () : 0;
}

void
nex_sup_lease_send (nex_supervisor_t *sup, nex_sup_entry_t *e, int64_t now)
{
  int64_t until = __atomic_load_n (&sup->node->lease_until, __ATOMIC_SEQ_CST);
  /* Nothing to renew with (the node has not heard itself lately), or no agent to hear it (the end, or a re-attach
   * still waiting for the agent's answer): the lease runs down. */
  if (!e->leased || until <= now || e->conn < 0 || e->final || e->resyncing)
    return;
  cleanup_json json_t *msg = json_pack ("{s:I}", "ttl_ms", (json_int_t)(until - now));
  cleanup_error nex_error_t err = NULL;
  if (nex_wire_send_json (e->conn, NEX_WIRE_LEASE, 0, msg, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: cannot renew its lease", e->id);
}

void
nex_sup_lease_renew (nex_supervisor_t *sup, int64_t now)
{
  for (nex_sup_entry_t *e = sup->entries; e; e = e->next)
    {
      if (!e->leased || e->lease_at == 0 || now < e->lease_at)
        continue;
      e->lease_at = now + LEASE_RENEW_MS;
      /* A frozen agent reads nothing: renewals would only fill its socket.  Its lease cannot end while it is
       * frozen either (it does not run); resuming renews it first (supervisor.c's do_pause). */
      if (!e->paused)
        nex_sup_lease_send (sup, e, now);
    }
}
