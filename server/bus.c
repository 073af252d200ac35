/* SPDX-License-Identifier: Apache-2.0 */
/* bus.c — see bus.h.  Subscriptions are a linked list under one mutex; each has a ring of message pointers. */
#include "server/bus.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/xalloc.h"

struct nex_bus_sub
{
  nex_bus_filter_t filter;
  nex_bus_msg_t **ring; /* capacity max_msgs */
  size_t max_msgs;
  size_t max_bytes;
  size_t head, count; /* oldest at ring[head] */
  size_t bytes;       /* log text queued */
  uint64_t missed;    /* dropped since the last nex_bus_next */
  uint64_t dropped;   /* dropped in total */
  int notify_fd;
  nex_bus_sub_t *next;
};

struct nex_bus
{
  pthread_mutex_t lock;
  nex_bus_sub_t *subs;
  uint64_t events; /* events published */
};

nex_bus_t *
nex_bus_new (void)
{
  nex_bus_t *bus = nex_xzalloc (sizeof *bus);
  pthread_mutex_init (&bus->lock, NULL);
  return bus;
}

void
nex_bus_free (nex_bus_t *bus)
{
  if (bus == NULL)
    return;
  while (bus->subs)
    nex_bus_unsubscribe (bus, bus->subs);
  pthread_mutex_destroy (&bus->lock);
  free (bus);
}

void
nex_bus_msg_unref (nex_bus_msg_t *m)
{
  if (m == NULL || __atomic_sub_fetch (&m->refs, 1, __ATOMIC_ACQ_REL) > 0)
    return;
  json_decref (m->event);
  free (m->namespace_);
  free (m->text);
  free (m->frame);
  free (m);
}

uint64_t
nex_bus_event_count (nex_bus_t *bus)
{
  return __atomic_load_n (&bus->events, __ATOMIC_ACQUIRE);
}

nex_bus_sub_t *
nex_bus_subscribe (nex_bus_t *bus, const nex_bus_filter_t *f, size_t max_msgs, size_t max_bytes, int notify_fd)
{
  nex_bus_sub_t *s = nex_xzalloc (sizeof *s);
  s->filter = *f;
  s->max_msgs = max_msgs ? max_msgs : 1;
  s->max_bytes = max_bytes;
  s->ring = nex_xzalloc (s->max_msgs * sizeof *s->ring);
  s->notify_fd = notify_fd;
  pthread_mutex_lock (&bus->lock);
  s->next = bus->subs;
  bus->subs = s;
  pthread_mutex_unlock (&bus->lock);
  return s;
}

/* Removes the oldest message of S.  Caller holds the lock. */
static nex_bus_msg_t *
pop_locked (nex_bus_sub_t *s)
{
  nex_bus_msg_t *m = s->ring[s->head];
  s->ring[s->head] = NULL;
  s->head = (s->head + 1) % s->max_msgs;
  s->count--;
  s->bytes -= m->kind == NEX_BUS_LOG ? m->len : 0;
  return m;
}

void
nex_bus_unsubscribe (nex_bus_t *bus, nex_bus_sub_t *sub)
{
  if (sub == NULL)
    return;
  pthread_mutex_lock (&bus->lock);
  for (nex_bus_sub_t **p = &bus->subs; *p; p = &(*p)->next)
    if (*p == sub)
      {
        *p = sub->next;
        break;
      }
  while (sub->count)
    nex_bus_msg_unref (pop_locked (sub));
  pthread_mutex_unlock (&bus->lock);
  free (sub->ring);
  free (sub);
}

int
nex_bus_next (nex_bus_t *bus, nex_bus_sub_t *sub, nex_bus_msg_t **out, uint64_t *missed)
{
  pthread_mutex_lock (&bus->lock);
  int r = sub->count > 0;
  if (r)
    {
      *out = pop_locked (sub);
      *missed = sub->missed;
      sub->missed = 0;
    }
  pthread_mutex_unlock (&bus->lock);
  return r;
}

uint64_t
nex_bus_dropped (nex_bus_t *bus, nex_bus_sub_t *sub)
{
  pthread_mutex_lock (&bus->lock);
  uint64_t d = sub->dropped;
  pthread_mutex_unlock (&bus->lock);
  return d;
}

static int
matches (const nex_bus_filter_t *f, const nex_bus_msg_t *m)
{
  if (!(f->kinds & m->kind))
    return 0;
  if (f->workload_id[0] && strcmp (f->workload_id, m->workload_id) != 0)
    return 0;
  if (f->namespace_[0] && (m->namespace_ == NULL || strcmp (f->namespace_, m->namespace_) != 0))
    return 0;
  if (f->type[0] && (m->kind != NEX_BUS_EVENT || strcmp (f->type, m->type) != 0))
    return 0;
  return 1;
}

/* Queues M on every matching subscription, dropping their oldest messages to make room. */
static void
publish (nex_bus_t *bus, nex_bus_msg_t *m)
{
  size_t size = m->kind == NEX_BUS_LOG ? m->len : 0;
  pthread_mutex_lock (&bus->lock);
  if (m->kind == NEX_BUS_EVENT)
    __atomic_add_fetch (&bus->events, 1, __ATOMIC_ACQ_REL);
  for (nex_bus_sub_t *s = bus->subs; s; s = s->next)
    {
      if (!matches (&s->filter, m))
        continue;
      /* A slow subscriber loses its oldest messages, never slows the publisher: the bound is what keeps the
       * node's memory flat whatever a workload writes and however slowly a client reads. */
      while (s->count > 0 && (s->count == s->max_msgs || (s->max_bytes && s->bytes + size > s->max_bytes)))
        {
          nex_bus_msg_unref (pop_locked (s));
          s->missed++;
          s->dropped++;
        }
      __atomic_add_fetch (&m->refs, 1, __ATOMIC_ACQ_REL);
      s->ring[(s->head + s->count) % s->max_msgs] = m;
      s->count++;
      s->bytes += size;
      if (s->count == 1 && s->notify_fd >= 0)
        {
          uint64_t one = 1;
          (void)!write (s->notify_fd, &one, sizeof one);
        }
    }
  pthread_mutex_unlock (&bus->lock);
  nex_bus_msg_unref (m); /* the publisher's reference */
}

void
nex_bus_publish_event (nex_bus_t *bus, json_t *event, const nex_workload_t *w)
{
  nex_bus_msg_t *m = nex_xzalloc (sizeof *m);
  m->refs = 1;
  m->kind = NEX_BUS_EVENT;
  m->event = json_incref (event);
  m->type = json_string_value (json_object_get (event, "type"));
  if (m->type == NULL)
    m->type = "";
  if (w)
    {
      snprintf (m->workload_id, sizeof m->workload_id, "%s", w->id);
      m->namespace_ = w->namespace_ ? nex_xstrdup (w->namespace_) : NULL;
    }
  publish (bus, m);
}

void
nex_bus_publish_log (nex_bus_t *bus, const char *id, const char *namespace_, int64_t seq, int stream, int64_t ts,
                     const char *text, size_t len)
{
  nex_bus_msg_t *m = nex_xzalloc (sizeof *m);
  m->refs = 1;
  m->kind = NEX_BUS_LOG;
  snprintf (m->workload_id, sizeof m->workload_id, "%s", id);
  m->namespace_ = namespace_ ? nex_xstrdup (namespace_) : NULL;
  m->seq = seq;
  m->stream = stream;
  m->ts = ts;
  m->text = nex_xmalloc (len + 1); /* by length: a line may hold NUL bytes */
  memcpy (m->text, text, len);
  m->text[len] = '\0';
  m->len = len;
  publish (bus, m);
}

int
nex_bus_wants_logs (nex_bus_t *bus, const char *id)
{
  int r = 0;
  pthread_mutex_lock (&bus->lock);
  for (nex_bus_sub_t *s = bus->subs; s && !r; s = s->next)
    r = (s->filter.kinds & NEX_BUS_LOG)
        && (s->filter.workload_id[0] == '\0' || strcmp (s->filter.workload_id, id) == 0);
  pthread_mutex_unlock (&bus->lock);
  return r;
}
