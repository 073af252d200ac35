/* SPDX-License-Identifier: Apache-2.0 */
/* ws.c — see ws.h.  Sessions belong to the websocket thread; the only state shared with other threads is the
 * list of adopted connections waiting to be registered (under pending_lock) and a few atomic counters. */
#include "server/api/ws.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "common/cleanup.h"
#include "common/jsontext.h"
#include "common/xalloc.h"
#include "common/wire.h"
#include "server/clock.h"
#include "server/exec.h"
#include "server/log.h"
#include "server/supervisor.h"
#include "server/workload.h"
#include "common/ws-frame.h"

/* Stop producing data frames above this much unsent output.  The socket's own buffer holds more than this: the
 * bound is what nexd keeps per client beyond it (500 tails: 32 MiB at most, was 128 with 256 KiB). */
#define OUT_HIGH (64 * 1024)
#define SOCKET_SNDBUF (256 * 1024)               /* SO_SNDBUF of a websocket's socket */
#define OUT_KEEP (16 * 1024)                     /* an output buffer larger than this is freed once written */
#define IN_MAX (8 * 1024)                        /* client frames are small (pings, close): larger ones are refused */
#define FRAME_OVERHEAD 14                        /* the largest header of a client frame: 2 + 8 (length) + 4 (mask) */
#define EXEC_IN_MAX (64 * 1024 + FRAME_OVERHEAD) /* exec sessions: stdin frames of up to 64 KiB */
#define EXEC_CHUNK (64 * 1024)                   /* largest binary frame of output */
#define EXEC_TTY_MAX 10000                       /* rows and columns a resize may ask for */
#define QUEUE_MSGS 4096                          /* bus queue bounds per stream */
#define QUEUE_BYTES (2 * 1024 * 1024)
#define REPLAY_CHUNK 256 /* stored lines read per registry query while replaying */
#define MAX_TAIL 100000

typedef struct session session_t;

struct session
{
  nex_ws_t *ws;
  int fd;
  struct MHD_UpgradeResponseHandle *urh;
  nex_ws_stream_t stream;
  nex_bus_sub_t *sub;
  uint8_t *out; /* frames not yet written: out[out_off, out_len) */
  size_t out_len, out_off, out_cap;
  uint64_t appended; /* bytes ever queued, to tell whether produce() made any */
  uint8_t *in;       /* bytes received, not yet parsed (in_cap at most) */
  size_t in_len, in_cap;
  int in_paused;        /* EXEC: the client's input waits until the supervisor has sent what it queued */
  int in_opcode;        /* EXEC: the opcode of the fragmented message being received, 0 when none */
  int64_t last_seq;     /* LOGS: the last line sent (or skipped over) */
  int64_t replay_until; /* LOGS: the stored lines to send before live ones end at this seq */
  int replaying;
  int final_known;       /* LOGS: the workload had ended when the stream began, or a missed event may hide it */
  int more;              /* the last turn produced something: there may be more (pump) */
  uint64_t dropped_seen; /* what the bus had dropped for this client when last counted */
  int closing;           /* a close frame is queued: close once it is written */
  int dead;              /* to be freed */
  uint32_t events;       /* what epoll watches now */
  session_t *next;
};

struct nex_ws
{
  nex_node_t *node;
  pthread_t thread;
  int epfd;
  int efd; /* wakes the thread: bus notifications, adoptions, stop */
  pthread_mutex_t pending_lock;
  session_t *pending;  /* adopted, not yet registered (under pending_lock) */
  int stopping;        /* under pending_lock */
  session_t *sessions; /* the thread's */
  int clients;         /* atomic */
  uint64_t dropped;    /* atomic */
};

/* --- output ------------------------------------------------------------------------------------------------- */

static void
out_append (session_t *s, const void *data, size_t n)
{
  if (s->out_off > 0 && s->out_off == s->out_len)
    s->out_off = s->out_len = 0;
  if (s->out_len + n > s->out_cap)
    {
      /* Compact first: the written prefix is dead. */
      if (s->out_off > 0)
        {
          memmove (s->out, s->out + s->out_off, s->out_len - s->out_off);
          s->out_len -= s->out_off;
          s->out_off = 0;
        }
      if (s->out_len + n > s->out_cap)
        {
          s->out_cap = (s->out_len + n) * 2;
          s->out = nex_xrealloc (s->out, s->out_cap);
        }
    }
  memcpy (s->out + s->out_len, data, n);
  s->out_len += n;
  s->appended += n;
}

static void
send_frame (session_t *s, int opcode, const void *payload, size_t n)
{
  uint8_t head[NEX_WS_MAX_HEADER];
  out_append (s, head, nex_ws_frame_header (head, opcode, n));
  out_append (s, payload, n);
}

static void
send_json (session_t *s, json_t *msg)
{
  cleanup_json json_t *owned = msg;
  size_t n;
  cleanup_free char *text = owned ? nex_jsontext_dumps (owned, &n) : NULL;
  if (text)
    send_frame (s, NEX_WS_TEXT, text, n);
}

static void
send_close (session_t *s, int code, const char *reason)
{
  if (s->closing)
    return;
  uint8_t payload[125];
  size_t rl = reason ? strlen (reason) : 0;
  if (rl > sizeof payload - 2)
    rl = sizeof payload - 2;
  payload[0] = (uint8_t)(code >> 8);
  payload[1] = (uint8_t)code;
  if (rl)
    memcpy (payload + 2, reason, rl);
  send_frame (s, NEX_WS_CLOSE, payload, rl + 2);
  s->closing = 1;
}

static size_t
out_pending (const session_t *s)
{
  return s->out_len - s->out_off;
}

/* --- what streams send -------------------------------------------------------------------------------------- */

static void
send_missed (session_t *s, uint64_t n)
{
  send_json (s, json_pack ("{s:s, s:I}", "notice", "missed", "count", (json_int_t)n));
}

/* Line M as a text frame, made the first time a client needs it and kept in M for every other client: with 500
 * tails of one workload, a line is turned into JSON once, not 500 times (the websocket thread's time went there). */
static void
send_line (session_t *s, nex_bus_msg_t *m)
{
  if (m->frame == NULL)
    {
      char when[NEX_CLOCK_RFC3339_LEN];
      /* {seq, stream, ts, text}, written as text: one per line a chatty workload prints, to every tail. */
      nex_jsontext_t t = { 0 };
      nex_jsontext_open (&t, '{');
      nex_jsontext_key (&t, "seq");
      nex_jsontext_int (&t, (int64_t)m->seq);
      nex_jsontext_key (&t, "stream");
      nex_jsontext_string (&t, m->stream == NEX_STREAM_STDERR ? "stderr" : "stdout");
      nex_jsontext_key (&t, "ts");
      nex_jsontext_string (&t, nex_clock_format (m->ts, when, sizeof when));
      nex_jsontext_key (&t, "text");
      nex_jsontext_stringn (&t, m->text, m->len);
      nex_jsontext_close (&t, '}');
      size_t n;
      cleanup_free char *text = nex_jsontext_steal (&t, &n);
      m->frame = nex_xmalloc (NEX_WS_MAX_HEADER + n);
      m->frame_len = nex_ws_frame_header (m->frame, NEX_WS_TEXT, n);
      if (n)
        memcpy (m->frame + m->frame_len, text, n);
      m->frame_len += n;
    }
  out_append (s, m->frame, m->frame_len);
  s->last_seq = m->seq;
}

/* Sends the end notice of workload W (final) and closes. */
static void
send_end (session_t *s, const nex_workload_t *w)
{
  json_t *n = json_pack ("{s:s, s:s}", "notice", "end", "state", nex_state_name (w->state));
  json_object_set_new (n, "exit_code", w->has_exit_code ? json_integer (w->exit_code) : json_null ());
  json_object_set_new (n, "exit_signal", w->exit_signal ? json_integer (w->exit_signal) : json_null ());
  json_object_set_new (n, "reason", w->reason ? json_string (w->reason) : json_null ());
  send_json (s, n);
  send_close (s, NEX_WS_CLOSE_NORMAL, "the workload ended");
}

/* Ends the log stream when the workload has ended (after everything queued before that was sent). */
static void
end_if_final (session_t *s)
{
  nex_workload_t w = { 0 };
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_workload_get (s->ws->node->reg, s->stream.workload_id, &w, &err) == 0
      && nex_state_is_final (w.state))
    send_end (s, &w);
  nex_workload_release (&w);
}

/* Replays the next chunk of stored lines; clears s->replaying when done. */
static void
replay_some (session_t *s)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *lines
      = nex_registry_log_after (s->ws->node->reg, s->stream.workload_id, s->last_seq, REPLAY_CHUNK, &err);
  if (lines == NULL)
    {
      nex_log_error (NEX_LOG_WARN, err, "websocket: replaying the log of %s", s->stream.workload_id);
      s->replaying = 0;
      return;
    }
  size_t i;
  json_t *l;
  json_array_foreach (lines, i, l)
  {
    int64_t seq = json_integer_value (json_object_get (l, "seq"));
    if (seq > s->replay_until)
      break;
    send_json (s, json_incref (l));
    s->last_seq = seq;
  }
  if (json_array_size (lines) < REPLAY_CHUNK || s->last_seq >= s->replay_until)
    {
      s->replaying = 0;
      s->last_seq = s->replay_until; /* lines the bound deleted meanwhile are not "missed" by this client */
      if (s->final_known)
        end_if_final (s);
    }
}

/* Turns one bus message into what the client gets. */
static void
deliver (session_t *s, nex_bus_msg_t *m, uint64_t missed)
{
  if (s->stream.kind == NEX_WS_EVENTS)
    {
      if (missed)
        send_missed (s, missed);
      send_json (s, json_incref (m->event));
      return;
    }
  if (missed)
    s->final_known = 1; /* an event may have been among what was dropped: look at the state when idle */
  if (m->kind == NEX_BUS_LOG)
    {
      if (m->seq <= s->last_seq)
        return; /* replayed already */
      if (m->seq > s->last_seq + 1)
        send_missed (s, (uint64_t)(m->seq - s->last_seq - 1));
      send_line (s, m);
      return;
    }
  /* An event about the workload: the end when it reached a final state. */
  const char *state = json_string_value (json_object_get (json_object_get (m->event, "data"), "state"));
  nex_state_t st;
  if (state && nex_state_parse (state, &st, NULL) == 0 && nex_state_is_final (st))
    end_if_final (s);
}

/* The end of an exec session: its exit status (or why it was lost), then a close. */
static void
send_exit (session_t *s)
{
  nex_exec_result_t res = { 0 };
  cleanup_error nex_error_t err = NULL;
  if (nex_exec_wait (s->stream.exec, 0, &res, &err) < 0)
    send_json (s, json_pack ("{s:s, s:s}", "type", "error", "message", err->msg));
  else
    send_json (s, json_pack ("{s:s, s:o, s:o, s:I}", "type", "exit", "exit_code",
                             res.has_code ? json_integer (res.code) : json_null (), "signal",
                             res.signal ? json_integer (res.signal) : json_null (), "lost_bytes",
                             (json_int_t)res.out_lost));
  nex_exec_result_release (&res);
  send_close (s, NEX_WS_CLOSE_NORMAL, "the process ended");
}

/* Exec sessions: the process's output as binary frames, then its end. */
static void
produce_exec (session_t *s)
{
  static uint8_t buf[EXEC_CHUNK]; /* the websocket thread's */
  while (!s->closing && out_pending (s) < OUT_HIGH)
    {
      int ended;
      size_t n = nex_exec_read (s->stream.exec, buf, sizeof buf, &ended);
      if (n > 0)
        send_frame (s, NEX_WS_BINARY, buf, n);
      if (ended)
        send_exit (s);
      if (n == 0)
        return;
    }
}

/* Fills the output buffer from the replay and the bus until it is high or there is nothing to send. */
static void
produce (session_t *s)
{
  if (s->stream.kind == NEX_WS_EXEC)
    {
      produce_exec (s);
      return;
    }
  while (!s->closing && out_pending (s) < OUT_HIGH)
    {
      if (s->replaying)
        {
          replay_some (s);
          continue;
        }
      nex_bus_msg_t *m;
      uint64_t missed;
      if (!nex_bus_next (s->ws->node->bus, s->sub, &m, &missed))
        {
          if (s->stream.kind == NEX_WS_LOGS && s->final_known)
            {
              s->final_known = 0;
              end_if_final (s);
            }
          return;
        }
      deliver (s, m, missed);
      nex_bus_msg_unref (m);
    }
}

/* --- the socket --------------------------------------------------------------------------------------------- */

static void
watch (session_t *s, uint32_t events)
{
  if (s->events == events)
    return;
  struct epoll_event ev = { .events = events, .data.ptr = s };
  epoll_ctl (s->ws->epfd, EPOLL_CTL_MOD, s->fd, &ev);
  s->events = events;
}

/* Writes what it can; marks the session dead on a write error and once a queued close frame is out. */
static void
flush (session_t *s)
{
  while (out_pending (s) > 0)
    {
      ssize_t n = send (s->fd, s->out + s->out_off, out_pending (s), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        break;
      if (n <= 0)
        {
          s->dead = 1;
          return;
        }
      s->out_off += (size_t)n;
    }
  if (out_pending (s) == 0 && s->closing)
    {
      s->dead = 1;
      return;
    }
  if (out_pending (s) == 0 && s->out_cap > OUT_KEEP)
    {
      /* All written: a client that is quiet now holds no output buffer of its size. */
      free (s->out);
      s->out = NULL;
      s->out_cap = s->out_len = s->out_off = 0;
    }
  watch (s, (s->in_paused ? 0 : EPOLLIN | EPOLLRDHUP) | (out_pending (s) || s->more ? EPOLLOUT : 0));
}

/* Adds what the bus dropped for S since the last call to the node's count (nex_websocket_messages_dropped_total):
 * at each turn, so that a client that never reads again is counted too, not only when it catches up. */
static void
count_dropped (session_t *s)
{
  if (s->sub == NULL)
    return;
  uint64_t dropped = nex_bus_dropped (s->ws->node->bus, s->sub);
  __atomic_add_fetch (&s->ws->dropped, dropped - s->dropped_seen, __ATOMIC_RELAXED);
  s->dropped_seen = dropped;
}

/* One turn of S: writes what waits, produces at most one buffer's worth (OUT_HIGH) more and writes it.  A session
 * that produced something may have more: it keeps EPOLLOUT watched, so that epoll brings it back at the next
 * round, after every other ready session had its turn (the socket is writable, so at once).  One client's replay
 * of 10,000 stored lines to a fast reader used to run to its end before 499 others were served.  Once a turn
 * produces nothing, the bus's eventfd says when there is more. */
static void
pump (session_t *s)
{
  count_dropped (s);
  flush (s);
  if (s->dead || out_pending (s) >= OUT_HIGH)
    return;
  uint64_t before = s->appended;
  produce (s);
  s->more = s->appended != before;
  flush (s); /* sets what epoll watches */
}

static void send_exec_error (session_t *s, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

/* Tells an exec client what was wrong with its control message; the session goes on. */
static void
send_exec_error (session_t *s, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  cleanup_free char *msg = nex_xvasprintf (fmt, ap);
  va_end (ap);
  send_json (s, json_pack ("{s:s, s:s}", "type", "error", "message", msg));
}

int
nex_ws_exec_control_parse (const uint8_t *text, size_t len, int tty, int *type, char **frame, nex_error_t *err)
{
  json_error_t jerr;
  cleanup_json json_t *m = json_loadb ((const char *)text, len, JSON_REJECT_DUPLICATES, &jerr);
  const char *name = json_string_value (json_object_get (m, "type"));
  *frame = NULL;
  if (!json_is_object (m) || name == NULL)
    return nex_error_set (err, NEX_ERR_INVALID, "control messages are JSON objects with a `type`");
  if (strcmp (name, "resize") == 0)
    {
      json_t *rows = json_object_get (m, "rows"), *cols = json_object_get (m, "cols");
      if (!json_is_integer (rows) || !json_is_integer (cols) || json_integer_value (rows) < 1
          || json_integer_value (rows) > EXEC_TTY_MAX || json_integer_value (cols) < 1
          || json_integer_value (cols) > EXEC_TTY_MAX)
        return nex_error_set (err, NEX_ERR_INVALID, "resize: `rows` and `cols` must be integers from 1 to %d",
                              EXEC_TTY_MAX);
      if (!tty)
        return nex_error_set (err, NEX_ERR_INVALID, "resize: this session has no terminal");
      *type = NEX_WIRE_RESIZE;
      *frame
          = nex_xasprintf ("{\"rows\":%d,\"cols\":%d}", (int)json_integer_value (rows), (int)json_integer_value (cols));
      return 0;
    }
  if (strcmp (name, "signal") == 0)
    {
      int sig = nex_signal_parse (json_object_get (m, "signal"));
      if (sig < 0)
        return nex_error_set (err, NEX_ERR_INVALID,
                              "signal: `signal` must be a signal number or a name such as SIGINT");
      *type = NEX_WIRE_SIGNAL;
      *frame = nex_xasprintf ("{\"signal\":%d}", sig);
      return 0;
    }
  return nex_error_set (err, NEX_ERR_INVALID, "unknown control message type `%.40s` (known: resize, signal)", name);
}

/* A control message of an exec client, passed on to the agent as the frame nex_ws_exec_control_parse made, or
 * answered with what was wrong. */
static void
exec_control (session_t *s, const uint8_t *text, size_t len)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_free char *frame = NULL;
  int type;
  if (nex_ws_exec_control_parse (text, len, s->stream.exec->tty, &type, &frame, &err) < 0)
    send_exec_error (s, "%s", err->msg);
  else
    nex_supervisor_exec_input (s->ws->node->sup, s->stream.exec, type, frame, strlen (frame));
}

/* A data frame of an exec client: binary frames (and their continuations) are input; text frames are control
 * messages and must come whole. */
static void
exec_data (session_t *s, const nex_ws_frame_t *f)
{
  int opcode = f->opcode == NEX_WS_CONTINUATION ? s->in_opcode : f->opcode;
  if (opcode == 0 || (f->opcode != NEX_WS_CONTINUATION && s->in_opcode != 0))
    {
      send_close (s, NEX_WS_CLOSE_PROTOCOL, "fragments out of order");
      return;
    }
  s->in_opcode = f->fin ? 0 : opcode;
  if (opcode == NEX_WS_BINARY)
    {
      if (f->len > 0)
        nex_supervisor_exec_input (s->ws->node->sup, s->stream.exec, NEX_WIRE_STDIN, f->payload, f->len);
      return;
    }
  if (!f->fin || f->opcode == NEX_WS_CONTINUATION)
    {
      send_close (s, NEX_WS_CLOSE_POLICY, "control messages must be one frame");
      return;
    }
  exec_control (s, f->payload, f->len);
}

/* Handles the complete frames in the input buffer. */
static void
parse_input (session_t *s)
{
  size_t at = 0;
  for (;;)
    {
      nex_ws_frame_t f;
      int code;
      long used = nex_ws_frame_parse (s->in + at, s->in_len - at, s->in_cap - FRAME_OVERHEAD, &f, &code);
      if (used < 0)
        {
          send_close (s, code, code == NEX_WS_CLOSE_TOO_BIG ? "frame too large" : "protocol error");
          s->in_len = 0;
          return;
        }
      if (used == 0)
        break;
      at += (size_t)used;
      if (f.opcode == NEX_WS_PING && !s->closing)
        send_frame (s, NEX_WS_PONG, f.payload, f.len);
      else if (f.opcode == NEX_WS_CLOSE)
        {
          /* Echo the client's code (section 5.5.1); 1000 when it gave none. */
          int c = f.len >= 2 ? (f.payload[0] << 8 | f.payload[1]) : NEX_WS_CLOSE_NORMAL;
          send_close (s, c >= 1000 && c < 5000 ? c : NEX_WS_CLOSE_PROTOCOL, NULL);
        }
      else if (s->stream.kind == NEX_WS_EXEC && !s->closing && f.opcode != NEX_WS_PONG)
        exec_data (s, &f);
      /* Other data frames carry nothing nexd acts on: ignored. */
    }
  memmove (s->in, s->in + at, s->in_len - at);
  s->in_len -= at;
}

/* Reads what the client sent and handles it. */
static void
take_input (session_t *s)
{
  for (;;)
    {
      /* An exec client may not queue input faster than the agent takes it: it waits (TCP pushes back) until the
       * supervisor has sent what is queued, which wakes this session through the exec's eventfd. */
      if (s->stream.kind == NEX_WS_EXEC)
        {
          s->in_paused = nex_exec_input_inflight (s->stream.exec) > NEX_EXEC_INPUT_INFLIGHT;
          if (s->in_paused)
            return;
        }
      if (s->in_len == s->in_cap)
        {
          /* A frame this large is refused by the parser before it is complete, so a full buffer is a flood. */
          send_close (s, NEX_WS_CLOSE_TOO_BIG, "frames to nexd must be small");
          s->in_len = 0;
          return;
        }
      ssize_t n = recv (s->fd, s->in + s->in_len, s->in_cap - s->in_len, 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (n <= 0)
        {
          s->dead = 1; /* the client went away */
          return;
        }
      s->in_len += (size_t)n;
      parse_input (s);
    }
}

void
nex_ws_stream_release (nex_node_t *node, nex_ws_stream_t *s)
{
  if (s->exec)
    nex_supervisor_exec_close (node->sup, NEX_STEAL_PTR (s->exec));
}

static void
session_free (nex_ws_t *ws, session_t *s)
{
  epoll_ctl (ws->epfd, EPOLL_CTL_DEL, s->fd, NULL);
  if (s->stream.exec)
    epoll_ctl (ws->epfd, EPOLL_CTL_DEL, s->stream.exec->notify_fd, NULL);
  nex_ws_stream_release (ws->node, &s->stream);
  count_dropped (s);
  nex_bus_unsubscribe (ws->node->bus, s->sub);
  /* libmicrohttpd owns the socket: this closes it. */
  MHD_upgrade_action (s->urh, MHD_UPGRADE_ACTION_CLOSE);
  __atomic_sub_fetch (&ws->clients, 1, __ATOMIC_RELAXED);
  free (s->out);
  free (s->in);
  free (s);
}

/* Starts streaming for a newly adopted session (on the websocket thread). */
static void
session_begin (nex_ws_t *ws, session_t *s)
{
  fcntl (s->fd, F_SETFL, fcntl (s->fd, F_GETFL) | O_NONBLOCK);
  /* The kernel's buffer for a client is bounded too (tcp_wmem's maximum may be MiBs): a slow client costs at most
   * this plus OUT_HIGH, and what it cannot take is dropped from its bus queue and counted. */
  int sndbuf = SOCKET_SNDBUF;
  setsockopt (s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  s->events = EPOLLIN | EPOLLRDHUP;
  struct epoll_event ev = { .events = s->events, .data.ptr = s };
  epoll_ctl (ws->epfd, EPOLL_CTL_ADD, s->fd, &ev);
  if (s->stream.kind == NEX_WS_EXEC)
    {
      /* Edge-triggered: produce_exec reads what there is whenever the output buffer has room, so the eventfd
       * only needs to say that something new came. */
      struct epoll_event xev = { .events = EPOLLIN | EPOLLET, .data.ptr = s };
      epoll_ctl (ws->epfd, EPOLL_CTL_ADD, s->stream.exec->notify_fd, &xev);
      if (s->in_len > 0)
        parse_input (s);
      return;
    }
  nex_bus_filter_t f = s->stream.filter;
  if (s->stream.kind == NEX_WS_LOGS)
    {
      memset (&f, 0, sizeof f);
      f.kinds = NEX_BUS_LOG | NEX_BUS_EVENT;
      memcpy (f.workload_id, s->stream.workload_id, sizeof f.workload_id);
    }
  /* Subscribed before the registry is read: a line is either stored by then (replayed) or published after
   * (queued); lines that are both are recognised by their number. */
  s->sub = nex_bus_subscribe (ws->node->bus, &f, QUEUE_MSGS, QUEUE_BYTES, ws->efd);
  if (s->stream.kind == NEX_WS_LOGS)
    {
      nex_workload_t w = { 0 };
      cleanup_error nex_error_t err = NULL;
      if (nex_registry_workload_get (ws->node->reg, s->stream.workload_id, &w, &err) < 0)
        {
          send_close (s, NEX_WS_CLOSE_GOING_AWAY, "the workload is gone");
          return;
        }
      int64_t tail = s->stream.tail < MAX_TAIL ? s->stream.tail : MAX_TAIL;
      s->replay_until = w.log_lines;
      s->last_seq = w.log_lines > tail ? w.log_lines - tail : 0;
      s->replaying = 1;
      s->final_known = nex_state_is_final (w.state);
      nex_workload_release (&w);
    }
  /* Frames that came with the handshake are handled like any others. */
  if (s->in_len > 0)
    parse_input (s);
}

/* --- the thread ---------------------------------------------------------------------------------------------- */

static void *
ws_main (void *arg)
{
  nex_ws_t *ws = arg;
  for (;;)
    {
      struct epoll_event evs[64];
      int n = epoll_wait (ws->epfd, evs, 64, -1);
      if (n < 0 && errno != EINTR)
        {
          nex_log (NEX_LOG_ERROR, "websocket: epoll_wait: %s", strerror (errno));
          break;
        }
      int poked = 0;
      for (int i = 0; i < n; i++)
        {
          session_t *s = evs[i].data.ptr;
          if (s == NULL)
            {
              poked = 1;
              continue;
            }
          if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            take_input (s);
          pump (s);
        }
      if (poked)
        {
          uint64_t v;
          (void)!read (ws->efd, &v, sizeof v);
          pthread_mutex_lock (&ws->pending_lock);
          session_t *fresh = ws->pending;
          ws->pending = NULL;
          int stop = ws->stopping;
          pthread_mutex_unlock (&ws->pending_lock);
          while (fresh)
            {
              session_t *s = fresh;
              fresh = s->next;
              s->next = ws->sessions;
              ws->sessions = s;
              session_begin (ws, s);
            }
          for (session_t *s = ws->sessions; s; s = s->next)
            {
              if (stop)
                send_close (s, NEX_WS_CLOSE_GOING_AWAY, "nexd is shutting down");
              pump (s);
            }
          if (stop)
            break;
        }
      for (session_t **p = &ws->sessions; *p;)
        {
          session_t *s = *p;
          if (s->dead)
            {
              *p = s->next;
              session_free (ws, s);
            }
          else
            p = &s->next;
        }
    }
  while (ws->sessions)
    {
      session_t *s = ws->sessions;
      ws->sessions = s->next;
      session_free (ws, s);
    }
  return NULL;
}

/* --- public -------------------------------------------------------------------------------------------------- */

/* For cleanup_with: a websocket thread that did not start (its descriptors, -1 when not made, are closed). */
static void
ws_freep (nex_ws_t **ws)
{
  nex_ws_free (*ws);
}

nex_ws_t *
nex_ws_start (nex_node_t *node, nex_error_t *err)
{
  cleanup_with (ws_freep) nex_ws_t *ws = nex_xzalloc (sizeof *ws);
  ws->node = node;
  pthread_mutex_init (&ws->pending_lock, NULL);
  ws->epfd = epoll_create1 (EPOLL_CLOEXEC);
  ws->efd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
  if (ws->epfd < 0 || ws->efd < 0 || epoll_ctl (ws->epfd, EPOLL_CTL_ADD, ws->efd, &ev) < 0)
    {
      nex_error_sys (err, errno, "websocket set-up");
      return NULL;
    }
  int r = pthread_create (&ws->thread, NULL, ws_main, ws);
  if (r != 0)
    {
      nex_error_sys (err, r, "start the websocket thread");
      return NULL;
    }
  return NEX_STEAL_PTR (ws);
}

/* A session nexd is shutting down under before its thread ever served it: a close frame (1001) written at once
 * (best effort: a socket that cannot take it now is closed anyway), then the connection handed back and S freed. */
static void
close_unseen (nex_ws_t *ws, session_t *s)
{
  static const char reason[] = "nexd is shutting down";
  uint8_t frame[NEX_WS_MAX_HEADER + 2 + sizeof reason];
  size_t n = nex_ws_frame_header (frame, NEX_WS_CLOSE, 2 + sizeof reason - 1);
  frame[n++] = (uint8_t)(NEX_WS_CLOSE_GOING_AWAY >> 8);
  frame[n++] = (uint8_t)NEX_WS_CLOSE_GOING_AWAY;
  memcpy (frame + n, reason, sizeof reason - 1);
  n += sizeof reason - 1;
  (void)!send (s->fd, frame, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  nex_ws_stream_release (ws->node, &s->stream);
  MHD_upgrade_action (s->urh, MHD_UPGRADE_ACTION_CLOSE);
  free (s->in);
  free (s);
}

void
nex_ws_stop (nex_ws_t *ws)
{
  if (ws == NULL)
    return;
  pthread_mutex_lock (&ws->pending_lock);
  ws->stopping = 1;
  pthread_mutex_unlock (&ws->pending_lock);
  uint64_t one = 1;
  (void)!write (ws->efd, &one, sizeof one);
  pthread_join (ws->thread, NULL);
  /* Adopted after the thread stopped looking: told, and closed. */
  pthread_mutex_lock (&ws->pending_lock);
  session_t *left = ws->pending;
  ws->pending = NULL;
  pthread_mutex_unlock (&ws->pending_lock);
  while (left)
    {
      session_t *s = left;
      left = s->next;
      close_unseen (ws, s);
    }
}

void
nex_ws_free (nex_ws_t *ws)
{
  if (ws == NULL)
    return;
  nex_cleanup_closep (&ws->epfd);
  nex_cleanup_closep (&ws->efd);
  pthread_mutex_destroy (&ws->pending_lock);
  free (ws);
}

void
nex_ws_adopt (nex_ws_t *ws, int fd, void *urh, const char *extra, size_t extra_len, const nex_ws_stream_t *stream)
{
  session_t *s = nex_xzalloc (sizeof *s);
  s->ws = ws;
  s->fd = fd;
  s->urh = urh;
  s->stream = *stream;
  s->in_cap = stream->kind == NEX_WS_EXEC ? EXEC_IN_MAX : IN_MAX;
  s->in = nex_xmalloc (s->in_cap);
  if (extra_len > s->in_cap)
    extra_len = s->in_cap; /* more than a handshake's worth of frames before the answer: cut (then refused) */
  if (extra_len)
    memcpy (s->in, extra, extra_len);
  s->in_len = extra_len;
  __atomic_add_fetch (&ws->clients, 1, __ATOMIC_RELAXED);
  pthread_mutex_lock (&ws->pending_lock);
  int stopping = ws->stopping;
  if (!stopping)
    {
      s->next = ws->pending;
      ws->pending = s;
    }
  pthread_mutex_unlock (&ws->pending_lock);
  if (stopping)
    {
      __atomic_sub_fetch (&ws->clients, 1, __ATOMIC_RELAXED);
      close_unseen (ws, s);
      return;
    }
  uint64_t one = 1;
  (void)!write (ws->efd, &one, sizeof one);
}

int
nex_ws_clients (nex_ws_t *ws)
{
  return ws ? __atomic_load_n (&ws->clients, __ATOMIC_RELAXED) : 0;
}

uint64_t
nex_ws_dropped (nex_ws_t *ws)
{
  return ws ? __atomic_load_n (&ws->dropped, __ATOMIC_RELAXED) : 0;
}
