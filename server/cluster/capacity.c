/* SPDX-License-Identifier: Apache-2.0 */
/* cluster/capacity.c — what this node offers and has free: the heartbeat document every peer and every auction
 * sees (contract in cluster/internal.h).
 *
 * "Free" is the host's size less the reservations of the node's live workloads (resources.memory_mb and
 * resources.vcpus; a microVM without them reserves the VM's default size), not what the host happens to use
 * at the moment: placement must not depend on how busy a workload was in the last second, and a reservation
 * holds from the deploy on, before the workload has touched any memory.  Several nodes on one host (the tests)
 * each count the whole host. */
#include "server/cluster/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autoconfig.h"
#include "common/cleanup.h"
#include "common/fdio.h"
#include "server/drivers/driver.h"
#include "server/nats/bridge.h"

/* MemTotal of /proc/meminfo in MiB (0 when unreadable). */
static int64_t
host_memory_mb (void)
{
  size_t len = 0;
  cleanup_free char *text = nex_file_read ("/proc/meminfo", 1 << 16, &len, NULL);
  const char *p = text ? strstr (text, "MemTotal:") : NULL;
  return p ? strtoll (p + strlen ("MemTotal:"), NULL, 10) / 1024 : 0;
}

/* What workload W holds of the host while it lives. */
static void
reservation (const nex_config_t *cfg, const nex_workload_t *w, int64_t *memory_mb, double *vcpus)
{
  int vm = w->driver && strcmp (w->driver, "sandbox") != 0;
  *memory_mb = w->resources.memory_mb > 0 ? w->resources.memory_mb : vm ? cfg->vm_memory_mib : 0;
  *vcpus = w->resources.vcpus > 0 ? w->resources.vcpus : vm ? (double)cfg->vm_vcpus : 0;
}

static json_t *
drivers_available (void)
{
  json_t *names = json_array ();
  for (const nex_driver_t *const *d = nex_driver_all (); *d; d++)
    {
      cleanup_free char *why = NULL;
      if (nex_driver_probe (*d, &why))
        json_array_append_new (names, json_string ((*d)->name));
    }
  return names;
}

json_t *
nex_cluster_self_info (nex_cluster_t *c)
{
  nex_node_t *node = c->node;
  int64_t mem_total = host_memory_mb (), mem_used = 0, count = 0;
  long cpus = sysconf (_SC_NPROCESSORS_ONLN);
  double cpu_used = 0;
  static const nex_state_t live[] = { NEX_STATE_PENDING, NEX_STATE_STARTING, NEX_STATE_RUNNING };
  for (size_t s = 0; s < sizeof live / sizeof live[0]; s++)
    {
      nex_workload_filter_t f = { .state = &live[s] };
      nex_workload_t *list = NULL;
      size_t n = 0;
      if (nex_registry_workload_list (node->reg, &f, &list, &n, NULL) < 0)
        continue;
      for (size_t i = 0; i < n; i++)
        {
          int64_t m;
          double v;
          reservation (node->cfg, &list[i], &m, &v);
          mem_used += m;
          cpu_used += v;
          nex_workload_release (&list[i]);
        }
      free (list);
      count += (int64_t)n;
    }
  double cpu_free = (double)(cpus > 0 ? cpus : 1) - cpu_used;
  json_t *tags = nex_nats_tags (node->nats);
  return json_pack ("{s:s, s:s, s:s, s:o, s:o, s:{s:I, s:f}, s:{s:I, s:f}, s:I, s:b, s:s}", "node_id", node->id, "name",
                    node->hostname, "version", PACKAGE_VERSION, "tags", tags, "drivers", drivers_available (), "total",
                    "memory_mb", (json_int_t)mem_total, "vcpus", (double)(cpus > 0 ? cpus : 1), "free", "memory_mb",
                    (json_int_t)(mem_total - mem_used), "vcpus", round (cpu_free * 1000) / 1000, "workloads",
                    (json_int_t)count, "lame_duck", __atomic_load_n (&node->lameduck, __ATOMIC_SEQ_CST), "api",
                    node->cfg->listen);
}
