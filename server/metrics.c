/* SPDX-License-Identifier: Apache-2.0 */
/* metrics.c — see metrics.h. */
#include "server/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "autoconfig.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"
#include "server/net/net.h"
#include "server/registry.h"

/* --- histograms --------------------------------------------------------------------------------------------- */

#define N_BUCKETS 12
static const double bucket_bounds[N_BUCKETS]
    = { 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }; /* seconds */

typedef struct histogram
{
  uint64_t buckets[N_BUCKETS]; /* not cumulative; summed when rendered */
  uint64_t count;
  uint64_t sum_us;
} histogram_t;

static void
observe (histogram_t *h, int64_t ms)
{
  if (ms < 0)
    return; /* not to be counted */
  double s = (double)ms / 1000.0;
  for (int i = 0; i < N_BUCKETS; i++)
    if (s <= bucket_bounds[i])
      {
        __atomic_add_fetch (&h->buckets[i], 1, __ATOMIC_RELAXED);
        break;
      }
  __atomic_add_fetch (&h->count, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch (&h->sum_us, (uint64_t)(ms > 0 ? ms : 0) * 1000, __ATOMIC_RELAXED);
}

/* --- state -------------------------------------------------------------------------------------------------- */

#define MAX_REQUEST_KEYS 512

typedef struct request_key
{
  const char *route; /* a route pattern (static storage), or NULL */
  char method[8];
  unsigned status;
  uint64_t count;
} request_key_t;

static struct
{
  pthread_mutex_t lock; /* guards requests[] */
  request_key_t requests[MAX_REQUEST_KEYS];
  size_t n_requests;
  uint64_t requests_overflow; /* requests whose key did not fit */
  histogram_t request_seconds;
  histogram_t start_seconds;
  histogram_t function_seconds;
  uint64_t function_runs, function_failures;
  uint64_t deploys, failures, exits, stops, events;
  uint64_t log_lines, log_bytes, log_lost, output_dropped;
  uint64_t uploads, upload_bytes;
} m = { .lock = PTHREAD_MUTEX_INITIALIZER };

void
nex_metrics_request (const char *route, const char *method, unsigned status, int64_t ms)
{
  observe (&m.request_seconds, ms);
  pthread_mutex_lock (&m.lock);
  size_t i;
  for (i = 0; i < m.n_requests; i++)
    if (m.requests[i].route == route && m.requests[i].status == status
        && strncmp (m.requests[i].method, method, sizeof m.requests[i].method - 1) == 0)
      break;
  if (i == m.n_requests && m.n_requests < MAX_REQUEST_KEYS)
    {
      /* Methods outside the usual ones are counted as OTHER: a client cannot grow this table at will. */
      static const char *const known[] = { "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", NULL };
      const char *name = "OTHER";
      for (size_t k = 0; known[k]; k++)
        if (strcmp (method, known[k]) == 0)
          name = known[k];
      for (i = 0; i < m.n_requests; i++)
        if (m.requests[i].route == route && m.requests[i].status == status && strcmp (m.requests[i].method, name) == 0)
          break;
      if (i == m.n_requests)
        {
          m.requests[i] = (request_key_t){ .route = route, .status = status };
          snprintf (m.requests[i].method, sizeof m.requests[i].method, "%s", name);
          m.n_requests++;
        }
    }
  if (i < m.n_requests)
    m.requests[i].count++;
  else
    m.requests_overflow++;
  pthread_mutex_unlock (&m.lock);
}

void
nex_metrics_event (const char *type, int64_t start_ms)
{
  __atomic_add_fetch (&m.events, 1, __ATOMIC_RELAXED);
  if (strcmp (type, "workload_deployed") == 0)
    __atomic_add_fetch (&m.deploys, 1, __ATOMIC_RELAXED);
  else if (strcmp (type, "workload_failed") == 0)
    __atomic_add_fetch (&m.failures, 1, __ATOMIC_RELAXED);
  else if (strcmp (type, "workload_exited") == 0)
    __atomic_add_fetch (&m.exits, 1, __ATOMIC_RELAXED);
  else if (strcmp (type, "workload_stopped") == 0)
    __atomic_add_fetch (&m.stops, 1, __ATOMIC_RELAXED);
  else if (strcmp (type, "workload_started") == 0 && start_ms >= 0)
    observe (&m.start_seconds, start_ms);
}

void
nex_metrics_log_lost (uint64_t n)
{
  __atomic_add_fetch (&m.log_lost, n, __ATOMIC_RELAXED);
}

void
nex_metrics_function_run (int succeeded, int64_t elapsed_ms)
{
  __atomic_add_fetch (&m.function_runs, 1, __ATOMIC_RELAXED);
  if (!succeeded)
    __atomic_add_fetch (&m.function_failures, 1, __ATOMIC_RELAXED);
  observe (&m.function_seconds, elapsed_ms < 0 ? 0 : elapsed_ms);
}

void
nex_metrics_output_dropped (uint64_t n)
{
  __atomic_add_fetch (&m.output_dropped, n, __ATOMIC_RELAXED);
}

void
nex_metrics_log_lines (uint64_t n, uint64_t bytes)
{
  __atomic_add_fetch (&m.log_lines, n, __ATOMIC_RELAXED);
  __atomic_add_fetch (&m.log_bytes, bytes, __ATOMIC_RELAXED);
}

void
nex_metrics_upload (uint64_t bytes)
{
  __atomic_add_fetch (&m.uploads, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch (&m.upload_bytes, bytes, __ATOMIC_RELAXED);
}

/* --- rendering ---------------------------------------------------------------------------------------------- */

typedef struct text
{
  char *buf;
  size_t len, cap;
} text_t;

static void __attribute__ ((format (printf, 2, 3))) put (text_t *t, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  cleanup_free char *s = nex_xvasprintf (fmt, ap);
  va_end (ap);
  size_t n = strlen (s);
  if (t->len + n + 1 > t->cap)
    {
      t->cap = (t->len + n + 1) * 2;
      t->buf = nex_xrealloc (t->buf, t->cap);
    }
  memcpy (t->buf + t->len, s, n + 1);
  t->len += n;
}

static void
header (text_t *t, const char *name, const char *type, const char *help)
{
  put (t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
counter (text_t *t, const char *name, const char *help, uint64_t v)
{
  header (t, name, "counter", help);
  put (t, "%s %llu\n", name, (unsigned long long)v);
}

static void
histogram (text_t *t, const char *name, const char *help, histogram_t *h)
{
  header (t, name, "histogram", help);
  uint64_t cumulative = 0;
  for (int i = 0; i < N_BUCKETS; i++)
    {
      cumulative += __atomic_load_n (&h->buckets[i], __ATOMIC_RELAXED);
      put (t, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_bounds[i], (unsigned long long)cumulative);
    }
  uint64_t count = __atomic_load_n (&h->count, __ATOMIC_RELAXED);
  put (t, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
  put (t, "%s_sum %.6f\n%s_count %llu\n", name, (double)__atomic_load_n (&h->sum_us, __ATOMIC_RELAXED) / 1e6, name,
       (unsigned long long)count);
}

char *
nex_metrics_render (nex_node_t *node, const nex_metrics_gauges_t *g)
{
  text_t t = { .buf = nex_xstrdup (""), .cap = 1 };
  header (&t, "nex_build_info", "gauge", "the running nexd (always 1)");
  put (&t, "nex_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
  header (&t, "nex_uptime_seconds", "gauge", "seconds since nexd started");
  put (&t, "nex_uptime_seconds %.3f\n", (double)(nex_clock_mono_ms () - node->started_mono) / 1000.0);

  int64_t counts[NEX_STATE__COUNT];
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_count_by_state (node->reg, counts, &err) == 0)
    {
      header (&t, "nex_workloads", "gauge", "workloads the node has, by state");
      for (int s = 0; s < NEX_STATE__COUNT; s++)
        put (&t, "nex_workloads{state=\"%s\"} %lld\n", nex_state_name ((nex_state_t)s), (long long)counts[s]);
    }
  else
    nex_log_error (NEX_LOG_WARN, err, "metrics: counting workloads");

  counter (&t, "nex_deploys_total", "workloads deployed", __atomic_load_n (&m.deploys, __ATOMIC_RELAXED));
  counter (&t, "nex_workload_failures_total", "workloads that ended failed (Nex could not run them)",
           __atomic_load_n (&m.failures, __ATOMIC_RELAXED));
  counter (&t, "nex_workload_exits_total", "workloads that exited by themselves",
           __atomic_load_n (&m.exits, __ATOMIC_RELAXED));
  counter (&t, "nex_workload_stops_total", "workloads stopped on request",
           __atomic_load_n (&m.stops, __ATOMIC_RELAXED));
  counter (&t, "nex_events_total", "events emitted", __atomic_load_n (&m.events, __ATOMIC_RELAXED));
  histogram (&t, "nex_workload_start_seconds", "from deploy to running", &m.start_seconds);
  counter (&t, "nex_function_runs_total", "function invocations that ended (succeeded or failed)",
           __atomic_load_n (&m.function_runs, __ATOMIC_RELAXED));
  counter (&t, "nex_function_failures_total", "function invocations that failed (exit code, signal, timeout, refusal)",
           __atomic_load_n (&m.function_failures, __ATOMIC_RELAXED));
  histogram (&t, "nex_function_seconds", "a function invocation, from its trigger message to its end",
             &m.function_seconds);
  counter (&t, "nex_log_lines_total", "output lines stored", __atomic_load_n (&m.log_lines, __ATOMIC_RELAXED));
  counter (&t, "nex_log_bytes_total", "bytes of output lines stored", __atomic_load_n (&m.log_bytes, __ATOMIC_RELAXED));
  counter (&t, "nex_log_lines_lost_total", "output lines that could not be stored (the registry was full)",
           __atomic_load_n (&m.log_lost, __ATOMIC_RELAXED));
  counter (&t, "nex_output_dropped_bytes_total",
           "bytes of output agents discarded because nexd did not read them fast enough (8 MiB waited)",
           __atomic_load_n (&m.output_dropped, __ATOMIC_RELAXED));
  int64_t kept = 0, dropped = 0;
  if (nex_registry_log_totals (node->reg, &kept, &dropped, &err) == 0)
    counter (&t, "nex_log_lines_dropped_total",
             "output lines deleted to keep the per-workload bound (log_lines), over the workloads on record",
             (uint64_t)dropped);
  counter (&t, "nex_artifact_uploads_total", "artifacts uploaded", __atomic_load_n (&m.uploads, __ATOMIC_RELAXED));
  counter (&t, "nex_artifact_upload_bytes_total", "bytes of artifacts uploaded",
           __atomic_load_n (&m.upload_bytes, __ATOMIC_RELAXED));

  header (&t, "nex_websocket_clients", "gauge", "websocket streams open");
  put (&t, "nex_websocket_clients %d\n", g ? g->websocket_clients : 0);
  counter (&t, "nex_websocket_messages_dropped_total", "messages skipped because a websocket client read too slowly",
           g ? g->websocket_dropped : 0);
  counter (&t, "nex_http_connections_expired_total", "connections shut down for missing their request deadline",
           g ? g->http_expired : 0);
  counter (&t, "nex_http_connections_shed_total",
           "slow connections shut down to make room for a newcomer beyond the connection cap", g ? g->http_shed : 0);
  header (&t, "nex_http_parked_requests", "gauge", "long polls (GET .../wait) waiting");
  put (&t, "nex_http_parked_requests %d\n", g ? g->parked_requests : 0);

  header (&t, "nex_http_requests_total", "counter", "HTTP requests answered, by route, method and status");
  pthread_mutex_lock (&m.lock);
  for (size_t i = 0; i < m.n_requests; i++)
    put (&t, "nex_http_requests_total{route=\"%s\",method=\"%s\",status=\"%u\"} %llu\n",
         m.requests[i].route ? m.requests[i].route : "none", m.requests[i].method, m.requests[i].status,
         (unsigned long long)m.requests[i].count);
  uint64_t overflow = m.requests_overflow;
  pthread_mutex_unlock (&m.lock);
  if (overflow)
    put (&t, "nex_http_requests_total{route=\"other\",method=\"OTHER\",status=\"0\"} %llu\n",
         (unsigned long long)overflow);
  histogram (&t, "nex_http_request_duration_seconds", "time from a request's headers to its completion",
             &m.request_seconds);
  cleanup_free char *net = nex_net_metrics (node->net);
  put (&t, "%s", net);
  return t.buf;
}
