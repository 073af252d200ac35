/* SPDX-License-Identifier: Apache-2.0 */
/* guard.c — see guard.h.  Connections are a doubly linked list under one mutex; the thread walks it, and a
 * connection that arrives beyond the cap walks it to choose whom to shed. */
#include "server/api/guard.h"

#include <errno.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received (glibc's netinet/tcp.h lacks it) */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

#define CHECK_EVERY_MS 200
/* A connection younger than this is never shed: a normal client sends its headers within milliseconds, so only
 * one that has had this long and still has not finished them is a candidate. */
#define SHED_MIN_AGE_MS 1000

typedef struct watched watched_t;

struct watched
{
  nex_guard_t *guard;
  int fd;
  int64_t since;    /* monotonic ms: when the current request's time began */
  int headers_done; /* the current request's headers are in (only its body may still be coming) */
  int busy;         /* exempt while an answer is sent, a poll parked, a websocket open */
  int shut;         /* shut down already */
  watched_t *prev, *next;
};

struct nex_guard
{
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_t thread;
  int stopping;
  int64_t header_deadline_ms; /* from the request's start until its headers are in */
  int64_t deadline_ms;        /* from the request's start until its body is in */
  long cap;                   /* connections served at once; a newcomer beyond it sheds one */
  long open;                  /* watched connections, shut ones included until they close */
  long open_shut;             /* of those, shut down and not closed yet */
  watched_t *head;
  uint64_t expired; /* under lock */
  uint64_t shed;    /* under lock */
};

/* Shuts W's socket down (under G's lock, which the close notification also takes: the descriptor is still
 * libmicrohttpd's and open, so this cannot hit another file that reused its number).  libmicrohttpd sees
 * end-of-file and closes the connection the usual way. */
static void
shut_locked (nex_guard_t *g, watched_t *w)
{
  shutdown (w->fd, SHUT_RDWR);
  w->shut = 1;
  g->open_shut++;
}

/* Bytes the kernel has received on W's socket so far (TCP_INFO), or 0 when it cannot say. */
static uint64_t
bytes_received (const watched_t *w)
{
  struct tcp_info ti = { 0 };
  socklen_t len = sizeof ti;
  if (getsockopt (w->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
    return 0;
  return ti.tcpi_bytes_received;
}

/* The connection to shed when a newcomer arrives beyond the cap: among those still sending the headers of a
 * request for at least SHED_MIN_AGE_MS, the one that has sent the fewest bytes, the oldest of those on a tie —
 * a slowloris, not the newcomer, which is the one most likely to be a normal client.  NULL when there is none. */
static watched_t *
shed_victim_locked (nex_guard_t *g, int64_t now)
{
  watched_t *best = NULL;
  uint64_t best_bytes = 0;
  for (watched_t *w = g->head; w; w = w->next)
    {
      if (w->busy || w->shut || w->headers_done || now - w->since < SHED_MIN_AGE_MS)
        continue;
      uint64_t b = bytes_received (w);
      if (best == NULL || b < best_bytes || (b == best_bytes && w->since < best->since))
        best = w, best_bytes = b;
    }
  return best;
}

static void *
guard_main (void *arg)
{
  nex_guard_t *g = arg;
  pthread_mutex_lock (&g->lock);
  while (!g->stopping)
    {
      struct timespec ts;
      clock_gettime (CLOCK_MONOTONIC, &ts);
      ts.tv_nsec += CHECK_EVERY_MS * 1000000L;
      ts.tv_sec += ts.tv_nsec / 1000000000L;
      ts.tv_nsec %= 1000000000L;
      pthread_cond_timedwait (&g->wake, &g->lock, &ts);
      int64_t now = nex_clock_mono_ms ();
      for (watched_t *w = g->head; w; w = w->next)
        if (!w->busy && !w->shut && now - w->since > (w->headers_done ? g->deadline_ms : g->header_deadline_ms))
          {
            shut_locked (g, w);
            g->expired++;
          }
    }
  pthread_mutex_unlock (&g->lock);
  return NULL;
}

nex_guard_t *
nex_guard_start (int64_t header_deadline_ms, int64_t deadline_ms, long cap, nex_error_t *err)
{
  nex_guard_t *g = nex_xzalloc (sizeof *g);
  g->header_deadline_ms = header_deadline_ms < deadline_ms ? header_deadline_ms : deadline_ms;
  g->deadline_ms = deadline_ms;
  g->cap = cap;
  pthread_mutex_init (&g->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&g->wake, &attr);
  pthread_condattr_destroy (&attr);
  int r = pthread_create (&g->thread, NULL, guard_main, g);
  if (r != 0)
    {
      nex_error_sys (err, r, "start the request guard");
      pthread_cond_destroy (&g->wake);
      pthread_mutex_destroy (&g->lock);
      free (g);
      return NULL;
    }
  return g;
}

void
nex_guard_stop (nex_guard_t *g)
{
  if (g == NULL)
    return;
  pthread_mutex_lock (&g->lock);
  g->stopping = 1;
  pthread_cond_signal (&g->wake);
  pthread_mutex_unlock (&g->lock);
  pthread_join (g->thread, NULL);
  while (g->head)
    {
      watched_t *w = g->head;
      g->head = w->next;
      free (w);
    }
  pthread_cond_destroy (&g->wake);
  pthread_mutex_destroy (&g->lock);
  free (g);
}

void
nex_guard_notify (void *cls, struct MHD_Connection *conn, void **socket_context,
                  enum MHD_ConnectionNotificationCode code)
{
  nex_guard_t *g = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED)
    {
      const union MHD_ConnectionInfo *ci = MHD_get_connection_info (conn, MHD_CONNECTION_INFO_CONNECTION_FD);
      watched_t *w = nex_xzalloc (sizeof *w);
      w->guard = g;
      w->fd = ci ? ci->connect_fd : -1;
      w->since = nex_clock_mono_ms ();
      pthread_mutex_lock (&g->lock);
      w->next = g->head;
      if (g->head)
        g->head->prev = w;
      g->head = w;
      g->open++;
      if (w->fd < 0)
        w->shut = 1, g->open_shut++;
      if (g->open - g->open_shut > g->cap)
        {
          /* Beyond the cap: shed the slowest sender of headers, or, when every connection is busy or quick,
           * this newcomer (as a plain connection limit would). */
          watched_t *victim = shed_victim_locked (g, w->since);
          shut_locked (g, victim ? victim : w);
          g->shed++;
        }
      pthread_mutex_unlock (&g->lock);
      *socket_context = w;
      return;
    }
  watched_t *w = *socket_context;
  if (w == NULL)
    return;
  pthread_mutex_lock (&g->lock);
  if (w->prev)
    w->prev->next = w->next;
  else
    g->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  g->open--;
  if (w->shut)
    g->open_shut--;
  pthread_mutex_unlock (&g->lock);
  free (w);
  *socket_context = NULL;
}

static watched_t *
watched_of (struct MHD_Connection *conn)
{
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info (conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

static void
set_busy (struct MHD_Connection *conn, int busy)
{
  watched_t *w = watched_of (conn);
  if (w == NULL)
    return;
  pthread_mutex_lock (&w->guard->lock);
  w->busy = busy;
  if (!busy)
    {
      w->since = nex_clock_mono_ms ();
      w->headers_done = 0;
    }
  pthread_mutex_unlock (&w->guard->lock);
}

void
nex_guard_headers (struct MHD_Connection *conn)
{
  watched_t *w = watched_of (conn);
  if (w == NULL)
    return;
  pthread_mutex_lock (&w->guard->lock);
  w->headers_done = 1;
  pthread_mutex_unlock (&w->guard->lock);
}

void
nex_guard_busy (struct MHD_Connection *conn)
{
  set_busy (conn, 1);
}

void
nex_guard_idle (struct MHD_Connection *conn)
{
  set_busy (conn, 0);
}

uint64_t
nex_guard_expired (nex_guard_t *g)
{
  pthread_mutex_lock (&g->lock);
  uint64_t n = g->expired;
  pthread_mutex_unlock (&g->lock);
  return n;
}

uint64_t
nex_guard_shed (nex_guard_t *g)
{
  pthread_mutex_lock (&g->lock);
  uint64_t n = g->shed;
  pthread_mutex_unlock (&g->lock);
  return n;
}
