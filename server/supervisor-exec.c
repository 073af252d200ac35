/* SPDX-License-Identifier: Apache-2.0 */
/* supervisor-exec.c — exec sessions: a command run inside a running workload's sandbox through its agent (see
 * supervisor.h for the API, exec.h for the request itself).
 *
 * API side (any thread): a request takes one of api_threads - 1 waiting slots (so that one API thread always stays
 * free), is queued as a command and waited for; interactive sessions are counted apart and get their input and
 * their end as further commands.  Supervisor side: each session gets a channel of its own on the agent
 * connection (channel 0 is the workload's), an EXEC frame with the workload's environment and hardening, its
 * stdin as STDIN frames, and a deadline (its timeout plus EXEC_SLACK_MS; none for an interactive one until its
 * client goes).  The agent's STARTED, STDOUT/STDERR, EXIT and ERROR frames on that channel complete it. */
#include "server/supervisor-internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/nats/secure.h"

#define EXEC_SLACK_MS 10000    /* after an exec's timeout, how long the agent has to report its end */
#define SESSION_START_MS 10000 /* how long an interactive exec may take to start */

/* --- the supervisor side --------------------------------------------------------------------------------------- */

void
nex_sup_execs_fail_all (nex_sup_entry_t *e, nex_error_kind_t kind, const char *why)
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
exec_remove (nex_sup_entry_t *e, nex_exec_t *x)
{
  for (nex_exec_t **p = &e->execs; *p; p = &(*p)->next)
    if (*p == x)
      {
        *p = x->next;
        nex_exec_unref (x);
        return;
      }
}

/* An agent's ERROR about exec session X: the program could not be run.  The message comes from the guest, so it
 * is shown bounded; errno 2 is the common case, said plainly. */
static void
exec_refused (nex_exec_t *x, json_t *msg)
{
  const char *m = json_string_value (json_object_get (msg, "message"));
  json_int_t errnum = json_integer_value (json_object_get (msg, "errno"));
  const char *prog = x->path;
  const char *phase = json_string_value (json_object_get (msg, "phase"));
  nex_error_t err = NULL;
  if (phase && strcmp (phase, "function") == 0)
    nex_error_set (&err, NEX_ERR_UNAVAILABLE, "%.300s", m ? m : "function protocol error");
  else if (errnum == ENOENT && m && strncmp (m, "exec `", 6) == 0)
    nex_error_field (&err, "argv[0]",
                     "`%.200s` does not exist in the sandbox of workload %s (it holds only "
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

void
nex_sup_exec_frame (nex_supervisor_t *sup, nex_sup_entry_t *e, const nex_wire_frame_t *f)
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
                                              nex_wire_type_name (f->type), (unsigned)f->channel);
      nex_sup_close_conn (sup, e, why);
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
send_frame_waiting (nex_sup_entry_t *e, nex_wire_type_t type, uint16_t channel, const void *data, size_t len)
{
  size_t n;
  cleanup_free uint8_t *frame = nex_wire_encode (type, channel, data, len, &n, NULL);
  size_t off = 0;
  while (frame && off < n && e->conn >= 0)
    {
      ssize_t w = write (e->conn, frame + off, n - off);
      if (w > 0)
        off += (size_t)w;
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

/* What every exec of E's workload starts from, read from the registry once per entry (a function's run must
 * not cost a registry read): {env, sealed, ...} with the hardening nex_sup_add_hardening adds (capabilities,
 * cwd, an image's uid/gid/groups) but seccomp (added per request, it is shared).  `sealed` says that ENV is only the
 * plain part: the sealed one is opened per exec and never kept.  Borrowed (E owns it), or NULL with ERR. */
static json_t *
exec_base (nex_supervisor_t *sup, nex_sup_entry_t *e, nex_error_t *err)
{
  if (e->exec_base)
    return e->exec_base;
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  if (nex_registry_workload_get (sup->node->reg, e->id, &w, err) < 0)
    return NULL;
  cleanup_with (nex_secure_row_release) nex_secure_row_t r = { 0 };
  int found = nex_registry_secure_get (sup->node->reg, e->id, &r, err);
  if (found < 0)
    return NULL;
  json_t *base = json_object ();
  nex_sup_add_hardening (sup, base, &w);
  json_object_del (base, "seccomp");
  json_object_set_new (base, "env", json_deep_copy (w.process ? json_object_get (w.process, "env") : w.env));
  json_object_set_new (base, "sealed", json_boolean (found && r.sealed_env));
  e->exec_base = base;
  return base;
}

void
nex_sup_exec_run (nex_supervisor_t *sup, nex_exec_t *x)
{
  nex_sup_entry_t *e = nex_sup_entry_find (sup, x->id);
  nex_error_t err = NULL;
  if (e == NULL || e->final || e->restart_at || !e->start_sent || e->conn < 0 || e->paused)
    {
      nex_error_set (&err, NEX_ERR_CONFLICT, "workload %s is not running%s", x->id, e && e->paused ? " (paused)" : "");
      nex_exec_fail (x, &err);
      nex_exec_unref (x);
      return;
    }
  json_t *base = exec_base (sup, e, &err);
  if (base == NULL)
    {
      nex_exec_fail (x, &err);
      nex_exec_unref (x);
      return;
    }
  /* A channel no session of this connection uses. */
  int in_use;
  do
    {
      e->last_channel = (uint16_t)(e->last_channel == UINT16_MAX ? 1 : e->last_channel + 1);
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
  json_t *plain = json_object_get (base, "env");
  json_t *env = json_is_true (json_object_get (base, "sealed")) ? nex_secure_start_env (sup->node, x->id, plain, &err)
                                                                : json_deep_copy (plain);
  if (env == NULL)
    {
      nex_error_wrap (&err, "exec: cannot open the workload's sealed environment");
      nex_exec_fail (x, &err);
      exec_remove (e, x);
      return;
    }
  json_object_update (env, x->env);
  json_t *req = json_pack ("{s:s, s:O, s:O, s:I}", "path", x->path, "argv", x->argv, "env", env, "timeout_ms",
                           (json_int_t)x->timeout_ms);
  json_object_set (req, "seccomp", sup->seccomp);
  const char *key;
  json_t *value;
  json_object_foreach (base, key, value)
  {
    if (strcmp (key, "env") != 0 && strcmp (key, "sealed") != 0)
      json_object_set (req, key, value);
  }
  if (x->warm > 0)
    json_object_set_new (req, "warm", json_integer (x->warm));
  if (x->persistent)
    {
      json_object_set_new (req, "persistent", json_true ());
      json_object_set_new (req, "subject", json_string (x->subject ? x->subject : "-"));
    }
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
      /* Its stdin comes later, from its client (nex_sup_exec_input). */
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
static nex_sup_entry_t *
session_entry (nex_supervisor_t *sup, nex_exec_t *x)
{
  nex_sup_entry_t *e = nex_sup_entry_find (sup, x->id);
  if (e == NULL || e->conn < 0)
    return NULL;
  for (nex_exec_t *o = e->execs; o; o = o->next)
    if (o == x)
      return e;
  return NULL;
}

void
nex_sup_exec_input (nex_supervisor_t *sup, nex_exec_t *x, int type, const uint8_t *data, size_t len)
{
  nex_sup_entry_t *e = session_entry (sup, x);
  if (e && send_frame_waiting (e, (nex_wire_type_t)type, x->channel, data, len) < 0)
    {
      nex_error_t err = NULL;
      nex_error_set (&err, NEX_ERR_UNAVAILABLE, "exec: the agent of workload %s does not take input", x->id);
      nex_exec_fail (x, &err);
      exec_remove (e, x);
    }
  nex_exec_input_done (x, len);
}

void
nex_sup_exec_close (nex_supervisor_t *sup, nex_exec_t *x)
{
  nex_sup_entry_t *e = session_entry (sup, x);
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

int64_t
nex_sup_execs_deadline (const nex_sup_entry_t *e)
{
  int64_t at = 0;
  for (const nex_exec_t *x = e->execs; x; x = x->next)
    if (x->deadline && (at == 0 || x->deadline < at))
      at = x->deadline;
  return at;
}

void
nex_sup_execs_expire (nex_sup_entry_t *e, int64_t now)
{
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

/* --- the API side ---------------------------------------------------------------------------------------------- */

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
        sup->waiting = nex_xzalloc ((size_t)cap * sizeof *sup->waiting);
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
                          (long long)cap);
  nex_sup_cmd_t *c = nex_sup_cmd_new (NEX_SUP_CMD_EXEC, x->id);
  c->exec = nex_exec_ref (x);
  nex_sup_enqueue (sup, c);
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
  nex_sup_cmd_t *c = nex_sup_cmd_new (NEX_SUP_CMD_EXEC_INPUT, x->id);
  c->target = nex_exec_ref (x);
  c->frame_type = type;
  c->len = len;
  if (len)
    {
      c->data = nex_xmalloc (len);
      memcpy (c->data, data, len);
    }
  nex_exec_input_add (x, len);
  nex_sup_enqueue (sup, c);
}

void
nex_supervisor_exec_close (nex_supervisor_t *sup, nex_exec_t *x)
{
  pthread_mutex_lock (&sup->queue_lock);
  sup->sessions--;
  pthread_mutex_unlock (&sup->queue_lock);
  nex_sup_cmd_t *c = nex_sup_cmd_new (NEX_SUP_CMD_EXEC_CLOSE, x->id);
  c->target = x; /* the caller's reference, dropped once the command ran */
  nex_sup_enqueue (sup, c);
}

int
nex_supervisor_exec_submit (nex_supervisor_t *sup, nex_exec_t *x, nex_error_t *err)
{
  nex_sup_cmd_t *c = nex_sup_cmd_new (NEX_SUP_CMD_EXEC, x->id);
  pthread_mutex_lock (&sup->queue_lock);
  int refusing = sup->refusing_execs || sup->shutting_down;
  if (!refusing)
    {
      c->exec = nex_exec_ref (x);
      nex_sup_enqueue_locked (sup, c);
    }
  pthread_mutex_unlock (&sup->queue_lock);
  if (refusing)
    {
      free (c);
      return nex_error_set (err, NEX_ERR_UNAVAILABLE, "nexd is shutting down");
    }
  nex_sup_wake (sup);
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
