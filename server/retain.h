/* SPDX-License-Identifier: Apache-2.0 */
/* retain.h — the registry's growth bounded in time (--retain-ended).
 *
 * A workload that ended (exited, failed, stopped) more than the retention ago is deleted with everything stored
 * about it: its row, state history and log lines (ON DELETE CASCADE), its events and its sealed-environment row;
 * events older than the retention that belong to no stored workload (node events, other nodes' workloads) go
 * too.  A background thread does it in batches, each its own short transaction so that the API and the
 * supervisor wait for at most one batch, then hands the freed pages back to the file system with SQLite's
 * incremental vacuum (the registry is in auto_vacuum = INCREMENTAL mode; registry.c).  Workloads that have not
 * ended are never touched, however old. */
#ifndef NEX_RETAIN_H
#define NEX_RETAIN_H

#include <stdint.h>

#include "common/error.h"
#include "server/node.h"

/* What one pass removed. */
typedef struct nex_retain_stats
{
  int64_t workloads; /* ended workloads deleted */
  int64_t events;    /* events deleted (those of the workloads and the old orphans) */
  int64_t pages;     /* database pages given back to the file system */
} nex_retain_stats_t;

typedef struct nex_retain nex_retain_t;

/* Starts the retention thread of NODE (node->cfg->retain_ended_ms; 0 starts nothing and returns NULL with no
 * error).  A pass runs at start and then every tenth of the retention (at least 1 s, at most 60 s).  NULL with
 * ERR when the thread cannot start. */
nex_retain_t *nex_retain_start (nex_node_t *node, nex_error_t *err);

/* Stops the thread (a pass in progress ends after its current batch) and frees R.  Safe on NULL. */
void nex_retain_stop (nex_retain_t *r);

/* One pass on REG: deletes what ended (or, for orphan events, happened) before BEFORE (Unix ms), in batches of
 * BATCH workloads, then vacuums incrementally; adds what it did to *STATS.  Any thread. */
int nex_retain_prune (nex_registry_t *reg, int64_t before, int64_t batch, nex_retain_stats_t *stats, nex_error_t *err);

#endif
