/* SPDX-License-Identifier: Apache-2.0 */
/* nats/functions.c — function workloads on NATS: each running function (workload type `function`) is subscribed
 * to its trigger subjects, and each message runs the function's executable once in its warm sandbox.
 *
 * A function's sandbox is made as any workload's, but its main process is a parked placeholder (START with
 * `park`), so the workload is `running` as soon as the agent has forked it.  Each trigger message becomes an exec
 * session (exec.h): `/workload` with the spec's argv and env plus NEX_TRIGGER_SUBJECT, the payload on stdin,
 * killed after function_timeout_s, asking the agent to keep min(--function-warm, max_concurrency) processes of it
 * started ahead (exec.h `warm`, common/wire.h), so that a run need not wait for a fork and execve.  The reply
 * carries stdout; a non-zero exit, a signal, a timeout or a refusal
 * is answered with the header `Nex-Error` saying why and stderr (or the reason) as the body.  Events
 * `function_exec_succeeded` / `function_exec_failed` report each run (subject, elapsed_ms, exit_code, ...): live
 * on the bus and NATS; only failures are stored; both are counted (nex_function_runs_total, ..._failures_total,
 * nex_function_seconds).
 *
 * Subscriptions are queue subscriptions in the group `nex-fn.<namespace>.<name>`: the same function deployed on
 * several nodes shares its triggers (each message runs once), while different functions on one subject each get
 * every message.  A message without a reply subject still runs the function (a published event is a trigger
 * too); only the reply is skipped.
 *
 * Threads.  nats.c delivers each subscription's messages on its own thread (on_message): it only checks the
 * payload's size and the function's concurrency, then queues an exec to the supervisor (never waiting for it).
 * At most max_concurrency invocations of a function run at once; up to FN_WAIT_PER_SLOT times as many wait in a
 * bounded FIFO, and beyond that a message is refused at once (`Nex-Error: busy`), so nats.c's delivery threads
 * never block and a flood costs bounded memory.  Completions (on the supervisor thread) are handed to the
 * module's thread, which replies, records the event, and starts the next waiting invocation.  The same thread
 * follows workload events (nex_nats_functions_notice) to subscribe functions that start and unsubscribe those
 * that end, and at start subscribes the functions that are running already (re-adopted after a nexd restart).
 *
 * Lifetimes.  A function's record (fn_t) lives while it is subscribed, while its subscriptions may still call
 * back (nats.c reports each one's end: on_sub_complete), and while invocations hold it; the module's thread
 * frees it after all three.  Whatever is left at shutdown is freed after nats.c's threads are gone. */
#include "server/nats/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/exec.h"
#include "server/log.h"
#include "server/metrics.h"
#include "server/supervisor.h"

#define FN_WAIT_PER_SLOT 4 /* invocations that may wait per concurrency slot before messages are refused */
#define FN_HEADER_MAX 512  /* bytes of a Nex-Error header value */
#define FN_ERROR_HEADER "Nex-Error"

typedef struct fn fn_t;
typedef struct call call_t;

/* One running (or just ended) function. */
struct fn
{
  struct nex_nats_functions *mod;
  nex_workload_t ident; /* id, name and namespace only: what events name */
  json_t *argv;         /* the executable's argv (the spec's, or its name) */
  int64_t timeout_ms;
  int64_t max_concurrency;
  int64_t warm;   /* processes the agent keeps started ahead for it (--function-warm, at most max_concurrency) */
  int persistent; /* function_mode "persistent": a call is a framed message to a program that stays running */
  natsSubscription *subs[NEX_FUNCTION_MAX_TRIGGERS];
  int n_subs;
  /* Under mod->lock. */
  int active;    /* subscribed: messages are taken */
  int subs_live; /* subscriptions nats.c may still call back on */
  int calls;     /* invocations holding this record (running or waiting) */
  int running;   /* invocations submitted and not completed */
  call_t *wait_head, *wait_tail;
  int waiting;
  fn_t *next; /* in mod->fns or mod->retired */
};

/* One trigger message on its way. */
struct call
{
  fn_t *fn;
  natsMsg *msg;             /* the trigger message (owned) */
  int64_t arrived_us;       /* monotonic microseconds when it was received */
  nex_exec_t *x;            /* the exec request, once submitted */
  nex_error_t submit_error; /* why it could not be submitted */
  json_t *data;             /* once answered: the event's data */
  char *why;                /* once answered: why it failed (NULL: it succeeded) */
  call_t *next;             /* in fn's waiting list or the module's job queue */
};

typedef enum job_kind
{
  JOB_SCAN,    /* subscribe every running function */
  JOB_START,   /* workload ID started: subscribe it if it is a function */
  JOB_END,     /* workload ID ended: unsubscribe it */
  JOB_DONE,    /* CALL completed */
  JOB_QUIESCE, /* the node is shutting down: unsubscribe everything, so that other nodes take the messages */
} job_kind_t;

typedef struct job
{
  job_kind_t kind;
  char id[NEX_ID_LEN + 1];
  call_t *call;
  struct job *next;
} job_t;

struct nex_nats_functions
{
  nex_nats_t *b;
  pthread_t thread;
  int thread_started;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  job_t *head, *tail; /* jobs for the thread; under lock */
  int stopping;       /* under lock: finish the queue, then end */
  fn_t *fns;          /* subscribed functions (the thread's) */
  fn_t *retired;      /* unsubscribed, waiting for their callbacks and calls to end (under lock) */
};

static int64_t
mono_us (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
push_job (struct nex_nats_functions *m, job_kind_t kind, const char *id, call_t *call)
{
  job_t *j = nex_xzalloc (sizeof *j);
  j->kind = kind;
  if (id)
    snprintf (j->id, sizeof j->id, "%s", id);
  j->call = call;
  pthread_mutex_lock (&m->lock);
  if (m->tail)
    m->tail->next = j;
  else
    m->head = j;
  m->tail = j;
  pthread_cond_signal (&m->cond);
  pthread_mutex_unlock (&m->lock);
}

/* --- replies -------------------------------------------------------------------------------------------------- */

/* Replies to C's message (when it has a reply subject) with N bytes at DATA, and header Nex-Error: ERROR when
 * ERROR is set.  A reply larger than the server takes becomes an error reply saying so. */
static void
reply (call_t *c, const char *error, const char *data, size_t n)
{
  natsConnection *nc = c->fn->mod->b->nc;
  const char *to = natsMsg_GetReply (c->msg);
  if (to == NULL || *to == '\0')
    return;
  char header[FN_HEADER_MAX];
  int64_t max = natsConnection_GetMaxPayload (nc);
  if (max > 0 && (int64_t)n > max - FN_HEADER_MAX - 64)
    {
      snprintf (header, sizeof header, "reply of %zu bytes is larger than the server's max_payload (%lld)", n,
                (long long)max);
      error = header;
      data = NULL;
      n = 0;
    }
  else if (error)
    {
      /* A header value is one line of text: the reason may quote the guest, so anything else is replaced. */
      snprintf (header, sizeof header, "%s", error);
      for (char *p = header; *p; p++)
        if ((unsigned char)*p < ' ' || (unsigned char)*p == 0x7f)
          *p = ' ';
      error = header;
    }
  natsMsg *m = NULL;
  natsStatus s = natsMsg_Create (&m, to, NULL, data, (int)n);
  if (s == NATS_OK && error)
    s = natsMsgHeader_Set (m, FN_ERROR_HEADER, error);
  if (s == NATS_OK)
    s = natsConnection_PublishMsg (nc, m);
  if (s != NATS_OK)
    nex_warn ("function %s: cannot reply on %s: %s", c->fn->ident.id, to, natsStatus_GetText (s));
  natsMsg_Destroy (m);
}

/* --- invocations ---------------------------------------------------------------------------------------------- */

static void call_answer (call_t *c);

/* The supervisor thread, as the run ends: the reply goes out at once (a publish only appends to nats.c's buffer),
 * so that it does not wait for one more thread to wake; the event, the counters and the next run are the
 * functions thread's. */
static void
on_exec_done (nex_exec_t *x, void *ctx)
{
  call_t *c = ctx;
  call_answer (c);
  push_job (c->fn->mod, JOB_DONE, NULL, c);
}

/* Queues C's exec to the supervisor; a refusal completes C at once (as a failed run). */
static void
call_submit (call_t *c)
{
  fn_t *fn = c->fn;
  const char *subject = natsMsg_GetSubject (c->msg);
  /* A persistent program gets the subject in each call's header: its environment is the same for every call. */
  cleanup_json json_t *env = fn->persistent ? NULL : json_pack ("{s:s}", "NEX_TRIGGER_SUBJECT", subject);
  nex_exec_spec_t spec = { .path = "/workload",
                           .argv = fn->argv,
                           .env = env,
                           .stdin_data = natsMsg_GetData (c->msg),
                           .stdin_len = (size_t)natsMsg_GetDataLength (c->msg),
                           .timeout_ms = fn->timeout_ms,
                           .warm = fn->persistent ? 0 : (int)fn->warm,
                           .persistent = fn->persistent,
                           .subject = subject };
  c->x = nex_exec_new (fn->ident.id, &spec);
  nex_exec_on_done (c->x, on_exec_done, c);
  if (nex_supervisor_exec_submit (fn->mod->b->node->sup, c->x, &c->submit_error) < 0)
    push_job (fn->mod, JOB_DONE, NULL, c);
}

static void
call_free (call_t *c)
{
  struct nex_nats_functions *m = c->fn->mod;
  pthread_mutex_lock (&m->lock);
  c->fn->calls--;
  pthread_mutex_unlock (&m->lock);
  natsMsg_Destroy (c->msg);
  nex_exec_unref (c->x);
  nex_error_free (&c->submit_error);
  json_decref (c->data);
  free (c->why);
  free (c);
}

/* Answers C (never run) with Nex-Error: WHY and frees it. */
static void
call_refuse (call_t *c, const char *why)
{
  reply (c, why, why, strlen (why));
  call_free (c);
}

/* Answers completed invocation C: its reply, and in C what its event will say (c->data, c->why).  Any thread: it
 * reads only C and what of FN is fixed. */
static void
call_answer (call_t *c)
{
  fn_t *fn = c->fn;
  double elapsed_ms = (double)(mono_us () - c->arrived_us) / 1000.0;
  nex_exec_result_t r = { 0 };
  cleanup_error nex_error_t err = NULL;
  int ok = c->submit_error == NULL && nex_exec_take (c->x, &r, &err) == 0;
  if (c->submit_error)
    err = NEX_STEAL_PTR (c->submit_error);
  const char *subject = natsMsg_GetSubject (c->msg);
  json_t *data
      = json_pack ("{s:s, s:f}", "subject", subject, "elapsed_ms", (double)(int64_t)(elapsed_ms * 1000) / 1000);
  cleanup_free char *why = NULL;
  if (!ok)
    why = nex_xasprintf ("%s", err->kind == NEX_ERR_SYSTEM ? "internal error (see the node's log)" : err->msg);
  else if (r.timed_out)
    why = nex_xasprintf ("timed out after %lld s", (long long)(fn->timeout_ms / 1000));
  else if (fn->persistent && !r.replied && r.signal)
    why = nex_xasprintf ("the function's process was killed by signal %d before it replied", r.signal);
  else if (fn->persistent && !r.replied)
    why = nex_xasprintf ("the function's process exited with code %d before it replied", r.code);
  else if (fn->persistent && r.code != 0)
    why = nex_xasprintf ("status %d", r.code);
  else if (r.signal)
    why = nex_xasprintf ("signal %d", r.signal);
  else if (r.has_code && r.code != 0)
    why = nex_xasprintf ("exit code %d", r.code);
  else if (!r.has_code)
    why = nex_xstrdup ("ended without an exit status");
  else if (r.out_lost > 0)
    /* A cut reply would pass for a whole one. */
    why = nex_xasprintf ("stdout was larger than %u bytes (%llu more were not kept)", NEX_EXEC_MAX_OUTPUT,
                         (unsigned long long)r.out_lost);
  if (ok && r.has_code)
    json_object_set_new (data, "exit_code", json_integer (r.code));
  if (ok && r.signal)
    json_object_set_new (data, "exit_signal", json_integer (r.signal));
  if (why == NULL)
    reply (c, NULL, r.out, r.out_len);
  else
    {
      if (!ok && err->kind == NEX_ERR_SYSTEM)
        nex_log_error (NEX_LOG_WARN, err, "function %s", fn->ident.id);
      /* The body says more than the header: what the function wrote on stderr, or the reason itself. */
      if (ok && r.err_len > 0)
        reply (c, why, r.err, r.err_len);
      else
        reply (c, why, why, strlen (why));
      json_object_set_new (data, "timed_out", json_boolean (ok && r.timed_out));
      json_object_set_new (data, "reason", json_string (why));
    }
  nex_exec_result_release (&r);
  c->data = data;
  c->why = NEX_STEAL_PTR (why);
}

/* The thread's half of a completed invocation: the event, the counters, the next waiting invocation (and the
 * reply of one that was never submitted). */
static void
call_done (call_t *c)
{
  fn_t *fn = c->fn;
  nex_node_t *node = fn->mod->b->node;
  if (c->data == NULL)
    call_answer (c);
  json_t *data = NEX_STEAL_PTR (c->data);
  double elapsed_ms = json_real_value (json_object_get (data, "elapsed_ms"));
  /* A failure is stored (GET /v1/events finds it); a success only announced and counted: a function answering
   * thousands of calls a second must not cost a registry write per call. */
  nex_metrics_function_run (c->why == NULL, (int64_t)elapsed_ms);
  if (c->why)
    nex_node_emit (node, "function_exec_failed", &fn->ident, data);
  else
    nex_node_announce (node, "function_exec_succeeded", &fn->ident, data);

  /* Its slot goes to the oldest waiting invocation, if any. */
  struct nex_nats_functions *m = fn->mod;
  pthread_mutex_lock (&m->lock);
  fn->running--;
  call_t *next = fn->wait_head;
  if (next)
    {
      fn->wait_head = next->next;
      if (fn->wait_head == NULL)
        fn->wait_tail = NULL;
      fn->waiting--;
      next->next = NULL;
      fn->running++;
    }
  pthread_mutex_unlock (&m->lock);
  call_free (c);
  if (next)
    call_submit (next);
}

/* nats.c's delivery thread of one of FN's subscriptions. */
static void
on_message (natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
  fn_t *fn = closure;
  struct nex_nats_functions *m = fn->mod;
  nex_nats_t *b = m->b;
  pthread_mutex_lock (&b->lock);
  int serving = b->serving;
  b->inflight += serving;
  pthread_mutex_unlock (&b->lock);
  if (!serving)
    {
      natsMsg_Destroy (msg); /* shutting down: nothing may reach the supervisor any more */
      return;
    }
  call_t *c = nex_xzalloc (sizeof *c);
  c->fn = fn;
  c->msg = msg;
  c->arrived_us = mono_us ();
  const char *refused = NULL;
  char why[128];
  int submit = 0;
  pthread_mutex_lock (&m->lock);
  fn->calls++;
  if (!fn->active)
    refused = "the function is stopping";
  else if (natsMsg_GetDataLength (msg) > (int)NEX_EXEC_MAX_STDIN)
    {
      snprintf (why, sizeof why, "payload of %d bytes is larger than %u bytes", natsMsg_GetDataLength (msg),
                NEX_EXEC_MAX_STDIN);
      refused = why;
    }
  else if (fn->running < fn->max_concurrency)
    {
      fn->running++;
      submit = 1;
    }
  else if (fn->waiting < fn->max_concurrency * FN_WAIT_PER_SLOT)
    {
      if (fn->wait_tail)
        fn->wait_tail->next = c;
      else
        fn->wait_head = c;
      fn->wait_tail = c;
      fn->waiting++;
    }
  else
    refused = "busy: too many invocations are running and waiting; try again later";
  pthread_mutex_unlock (&m->lock);
  if (refused)
    call_refuse (c, refused);
  else if (submit)
    call_submit (c);
  pthread_mutex_lock (&b->lock);
  if (--b->inflight == 0)
    pthread_cond_broadcast (&b->cond);
  pthread_mutex_unlock (&b->lock);
}

/* --- subscriptions -------------------------------------------------------------------------------------------- */

/* nats.c: one of FN's subscriptions is closed and its handler will not run again. */
static void
on_sub_complete (void *closure)
{
  fn_t *fn = closure;
  pthread_mutex_lock (&fn->mod->lock);
  fn->subs_live--;
  pthread_mutex_unlock (&fn->mod->lock);
}

static void
fn_free (fn_t *fn)
{
  for (int i = 0; i < fn->n_subs; i++)
    natsSubscription_Destroy (fn->subs[i]);
  json_decref (fn->argv);
  nex_workload_release (&fn->ident);
  free (fn);
}

static fn_t *
fn_find (struct nex_nats_functions *m, const char *id)
{
  for (fn_t *fn = m->fns; fn; fn = fn->next)
    if (strcmp (fn->ident.id, id) == 0)
      return fn;
  return NULL;
}

/* Subscribes running function W (unless it is already). */
static void
fn_add (struct nex_nats_functions *m, const nex_workload_t *w)
{
  if (w->type != NEX_WORKLOAD_FUNCTION || w->state != NEX_STATE_RUNNING || fn_find (m, w->id))
    return;
  fn_t *fn = nex_xzalloc (sizeof *fn);
  fn->mod = m;
  memcpy (fn->ident.id, w->id, sizeof fn->ident.id);
  fn->ident.name = nex_xstrdup (w->name);
  fn->ident.namespace_ = nex_xstrdup (w->namespace_);
  fn->argv = json_array_size (w->argv) > 0 ? json_deep_copy (w->argv) : json_pack ("[s]", w->name);
  fn->timeout_ms = (w->function_timeout_s > 0 ? w->function_timeout_s : NEX_FUNCTION_DEFAULT_TIMEOUT_S) * 1000;
  fn->max_concurrency = w->max_concurrency > 0 ? w->max_concurrency : NEX_FUNCTION_DEFAULT_CONCURRENCY;
  fn->warm
      = m->b->node->cfg->function_warm < fn->max_concurrency ? m->b->node->cfg->function_warm : fn->max_concurrency;
  fn->persistent = w->function_mode == NEX_FUNCTION_PERSISTENT;
  fn->active = 1;
  cleanup_free char *group = nex_xasprintf ("nex-fn.%s.%s", w->namespace_, w->name);
  size_t i;
  json_t *s;
  json_array_foreach (w->trigger_subjects, i, s)
  {
    if (fn->n_subs == NEX_FUNCTION_MAX_TRIGGERS)
      break;
    natsSubscription *sub = NULL;
    natsStatus st = natsConnection_QueueSubscribe (&sub, m->b->nc, json_string_value (s), group, on_message, fn);
    if (st == NATS_OK)
      {
        pthread_mutex_lock (&m->lock);
        fn->subs_live++;
        pthread_mutex_unlock (&m->lock);
        if (natsSubscription_SetOnCompleteCB (sub, on_sub_complete, fn) != NATS_OK)
          nex_warn ("function %s: no completion callback on %s", w->id, json_string_value (s));
        fn->subs[fn->n_subs++] = sub;
      }
    else
      nex_warn ("function %s: cannot subscribe to %s: %s", w->id, json_string_value (s), natsStatus_GetText (st));
  }
  fn->next = m->fns;
  m->fns = fn;
  nex_info ("function %s (%s/%s): subscribed to %d trigger subject(s) in queue group %s", w->id, w->namespace_, w->name,
            fn->n_subs, group);
}

/* Takes FN out of service (it is kept, retired, until its running invocations have completed): the invocations
 * waiting for a slot are refused with WHY. */
static void
fn_retire (struct nex_nats_functions *m, fn_t *fn, const char *why)
{
  pthread_mutex_lock (&m->lock);
  fn->active = 0;
  call_t *waiting = fn->wait_head;
  fn->wait_head = fn->wait_tail = NULL;
  fn->waiting = 0;
  fn->next = m->retired;
  m->retired = fn;
  pthread_mutex_unlock (&m->lock);
  while (waiting)
    {
      call_t *c = waiting;
      waiting = c->next;
      call_refuse (c, why);
    }
}

/* Unsubscribes function ID; invocations waiting for a slot are refused, running ones finish. */
static void
fn_remove (struct nex_nats_functions *m, const char *id)
{
  fn_t **p = &m->fns;
  while (*p && strcmp ((*p)->ident.id, id) != 0)
    p = &(*p)->next;
  fn_t *fn = *p;
  if (fn == NULL)
    return;
  *p = fn->next;
  for (int i = 0; i < fn->n_subs; i++)
    natsSubscription_Unsubscribe (fn->subs[i]);
  fn_retire (m, fn, "the function stopped");
  nex_info ("function %s: unsubscribed", id);
}

/* Frees retired functions that nothing can reach any more. */
static void
sweep (struct nex_nats_functions *m)
{
  pthread_mutex_lock (&m->lock);
  fn_t *gone = NULL;
  for (fn_t **p = &m->retired; *p;)
    {
      fn_t *fn = *p;
      if (fn->subs_live <= 0 && fn->calls == 0)
        {
          *p = fn->next;
          fn->next = gone;
          gone = fn;
        }
      else
        p = &fn->next;
    }
  pthread_mutex_unlock (&m->lock);
  while (gone)
    {
      fn_t *fn = gone;
      gone = fn->next;
      fn_free (fn);
    }
}

static void
scan (struct nex_nats_functions *m)
{
  nex_state_t running = NEX_STATE_RUNNING;
  nex_workload_filter_t f = { .state = &running };
  nex_workload_t *list = NULL;
  size_t n = 0;
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_workload_list (m->b->node->reg, &f, &list, &n, &err) < 0)
    {
      nex_log_error (NEX_LOG_WARN, err, "functions: cannot list the running workloads");
      return;
    }
  for (size_t i = 0; i < n; i++)
    {
      fn_add (m, &list[i]);
      nex_workload_release (&list[i]);
    }
  free (list);
}

static void
start_one (struct nex_nats_functions *m, const char *id)
{
  nex_workload_t w = { 0 };
  if (nex_registry_workload_get (m->b->node->reg, id, &w, NULL) == 0)
    fn_add (m, &w);
  nex_workload_release (&w);
}

static void *
functions_main (void *arg)
{
  struct nex_nats_functions *m = arg;
  for (;;)
    {
      pthread_mutex_lock (&m->lock);
      while (m->head == NULL && !m->stopping)
        pthread_cond_wait (&m->cond, &m->lock);
      job_t *j = m->head;
      if (j)
        {
          m->head = j->next;
          if (m->head == NULL)
            m->tail = NULL;
        }
      pthread_mutex_unlock (&m->lock);
      if (j == NULL)
        break; /* stopping, and nothing left to do */
      switch (j->kind)
        {
        case JOB_SCAN:
          scan (m);
          break;
        case JOB_START:
          start_one (m, j->id);
          break;
        case JOB_END:
          fn_remove (m, j->id);
          break;
        case JOB_DONE:
          call_done (j->call);
          break;
        case JOB_QUIESCE:
          for (fn_t *fn = m->fns; fn; fn = fn->next)
            for (int i = 0; i < fn->n_subs; i++)
              natsSubscription_Unsubscribe (fn->subs[i]);
          break;
        }
      free (j);
      sweep (m);
    }
  return NULL;
}

/* --- public (nats/internal.h) --------------------------------------------------------------------------------- */

int
nex_nats_functions_start (nex_nats_t *b, nex_error_t *err)
{
  struct nex_nats_functions *m = nex_xzalloc (sizeof *m);
  m->b = b;
  pthread_mutex_init (&m->lock, NULL);
  pthread_cond_init (&m->cond, NULL);
  push_job (m, JOB_SCAN, NULL, NULL);
  int r = pthread_create (&m->thread, NULL, functions_main, m);
  if (r != 0)
    {
      free (m->head);
      pthread_mutex_destroy (&m->lock);
      pthread_cond_destroy (&m->cond);
      free (m);
      return nex_error_sys (err, r, "start the NATS functions thread");
    }
  m->thread_started = 1;
  __atomic_store_n (&b->fns, m, __ATOMIC_RELEASE);
  return 0;
}

void
nex_nats_functions_notice (nex_nats_t *b, const json_t *event)
{
  struct nex_nats_functions *m = __atomic_load_n (&b->fns, __ATOMIC_ACQUIRE);
  const char *type = json_string_value (json_object_get (event, "type"));
  const char *id = json_string_value (json_object_get (json_object_get (event, "data"), "workload_id"));
  if (m == NULL || type == NULL || id == NULL || strncmp (type, "workload_", 9) != 0)
    return;
  if (strcmp (type, "workload_started") == 0)
    push_job (m, JOB_START, id, NULL);
  else if (strcmp (type, "workload_exited") == 0 || strcmp (type, "workload_failed") == 0
           || strcmp (type, "workload_stopped") == 0)
    push_job (m, JOB_END, id, NULL);
}

void
nex_nats_functions_quiesce (nex_nats_t *b)
{
  struct nex_nats_functions *m = __atomic_load_n (&b->fns, __ATOMIC_ACQUIRE);
  if (m != NULL)
    push_job (m, JOB_QUIESCE, NULL, NULL); /* the subscriptions are the thread's */
}

void
nex_nats_functions_stop (nex_nats_t *b)
{
  struct nex_nats_functions *m = __atomic_load_n (&b->fns, __ATOMIC_ACQUIRE);
  if (m == NULL || !m->thread_started)
    return;
  /* The supervisor has stopped: every submitted invocation has completed and its JOB_DONE is queued.  The
   * thread answers them, then ends; invocations still waiting for a slot are refused. */
  pthread_mutex_lock (&m->lock);
  m->stopping = 1;
  pthread_cond_signal (&m->cond);
  pthread_mutex_unlock (&m->lock);
  pthread_join (m->thread, NULL);
  m->thread_started = 0;
  while (m->fns)
    {
      fn_t *fn = m->fns;
      pthread_mutex_lock (&m->lock);
      m->fns = fn->next;
      pthread_mutex_unlock (&m->lock);
      fn_retire (m, fn, "the node is shutting down");
    }
  /* Our references to the subscriptions go while the connection (which they hold) is still there; nats.c's
   * delivery threads keep their own until they end, and the records themselves stay until
   * nex_nats_functions_free, when no handler can run any more. */
  for (fn_t *fn = m->retired; fn; fn = fn->next)
    {
      for (int i = 0; i < fn->n_subs; i++)
        natsSubscription_Destroy (fn->subs[i]);
      fn->n_subs = 0;
    }
}

void
nex_nats_functions_free (nex_nats_t *b)
{
  struct nex_nats_functions *m = b->fns;
  if (m == NULL)
    return;
  /* After nats_CloseAndWait: no subscription can call back any more. */
  while (m->retired)
    {
      fn_t *fn = m->retired;
      m->retired = fn->next;
      fn_free (fn);
    }
  while (m->head)
    {
      job_t *j = m->head;
      m->head = j->next;
      free (j);
    }
  pthread_mutex_destroy (&m->lock);
  pthread_cond_destroy (&m->cond);
  free (m);
  b->fns = NULL;
}
