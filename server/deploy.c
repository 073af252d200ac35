/* SPDX-License-Identifier: Apache-2.0 */
/* deploy.c — see deploy.h.  Everything that can be checked before storing is checked here, so that a refused
 * request leaves no trace; what can only be known once the artifact is fetched (its digest) fails the workload
 * later, visibly, in the supervisor. */
#include "server/deploy.h"

#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include <jansson.h>

#include "common/cleanup.h"
#include "server/artifacts/artifact.h"
#include "server/drivers/driver.h"
#include "server/nats/secure.h"
#include "server/net/net.h"
#include "server/snapshot.h"
#include "server/supervisor.h"

/* What a deploy needs left on the data dir's file system: room for the state changes of its life (a few
 * SQLite pages each) and its first log lines.  Below it a deploy is refused with 507 rather than stored with a
 * record that could not follow what the workload does. */
#define DEPLOY_FREE_BYTES_MIN (1 << 20)

/* Fails (NEX_ERR_NO_SPACE) when DIR's file system has less than DEPLOY_FREE_BYTES_MIN for unprivileged use. */
static int
require_free_space (const char *dir, nex_error_t *err)
{
  struct statvfs sv;
  if (statvfs (dir, &sv) < 0)
    return 0; /* not knowing is no reason to refuse: the registry's own writes will say */
  unsigned long long avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
  if (avail >= DEPLOY_FREE_BYTES_MIN)
    return 0;
  return nex_error_set (err, NEX_ERR_NO_SPACE,
                        "no space left for a new workload: the data dir %s has %llu bytes free (a deploy needs "
                        "%d KiB for its records and logs)",
                        dir, avail, DEPLOY_FREE_BYTES_MIN >> 10);
}

/* For a bridge workload W on driver D: leases its address and ports (W->net is updated).  1, or -1: the node
 * cannot network workloads (503), D cannot give a workload a link (422), a port is taken (409). */
static int
reserve_network (nex_node_t *node, const nex_driver_t *d, nex_workload_t *w, nex_error_t *err)
{
  if (node->net == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "network bridge is unavailable on this node: %s",
                          node->net_error ? node->net_error : "unknown");
  if (!d->bridge_network)
    return nex_error_field (err, "network", "network bridge is not supported by the `%s` driver", d->name);
  if (w->resources.net_mbps > 0 && d->bridge_network != NEX_DRIVER_NET_VETH)
    return nex_error_field (err, "resources.net_mbps", "bandwidth limits are not there yet for the `%s` driver",
                            d->name);
  return nex_net_reserve (node->net, w, err) < 0 ? -1 : 1;
}

/* An image workload that names no network gets bridge when this node can give it one (its network is up and
 * the driver takes a link): an image is a service of its own, as in a container engine.  An executable keeps
 * `none`, and so does an image on a node without networking.  PLAIN is the request (a copy), changed in place. */
static void
default_network (const nex_node_t *node, json_t *plain)
{
  if (node->net == NULL || !json_is_object (plain) || !json_is_string (json_object_get (plain, "image"))
      || json_object_get (plain, "network") != NULL)
    return;
  const char *driver = json_string_value (json_object_get (plain, "driver"));
  const nex_driver_t *d = nex_driver_find (driver ? driver : node->cfg->default_driver);
  if (d && d->bridge_network)
    json_object_set_new (plain, "network", json_string ("bridge"));
}

int
nex_deploy_submit (nex_node_t *node, const json_t *request, nex_workload_t *out, nex_error_t *err)
{
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  /* A node draining for shutdown (lame duck) takes nothing new, whichever door the request came through. */
  if (__atomic_load_n (&node->lameduck, __ATOMIC_SEQ_CST))
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "node is in lame duck mode and takes no new workloads");
  /* The secure-launch fields (sealed environment, workload JWT) are checked and taken out first; the rest is an
   * ordinary request. */
  cleanup_json json_t *plain = json_is_object (request) ? json_deep_copy (request) : json_incref ((json_t *)request);
  cleanup_with (nex_secure_row_release) nex_secure_row_t secure = { 0 };
  int secured = 0;
  if (nex_secure_take (node, plain, &secure, &secured, err) < 0)
    return -1;
  default_network (node, plain);
  cleanup_free char *snapshot_id = NULL;
  if (nex_snapshot_expand_request (node, plain, &snapshot_id, err) < 0
      || nex_workload_from_request (plain, node->cfg->default_driver, &w, err) < 0)
    return -1;
  w.from_snapshot = NEX_STEAL_PTR (snapshot_id);
  const nex_driver_t *d = nex_driver_find (w.driver);
  cleanup_free char *why = NULL;
  int stored_secure = 0;
  int leased = 0;
  cleanup_json json_t *deployed = NULL;
  if (d == NULL)
    nex_error_field (err, "driver", "unknown driver `%s`", w.driver);
  else if (w.type == NEX_WORKLOAD_FUNCTION && node->nats == NULL)
    /* A function is reached only through its trigger subjects: on a node without NATS it could never run. */
    nex_error_field (err, "trigger_subjects",
                     "this node is not connected to NATS (start nexd with --nats): a "
                     "function could never be triggered here");
  else if (!nex_driver_probe (d, &why))
    nex_error_set (err, NEX_ERR_UNAVAILABLE, "driver `%s` is unavailable on this node: %s", d->name, why);
  else if (require_free_space (node->data_dir, err) == 0
           && (w.image || nex_artifact_precheck_at (node->artifacts_dir, w.artifact, err) == 0)
           && (w.net == NULL || (leased = reserve_network (node, d, &w, err)) == 1)
           && (!secured || (stored_secure = nex_registry_secure_put (node->reg, w.id, &secure, err) == 0))
           && (deployed = nex_node_event_new (node, "workload_deployed", &w, NULL)) != NULL
           && nex_registry_workload_insert_event (node->reg, &w, deployed, err) == 0)
    {
      /* The record and its event in one commit, then the event to watchers. */
      nex_node_event_publish (node, deployed, &w);
      nex_supervisor_deploy (node->sup, w.id);
      *out = w;
      memset (&w, 0, sizeof w);
      return 0;
    }
  if (stored_secure)
    nex_registry_secure_delete (node->reg, w.id, NULL);
  if (leased == 1)
    nex_net_release (node->net, w.id);
  return -1;
}
