/* SPDX-License-Identifier: Apache-2.0 */
/* test-bus.c — unit tests for the in-process publish/subscribe (server/bus.c): filters, the bounded queue that
 * drops its oldest messages and counts them, the eventfd wake-up, and publishing from several threads. */
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "server/bus.h"
#include "server/event.h"
#include "tests/unit/tap.h"

static nex_workload_t
workload (const char *id, const char *ns)
{
  nex_workload_t w = { 0 };
  snprintf (w.id, sizeof w.id, "%s", id);
  w.namespace_ = (char *)ns;
  return w;
}

static void
publish_event (nex_bus_t *bus, const char *type, const nex_workload_t *w)
{
  cleanup_json json_t *ev = nex_event_new ("node", type, w ? w->id : NULL, NULL);
  nex_bus_publish_event (bus, ev, w);
}

/* Pops everything from SUB; returns how many, with the total of missed counts in *MISSED and the last log seq. */
static int
drain (nex_bus_t *bus, nex_bus_sub_t *sub, uint64_t *missed, int64_t *last_seq)
{
  int n = 0;
  nex_bus_msg_t *m;
  uint64_t miss;
  *missed = 0;
  while (nex_bus_next (bus, sub, &m, &miss))
    {
      n++;
      *missed += miss;
      if (m->kind == NEX_BUS_LOG)
        *last_seq = m->seq;
      nex_bus_msg_unref (m);
    }
  return n;
}

static void
test_filters (void)
{
  nex_bus_t *bus = nex_bus_new ();
  nex_workload_t a = workload ("aaaaaaaa-0000-4000-8000-000000000000", "ns1");
  nex_workload_t b = workload ("bbbbbbbb-0000-4000-8000-000000000000", "ns2");
  nex_bus_filter_t all = { .kinds = NEX_BUS_EVENT | NEX_BUS_LOG };
  nex_bus_filter_t of_a = { .kinds = NEX_BUS_EVENT | NEX_BUS_LOG };
  snprintf (of_a.workload_id, sizeof of_a.workload_id, "%s", a.id);
  nex_bus_filter_t ns2_exits = { .kinds = NEX_BUS_EVENT, .namespace_ = "ns2", .type = "workload_exited" };
  nex_bus_filter_t logs_only = { .kinds = NEX_BUS_LOG };
  nex_bus_sub_t *s_all = nex_bus_subscribe (bus, &all, 100, 0, -1);
  nex_bus_sub_t *s_a = nex_bus_subscribe (bus, &of_a, 100, 0, -1);
  nex_bus_sub_t *s_exit = nex_bus_subscribe (bus, &ns2_exits, 100, 0, -1);
  nex_bus_sub_t *s_logs = nex_bus_subscribe (bus, &logs_only, 100, 0, -1);

  uint64_t before = nex_bus_event_count (bus);
  publish_event (bus, "node_started", NULL);
  publish_event (bus, "workload_exited", &a);
  publish_event (bus, "workload_exited", &b);
  publish_event (bus, "workload_started", &b);
  nex_bus_publish_log (bus, a.id, "ns1", 7, 1, 0, "hi\0there", 8);
  TAP_OK (nex_bus_event_count (bus) == before + 4, "event count counts events, not log lines");
  TAP_OK (nex_bus_wants_logs (bus, a.id) && nex_bus_wants_logs (bus, b.id), "log subscribers are known");

  uint64_t missed;
  int64_t seq = 0;
  TAP_OK (drain (bus, s_all, &missed, &seq) == 5 && missed == 0 && seq == 7, "an empty filter gets everything");
  TAP_OK (drain (bus, s_a, &missed, &seq) == 2, "a workload filter gets that workload's event and line");
  nex_bus_msg_t *m;
  TAP_OK (!nex_bus_next (bus, s_a, &m, &missed), "an empty queue answers 0");
  TAP_OK (nex_bus_next (bus, s_exit, &m, &missed) && strcmp (m->workload_id, b.id) == 0
              && strcmp (m->type, "workload_exited") == 0,
          "namespace and type filters");
  nex_bus_msg_unref (m);
  TAP_OK (!nex_bus_next (bus, s_exit, &m, &missed), "nothing else matched them");
  TAP_OK (nex_bus_next (bus, s_logs, &m, &missed) && m->len == 8 && memcmp (m->text, "hi\0there", 8) == 0,
          "a log line keeps its bytes, NUL included");
  nex_bus_msg_unref (m);

  nex_bus_unsubscribe (bus, s_logs);
  nex_bus_unsubscribe (bus, s_all);
  nex_bus_unsubscribe (bus, s_a);
  TAP_OK (!nex_bus_wants_logs (bus, a.id), "no log subscriber left");
  nex_bus_unsubscribe (bus, s_exit);
  nex_bus_free (bus);
}

static void
test_bounds (void)
{
  nex_bus_t *bus = nex_bus_new ();
  int efd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  nex_bus_filter_t logs = { .kinds = NEX_BUS_LOG };
  nex_bus_sub_t *small = nex_bus_subscribe (bus, &logs, 10, 0, efd);
  nex_bus_sub_t *bytes = nex_bus_subscribe (bus, &logs, 1000, 100, -1);
  char line[40];
  memset (line, 'x', sizeof line);
  for (int i = 1; i <= 25; i++)
    nex_bus_publish_log (bus, "w", NULL, i, 1, 0, line, sizeof line);
  uint64_t wakes = 0;
  TAP_OK (read (efd, &wakes, sizeof wakes) == sizeof wakes && wakes == 1,
          "one wake-up when the queue went from empty to non-empty (%llu)", (unsigned long long)wakes);

  nex_bus_msg_t *m;
  uint64_t missed;
  TAP_OK (nex_bus_next (bus, small, &m, &missed) && m->seq == 16 && missed == 15,
          "a full queue dropped its oldest: first kept is 16, 15 missed (got %lld, %llu)", (long long)m->seq,
          (unsigned long long)missed);
  nex_bus_msg_unref (m);
  int64_t last = 0;
  TAP_OK (drain (bus, small, &missed, &last) == 9 && missed == 0 && last == 25, "then the rest, up to the newest");
  TAP_OK (nex_bus_dropped (bus, small) == 15, "15 dropped in total");
  TAP_OK (nex_bus_next (bus, bytes, &m, &missed) && m->seq == 24 && missed == 23,
          "a byte bound of 100 keeps two 40-byte lines (first %lld, missed %llu)", (long long)m->seq,
          (unsigned long long)missed);
  nex_bus_msg_unref (m);
  for (int i = 26; i <= 27; i++)
    nex_bus_publish_log (bus, "w", NULL, i, 1, 0, line, sizeof line);
  TAP_OK (read (efd, &wakes, sizeof wakes) == sizeof wakes, "woken again once drained and refilled");
  nex_bus_unsubscribe (bus, small);
  nex_bus_unsubscribe (bus, bytes);
  close (efd);
  nex_bus_free (bus);
}

typedef struct
{
  nex_bus_t *bus;
  int base;
} pub_arg_t;

static void *
publisher (void *arg)
{
  pub_arg_t *p = arg;
  for (int i = 0; i < 5000; i++)
    nex_bus_publish_log (p->bus, "w", NULL, p->base + i, 1, 0, "line", 4);
  return NULL;
}

static void
test_threads (void)
{
  nex_bus_t *bus = nex_bus_new ();
  nex_bus_filter_t logs = { .kinds = NEX_BUS_LOG };
  nex_bus_sub_t *big = nex_bus_subscribe (bus, &logs, 100000, 0, -1);
  nex_bus_sub_t *tiny = nex_bus_subscribe (bus, &logs, 3, 0, -1);
  pthread_t t[4];
  pub_arg_t args[4];
  for (int i = 0; i < 4; i++)
    {
      args[i] = (pub_arg_t){ bus, i * 100000 };
      pthread_create (&t[i], NULL, publisher, &args[i]);
    }
  for (int i = 0; i < 4; i++)
    pthread_join (t[i], NULL);
  uint64_t missed;
  int64_t last;
  TAP_OK (drain (bus, big, &missed, &last) == 20000 && missed == 0, "4 threads x 5000 lines, none lost");
  int n = drain (bus, tiny, &missed, &last);
  TAP_OK (n == 3 && missed == 19997, "the tiny queue kept 3 and counted the rest (%d, %llu)", n,
          (unsigned long long)missed);
  nex_bus_unsubscribe (bus, big);
  nex_bus_unsubscribe (bus, tiny);
  nex_bus_free (bus);
}

int
main (void)
{
  test_filters ();
  test_bounds ();
  test_threads ();
  return tap_done ();
}
