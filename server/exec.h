/* SPDX-License-Identifier: Apache-2.0 */
/* exec.h — one non-interactive exec request (POST /v1/workloads/{id}/exec) on its way between the API thread that
 * received it and the supervisor that runs it through the agent.
 *
 * The API thread creates the request (nex_exec_new), hands a reference to the supervisor
 * (nex_supervisor_exec) and waits for it (nex_exec_wait).  The supervisor sends EXEC on a channel of the
 * workload's agent connection (wire.h), feeds stdin, gathers the output frames into the request
 * (nex_exec_output, bounded) and completes it with the EXIT (nex_exec_finish) or an error (nex_exec_fail).
 * Either side may give up first — the waiter on its timeout, the supervisor when the workload ends — so the
 * request is reference-counted and every completion after the first is ignored.
 *
 * Interactive requests (the websocket form, GET /v1/workloads/{id}/exec, usually with a TTY) use the same channel
 * machinery, but nothing is gathered: the API thread waits only until the process started
 * (nex_exec_wait_started), then the websocket thread takes the output as it comes (nex_exec_read, woken through
 * the request's notify_fd, an eventfd) and feeds stdin, window sizes and signals through the supervisor
 * (nex_supervisor_exec_input) until the EXIT completes the request.
 *
 * A caller that must not wait (a function invocation, nats/functions.c) sets a completion callback
 * (nex_exec_on_done) and queues the request with nex_supervisor_exec_submit instead: the callback runs once, on
 * the thread that completes the request (usually the supervisor's), and must only hand it on. */
#ifndef NEX_EXEC_H
#define NEX_EXEC_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/error.h"
#include "server/workload.h"

#define NEX_EXEC_MAX_OUTPUT (1u << 20)  /* stdout and stderr kept per request; the rest is counted, not kept */
#define NEX_EXEC_MAX_STDIN (256u << 10) /* stdin a request may carry */
#define NEX_EXEC_MAX_TIMEOUT_S 3600
#define NEX_EXEC_DEFAULT_TIMEOUT_S 30
#define NEX_EXEC_STREAM_BUFFER                                                                                         \
  (1u << 20) /* interactive output waiting for its reader; the rest is counted, dropped                                \
              */
#define NEX_EXEC_INPUT_INFLIGHT (256u << 10) /* interactive input queued to the supervisor before the reader waits */

/* What a client asked to run. */
typedef struct nex_exec_spec
{
  const char *path; /* the program's path inside the sandbox; NULL: argv[0] */
  json_t *argv;     /* non-empty array of strings, as the program sees them (argv[0]: its name, by default its path) */
  json_t *env;      /* object of strings, added to (and overriding) the workload's environment; may be NULL */
  const char *stdin_data;
  size_t stdin_len;
  int64_t timeout_ms; /* the agent kills the process after this long (interactive: 0, none) */
  int interactive;    /* streamed (see above) rather than gathered; stdin_data is then unused */
  int tty;            /* interactive only: on a pseudo-terminal of ROWS x COLS inside the sandbox */
  int rows, cols;
  int warm;       /* not interactive: how many processes of this same request the agent keeps started ahead, so that
                     the next one need not wait for a fork and execve (a function's runs); 0: none */
  int persistent; /* not interactive: a call to a persistent function process (function_mode "persistent",
                     agent/function.c): the agent hands stdin, framed, to a program that stays running */
  const char *subject; /* persistent: the call's subject, in its header */
} nex_exec_spec_t;

/* How it went. */
typedef struct nex_exec_result
{
  char *out, *err; /* what it wrote (NUL-terminated copies, possibly holding other NULs) */
  size_t out_len, err_len;
  uint64_t out_lost, err_lost; /* bytes beyond NEX_EXEC_MAX_OUTPUT or dropped by the agent */
  int has_code;
  int code;      /* exit code, when has_code */
  int signal;    /* signal that ended it, 0 if none */
  int timed_out; /* it was killed at the timeout */
  int replied;   /* persistent: the program answered (code is its status); else it ended before it did */
  int64_t pid;   /* its pid inside the sandbox */
} nex_exec_result_t;

typedef struct nex_exec nex_exec_t;

/* Called once when X completes (finished or failed), with the CTX given to nex_exec_on_done. */
typedef void (*nex_exec_done_fn) (nex_exec_t *x, void *ctx);

struct nex_exec
{
  /* Set at creation, read-only afterwards. */
  char id[NEX_ID_LEN + 1]; /* the workload */
  char *path;              /* the program inside the sandbox */
  json_t *argv, *env;
  char *stdin_data;
  size_t stdin_len;
  int64_t timeout_ms;
  int interactive, tty, rows, cols;
  int warm;       /* nex_exec_spec_t.warm */
  int persistent; /* nex_exec_spec_t.persistent */
  char *subject;  /* nex_exec_spec_t.subject (owned), or NULL */
  int notify_fd;  /* interactive: an eventfd written whenever output, the start or the end arrives; else -1 */
  /* The supervisor thread's. */
  uint16_t channel; /* its channel on the agent connection, 0 before it was sent */
  int64_t deadline; /* monotonic ms after which the supervisor gives up on the agent */
  nex_exec_t *next; /* in the entry's list of sessions */
  /* Under lock. */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int refs;
  int done;
  nex_exec_result_t result;
  nex_error_t error; /* set when it failed */
  int started;       /* STARTED arrived */
  uint8_t *stream;   /* interactive: output not yet read (at most NEX_EXEC_STREAM_BUFFER bytes) */
  size_t stream_len;
  size_t input_inflight;    /* interactive: input bytes queued to the supervisor, not yet sent to the agent */
  nex_exec_done_fn on_done; /* set before the request is submitted, read-only afterwards */
  void *done_ctx;
};

/* A new request for workload ID (one reference, the caller's).  Copies what SPEC holds. */
nex_exec_t *nex_exec_new (const char *id, const nex_exec_spec_t *spec);

/* Sets X's completion callback (see above).  Call before handing X to the supervisor. */
void nex_exec_on_done (nex_exec_t *x, nex_exec_done_fn fn, void *ctx);

/* Whether X has completed; when it has, moves its result into *OUT (0) or its error into *ERR (-1).  For a
 * completion callback's receiver; any thread. */
int nex_exec_take (nex_exec_t *x, nex_exec_result_t *out, nex_error_t *err);

/* Adds / drops a reference; the last drop frees the request.  Any thread. */
nex_exec_t *nex_exec_ref (nex_exec_t *x);
void nex_exec_unref (nex_exec_t *x);

/* Supervisor side: output of STREAM (1 stdout, 2 stderr), the pid it started as, the EXIT payload, or a failure
 * (ERR is stolen).  finish and fail complete the request and wake the waiter; later calls are ignored. */
void nex_exec_output (nex_exec_t *x, int stream, const uint8_t *data, size_t n);
void nex_exec_started (nex_exec_t *x, int64_t pid);
void nex_exec_finish (nex_exec_t *x, const json_t *exit);
void nex_exec_fail (nex_exec_t *x, nex_error_t *err);

/* Interactive, API side: waits up to WAIT_MS for the process to start.  0 once it runs; -1 with the request's
 * error when it could not be run (as nex_exec_wait), or NEX_ERR_UNAVAILABLE when nothing came in time. */
int nex_exec_wait_started (nex_exec_t *x, int64_t wait_ms, nex_error_t *err);

/* Interactive, reader side: moves up to MAX bytes of output into BUF and returns how many; *ENDED is set when the
 * request is complete and every byte of its output was read (then nex_exec_wait with 0 gives its end).  Any
 * thread, but one reader. */
size_t nex_exec_read (nex_exec_t *x, uint8_t *buf, size_t max, int *ended);

/* Interactive: input accounting between the reader that queues it and the supervisor that sends it. */
void nex_exec_input_add (nex_exec_t *x, size_t n);
void nex_exec_input_done (nex_exec_t *x, size_t n); /* also wakes the reader (notify_fd) */
size_t nex_exec_input_inflight (nex_exec_t *x);

/* API side: waits up to WAIT_MS for completion; moves the result into *OUT (release with nex_exec_result_release)
 * or returns -1 with the request's error (NEX_ERR_UNAVAILABLE when nothing came in time). */
int nex_exec_wait (nex_exec_t *x, int64_t wait_ms, nex_exec_result_t *out, nex_error_t *err);

void nex_exec_result_release (nex_exec_result_t *r);

#endif
