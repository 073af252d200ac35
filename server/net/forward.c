/* SPDX-License-Identifier: Apache-2.0 */
/* net/forward.c — the TCP forwarder that gives bridge workloads the node's NATS server.
 *
 * The node's NATS server usually listens on the host's loopback, which a workload cannot reach: DNAT to
 * 127.0.0.1 would need route_localnet on the workload's link in the inbound direction, the very hole of
 * CVE-2020-8558.  Instead nexd listens on the gateway address (the host as every workload sees it) at the NATS
 * port and relays bytes to the real server.  The socket is bound with IP_FREEBIND, since the gateway address
 * exists only while some workload's link holds it; connections from outside the pool are closed at once (the
 * table lets workloads reach it only with `"nats": true` or an egress entry `nats`).
 *
 * One thread accepts; each connection is relayed by a detached thread of its own (poll on both sockets), at
 * most FORWARD_MAX_CONNS at once.  Connections end with nexd: NATS clients reconnect. */
#include "server/net/internal.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/log.h"

#define FORWARD_MAX_CONNS 256

struct nex_net_forward
{
  int listen_fd;
  pthread_t thread;
  char *upstream;
  int upstream_port;
  uint32_t pool_base, pool_mask;
  int conns; /* relaying now (atomic) */
  int stopping;
  int refs; /* the owner's (until nex_net_forward_stop) and one per relay thread (atomic): the last frees */
};

/* Drops one reference to F; the last one frees it. */
static void
forward_unref (nex_net_forward_t *f)
{
  if (__atomic_sub_fetch (&f->refs, 1, __ATOMIC_SEQ_CST) > 0)
    return;
  free (f->upstream);
  free (f);
}

typedef struct relay
{
  nex_net_forward_t *f;
  int a, b;
} relay_t;

/* Copies what is readable on FROM to TO: 1, or 0 at the end (or an error). */
static int
pump (int from, int to)
{
  char buf[16384];
  ssize_t n = read (from, buf, sizeof buf);
  if (n <= 0)
    return 0;
  for (ssize_t off = 0; off < n;)
    {
      ssize_t w = write (to, buf + off, (size_t)(n - off));
      if (w <= 0)
        return 0;
      off += w;
    }
  return 1;
}

static void *
relay_main (void *arg)
{
  relay_t *r = arg;
  /* Each direction ends on its own: an end of input from one side is passed on as a half close (shutdown of
   * writing) to the other, whose answer still flows back (a client that sends its request and closes its
   * writing side gets the reply). */
  struct pollfd p[2] = { { .fd = r->a, .events = POLLIN }, { .fd = r->b, .events = POLLIN } };
  int to[2] = { r->b, r->a };
  int open_dirs = 2;
  while (open_dirs > 0)
    {
      if (poll (p, 2, -1) < 0)
        {
          if (errno == EINTR)
            continue;
          break;
        }
      for (int k = 0; k < 2; k++)
        if (p[k].fd >= 0 && p[k].revents && !pump (p[k].fd, to[k]))
          {
            shutdown (to[k], SHUT_WR);
            p[k].fd = -1;
            open_dirs--;
          }
    }
  close (r->a);
  close (r->b);
  __atomic_sub_fetch (&r->f->conns, 1, __ATOMIC_SEQ_CST);
  forward_unref (r->f);
  free (r);
  return NULL;
}

/* A connected socket to the upstream server, or -1. */
static int
dial_upstream (const nex_net_forward_t *f)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
  char port[8];
  snprintf (port, sizeof port, "%d", f->upstream_port);
  if (getaddrinfo (f->upstream, port, &hints, &res) != 0)
    return -1;
  int fd = -1;
  for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
    {
      fd = socket (ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd >= 0 && connect (fd, ai->ai_addr, ai->ai_addrlen) < 0)
        {
          close (fd);
          fd = -1;
        }
    }
  freeaddrinfo (res);
  return fd;
}

static void
serve_one (nex_net_forward_t *f, int fd, const struct sockaddr_in *peer)
{
  uint32_t from = ntohl (peer->sin_addr.s_addr);
  if ((from & f->pool_mask) != f->pool_base || __atomic_add_fetch (&f->conns, 1, __ATOMIC_SEQ_CST) > FORWARD_MAX_CONNS)
    {
      if ((from & f->pool_mask) == f->pool_base)
        __atomic_sub_fetch (&f->conns, 1, __ATOMIC_SEQ_CST);
      close (fd);
      return;
    }
  int up = dial_upstream (f);
  pthread_attr_t attr;
  pthread_t t;
  relay_t *r = nex_xzalloc (sizeof *r);
  *r = (relay_t){ .f = f, .a = fd, .b = up };
  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize (&attr, 64 * 1024);
  __atomic_add_fetch (&f->refs, 1, __ATOMIC_SEQ_CST); /* the relay's */
  if (up < 0 || pthread_create (&t, &attr, relay_main, r) != 0)
    {
      close (fd);
      if (up >= 0)
        close (up);
      free (r);
      __atomic_sub_fetch (&f->conns, 1, __ATOMIC_SEQ_CST);
      __atomic_sub_fetch (&f->refs, 1, __ATOMIC_SEQ_CST); /* the owner's is still held: never the last */
    }
  pthread_attr_destroy (&attr);
}

static void *
accept_main (void *arg)
{
  nex_net_forward_t *f = arg;
  while (!__atomic_load_n (&f->stopping, __ATOMIC_SEQ_CST))
    {
      struct sockaddr_in peer;
      socklen_t len = sizeof peer;
      int fd = accept4 (f->listen_fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
      if (fd < 0)
        {
          if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
            continue;
          break;
        }
      serve_one (f, fd, &peer);
    }
  return NULL;
}

nex_net_forward_t *
nex_net_forward_start (const nex_net_pool_t *pool, int port, const char *upstream, int upstream_port, nex_error_t *err)
{
  cleanup_close int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in sa
      = { .sin_family = AF_INET, .sin_port = htons ((uint16_t)port), .sin_addr.s_addr = htonl (pool->gateway) };
  char a[16];
  if (fd < 0 || setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
      || setsockopt (fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one) < 0
      || bind (fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen (fd, 128) < 0)
    {
      nex_error_sys (err, errno, "NATS forwarder on %s:%d", nex_net_addr_text (pool->gateway, a), port);
      return NULL;
    }
  nex_net_forward_t *f = nex_xzalloc (sizeof *f);
  f->upstream = nex_xstrdup (upstream);
  f->upstream_port = upstream_port;
  f->pool_mask = ~0u << (32 - pool->prefix);
  f->pool_base = pool->base & f->pool_mask;
  f->listen_fd = fd;
  f->refs = 1;
  int r = pthread_create (&f->thread, NULL, accept_main, f);
  if (r != 0)
    {
      free (f->upstream);
      free (f);
      nex_error_sys (err, r, "NATS forwarder thread");
      return NULL;
    }
  fd = -1;
  return f;
}

void
nex_net_forward_stop (nex_net_forward_t *f)
{
  if (f == NULL)
    return;
  __atomic_store_n (&f->stopping, 1, __ATOMIC_SEQ_CST);
  shutdown (f->listen_fd, SHUT_RDWR);
  if (f->thread)
    pthread_join (f->thread, NULL);
  close (f->listen_fd);
  /* Relays still running hold F; they end with their connections or with nexd, and the last frees it. */
  forward_unref (f);
}
