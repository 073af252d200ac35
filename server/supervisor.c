/* SPDX-License-Identifier: Apache-2.0 */
/* supervisor.c — the supervisor thread (see supervisor.h): its epoll loop, the command queue, the agent channel
 * (frames, output split into log lines, exits and restarts), deploy and stop, and the end of an environment.
 * Exec sessions are in supervisor-exec.c, node-start recovery in recover.c; supervisor-internal.h holds what the
 * three share.  The thread's data (entries, reader buffers) is touched by that thread only; the command queue is
 * the one structure shared with other threads, under queue_lock. */
#include "server/supervisor-internal.h"

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

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifacts/artifact.h"
#include "server/artifacts/image-config.h"
#include "server/artifacts/image-store.h"
#include "server/clock.h"
#include "server/drivers/cgroup.h"
#include "server/drivers/proc.h"
#include "server/drivers/seccomp.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/nats/secure.h"
#include "server/net/net.h"
#include "server/snapshot.h"

#define AGENT_KILL_SLACK_MS 5000     /* after the grace, how long the agent has to report before it is killed */
#define RESTART_BASE_MS 200          /* first restart delay; doubled for every restart already done */
#define RESTART_MAX_MS 30000         /* longest restart delay */
#define AGENT_HELLO_TIMEOUT_MS 60000 /* a new environment's agent must greet within this (a VM boots first) */
#define GREET_RETRY_MS 2000          /* a re-attached stream agent that has not answered is greeted again... */
#define GREET_GIVE_UP_MS 60000       /* ...until this long has passed; then it is deemed lost */
#define ATTACH_END_WAIT_MS 2000      /* an environment whose agent refused the dial has this long to end by itself */

nex_sup_entry_t *
nex_sup_entry_find (nex_supervisor_t *sup, const char *id)
{
  for (nex_sup_entry_t *e = sup->entries; e; e = e->next)
    if (strcmp (e->id, id) == 0)
      return e;
  return NULL;
}

/* See nex_sup_transition (supervisor-record.c). */
static void
transition_with (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type, json_t *extra)
{
  nex_sup_transition (sup, id, c, type, extra);
}

/* Persists a transition of workload ID and reports it as event TYPE (NULL: no event). */
static void
transition (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type)
{
  transition_with (sup, id, c, type, NULL);
}

void
nex_sup_fail_workload (nex_supervisor_t *sup, const char *id, const char *reason)
{
  nex_state_change_t c = { .state = NEX_STATE_FAILED, .reason = reason };
  transition (sup, id, &c, "workload_failed");
}

static int send_json (nex_sup_entry_t *e, nex_wire_type_t type, json_t *obj);

/* --- output --------------------------------------------------------------------------------------------------- */

/* Output waits at least this long before it is stored, so that a chatty workload's lines go in few transactions;
 * while storing takes longer, the wait grows to twice the last store's time (at most OUTPUT_DELAY_MAX_MS), so that
 * the supervisor spends at most about a third of its time storing output, whatever the workloads print. */
#define OUTPUT_DELAY_MIN_MS 20
#define OUTPUT_DELAY_MAX_MS 250
#define OUTPUT_MAX_BYTES (4u << 20) /* text waiting per workload before it is stored at once */

/* Whether E's waiting output is to be stored now (NOW, monotonic ms), its deadline (or, with RIGHT_AWAY, the
 * quiet-workload rule) having come.  Not while it floods: when more lines came since the last store than the
 * bound keeps (some were passed over), a store now would write lines the next one deletes, so lines wait until
 * OUTPUT_DELAY_MAX_MS after the last store (or the next state change, or OUTPUT_MAX_BYTES).  A 2-million-line
 * burst was two stores of 10,000 lines (30 ms each) before it ended, and is none now. */
static int
output_store_due (nex_sup_entry_t *e, int64_t now)
{
  if (e->output && nex_output_skipped (e->output) > 0 && now - e->output_stored_at < OUTPUT_DELAY_MAX_MS)
    {
      e->output_due = e->output_stored_at + OUTPUT_DELAY_MAX_MS;
      return 0;
    }
  return 1;
}

void
nex_sup_output_flush (nex_supervisor_t *sup, nex_sup_entry_t *e)
{
  if (e->output == NULL || nex_output_pending (e->output) == 0)
    {
      e->output_due = 0;
      return;
    }
  int64_t t0 = nex_clock_mono_ms ();
  cleanup_free nex_log_line_t *lines = NULL;
  int64_t skipped;
  size_t n = nex_output_take (e->output, &lines, &skipped);
  nex_node_store_logs (sup->node, e->id, lines, n, skipped, e->out_line_end);
  /* Stored (or dropped and counted): the agent need not keep it for another host. */
  if (e->out_next[0] >= 0)
    send_json (
        e, NEX_WIRE_STORED,
        json_pack ("{s:I, s:I}", "stdout", (json_int_t)e->out_line_end[0], "stderr", (json_int_t)e->out_line_end[1]));
  e->output_due = 0;
  e->output_stored_at = nex_clock_mono_ms ();
  int64_t took = e->output_stored_at - t0;
  int64_t delay = 2 * took;
  sup->output_delay_ms = delay < OUTPUT_DELAY_MIN_MS   ? OUTPUT_DELAY_MIN_MS
                         : delay > OUTPUT_DELAY_MAX_MS ? OUTPUT_DELAY_MAX_MS
                                                       : delay;
}

/* Adds one complete line of E's output to what waits, and sets E's deadline when it is the first. */
static void
add_line (nex_supervisor_t *sup, nex_sup_entry_t *e, nex_stream_t stream, int64_t ts, const char *text, size_t len)
{
  if (e->output == NULL)
    e->output = nex_output_new (sup->node->cfg->log_lines, OUTPUT_MAX_BYTES);
  if (e->output_due == 0)
    e->output_due = nex_clock_mono_ms () + (sup->output_delay_ms > 0 ? sup->output_delay_ms : OUTPUT_DELAY_MIN_MS);
  if (nex_output_add (e->output, stream, ts, text, len))
    nex_sup_output_flush (sup, e);
}

/* Splits DATA into lines on STREAM's buffer and adds the complete ones to what waits (a line longer than the
 * buffer is cut there); FLUSH also adds a final partial line.  BASE is the offset of DATA's first byte in the
 * workload's stdout or stderr (-1: not numbered, as the console), for what a store covers. */
static void
take_output (nex_supervisor_t *sup, nex_sup_entry_t *e, nex_stream_t stream, const uint8_t *data, size_t len,
             int64_t base, int flush)
{
  int ix = stream == NEX_STREAM_CONSOLE ? 2 : stream == NEX_STREAM_STDERR;
  nex_sup_linebuf_t *lb = &e->lines[ix];
  int64_t *line_end = ix < 2 && base >= 0 ? &e->out_line_end[ix] : NULL;
  int64_t now = nex_clock_now_ms ();
  size_t i = 0;
  while (i < len)
    {
      size_t room = NEX_SUP_MAX_LINE - lb->len;
      if (room == 0)
        {
          /* A full line: a newline right after it ends it; anything else starts the next line. */
          i += data[i] == '\n';
          if (line_end)
            *line_end = base + (int64_t)i;
          add_line (sup, e, stream, now, lb->buf, lb->len);
          lb->len = 0;
          continue;
        }
      size_t avail = len - i;
      size_t scan = avail < room ? avail : room;
      const uint8_t *nl = memchr (data + i, '\n', scan);
      if (nl == NULL)
        {
          if (lb->buf == NULL)
            lb->buf = nex_xmalloc (NEX_SUP_MAX_LINE);
          memcpy (lb->buf + lb->len, data + i, scan);
          lb->len += scan;
          i += scan;
          continue;
        }
      size_t take = (size_t)(nl - (data + i));
      if (line_end)
        *line_end = base + (int64_t)(i + take + 1);
      if (lb->len == 0)
        add_line (sup, e, stream, now, (const char *)data + i, take); /* a whole line in DATA: no copy */
      else
        {
          memcpy (lb->buf + lb->len, data + i, take);
          add_line (sup, e, stream, now, lb->buf, lb->len + take);
          lb->len = 0;
        }
      i += take + 1;
    }
  if (flush && lb->len > 0)
    {
      if (ix < 2)
        e->out_line_end[ix] = e->out_have[ix];
      add_line (sup, e, stream, now, lb->buf, lb->len);
      lb->len = 0;
    }
  /* A workload that prints now and then (nothing stored for it in the last OUTPUT_DELAY_MIN_MS) has its lines
   * stored at once: nothing waits in nexd's memory that a crash could lose.  Only a chatty one has them wait for
   * the deadline (which grows with the cost of storing). */
  int64_t mono = nex_clock_mono_ms ();
  if (e->output_due && mono - e->output_stored_at >= OUTPUT_DELAY_MIN_MS && output_store_due (e, mono))
    nex_sup_output_flush (sup, e);
}

/* --- the agent channel ----------------------------------------------------------------------------------------- */

static int
send_json (nex_sup_entry_t *e, nex_wire_type_t type, json_t *obj)
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

/* Stops watching *FD, closes it and leaves -1 behind; nothing happens when it is -1 already.  The descriptor is
 * taken out of the epoll set explicitly: a close alone would not do it while a child forked meanwhile still holds
 * a copy, and the set would go on reporting it for an entry that is gone. */
static void
unwatch (nex_supervisor_t *sup, int *fd)
{
  if (*fd < 0)
    return;
  epoll_ctl (sup->epfd, EPOLL_CTL_DEL, *fd, NULL);
  close (NEX_STEAL_FD (*fd));
}

void
nex_sup_close_conn (nex_supervisor_t *sup, nex_sup_entry_t *e, const char *reason)
{
  if (e->conn < 0)
    return;
  unwatch (sup, &e->conn);
  nex_wire_reader_release (&e->reader);
  nex_wire_reader_init (&e->reader);
  nex_sup_execs_fail_all (e, NEX_ERR_CONFLICT, "the workload's agent channel closed during exec");
  nex_resync_release (&e->resync);
  e->resyncing = 0;
  e->greet_at = 0;
  if (!e->final)
    {
      /* The workload's fate is no longer observable: end the sandbox; its pidfd then finalises the entry. */
      if (e->lost_reason == NULL)
        e->lost_reason = nex_xstrdup (reason);
      cleanup_error nex_error_t err = NULL;
      if (nex_driver_kill (e->driver, &e->inst, &err) < 0)
        nex_log_error (NEX_LOG_WARN, err, "workload %s: kill", e->id);
    }
}

void
nex_sup_add_hardening (nex_supervisor_t *sup, json_t *req, const nex_workload_t *w)
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
  /* An image workload's processes (and its exec sessions, as in Docker) run as the image's user, in its cwd. */
  if (w->process)
    {
      json_object_set (req, "cwd", json_object_get (w->process, "cwd"));
      json_object_set (req, "uid", json_object_get (w->process, "uid"));
      json_object_set (req, "gid", json_object_get (w->process, "gid"));
      json_object_set (req, "groups", json_object_get (w->process, "groups"));
    }
}

static void
send_start (nex_supervisor_t *sup, nex_sup_entry_t *e)
{
  nex_workload_t w = { 0 };
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_workload_get (sup->node->reg, e->id, &w, &err) < 0)
    {
      nex_sup_close_conn (sup, e, "workload record unreadable");
      return;
    }
  /* The environment with its sealed part opened (secure.h): in memory only, wiped once sent. */
  json_t *base_env = w.process ? json_object_get (w.process, "env") : w.env;
  json_t *env = nex_secure_start_env (sup->node, e->id, base_env, &err);
  if (env == NULL)
    {
      nex_workload_release (&w);
      cleanup_free char *why = nex_xasprintf ("cannot open the sealed environment: %s", err->msg);
      nex_sup_close_conn (sup, e, why);
      return;
    }
  if (w.net && sup->node->net)
    nex_net_env (sup->node->net, &w, env);
  json_t *argv = json_array_size (w.argv) > 0 ? json_incref (w.argv) : json_pack ("[s]", w.name);
  const char *path = w.process ? json_string_value (json_object_get (w.process, "path")) : "/workload";
  json_t *start = json_pack ("{s:s, s:o, s:O}", "path", path ? path : "/workload", "argv", argv, "env", env);
  /* A function's executable runs per trigger message (exec sessions); its main process only keeps the sandbox
   * warm and `running`. */
  if (w.type == NEX_WORKLOAD_FUNCTION)
    json_object_set_new (start, "park", json_true ());
  nex_sup_add_hardening (sup, start, &w);
  nex_workload_release (&w);
  int sent = send_json (e, NEX_WIRE_START, start);
  nex_secure_env_wipe (env);
  if (sent < 0)
    nex_sup_close_conn (sup, e, "cannot send START to the agent");
  else
    e->start_sent = 1;
}

/* Whether the workload's end was an OOM kill: the cgroup's OOM killer acted since the last look and the main
 * process died of SIGKILL (what the OOM killer sends).  Any new OOM kill — of the main process or of another one
 * in the sandbox — is reported as the event workload_oom. */
static int
check_oom (nex_supervisor_t *sup, nex_sup_entry_t *e, const nex_cgroup_stats_t *usage, int exit_signal)
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
      json_t *data = json_pack ("{s:I, s:I, s:I, s:b}", "oom_kills", (json_int_t)kills, "memory_peak_bytes",
                                (json_int_t)st.memory_peak, "memory_limit_bytes", (json_int_t)st.memory_limit,
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
  return json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I}", "memory_peak_bytes", (json_int_t)st->memory_peak,
                    "memory_limit_hits", (json_int_t)st->memory_limit_hits, "oom_kills", (json_int_t)st->oom_kills,
                    "cpu_usage_ns", (json_int_t)st->cpu_usage_ns, "cpu_throttled_periods",
                    (json_int_t)st->cpu_throttled_periods, "pids_limit_hits", (json_int_t)st->pids_limit_hits);
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
schedule_restart (nex_supervisor_t *sup, nex_sup_entry_t *e, const nex_workload_t *w, const nex_state_change_t *c,
                  int oom)
{
  int shift = w->restarts < 10 ? (int)w->restarts : 10;
  int64_t delay = (int64_t)RESTART_BASE_MS << shift;
  if (delay > RESTART_MAX_MS)
    delay = RESTART_MAX_MS;
  e->restart_at = nex_clock_mono_ms () + delay;
  e->kill_at = 0;
  cleanup_free char *how = oom              ? nex_xstrdup ("oom_killed")
                           : c->exit_signal ? nex_xasprintf ("signal %d", c->exit_signal)
                                            : nex_xasprintf ("exit code %d", c->exit_code);
  cleanup_free char *reason = nex_xasprintf ("restart %lld of %lld in %lld ms after %s", (long long)w->restarts + 1,
                                             (long long)w->max_restarts, (long long)delay, how);
  nex_state_change_t r = { .state = NEX_STATE_STARTING, .reason = reason, .restarted = 1 };
  transition (sup, e->id, &r, NULL);
  json_t *data = json_pack ("{s:I, s:I, s:I, s:s}", "restarts", (json_int_t)w->restarts + 1, "max_restarts",
                            (json_int_t)w->max_restarts, "delay_ms", (json_int_t)delay, "after", how);
  if (c->has_exit_code)
    json_object_set_new (data, "exit_code", json_integer (c->exit_code));
  if (c->exit_signal)
    json_object_set_new (data, "exit_signal", json_integer (c->exit_signal));
  nex_node_emit (sup->node, "workload_restarted", w, data);
}

/* The workload ended: EXIT (or a HELLO saying "exited") carried STATUS. */
static void
handle_exit (nex_supervisor_t *sup, nex_sup_entry_t *e, json_t *status)
{
  if (e->final || e->restart_at)
    return; /* recorded already (a HELLO repeats the EXIT it follows) */
  take_output (sup, e, NEX_STREAM_STDOUT, NULL, 0, -1, 1);
  take_output (sup, e, NEX_STREAM_STDERR, NULL, 0, -1, 1);
  json_t *code = json_object_get (status, "code");
  json_t *sig = json_object_get (status, "signal");
  int exec_failed = json_is_true (json_object_get (status, "exec_failed"));
  nex_state_change_t c = { .state = NEX_STATE_EXITED };
  if (json_is_integer (code))
    {
      c.has_exit_code = 1;
      c.exit_code = (int)json_integer_value (code);
    }
  if (json_is_integer (sig))
    c.exit_signal = (int)json_integer_value (sig);
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
  json_t *extra = have_usage ? json_pack ("{s:o}", "usage", usage_json (&st)) : NULL;
  json_int_t dropped = json_integer_value (json_object_get (status, "dropped_bytes"));
  if (dropped > 0)
    {
      /* The agent could not hand this much output over (nexd read slower than the workload wrote): said once. */
      nex_metrics_output_dropped ((uint64_t)dropped);
      nex_warn ("workload %s: %lld bytes of its output were dropped by its agent (nexd did not keep up)", e->id,
                (long long)dropped);
      if (extra == NULL)
        extra = json_object ();
      json_object_set_new (extra, "output_dropped_bytes", json_integer (dropped));
    }
  transition_with (sup, e->id, &c, type, extra);
  e->final = 1;
  e->kill_at = 0;
  /* Acknowledge: the agent keeps the status until someone has recorded it, then exits. */
  send_json (e, NEX_WIRE_ACK, json_object ());
}

static void
do_signal (nex_supervisor_t *sup, const char *id, int sig)
{
  nex_sup_entry_t *e = nex_sup_entry_find (sup, id);
  if (e == NULL || e->final || !e->start_sent || e->restart_at)
    return; /* it ended meanwhile: nothing left to signal */
  send_json (e, NEX_WIRE_SIGNAL, json_pack ("{s:i}", "signal", sig));
}

/* Pauses or continues E: by its driver's own means (a VM's QMP stop/cont), else by freezing or thawing its
 * cgroup (every driver places its environment in one); 0 or -1 with ERR. */
static int
freeze (nex_supervisor_t *sup, nex_sup_entry_t *e, int frozen, nex_error_t *err)
{
  int done = nex_driver_pause (e->driver, &e->inst, frozen, err);
  if (done < 0)
    return -1;
  if (done)
    {
      e->paused = frozen;
      return 0;
    }
  if (sup->node->cgroups == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this node has no cgroups to freeze workloads with");
  if (nex_cgroups_freeze (sup->node->cgroups, e->id, frozen, err) < 0)
    return -1;
  e->paused = frozen;
  return 0;
}

static void
do_pause (nex_supervisor_t *sup, const char *id, int paused)
{
  nex_sup_entry_t *e = nex_sup_entry_find (sup, id);
  if (e == NULL || e->final || !e->start_sent || e->restart_at || e->stop_requested || e->paused == paused)
    return; /* it ended, is between runs, is stopping, or is already so */
  cleanup_error nex_error_t err = NULL;
  if (!paused)
    nex_sup_lease_send (sup, e, nex_clock_mono_ms ());
  if (freeze (sup, e, paused, &err) < 0)
    {
      nex_log_error (NEX_LOG_WARN, err, "workload %s: cannot %s it", id, paused ? "pause" : "resume");
      cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
      if (nex_registry_workload_get (sup->node->reg, id, &w, NULL) == 0)
        nex_node_emit (sup->node, "workload_pause_failed", &w,
                       json_pack ("{s:s, s:s}", "action", paused ? "pause" : "resume", "reason", err->msg));
      return;
    }
  nex_state_change_t c
      = { .state = paused ? NEX_STATE_PAUSED : NEX_STATE_RUNNING, .reason = paused ? "paused on request" : "" };
  transition (sup, id, &c, paused ? "workload_paused" : "workload_resumed");
  if (!paused && e->greet_deferred)
    {
      e->greet_deferred = 0;
      nex_sup_greet (sup, e);
    }
}

/* A STDOUT or STDERR frame of the workload: what this node has already (sent again after a reconnect, wire.h) is
 * skipped, the rest split into lines. */
static void
take_numbered_output (nex_supervisor_t *sup, nex_sup_entry_t *e, const nex_wire_frame_t *f)
{
  int ix = f->type == NEX_WIRE_STDERR;
  nex_stream_t stream = ix ? NEX_STREAM_STDERR : NEX_STREAM_STDOUT;
  const uint8_t *data = f->payload;
  size_t len = f->len;
  if (e->out_next[ix] < 0)
    {
      take_output (sup, e, stream, data, len, -1, 0);
      return;
    }
  int64_t off = e->out_next[ix];
  e->out_next[ix] += (int64_t)len;
  if (off < e->out_have[ix])
    {
      int64_t skip = e->out_have[ix] - off;
      if (skip >= (int64_t)len)
        return;
      data += skip;
      len -= (size_t)skip;
      off += skip;
    }
  else if (off > e->out_have[ix])
    {
      /* A gap: the agent dropped kept output for room before this node stored it (counted by the agent). */
      nex_warn ("workload %s: %lld bytes of %s lost before they were stored", e->id, (long long)(off - e->out_have[ix]),
                nex_stream_name (stream));
      e->lines[ix].len = 0;
      e->out_line_end[ix] = off;
    }
  e->out_have[ix] = off + (int64_t)len;
  take_output (sup, e, stream, data, len, off, 0);
}

/* HELLO's output {stdout, stderr}: where each stream goes on (wire.h); absent from an agent that does not number
 * its output. */
static void
take_hello_offsets (nex_sup_entry_t *e, json_t *output)
{
  json_t *o = json_object_get (output, "stdout"), *r = json_object_get (output, "stderr");
  if (!json_is_integer (o) || !json_is_integer (r) || json_integer_value (o) < 0 || json_integer_value (r) < 0)
    {
      e->out_next[0] = e->out_next[1] = -1;
      return;
    }
  e->out_next[0] = json_integer_value (o);
  e->out_next[1] = json_integer_value (r);
}

static void
handle_frame (nex_supervisor_t *sup, nex_sup_entry_t *e, const nex_wire_frame_t *f)
{
  if (f->channel != 0)
    {
      nex_sup_exec_frame (sup, e, f);
      return;
    }
  if (f->type == NEX_WIRE_STDOUT || f->type == NEX_WIRE_STDERR)
    {
      take_numbered_output (sup, e, f);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *msg = NULL;
  if (nex_wire_type_is_json (f->type) && (msg = nex_wire_frame_json (f, &err)) == NULL)
    {
      cleanup_free char *why = nex_xasprintf ("agent protocol error: %s", err->msg);
      nex_sup_close_conn (sup, e, why);
      return;
    }
  switch (f->type)
    {
    case NEX_WIRE_HELLO:
      {
        e->hello_by = 0;
        take_hello_offsets (e, json_object_get (msg, "output"));
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
        if (e->from_pool && sup->pool)
          nex_sandbox_pool_refill (sup->pool);
        e->from_pool = 0;
        break;
      }
    case NEX_WIRE_EXIT:
      handle_exit (sup, e, msg);
      break;
    case NEX_WIRE_ERROR:
      {
        const char *m = json_string_value (json_object_get (msg, "message"));
        const char *phase = json_string_value (json_object_get (msg, "phase"));
        free (e->agent_error);
        e->agent_error = nex_xstrdup (m ? m : "unspecified agent error");
        nex_warn ("workload %s: agent: %s", e->id, e->agent_error);
        /* The agent ends the workload and leaves; the end is then recorded with this reason, which tells the
         * cluster that the desired state outlives the copy (cluster/failover.c). */
        if (phase && strcmp (phase, "lease") == 0 && e->lost_reason == NULL)
          e->lost_reason = nex_xstrdup (NEX_LEASE_EXPIRED_REASON);
        break;
      }
    default:
      {
        cleanup_free char *why
            = nex_xasprintf ("agent protocol error: unexpected %s frame", nex_wire_type_name (f->type));
        nex_sup_close_conn (sup, e, why);
      }
    }
}

/* Decodes N bytes of the agent's stream and handles each complete frame.  -1 when the channel was closed. */
static int
feed_frames (nex_supervisor_t *sup, nex_sup_entry_t *e, const uint8_t *data, size_t n)
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
          nex_sup_close_conn (sup, e, why);
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
              nex_sup_close_conn (sup, e, why);
              return -1;
            }
          handle_frame (sup, e, &f);
        }
    }
  return e->conn >= 0 ? 0 : -1;
}

/* Re-attached to a stream: skips bytes up to the agent's answer to our greeting, then decodes as usual. */
static int
feed_resync (nex_supervisor_t *sup, nex_sup_entry_t *e, const uint8_t *data, size_t n)
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
read_conn (nex_supervisor_t *sup, nex_sup_entry_t *e)
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
          nex_sup_close_conn (sup, e, n == 0 ? "the agent closed its channel" : "the agent channel failed");
          return;
        }
      if ((e->resyncing ? feed_resync (sup, e, buf, (size_t)n) : feed_frames (sup, e, buf, (size_t)n)) < 0)
        return;
    }
}

/* Sends (again) the greeting of a re-attach to a stream endpoint. */
void
nex_sup_greet (nex_supervisor_t *sup, nex_sup_entry_t *e)
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
    nex_sup_close_conn (sup, e, "cannot greet the agent");
}

/* Reads the environment's console output into the `console` log stream.  Its end is no error: the guest may
 * simply have stopped writing, or be gone (the pidfd says which). */
static void
read_console (nex_supervisor_t *sup, nex_sup_entry_t *e)
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
          unwatch (sup, &e->console);
          return;
        }
      take_output (sup, e, NEX_STREAM_CONSOLE, buf, (size_t)n, -1, 0);
    }
}

void
nex_sup_attach_console (nex_supervisor_t *sup, nex_sup_entry_t *e)
{
  cleanup_error nex_error_t err = NULL;
  e->console = nex_driver_connect_console (e->driver, &e->inst, &err);
  if (e->console < 0)
    {
      if (err)
        nex_log_error (NEX_LOG_WARN, err, "workload %s: no console output", e->id);
      return;
    }
  fcntl (e->console, F_SETFL, fcntl (e->console, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &e->console_ref };
  epoll_ctl (sup->epfd, EPOLL_CTL_ADD, e->console, &ev);
}

/* Frees E (which is out of sup->entries, or was never in it) and stops watching its descriptors; the environment
 * itself is left as it is. */
static void
entry_free (nex_supervisor_t *sup, nex_sup_entry_t *e)
{
  nex_sup_output_flush (sup, e);
  nex_output_free (e->output);
  for (size_t i = 0; i < sizeof e->lines / sizeof e->lines[0]; i++)
    free (e->lines[i].buf);
  json_decref (e->exec_base);
  unwatch (sup, &e->conn);
  unwatch (sup, &e->pidfd);
  unwatch (sup, &e->console);
  nex_sup_execs_fail_all (e, NEX_ERR_CONFLICT, "the workload ended during exec");
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
retry_elsewhere (nex_supervisor_t *sup, const char *id, const nex_driver_t *d, const nex_instance_t *inst, int reaped,
                 int status, int boot_timed_out)
{
  cleanup_free char *what = NULL;
  int first = nex_driver_fall_back (d, inst, reaped, status, boot_timed_out, &what);
  if (first < 0)
    return 0;
  cleanup_error nex_error_t err = NULL;
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (first && nex_registry_workload_get (sup->node->reg, id, &w, &err) == 0)
    nex_node_emit (sup->node, "node_kvm_unusable", &w, json_pack ("{s:s}", "reason", what));
  cleanup_free char *why = nex_xasprintf ("KVM is unusable on this node (%s): starting again under TCG", what);
  nex_state_change_t c = { .state = NEX_STATE_PENDING, .reason = why, .pid = -1, .endpoint = "", .agent_start = -1 };
  transition (sup, id, &c, NULL);
  nex_supervisor_deploy (sup, id); /* read on this thread's next round, after the caller's cleanup */
  return 1;
}

/* The sandbox's root process ended: record what is still unknown and release everything. */
static void
finalize (nex_supervisor_t *sup, nex_sup_entry_t *e)
{
  read_conn (sup, e); /* frames it sent just before going */
  read_console (sup, e);
  take_output (sup, e, NEX_STREAM_CONSOLE, NULL, 0, -1, 1);
  int status = 0;
  int reaped = waitpid (e->inst.pid, &status, WNOHANG) == e->inst.pid; /* our child unless re-adopted */
  if (!e->final)
    {
      cleanup_free char *why = NULL;
      if (e->stop_requested)
        {
          nex_state_change_t c
              = { .state = NEX_STATE_STOPPED, .reason = "stopped on request (sandbox killed)", .exit_signal = SIGKILL };
          transition (sup, e->id, &c, "workload_stopped");
        }
      else if (!(e->hello_by || e->boot_timed_out)
               || !retry_elsewhere (sup, e->id, e->driver, &e->inst, reaped, status, e->boot_timed_out))
        {
          cleanup_free char *ending = nex_driver_describe_end (e->driver, &e->inst, reaped, status);
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
          nex_sup_fail_workload (sup, e->id, why);
        }
    }
  cleanup_error nex_error_t err = NULL;
  if (nex_driver_destroy (e->driver, &e->inst, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: destroy", e->id);
  nex_error_free (&err);
  if (sup->node->cgroups && nex_cgroups_destroy (sup->node->cgroups, e->id, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: cgroup", e->id);
  for (nex_sup_entry_t **p = &sup->entries; *p; p = &(*p)->next)
    if (*p == e)
      {
        *p = e->next;
        break;
      }
  entry_free (sup, e);
}

nex_sup_entry_t *
nex_sup_entry_attach (nex_supervisor_t *sup, const char *id, const nex_driver_t *d, nex_instance_t *inst,
                      nex_error_t *err)
{
  nex_sup_entry_t *e = nex_xzalloc (sizeof *e);
  memcpy (e->id, id, sizeof e->id);
  e->driver = d;
  e->inst = *inst;
  memset (inst, 0, sizeof *inst);
  e->conn = -1;
  e->console = -1;
  e->out_next[0] = e->out_next[1] = -1;
  e->console_ref = (nex_sup_ref_t){ .e = e, .is_console = 1 };
  e->pidfd = (int)syscall (SYS_pidfd_open, e->inst.pid, 0);
  nex_wire_reader_init (&e->reader);
  e->conn_ref = (nex_sup_ref_t){ .e = e, .is_pidfd = 0 };
  e->pid_ref = (nex_sup_ref_t){ .e = e, .is_pidfd = 1 };
  if (e->pidfd < 0)
    nex_error_sys (err, errno, "watch sandbox pid %d", (int)e->inst.pid);
  else
    e->conn = nex_driver_connect (d, &e->inst, err);
  if (e->conn < 0)
    {
      entry_free (sup, e);
      return NULL;
    }
  fcntl (e->conn, F_SETFL, fcntl (e->conn, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &e->conn_ref };
  struct epoll_event pev = { .events = EPOLLIN, .data.ptr = &e->pid_ref };
  epoll_ctl (sup->epfd, EPOLL_CTL_ADD, e->conn, &ev);
  epoll_ctl (sup->epfd, EPOLL_CTL_ADD, e->pidfd, &pev);
  e->next = sup->entries;
  sup->entries = e;
  nex_sup_lease_init (sup, e);
  return e;
}

/* --- commands ------------------------------------------------------------------------------------------------- */

/* Where a sandbox being started goes: the workload's cgroup (created by do_deploy, named by the workload id). */
typedef struct placement
{
  nex_supervisor_t *sup;
  const char *id;
  const nex_workload_t *w;
  const char *etc_dir; /* where a bridge workload's /etc files go, NULL for the other network modes */
} placement_t;

/* nex_launch_t.place: joins the sandbox's root process to its workload's cgroup, and gives a bridge workload
 * its network. */
static int
place_in_cgroup (void *ctx, pid_t pid, nex_error_t *err)
{
  const placement_t *where = ctx;
  if (nex_cgroups_attach (where->sup->node->cgroups, where->id, pid, err) < 0)
    return -1;
  /* A bridge workload's link, rules and /etc files, before anything runs in its sandbox. */
  if (where->w->net && where->etc_dir)
    return nex_net_attach (where->sup->node->net, where->w, pid, where->etc_dir, err);
  return 0;
}

/* Gives the environment I of driver D up to WAIT_MS (0: none) to end by itself, then ends it (D's kill) and
 * reaps it.  Returns its wait status. */
static int
end_environment (const nex_driver_t *d, const nex_instance_t *i, int64_t wait_ms)
{
  cleanup_close int pidfd = wait_ms > 0 ? (int)syscall (SYS_pidfd_open, i->pid, 0) : -1;
  struct pollfd p = { .fd = pidfd, .events = POLLIN };
  if (pidfd >= 0)
    while (poll (&p, 1, (int)wait_ms) < 0 && errno == EINTR)
      ;
  nex_driver_kill (d, i, NULL);
  int status = 0;
  while (waitpid (i->pid, &status, 0) < 0 && errno == EINTR)
    ;
  return status;
}

/* Records the environment INST (taken over) that driver D started for workload ID, and starts watching it: dials
 * its agent, whose HELLO gets START; returns its entry (NULL: it could not be watched, and the workload failed).
 * Recorded before the agent is asked to do anything, so that a restarted nexd
 * can find this sandbox; the start time tells it apart from a later process that happens to get the same pid. */
static nex_sup_entry_t *
watch_environment (nex_supervisor_t *sup, const char *id, const nex_driver_t *d, nex_instance_t *instp,
                   const char *digest)
{
  nex_node_t *node = sup->node;
  cleanup_error nex_error_t err = NULL;
  cleanup_with (nex_instance_release) nex_instance_t inst = *instp;
  memset (instp, 0, sizeof *instp);
  nex_state_change_t placed = { .state = NEX_STATE_STARTING,
                                .pid = inst.pid,
                                .endpoint = inst.endpoint,
                                .digest = digest,
                                .agent_start = nex_proc_start_time (inst.pid) };
  transition (sup, id, &placed, NULL);
  /* nex_sup_entry_attach takes INST over even when it fails; what ending the environment then needs is kept
   * here. */
  cleanup_with (nex_instance_release) nex_instance_t keep = {
    .pid = inst.pid, .run_dir = nex_xstrdup (inst.run_dir), .boot_ms = inst.boot_ms, .may_fall_back = inst.may_fall_back
  };
  nex_sup_entry_t *e = nex_sup_entry_attach (sup, id, d, &inst, &err);
  if (e == NULL)
    {
      /* Its agent cannot be dialled.  Refused: no process holds the listening socket any more, so the
       * environment is already going (a VM monitor that failed at once), and how it ends says why. */
      int status = end_environment (d, &keep, err->errnum == ECONNREFUSED ? ATTACH_END_WAIT_MS : 0);
      cleanup_free char *ending = nex_driver_describe_end (d, &keep, 1, status);
      int retried = retry_elsewhere (sup, id, d, &keep, 1, status, 0);
      nex_driver_destroy (d, &keep, NULL);
      nex_cgroups_destroy (node->cgroups, id, NULL);
      if (!retried)
        {
          cleanup_free char *why = ending ? nex_xasprintf ("%s (%s)", err->msg, ending) : nex_xstrdup (err->msg);
          nex_sup_fail_workload (sup, id, why);
        }
      return NULL;
    }
  e->hello_by = nex_clock_mono_ms () + (e->inst.boot_ms > 0 ? e->inst.boot_ms : AGENT_HELLO_TIMEOUT_MS);
  nex_sup_attach_console (sup, e);
  return e;
}

/* Workload ID (record W, driver D) in the pooled sandbox SLOT (taken over): renamed after it, limited by LIMITS,
 * given ARTIFACT_PATH on /workload and its host name (sandbox-pool.h), then watched as a cold one is.  A failure
 * fails the workload (the pooled sandbox is gone then). */
static void
launch_warm (nex_supervisor_t *sup, const char *id, const nex_workload_t *w, const nex_driver_t *d,
             nex_sandbox_slot_t *slot, const char *artifact_path, const char *digest, const nex_cgroup_limits_t *limits,
             int64_t fetch_ms)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_free char *run_dir = nex_xasprintf ("%s/%s", sup->node->run_dir, id);
  cleanup_with (nex_instance_release) nex_instance_t inst = { 0 };
  int64_t t_claim = nex_clock_mono_ms ();
  if (nex_sandbox_pool_claim (sup->pool, slot, id, run_dir, artifact_path, w->name, limits, &inst, &err) < 0)
    {
      nex_sup_fail_workload (sup, id, err->msg);
      return;
    }
  nex_debug ("workload %s: fetch %lld ms, warm sandbox claimed in %lld ms", id, (long long)fetch_ms,
             (long long)(nex_clock_mono_ms () - t_claim));
  nex_sup_entry_t *e = watch_environment (sup, id, d, &inst, digest);
  if (e)
    e->from_pool = 1;
}

/* Builds workload ID's (record W) environment around ARTIFACT_PATH (an executable; DIGEST its SHA-256) or
 * IMAGE_TREE (an image's flattened tree; DIGEST the image's), and starts watching it.  With SLOT (taken from the
 * warm pool, and taken over here), the environment is that pooled sandbox instead of a new one. */
static void
launch (nex_supervisor_t *sup, const char *id, const nex_workload_t *wp, const char *artifact_path, const char *digest,
        const char *image_tree, int64_t t_fetch, nex_sandbox_slot_t *slot)
{
  nex_node_t *node = sup->node;
  cleanup_error nex_error_t err = NULL;
  nex_workload_t w = *wp;
  const char *path = artifact_path;
  const nex_driver_t *d = nex_driver_find (w.driver);
  if (slot && (d == NULL || node->cgroups == NULL))
    {
      nex_sandbox_pool_give_back (sup->pool, slot); /* cannot happen for a deploy that fits; kept safe all the same */
      slot = NULL;
    }
  if (d == NULL)
    {
      cleanup_free char *why = nex_xasprintf ("unknown driver `%s`", w.driver);
      nex_sup_fail_workload (sup, id, why);
      return;
    }
  if (node->cgroups == NULL)
    {
      cleanup_free char *why = nex_xasprintf ("this node cannot enforce resource limits: %s", node->cgroups_error);
      nex_sup_fail_workload (sup, id, why);
      return;
    }
  /* The cgroup exists before the sandbox does; the driver places the sandbox's root process in it before that
   * process runs anything (place_in_cgroup).  A microVM's memory is bounded by its guest size instead: a cgroup
   * limit of the same size would OOM-kill the VM monitor along with its guest. */
  nex_cgroup_limits_t limits = { .vcpus = w.resources.vcpus,
                                 .memory_bytes = d->sized_by_guest ? 0 : w.resources.memory_mb * 1024 * 1024,
                                 .pids = w.resources.pids };
  int64_t t_cgroup = nex_clock_mono_ms ();
  if (slot)
    {
      launch_warm (sup, id, &w, d, slot, artifact_path, digest, &limits, t_cgroup - t_fetch);
      return;
    }
  if (nex_cgroups_create (node->cgroups, id, &limits, &err) < 0)
    {
      nex_sup_fail_workload (sup, id, err->msg);
      return;
    }
  cleanup_free char *run_dir = nex_xasprintf ("%s/%s", node->run_dir, id);
  /* A bridge workload's network: a sandbox's is attached by place (its namespace must exist first), a VM's tap
   * is made now and handed to its VMM. */
  int vm_net = w.net && (d->bridge_network == NEX_DRIVER_NET_TAP || d->bridge_network == NEX_DRIVER_NET_NAMED_TAP);
  char ifname[16];
  nex_net_ifname (id, ifname);
  cleanup_free char *etc_dir = w.net && !vm_net ? nex_xasprintf ("%s/etc", run_dir) : NULL;
  cleanup_free char *net_guest = NULL;
  cleanup_close int tap_fd = -1;
  if (w.net && (sup->node->net == NULL || !d->bridge_network))
    nex_error_set (&err, NEX_ERR_UNAVAILABLE, "network bridge is not available here (see GET /v1/node)");
  else if (vm_net)
    {
      int named = d->bridge_network == NEX_DRIVER_NET_NAMED_TAP;
      tap_fd = nex_net_attach_tap (sup->node->net, &w, named, &net_guest, &err);
      /* A tap the VMM opens by name is free only once nexd's descriptor is closed (one open file per tap). */
      if (named && tap_fd >= 0)
        {
          close (tap_fd);
          tap_fd = -1;
        }
    }
  if (err)
    {
      nex_cgroups_destroy (node->cgroups, id, NULL);
      nex_sup_fail_workload (sup, id, err->msg);
      return;
    }
  placement_t where = { .sup = sup, .id = id, .w = &w, .etc_dir = etc_dir };
  nex_launch_t l = { .workload_id = id,
                     .hostname = w.name,
                     .artifact_path = path,
                     .image_tree = image_tree,
                     .agent_path = node->agent_path,
                     .run_dir = run_dir,
                     .digest = digest,
                     .workload = &w,
                     .tmp_mb = w.resources.disk_mb,
                     .host_network = w.host_network,
                     .net_etc_dir = etc_dir,
                     .net_guest = net_guest,
                     .net_tap_fd = tap_fd,
                     .net_ifname = ifname,
                     .place = place_in_cgroup,
                     .place_ctx = &where };
  cleanup_free char *snapshot_path = w.from_snapshot ? nex_snapshot_file (node, w.from_snapshot, &err) : NULL;
  l.snapshot_path = snapshot_path;
  cleanup_with (nex_instance_release) nex_instance_t inst = { 0 };
  int64_t t_start = nex_clock_mono_ms ();
  if ((w.from_snapshot && snapshot_path == NULL) || nex_driver_start (d, &l, &inst, &err) < 0)
    {
      nex_cgroups_destroy (node->cgroups, id, NULL);
      nex_sup_fail_workload (sup, id, err->msg);
      return;
    }
  int64_t t_done = nex_clock_mono_ms ();
  nex_debug ("workload %s: fetch %lld ms, cgroup %lld ms, sandbox %lld ms", id, (long long)(t_cgroup - t_fetch),
             (long long)(t_start - t_cgroup), (long long)(t_done - t_start));
  nex_sup_entry_t *e = watch_environment (sup, id, d, &inst, digest);
  if (e != NULL && w.from_snapshot)
    {
      /* Restored: the agent runs the workload already (its HELLO says running, which makes the workload
       * running).  On a stream it greeted its first host long ago: it is greeted as after a nexd restart. */
      e->start_sent = 1;
      if (d->stream_endpoint)
        nex_sup_greet (sup, e);
      else
        e->hello_by = nex_clock_mono_ms () + AGENT_HELLO_TIMEOUT_MS;
    }
}

/* Image workload ID's image DIGEST is in the store: resolve its process, record it, launch. */
static void
launch_image (nex_supervisor_t *sup, const char *id, const char *digest, int64_t t_fetch)
{
  nex_node_t *node = sup->node;
  cleanup_error nex_error_t err = NULL;
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_registry_workload_get (node->reg, id, &w, &err) < 0 || w.state != NEX_STATE_STARTING)
    return; /* stopped while its image was pulled */
  cleanup_free char *tree = nex_image_store_tree (node->images, digest);
  cleanup_json json_t *config = nex_image_store_config (node->images, digest, &err);
  cleanup_json json_t *process = config ? nex_image_config_process (config, &w, tree, &err) : NULL;
  if (process == NULL)
    {
      /* The digest is recorded all the same: it says which image could not run. */
      nex_registry_workload_set_image (node->reg, id, digest, NULL, NULL);
      nex_sup_fail_workload (sup, id, err->msg);
      return;
    }
  if (nex_registry_workload_set_image (node->reg, id, digest, process, &err) < 0)
    {
      nex_sup_fail_workload (sup, id, err->msg);
      return;
    }
  nex_image_store_touch (node->images, digest);
  /* The workload's `digest` is a bare SHA-256 (hex) for images too: the manifest's; image_digest has the
   * algorithm. */
  launch (sup, id, &w, NULL, digest + strlen ("sha256:"), tree, t_fetch, NULL);
}

/* What a pull thread hands back to the supervisor about one workload. */
typedef struct image_wait
{
  nex_supervisor_t *sup;
  char id[NEX_ID_LEN + 1];
  int64_t t_fetch;
} image_wait_t;

/* nex_image_ready_t, on the pull's thread: queues the outcome for the supervisor thread (CMD_IMAGE: data is the
 * digest when signal is 1, the reason when it is 0). */
static void
image_ready (void *ctx, const char *digest, const nex_error_s *err)
{
  image_wait_t *iw = ctx;
  nex_sup_cmd_t *c = nex_sup_cmd_new (NEX_SUP_CMD_IMAGE, iw->id);
  c->signal = digest != NULL;
  c->data = (uint8_t *)nex_xstrdup (digest ? digest : err->msg);
  c->grace_ms = iw->t_fetch;
  nex_sup_enqueue (iw->sup, c);
  free (iw);
}

static void
do_image (nex_supervisor_t *sup, const nex_sup_cmd_t *c)
{
  if (c->signal)
    {
      launch_image (sup, c->id, (const char *)c->data, c->grace_ms);
      return;
    }
  nex_workload_t w = { 0 };
  if (nex_registry_workload_get (sup->node->reg, c->id, &w, NULL) == 0 && w.state == NEX_STATE_STARTING)
    nex_sup_fail_workload (sup, c->id, (const char *)c->data);
  nex_workload_release (&w);
}

/* An image workload: its image comes from the store, or from a pull on another thread (do_image goes on). */
static void
deploy_image (nex_supervisor_t *sup, const char *id, const nex_workload_t *w, int64_t t_fetch)
{
  cleanup_error nex_error_t err = NULL;
  char digest[72];
  image_wait_t *iw = nex_xzalloc (sizeof *iw);
  iw->sup = sup;
  iw->t_fetch = t_fetch;
  snprintf (iw->id, sizeof iw->id, "%s", id);
  int r = nex_image_store_get (sup->node->images, w->image, 0, digest, image_ready, iw, &err);
  if (r != 0)
    free (iw);
  if (r < 0)
    nex_sup_fail_workload (sup, id, err->msg);
  else if (r > 0)
    launch_image (sup, id, digest, t_fetch);
}

static void
do_deploy (nex_supervisor_t *sup, const char *id)
{
  nex_node_t *node = sup->node;
  cleanup_error nex_error_t err = NULL;
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_registry_workload_get (node->reg, id, &w, &err) < 0)
    {
      nex_log_error (NEX_LOG_WARN, err, "deploy %s", id);
      return;
    }
  if (w.state != NEX_STATE_PENDING)
    return;

  /* A deploy that fits takes a warm sandbox now, so that its history can say where it starts. */
  nex_sandbox_slot_t *slot = sup->pool && nex_sandbox_pool_fits (&w) ? nex_sandbox_pool_take (sup->pool) : NULL;
  int in_sandbox = w.driver && strcmp (w.driver, "sandbox") == 0;
  nex_state_change_t starting = { .state = NEX_STATE_STARTING,
                                  .note = slot         ? "warm sandbox"
                                          : in_sandbox ? "cold sandbox"
                                                       : NULL };
  transition (sup, id, &starting, NULL);

  int64_t t_fetch = nex_clock_mono_ms ();
  if (w.image)
    {
      deploy_image (sup, id, &w, t_fetch);
      return;
    }
  char digest[65];
  cleanup_free char *path = nex_artifact_fetch (node->artifacts_dir, w.artifact, w.sha256, digest, &err);
  if (path == NULL || nex_secure_check_digest (node, id, digest, &err) < 0)
    {
      if (slot)
        nex_sandbox_pool_give_back (sup->pool, slot);
      nex_sup_fail_workload (sup, id, err->msg);
      return;
    }
  launch (sup, id, &w, path, digest, NULL, t_fetch, slot);
}

static void
do_stop (nex_supervisor_t *sup, const char *id, int64_t grace_ms)
{
  nex_sup_entry_t *e = nex_sup_entry_find (sup, id);
  if (e == NULL)
    {
      /* Not live: only a workload that has not started yet can still be stopped. */
      nex_workload_t w = { 0 };
      cleanup_error nex_error_t err = NULL;
      /* (An image workload waiting for its pull is `starting` without an entry: it has not started either.) */
      if (nex_registry_workload_get (sup->node->reg, id, &w, &err) == 0
          && (w.state == NEX_STATE_PENDING || (w.state == NEX_STATE_STARTING && w.image && !w.pid)))
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
  if (e->paused)
    {
      /* A frozen process cannot act on SIGTERM (nor die of SIGKILL under cgroup v1): thaw it first. */
      cleanup_error nex_error_t ferr = NULL;
      if (freeze (sup, e, 0, &ferr) < 0)
        nex_log_error (NEX_LOG_WARN, ferr, "workload %s: cannot thaw it to stop it", id);
      if (e->greet_deferred)
        {
          e->greet_deferred = 0;
          nex_sup_greet (sup, e);
        }
    }
  if (!e->start_sent
      || send_json (e, NEX_WIRE_STOP, json_pack ("{s:i, s:I}", "signal", SIGTERM, "grace_ms", (json_int_t)grace_ms))
             < 0)
    {
      cleanup_error nex_error_t err = NULL;
      nex_driver_kill (e->driver, &e->inst, &err);
    }
}

/* Does what command C asks. */
static void
cmd_run (nex_supervisor_t *sup, nex_sup_cmd_t *c)
{
  switch (c->kind)
    {
    case NEX_SUP_CMD_DEPLOY:
      do_deploy (sup, c->id);
      break;
    case NEX_SUP_CMD_STOP:
      do_stop (sup, c->id, c->grace_ms);
      break;
    case NEX_SUP_CMD_SIGNAL:
      do_signal (sup, c->id, c->signal);
      break;
    case NEX_SUP_CMD_PAUSE:
      do_pause (sup, c->id, c->paused);
      break;
    case NEX_SUP_CMD_EXEC:
      nex_sup_exec_run (sup, NEX_STEAL_PTR (c->exec));
      break;
    case NEX_SUP_CMD_EXEC_INPUT:
      nex_sup_exec_input (sup, c->target, c->frame_type, c->data, c->len);
      break;
    case NEX_SUP_CMD_EXEC_CLOSE:
      nex_sup_exec_close (sup, c->target);
      break;
    case NEX_SUP_CMD_IMAGE:
      do_image (sup, c);
      break;
    }
}

/* Command C will not run (nexd is shutting down): its exec request fails at once, so that its waiter learns it,
 * and its input counts as sent. */
static void
cmd_refuse (nex_sup_cmd_t *c)
{
  if (c->kind == NEX_SUP_CMD_EXEC_INPUT)
    nex_exec_input_done (c->target, c->len);
  if (c->exec)
    {
      nex_error_t err = NULL;
      nex_error_set (&err, NEX_ERR_UNAVAILABLE, "nexd is shutting down");
      nex_exec_fail (c->exec, &err);
    }
}

static void
cmd_free (nex_sup_cmd_t *c)
{
  nex_exec_unref (c->exec);
  nex_exec_unref (c->target);
  free (c->data);
  free (c);
}

/* Runs the queued commands (or refuses them once shutdown has begun); whether the thread is to stop. */
static int
drain_commands (nex_supervisor_t *sup)
{
  uint64_t v;
  (void)!read (sup->wakefd, &v, sizeof v);
  pthread_mutex_lock (&sup->queue_lock);
  nex_sup_cmd_t *list = sup->queue_head;
  sup->queue_head = sup->queue_tail = NULL;
  int stop = sup->shutting_down;
  pthread_mutex_unlock (&sup->queue_lock);
  while (list)
    {
      nex_sup_cmd_t *c = list;
      list = c->next;
      if (stop)
        cmd_refuse (c);
      else
        cmd_run (sup, c);
      cmd_free (c);
    }
  return stop;
}

/* Appends C to the command queue; queue_lock held. */
void
nex_sup_enqueue_locked (nex_supervisor_t *sup, nex_sup_cmd_t *c)
{
  if (sup->queue_tail)
    sup->queue_tail->next = c;
  else
    sup->queue_head = c;
  sup->queue_tail = c;
}

void
nex_sup_wake (nex_supervisor_t *sup)
{
  uint64_t one = 1;
  (void)!write (sup->wakefd, &one, sizeof one);
}

void
nex_sup_enqueue (nex_supervisor_t *sup, nex_sup_cmd_t *c)
{
  pthread_mutex_lock (&sup->queue_lock);
  nex_sup_enqueue_locked (sup, c);
  pthread_mutex_unlock (&sup->queue_lock);
  nex_sup_wake (sup);
}

nex_sup_cmd_t *
nex_sup_cmd_new (nex_sup_cmd_kind_t kind, const char *id)
{
  nex_sup_cmd_t *c = nex_xzalloc (sizeof *c);
  c->kind = kind;
  snprintf (c->id, sizeof c->id, "%s", id);
  return c;
}

void
nex_supervisor_deploy (nex_supervisor_t *sup, const char *id)
{
  nex_sup_enqueue (sup, nex_sup_cmd_new (NEX_SUP_CMD_DEPLOY, id));
}

void
nex_supervisor_stop (nex_supervisor_t *sup, const char *id, int64_t grace_ms)
{
  nex_sup_cmd_t *c = nex_sup_cmd_new (NEX_SUP_CMD_STOP, id);
  c->grace_ms = grace_ms;
  nex_sup_enqueue (sup, c);
}

void
nex_supervisor_signal (nex_supervisor_t *sup, const char *id, int sig)
{
  nex_sup_cmd_t *c = nex_sup_cmd_new (NEX_SUP_CMD_SIGNAL, id);
  c->signal = sig;
  nex_sup_enqueue (sup, c);
}

void
nex_supervisor_pause (nex_supervisor_t *sup, const char *id, int paused)
{
  nex_sup_cmd_t *c = nex_sup_cmd_new (NEX_SUP_CMD_PAUSE, id);
  c->paused = paused;
  nex_sup_enqueue (sup, c);
}

/* --- the loop ------------------------------------------------------------------------------------------------- */

/* How long the loop may sleep: until the earliest deadline of any entry (a stop's kill, a restart, an exec's end,
 * a greeting, an agent's first hello, output to store, a lease to renew), or -1 when there is none. */
static int
next_timeout (nex_supervisor_t *sup)
{
  int64_t now = nex_clock_mono_ms ();
  int64_t soonest = nex_sup_unrecorded_deadline (sup);
  for (nex_sup_entry_t *e = sup->entries; e; e = e->next)
    {
      int64_t at[7] = { e->kill_at,    e->restart_at, nex_sup_execs_deadline (e), e->greet_at, e->hello_by,
                        e->output_due, e->lease_at };
      for (int k = 0; k < 7; k++)
        if (at[k] && (soonest == 0 || at[k] < soonest))
          soonest = at[k];
    }
  if (soonest == 0)
    return -1;
  return soonest > now ? (int)(soonest - now) : 0;
}

/* Acts on every deadline that has passed. */
static void
run_timers (nex_supervisor_t *sup)
{
  int64_t now = nex_clock_mono_ms ();
  nex_sup_unrecorded_retry (sup, now);
  nex_sup_lease_renew (sup, now);
  for (nex_sup_entry_t *e = sup->entries; e; e = e->next)
    if (e->output_due && now >= e->output_due && output_store_due (e, now))
      nex_sup_output_flush (sup, e);
  for (nex_sup_entry_t *e = sup->entries; e; e = e->next)
    if (e->kill_at && now >= e->kill_at)
      {
        e->kill_at = 0;
        nex_warn ("workload %s: the agent did not stop it in time; killing the sandbox", e->id);
        cleanup_error nex_error_t err = NULL;
        nex_driver_kill (e->driver, &e->inst, &err);
      }
  for (nex_sup_entry_t *e = sup->entries; e; e = e->next)
    {
      if (e->restart_at && now >= e->restart_at && !e->final)
        {
          e->restart_at = 0;
          send_start (sup, e);
        }
      nex_sup_execs_expire (e, now);
    }
  for (nex_sup_entry_t *e = sup->entries; e; e = e->next)
    if (e->hello_by && now >= e->hello_by)
      {
        e->hello_by = 0;
        e->boot_timed_out = 1;
        if (e->lost_reason == NULL)
          e->lost_reason
              = nex_xasprintf ("the agent did not greet within %lld s of the start",
                               (long long)(e->inst.boot_ms > 0 ? e->inst.boot_ms : AGENT_HELLO_TIMEOUT_MS) / 1000);
        cleanup_error nex_error_t err = NULL;
        nex_driver_kill (e->driver, &e->inst, &err);
      }
  for (nex_sup_entry_t *e = sup->entries; e; e = e->next)
    if (e->greet_at && now >= e->greet_at)
      {
        if (now >= e->greet_until)
          nex_sup_close_conn (sup, e, "the agent did not answer nexd's greeting after a restart");
        else
          nex_sup_greet (sup, e);
      }
}

static void *
supervisor_main (void *arg)
{
  nex_supervisor_t *sup = arg;
  for (;;)
    {
      struct epoll_event evs[32];
      int n = epoll_wait (sup->epfd, evs, 32, next_timeout (sup));
      if (n < 0 && errno != EINTR)
        {
          nex_log (NEX_LOG_ERROR, "supervisor: epoll_wait: %s", strerror (errno));
          break;
        }
      int stop = 0;
      /* Pidfd events are handled after connection events of the same round, and at most once per entry. */
      nex_sup_entry_t *ended[32];
      int n_ended = 0;
      for (int i = 0; i < n; i++)
        {
          nex_sup_ref_t *r = evs[i].data.ptr;
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
      run_timers (sup);
      if (stop)
        break;
    }
  return NULL;
}

/* Frees SUP and all it holds: its entries (their environments keep running; their agents keep the output until
 * a nexd dials again) and the commands still queued (refused).  The thread has ended, or never ran. */
static void
supervisor_free (nex_supervisor_t *sup)
{
  while (sup->entries)
    {
      nex_sup_entry_t *e = sup->entries;
      sup->entries = e->next;
      entry_free (sup, e);
    }
  while (sup->queue_head)
    {
      nex_sup_cmd_t *c = sup->queue_head;
      sup->queue_head = c->next;
      cmd_refuse (c);
      cmd_free (c);
    }
  nex_sup_unrecorded_free (sup);
  if (sup->epfd >= 0)
    close (sup->epfd);
  if (sup->wakefd >= 0)
    close (sup->wakefd);
  nex_sandbox_pool_stop (sup->pool);
  json_decref (sup->seccomp);
  free (sup->waiting);
  pthread_mutex_destroy (&sup->queue_lock);
  free (sup);
}

static void
supervisor_freep (nex_supervisor_t **sup)
{
  if (*sup)
    supervisor_free (*sup);
}

nex_supervisor_t *
nex_supervisor_start (nex_node_t *node, nex_error_t *err)
{
  cleanup_with (supervisor_freep) nex_supervisor_t *sup = nex_xzalloc (sizeof *sup);
  sup->node = node;
  pthread_mutex_init (&sup->queue_lock, NULL);
  sup->epfd = epoll_create1 (EPOLL_CLOEXEC);
  sup->wakefd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sup->epfd < 0 || sup->wakefd < 0)
    {
      nex_error_sys (err, errno, "supervisor set-up");
      return NULL;
    }
  sup->seccomp = nex_seccomp_default_profile (err);
  if (sup->seccomp == NULL)
    return NULL;
  sup->wake_ref.e = NULL;
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &sup->wake_ref };
  epoll_ctl (sup->epfd, EPOLL_CTL_ADD, sup->wakefd, &ev);
  /* Pooled sandboxes of an earlier nexd first: recovery knows nothing of them. */
  nex_sandbox_pool_sweep (node->run_dir, node->cgroups);
  nex_sup_recover (sup);
  if (node->cfg->warm_sandboxes > 0 && node->cgroups)
    {
      sup->pool = nex_sandbox_pool_start (node->run_dir, node->agent_path, node->cgroups,
                                          (int)node->cfg->warm_sandboxes, err);
      if (sup->pool == NULL)
        return NULL;
    }
  int r = pthread_create (&sup->thread, NULL, supervisor_main, sup);
  if (r != 0)
    {
      nex_error_sys (err, r, "start supervisor thread");
      return NULL;
    }
  return NEX_STEAL_PTR (sup);
}

int
nex_supervisor_warm (nex_supervisor_t *sup, int *size)
{
  *size = sup && sup->pool ? nex_sandbox_pool_size (sup->pool) : 0;
  return *size > 0 ? nex_sandbox_pool_ready (sup->pool) : 0;
}

void
nex_supervisor_shutdown (nex_supervisor_t *sup)
{
  if (sup == NULL)
    return;
  /* Pulls under way report to this supervisor: they end (and their reports are queued) before it goes. */
  nex_image_store_drain (sup->node->images);
  pthread_mutex_lock (&sup->queue_lock);
  sup->shutting_down = 1;
  pthread_mutex_unlock (&sup->queue_lock);
  nex_sup_wake (sup);
  pthread_join (sup->thread, NULL);
  supervisor_free (sup);
}
