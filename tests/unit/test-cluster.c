/* SPDX-License-Identifier: Apache-2.0 */
/* test-cluster.c — the cluster's placement rule and requirement check (server/cluster/rank.c): the order of the
 * rule, the first reason a node does not fit, and the refusals of a malformed placement. */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "server/cluster/internal.h"
#include "tests/unit/tap.h"

static json_t *
doc (const char *id, double mem, double cpu, int workloads, const char *zone)
{
  return json_pack ("{s:s, s:{s:s}, s:[s], s:{s:f, s:f}, s:i, s:b}", "node_id", id, "tags", "zone", zone, "drivers",
                    "sandbox", "free", "memory_mb", mem, "vcpus", cpu, "workloads", workloads, "lame_duck", 0);
}

static void
test_rank (void)
{
  cleanup_json json_t *a = doc ("NA", 1000, 2, 5, "z0");
  cleanup_json json_t *b = doc ("NB", 999, 8, 0, "z0");
  TAP_OK (nex_cluster_rank (a, b) < 0 && nex_cluster_rank (b, a) > 0, "more free memory wins over CPU and count");
  cleanup_json json_t *c = doc ("NC", 1000, 3, 9, "z0");
  TAP_OK (nex_cluster_rank (c, a) < 0, "at equal memory, more free CPU wins");
  cleanup_json json_t *d = doc ("ND", 1000, 2, 4, "z0");
  TAP_OK (nex_cluster_rank (d, a) < 0, "at equal memory and CPU, fewer workloads win");
  cleanup_json json_t *e = doc ("NE", 1000, 2, 5, "z0");
  TAP_OK (nex_cluster_rank (a, e) < 0 && nex_cluster_rank (a, a) == 0, "ties go to the smaller node id");
}

static void
test_fits (void)
{
  cleanup_json json_t *n = doc ("NA", 512, 1, 0, "eu");
  cleanup_json json_t *spec = json_pack ("{s:{s:i}}", "resources", "memory_mb", 256);
  cleanup_json json_t *placement = json_pack ("{s:{s:s}}", "tags", "zone", "EU");
  nex_requirements_t r;
  TAP_OK (nex_cluster_requirements (spec, placement, &r, NULL) == 0 && r.memory_mb == 256, "requirements read");
  cleanup_free char *why = NULL;
  TAP_OK (nex_cluster_fits (n, &r, &why) == 1 && why == NULL, "a node with the tag (any case) and the room fits");
  r.memory_mb = 1024;
  TAP_OK (nex_cluster_fits (n, &r, &why) == 0 && why && strstr (why, "512 MiB of memory free"), "memory: %s",
          why ? why : "");
  free (why);
  why = NULL;
  r.memory_mb = 0;
  r.driver = "qemu";
  TAP_OK (nex_cluster_fits (n, &r, &why) == 0 && why && strstr (why, "driver `qemu`"), "driver: %s", why ? why : "");
  free (why);
  why = NULL;
  cleanup_json json_t *hostile = json_pack ("{s:{s:i}}", "tags", "zone", 3);
  nex_cluster_requirements_from_json (hostile, &r);
  TAP_OK (nex_cluster_fits (n, &r, NULL) == 0, "a non-string tag in an auction request matches nothing");
  json_object_set_new (n, "lame_duck", json_true ());
  memset (&r, 0, sizeof r);
  TAP_OK (nex_cluster_fits (n, &r, &why) == 0 && why && strstr (why, "lame duck"), "a draining node never fits");
}

static void
test_refusals (void)
{
  const char *bad[][2] = {
    { "{\"zone\": \"x\"}", "placement" },
    { "{\"tags\": {\"zone\": 1}}", "placement.tags" },
    { "{\"driver\": \"\"}", "placement.driver" },
    { "[1]", "placement" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      cleanup_json json_t *p = json_loads (bad[i][0], 0, NULL);
      cleanup_error nex_error_t err = NULL;
      nex_requirements_t r;
      TAP_OK (nex_cluster_requirements (NULL, p, &r, &err) < 0 && err && strcmp (err->field, bad[i][1]) == 0,
              "placement %s refused naming %s", bad[i][0], bad[i][1]);
    }
  cleanup_json json_t *spec = json_pack ("{s:s}", "driver", "sandbox");
  cleanup_json json_t *p = json_pack ("{s:s}", "driver", "qemu");
  cleanup_error nex_error_t err = NULL;
  nex_requirements_t r;
  TAP_OK (nex_cluster_requirements (spec, p, &r, &err) < 0 && strcmp (err->field, "placement.driver") == 0,
          "a placement driver other than the spec's is refused");
}

int
main (void)
{
  test_rank ();
  test_fits ();
  test_refusals ();
  return tap_done ();
}
