/* deploy.c — see deploy.h.  Everything that can be checked before storing is checked here, so that a refused
 * request leaves no trace; what can only be known once the artifact is fetched (its digest) fails the workload
 * later, visibly, in the supervisor. */
#include "server/deploy.h"

#include <stdlib.h>

#include "common/cleanup.h"
#include "server/artifact.h"
#include "server/driver.h"
#include "server/supervisor.h"

int
nex_deploy_submit (nex_node_t *node, const json_t *request, nex_workload_t *out, nex_error_t *err)
{
  nex_workload_t w = { 0 };
  /* A node draining for shutdown (lame duck) takes nothing new, whichever door the request came through. */
  if (__atomic_load_n (&node->lameduck, __ATOMIC_SEQ_CST))
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "node is in lame duck mode and takes no new workloads");
  if (nex_workload_from_request (request, node->cfg->default_driver, &w, err) < 0)
    return -1;
  const nex_driver_t *d = nex_driver_find (w.driver);
  cleanup_free char *why = NULL;
  if (d == NULL)
    nex_error_field (err, "driver", "unknown driver `%s`", w.driver);
  else if (!d->probe (d, &why))
    nex_error_set (err, NEX_ERR_UNAVAILABLE, "driver `%s` is unavailable on this node: %s", d->name, why);
  else if (nex_artifact_precheck (w.artifact, err) == 0 && nex_registry_workload_insert (node->reg, &w, err) == 0)
    {
      nex_node_emit (node, "workload_deployed", &w, NULL);
      nex_supervisor_deploy (node->sup, w.id);
      *out = w;
      return 0;
    }
  nex_workload_release (&w);
  return -1;
}
