/* supervisor.c — see supervisor.h.  The thread's data (entries, reader buffers) is touched by that thread only;
 * the command queue is the one structure shared with other threads, under queue_lock. */
#include "server/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/wire.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifact.h"
#include "server/clock.h"
#include "server/driver.h"
#include "server/log.h"
#include "server/nats-bridge.h"
#include "server/secure.h"

#define MAX_LINE 16384          /* longer output lines are split */
#define AGENT_KILL_SLACK_MS 5000 /* after the grace, how long the agent has to report before it is killed */

typedef enum
{
  CMD_DEPLOY,
  CMD_STOP
} cmd_kind_t;

typedef struct cmd
{
  cmd_kind_t kind;
  char id[NEX_ID_LEN + 1];
  int64_t grace_ms;
  struct cmd *next;
} cmd_t;

typedef struct entry entry_t;

/* What an epoll event refers to. */
typedef struct ref
{
  entry_t *e; /* NULL: the wake-up eventfd */
  int is_pidfd;
} ref_t;

typedef struct linebuf
{
  char buf[MAX_LINE];
  size_t len;
} linebuf_t;

/* One live sandbox. */
struct entry
{
  char id[NEX_ID_LEN + 1];
  const nex_driver_t *driver;
  nex_instance_t inst;
  int conn;              /* agent connection, -1 when closed */
  int pidfd;             /* watches inst.pid, -1 if unavailable */
  nex_wire_reader_t reader;
  linebuf_t lines[2];    /* partial stdout / stderr line */
  ref_t conn_ref, pid_ref;
  int start_sent;        /* START was sent (or the agent said it had started) */
  int final;             /* the workload reached a final state; waiting for the agent to go */
  int stop_requested;
  int64_t kill_at;       /* monotonic ms after which the driver kills the sandbox; 0: none */
  char *agent_error;     /* last ERROR message from the agent */
  char *lost_reason;     /* why the channel was given up, when it was */
  entry_t *next;
};

struct nex_supervisor
{
  nex_node_t *node;
  pthread_t thread;
  int epfd;
  int wakefd;
  ref_t wake_ref;
  entry_t *entries;
  pthread_mutex_t queue_lock;
  cmd_t *queue_head, *queue_tail;
  int shutting_down; /* under queue_lock */
};

static entry_t *
entry_find (nex_supervisor_t *sup, const char *id)
{
  for (entry_t *e = sup->entries; e; e = e->next)
    if (strcmp (e->id, id) == 0)
      return e;
  return NULL;
}

/* Persists a transition of workload ID and reports it as event TYPE (NULL: no event). */
static void
transition (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type)
{
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_workload_transition (sup->node->reg, id, c, &err) < 0)
    {
      nex_log_error (NEX_LOG_ERROR, err, "workload %s: cannot record state %s", id, nex_state_name (c->state));
      return;
    }
  nex_info ("workload %s: %s%s%s", id, nex_state_name (c->state), c->reason ? ": " : "", c->reason ? c->reason : "");
  if (type == NULL)
    return;
  nex_workload_t w = { 0 };
  if (nex_registry_workload_get (sup->node->reg, id, &w, &err) < 0)
    return;
  json_t *data = json_pack ("{s:s}", "state", nex_state_name (w.state));
  if (w.reason)
    json_object_set_new (data, "reason", json_string (w.reason));
  if (w.has_exit_code)
    json_object_set_new (data, "exit_code", json_integer (w.exit_code));
  if (w.exit_signal)
    json_object_set_new (data, "exit_signal", json_integer (w.exit_signal));
  nex_node_emit (sup->node, type, &w, data);
  nex_workload_release (&w);
}

static void
fail_workload (nex_supervisor_t *sup, const char *id, const char *reason)
{
  nex_state_change_t c = { .state = NEX_STATE_FAILED, .reason = reason };
  transition (sup, id, &c, "workload_failed");
}

/* --- output --------------------------------------------------------------------------------------------------- */

static void
store_lines (nex_supervisor_t *sup, entry_t *e, const nex_log_line_t *lines, size_t n)
{
  if (n == 0)
    return;
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_log_append (sup->node->reg, e->id, lines, n, sup->node->cfg->log_lines, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: log lines lost", e->id);
  else if (sup->node->nats)
    nex_nats_publish_logs (sup->node->nats, e->id, lines, n);
}

/* Splits DATA into lines on STREAM's buffer and stores the complete ones; FLUSH also stores a final partial
 * line. */
static void
take_output (nex_supervisor_t *sup, entry_t *e, nex_stream_t stream, const uint8_t *data, size_t len, int flush)
{
  linebuf_t *lb = &e->lines[stream == NEX_STREAM_STDERR];
  int64_t now = nex_clock_now_ms ();
  nex_log_line_t batch[64];
  size_t n = 0;
  /* Completed lines are copied out of lb before it is reused, so they need their own storage. */
  cleanup_free char *store = nex_xmalloc (len + sizeof lb->buf + 1);
  size_t used = 0;

  for (size_t i = 0; i <= len; i++)
    {
      int at_end = i == len;
      if (!at_end && data[i] != '\n' && lb->len < sizeof lb->buf)
        {
          lb->buf[lb->len++] = (char) data[i];
          continue;
        }
      if (at_end && !(flush && lb->len > 0))
        break;
      if (!at_end && data[i] != '\n')
        i--; /* line too long: cut here and read this byte again into the next line */
      memcpy (store + used, lb->buf, lb->len);
      batch[n++] = (nex_log_line_t){ .stream = stream, .ts = now, .text = store + used, .len = lb->len };
      used += lb->len;
      lb->len = 0;
      if (n == sizeof batch / sizeof batch[0])
        {
          store_lines (sup, e, batch, n);
          n = 0;
          used = 0;
        }
    }
  store_lines (sup, e, batch, n);
}

/* --- the agent channel ----------------------------------------------------------------------------------------- */

static int
send_json (entry_t *e, nex_wire_type_t type, json_t *obj)
{
  cleanup_json json_t *o = obj;
  cleanup_error nex_error_t err = NULL;
  if (e->conn < 0)
    return -1;
  if (nex_wire_send_json (e->conn, type, 0, o, &err) < 0)
    {
      nex_log_error (NEX_LOG_WARN, err, "workload %s: cannot send %s", e->id, nex_wire_type_name (type));
      return -1;
    }
  return 0;
}

static void
close_conn (nex_supervisor_t *sup, entry_t *e, const char *reason)
{
  if (e->conn < 0)
    return;
  epoll_ctl (sup->epfd, EPOLL_CTL_DEL, e->conn, NULL);
  close (e->conn);
  e->conn = -1;
  nex_wire_reader_release (&e->reader);
  nex_wire_reader_init (&e->reader);
  if (!e->final)
    {
      /* The workload's fate is no longer observable: end the sandbox; its pidfd then finalises the entry. */
      if (e->lost_reason == NULL)
        e->lost_reason = nex_xstrdup (reason);
      cleanup_error nex_error_t err = NULL;
      if (e->driver->kill (e->driver, &e->inst, &err) < 0)
        nex_log_error (NEX_LOG_WARN, err, "workload %s: kill", e->id);
    }
}

static void
send_start (nex_supervisor_t *sup, entry_t *e)
{
  nex_workload_t w = { 0 };
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_workload_get (sup->node->reg, e->id, &w, &err) < 0)
    {
      close_conn (sup, e, "workload record unreadable");
      return;
    }
  /* The environment with its sealed part opened (secure.h): in memory only, wiped once sent. */
  json_t *env = nex_secure_start_env (sup->node, e->id, w.env, &err);
  if (env == NULL)
    {
      nex_workload_release (&w);
      cleanup_free char *why = nex_xasprintf ("cannot open the sealed environment: %s", err->msg);
      close_conn (sup, e, why);
      return;
    }
  json_t *argv = json_array_size (w.argv) > 0 ? json_incref (w.argv) : json_pack ("[s]", w.name);
  json_t *start = json_pack ("{s:s, s:o, s:O}", "path", "/workload", "argv", argv, "env", env);
  nex_workload_release (&w);
  int sent = send_json (e, NEX_WIRE_START, start);
  nex_secure_env_wipe (env);
  if (sent < 0)
    close_conn (sup, e, "cannot send START to the agent");
  else
    e->start_sent = 1;
}

/* The workload ended: EXIT (or a HELLO saying "exited") carried STATUS. */
static void
handle_exit (nex_supervisor_t *sup, entry_t *e, json_t *status)
{
  if (e->final)
    return;
  take_output (sup, e, NEX_STREAM_STDOUT, NULL, 0, 1);
  take_output (sup, e, NEX_STREAM_STDERR, NULL, 0, 1);
  json_t *code = json_object_get (status, "code");
  json_t *sig = json_object_get (status, "signal");
  int exec_failed = json_is_true (json_object_get (status, "exec_failed"));
  nex_state_change_t c = { .state = NEX_STATE_EXITED };
  if (json_is_integer (code))
    {
      c.has_exit_code = 1;
      c.exit_code = (int) json_integer_value (code);
    }
  if (json_is_integer (sig))
    c.exit_signal = (int) json_integer_value (sig);
  const char *type = "workload_exited";
  cleanup_free char *reason = NULL;
  if (exec_failed)
    {
      c.state = NEX_STATE_FAILED;
      reason = nex_xstrdup (e->agent_error ? e->agent_error : "the workload could not be executed");
      type = "workload_failed";
    }
  else if (e->stop_requested)
    {
      c.state = NEX_STATE_STOPPED;
      reason = nex_xstrdup ("stopped on request");
      type = "workload_stopped";
    }
  c.reason = reason;
  transition (sup, e->id, &c, type);
  e->final = 1;
  e->kill_at = 0;
  /* Acknowledge: the agent keeps the status until someone has recorded it, then exits. */
  send_json (e, NEX_WIRE_ACK, json_object ());
}

static void
handle_frame (nex_supervisor_t *sup, entry_t *e, const nex_wire_frame_t *f)
{
  if (f->type == NEX_WIRE_STDOUT || f->type == NEX_WIRE_STDERR)
    {
      if (f->channel == 0)
        take_output (sup, e, f->type == NEX_WIRE_STDOUT ? NEX_STREAM_STDOUT : NEX_STREAM_STDERR, f->payload, f->len,
                     0);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *msg = NULL;
  if (nex_wire_type_is_json (f->type) && (msg = nex_wire_frame_json (f, &err)) == NULL)
    {
      cleanup_free char *why = nex_xasprintf ("agent protocol error: %s", err->msg);
      close_conn (sup, e, why);
      return;
    }
  switch (f->type)
    {
    case NEX_WIRE_HELLO:
      {
        const char *state = json_string_value (json_object_get (msg, "state"));
        if (state && strcmp (state, "exited") == 0)
          handle_exit (sup, e, json_object_get (msg, "exit"));
        else if (state && strcmp (state, "running") == 0)
          {
            e->start_sent = 1; /* re-attached after a nexd restart */
            nex_state_change_t c = { .state = NEX_STATE_RUNNING };
            nex_workload_t w = { 0 };
            if (nex_registry_workload_get (sup->node->reg, e->id, &w, &err) == 0 && w.state == NEX_STATE_STARTING)
              transition (sup, e->id, &c, "workload_started");
            nex_workload_release (&w);
          }
        else if (!e->start_sent)
          send_start (sup, e);
        break;
      }
    case NEX_WIRE_STARTED:
      {
        nex_state_change_t c = { .state = NEX_STATE_RUNNING };
        transition (sup, e->id, &c, "workload_started");
        break;
      }
    case NEX_WIRE_EXIT:
      handle_exit (sup, e, msg);
      break;
    case NEX_WIRE_ERROR:
      {
        const char *m = json_string_value (json_object_get (msg, "message"));
        free (e->agent_error);
        e->agent_error = nex_xstrdup (m ? m : "unspecified agent error");
        nex_warn ("workload %s: agent: %s", e->id, e->agent_error);
        break;
      }
    default:
      {
        cleanup_free char *why = nex_xasprintf ("agent protocol error: unexpected %s frame",
                                                nex_wire_type_name (f->type));
        close_conn (sup, e, why);
      }
    }
}

/* Reads what the agent sent; returns when the socket would block or the channel was closed. */
static void
read_conn (nex_supervisor_t *sup, entry_t *e)
{
  uint8_t buf[65536];
  while (e->conn >= 0)
    {
      size_t room = nex_wire_reader_room (&e->reader);
      ssize_t n = read (e->conn, buf, room < sizeof buf ? room : sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (n <= 0)
        {
          close_conn (sup, e, n == 0 ? "the agent closed its channel" : "the agent channel failed");
          return;
        }
      cleanup_error nex_error_t err = NULL;
      if (nex_wire_reader_feed (&e->reader, buf, (size_t) n, &err) < 0)
        {
          cleanup_free char *why = nex_xasprintf ("agent protocol error: %s", err->msg);
          close_conn (sup, e, why);
          return;
        }
      nex_wire_frame_t f;
      int r;
      while (e->conn >= 0 && (r = nex_wire_reader_next (&e->reader, &f, &err)) != 0)
        {
          if (r < 0)
            {
              cleanup_free char *why = nex_xasprintf ("agent protocol error: %s", err->msg);
              close_conn (sup, e, why);
              return;
            }
          handle_frame (sup, e, &f);
        }
    }
}

static void
entry_free (entry_t *e)
{
  nex_wire_reader_release (&e->reader);
  nex_instance_release (&e->inst);
  free (e->agent_error);
  free (e->lost_reason);
  free (e);
}

/* The sandbox's root process ended: record what is still unknown and release everything. */
static void
finalize (nex_supervisor_t *sup, entry_t *e)
{
  read_conn (sup, e); /* frames it sent just before going */
  int status = 0;
  int reaped = waitpid (e->inst.pid, &status, WNOHANG) == e->inst.pid; /* our child unless re-adopted */
  if (!e->final)
    {
      cleanup_free char *why = NULL;
      if (e->stop_requested)
        {
          nex_state_change_t c = { .state = NEX_STATE_STOPPED, .reason = "stopped on request (sandbox killed)",
                                   .exit_signal = SIGKILL };
          transition (sup, e->id, &c, "workload_stopped");
        }
      else
        {
          if (e->lost_reason)
            why = nex_xstrdup (e->lost_reason);
          else if (reaped && WIFSIGNALED (status))
            why = nex_xasprintf ("the sandbox's agent was killed by signal %d", WTERMSIG (status));
          else if (reaped)
            why = nex_xasprintf ("the sandbox's agent exited with status %d", WEXITSTATUS (status));
          else
            why = nex_xstrdup ("the sandbox's agent went away");
          fail_workload (sup, e->id, why);
        }
    }
  cleanup_error nex_error_t err = NULL;
  if (e->driver->destroy (e->driver, &e->inst, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: destroy", e->id);
  if (e->conn >= 0)
    {
      epoll_ctl (sup->epfd, EPOLL_CTL_DEL, e->conn, NULL);
      close (e->conn);
    }
  if (e->pidfd >= 0)
    {
      epoll_ctl (sup->epfd, EPOLL_CTL_DEL, e->pidfd, NULL);
      close (e->pidfd);
    }
  for (entry_t **p = &sup->entries; *p; p = &(*p)->next)
    if (*p == e)
      {
        *p = e->next;
        break;
      }
  entry_free (e);
}

/* Adds a live sandbox to the loop: watches its pidfd and dials its agent. */
static entry_t *
entry_attach (nex_supervisor_t *sup, const char *id, const nex_driver_t *d, nex_instance_t *inst, nex_error_t *err)
{
  entry_t *e = nex_xzalloc (sizeof *e);
  memcpy (e->id, id, sizeof e->id);
  e->driver = d;
  e->inst = *inst;
  memset (inst, 0, sizeof *inst);
  e->conn = -1;
  e->pidfd = (int) syscall (SYS_pidfd_open, e->inst.pid, 0);
  nex_wire_reader_init (&e->reader);
  e->conn_ref = (ref_t){ .e = e, .is_pidfd = 0 };
  e->pid_ref = (ref_t){ .e = e, .is_pidfd = 1 };
  if (e->pidfd < 0)
    {
      nex_error_sys (err, errno, "watch sandbox pid %d", (int) e->inst.pid);
      entry_free (e);
      return NULL;
    }
  e->conn = d->connect (d, &e->inst, err);
  if (e->conn < 0)
    {
      close (e->pidfd);
      entry_free (e);
      return NULL;
    }
  fcntl (e->conn, F_SETFL, fcntl (e->conn, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &e->conn_ref };
  struct epoll_event pev = { .events = EPOLLIN, .data.ptr = &e->pid_ref };
  epoll_ctl (sup->epfd, EPOLL_CTL_ADD, e->conn, &ev);
  epoll_ctl (sup->epfd, EPOLL_CTL_ADD, e->pidfd, &pev);
  e->next = sup->entries;
  sup->entries = e;
  return e;
}

/* --- commands ------------------------------------------------------------------------------------------------- */

static void
do_deploy (nex_supervisor_t *sup, const char *id)
{
  nex_node_t *node = sup->node;
  cleanup_error nex_error_t err = NULL;
  cleanup_free char *path = NULL;
  cleanup_free char *run_dir = NULL;
  nex_workload_t w = { 0 };
  if (nex_registry_workload_get (node->reg, id, &w, &err) < 0)
    {
      nex_log_error (NEX_LOG_WARN, err, "deploy %s", id);
      return;
    }
  if (w.state != NEX_STATE_PENDING)
    goto out;

  nex_state_change_t starting = { .state = NEX_STATE_STARTING };
  transition (sup, id, &starting, NULL);

  char digest[65];
  path = nex_artifact_fetch (node->artifacts_dir, w.artifact, w.sha256, digest, &err);
  if (path == NULL || nex_secure_check_digest (node, id, digest, &err) < 0)
    {
      fail_workload (sup, id, err->msg);
      goto out;
    }
  const nex_driver_t *d = nex_driver_find (w.driver);
  if (d == NULL)
    {
      cleanup_free char *why = nex_xasprintf ("unknown driver `%s`", w.driver);
      fail_workload (sup, id, why);
      goto out;
    }
  run_dir = nex_xasprintf ("%s/%s", node->run_dir, id);
  nex_launch_t l = { .workload_id = id, .hostname = w.name, .artifact_path = path, .agent_path = node->agent_path,
                     .run_dir = run_dir };
  nex_instance_t inst = { 0 };
  if (d->start (d, &l, &inst, &err) < 0)
    {
      fail_workload (sup, id, err->msg);
      goto out;
    }
  /* Recorded before the agent is asked to do anything, so that a restarted nexd can find this sandbox. */
  nex_state_change_t placed = { .state = NEX_STATE_STARTING, .pid = inst.pid, .endpoint = inst.endpoint,
                                .digest = digest };
  transition (sup, id, &placed, NULL);
  nex_instance_t keep = { .pid = inst.pid };
  entry_t *e = entry_attach (sup, id, d, &inst, &err);
  if (e == NULL)
    {
      d->kill (d, &keep, NULL);
      waitpid (keep.pid, NULL, 0);
      fail_workload (sup, id, err->msg);
    }
  nex_instance_release (&inst);
out:
  nex_workload_release (&w);
}

static void
do_stop (nex_supervisor_t *sup, const char *id, int64_t grace_ms)
{
  entry_t *e = entry_find (sup, id);
  if (e == NULL)
    {
      /* Not live: only a workload that has not started yet can still be stopped. */
      nex_workload_t w = { 0 };
      cleanup_error nex_error_t err = NULL;
      if (nex_registry_workload_get (sup->node->reg, id, &w, &err) == 0 && w.state == NEX_STATE_PENDING)
        {
          nex_state_change_t c = { .state = NEX_STATE_STOPPED, .reason = "stopped before it started" };
          transition (sup, id, &c, "workload_stopped");
        }
      nex_workload_release (&w);
      return;
    }
  if (e->final)
    return;
  e->stop_requested = 1;
  e->kill_at = nex_clock_mono_ms () + grace_ms + AGENT_KILL_SLACK_MS;
  if (!e->start_sent || send_json (e, NEX_WIRE_STOP, json_pack ("{s:i, s:I}", "signal", SIGTERM, "grace_ms",
                                                                (json_int_t) grace_ms))
                            < 0)
    {
      cleanup_error nex_error_t err = NULL;
      e->driver->kill (e->driver, &e->inst, &err);
    }
}

static int
drain_commands (nex_supervisor_t *sup)
{
  uint64_t v;
  (void) !read (sup->wakefd, &v, sizeof v);
  pthread_mutex_lock (&sup->queue_lock);
  cmd_t *list = sup->queue_head;
  sup->queue_head = sup->queue_tail = NULL;
  int stop = sup->shutting_down;
  pthread_mutex_unlock (&sup->queue_lock);
  while (list)
    {
      cmd_t *c = list;
      list = c->next;
      if (!stop)
        {
          if (c->kind == CMD_DEPLOY)
            do_deploy (sup, c->id);
          else
            do_stop (sup, c->id, c->grace_ms);
        }
      free (c);
    }
  return stop;
}

static void
enqueue (nex_supervisor_t *sup, cmd_kind_t kind, const char *id, int64_t grace_ms)
{
  cmd_t *c = nex_xzalloc (sizeof *c);
  c->kind = kind;
  snprintf (c->id, sizeof c->id, "%s", id);
  c->grace_ms = grace_ms;
  pthread_mutex_lock (&sup->queue_lock);
  if (sup->queue_tail)
    sup->queue_tail->next = c;
  else
    sup->queue_head = c;
  sup->queue_tail = c;
  pthread_mutex_unlock (&sup->queue_lock);
  uint64_t one = 1;
  (void) !write (sup->wakefd, &one, sizeof one);
}

void
nex_supervisor_deploy (nex_supervisor_t *sup, const char *id)
{
  enqueue (sup, CMD_DEPLOY, id, 0);
}

void
nex_supervisor_stop (nex_supervisor_t *sup, const char *id, int64_t grace_ms)
{
  enqueue (sup, CMD_STOP, id, grace_ms);
}

/* --- the loop ------------------------------------------------------------------------------------------------- */

static void *
supervisor_main (void *arg)
{
  nex_supervisor_t *sup = arg;
  for (;;)
    {
      int timeout = -1;
      int64_t now = nex_clock_mono_ms ();
      for (entry_t *e = sup->entries; e; e = e->next)
        if (e->kill_at)
          {
            int64_t left = e->kill_at > now ? e->kill_at - now : 0;
            if (timeout < 0 || left < timeout)
              timeout = (int) left;
          }
      struct epoll_event evs[32];
      int n = epoll_wait (sup->epfd, evs, 32, timeout);
      if (n < 0 && errno != EINTR)
        {
          nex_log (NEX_LOG_ERROR, "supervisor: epoll_wait: %s", strerror (errno));
          break;
        }
      int stop = 0;
      /* Pidfd events are handled after connection events of the same round, and at most once per entry. */
      entry_t *ended[32];
      int n_ended = 0;
      for (int i = 0; i < n; i++)
        {
          ref_t *r = evs[i].data.ptr;
          if (r->e == NULL)
            stop |= drain_commands (sup);
          else if (r->is_pidfd)
            ended[n_ended++] = r->e;
          else
            read_conn (sup, r->e);
        }
      for (int i = 0; i < n_ended; i++)
        finalize (sup, ended[i]);
      now = nex_clock_mono_ms ();
      for (entry_t *e = sup->entries; e; e = e->next)
        if (e->kill_at && now >= e->kill_at)
          {
            e->kill_at = 0;
            nex_warn ("workload %s: the agent did not stop it in time; killing the sandbox", e->id);
            cleanup_error nex_error_t err = NULL;
            e->driver->kill (e->driver, &e->inst, &err);
          }
      if (stop)
        break;
    }
  return NULL;
}

/* Re-attaches to sandboxes recorded as live, fails the ones that are gone, re-queues pending workloads. */
static void
recover (nex_supervisor_t *sup)
{
  nex_workload_t *list = NULL;
  size_t n = 0;
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_workload_list (sup->node->reg, NULL, &list, &n, &err) < 0)
    {
      nex_log_error (NEX_LOG_ERROR, err, "recovery: cannot list workloads");
      return;
    }
  for (size_t i = 0; i < n; i++)
    {
      nex_workload_t *w = &list[i];
      if (w->state == NEX_STATE_PENDING)
        nex_supervisor_deploy (sup, w->id);
      else if (w->state == NEX_STATE_STARTING || w->state == NEX_STATE_RUNNING)
        {
          const nex_driver_t *d = nex_driver_find (w->driver);
          nex_instance_t inst = { .pid = (pid_t) w->pid,
                                  .endpoint = w->endpoint ? nex_xstrdup (w->endpoint) : NULL,
                                  .run_dir = nex_xasprintf ("%s/%s", sup->node->run_dir, w->id) };
          cleanup_error nex_error_t aerr = NULL;
          if (d && inst.endpoint && inst.pid > 0 && entry_attach (sup, w->id, d, &inst, &aerr))
            nex_info ("workload %s: re-attached to its sandbox (pid %d)", w->id, (int) w->pid);
          else
            {
              cleanup_free char *why = nex_xasprintf ("its sandbox was lost while nexd was down%s%s",
                                                      aerr ? ": " : "", aerr ? aerr->msg : "");
              if (d)
                d->destroy (d, &inst, NULL);
              fail_workload (sup, w->id, why);
            }
          nex_instance_release (&inst);
        }
      nex_workload_release (w);
    }
  free (list);
}

nex_supervisor_t *
nex_supervisor_start (nex_node_t *node, nex_error_t *err)
{
  nex_supervisor_t *sup = nex_xzalloc (sizeof *sup);
  sup->node = node;
  pthread_mutex_init (&sup->queue_lock, NULL);
  sup->epfd = epoll_create1 (EPOLL_CLOEXEC);
  sup->wakefd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sup->epfd < 0 || sup->wakefd < 0)
    {
      nex_error_sys (err, errno, "supervisor set-up");
      goto fail;
    }
  sup->wake_ref.e = NULL;
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &sup->wake_ref };
  epoll_ctl (sup->epfd, EPOLL_CTL_ADD, sup->wakefd, &ev);
  recover (sup);
  int r = pthread_create (&sup->thread, NULL, supervisor_main, sup);
  if (r != 0)
    {
      nex_error_sys (err, r, "start supervisor thread");
      goto fail;
    }
  return sup;
fail:
  if (sup->epfd >= 0)
    close (sup->epfd);
  if (sup->wakefd >= 0)
    close (sup->wakefd);
  free (sup);
  return NULL;
}

void
nex_supervisor_shutdown (nex_supervisor_t *sup)
{
  if (sup == NULL)
    return;
  pthread_mutex_lock (&sup->queue_lock);
  sup->shutting_down = 1;
  pthread_mutex_unlock (&sup->queue_lock);
  uint64_t one = 1;
  (void) !write (sup->wakefd, &one, sizeof one);
  pthread_join (sup->thread, NULL);
  /* Sandboxes keep running; their agents keep the output until a nexd dials again. */
  while (sup->entries)
    {
      entry_t *e = sup->entries;
      sup->entries = e->next;
      if (e->conn >= 0)
        close (e->conn);
      if (e->pidfd >= 0)
        close (e->pidfd);
      entry_free (e);
    }
  for (cmd_t *c = sup->queue_head; c;)
    {
      cmd_t *next = c->next;
      free (c);
      c = next;
    }
  close (sup->epfd);
  close (sup->wakefd);
  pthread_mutex_destroy (&sup->queue_lock);
  free (sup);
}
