/* SPDX-License-Identifier: Apache-2.0 */
/* registry-fill.c — test and bench tool: stores N ended workloads in a registry file through the registry's own
 * code (nex_workload_from_request, then nex_registry_workload_insert: the rows, indexes and first history entry a
 * deploy writes), so that the list and retention paths can be measured against 100,000 workloads without running
 * 100,000 sandboxes.  Each workload is `exited` (exit code 0), created 1 ms after the one before, ended AGO_MS
 * before now, in namespace "fill" (every 10th in "fill-b"), with label batch=<i / 1000>.  Run it before nexd opens
 * the file.  Usage: registry-fill DB N [AGO_MS].  Prints the number stored. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "server/clock.h"
#include "server/registry.h"

static void
registry_closep (nex_registry_t **reg)
{
  nex_registry_close (*reg);
}

/* Stores the I-th workload, created at CREATED and ended at ENDED (Unix ms). */
static int
fill_one (nex_registry_t *reg, long i, int64_t created, int64_t ended, nex_error_t *err)
{
  char name[32], batch[32];
  snprintf (name, sizeof name, "fill-%ld", i);
  snprintf (batch, sizeof batch, "%ld", i / 1000);
  cleanup_json json_t *body
      = json_pack ("{s:s, s:s, s:s, s:{s:s}}", "name", name, "namespace", i % 10 == 9 ? "fill-b" : "fill", "artifact",
                   "file:///bin/true", "labels", "batch", batch);
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_workload_from_request (body, "sandbox", &w, err) < 0)
    return -1;
  w.state = NEX_STATE_EXITED;
  w.has_exit_code = 1;
  w.created_at = w.updated_at = w.started_at = created;
  w.finished_at = ended;
  return nex_registry_workload_insert (reg, &w, err);
}

int
main (int argc, char **argv)
{
  if (argc < 3 || argc > 4)
    {
      fprintf (stderr, "usage: registry-fill DB N [AGO_MS]\n");
      return 2;
    }
  long n = strtol (argv[2], NULL, 10);
  long long ago = argc == 4 ? strtoll (argv[3], NULL, 10) : 0;
  cleanup_error nex_error_t err = NULL;
  cleanup_with (registry_closep) nex_registry_t *reg = nex_registry_open (argv[1], &err);
  if (reg == NULL)
    {
      fprintf (stderr, "registry-fill: %s\n", err->msg);
      return 1;
    }
  int64_t now = nex_clock_now_ms ();
  int64_t first = now - ago - n;
  for (long i = 0; i < n; i++)
    if (fill_one (reg, i, first + i, now - ago, &err) < 0)
      {
        fprintf (stderr, "registry-fill: workload %ld: %s\n", i, err->msg);
        return 1;
      }
  printf ("%ld\n", n);
  return 0;
}
