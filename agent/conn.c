/* SPDX-License-Identifier: Apache-2.0 */
/* conn.c — nex-agent's end of the host connection (see agent.h).
 *
 * The agent is the server end of its channel, so that a restarted nexd can reach it again: on a listening
 * transport every accept replaces the current connection; on a stream (a console) the one connection lasts the
 * agent's life and a host re-greets with HELLO.  This file opens the transport, greets, reads frames and hands
 * each to request.c, writes the queue (queue.c) whenever the connection takes it, and hangs up on a host that
 * breaks the protocol or does not read its replies. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"

#define AGENT_REPLY_LIMIT (1u << 20) /* replies queued for one connection before it is cut off */

static const char *
state_name (nex_agent_state_t state)
{
  switch (state)
    {
    case AGENT_IDLE:
      return "idle";
    case AGENT_RUNNING:
    case AGENT_DRAINING:
      return "running";
    case AGENT_EXITED:
      return "exited";
    }
  return "idle";
}

void
nex_agent_exit (nex_agent_t *a, int code)
{
  nex_agent_conn_flush (a);
  nex_agent_log ("exiting");
  exit (code);
}

/* NONCE: over a stream that the host re-attached to mid-flow, the echo tells the reply apart from bytes that
 * merely look like a HELLO (the workload's output cannot know it). */
void
nex_agent_conn_hello (nex_agent_t *a, json_t *nonce)
{
  const nex_agent_proc_t *w = nex_agent_workload (a);
  json_t *o = json_object ();
  if (json_is_string (nonce) && json_string_length (nonce) <= 64)
    json_object_set (o, "nonce", nonce);
  json_object_set_new (o, "version", json_integer (NEX_WIRE_VERSION));
  json_object_set_new (o, "agent_pid", json_integer (getpid ()));
  json_object_set_new (o, "state", json_string (state_name (nex_agent_workload_state (a))));
  if (w->pid > 0)
    json_object_set_new (o, "pid", json_integer (w->pid));
  if (a->exit_info)
    json_object_set (o, "exit", a->exit_info);
  /* The output this host may not have comes again right after the greeting (wire.h). */
  uint64_t next[2];
  nex_agent_queue_resend (a, next);
  json_object_set_new (o, "output",
                       json_pack ("{s:I, s:I}", "stdout", (json_int_t)next[0], "stderr", (json_int_t)next[1]));
  /* First in line: the greeting must precede whatever output waited for this host. */
  nex_agent_queue_json (a, NEX_WIRE_HELLO, 0, o, true, true);
}

static void
reader_reset (nex_agent_t *a)
{
  nex_wire_reader_release (&a->reader);
  nex_wire_reader_init (&a->reader);
}

/* A frame that was only partly written is sent again from its start, so the next host sees whole frames. */
void
nex_agent_conn_close (nex_agent_t *a, const char *why)
{
  if (a->conn_fd < 0)
    return;
  if (why)
    nex_agent_log ("host connection closed: %s", why);
  close (NEX_STEAL_FD (a->conn_fd));
  reader_reset (a);
  if (a->head)
    a->head->off = 0;
  nex_agent_queue_drop_replies (a);
  /* Exec sessions belong to the host that started them: nobody else will read their output or feed them. */
  nex_agent_proc_abandon_execs (a);
  if (a->transport == AGENT_TRANSPORT_STREAM)
    {
      /* A stream cannot be re-dialled: no host will ever reach this agent again.  The workload keeps running
       * (its end is simply not reported); with nothing running, there is nothing left to wait for. */
      nex_agent_log ("the host stream is gone for good");
      nex_agent_state_t state = nex_agent_workload_state (a);
      if (state == AGENT_IDLE || state == AGENT_EXITED)
        nex_agent_exit (a, 0);
    }
}

void
nex_agent_conn_flush (nex_agent_t *a)
{
  while (a->conn_fd >= 0 && a->head)
    {
      nex_agent_frame_t *f = a->head;
      ssize_t w = write (a->conn_fd, f->data + f->off, f->len - f->off);
      if (w < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
          nex_agent_conn_close (a, strerror (errno));
          return;
        }
      f->off += (size_t)w;
      if (f->off == f->len)
        nex_agent_queue_pop (a);
    }
}

/* The host broke the protocol: tell it why if the socket takes it right now, then hang up.  A listening
 * transport goes back to accepting; a stream cannot be re-dialled, so its decoder is reset instead and the
 * stream kept (there is no way to resynchronise a byte stream better than that). */
static void
reject (nex_agent_t *a, const char *msg)
{
  nex_agent_log ("protocol error from the host: %s", msg);
  nex_agent_queue_error (a, true, NULL, "%s", msg);
  nex_agent_conn_flush (a);
  if (a->transport == AGENT_TRANSPORT_LISTEN)
    nex_agent_conn_close (a, "protocol error");
  else
    reader_reset (a);
}

/* A host that keeps sending requests but never reads the replies would grow the queue without bound; past
 * AGENT_REPLY_LIMIT it is cut off.  Stops a memory-exhaustion attack on PID 1 through the control channel. */
static void
check_replies (nex_agent_t *a)
{
  if (a->queued_replies > AGENT_REPLY_LIMIT)
    nex_agent_conn_close (a, "host does not read its replies");
}

void
nex_agent_conn_accept (nex_agent_t *a)
{
  int fd = accept4 (a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0)
    {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
        nex_agent_log ("accept: %s", strerror (errno));
      return;
    }
  /* Whoever can connect to this socket controls the workload: access is decided by where nexd put the socket
   * (a directory only it can reach, outside the sandbox's mount namespace) and the workload itself never holds
   * the descriptor (the child closes it, spawn.c).  The newest connection wins, so that a restarted nexd
   * re-attaches even when the old connection was never seen to close. */
  if (a->conn_fd >= 0)
    nex_agent_conn_close (a, "replaced by a new connection");
  a->conn_fd = fd;
  nex_agent_conn_hello (a, NULL);
}

void
nex_agent_conn_read (nex_agent_t *a)
{
  uint8_t buf[AGENT_CHUNK];
  int fd = a->conn_fd;
  size_t want = nex_wire_reader_room (&a->reader);
  ssize_t n = read (fd, buf, want < sizeof buf ? want : sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0)
    {
      nex_agent_conn_close (a, n == 0 ? "end of stream" : strerror (errno));
      return;
    }

  cleanup_error nex_error_t err = NULL;
  if (nex_wire_reader_feed (&a->reader, buf, (size_t)n, &err) < 0)
    {
      reject (a, err->msg);
      return;
    }
  for (;;)
    {
      nex_wire_frame_t f;
      int r = nex_wire_reader_next (&a->reader, &f, &err);
      if (r == 0)
        break;
      if (r < 0 || nex_agent_request_handle (a, &f, &err) < 0)
        {
          reject (a, err->msg);
          return;
        }
      if (a->conn_fd != fd)
        return;
    }
  check_replies (a);
}

/* A console's line discipline would echo the host's bytes back and rewrite newlines and control characters,
 * corrupting frames in both directions: the terminal must pass bytes through untouched. */
static void
make_raw (int fd)
{
  struct termios t;
  if (isatty (fd) && tcgetattr (fd, &t) == 0)
    {
      cfmakeraw (&t);
      if (tcsetattr (fd, TCSANOW, &t) < 0)
        nex_agent_log ("cannot make the console raw: %s", strerror (errno));
    }
}

void
nex_agent_conn_open (nex_agent_t *a, nex_agent_transport_t kind, int fd, const char *path)
{
  a->transport = kind;
  if (kind == AGENT_TRANSPORT_STREAM && path)
    {
      fd = open (path, O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (fd < 0)
        {
          nex_agent_log ("open `%s`: %s", path, strerror (errno));
          exit (1);
        }
    }
  if (fcntl (fd, F_SETFD, FD_CLOEXEC) < 0 || nex_agent_set_nonblock (fd) < 0)
    {
      nex_agent_log ("descriptor %d: %s", fd, strerror (errno));
      exit (1);
    }
  if (kind == AGENT_TRANSPORT_LISTEN)
    {
      int listening = 0;
      socklen_t len = sizeof listening;
      if (getsockopt (fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
        {
          nex_agent_log ("descriptor %d is not a listening socket", fd);
          exit (1);
        }
      a->listen_fd = fd;
      return;
    }
  make_raw (fd);
  a->conn_fd = fd;
  nex_agent_conn_hello (a, NULL);
}
