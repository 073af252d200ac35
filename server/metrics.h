/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.h — the node's Prometheus metrics (GET /metrics, text exposition format 0.0.4).
 *
 * Counters and histograms that events update as they happen live here, process-wide, updated with atomics (no
 * lock on the hot paths: a request, a log line); gauges that the registry or other modules already know (workloads
 * by state, websocket clients) are read when a scrape renders the page.  Metric names start with `nex_`.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef NEX_METRICS_H
#define NEX_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "server/node.h"

/* Counts one finished HTTP request: its route pattern (NULL: no route matched), method and status, and its
 * duration. */
void nex_metrics_request (const char *route, const char *method, unsigned status, int64_t ms);

/* Counts an event of TYPE (nex_node_emit calls it); for workload_started, START_MS is how long the workload took
 * from deploy to running (else ignored). */
void nex_metrics_event (const char *type, int64_t start_ms);

/* Counts N log lines of BYTES bytes stored. */
void nex_metrics_log_lines (uint64_t n, uint64_t bytes);

/* Counts N output lines that could not be stored (a full registry). */
void nex_metrics_log_lost (uint64_t n);

/* Counts a function's run (SUCCEEDED or not) that took ELAPSED_MS from its trigger message to its end. */
void nex_metrics_function_run (int succeeded, int64_t elapsed_ms);

/* Counts N bytes of output an agent discarded because nexd did not read it fast enough (its EXIT says so). */
void nex_metrics_output_dropped (uint64_t n);

/* Counts an artifact upload of BYTES bytes. */
void nex_metrics_upload (uint64_t bytes);

/* Gauges read at scrape time, supplied by the API (so that this module depends on nothing above it). */
typedef struct nex_metrics_gauges
{
  int websocket_clients;
  uint64_t websocket_dropped; /* messages skipped for slow websocket clients, in total */
  int parked_requests;        /* long polls waiting */
  uint64_t http_expired;      /* connections shut for missing a request deadline (guard.h), in total */
  uint64_t http_shed;         /* connections shut to make room beyond the connection cap, in total */
} nex_metrics_gauges_t;

/* Renders every metric as Prometheus text into a new string (caller frees); reads the registry for workload
 * counts. */
char *nex_metrics_render (nex_node_t *node, const nex_metrics_gauges_t *g);

#endif
