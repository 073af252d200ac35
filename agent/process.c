/* SPDX-License-Identifier: Apache-2.0 */
/* process.c — the processes nex-agent runs for the host: the workload and its exec sessions (see agent.h).
 *
 * Both are one kind of record, nex_agent_proc_t, in one array (procs[0] is the workload, channel 0 as the wire
 * protocol says), so that one path serves both, as Redis serves its replication master as an ordinary client:
 * output is read and queued on the record's channel, stdin written, the kill deadline and the drain deadline
 * kept, the end reaped, the pipes drained and EXIT reported by the same functions.  What the protocol gives the
 * workload alone is small and kept in the few workload functions: its state as HELLO reports it, STOP, the
 * EXIT kept until a host acknowledges it (an exec session's record is freed with its EXIT instead), and killing
 * everything in the namespace when it ends.
 *
 * A record's life: live from the fork (spawn.c), starting until its child reports through the status pipe
 * (STARTED, or a refusal) -> ended (reaped; its pipes are read to EOF for at most AGENT_DRAIN_MS) -> EXIT
 * queued, no longer live.  Many records may be starting at once: nothing waits for a child's execve. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/xalloc.h"

#define AGENT_EXEC_STDIN_LIMIT (4u << 20) /* stdin bytes buffered for one session before it is refused */

/* --- the workload ---------------------------------------------------------------------------------------------- */

nex_agent_state_t
nex_agent_workload_state (const nex_agent_t *a)
{
  const nex_agent_proc_t *w = &a->procs[0];
  if (w->live)
    return w->ended ? AGENT_DRAINING : AGENT_RUNNING;
  return a->exit_info ? AGENT_EXITED : AGENT_IDLE;
}

void
nex_agent_workload_stop (nex_agent_t *a, int sig, int64_t grace_ms)
{
  nex_agent_proc_t *w = nex_agent_workload (a);
  if (nex_agent_workload_state (a) != AGENT_RUNNING)
    return;
  nex_agent_log ("stopping pid %d with signal %d, %lld ms grace", (int)w->pid, sig, (long long)grace_ms);
  /* The whole group, so that a shell's children stop too; the process itself if it left the group. */
  if (kill (-w->pid, sig) < 0)
    kill (w->pid, sig);
  int64_t deadline = nex_agent_now_ms () + grace_ms;
  if (w->deadline == 0 || deadline < w->deadline)
    w->deadline = deadline;
}

void
nex_agent_workload_reset (nex_agent_t *a)
{
  nex_agent_proc_release (nex_agent_workload (a));
  json_decref (a->exit_info);
  a->exit_info = NULL;
}

/* --- records --------------------------------------------------------------------------------------------------- */

void
nex_agent_proc_reset (nex_agent_proc_t *p)
{
  memset (p, 0, sizeof *p);
  p->out_fd = p->err_fd = p->in_fd = p->tty_fd = p->status_fd = -1;
}

static void
close_fd (int *fd)
{
  if (*fd >= 0)
    close (*fd);
  *fd = -1;
}

void
nex_agent_proc_release (nex_agent_proc_t *p)
{
  close_fd (&p->out_fd);
  close_fd (&p->err_fd);
  close_fd (&p->in_fd);
  close_fd (&p->tty_fd);
  close_fd (&p->status_fd);
  free (p->in_buf);
  free (p->path);
  free (p->cwd);
  free (p->warm_key);
  free (p->subject);
  free (p->call_buf);
  nex_agent_proc_reset (p);
}

nex_agent_proc_t *
nex_agent_proc_find (nex_agent_t *a, uint16_t channel)
{
  for (int i = 0; i < AGENT_MAX_PROCS; i++)
    if (a->procs[i].live && !a->procs[i].idle && a->procs[i].channel == channel)
      return &a->procs[i];
  return NULL;
}

nex_agent_proc_t *
nex_agent_proc_free_slot (nex_agent_t *a)
{
  for (int i = 1; i < AGENT_MAX_PROCS; i++)
    if (!a->procs[i].live)
      return &a->procs[i];
  return nex_agent_fn_evict (a); /* an idle persistent function process gives way to a session */
}

void
nex_agent_proc_log (const nex_agent_proc_t *p, const char *fmt, ...)
{
  char line[400];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  if (p->channel == 0)
    nex_agent_log ("%s", line);
  else
    nex_agent_log ("exec session %u: %s", (unsigned)p->channel, line);
}

/* SIGKILL for P's process group, and for P itself while it is not reaped (it may have left its group).  For the
 * workload as PID 1, kill (-1) reaches every other process in the namespace, including ones that left the
 * group: nothing the workload started may outlive it. */
static void
kill_all (const nex_agent_t *a, const nex_agent_proc_t *p)
{
  if (p->channel == 0 && a->is_init)
    {
      kill (-1, SIGKILL);
      return;
    }
  kill (-p->pid, SIGKILL);
  if (!p->ended)
    kill (p->pid, SIGKILL);
}

/* --- the start ------------------------------------------------------------------------------------------------ */

void
nex_agent_proc_check_start (nex_agent_t *a, nex_agent_proc_t *p)
{
  nex_agent_child_failure_t failure;
  nex_agent_start_t r = nex_agent_spawn_result (p, &failure);
  if (r == AGENT_START_PENDING)
    return;
  if (r == AGENT_START_OK)
    {
      if (p->channel == 0) /* an exec session's start and end are nexd's events; a busy function would grow agent.log */
        nex_agent_proc_log (p, "started `%s` as pid %d", p->path, (int)p->pid);
      nex_agent_queue_json (a, NEX_WIRE_STARTED, p->channel, json_pack ("{s:i}", "pid", (int)p->pid), false, false);
      return;
    }
  cleanup_free char *text = nex_agent_spawn_failure_text (p, &failure);
  if (p->channel != 0)
    {
      /* The session never existed: its child exits 127 and is reaped like any orphan. */
      nex_agent_queue_json (a, NEX_WIRE_ERROR, p->channel,
                            json_pack ("{s:s, s:s, s:i}", "message", text, "phase", "exec", "errno", failure.errnum),
                            false, false);
      nex_agent_proc_release (p);
      return;
    }
  p->exec_failed = true;
  nex_agent_log ("%s", text);
  nex_agent_queue_error (a, false, "exec", "%s", text);
}

/* --- the end: reaped, drained, reported ------------------------------------------------------------------------ */

static json_t *
exit_payload (const nex_agent_proc_t *p)
{
  json_t *o = json_object ();
  if (WIFSIGNALED (p->status))
    json_object_set_new (o, "signal", json_integer (WTERMSIG (p->status)));
  else
    json_object_set_new (o, "code", json_integer (WEXITSTATUS (p->status)));
  if (p->channel != 0)
    json_object_set_new (o, "timed_out", json_boolean (p->timed_out));
  json_object_set_new (o, "dropped_bytes", json_integer ((json_int_t)p->dropped_bytes));
  if (p->exec_failed)
    json_object_set_new (o, "exec_failed", json_true ());
  return o;
}

/* The drain is over: report EXIT on P's channel.  The workload's EXIT is kept for every later HELLO until an
 * ACK (its pid too); an exec session's slot is freed. */
static void
finish (nex_agent_t *a, nex_agent_proc_t *p)
{
  if (p->idle)
    {
      /* A persistent function process that ended between calls (or right after its reply): nobody to tell. */
      nex_agent_proc_log (p, "persistent function process %d ended between calls", (int)p->pid);
      nex_agent_proc_release (p);
      return;
    }
  json_t *o = exit_payload (p);
  nex_agent_queue_json (a, NEX_WIRE_EXIT, p->channel, json_incref (o), false, false);
  if (p->channel != 0)
    {
      json_decref (o);
      nex_agent_proc_release (p);
      return;
    }
  pid_t pid = p->pid;
  nex_agent_proc_release (p);
  p->pid = pid;
  a->exit_info = o;
  if (a->transport == AGENT_TRANSPORT_STREAM && a->conn_fd < 0)
    nex_agent_exit (a, 0); /* the stream is gone: no ACK can ever come */
}

static void
check_drained (nex_agent_t *a, nex_agent_proc_t *p)
{
  if (p->live && p->ended && p->out_fd < 0 && p->err_fd < 0)
    finish (a, p);
}

static void
ended (nex_agent_t *a, nex_agent_proc_t *p, int status)
{
  /* Its start is reported first (its status pipe has told by now): an EXIT must follow a STARTED, and a session
   * whose child never became its program has no EXIT at all. */
  nex_agent_proc_check_start (a, p);
  if (!p->live)
    return;
  if (p->channel == 0)
    nex_agent_warm_discard (a); /* nothing more runs in this sandbox until a restart */
  /* As for its start: an exec session's end is in nexd's events, not in agent.log. */
  if (p->channel == 0 && WIFSIGNALED (status))
    nex_agent_proc_log (p, "pid %d was killed by signal %d", (int)p->pid, WTERMSIG (status));
  else if (p->channel == 0)
    nex_agent_proc_log (p, "pid %d exited with code %d", (int)p->pid, WEXITSTATUS (status));
  p->ended = true;
  p->status = status;
  p->deadline = 0;
  close_fd (&p->in_fd);
  /* What it started must not linger (daemons, stragglers holding the pipes open, running on after it). */
  kill_all (a, p);
  p->drain_deadline = nex_agent_now_ms () + AGENT_DRAIN_MS;
  check_drained (a, p);
}

void
nex_agent_proc_reap (nex_agent_t *a)
{
  for (;;)
    {
      int status;
      pid_t pid = waitpid (-1, &status, WNOHANG);
      if (pid <= 0)
        return;
      for (int i = 0; i < AGENT_MAX_PROCS; i++)
        {
          nex_agent_proc_t *p = &a->procs[i];
          if (p->live && !p->ended && p->pid == pid)
            {
              ended (a, p, status);
              break;
            }
        }
      /* A warm process that ended before any session took it: its status waits for the session. */
      for (int i = 0; i < AGENT_MAX_WARM; i++)
        {
          nex_agent_proc_t *w = &a->warm[i];
          if (w->warm_key && !w->ended && w->pid == pid)
            {
              w->ended = true;
              w->status = status;
            }
        }
    }
}

/* --- warm processes -------------------------------------------------------------------------------------------- */

/* Kills warm process W (its whole group: what it started too) and frees its slot; the reaper collects it. */
static void
warm_kill (nex_agent_proc_t *w)
{
  kill (-w->pid, SIGKILL); /* what it started lives on in its group even once it is reaped */
  if (!w->ended)
    kill (w->pid, SIGKILL);
  nex_agent_proc_release (w);
}

int
nex_agent_warm_take (nex_agent_t *a, const char *key, nex_agent_proc_t *x, uint16_t channel)
{
  nex_agent_proc_t *w = NULL;
  for (int i = 0; i < AGENT_MAX_WARM; i++)
    {
      nex_agent_proc_t *o = &a->warm[i];
      if (o->warm_key && strcmp (o->warm_key, key) == 0 && (w == NULL || o->warm_seq < w->warm_seq))
        w = o;
    }
  if (w == NULL)
    return 0;
  *x = *w;
  free (x->warm_key);
  x->warm_key = NULL;
  nex_agent_proc_reset (w); /* its descriptors are X's now */
  x->live = true;
  x->channel = channel;
  if (x->ended)
    ended (a, x, x->status); /* it did not wait for its input: it is reported as it ended */
  else
    nex_agent_proc_check_start (a, x);
  return 1;
}

void
nex_agent_warm_want (nex_agent_t *a, json_t *req, const char *key, int n)
{
  if (a->warm_want_key == NULL || strcmp (a->warm_want_key, key) != 0)
    {
      json_decref (a->warm_req);
      free (a->warm_want_key);
      a->warm_req = json_incref (req);
      a->warm_want_key = nex_xstrdup (key);
      a->warm_budget = 0;
    }
  a->warm_want_n = n;
  a->warm_budget = a->warm_budget + 2 > AGENT_MAX_WARM ? AGENT_MAX_WARM : a->warm_budget + 2;
}

/* How many warm processes are kept for KEY. */
static int
warm_kept (const nex_agent_t *a, const char *key)
{
  int kept = 0;
  for (int i = 0; i < AGENT_MAX_WARM; i++)
    kept += a->warm[i].warm_key && strcmp (a->warm[i].warm_key, key) == 0;
  return kept;
}

/* A slot for one more warm process of KEY: a free one, else one kept for another request (killed).  NULL when
 * every slot is KEY's. */
static nex_agent_proc_t *
warm_slot (nex_agent_t *a, const char *key)
{
  nex_agent_proc_t *other = NULL;
  for (int i = 0; i < AGENT_MAX_WARM; i++)
    {
      nex_agent_proc_t *w = &a->warm[i];
      if (w->warm_key == NULL)
        return w;
      if (other == NULL && strcmp (w->warm_key, key) != 0)
        other = w;
    }
  if (other)
    warm_kill (other);
  return other;
}

void
nex_agent_warm_fill (nex_agent_t *a)
{
  const char *key = a->warm_want_key;
  int budget = a->warm_budget;
  a->warm_budget = 0; /* spent whatever happens: the loop must not come back for it (it polls without waiting) */
  if (key == NULL || budget == 0 || nex_agent_workload_state (a) != AGENT_RUNNING)
    return;
  int kept = warm_kept (a, key);
  cleanup_error nex_error_t err = NULL;
  cleanup_with (nex_agent_spec_release) nex_agent_spec_t spec = { 0 };
  if (kept < a->warm_want_n && nex_agent_spec_parse (a->warm_req, &spec, &err) < 0)
    {
      nex_agent_log ("warm: %s", err->msg); /* cannot happen: the same request was parsed for its session */
      return;
    }
  for (; kept < a->warm_want_n && budget > 0; kept++, budget--)
    {
      nex_agent_proc_t *w = warm_slot (a, key);
      if (w == NULL)
        break;
      nex_agent_proc_reset (w);
      if (nex_agent_spawn (&spec, true, w) < 0)
        {
          nex_agent_log ("warm: cannot start `%s` ahead: %s", spec.path, strerror (errno));
          nex_agent_proc_reset (w);
          break;
        }
      w->warm_key = nex_xstrdup (key);
      w->warm_seq = ++a->warm_started;
    }
}

int
nex_agent_warm_delay (const nex_agent_t *a)
{
  return a->warm_want_key && warm_kept (a, a->warm_want_key) > 0 ? AGENT_WARM_IDLE_MS : 0;
}

void
nex_agent_warm_discard (nex_agent_t *a)
{
  for (int i = 0; i < AGENT_MAX_WARM; i++)
    if (a->warm[i].warm_key)
      warm_kill (&a->warm[i]);
  json_decref (a->warm_req);
  free (a->warm_want_key);
  a->warm_req = NULL;
  a->warm_want_key = NULL;
  a->warm_budget = 0;
}

void
nex_agent_proc_abandon_execs (nex_agent_t *a)
{
  for (int i = 1; i < AGENT_MAX_PROCS; i++)
    {
      nex_agent_proc_t *x = &a->procs[i];
      if (!x->live)
        continue;
      if (!x->ended)
        kill_all (a, x);
      nex_agent_proc_release (x);
    }
}

void
nex_agent_proc_deadlines (nex_agent_t *a, int64_t now)
{
  for (int i = 0; i < AGENT_MAX_PROCS; i++)
    {
      nex_agent_proc_t *p = &a->procs[i];
      if (!p->live)
        continue;
      if (!p->ended && p->deadline && now >= p->deadline)
        {
          nex_agent_proc_log (p, "pid %d outlived its %s; killing", (int)p->pid, p->channel ? "timeout" : "grace");
          kill_all (a, p);
          p->timed_out = true;
          p->deadline = 0;
        }
      if (p->ended && now >= p->drain_deadline)
        {
          nex_agent_proc_log (p, "output pipes still open %d ms after pid %d ended; closing them", AGENT_DRAIN_MS,
                              (int)p->pid);
          close_fd (&p->out_fd);
          close_fd (&p->err_fd);
          finish (a, p);
        }
    }
}

void
nex_agent_workload_lease (nex_agent_t *a, int64_t ttl_ms)
{
  a->lease_end = nex_agent_now_ms () + ttl_ms;
}

void
nex_agent_workload_lease_check (nex_agent_t *a, int64_t now)
{
  if (a->lease_end == 0 || now < a->lease_end)
    return;
  /* A renewal may be waiting unread: nexd renews a paused workload's lease before it thaws it, and a freeze that
   * caught this loop between its poll and this check thaws straight into an expired lease.  What has arrived is
   * read first; only a lease still out is the end. */
  struct pollfd pending = { .fd = a->conn_fd, .events = POLLIN };
  if (a->conn_fd >= 0 && poll (&pending, 1, 0) > 0)
    {
      nex_agent_conn_read (a);
      if (a->lease_end == 0 || nex_agent_now_ms () < a->lease_end)
        return;
    }
  /* Another node may run this workload by now: this copy must not go on beside it (the bound on double-running,
   * ARCHITECTURE.md "Cluster").  Nothing is drained or kept for an ACK: whoever comes later learns from the
   * sandbox's end (and nexd, if it is there, from the ERROR). */
  nex_agent_log ("the lease ran out (nexd has not renewed it): ending the workload");
  nex_agent_queue_error (a, false, "lease", "lease expired: nexd did not renew it");
  nex_agent_proc_t *w = nex_agent_workload (a);
  if (w->live && !w->ended)
    kill_all (a, w);
  nex_agent_proc_abandon_execs (a);
  nex_agent_exit (a, 3);
}

int64_t
nex_agent_proc_next_deadline (const nex_agent_t *a)
{
  int64_t next = a->lease_end;
  for (int i = 0; i < AGENT_MAX_PROCS; i++)
    {
      const nex_agent_proc_t *p = &a->procs[i];
      int64_t t = !p->live ? 0 : p->ended ? p->drain_deadline : p->deadline;
      if (t && (next == 0 || t < next))
        next = t;
    }
  return next;
}

/* --- stdio and signals ----------------------------------------------------------------------------------------- */

void
nex_agent_proc_read (nex_agent_t *a, nex_agent_proc_t *p, int *fd, nex_wire_type_t type)
{
  static uint8_t buf[AGENT_CHUNK];
  ssize_t n = read (*fd, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0)
    {
      close_fd (fd);
      check_drained (a, p);
      return;
    }
  if (p->persistent && type == NEX_WIRE_STDOUT)
    nex_agent_fn_stdout (a, p, buf, (size_t)n);
  else if (p->persistent)
    nex_agent_queue_output (a, type, 0, buf, (size_t)n, &p->dropped_bytes); /* its stderr is the workload's log */
  else
    nex_agent_queue_output (a, type, p->channel, buf, (size_t)n, &p->dropped_bytes);
}

void
nex_agent_proc_write_stdin (nex_agent_proc_t *p)
{
  while (p->in_fd >= 0 && p->in_len > 0)
    {
      ssize_t w = write (p->in_fd, p->in_buf, p->in_len);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (w < 0)
        {
          /* The process closed its stdin (EPIPE): what is left has no reader. */
          p->in_len = 0;
          close_fd (&p->in_fd);
          return;
        }
      memmove (p->in_buf, p->in_buf + w, p->in_len - (size_t)w);
      p->in_len -= (size_t)w;
    }
  if (p->in_fd >= 0 && p->in_len == 0 && p->in_eof)
    close_fd (&p->in_fd);
}

void
nex_agent_proc_feed_stdin (nex_agent_proc_t *p, const uint8_t *data, size_t n)
{
  if (p->persistent)
    {
      nex_agent_fn_feed (p, data, n);
      return;
    }
  if (p->in_eof)
    return; /* after EOF: nothing more can be delivered */
  if (n == 0)
    p->in_eof = true;
  else if (p->in_fd >= 0)
    {
      if (p->in_len + n > AGENT_EXEC_STDIN_LIMIT)
        {
          nex_agent_proc_log (p, "stdin beyond %u bytes; closing it", AGENT_EXEC_STDIN_LIMIT);
          p->in_len = 0;
          p->in_eof = true;
        }
      else
        {
          p->in_buf = nex_xrealloc (p->in_buf, p->in_len + n);
          memcpy (p->in_buf + p->in_len, data, n);
          p->in_len += n;
        }
    }
  nex_agent_proc_write_stdin (p);
}

void
nex_agent_proc_signal (nex_agent_proc_t *p, int sig)
{
  if (p->ended)
    return;
  pid_t fg = p->tty_fd >= 0 ? tcgetpgrp (p->tty_fd) : -1;
  if (fg > 0 && fg != p->pid)
    kill (-fg, sig);
  if (sig == SIGKILL)
    kill (-p->pid, SIGKILL);
  if (fg <= 0 || fg == p->pid || sig == SIGKILL)
    kill (p->pid, sig);
}
