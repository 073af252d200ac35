/* SPDX-License-Identifier: Apache-2.0 */
/* recover.c — what the supervisor does at node start, before its thread runs: workloads outlive nexd, so a
 * starting nexd re-attaches to every environment the registry records as live (dialing its endpoint; the agent
 * answers with its state), fails those whose environment is gone or cannot be proven to be theirs, re-queues
 * workloads still pending, and removes what a crash mid-deploy or mid-teardown left on the host (run dirs and
 * cgroups no live entry owns).
 *
 * A recorded pid alone proves nothing (it may have been reused since): an environment is re-adopted only when the
 * process has the recorded start time and sits in the workload's cgroup, and a lost one is cleaned up through
 * its cgroup, never by signalling the recorded pid. */
#include "server/supervisor-internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/drivers/cgroup.h"
#include "server/drivers/proc.h"
#include "server/log.h"

/* Whether the process recorded for W is still W's sandbox: it exists, it started when the record says (a pid alone
 * may have been reused by an unrelated process since), and it sits in W's cgroup.  NULL when it is; otherwise
 * why not (caller frees). */
static char *
sandbox_identity_problem (nex_supervisor_t *sup, const nex_workload_t *w)
{
  if (w->pid <= 0 || w->endpoint == NULL)
    return nex_xstrdup ("nexd stopped before the sandbox was recorded");
  int64_t started = nex_proc_start_time ((pid_t)w->pid);
  if (started < 0)
    return nex_xasprintf ("its root process %lld is gone", (long long)w->pid);
  if (w->agent_start > 0 && started != w->agent_start)
    return nex_xasprintf ("pid %lld now belongs to another process (started at tick %lld, not %lld)", (long long)w->pid,
                          (long long)started, (long long)w->agent_start);
  if (sup->node->cgroups && nex_cgroups_holds (sup->node->cgroups, w->id, (pid_t)w->pid) != 1)
    return nex_xasprintf ("pid %lld is not in the workload's cgroup", (long long)w->pid);
  return NULL;
}

/* Everything a sandbox of workload ID may have left on the host, when no live entry owns it: processes (killed
 * through its cgroup, which holds every process the sandbox ever had) and the cgroup, then the run dir. */
static void
remove_leftovers (nex_supervisor_t *sup, const char *id, const nex_driver_t *d)
{
  cleanup_error nex_error_t err = NULL;
  if (sup->node->cgroups && nex_cgroups_destroy (sup->node->cgroups, id, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: leftover cgroup", id);
  nex_instance_t inst = { .run_dir = nex_xasprintf ("%s/%s", sup->node->run_dir, id) };
  nex_driver_destroy (d ? d : &nex_driver_sandbox, &inst, NULL);
  nex_instance_release (&inst);
}

/* After recovery: run dirs and cgroups of this node's workloads that no live entry owns are what a crash
 * mid-deploy (or mid-teardown) left; they go.  Cgroups under the shared `nex` parent that name no workload of
 * this registry may belong to another node on the same host, and are left alone. */
static void
cleanup_leftovers (nex_supervisor_t *sup)
{
  cleanup_dir DIR *dir = opendir (sup->node->run_dir);
  struct dirent *de;
  while (dir && (de = readdir (dir)) != NULL)
    if (nex_id_valid (de->d_name) && nex_sup_entry_find (sup, de->d_name) == NULL)
      {
        nex_info ("workload %s: removing a half-created or abandoned sandbox", de->d_name);
        remove_leftovers (sup, de->d_name, NULL);
      }
  if (sup->node->cgroups == NULL)
    return;
  char **names = nex_cgroups_list (sup->node->cgroups);
  for (char **name = names; *name; name++)
    {
      nex_workload_t w = { 0 };
      if (nex_sup_entry_find (sup, *name) == NULL && nex_registry_workload_get (sup->node->reg, *name, &w, NULL) == 0)
        {
          nex_info ("workload %s: removing its leftover cgroup", *name);
          remove_leftovers (sup, *name, nex_driver_find (w.driver));
        }
      nex_workload_release (&w);
      free (*name);
    }
  free (names);
}

void
nex_sup_recover (nex_supervisor_t *sup)
{
  nex_workload_t *list = NULL;
  size_t n = 0;
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_workload_list (sup->node->reg, NULL, &list, &n, &err) < 0)
    {
      nex_log_error (NEX_LOG_ERROR, err, "recovery: cannot list workloads");
      return;
    }
  for (size_t i = 0; i < n; i++)
    {
      nex_workload_t *w = &list[i];
      if (w->state == NEX_STATE_PENDING)
        nex_supervisor_deploy (sup, w->id);
      else if (w->state == NEX_STATE_STARTING || w->state == NEX_STATE_RUNNING || w->state == NEX_STATE_PAUSED)
        {
          const nex_driver_t *d = nex_driver_find (w->driver);
          cleanup_free char *problem = d ? sandbox_identity_problem (sup, w) : nex_xstrdup ("unknown driver");
          cleanup_error nex_error_t aerr = NULL;
          nex_sup_entry_t *e = NULL;
          if (problem == NULL)
            {
              nex_instance_t inst = { .pid = (pid_t)w->pid,
                                      .endpoint = nex_xstrdup (w->endpoint),
                                      .run_dir = nex_xasprintf ("%s/%s", sup->node->run_dir, w->id) };
              e = nex_sup_entry_attach (sup, w->id, d, &inst, &aerr);
              nex_instance_release (&inst);
            }
          if (e)
            {
              nex_info ("workload %s: re-attached to its sandbox (pid %d)", w->id, (int)w->pid);
              /* What the agent sends again of the output this node stored before it stopped is skipped. */
              cleanup_error nex_error_t oerr = NULL;
              if (nex_registry_output_stored (sup->node->reg, w->id, e->out_have, &oerr) < 0)
                nex_log_error (NEX_LOG_WARN, oerr, "workload %s: how much of its output is stored", w->id);
              memcpy (e->out_line_end, e->out_have, sizeof e->out_line_end);
              nex_sup_attach_console (sup, e);
              /* A paused workload stays frozen: its agent answers once it is resumed (a sandbox's connection
               * waits in the socket's backlog; a VM's greeting is sent then). */
              e->paused = w->state == NEX_STATE_PAUSED;
              e->start_sent |= e->paused; /* it ran: a resume may thaw it */
              if (d->stream_endpoint && e->paused)
                e->greet_deferred = 1;
              else if (d->stream_endpoint)
                nex_sup_greet (sup, e);
            }
          else
            {
              cleanup_free char *why
                  = nex_xasprintf ("its sandbox was lost while nexd was down: %s", problem ? problem
                                                                                   : aerr  ? aerr->msg
                                                                                           : "unknown");
              /* Never signal the recorded pid itself: it may be someone else's now.  The cgroup names only the
               * sandbox's own processes. */
              remove_leftovers (sup, w->id, d);
              nex_sup_fail_workload (sup, w->id, why);
            }
        }
      nex_workload_release (w);
    }
  free (list);
  cleanup_leftovers (sup);
}
