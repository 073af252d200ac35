/* SPDX-License-Identifier: Apache-2.0 */
/* exec.c — see exec.h. */
#include "server/exec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

nex_exec_t *
nex_exec_new (const char *id, const nex_exec_spec_t *spec)
{
  nex_exec_t *x = nex_xzalloc (sizeof *x);
  snprintf (x->id, sizeof x->id, "%s", id);
  x->path = nex_xstrdup (spec->path ? spec->path : json_string_value (json_array_get (spec->argv, 0)));
  x->argv = json_deep_copy (spec->argv);
  x->env = spec->env ? json_deep_copy (spec->env) : json_object ();
  if (spec->stdin_len)
    {
      x->stdin_data = nex_xmalloc (spec->stdin_len);
      memcpy (x->stdin_data, spec->stdin_data, spec->stdin_len);
      x->stdin_len = spec->stdin_len;
    }
  x->timeout_ms = spec->timeout_ms;
  x->interactive = spec->interactive;
  x->tty = spec->interactive && spec->tty;
  x->rows = spec->rows;
  x->cols = spec->cols;
  x->warm = spec->interactive ? 0 : spec->warm;
  x->persistent = !spec->interactive && spec->persistent;
  x->subject = x->persistent && spec->subject ? nex_xstrdup (spec->subject) : NULL;
  x->notify_fd = -1;
  if (x->interactive && (x->notify_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
    {
      perror ("nexd: eventfd");
      abort (); /* as out of memory: nothing sensible is left to do */
    }
  pthread_mutex_init (&x->lock, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&x->cond, &attr);
  pthread_condattr_destroy (&attr);
  x->refs = 1;
  return x;
}

nex_exec_t *
nex_exec_ref (nex_exec_t *x)
{
  pthread_mutex_lock (&x->lock);
  x->refs++;
  pthread_mutex_unlock (&x->lock);
  return x;
}

void
nex_exec_result_release (nex_exec_result_t *r)
{
  free (r->out);
  free (r->err);
  memset (r, 0, sizeof *r);
}

void
nex_exec_unref (nex_exec_t *x)
{
  if (x == NULL)
    return;
  pthread_mutex_lock (&x->lock);
  int last = --x->refs == 0;
  pthread_mutex_unlock (&x->lock);
  if (!last)
    return;
  free (x->path);
  free (x->subject);
  json_decref (x->argv);
  json_decref (x->env);
  free (x->stdin_data);
  nex_exec_result_release (&x->result);
  nex_error_free (&x->error);
  free (x->stream);
  if (x->notify_fd >= 0)
    close (x->notify_fd);
  pthread_mutex_destroy (&x->lock);
  pthread_cond_destroy (&x->cond);
  free (x);
}

/* Wakes the interactive reader.  Called with the lock held or not: an eventfd write is atomic. */
static void
notify (nex_exec_t *x)
{
  uint64_t one = 1;
  if (x->notify_fd >= 0)
    (void)!write (x->notify_fd, &one, sizeof one);
}

/* Interactive output: kept for the reader, bounded; a reader that does not keep up loses the excess (counted), so
 * that the supervisor never waits for a websocket client. */
static void
stream_output (nex_exec_t *x, const uint8_t *data, size_t n)
{
  size_t room = NEX_EXEC_STREAM_BUFFER - x->stream_len;
  size_t take = n < room ? n : room;
  if (!x->done && take > 0)
    {
      x->stream = nex_xrealloc (x->stream, x->stream_len + take);
      memcpy (x->stream + x->stream_len, data, take);
      x->stream_len += take;
    }
  x->result.out_lost += n - take;
  notify (x);
}

void
nex_exec_output (nex_exec_t *x, int stream, const uint8_t *data, size_t n)
{
  pthread_mutex_lock (&x->lock);
  if (x->interactive)
    {
      stream_output (x, data, n);
      pthread_mutex_unlock (&x->lock);
      return;
    }
  char **buf = stream == 2 ? &x->result.err : &x->result.out;
  size_t *len = stream == 2 ? &x->result.err_len : &x->result.out_len;
  uint64_t *lost = stream == 2 ? &x->result.err_lost : &x->result.out_lost;
  size_t room = NEX_EXEC_MAX_OUTPUT - *len;
  size_t take = n < room ? n : room;
  if (!x->done && take > 0)
    {
      *buf = nex_xrealloc (*buf, *len + take + 1);
      memcpy (*buf + *len, data, take);
      *len += take;
      (*buf)[*len] = '\0';
    }
  *lost += n - take;
  pthread_mutex_unlock (&x->lock);
}

void
nex_exec_started (nex_exec_t *x, int64_t pid)
{
  pthread_mutex_lock (&x->lock);
  x->result.pid = pid;
  x->started = 1;
  pthread_cond_broadcast (&x->cond);
  notify (x);
  pthread_mutex_unlock (&x->lock);
}

void
nex_exec_finish (nex_exec_t *x, const json_t *exit)
{
  int completed = 0;
  pthread_mutex_lock (&x->lock);
  if (!x->done)
    {
      json_t *code = json_object_get (exit, "code");
      json_t *sig = json_object_get (exit, "signal");
      json_t *dropped = json_object_get (exit, "dropped_bytes");
      x->result.has_code = json_is_integer (code);
      x->result.code = (int)json_integer_value (code);
      x->result.signal = json_is_integer (sig) ? (int)json_integer_value (sig) : 0;
      x->result.timed_out = json_is_true (json_object_get (exit, "timed_out"));
      x->result.replied = x->persistent && json_is_true (json_object_get (exit, "reply"));
      if (json_is_integer (dropped) && json_integer_value (dropped) > 0)
        x->result.out_lost += (uint64_t)json_integer_value (dropped);
      x->done = 1;
      completed = 1;
      pthread_cond_broadcast (&x->cond);
      notify (x);
    }
  pthread_mutex_unlock (&x->lock);
  if (completed && x->on_done)
    x->on_done (x, x->done_ctx);
}

void
nex_exec_fail (nex_exec_t *x, nex_error_t *err)
{
  int completed = 0;
  pthread_mutex_lock (&x->lock);
  if (!x->done)
    {
      x->error = NEX_STEAL_PTR (*err);
      x->done = 1;
      completed = 1;
      pthread_cond_broadcast (&x->cond);
      notify (x);
    }
  pthread_mutex_unlock (&x->lock);
  nex_error_free (err);
  if (completed && x->on_done)
    x->on_done (x, x->done_ctx);
}

void
nex_exec_on_done (nex_exec_t *x, nex_exec_done_fn fn, void *ctx)
{
  x->on_done = fn;
  x->done_ctx = ctx;
}

/* The request's error (lock held), copied into ERR. */
static int
copy_error (nex_exec_t *x, nex_error_t *err)
{
  if (x->error->kind == NEX_ERR_INVALID && x->error->field)
    return nex_error_field (err, x->error->field, "%s", x->error->msg);
  return nex_error_set (err, x->error->kind, "%s", x->error->msg);
}

/* Moves the outcome of a completed X into *OUT or *ERR; under X's lock. */
static int
take_locked (nex_exec_t *x, nex_exec_result_t *out, nex_error_t *err)
{
  if (x->error)
    return copy_error (x, err);
  *out = x->result;
  memset (&x->result, 0, sizeof x->result);
  return 0;
}

int
nex_exec_take (nex_exec_t *x, nex_exec_result_t *out, nex_error_t *err)
{
  pthread_mutex_lock (&x->lock);
  int r = x->done ? take_locked (x, out, err)
                  : nex_error_set (err, NEX_ERR_UNAVAILABLE, "exec: the request has not completed");
  pthread_mutex_unlock (&x->lock);
  return r;
}

/* Waits (lock held) until COND_MET says so or WAIT_MS passed. */
static void
wait_locked (nex_exec_t *x, int64_t wait_ms, int (*cond_met) (const nex_exec_t *))
{
  struct timespec deadline;
  clock_gettime (CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += wait_ms / 1000;
  deadline.tv_nsec += (wait_ms % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000)
    {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000;
    }
  while (!cond_met (x))
    if (pthread_cond_timedwait (&x->cond, &x->lock, &deadline) == ETIMEDOUT)
      break;
}

static int
is_done (const nex_exec_t *x)
{
  return x->done;
}

static int
is_started_or_done (const nex_exec_t *x)
{
  return x->started || x->done;
}

int
nex_exec_wait_started (nex_exec_t *x, int64_t wait_ms, nex_error_t *err)
{
  pthread_mutex_lock (&x->lock);
  wait_locked (x, wait_ms, is_started_or_done);
  int r = 0;
  if (x->done && x->error)
    r = copy_error (x, err);
  else if (!x->started && !x->done)
    r = nex_error_set (err, NEX_ERR_UNAVAILABLE, "exec: no answer from the workload's agent in time");
  pthread_mutex_unlock (&x->lock);
  return r;
}

size_t
nex_exec_read (nex_exec_t *x, uint8_t *buf, size_t max, int *ended)
{
  uint64_t drained;
  if (x->notify_fd >= 0)
    (void)!read (x->notify_fd, &drained, sizeof drained);
  pthread_mutex_lock (&x->lock);
  size_t n = x->stream_len < max ? x->stream_len : max;
  if (n > 0)
    {
      memcpy (buf, x->stream, n);
      memmove (x->stream, x->stream + n, x->stream_len - n);
      x->stream_len -= n;
    }
  *ended = x->done && x->stream_len == 0;
  pthread_mutex_unlock (&x->lock);
  return n;
}

void
nex_exec_input_add (nex_exec_t *x, size_t n)
{
  pthread_mutex_lock (&x->lock);
  x->input_inflight += n;
  pthread_mutex_unlock (&x->lock);
}

void
nex_exec_input_done (nex_exec_t *x, size_t n)
{
  pthread_mutex_lock (&x->lock);
  x->input_inflight -= n < x->input_inflight ? n : x->input_inflight;
  notify (x);
  pthread_mutex_unlock (&x->lock);
}

size_t
nex_exec_input_inflight (nex_exec_t *x)
{
  pthread_mutex_lock (&x->lock);
  size_t n = x->input_inflight;
  pthread_mutex_unlock (&x->lock);
  return n;
}

int
nex_exec_wait (nex_exec_t *x, int64_t wait_ms, nex_exec_result_t *out, nex_error_t *err)
{
  pthread_mutex_lock (&x->lock);
  wait_locked (x, wait_ms, is_done);
  int r = x->done ? take_locked (x, out, err)
                  : nex_error_set (err, NEX_ERR_UNAVAILABLE, "exec: no answer from the workload's agent in time");
  pthread_mutex_unlock (&x->lock);
  return r;
}
