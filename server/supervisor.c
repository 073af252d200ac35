/* supervisor.c — see supervisor.h.  The thread's data (entries, reader buffers) is touched by that thread only;
 * the command queue is the one structure shared with other threads, under queue_lock. */
#include "server/supervisor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/wire.h"
#include <sodium.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifacts/artifact.h"
#include "server/drivers/cgroup.h"
#include "server/clock.h"
#include "server/drivers/driver.h"
#include "server/exec.h"
#include "server/id.h"
#include "server/log.h"
#include "server/drivers/proc.h"
#include "server/drivers/seccomp.h"
#include "server/nats/bridge.h"
#include "server/nats/secure.h"

#define MAX_LINE 16384          /* longer output lines are split */
#define AGENT_KILL_SLACK_MS 5000 /* after the grace, how long the agent has to report before it is killed */
#define EXEC_SLACK_MS 10000      /* after an exec's timeout, how long the agent has to report its end */
#define RESTART_BASE_MS 200      /* first restart delay; doubled for every restart already done */
#define RESTART_MAX_MS 30000     /* longest restart delay */
#include "server/drivers/resync.h"
#define AGENT_HELLO_TIMEOUT_MS 60000 /* a new environment's agent must greet within this (a VM boots first) */
#define GREET_RETRY_MS 2000      /* a re-attached stream agent that has not answered is greeted again... */
#define GREET_GIVE_UP_MS 60000   /* ...until this long has passed; then it is deemed lost */
#define SESSION_START_MS 10000   /* how long an interactive exec may take to start */
#define ATTACH_END_WAIT_MS 2000  /* an environment whose agent refused the dial has this long to end by itself */

typedef enum
{
  CMD_DEPLOY,
  CMD_STOP,
  CMD_SIGNAL,
  CMD_EXEC,
  CMD_EXEC_INPUT, /* a frame for an interactive session */
  CMD_EXEC_CLOSE, /* its client is gone */
} cmd_kind_t;

typedef struct cmd
{
  cmd_kind_t kind;
  char id[NEX_ID_LEN + 1];
  int64_t grace_ms;   /* CMD_STOP */
  int signal;         /* CMD_SIGNAL */
  nex_exec_t *exec;   /* CMD_EXEC: a reference */
  nex_exec_t *target; /* CMD_EXEC_INPUT, CMD_EXEC_CLOSE: a reference */
  int frame_type;     /* CMD_EXEC_INPUT */
  uint8_t *data;      /* CMD_EXEC_INPUT: the payload, owned */
  size_t len;
  struct cmd *next;
} cmd_t;

typedef struct entry entry_t;

/* What an epoll event refers to. */
typedef struct ref
{
  entry_t *e; /* NULL: the wake-up eventfd */
  int is_pidfd;
  int is_console; /* the environment's console output (drivers with connect_console) */
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
  linebuf_t lines[3];    /* partial stdout / stderr / console line */
  ref_t conn_ref, pid_ref, console_ref;
  int console;           /* console output connection, -1 when none */
  int resyncing;         /* re-attached to a stream endpoint: waiting for the agent's answer to our greeting */
  nex_resync_t resync;
  int64_t greet_at;      /* monotonic ms of the next greeting while resyncing; 0: none */
  int64_t greet_until;   /* monotonic ms after which an unanswered greeting means the agent is lost */
  int64_t hello_by;      /* monotonic ms by which a new environment's agent must have greeted; 0: it did */
  int boot_timed_out;    /* it did not, and the environment was killed for it */
  int start_sent;        /* START was sent (or the agent said it had started) */
  int final;             /* the workload reached a final state; waiting for the agent to go */
  int stop_requested;
  int64_t kill_at;       /* monotonic ms after which the driver kills the sandbox; 0: none */
  char *agent_error;     /* last ERROR message from the agent */
  char *lost_reason;     /* why the channel was given up, when it was */
  int64_t oom_seen;      /* the cgroup's OOM-kill count already accounted for (restarts share the cgroup) */
  int64_t restart_at;    /* monotonic ms at which the ended workload is started again; 0: no restart pending */
  nex_exec_t *execs;     /* exec sessions in flight on this agent connection */
  uint16_t last_channel; /* the last exec channel handed out */
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
  json_t *seccomp;   /* the default seccomp profile (seccomp.h), sent with every START and EXEC */
  int64_t execs_waiting; /* API threads inside nex_supervisor_exec (under queue_lock) */
  nex_exec_t **waiting;  /* their requests (under queue_lock), so that shutdown can release them at once */
  int refusing_execs;    /* set by nex_supervisor_quiesce (under queue_lock) */
  int sessions;          /* interactive sessions open (under queue_lock) */
};

static entry_t *
entry_find (nex_supervisor_t *sup, const char *id)
{
  for (entry_t *e = sup->entries; e; e = e->next)
    if (strcmp (e->id, id) == 0)
      return e;
  return NULL;
}

/* Ends every exec session of E with an error of KIND saying WHY (the workload or its channel is gone). */
static void
execs_fail_all (entry_t *e, nex_error_kind_t kind, const char *why)
{
  while (e->execs)
    {
      nex_exec_t *x = e->execs;
      e->execs = x->next;
      nex_error_t err = NULL;
      nex_error_set (&err, kind, "%s", why);
      nex_exec_fail (x, &err);
      nex_exec_unref (x);
    }
}

static void
exec_remove (entry_t *e, nex_exec_t *x)
{
  for (nex_exec_t **p = &e->execs; *p; p = &(*p)->next)
    if (*p == x)
      {
        *p = x->next;
        nex_exec_unref (x);
        return;
      }
}

/* Persists a transition of workload ID and reports it as event TYPE (NULL: no event) with EXTRA (stolen, may be
 * NULL) merged into the event's data. */
static void
transition_with (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type, json_t *extra)
{
  cleanup_json json_t *more = extra;
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
  if (more)
    json_object_update (data, more);
  nex_node_emit (sup->node, type, &w, data);
  nex_workload_release (&w);
}

/* Persists a transition of workload ID and reports it as event TYPE (NULL: no event). */
static void
transition (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type)
{
  transition_with (sup, id, c, type, NULL);
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
  nex_node_store_logs (sup->node, e->id, lines, n);
}

/* Splits DATA into lines on STREAM's buffer and stores the complete ones; FLUSH also stores a final partial
 * line. */
static void
take_output (nex_supervisor_t *sup, entry_t *e, nex_stream_t stream, const uint8_t *data, size_t len, int flush)
{
  linebuf_t *lb = &e->lines[stream == NEX_STREAM_CONSOLE ? 2 : stream == NEX_STREAM_STDERR];
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
  execs_fail_all (e, NEX_ERR_CONFLICT, "the workload's agent channel closed during exec");
  nex_resync_release (&e->resync);
  e->resyncing = 0;
  e->greet_at = 0;
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

/* What every process the agent starts for workload W gets: the seccomp profile, the capabilities it keeps (as
 * numbers; all others are dropped) and its working directory. */
static void
add_hardening (nex_supervisor_t *sup, json_t *req, const nex_workload_t *w)
{
  json_object_set (req, "seccomp", sup->seccomp);
  json_t *caps = json_array ();
  size_t i;
  json_t *name;
  json_array_foreach (w->capabilities, i, name)
  {
    int cap = nex_capability_parse (json_string_value (name));
    if (cap >= 0)
      json_array_append_new (caps, json_integer (cap));
  }
  json_object_set_new (req, "capabilities", caps);
  if (w->cwd)
    json_object_set_new (req, "cwd", json_string (w->cwd));
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
  /* A function's executable runs per trigger message (exec sessions); its main process only keeps the sandbox
   * warm and `running`. */
  if (w.type == NEX_WORKLOAD_FUNCTION)
    json_object_set_new (start, "park", json_true ());
  add_hardening (sup, start, &w);
  nex_workload_release (&w);
  int sent = send_json (e, NEX_WIRE_START, start);
  nex_secure_env_wipe (env);
  if (sent < 0)
    close_conn (sup, e, "cannot send START to the agent");
  else
    e->start_sent = 1;
}

/* Whether the workload's end was an OOM kill: the cgroup's OOM killer acted since the last look and the main
 * process died of SIGKILL (what the OOM killer sends).  Any new OOM kill — of the main process or of another one
 * in the sandbox — is reported as the event workload_oom. */
static int
check_oom (nex_supervisor_t *sup, entry_t *e, const nex_cgroup_stats_t *usage, int exit_signal)
{
  cleanup_error nex_error_t err = NULL;
  const nex_cgroup_stats_t st = *usage;
  if (st.oom_kills <= e->oom_seen)
    return 0;
  int64_t kills = st.oom_kills - e->oom_seen;
  e->oom_seen = st.oom_kills;
  nex_workload_t w = { 0 };
  if (nex_registry_workload_get (sup->node->reg, e->id, &w, &err) == 0)
    {
      json_t *data = json_pack ("{s:I, s:I, s:I, s:b}", "oom_kills", (json_int_t) kills, "memory_peak_bytes",
                                (json_int_t) st.memory_peak, "memory_limit_bytes", (json_int_t) st.memory_limit,
                                "main_process", exit_signal == SIGKILL);
      nex_node_emit (sup->node, "workload_oom", &w, data);
    }
  nex_workload_release (&w);
  return exit_signal == SIGKILL;
}

/* What the sandbox used, for the event that reports an end: the cgroup's figures (kept across restarts in the
 * same sandbox), or NULL when there are none.  Pids-limit hits and CPU throttling are reported here and in
 * GET .../stats. */
static json_t *
usage_json (const nex_cgroup_stats_t *st)
{
  return json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I}", "memory_peak_bytes", (json_int_t) st->memory_peak,
                    "memory_limit_hits", (json_int_t) st->memory_limit_hits, "oom_kills", (json_int_t) st->oom_kills,
                    "cpu_usage_ns", (json_int_t) st->cpu_usage_ns, "cpu_throttled_periods",
                    (json_int_t) st->cpu_throttled_periods, "pids_limit_hits", (json_int_t) st->pids_limit_hits);
}

/* Whether workload W's policy restarts it after an end described by C (OOM: it was OOM-killed). */
static int
wants_restart (const nex_workload_t *w, const nex_state_change_t *c, int oom)
{
  if (w->restarts >= w->max_restarts)
    return 0;
  switch (w->restart_policy)
    {
    case NEX_RESTART_ALWAYS:
      return 1;
    case NEX_RESTART_ON_FAILURE:
      return oom || c->exit_signal != 0 || (c->has_exit_code && c->exit_code != 0);
    case NEX_RESTART_NEVER:
      break;
    }
  return 0;
}

/* Restarts happen inside the same sandbox: the agent starts the workload's process again on the next START
 * (same namespaces, cgroup and /tmp), which costs a fork instead of a new sandbox.  The delay doubles with every
 * restart done (RESTART_BASE_MS, 2x, 4x ... up to RESTART_MAX_MS), so a crash loop costs little.  The restart is
 * counted and announced now; the workload is `starting` until the agent reports the new process. */
static void
schedule_restart (nex_supervisor_t *sup, entry_t *e, const nex_workload_t *w, const nex_state_change_t *c, int oom)
{
  int shift = w->restarts < 10 ? (int) w->restarts : 10;
  int64_t delay = (int64_t) RESTART_BASE_MS << shift;
  if (delay > RESTART_MAX_MS)
    delay = RESTART_MAX_MS;
  e->restart_at = nex_clock_mono_ms () + delay;
  e->kill_at = 0;
  cleanup_free char *how = oom                ? nex_xstrdup ("oom_killed")
                           : c->exit_signal   ? nex_xasprintf ("signal %d", c->exit_signal)
                                              : nex_xasprintf ("exit code %d", c->exit_code);
  cleanup_free char *reason = nex_xasprintf ("restart %lld of %lld in %lld ms after %s", (long long) w->restarts + 1,
                                             (long long) w->max_restarts, (long long) delay, how);
  nex_state_change_t r = { .state = NEX_STATE_STARTING, .reason = reason, .restarted = 1 };
  transition (sup, e->id, &r, NULL);
  json_t *data = json_pack ("{s:I, s:I, s:I, s:s}", "restarts", (json_int_t) w->restarts + 1, "max_restarts",
                            (json_int_t) w->max_restarts, "delay_ms", (json_int_t) delay, "after", how);
  if (c->has_exit_code)
    json_object_set_new (data, "exit_code", json_integer (c->exit_code));
  if (c->exit_signal)
    json_object_set_new (data, "exit_signal", json_integer (c->exit_signal));
  nex_node_emit (sup->node, "workload_restarted", w, data);
}

/* The workload ended: EXIT (or a HELLO saying "exited") carried STATUS. */
static void
handle_exit (nex_supervisor_t *sup, entry_t *e, json_t *status)
{
  if (e->final || e->restart_at)
    return; /* recorded already (a HELLO repeats the EXIT it follows) */
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
  cleanup_free char *reason = nex_xstrdup (""); /* an exit on its own has no reason; clears a restart's */
  nex_cgroup_stats_t st;
  int have_usage = sup->node->cgroups && nex_cgroups_stats (sup->node->cgroups, e->id, &st, NULL) == 0;
  int oom = have_usage && check_oom (sup, e, &st, c.exit_signal);
  if (oom)
    {
      c.state = NEX_STATE_FAILED;
      free (reason);
      reason = nex_xstrdup ("oom_killed");
      type = "workload_failed";
    }
  else if (exec_failed)
    {
      c.state = NEX_STATE_FAILED;
      free (reason);
      reason = nex_xstrdup (e->agent_error ? e->agent_error : "the workload could not be executed");
      type = "workload_failed";
    }
  else if (e->stop_requested)
    {
      c.state = NEX_STATE_STOPPED;
      free (reason);
      reason = nex_xstrdup ("stopped on request");
      type = "workload_stopped";
    }
  c.reason = reason;
  nex_workload_t w = { 0 };
  cleanup_error nex_error_t err = NULL;
  if (!e->stop_requested && !exec_failed && nex_registry_workload_get (sup->node->reg, e->id, &w, &err) == 0)
    {
      if (w.state == NEX_STATE_STARTING && w.restarts > 0)
        {
          /* A restart was decided and counted before nexd restarted: carry it out now. */
          e->restart_at = nex_clock_mono_ms ();
          nex_workload_release (&w);
          return;
        }
      if (wants_restart (&w, &c, oom))
        {
          schedule_restart (sup, e, &w, &c, oom);
          nex_workload_release (&w);
          return;
        }
    }
  nex_workload_release (&w);
  transition_with (sup, e->id, &c, type, have_usage ? json_pack ("{s:o}", "usage", usage_json (&st)) : NULL);
  e->final = 1;
  e->kill_at = 0;
  /* Acknowledge: the agent keeps the status until someone has recorded it, then exits. */
  send_json (e, NEX_WIRE_ACK, json_object ());
}

/* --- exec sessions ------------------------------------------------------------------------------------------- */

/* An agent's ERROR about exec session X: the program could not be run.  The message comes from the guest, so it
 * is shown bounded; errno 2 is the common case, said plainly. */
static void
exec_refused (nex_exec_t *x, json_t *msg)
{
  const char *m = json_string_value (json_object_get (msg, "message"));
  json_int_t errnum = json_integer_value (json_object_get (msg, "errno"));
  const char *prog = x->path;
  nex_error_t err = NULL;
  if (errnum == ENOENT && m && strncmp (m, "exec `", 6) == 0)
    nex_error_field (&err, "argv[0]", "`%.200s` does not exist in the sandbox of workload %s (it holds only "
                     "/workload, /sbin/nex-agent, /proc, /dev, /tmp and what the workload wrote there)",
                     prog ? prog : "?", x->id);
  else if (errnum == ESRCH)
    nex_error_set (&err, NEX_ERR_CONFLICT, "workload %s is not running", x->id);
  else if (errnum == EAGAIN || errnum == EBUSY)
    nex_error_set (&err, NEX_ERR_UNAVAILABLE, "exec: %.200s", m ? m : "the agent is busy");
  else
    nex_error_field (&err, "argv[0]", "`%.200s` cannot be run in the sandbox: %.200s", prog ? prog : "?",
                     m ? m : "unspecified error");
  nex_exec_fail (x, &err);
}

/* A frame on channel != 0: it belongs to an exec session (or to one given up already, then it is ignored). */
static void
handle_exec_frame (nex_supervisor_t *sup, entry_t *e, const nex_wire_frame_t *f)
{
  nex_exec_t *x = e->execs;
  while (x && x->channel != f->channel)
    x = x->next;
  if (x == NULL)
    return;
  if (f->type == NEX_WIRE_STDOUT || f->type == NEX_WIRE_STDERR)
    {
      nex_exec_output (x, f->type == NEX_WIRE_STDERR ? 2 : 1, f->payload, f->len);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *msg = nex_wire_type_is_json (f->type) ? nex_wire_frame_json (f, &err) : NULL;
  if (msg == NULL)
    {
      cleanup_free char *why = nex_xasprintf ("agent protocol error: %s frame on exec channel %u",
                                              nex_wire_type_name (f->type), (unsigned) f->channel);
      close_conn (sup, e, why);
      return;
    }
  switch (f->type)
    {
    case NEX_WIRE_STARTED:
      nex_exec_started (x, json_integer_value (json_object_get (msg, "pid")));
      break;
    case NEX_WIRE_EXIT:
      nex_exec_finish (x, msg);
      exec_remove (e, x);
      break;
    case NEX_WIRE_ERROR:
      exec_refused (x, msg);
      exec_remove (e, x);
      break;
    default:
      break;
    }
}

/* Sends one frame on the agent's (non-blocking) socket, waiting for room up to a few seconds: exec stdin can be
 * larger than the socket buffer, and the agent drains it as fast as it buffers it. */
static int
send_frame_waiting (entry_t *e, nex_wire_type_t type, uint16_t channel, const void *data, size_t len)
{
  size_t n;
  cleanup_free uint8_t *frame = nex_wire_encode (type, channel, data, len, &n, NULL);
  size_t off = 0;
  while (frame && off < n && e->conn >= 0)
    {
      ssize_t w = write (e->conn, frame + off, n - off);
      if (w > 0)
        off += (size_t) w;
      else if (w < 0 && errno == EINTR)
        continue;
      else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        {
          struct pollfd p = { .fd = e->conn, .events = POLLOUT };
          if (poll (&p, 1, 5000) <= 0)
            return -1;
        }
      else
        return -1;
    }
  return frame && off == n ? 0 : -1;
}

static void
do_exec (nex_supervisor_t *sup, nex_exec_t *x)
{
  entry_t *e = entry_find (sup, x->id);
  nex_error_t err = NULL;
  if (e == NULL || e->final || e->restart_at || !e->start_sent || e->conn < 0)
    {
      nex_error_set (&err, NEX_ERR_CONFLICT, "workload %s is not running", x->id);
      nex_exec_fail (x, &err);
      nex_exec_unref (x);
      return;
    }
  nex_workload_t w = { 0 };
  if (nex_registry_workload_get (sup->node->reg, x->id, &w, &err) < 0)
    {
      nex_exec_fail (x, &err);
      nex_exec_unref (x);
      return;
    }
  /* A channel no session of this connection uses. */
  int in_use;
  do
    {
      e->last_channel = (uint16_t) (e->last_channel == UINT16_MAX ? 1 : e->last_channel + 1);
      in_use = 0;
      for (nex_exec_t *o = e->execs; o; o = o->next)
        in_use |= o->channel == e->last_channel;
    }
  while (in_use);
  x->channel = e->last_channel;
  /* An interactive session lasts as long as its client likes: no deadline until it is closed. */
  x->deadline = x->interactive ? 0 : nex_clock_mono_ms () + x->timeout_ms + EXEC_SLACK_MS;
  x->next = e->execs;
  e->execs = x;

  /* The workload's environment as it started with (its sealed part opened, secure.h), the request's on top: an
   * exec (a function's run, a shell) sees what the workload sees. */
  json_t *env = nex_secure_start_env (sup->node, x->id, w.env, &err);
  if (env == NULL)
    {
      nex_workload_release (&w);
      nex_error_wrap (&err, "exec: cannot open the workload's sealed environment");
      nex_exec_fail (x, &err);
      exec_remove (e, x);
      return;
    }
  json_object_update (env, x->env);
  json_t *req = json_pack ("{s:s, s:O, s:O, s:I}", "path", x->path, "argv", x->argv, "env", env,
                           "timeout_ms", (json_int_t) x->timeout_ms);
  add_hardening (sup, req, &w);
  nex_workload_release (&w);
  if (x->tty)
    {
      json_object_set_new (req, "tty", json_true ());
      json_object_set_new (req, "rows", json_integer (x->rows));
      json_object_set_new (req, "cols", json_integer (x->cols));
    }
  char *text = json_dumps (req, JSON_COMPACT);
  json_decref (req);
  nex_secure_env_wipe (env);
  int ok = text && send_frame_waiting (e, NEX_WIRE_EXEC, x->channel, text, strlen (text)) == 0;
  if (text)
    sodium_memzero (text, strlen (text)); /* it held the opened environment */
  free (text);
  if (x->interactive)
    {
      /* Its stdin comes later, from its client (do_exec_input). */
      if (!ok)
        {
          nex_error_set (&err, NEX_ERR_UNAVAILABLE, "exec: cannot reach the agent of workload %s", x->id);
          nex_exec_fail (x, &err);
          exec_remove (e, x);
        }
      return;
    }
  for (size_t off = 0; ok && off < x->stdin_len; off += 65536)
    {
      size_t n = x->stdin_len - off < 65536 ? x->stdin_len - off : 65536;
      ok = send_frame_waiting (e, NEX_WIRE_STDIN, x->channel, x->stdin_data + off, n) == 0;
    }
  ok = ok && send_frame_waiting (e, NEX_WIRE_STDIN, x->channel, NULL, 0) == 0;
  if (!ok)
    {
      nex_error_set (&err, NEX_ERR_UNAVAILABLE, "exec: cannot reach the agent of workload %s", x->id);
      nex_exec_fail (x, &err);
      exec_remove (e, x);
    }
}

/* The entry whose live session X is, or NULL when X has ended (or its workload has). */
static entry_t *
session_entry (nex_supervisor_t *sup, nex_exec_t *x)
{
  entry_t *e = entry_find (sup, x->id);
  if (e == NULL || e->conn < 0)
    return NULL;
  for (nex_exec_t *o = e->execs; o; o = o->next)
    if (o == x)
      return e;
  return NULL;
}

static void
do_exec_input (nex_supervisor_t *sup, nex_exec_t *x, int type, const uint8_t *data, size_t len)
{
  entry_t *e = session_entry (sup, x);
  if (e && send_frame_waiting (e, (nex_wire_type_t) type, x->channel, data, len) < 0)
    {
      nex_error_t err = NULL;
      nex_error_set (&err, NEX_ERR_UNAVAILABLE, "exec: the agent of workload %s does not take input", x->id);
      nex_exec_fail (x, &err);
      exec_remove (e, x);
    }
  nex_exec_input_done (x, len);
}

/* The client of session X is gone: SIGKILL (which the agent takes as the end of the whole session), and the usual
 * deadline for the agent to report it. */
static void
do_exec_close (nex_supervisor_t *sup, nex_exec_t *x)
{
  entry_t *e = session_entry (sup, x);
  if (e == NULL)
    return;
  static const char kill_msg[] = "{\"signal\":9}";
  x->deadline = nex_clock_mono_ms () + EXEC_SLACK_MS;
  if (send_frame_waiting (e, NEX_WIRE_SIGNAL, x->channel, kill_msg, sizeof kill_msg - 1) < 0)
    {
      nex_error_t err = NULL;
      nex_error_set (&err, NEX_ERR_UNAVAILABLE, "exec: closed");
      nex_exec_fail (x, &err);
      exec_remove (e, x);
    }
}

static void
do_signal (nex_supervisor_t *sup, const char *id, int sig)
{
  entry_t *e = entry_find (sup, id);
  if (e == NULL || e->final || !e->start_sent || e->restart_at)
    return; /* it ended meanwhile: nothing left to signal */
  send_json (e, NEX_WIRE_SIGNAL, json_pack ("{s:i}", "signal", sig));
}

static void
handle_frame (nex_supervisor_t *sup, entry_t *e, const nex_wire_frame_t *f)
{
  if (f->channel != 0)
    {
      handle_exec_frame (sup, e, f);
      return;
    }
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
        e->hello_by = 0;
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
        /* "": a restart's reason no longer applies once the process runs again. */
        nex_state_change_t c = { .state = NEX_STATE_RUNNING, .reason = "" };
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

/* Decodes N bytes of the agent's stream and handles each complete frame.  -1 when the channel was closed. */
static int
feed_frames (nex_supervisor_t *sup, entry_t *e, const uint8_t *data, size_t n)
{
  cleanup_error nex_error_t err = NULL;
  while (n > 0 && e->conn >= 0)
    {
      /* The reader takes at most `room` bytes at a time; a re-sync tail can be larger than one read. */
      size_t room = nex_wire_reader_room (&e->reader);
      size_t take = n < room ? n : room;
      if (nex_wire_reader_feed (&e->reader, data, take, &err) < 0)
        {
          cleanup_free char *why = nex_xasprintf ("agent protocol error: %s", err->msg);
          close_conn (sup, e, why);
          return -1;
        }
      data += take;
      n -= take;
      nex_wire_frame_t f;
      int r;
      while (e->conn >= 0 && (r = nex_wire_reader_next (&e->reader, &f, &err)) != 0)
        {
          if (r < 0)
            {
              cleanup_free char *why = nex_xasprintf ("agent protocol error: %s", err->msg);
              close_conn (sup, e, why);
              return -1;
            }
          handle_frame (sup, e, &f);
        }
    }
  return e->conn >= 0 ? 0 : -1;
}

/* Re-attached to a stream: skips bytes up to the agent's answer to our greeting, then decodes as usual. */
static int
feed_resync (nex_supervisor_t *sup, entry_t *e, const uint8_t *data, size_t n)
{
  nex_wire_frame_t hello;
  const uint8_t *rest;
  size_t rest_len;
  if (!nex_resync_feed (&e->resync, data, n, &hello, &rest, &rest_len))
    return 0;
  nex_info ("workload %s: the agent answered; %zu bytes before its answer skipped", e->id, e->resync.skipped);
  e->resyncing = 0;
  e->greet_at = 0;
  handle_frame (sup, e, &hello);
  cleanup_free uint8_t *tail = rest_len ? nex_xmalloc (rest_len) : NULL;
  if (rest_len)
    memcpy (tail, rest, rest_len);
  nex_resync_release (&e->resync);
  return feed_frames (sup, e, tail, rest_len);
}

/* Reads what the agent sent; returns when the socket would block or the channel was closed. */
static void
read_conn (nex_supervisor_t *sup, entry_t *e)
{
  uint8_t buf[65536];
  while (e->conn >= 0)
    {
      size_t room = e->resyncing ? sizeof buf : nex_wire_reader_room (&e->reader);
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
      if ((e->resyncing ? feed_resync (sup, e, buf, (size_t) n) : feed_frames (sup, e, buf, (size_t) n)) < 0)
        return;
    }
}

/* Sends (again) the greeting of a re-attach to a stream endpoint. */
static void
greet (nex_supervisor_t *sup, entry_t *e)
{
  int64_t now = nex_clock_mono_ms ();
  if (!e->resyncing)
    {
      nex_resync_init (&e->resync);
      e->resyncing = 1;
      e->greet_until = now + GREET_GIVE_UP_MS;
    }
  e->greet_at = now + GREET_RETRY_MS;
  if (send_json (e, NEX_WIRE_HELLO, nex_resync_greeting (&e->resync)) < 0)
    close_conn (sup, e, "cannot greet the agent");
}

/* Reads the environment's console output into the `console` log stream.  Its end is no error: the guest may
 * simply have stopped writing, or be gone (the pidfd says which). */
static void
read_console (nex_supervisor_t *sup, entry_t *e)
{
  uint8_t buf[16384];
  while (e->console >= 0)
    {
      ssize_t n = read (e->console, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (n <= 0)
        {
          epoll_ctl (sup->epfd, EPOLL_CTL_DEL, e->console, NULL);
          close (e->console);
          e->console = -1;
          return;
        }
      take_output (sup, e, NEX_STREAM_CONSOLE, buf, (size_t) n, 0);
    }
}

/* Connects to the console of drivers that have one. */
static void
attach_console (nex_supervisor_t *sup, entry_t *e)
{
  if (e->driver->connect_console == NULL)
    return;
  cleanup_error nex_error_t err = NULL;
  e->console = e->driver->connect_console (e->driver, &e->inst, &err);
  if (e->console < 0)
    {
      nex_log_error (NEX_LOG_WARN, err, "workload %s: no console output", e->id);
      return;
    }
  fcntl (e->console, F_SETFL, fcntl (e->console, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &e->console_ref };
  epoll_ctl (sup->epfd, EPOLL_CTL_ADD, e->console, &ev);
}

static void
entry_free (entry_t *e)
{
  execs_fail_all (e, NEX_ERR_CONFLICT, "the workload ended during exec");
  nex_wire_reader_release (&e->reader);
  nex_resync_release (&e->resync);
  nex_instance_release (&e->inst);
  free (e->agent_error);
  free (e->lost_reason);
  free (e);
}

/* INST, a new environment of workload ID started by driver D on a path this host may not support
 * (inst.may_fall_back: a VM under KVM), ended before its agent greeted.  When D gives that path up for the node,
 * this says so (the event node_kvm_unusable, from the end that gave it up) and puts the workload back to pending
 * for one more start, which takes the other path (a VM under TCG): returns 1.  0: the workload fails as usual.
 * The environment must have been cleaned up, or be before this thread reads its queue again. */
static int
retry_elsewhere (nex_supervisor_t *sup, const char *id, const nex_driver_t *d, const nex_instance_t *inst,
                 int reaped, int status, int boot_timed_out)
{
  if (!inst->may_fall_back || d->fall_back == NULL)
    return 0;
  cleanup_free char *what = NULL;
  int first = d->fall_back (d, inst, reaped, status, boot_timed_out, &what);
  if (first < 0)
    return 0;
  cleanup_error nex_error_t err = NULL;
  nex_workload_t w = { 0 };
  if (first && nex_registry_workload_get (sup->node->reg, id, &w, &err) == 0)
    nex_node_emit (sup->node, "node_kvm_unusable", &w, json_pack ("{s:s}", "reason", what));
  nex_workload_release (&w);
  cleanup_free char *why = nex_xasprintf ("KVM is unusable on this node (%s): starting again under TCG", what);
  nex_state_change_t c = { .state = NEX_STATE_PENDING, .reason = why, .pid = -1, .endpoint = "", .agent_start = -1 };
  transition (sup, id, &c, NULL);
  nex_supervisor_deploy (sup, id); /* read on this thread's next round, after the caller's cleanup */
  return 1;
}

/* The sandbox's root process ended: record what is still unknown and release everything. */
static void
finalize (nex_supervisor_t *sup, entry_t *e)
{
  read_conn (sup, e); /* frames it sent just before going */
  read_console (sup, e);
  take_output (sup, e, NEX_STREAM_CONSOLE, NULL, 0, 1);
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
      else if (!(e->hello_by || e->boot_timed_out)
               || !retry_elsewhere (sup, e->id, e->driver, &e->inst, reaped, status, e->boot_timed_out))
        {
          cleanup_free char *ending
              = e->driver->describe_end ? e->driver->describe_end (e->driver, &e->inst, reaped, status) : NULL;
          if (e->lost_reason && ending)
            why = nex_xasprintf ("%s (%s)", e->lost_reason, ending);
          else if (e->lost_reason)
            why = nex_xstrdup (e->lost_reason);
          else if (ending)
            why = NEX_STEAL_PTR (ending);
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
  nex_error_free (&err);
  if (sup->node->cgroups && nex_cgroups_destroy (sup->node->cgroups, e->id, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: cgroup", e->id);
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
  if (e->console >= 0)
    {
      epoll_ctl (sup->epfd, EPOLL_CTL_DEL, e->console, NULL);
      close (e->console);
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
  e->console = -1;
  e->console_ref = (ref_t){ .e = e, .is_console = 1 };
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

/* Where a sandbox being started goes: the workload's cgroup (created by do_deploy, named by the workload id). */
typedef struct placement
{
  nex_supervisor_t *sup;
  const char *id;
} placement_t;

/* nex_launch_t.place: joins the sandbox's root process to its workload's cgroup. */
static int
place_in_cgroup (void *ctx, pid_t pid, nex_error_t *err)
{
  const placement_t *where = ctx;
  return nex_cgroups_attach (where->sup->node->cgroups, where->id, pid, err);
}

/* Gives the environment I of driver D up to WAIT_MS (0: none) to end by itself, then ends it (D's kill) and
 * reaps it.  Returns its wait status. */
static int
end_environment (const nex_driver_t *d, const nex_instance_t *i, int64_t wait_ms)
{
  cleanup_close int pidfd = wait_ms > 0 ? (int) syscall (SYS_pidfd_open, i->pid, 0) : -1;
  struct pollfd p = { .fd = pidfd, .events = POLLIN };
  if (pidfd >= 0)
    while (poll (&p, 1, (int) wait_ms) < 0 && errno == EINTR)
      ;
  d->kill (d, i, NULL);
  int status = 0;
  while (waitpid (i->pid, &status, 0) < 0 && errno == EINTR)
    ;
  return status;
}

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
  int64_t t_fetch = nex_clock_mono_ms ();
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
  if (node->cgroups == NULL)
    {
      cleanup_free char *why = nex_xasprintf ("this node cannot enforce resource limits: %s", node->cgroups_error);
      fail_workload (sup, id, why);
      goto out;
    }
  /* The cgroup exists before the sandbox does; the driver places the sandbox's root process in it before that
   * process runs anything (place_in_cgroup).  A microVM's memory is bounded by its guest size instead: a cgroup
   * limit of the same size would OOM-kill the VM monitor along with its guest. */
  nex_cgroup_limits_t limits = { .vcpus = w.resources.vcpus,
                                 .memory_bytes = d->sized_by_guest ? 0 : w.resources.memory_mb * 1024 * 1024,
                                 .pids = w.resources.pids };
  int64_t t_cgroup = nex_clock_mono_ms ();
  if (nex_cgroups_create (node->cgroups, id, &limits, &err) < 0)
    {
      fail_workload (sup, id, err->msg);
      goto out;
    }
  run_dir = nex_xasprintf ("%s/%s", node->run_dir, id);
  placement_t where = { .sup = sup, .id = id };
  nex_launch_t l = { .workload_id = id, .hostname = w.name, .artifact_path = path, .agent_path = node->agent_path,
                     .run_dir = run_dir, .digest = digest, .workload = &w, .tmp_mb = w.resources.disk_mb,
                     .host_network = w.host_network, .place = place_in_cgroup, .place_ctx = &where };
  nex_instance_t inst = { 0 };
  int64_t t_start = nex_clock_mono_ms ();
  if (d->start (d, &l, &inst, &err) < 0)
    {
      nex_cgroups_destroy (node->cgroups, id, NULL);
      fail_workload (sup, id, err->msg);
      goto out;
    }
  /* Recorded before the agent is asked to do anything, so that a restarted nexd can find this sandbox; the
   * start time tells it apart from a later process that happens to get the same pid. */
  int64_t t_done = nex_clock_mono_ms ();
  nex_debug ("workload %s: fetch %lld ms, cgroup %lld ms, sandbox %lld ms", id, (long long) (t_cgroup - t_fetch),
             (long long) (t_start - t_cgroup), (long long) (t_done - t_start));
  nex_state_change_t placed = { .state = NEX_STATE_STARTING, .pid = inst.pid, .endpoint = inst.endpoint,
                                .digest = digest, .agent_start = nex_proc_start_time (inst.pid) };
  transition (sup, id, &placed, NULL);
  /* entry_attach takes INST over even when it fails; what ending the environment then needs is kept here. */
  nex_instance_t keep = { .pid = inst.pid, .run_dir = inst.run_dir ? nex_xstrdup (inst.run_dir) : NULL,
                          .boot_ms = inst.boot_ms, .may_fall_back = inst.may_fall_back };
  entry_t *e = entry_attach (sup, id, d, &inst, &err);
  if (e == NULL)
    {
      /* Its agent cannot be dialled.  Refused: no process holds the listening socket any more, so the
       * environment is already going (a VM monitor that failed at once), and how it ends says why. */
      int status = end_environment (d, &keep, err->errnum == ECONNREFUSED ? ATTACH_END_WAIT_MS : 0);
      cleanup_free char *ending = d->describe_end ? d->describe_end (d, &keep, 1, status) : NULL;
      int retried = retry_elsewhere (sup, id, d, &keep, 1, status, 0);
      d->destroy (d, &keep, NULL);
      nex_cgroups_destroy (node->cgroups, id, NULL);
      if (!retried)
        {
          cleanup_free char *why = ending ? nex_xasprintf ("%s (%s)", err->msg, ending) : nex_xstrdup (err->msg);
          fail_workload (sup, id, why);
        }
    }
  else
    {
      e->hello_by = nex_clock_mono_ms () + (e->inst.boot_ms > 0 ? e->inst.boot_ms : AGENT_HELLO_TIMEOUT_MS);
      attach_console (sup, e);
    }
  nex_instance_release (&keep);
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
  if (e->restart_at)
    {
      /* Between two runs: nothing to signal; the stop just cancels the restart. */
      e->restart_at = 0;
      e->stop_requested = 1;
      nex_state_change_t c = { .state = NEX_STATE_STOPPED, .reason = "stopped on request (between restarts)" };
      transition (sup, id, &c, "workload_stopped");
      e->final = 1;
      send_json (e, NEX_WIRE_ACK, json_object ());
      return;
    }
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
          switch (c->kind)
            {
            case CMD_DEPLOY:
              do_deploy (sup, c->id);
              break;
            case CMD_STOP:
              do_stop (sup, c->id, c->grace_ms);
              break;
            case CMD_SIGNAL:
              do_signal (sup, c->id, c->signal);
              break;
            case CMD_EXEC:
              do_exec (sup, NEX_STEAL_PTR (c->exec));
              break;
            case CMD_EXEC_INPUT:
              do_exec_input (sup, c->target, c->frame_type, c->data, c->len);
              break;
            case CMD_EXEC_CLOSE:
              do_exec_close (sup, c->target);
              break;
            }
        }
      else if (c->kind == CMD_EXEC_INPUT)
        nex_exec_input_done (c->target, c->len);
      nex_exec_unref (c->target);
      free (c->data);
      if (c->exec)
        {
          /* Not run (shutting down): its waiter learns it at once. */
          nex_error_t err = NULL;
          nex_error_set (&err, NEX_ERR_UNAVAILABLE, "nexd is shutting down");
          nex_exec_fail (c->exec, &err);
          nex_exec_unref (c->exec);
        }
      free (c);
    }
  return stop;
}

/* Appends C to the command queue; queue_lock held. */
static void
enqueue_locked (nex_supervisor_t *sup, cmd_t *c)
{
  if (sup->queue_tail)
    sup->queue_tail->next = c;
  else
    sup->queue_head = c;
  sup->queue_tail = c;
}

static void
wake (nex_supervisor_t *sup)
{
  uint64_t one = 1;
  (void) !write (sup->wakefd, &one, sizeof one);
}

static void
enqueue_cmd (nex_supervisor_t *sup, cmd_t *c)
{
  pthread_mutex_lock (&sup->queue_lock);
  enqueue_locked (sup, c);
  pthread_mutex_unlock (&sup->queue_lock);
  wake (sup);
}

static cmd_t *
cmd_new (cmd_kind_t kind, const char *id)
{
  cmd_t *c = nex_xzalloc (sizeof *c);
  c->kind = kind;
  snprintf (c->id, sizeof c->id, "%s", id);
  return c;
}

void
nex_supervisor_deploy (nex_supervisor_t *sup, const char *id)
{
  enqueue_cmd (sup, cmd_new (CMD_DEPLOY, id));
}

void
nex_supervisor_stop (nex_supervisor_t *sup, const char *id, int64_t grace_ms)
{
  cmd_t *c = cmd_new (CMD_STOP, id);
  c->grace_ms = grace_ms;
  enqueue_cmd (sup, c);
}

void
nex_supervisor_signal (nex_supervisor_t *sup, const char *id, int sig)
{
  cmd_t *c = cmd_new (CMD_SIGNAL, id);
  c->signal = sig;
  enqueue_cmd (sup, c);
}

/* How many API threads may wait for an exec at once: all but one, which stays free for everything else. */
static int64_t
waiting_cap (const nex_supervisor_t *sup)
{
  return sup->node->cfg->api_threads > 1 ? sup->node->cfg->api_threads - 1 : 1;
}

/* Takes a waiting slot for X (and, when SESSION, an interactive session's) and queues it; -1 when none is free. */
static int
exec_submit (nex_supervisor_t *sup, nex_exec_t *x, int session, nex_error_t *err)
{
  int64_t cap = waiting_cap (sup);
  pthread_mutex_lock (&sup->queue_lock);
  int busy = sup->execs_waiting >= cap || sup->refusing_execs;
  int full = session && sup->sessions >= NEX_SUPERVISOR_MAX_SESSIONS;
  if (!busy && !full)
    {
      if (sup->waiting == NULL)
        sup->waiting = nex_xzalloc ((size_t) cap * sizeof *sup->waiting);
      for (int64_t i = 0; i < cap; i++)
        if (sup->waiting[i] == NULL)
          {
            sup->waiting[i] = x;
            break;
          }
      sup->execs_waiting++;
      sup->sessions += session;
    }
  int refusing = sup->refusing_execs;
  pthread_mutex_unlock (&sup->queue_lock);
  if (refusing)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "nexd is shutting down");
  if (full)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "%d interactive exec sessions are open already; try again later",
                          NEX_SUPERVISOR_MAX_SESSIONS);
  if (busy)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "%lld exec requests are running already; try again later",
                          (long long) cap);
  cmd_t *c = cmd_new (CMD_EXEC, x->id);
  c->exec = nex_exec_ref (x);
  enqueue_cmd (sup, c);
  return 0;
}

/* Gives back X's waiting slot. */
static void
exec_unwait (nex_supervisor_t *sup, nex_exec_t *x)
{
  int64_t cap = waiting_cap (sup);
  pthread_mutex_lock (&sup->queue_lock);
  for (int64_t i = 0; i < cap; i++)
    if (sup->waiting[i] == x)
      sup->waiting[i] = NULL;
  sup->execs_waiting--;
  pthread_mutex_unlock (&sup->queue_lock);
}

int
nex_supervisor_exec (nex_supervisor_t *sup, const char *id, const nex_exec_spec_t *spec, nex_exec_result_t *out,
                     nex_error_t *err)
{
  nex_exec_t *x = nex_exec_new (id, spec);
  if (exec_submit (sup, x, 0, err) < 0)
    {
      nex_exec_unref (x);
      return -1;
    }
  int r = nex_exec_wait (x, spec->timeout_ms + EXEC_SLACK_MS + 5000, out, err);
  exec_unwait (sup, x);
  nex_exec_unref (x);
  return r;
}

int
nex_supervisor_exec_open (nex_supervisor_t *sup, const char *id, const nex_exec_spec_t *spec, nex_exec_t **out,
                          nex_error_t *err)
{
  nex_exec_t *x = nex_exec_new (id, spec);
  if (exec_submit (sup, x, 1, err) < 0)
    {
      nex_exec_unref (x);
      return -1;
    }
  int r = nex_exec_wait_started (x, SESSION_START_MS, err);
  exec_unwait (sup, x);
  if (r < 0)
    {
      nex_supervisor_exec_close (sup, x);
      return -1;
    }
  *out = x;
  return 0;
}

void
nex_supervisor_exec_input (nex_supervisor_t *sup, nex_exec_t *x, int type, const void *data, size_t len)
{
  cmd_t *c = cmd_new (CMD_EXEC_INPUT, x->id);
  c->target = nex_exec_ref (x);
  c->frame_type = type;
  c->len = len;
  if (len)
    {
      c->data = nex_xmalloc (len);
      memcpy (c->data, data, len);
    }
  nex_exec_input_add (x, len);
  enqueue_cmd (sup, c);
}

void
nex_supervisor_exec_close (nex_supervisor_t *sup, nex_exec_t *x)
{
  pthread_mutex_lock (&sup->queue_lock);
  sup->sessions--;
  pthread_mutex_unlock (&sup->queue_lock);
  cmd_t *c = cmd_new (CMD_EXEC_CLOSE, x->id);
  c->target = x; /* the caller's reference, dropped once the command ran */
  enqueue_cmd (sup, c);
}

int
nex_supervisor_exec_submit (nex_supervisor_t *sup, nex_exec_t *x, nex_error_t *err)
{
  cmd_t *c = cmd_new (CMD_EXEC, x->id);
  pthread_mutex_lock (&sup->queue_lock);
  int refusing = sup->refusing_execs || sup->shutting_down;
  if (!refusing)
    {
      c->exec = nex_exec_ref (x);
      enqueue_locked (sup, c);
    }
  pthread_mutex_unlock (&sup->queue_lock);
  if (refusing)
    {
      free (c);
      return nex_error_set (err, NEX_ERR_UNAVAILABLE, "nexd is shutting down");
    }
  wake (sup);
  return 0;
}

void
nex_supervisor_quiesce (nex_supervisor_t *sup)
{
  if (sup == NULL)
    return;
  pthread_mutex_lock (&sup->queue_lock);
  sup->refusing_execs = 1;
  int64_t cap = waiting_cap (sup);
  for (int64_t i = 0; sup->waiting && i < cap; i++)
    if (sup->waiting[i])
      {
        nex_error_t err = NULL;
        nex_error_set (&err, NEX_ERR_UNAVAILABLE, "nexd is shutting down");
        nex_exec_fail (sup->waiting[i], &err); /* wakes its waiter, which then takes it off this list */
      }
  pthread_mutex_unlock (&sup->queue_lock);
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
        {
          int64_t at[5] = { e->kill_at, e->restart_at, 0, e->greet_at, e->hello_by };
          for (nex_exec_t *x = e->execs; x; x = x->next)
            if (x->deadline && (at[2] == 0 || x->deadline < at[2]))
              at[2] = x->deadline;
          for (int k = 0; k < 5; k++)
            if (at[k])
              {
                int64_t left = at[k] > now ? at[k] - now : 0;
                if (timeout < 0 || left < timeout)
                  timeout = (int) left;
              }
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
          else if (r->is_console)
            read_console (sup, r->e);
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
      for (entry_t *e = sup->entries; e; e = e->next)
        {
          if (e->restart_at && now >= e->restart_at && !e->final)
            {
              e->restart_at = 0;
              send_start (sup, e);
            }
          for (nex_exec_t *x = e->execs, *next; x; x = next)
            {
              next = x->next;
              if (x->deadline && now >= x->deadline)
                {
                  nex_error_t err = NULL;
                  nex_error_set (&err, NEX_ERR_UNAVAILABLE, "exec: the agent did not report the end in time");
                  nex_exec_fail (x, &err);
                  exec_remove (e, x);
                }
            }
        }
      for (entry_t *e = sup->entries; e; e = e->next)
        if (e->hello_by && now >= e->hello_by)
          {
            e->hello_by = 0;
            e->boot_timed_out = 1;
            if (e->lost_reason == NULL)
              e->lost_reason = nex_xasprintf ("the agent did not greet within %lld s of the start",
                                              (long long) (e->inst.boot_ms > 0 ? e->inst.boot_ms
                                                                               : AGENT_HELLO_TIMEOUT_MS) / 1000);
            cleanup_error nex_error_t err = NULL;
            e->driver->kill (e->driver, &e->inst, &err);
          }
      for (entry_t *e = sup->entries; e; e = e->next)
        if (e->greet_at && now >= e->greet_at)
          {
            if (now >= e->greet_until)
              close_conn (sup, e, "the agent did not answer nexd's greeting after a restart");
            else
              greet (sup, e);
          }
      if (stop)
        break;
    }
  return NULL;
}

/* Whether the process recorded for W is still W's sandbox: it exists, it started when the record says (a pid alone
 * may have been reused by an unrelated process since), and it sits in W's cgroup.  NULL when it is; otherwise
 * why not (caller frees). */
static char *
sandbox_identity_problem (nex_supervisor_t *sup, const nex_workload_t *w)
{
  if (w->pid <= 0 || w->endpoint == NULL)
    return nex_xstrdup ("nexd stopped before the sandbox was recorded");
  int64_t started = nex_proc_start_time ((pid_t) w->pid);
  if (started < 0)
    return nex_xasprintf ("its root process %lld is gone", (long long) w->pid);
  if (w->agent_start > 0 && started != w->agent_start)
    return nex_xasprintf ("pid %lld now belongs to another process (started at tick %lld, not %lld)",
                          (long long) w->pid, (long long) started, (long long) w->agent_start);
  if (sup->node->cgroups && nex_cgroups_holds (sup->node->cgroups, w->id, (pid_t) w->pid) != 1)
    return nex_xasprintf ("pid %lld is not in the workload's cgroup", (long long) w->pid);
  return NULL;
}

/* Everything a sandbox of workload ID may have left on the host, when no live entry owns it: processes (killed
 * through its cgroup, which holds every process the sandbox ever had) and the cgroup, then the run dir. */
static void
remove_leftovers (nex_supervisor_t *sup, const char *id, const nex_driver_t *d)
{
  cleanup_error nex_error_t err = NULL;
  if (sup->node->cgroups && nex_cgroups_destroy (sup->node->cgroups, id, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: leftover cgroup", id);
  nex_instance_t inst = { .run_dir = nex_xasprintf ("%s/%s", sup->node->run_dir, id) };
  (d ? d : &nex_driver_sandbox)->destroy (d ? d : &nex_driver_sandbox, &inst, NULL);
  nex_instance_release (&inst);
}

/* After recovery: run dirs and cgroups of this node's workloads that no live entry owns are what a crash
 * mid-deploy (or mid-teardown) left; they go.  Cgroups under the shared `nex` parent that name no workload of
 * this registry may belong to another node on the same host, and are left alone. */
static void
cleanup_leftovers (nex_supervisor_t *sup)
{
  DIR *dir = opendir (sup->node->run_dir);
  struct dirent *de;
  while (dir && (de = readdir (dir)) != NULL)
    if (nex_id_valid (de->d_name) && entry_find (sup, de->d_name) == NULL)
      {
        nex_info ("workload %s: removing a half-created or abandoned sandbox", de->d_name);
        remove_leftovers (sup, de->d_name, NULL);
      }
  if (dir)
    closedir (dir);
  if (sup->node->cgroups == NULL)
    return;
  char **names = nex_cgroups_list (sup->node->cgroups);
  for (char **name = names; *name; name++)
    {
      nex_workload_t w = { 0 };
      if (entry_find (sup, *name) == NULL && nex_registry_workload_get (sup->node->reg, *name, &w, NULL) == 0)
        {
          nex_info ("workload %s: removing its leftover cgroup", *name);
          remove_leftovers (sup, *name, nex_driver_find (w.driver));
        }
      nex_workload_release (&w);
      free (*name);
    }
  free (names);
}

/* Re-attaches to sandboxes recorded as live (each exactly once: the registry holds one record per workload),
 * fails the ones that are gone or cannot be proven to be theirs, re-queues pending workloads, then removes
 * what crashed deploys left behind. */
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
          cleanup_free char *problem = d ? sandbox_identity_problem (sup, w) : nex_xstrdup ("unknown driver");
          cleanup_error nex_error_t aerr = NULL;
          entry_t *e = NULL;
          if (problem == NULL)
            {
              nex_instance_t inst = { .pid = (pid_t) w->pid,
                                      .endpoint = nex_xstrdup (w->endpoint),
                                      .run_dir = nex_xasprintf ("%s/%s", sup->node->run_dir, w->id) };
              e = entry_attach (sup, w->id, d, &inst, &aerr);
              nex_instance_release (&inst);
            }
          if (e)
            {
              nex_info ("workload %s: re-attached to its sandbox (pid %d)", w->id, (int) w->pid);
              attach_console (sup, e);
              if (d->stream_endpoint)
                greet (sup, e);
            }
          else
            {
              cleanup_free char *why = nex_xasprintf ("its sandbox was lost while nexd was down: %s",
                                                      problem ? problem : aerr ? aerr->msg : "unknown");
              /* Never signal the recorded pid itself: it may be someone else's now.  The cgroup names only the
               * sandbox's own processes. */
              remove_leftovers (sup, w->id, d);
              fail_workload (sup, w->id, why);
            }
        }
      nex_workload_release (w);
    }
  free (list);
  cleanup_leftovers (sup);
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
  sup->seccomp = nex_seccomp_default_profile (err);
  if (sup->seccomp == NULL)
    goto fail;
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
  json_decref (sup->seccomp);
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
  wake (sup);
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
      if (e->console >= 0)
        close (e->console);
      entry_free (e);
    }
  for (cmd_t *c = sup->queue_head; c;)
    {
      cmd_t *next = c->next;
      if (c->exec)
        {
          nex_error_t err = NULL;
          nex_error_set (&err, NEX_ERR_UNAVAILABLE, "nexd is shutting down");
          nex_exec_fail (c->exec, &err);
          nex_exec_unref (c->exec);
        }
      nex_exec_unref (c->target);
      free (c->data);
      free (c);
      c = next;
    }
  close (sup->epfd);
  close (sup->wakefd);
  json_decref (sup->seccomp);
  free (sup->waiting);
  pthread_mutex_destroy (&sup->queue_lock);
  free (sup);
}
