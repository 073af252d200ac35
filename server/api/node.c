/* SPDX-License-Identifier: Apache-2.0 */
/* api/node.c — routes about the node itself: GET /v1/node (identity, drivers, workloads by state, the host's
 * capacity and use, the NATS link, and who is asking). */
#include "server/api/api.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autoconfig.h"
#include "common/cleanup.h"
#include "common/fdio.h"
#include "server/clock.h"
#include "server/drivers/driver.h"
#include "server/drivers/image-root.h"
#include "server/nats/bridge.h"

/* The value in kB of field NAME ("MemAvailable:") of /proc/meminfo TEXT, in bytes; -1 when absent. */
static int64_t
meminfo_bytes (const char *text, const char *name)
{
  const char *p = text ? strstr (text, name) : NULL;
  if (p == NULL)
    return -1;
  long long kb = strtoll (p + strlen (name), NULL, 10);
  return kb > 0 ? (int64_t)kb * 1024 : -1;
}

/* What the host has and uses now: CPUs online, memory (total, available), load averages. */
static json_t *
host_json (void)
{
  size_t len;
  cleanup_error nex_error_t err = NULL;
  cleanup_free char *meminfo = nex_file_read ("/proc/meminfo", 1 << 16, &len, &err);
  double load[3] = { 0, 0, 0 };
  int have_load = getloadavg (load, 3) == 3;
  json_t *h = json_pack ("{s:I}", "cpus", (json_int_t)sysconf (_SC_NPROCESSORS_ONLN));
  int64_t total = meminfo_bytes (meminfo, "MemTotal:"), avail = meminfo_bytes (meminfo, "MemAvailable:");
  json_object_set_new (h, "memory_total_bytes", total > 0 ? json_integer (total) : json_null ());
  json_object_set_new (h, "memory_available_bytes", avail > 0 ? json_integer (avail) : json_null ());
  json_object_set_new (h, "load", have_load ? json_pack ("[f, f, f]", load[0], load[1], load[2]) : json_null ());
  return h;
}

/* The drivers' availability (probes stat files and search PATH; KVM's verdict is kept, kvm.h) and the host's
 * figures (a read of /proc/meminfo) cost more than the rest of the answer together; they are taken at most once
 * per PROBED_MS and shared, so a client polling the node does not pay them on every request. */
#define PROBED_MS 1000

static struct
{
  pthread_mutex_t lock;
  int64_t at; /* monotonic ms of the last probe; 0: never */
  json_t *drivers, *host;
} probed = { .lock = PTHREAD_MUTEX_INITIALIZER };

static json_t *
drivers_json (void)
{
  json_t *drivers = json_array ();
  for (const nex_driver_t *const *d = nex_driver_all (); *d; d++)
    {
      cleanup_free char *reason = NULL;
      int ok = nex_driver_probe (*d, &reason);
      json_t *info = json_pack ("{s:s, s:b, s:s?}", "name", (*d)->name, "available", ok, "reason", reason);
      if (*d == &nex_driver_sandbox)
        {
          cleanup_free char *copied = NULL;
          nex_image_root_overlay (&copied);
          json_object_set_new (info, "image_root", json_string (nex_image_root_name ()));
          json_object_set_new (info, "image_root_reason", copied ? json_string (copied) : json_null ());
        }
      cleanup_free char *kvm_reason = NULL;
      const char *accel = nex_driver_accel (*d, &kvm_reason);
      if (accel)
        {
          json_object_set_new (info, "accel", json_string (accel));
          json_object_set_new (info, "kvm_reason", kvm_reason ? json_string (kvm_reason) : json_null ());
        }
      json_array_append_new (drivers, info);
    }
  return drivers;
}

/* Copies of the drivers' and the host's figures, at most PROBED_MS old, into *DRIVERS and *HOST. */
static void
probed_get (json_t **drivers, json_t **host)
{
  pthread_mutex_lock (&probed.lock);
  int64_t now = nex_clock_mono_ms ();
  if (probed.at == 0 || now - probed.at >= PROBED_MS)
    {
      json_decref (probed.drivers);
      json_decref (probed.host);
      probed.drivers = drivers_json ();
      probed.host = host_json ();
      probed.at = now;
    }
  *drivers = json_deep_copy (probed.drivers);
  *host = json_deep_copy (probed.host);
  pthread_mutex_unlock (&probed.lock);
}

/* Who the request came as: the token's id (null when anonymous), its scopes and namespaces (null: all). */
static json_t *
caller_json (const nex_principal_t *who)
{
  json_t *scopes = nex_auth_scopes_json (who ? who->scopes : 0);
  return json_pack ("{s:o, s:o, s:o}", "token_id", who && who->token_id[0] ? json_string (who->token_id) : json_null (),
                    "scopes", scopes, "namespaces",
                    who && who->namespaces ? json_deep_copy (who->namespaces) : json_null ());
}

static int
node_get (nex_api_request_t *req, nex_api_response_t *res, nex_error_t *err)
{
  nex_node_t *node = req->node;
  int64_t counts[NEX_STATE__COUNT] = { 0 };
  if (nex_registry_count_by_state (node->reg, counts, err) < 0)
    return -1;
  json_t *by_state = json_object ();
  int64_t total = 0;
  for (int s = 0; s < NEX_STATE__COUNT; s++)
    {
      json_object_set_new (by_state, nex_state_name ((nex_state_t)s), json_integer (counts[s]));
      total += counts[s];
    }
  json_object_set_new (by_state, "total", json_integer (total));

  json_t *drivers, *host;
  probed_get (&drivers, &host);
  char started[NEX_CLOCK_RFC3339_LEN];
  res->body = json_pack ("{s:s, s:s, s:s, s:s, s:f, s:s, s:o, s:o}", "id", node->id, "name", node->hostname, "version",
                         PACKAGE_VERSION, "started_at", nex_clock_format (node->started_at, started, sizeof started),
                         "uptime_s", (double)(nex_clock_mono_ms () - node->started_mono) / 1000.0, "default_driver",
                         node->cfg->default_driver, "drivers", drivers, "workloads", by_state);
  json_object_set_new (res->body, "public_xkey", json_string (node->identity.xkey.public_text));
  json_object_set_new (res->body, "lameduck", json_boolean (__atomic_load_n (&node->lameduck, __ATOMIC_SEQ_CST)));
  json_object_set_new (res->body, "nats", node->nats ? nex_nats_status (node->nats) : json_null ());
  json_object_set_new (res->body, "host", host);
  json_object_set_new (res->body, "caller", caller_json (req->who));
  return 0;
}

const nex_api_route_t nex_api_node_routes[] = {
  { "GET", "/v1/node", node_get, 0 },
  { NULL, NULL, NULL, 0 },
};
