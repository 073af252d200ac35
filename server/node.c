/* SPDX-License-Identifier: Apache-2.0 */
/* node.c — see node.h. */
#include "server/node.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "server/artifacts/image-store.h"
#include "common/fdio.h"
#include "common/utf8.h"
#include "common/xalloc.h"
#include "server/drivers/cgroup.h"
#include "server/bus.h"
#include "server/clock.h"
#include "server/event.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/drivers/image-root.h"
#include "server/drivers/vm-image.h"
#include "server/drivers/vm.h"
#include "server/nats/bridge.h"
#include "server/net/net.h"

static char *
absolute_path (const char *path, nex_error_t *err)
{
  if (path[0] == '/')
    return nex_xstrdup (path);
  char cwd[PATH_MAX];
  if (getcwd (cwd, sizeof cwd) == NULL)
    {
      nex_error_sys (err, errno, "getcwd");
      return NULL;
    }
  const char *rel = strncmp (path, "./", 2) == 0 ? path + 2 : path;
  return nex_xasprintf ("%s/%s", cwd, rel);
}

/* nex-agent, where the configuration says (config.c filled in the layout's default, paths.h): absolute, and
 * executable, or NULL with ERR naming `agent`. */
static char *
find_agent (const nex_config_t *cfg, nex_error_t *err)
{
  char *p = absolute_path (cfg->agent, err);
  if (p && access (p, X_OK) < 0)
    {
      nex_error_field (err, "agent", "nex-agent `%s` is not executable: %s (set --agent)", p, strerror (errno));
      free (p);
      return NULL;
    }
  return p;
}

/* How image sandboxes get their root (image-root.h): image_root copy, or what the overlay probe finds (only
 * root runs sandboxes at all; without root the probe is moot). */
static void
configure_image_root (nex_node_t *node)
{
  if (strcmp (node->cfg->image_root, "copy") == 0)
    {
      nex_image_root_set (0, "image_root is copy");
      return;
    }
  cleanup_free char *why = NULL;
  int overlay = geteuid () != 0 || nex_sandbox_probe_overlay (node->run_dir, node->agent_path, &why);
  nex_image_root_set (overlay, why);
  if (!overlay)
    nex_warn ("image sandboxes get a private copy of their image: the kernel refuses the overlay (%s)", why);
}

static void
node_closep (nex_node_t **node)
{
  nex_node_close (*node);
}

/* Workload networking (net.h), before the supervisor recovers workloads.  Without it the node runs, and refuses
 * bridge workloads saying why; a --network-cidr that cannot be used stops the start. */
static int
open_network (nex_node_t *node, nex_error_t *err)
{
  const nex_config_t *cfg = node->cfg;
  nex_net_options_t o = { .cidr = cfg->network_cidr, .egress_default = cfg->egress_default, .nats_url = cfg->nats };
  cleanup_error nex_error_t nerr = NULL;
  node->net = nex_net_open (node->reg, &o, &nerr);
  if (node->net)
    return 0;
  if (cfg->network_cidr || nerr->kind == NEX_ERR_INVALID)
    {
      *err = NEX_STEAL_PTR (nerr);
      return -1;
    }
  node->net_error = nex_xstrdup (nerr->msg);
  nex_log_error (NEX_LOG_WARN, nerr, "network bridge unavailable");
  return 0;
}

nex_node_t *
nex_node_open (const nex_config_t *cfg, nex_error_t *err)
{
  cleanup_free char *id = NULL;
  cleanup_with (node_closep) nex_node_t *node = nex_xzalloc (sizeof *node);
  node->cfg = cfg;
  node->started_at = nex_clock_now_ms ();
  node->started_mono = nex_clock_mono_ms ();
  node->bus = nex_bus_new ();
  char host[256] = "localhost";
  gethostname (host, sizeof host - 1);
  node->hostname = nex_xstrdup (host);

  node->data_dir = absolute_path (cfg->data_dir, err);
  if (node->data_dir == NULL)
    return NULL;
  /* A data dir that exists but cannot be written (a read-only mount, wrong owner) is named as such, before any
   * file in it is opened: the registry's own error would only say it cannot open the database. */
  if (access (node->data_dir, F_OK) == 0 && access (node->data_dir, W_OK) < 0)
    {
      nex_error_set (err, NEX_ERR_SYSTEM, "data dir `%s` is not writable: %s", node->data_dir, strerror (errno));
      return NULL;
    }
  node->artifacts_dir = nex_xasprintf ("%s/artifacts", node->data_dir);
  node->run_dir = nex_xasprintf ("%s/run", node->data_dir);
  if (nex_mkdir_p (node->artifacts_dir, 0700, err) < 0 || nex_mkdir_p (node->run_dir, 0700, err) < 0)
    return NULL;
  node->agent_path = find_agent (cfg, err);
  if (node->agent_path == NULL)
    return NULL;
  /* The kernel directory's absence is no error here: the VM drivers report themselves unavailable, saying why. */
  cleanup_free char *kernel_dir = absolute_path (cfg->vm_kernel_dir, err);
  if (kernel_dir == NULL)
    return NULL;
  nex_vm_configure (cfg, kernel_dir, node->data_dir);
  nex_vm_image_sweep ();
  configure_image_root (node);
  nex_info ("files: agent %s, VM kernel %s, dashboard %s, vendor %s", node->agent_path, kernel_dir, cfg->web_dir,
            cfg->vendor_dir);

  /* Without cgroups the node still answers, but refuses to start sandboxes (their limits could not hold). */
  {
    cleanup_error nex_error_t cgerr = NULL;
    node->cgroups = nex_cgroups_open (&cgerr);
    if (node->cgroups)
      nex_info ("cgroups: %s host", nex_cgroups_mode (node->cgroups));
    else
      {
        node->cgroups_error = nex_xstrdup (cgerr->msg);
        nex_log_error (NEX_LOG_WARN, cgerr, "cgroups unavailable; sandboxes cannot start");
      }
  }

  cleanup_free char *db = nex_xasprintf ("%s/registry.db", node->data_dir);
  node->reg = nex_registry_open (db, err);
  if (node->reg == NULL)
    return NULL;
  if (open_network (node, err) < 0)
    return NULL;

  node->images = nex_image_store_open (node, err);
  if (node->images == NULL)
    return NULL;

  if (nex_identity_load (node->data_dir, &node->identity, err) < 0)
    return NULL;
  snprintf (node->id, sizeof node->id, "%s", node->identity.node.public_text);
  /* Kept in the registry too, so that the database says which node wrote it. */
  int found = nex_registry_meta_get (node->reg, "node_id", &id, err);
  if (found < 0
      || ((found == 0 || strcmp (id, node->id) != 0)
          && nex_registry_meta_set (node->reg, "node_id", node->id, err) < 0))
    return NULL;
  return NEX_STEAL_PTR (node);
}

void
nex_node_close (nex_node_t *node)
{
  if (node == NULL)
    return;
  nex_image_store_close (node->images);
  nex_net_close (node->net);
  free (node->net_error);
  nex_registry_close (node->reg);
  nex_cgroups_close (node->cgroups);
  free (node->cgroups_error);
  nex_bus_free (node->bus);
  nex_vm_release ();
  nex_image_root_release ();
  nex_identity_wipe (&node->identity);
  free (node->hostname);
  free (node->data_dir);
  free (node->artifacts_dir);
  free (node->run_dir);
  free (node->agent_path);
  free (node);
}

json_t *
nex_node_event_new (nex_node_t *node, const char *type, const nex_workload_t *w, json_t *data)
{
  if (data == NULL)
    data = json_object ();
  if (w)
    {
      json_object_set_new (data, "workload_id", json_string (w->id));
      json_object_set_new (data, "name", json_string (w->name));
      json_object_set_new (data, "namespace", json_string (w->namespace_));
    }
  return nex_event_new (node->id, type, w ? w->id : NULL, data);
}

void
nex_node_event_publish (nex_node_t *node, json_t *ev, const nex_workload_t *w)
{
  const char *type = json_string_value (json_object_get (ev, "type"));
  nex_debug ("event %s %s", type ? type : "?", w ? w->id : "");
  nex_bus_publish_event (node->bus, ev, w);
  nex_metrics_event (type ? type : "", w && w->started_at && w->created_at ? w->started_at - w->created_at : -1);
  if (node->nats)
    nex_nats_publish_event (node->nats, ev, w ? w->namespace_ : NULL);
}

/* Emits (STORE: and stores) the event; see nex_node_emit and nex_node_announce. */
static void
emit (nex_node_t *node, const char *type, const nex_workload_t *w, json_t *data, int store)
{
  cleanup_json json_t *ev = nex_node_event_new (node, type, w, data);
  cleanup_error nex_error_t err = NULL;
  if (store && nex_registry_event_append (node->reg, ev, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "event %s not stored", type);
  /* Published even when storing failed: live watchers (and waiters) still need to hear about it. */
  nex_node_event_publish (node, ev, w);
}

void
nex_node_emit (nex_node_t *node, const char *type, const nex_workload_t *w, json_t *data)
{
  emit (node, type, w, data, 1);
}

void
nex_node_announce (nex_node_t *node, const char *type, const nex_workload_t *w, json_t *data)
{
  emit (node, type, w, data, 0);
}

void
nex_node_pause_logs (nex_node_t *node, int64_t until)
{
  __atomic_store_n (&node->logs_paused_until, until, __ATOMIC_RELAXED);
}

/* How long output is dropped after the registry said it was full, before a batch tries again. */
#define LOGS_FULL_PAUSE_MS 1000

void
nex_node_store_logs (nex_node_t *node, const char *id, const nex_log_line_t *lines, size_t n, int64_t skipped,
                     const int64_t offsets[2])
{
  if (n == 0)
    return;
  if (nex_clock_mono_ms () < __atomic_load_n (&node->logs_paused_until, __ATOMIC_RELAXED))
    {
      nex_metrics_log_lost (n + (uint64_t)skipped);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  int64_t first;
  if (nex_registry_log_append_seq (node->reg, id, lines, n, skipped, node->cfg->log_lines, offsets, &first, &err) < 0)
    {
      nex_metrics_log_lost (n + (uint64_t)skipped);
      if (err->kind != NEX_ERR_NO_SPACE)
        {
          nex_log_error (NEX_LOG_WARN, err, "workload %s: log lines lost", id);
          return;
        }
      /* A full disk: output waits (dropped, counted) rather than take the room state changes need; one line in
       * the log per spell, not one per batch. */
      nex_node_pause_logs (node, nex_clock_mono_ms () + LOGS_FULL_PAUSE_MS);
      if (!node->logs_full)
        nex_log_error (NEX_LOG_WARN, err,
                       "the registry is full: workloads' output is dropped (counted in "
                       "nex_log_lines_lost_total) until it has room again");
      node->logs_full = 1;
      return;
    }
  if (node->logs_full)
    nex_info ("the registry has room again: workloads' output is stored again");
  node->logs_full = 0;
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++)
    bytes += lines[i].len;
  nex_metrics_log_lines (n, bytes);
  if (node->nats)
    nex_nats_publish_logs (node->nats, id, lines, n);
  if (!nex_bus_wants_logs (node->bus, id))
    return;
  /* The namespace lets followers filter; one lookup per batch, only when someone follows. */
  nex_workload_t w = { 0 };
  cleanup_error nex_error_t werr = NULL;
  nex_registry_workload_get (node->reg, id, &w, &werr);
  for (size_t i = 0; i < n; i++)
    {
      size_t len;
      cleanup_free char *text = nex_utf8_sanitize (lines[i].text, lines[i].len, &len);
      nex_bus_publish_log (node->bus, id, w.namespace_, first + (int64_t)i, lines[i].stream, lines[i].ts, text, len);
    }
  nex_workload_release (&w);
}
