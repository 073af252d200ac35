/* SPDX-License-Identifier: Apache-2.0 */
/* retain.c — see retain.h.  The deletes run through nex_registry_run (one transaction per batch, under the
 * registry's lock); the thread sleeps on a condition variable so that a stop is prompt. */
#include "server/retain.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

struct nex_retain
{
  nex_node_t *node;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  int stopping; /* under lock */
};

/* A batch's work: its inputs and what it did. */
typedef struct
{
  int64_t before;
  int64_t batch;
  int64_t done;      /* what the last batch did (rows or pages), so that the loop knows whether to go on */
  int64_t workloads; /* deleted in all */
  int64_t events;
  int64_t pages;
} prune_batch_t;

static int
sql_fail (sqlite3 *db, nex_error_t *err, const char *what)
{
  return nex_error_set (err, NEX_ERR_SYSTEM, "retention: %s: %s", what, sqlite3_errmsg (db));
}

static sqlite3_stmt *
sql_prepare (sqlite3 *db, const char *sql, nex_error_t *err)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) != SQLITE_OK)
    {
      sql_fail (db, err, "prepare");
      sqlite3_finalize (stmt);
      return NULL;
    }
  return stmt;
}

/* Runs STMT (bound) to its end; adds the rows it changed to *CHANGED. */
static int
sql_run (sqlite3 *db, sqlite3_stmt *stmt, int64_t *changed, nex_error_t *err)
{
  int rc;
  while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
    ;
  if (rc != SQLITE_DONE)
    return sql_fail (db, err, "delete");
  if (changed)
    *changed += sqlite3_changes64 (db);
  return 0;
}

/* Deletes one workload ID with its events and sealed-environment row; its history and logs go by cascade. */
static int
prune_workload (sqlite3 *db, const char *id, prune_batch_t *b, nex_error_t *err)
{
  static const char *const deletes[] = {
    "DELETE FROM events WHERE workload_id = ?1",
    "DELETE FROM workload_secure WHERE workload_id = ?1",
    "DELETE FROM workloads WHERE id = ?1",
  };
  for (size_t i = 0; i < sizeof deletes / sizeof deletes[0]; i++)
    {
      cleanup_stmt sqlite3_stmt *stmt = sql_prepare (db, deletes[i], err);
      if (stmt == NULL)
        return -1;
      sqlite3_bind_text (stmt, 1, id, -1, SQLITE_STATIC);
      if (sql_run (db, stmt, i == 0 ? &b->events : NULL, err) < 0)
        return -1;
    }
  return 0;
}

/* One batch (a transaction): up to BATCH ended workloads, oldest end first (workloads_finished). */
static int
prune_workloads (sqlite3 *db, void *ctx, nex_error_t *err)
{
  prune_batch_t *b = ctx;
  cleanup_stmt sqlite3_stmt *stmt
      = sql_prepare (db,
                     "SELECT id FROM workloads WHERE finished_at IS NOT NULL AND finished_at < ?1 "
                     "AND state IN ('exited', 'failed', 'stopped') ORDER BY finished_at LIMIT ?2",
                     err);
  if (stmt == NULL)
    return -1;
  sqlite3_bind_int64 (stmt, 1, b->before);
  sqlite3_bind_int64 (stmt, 2, b->batch);
  size_t n = 0;
  cleanup_free char (*ids)[64] = nex_xzalloc ((size_t)b->batch * sizeof *ids);
  int rc = SQLITE_ROW;
  while (n < (size_t)b->batch && (rc = sqlite3_step (stmt)) == SQLITE_ROW)
    snprintf (ids[n++], sizeof ids[0], "%s", (const char *)sqlite3_column_text (stmt, 0));
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return sql_fail (db, err, "finding ended workloads");
  sqlite3_reset (stmt);
  for (size_t i = 0; i < n; i++)
    if (prune_workload (db, ids[i], b, err) < 0)
      return -1;
  b->workloads += (int64_t)n;
  b->done = (int64_t)n;
  return 0;
}

/* One batch of events older than BEFORE whose workload is not stored (events_time). */
static int
prune_orphan_events (sqlite3 *db, void *ctx, nex_error_t *err)
{
  prune_batch_t *b = ctx;
  cleanup_stmt sqlite3_stmt *stmt
      = sql_prepare (db,
                     "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE time < ?1 AND NOT EXISTS "
                     "(SELECT 1 FROM workloads WHERE id = events.workload_id) LIMIT ?2)",
                     err);
  if (stmt == NULL)
    return -1;
  sqlite3_bind_int64 (stmt, 1, b->before);
  sqlite3_bind_int64 (stmt, 2, b->batch * 10);
  b->done = 0;
  if (sql_run (db, stmt, &b->done, err) < 0)
    return -1;
  b->events += b->done;
  return 0;
}

/* Gives up to 1024 free pages back to the file system (a no-op unless auto_vacuum is incremental). */
static int
vacuum_step (sqlite3 *db, void *ctx, nex_error_t *err)
{
  prune_batch_t *b = ctx;
  int64_t before = 0, after = 0;
  cleanup_stmt sqlite3_stmt *count = sql_prepare (db, "PRAGMA freelist_count", err);
  if (count == NULL)
    return -1;
  if (sqlite3_step (count) == SQLITE_ROW)
    before = sqlite3_column_int64 (count, 0);
  sqlite3_reset (count);
  b->done = 0;
  if (before == 0)
    return 0;
  cleanup_stmt sqlite3_stmt *stmt = sql_prepare (db, "PRAGMA incremental_vacuum (1024)", err);
  if (stmt == NULL || sql_run (db, stmt, NULL, err) < 0)
    return -1;
  if (sqlite3_step (count) == SQLITE_ROW)
    after = sqlite3_column_int64 (count, 0);
  b->done = before - after;
  b->pages += b->done;
  return 0;
}

/* Runs FN in batches on REG until one does less than WHOLE (rows or pages). */
static int
prune_loop (nex_registry_t *reg, int (*fn) (sqlite3 *, void *, nex_error_t *), prune_batch_t *b, int64_t whole,
            nex_error_t *err)
{
  do
    {
      b->done = 0;
      if (nex_registry_run (reg, fn, b, err) < 0)
        return -1;
    }
  while (b->done >= whole);
  return 0;
}

int
nex_retain_prune (nex_registry_t *reg, int64_t before, int64_t batch, nex_retain_stats_t *stats, nex_error_t *err)
{
  prune_batch_t b = { .before = before, .batch = batch > 0 ? batch : 1 };
  int r = prune_loop (reg, prune_workloads, &b, b.batch, err);
  if (r == 0)
    r = prune_loop (reg, prune_orphan_events, &b, b.batch * 10, err);
  if (r == 0)
    r = prune_loop (reg, vacuum_step, &b, 1024, err);
  stats->workloads += b.workloads;
  stats->events += b.events;
  stats->pages += b.pages;
  return r;
}

/* ---- the thread ------------------------------------------------------------------------------------------ */

/* How long the thread sleeps between passes: a tenth of the retention, within [1 s, 60 s]. */
static int64_t
retain_interval_ms (int64_t retain_ms)
{
  int64_t t = retain_ms / 10;
  return t < 1000 ? 1000 : t > 60000 ? 60000 : t;
}

/* One pass, logged when it removed something; failures are logged and retried at the next pass. */
static void
retain_pass (nex_retain_t *r)
{
  cleanup_error nex_error_t err = NULL;
  nex_retain_stats_t stats = { 0 };
  int64_t before = nex_clock_now_ms () - r->node->cfg->retain_ended_ms;
  if (nex_retain_prune (r->node->reg, before, 200, &stats, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "retention pass failed");
  if (stats.workloads || stats.events || stats.pages)
    nex_info ("retention: deleted %lld ended workloads and %lld events, gave back %lld pages",
              (long long)stats.workloads, (long long)stats.events, (long long)stats.pages);
}

/* Waits up to MS for a stop; 1 when stopping. */
static int
retain_sleep (nex_retain_t *r, int64_t ms)
{
  struct timespec until;
  clock_gettime (CLOCK_MONOTONIC, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000;
  if (until.tv_nsec >= 1000000000)
    {
      until.tv_sec++;
      until.tv_nsec -= 1000000000;
    }
  cleanup_unlock pthread_mutex_t *locked = &r->lock;
  pthread_mutex_lock (locked);
  while (!r->stopping && pthread_cond_timedwait (&r->wake, &r->lock, &until) == 0)
    ;
  return r->stopping;
}

static void *
retain_main (void *arg)
{
  nex_retain_t *r = arg;
  int64_t interval = retain_interval_ms (r->node->cfg->retain_ended_ms);
  do
    retain_pass (r);
  while (!retain_sleep (r, interval));
  return NULL;
}

nex_retain_t *
nex_retain_start (nex_node_t *node, nex_error_t *err)
{
  if (node->cfg->retain_ended_ms <= 0)
    return NULL;
  nex_retain_t *r = nex_xzalloc (sizeof *r);
  r->node = node;
  pthread_mutex_init (&r->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&r->wake, &attr);
  pthread_condattr_destroy (&attr);
  int rc = pthread_create (&r->thread, NULL, retain_main, r);
  if (rc != 0)
    {
      pthread_cond_destroy (&r->wake);
      pthread_mutex_destroy (&r->lock);
      free (r);
      nex_error_sys (err, rc, "starting the retention thread");
      return NULL;
    }
  return r;
}

void
nex_retain_stop (nex_retain_t *r)
{
  if (r == NULL)
    return;
  pthread_mutex_lock (&r->lock);
  r->stopping = 1;
  pthread_cond_signal (&r->wake);
  pthread_mutex_unlock (&r->lock);
  pthread_join (r->thread, NULL);
  pthread_cond_destroy (&r->wake);
  pthread_mutex_destroy (&r->lock);
  free (r);
}
