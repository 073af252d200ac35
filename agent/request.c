/* SPDX-License-Identifier: Apache-2.0 */
/* request.c — what each frame from the host asks nex-agent to do (see agent.h and common/wire.h).
 *
 * Channel 0 is the workload's and the control channel: START (a restart after an EXIT), STOP, SIGNAL, ACK,
 * HELLO, LEASE, STORED.  Every other channel is an exec session's: EXEC opens it, STDIN feeds it, SIGNAL and
 * RESIZE reach its process, and its replies go back on the same channel.  Every field is validated before anything
 * happens; a request that is well-formed but refused is answered with ERROR, and only a frame that is not what its type
 * promises (bad JSON) makes the connection reject the host. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/xalloc.h"

#define AGENT_TTY_MAX_SIZE 10000 /* rows and columns a terminal may have */

/* Reads an optional integer field KEY of OBJ within [MIN, MAX]; DEF when absent or null.  -1 when it is not. */
static int
json_int (json_t *obj, const char *key, json_int_t def, json_int_t min, json_int_t max, json_int_t *out)
{
  json_t *v = json_object_get (obj, key);
  if (v == NULL || json_is_null (v))
    {
      *out = def;
      return 0;
    }
  if (!json_is_integer (v) || json_integer_value (v) < min || json_integer_value (v) > max)
    return -1;
  *out = json_integer_value (v);
  return 0;
}

/* P (just forked) becomes the live record on CHANNEL; the host hears STARTED {pid} there once its child has
 * become the program (nex_agent_proc_check_start, from the loop), or why it could not. */
static void
take_record (nex_agent_proc_t *p, uint16_t channel)
{
  p->live = true;
  p->channel = channel;
}

/* --- the workload ---------------------------------------------------------------------------------------------- */

/* Forks and execs the workload.  Failures before fork are refused with ERROR; failures in the child are reported
 * as ERROR {phase: "exec"} and, once the child is reaped, EXIT {code: 127, exec_failed: true}. */
static void
spawn_workload (nex_agent_t *a, const nex_agent_spec_t *s)
{
  nex_agent_proc_t *w = nex_agent_workload (a);
  if (nex_agent_spawn (s, false, w) < 0)
    {
      nex_agent_queue_error (a, true, "start", "start: %s", strerror (errno));
      return;
    }
  take_record (w, 0);
}

static void
handle_start (nex_agent_t *a, json_t *req)
{
  if (nex_agent_workload_state (a) == AGENT_EXITED)
    {
      /* A restart (the host's restart policy): the same sandbox, a fresh process.  The EXIT of the last run is
       * queued ahead of what the new run produces, so the host sees them in order. */
      nex_agent_log ("restarting the workload");
      nex_agent_workload_reset (a);
    }
  if (nex_agent_workload_state (a) != AGENT_IDLE)
    {
      nex_agent_queue_error (a, true, "start", "start: the workload was already started (pid %d)",
                             (int)nex_agent_workload (a)->pid);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_with (nex_agent_spec_release) nex_agent_spec_t spec = { 0 };
  json_t *park = json_object_get (req, "park");
  if (nex_agent_spec_parse (req, &spec, &err) < 0)
    nex_agent_queue_error (a, true, "start", "%s", err->msg);
  else if (park != NULL && !json_is_boolean (park))
    nex_agent_queue_error (a, true, "start", "start: `park` must be a boolean");
  else
    {
      spec.park = json_is_true (park);
      spawn_workload (a, &spec);
    }
}

static void
handle_stop (nex_agent_t *a, json_t *req)
{
  json_int_t sig, grace;
  if (json_int (req, "signal", SIGTERM, 1, NSIG - 1, &sig) < 0)
    {
      nex_agent_queue_error (a, true, NULL, "stop: `signal` must be an integer from 1 to %d", NSIG - 1);
      return;
    }
  if (json_int (req, "grace_ms", AGENT_STOP_GRACE_MS, 0, AGENT_MAX_GRACE_MS, &grace) < 0)
    {
      nex_agent_queue_error (a, true, NULL, "stop: `grace_ms` must be an integer from 0 to %d", AGENT_MAX_GRACE_MS);
      return;
    }
  if (nex_agent_workload_state (a) == AGENT_IDLE)
    {
      nex_agent_queue_error (a, true, NULL, "stop: no workload has been started");
      return;
    }
  /* After the end a STOP is a harmless race with the EXIT already on its way: nothing to do, nothing to say. */
  nex_agent_workload_stop (a, (int)sig, grace);
}

/* LEASE {ttl_ms}: the workload may run that much longer (common/wire.h, "Leases"). */
static void
handle_lease (nex_agent_t *a, json_t *req)
{
  json_int_t ttl;
  if (json_int (req, "ttl_ms", 0, 1, AGENT_MAX_GRACE_MS, &ttl) < 0 || ttl == 0)
    {
      nex_agent_queue_error (a, true, NULL, "lease: `ttl_ms` must be an integer from 1 to %d", AGENT_MAX_GRACE_MS);
      return;
    }
  nex_agent_workload_lease (a, ttl);
}

/* STORED {stdout, stderr}: the host stored the workload's output up to those offsets (common/wire.h). */
static void
handle_stored (nex_agent_t *a, json_t *req)
{
  json_int_t out, err;
  if (json_int (req, "stdout", 0, 0, INT64_MAX, &out) < 0 || json_int (req, "stderr", 0, 0, INT64_MAX, &err) < 0)
    {
      nex_agent_queue_error (a, true, NULL, "stored: `stdout` and `stderr` must be offsets (integers from 0)");
      return;
    }
  uint64_t stored[2] = { (uint64_t)out, (uint64_t)err };
  nex_agent_queue_stored (a, stored);
}

/* --- exec sessions --------------------------------------------------------------------------------------------- */

static void refuse (nex_agent_t *a, uint16_t channel, int errnum, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

/* Queues ERROR {message, phase: "exec", errno} on session CHANNEL: the session never started. */
static void
refuse (nex_agent_t *a, uint16_t channel, int errnum, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  nex_agent_queue_verror (a, channel, false, "exec", errnum, fmt, ap);
  va_end (ap);
}

/* Reads EXEC's own fields into SPEC (tty, rows, cols) and *TIMEOUT; -1 after refusing the session. */
static int
parse_exec (nex_agent_t *a, uint16_t channel, json_t *req, nex_agent_spec_t *spec, json_int_t *timeout)
{
  if (json_int (req, "timeout_ms", 0, 0, AGENT_MAX_GRACE_MS, timeout) < 0)
    {
      refuse (a, channel, EINVAL, "exec: `timeout_ms` must be an integer from 0 to %d", AGENT_MAX_GRACE_MS);
      return -1;
    }
  cleanup_error nex_error_t err = NULL;
  if (nex_agent_spec_parse (req, spec, &err) < 0)
    {
      refuse (a, channel, EINVAL, "exec: %s", err->msg);
      return -1;
    }
  json_int_t rows, cols;
  json_t *tty = json_object_get (req, "tty");
  if ((tty && !json_is_boolean (tty)) || json_int (req, "rows", 24, 1, AGENT_TTY_MAX_SIZE, &rows) < 0
      || json_int (req, "cols", 80, 1, AGENT_TTY_MAX_SIZE, &cols) < 0)
    {
      refuse (a, channel, EINVAL, "exec: `tty` must be a boolean, `rows` and `cols` from 1 to %d", AGENT_TTY_MAX_SIZE);
      return -1;
    }
  spec->tty = json_is_true (tty);
  spec->rows = (unsigned short)rows;
  spec->cols = (unsigned short)cols;
  return 0;
}

/* EXEC `persistent` and `subject`: whether the session is a call to a persistent function process (function.c),
 * and the call's subject; -1 after refusing the session. */
static int
parse_persistent (nex_agent_t *a, uint16_t channel, json_t *req, bool *persistent, const char **subject)
{
  json_t *pv = json_object_get (req, "persistent");
  json_t *sv = json_object_get (req, "subject");
  *persistent = json_is_true (pv);
  *subject = json_string_value (sv);
  if (pv && !json_is_boolean (pv))
    {
      refuse (a, channel, EINVAL, "exec: `persistent` must be a boolean");
      return -1;
    }
  if (!*persistent && sv)
    {
      refuse (a, channel, EINVAL, "exec: `subject` belongs to persistent calls");
      return -1;
    }
  if (*persistent
      && (*subject == NULL || **subject == '\0' || strlen (*subject) > AGENT_FN_MAX_SUBJECT
          || strpbrk (*subject, " \t\r\n") != NULL))
    {
      refuse (a, channel, EINVAL, "exec: a persistent call needs a `subject` of 1 to %d characters without spaces",
              AGENT_FN_MAX_SUBJECT);
      return -1;
    }
  return 0;
}

static void
handle_exec (nex_agent_t *a, uint16_t channel, json_t *req)
{
  if (nex_agent_proc_find (a, channel))
    {
      refuse (a, channel, EBUSY, "exec: channel %u is in use", (unsigned)channel);
      return;
    }
  if (nex_agent_workload_state (a) != AGENT_RUNNING)
    {
      refuse (a, channel, ESRCH, "exec: the workload is not running");
      return;
    }
  cleanup_with (nex_agent_spec_release) nex_agent_spec_t spec = { 0 };
  json_int_t timeout, warm;
  bool persistent;
  const char *subject_ref;
  if (json_int (req, "warm", 0, 0, AGENT_MAX_WARM, &warm) < 0)
    {
      refuse (a, channel, EINVAL, "exec: `warm` must be an integer from 0 to %d", AGENT_MAX_WARM);
      return;
    }
  if (parse_persistent (a, channel, req, &persistent, &subject_ref) < 0
      || parse_exec (a, channel, req, &spec, &timeout) < 0)
    return;
  if (persistent && spec.tty)
    {
      refuse (a, channel, EINVAL, "exec: a persistent call has no terminal");
      return;
    }
  /* Processes started ahead, and persistent ones, are for the very same request (its environment and hardening
   * included), whatever its timeout and subject; a terminal is made per session, so TTY sessions always start
   * cold. */
  cleanup_free char *key = NULL;
  cleanup_free char *subject = subject_ref ? nex_xstrdup (subject_ref) : NULL;
  if ((warm > 0 && !spec.tty) || persistent)
    {
      json_object_del (req, "timeout_ms");
      json_object_del (req, "warm");
      json_object_del (req, "subject");
      key = json_dumps (req, JSON_COMPACT | JSON_SORT_KEYS);
    }
  nex_agent_proc_t *x = persistent ? nex_agent_fn_take (a, key, channel) : NULL;
  if (x == NULL && (x = nex_agent_proc_free_slot (a)) == NULL)
    {
      refuse (a, channel, EAGAIN, "exec: %d sessions are running already", AGENT_MAX_EXECS);
      return;
    }
  if (!x->live && (persistent || key == NULL || !nex_agent_warm_take (a, key, x, channel)))
    {
      if (nex_agent_spawn (&spec, true, x) < 0)
        {
          refuse (a, channel, errno, "exec: %s", strerror (errno));
          return;
        }
      take_record (x, channel);
    }
  if (x->live && !x->ended)
    x->deadline = timeout > 0 ? nex_agent_now_ms () + timeout : 0;
  if (persistent && x->live)
    nex_agent_fn_begin (x, key, subject);
  else if (key)
    nex_agent_warm_want (a, req, key, (int)warm);
}

static void
handle_stdin (nex_agent_t *a, const nex_wire_frame_t *f)
{
  nex_agent_proc_t *x = nex_agent_proc_find (a, f->channel);
  if (x == NULL)
    {
      nex_agent_queue_error (a, true, NULL, "stdin on channel %u: no such exec session", (unsigned)f->channel);
      return;
    }
  nex_agent_proc_feed_stdin (x, f->payload, f->len);
}

/* SIGNAL on channel 0 is for the workload, on another for that session; a process that ended meanwhile is
 * silently left alone. */
static void
handle_signal (nex_agent_t *a, uint16_t channel, json_t *req)
{
  json_int_t sig;
  if (json_int (req, "signal", 0, 1, NSIG - 1, &sig) < 0 || sig == 0)
    {
      nex_agent_queue_error (a, true, NULL, "signal: `signal` must be an integer from 1 to %d", NSIG - 1);
      return;
    }
  nex_agent_proc_t *p = nex_agent_proc_find (a, channel);
  if (p)
    nex_agent_proc_signal (p, (int)sig);
}

/* RESIZE {rows, cols} on a TTY session: the terminal's new window size (the kernel sends SIGWINCH). */
static void
handle_resize (nex_agent_t *a, uint16_t channel, json_t *req)
{
  json_int_t rows, cols;
  nex_agent_proc_t *x = nex_agent_proc_find (a, channel);
  if (json_int (req, "rows", 0, 1, AGENT_TTY_MAX_SIZE, &rows) < 0
      || json_int (req, "cols", 0, 1, AGENT_TTY_MAX_SIZE, &cols) < 0 || rows == 0 || cols == 0)
    {
      nex_agent_queue_error (a, true, NULL, "resize: `rows` and `cols` must be integers from 1 to %d",
                             AGENT_TTY_MAX_SIZE);
      return;
    }
  if (x == NULL || x->tty_fd < 0)
    return; /* ended meanwhile, or not a terminal: nothing to resize */
  struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
  if (ioctl (x->tty_fd, TIOCSWINSZ, &ws) < 0)
    nex_agent_proc_log (x, "resize: %s", strerror (errno));
}

/* --- dispatch -------------------------------------------------------------------------------------------------- */

int
nex_agent_request_handle (nex_agent_t *a, const nex_wire_frame_t *f, nex_error_t *err)
{
  if (f->type == NEX_WIRE_STDIN && f->channel != 0)
    {
      handle_stdin (a, f);
      return 0;
    }
  if (f->channel != 0 && f->type != NEX_WIRE_EXEC && f->type != NEX_WIRE_SIGNAL && f->type != NEX_WIRE_RESIZE)
    {
      nex_agent_queue_error (a, true, NULL,
                             "%s on channel %u: only exec, stdin, signal and resize belong to exec sessions",
                             nex_wire_type_name (f->type), (unsigned)f->channel);
      return 0;
    }
  if (!nex_wire_type_is_json (f->type))
    {
      nex_agent_queue_error (a, true, NULL, "%s frames are not accepted by the agent", nex_wire_type_name (f->type));
      return 0;
    }
  cleanup_json json_t *req = nex_wire_frame_json (f, err);
  if (req == NULL)
    return -1;

  switch (f->type)
    {
    case NEX_WIRE_START:
      handle_start (a, req);
      break;
    case NEX_WIRE_STOP:
      handle_stop (a, req);
      break;
    case NEX_WIRE_LEASE:
      handle_lease (a, req);
      break;
    case NEX_WIRE_STORED:
      handle_stored (a, req);
      break;
    case NEX_WIRE_EXEC:
      if (f->channel == 0)
        nex_agent_queue_error (a, true, NULL, "exec: channel 0 is the workload's; use a fresh channel");
      else
        handle_exec (a, f->channel, req);
      break;
    case NEX_WIRE_SIGNAL:
      handle_signal (a, f->channel, req);
      break;
    case NEX_WIRE_RESIZE:
      handle_resize (a, f->channel, req);
      break;
    case NEX_WIRE_ACK:
      if (nex_agent_workload_state (a) == AGENT_EXITED)
        nex_agent_exit (a, 0);
      nex_agent_queue_error (a, true, NULL, "ack: the workload has not exited");
      break;
    case NEX_WIRE_HELLO:
      /* A host on a stream cannot re-dial; its HELLO asks for a fresh greeting instead. */
      nex_agent_conn_hello (a, json_object_get (req, "nonce"));
      break;
    case NEX_WIRE_ERROR:
      {
        /* Never answered, so that two ends refusing each other cannot loop. */
        const char *m = json_string_value (json_object_get (req, "message"));
        nex_agent_log ("host reports an error: %.200s", m ? m : "(no message)");
        break;
      }
    default:
      nex_agent_queue_error (a, true, NULL, "unexpected %s frame", nex_wire_type_name (f->type));
      break;
    }
  return 0;
}
