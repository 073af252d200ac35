/* guard.c — see guard.h.  Connections are a doubly linked list under one mutex; the thread walks it. */
#include "server/api/guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

#define CHECK_EVERY_MS 200

typedef struct watched watched_t;

struct watched
{
  nex_guard_t *guard;
  int fd;
  int64_t since; /* monotonic ms: when the current request's time began */
  int busy;      /* exempt while an answer is sent, a poll parked, a websocket open */
  int shut;      /* shut down already */
  watched_t *prev, *next;
};

struct nex_guard
{
  pthread_mutex_t lock;
  pthread_cond_t wake;
  pthread_t thread;
  int stopping;
  int64_t deadline_ms;
  watched_t *head;
  uint64_t expired; /* under lock */
};

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
        if (!w->busy && !w->shut && now - w->since > g->deadline_ms)
          {
            /* Under the lock that the close notification takes: the descriptor is still libmicrohttpd's and
             * open, so this cannot hit another file that reused its number. */
            shutdown (w->fd, SHUT_RDWR);
            w->shut = 1;
            g->expired++;
          }
    }
  pthread_mutex_unlock (&g->lock);
  return NULL;
}

nex_guard_t *
nex_guard_start (int64_t deadline_ms, nex_error_t *err)
{
  nex_guard_t *g = nex_xzalloc (sizeof *g);
  g->deadline_ms = deadline_ms;
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
      w->shut = w->fd < 0;
      pthread_mutex_lock (&g->lock);
      w->next = g->head;
      if (g->head)
        g->head->prev = w;
      g->head = w;
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
  pthread_mutex_unlock (&g->lock);
  free (w);
  *socket_context = NULL;
}

static void
set_busy (struct MHD_Connection *conn, int busy)
{
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info (conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  watched_t *w = ci ? ci->socket_context : NULL;
  if (w == NULL)
    return;
  pthread_mutex_lock (&w->guard->lock);
  w->busy = busy;
  if (!busy)
    w->since = nex_clock_mono_ms ();
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
