/* SPDX-License-Identifier: Apache-2.0 */
/* agent.h — what the files of nex-agent share: the agent's state, the record of a process it runs, and each
 * file's entry points.  Internal to agent/: nothing outside includes it.
 *
 * nex-agent is the small static program that runs as PID 1 inside every sandbox and VM: the guest end of the wire
 * protocol (common/wire.h).  It waits for the host (nexd) to reach it, greets every new connection with HELLO,
 * starts the one workload it is asked to START, runs exec sessions beside it (at once: a child's start is watched in
 * the loop, never waited for), streams their stdout and stderr
 * back as frames, reaps every process that ends inside the sandbox (as init must), reports each end with EXIT
 * and leaves once a host has acknowledged the workload's.  Its shape follows bubblewrap's do_init: one process,
 * no threads, one poll() loop.  The files, by purpose:
 *
 *   main.c     start-up (options, signals, the transport) and the poll loop
 *   queue.c    the frames waiting to be written to the host, bounded
 *   conn.c     the host connection: opening the transport, accept, read, flush, greeting, hanging up
 *   request.c  what each frame from the host asks for (START, STOP, EXEC, STDIN, SIGNAL, RESIZE, ACK, HELLO)
 *   process.c  the processes the agent runs: the workload and exec sessions, one kind of record
 *   spawn.c    turning a request into a hardened child: spec parsing, fork, pty, capabilities, seccomp
 *   function.c persistent function processes: one program answering a function's calls one after another
 *   vm.c       the agent as a VM's /init (vm.h)
 *
 * Nothing the workload or the host does may stall the loop: descriptors are non-blocking, output waiting for a
 * slow or absent host is bounded (the excess dropped and counted, never left in the pipe where it would block
 * the workload), and every byte from the host is parsed as hostile input. */
#ifndef NEX_AGENT_H
#define NEX_AGENT_H

#include <linux/filter.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/error.h"
#include "common/wire.h"

#define AGENT_CHUNK (64 * 1024)               /* largest STDOUT/STDERR payload, and largest single read */
#define AGENT_DRAIN_MS 2000                   /* how long the pipes are read after a process ended */
#define AGENT_STOP_GRACE_MS 10000             /* STOP's default grace before SIGKILL */
#define AGENT_MAX_GRACE_MS 86400000           /* a day: keeps deadline arithmetic far from overflow */
#define AGENT_MAX_EXECS 16                    /* exec sessions at once */
#define AGENT_MAX_PROCS (1 + AGENT_MAX_EXECS) /* the workload and the exec sessions */
#define AGENT_MAX_WARM 16                     /* processes started ahead for EXECs that ask (`warm`) */
#define AGENT_WARM_IDLE_MS 3                  /* quiet the loop waits for before it starts more of them */
#define AGENT_FN_MAX_PAYLOAD (4u << 20)       /* a persistent function call's payload */
#define AGENT_FN_MAX_SUBJECT 256              /* its subject, as EXEC gives it */

/* One line "nex-agent: ..." on the agent's stderr (the sandbox's agent.log, or a VM's console).  Defined in
 * main.c; every file of the agent, vm.c too, logs through it. */
void nex_agent_log (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* Monotonic milliseconds, the clock of every deadline. */
int64_t nex_agent_now_ms (void);

/* --- the agent's state ----------------------------------------------------------------------------------------- */

/* One frame waiting to be written to the host. */
typedef struct nex_agent_frame
{
  struct nex_agent_frame *next;
  uint8_t *data;    /* header + payload */
  size_t len;       /* bytes in data */
  size_t off;       /* bytes of data already written to the current connection */
  size_t output;    /* payload bytes counted against the output limit (0 for control frames) */
  bool per_conn;    /* a reply meant for the current connection only (HELLO, refusals): dropped when it closes */
  uint16_t channel; /* frames of exec sessions (channel != 0) are dropped with the connection too */
  int stream;       /* the workload's output (channel 0): 0 stdout, 1 stderr; -1 any other frame */
  uint64_t start;   /* of the workload's output: the offset of its first byte in its stream (wire.h) */
} nex_agent_frame_t;

/* The workload's life cycle: idle -> running (START forked it) -> draining (its main process ended; the pipes
 * are read to EOF for at most AGENT_DRAIN_MS) -> exited (EXIT queued; the status is kept, and reported in every
 * HELLO, until some host sends ACK, whereupon the agent exits 0).  A START after an EXIT is a restart. */
typedef enum nex_agent_state
{
  AGENT_IDLE,     /* no START yet */
  AGENT_RUNNING,  /* the workload's main process is alive */
  AGENT_DRAINING, /* it ended; reading what is left in the pipes */
  AGENT_EXITED,   /* EXIT queued; waiting for an ACK */
} nex_agent_state_t;

/* How the host reaches the agent.  A listening transport accepts a connection whenever the host dials, each
 * replacing the last; a stream transport is one pre-connected byte stream for the agent's whole life (a serial
 * or virtio console), greeted once at start and on a host's HELLO.  A new transport (vsock, say) is one more
 * kind here and one more case in nex_agent_conn_open. */
typedef enum nex_agent_transport
{
  AGENT_TRANSPORT_LISTEN,
  AGENT_TRANSPORT_STREAM,
} nex_agent_transport_t;

/* One process the agent runs for the host: the workload on channel 0, or an exec session on a channel of its
 * own (common/wire.h), with the agent's ends of its stdio.  From its fork until its child has become the program
 * (or said why not) the record is starting: status_fd is open and watched by the loop, and STARTED (or the
 * refusal) follows when it reports; nothing waits for it, so that execs start at once, side by side.  Both are the same
 * kind of record and go through the same code: output read, stdin written, deadlines kept, the end reaped, drained and
 * reported with EXIT.  What the protocol says of the workload alone (the agent's state, STOP, the EXIT kept until ACK)
 * is in process.c's workload functions. */
typedef struct nex_agent_proc
{
  bool live;          /* started and its EXIT not yet queued (a free exec slot, or an idle or exited workload,
                         is not) */
  uint16_t channel;   /* 0: the workload */
  pid_t pid;          /* the process (and its process group); the workload's stays set after its EXIT */
  int out_fd, err_fd; /* read ends of its stdout/stderr (TTY: out_fd reads the terminal, err_fd is -1), -1 once
                         closed */
  int in_fd;          /* write end of its stdin, -1 once closed (the workload has none) */
  int tty_fd;         /* TTY sessions: the pseudo-terminal's master (out_fd and in_fd are duplicates), else -1 */
  int status_fd;      /* while starting: the read end of the child's close-on-exec status pipe (EOF: it became
                         the program; a nex_agent_child_failure_t: it gave up), else -1 */
  char *path, *cwd;   /* what it was asked to run, and where (owned): its log lines and a failure's text */
  char *warm_key;     /* a process started ahead (a->warm), or a persistent function process: the request it was
                         started for, canonical (owned); NULL: a free warm slot, or any other record */
  uint64_t warm_seq;  /* a warm process: the order it was started in (the oldest is taken first: the likeliest to
                         have finished its execve) */
  uint8_t *in_buf;    /* stdin bytes the process has not taken yet */
  size_t in_len;
  bool in_eof;            /* the host closed stdin: close in_fd once in_buf is written */
  bool exec_failed;       /* it never became the program: setup or execve failed (reported in the workload's EXIT) */
  bool ended;             /* the process was reaped; draining its pipes */
  int status;             /* its wait status, once ended */
  bool timed_out;         /* killed because its deadline passed (reported in an exec session's EXIT) */
  int64_t deadline;       /* monotonic ms at which it gets SIGKILL (the workload: STOP's grace; a session: its
                             timeout_ms), 0: none */
  int64_t drain_deadline; /* monotonic ms at which draining gives up */
  uint64_t dropped_bytes; /* its output discarded for lack of room */
  /* A persistent function process (function.c): kept between calls, its stdout read as replies. */
  bool persistent;
  bool idle;         /* between calls: live, polled and reaped, but no session's (nex_agent_proc_find skips it) */
  char *subject;     /* the call's subject (owned), for its header */
  uint8_t *call_buf; /* the call's payload gathered until the host's EOF (in_buf is what goes to the pipe) */
  size_t call_len;
  bool call_sent;      /* the call's header and payload are in in_buf (and partly written) */
  char reply_head[32]; /* the reply's header line read so far (NUL-terminated once parsed) */
  size_t reply_head_len;
  bool in_body;      /* the header is read; reply_left bytes of body are to come */
  int reply_status;  /* the header's status */
  size_t reply_left; /* body bytes still to come */
} nex_agent_proc_t;

typedef struct nex_agent
{
  nex_agent_transport_t transport;
  int listen_fd;            /* listening socket (AGENT_TRANSPORT_LISTEN), else -1 */
  int conn_fd;              /* current host connection or stream, -1 when none */
  nex_wire_reader_t reader; /* decoder for conn_fd */

  nex_agent_frame_t *head, *tail;           /* outgoing frames, oldest first */
  size_t queued_output;                     /* sum of ->output over the queue */
  size_t queued_replies;                    /* bytes of per_conn frames in the queue */
  nex_agent_frame_t *kept_head, *kept_tail; /* the workload's output written but not yet STORED, oldest first */
  size_t kept_output;                       /* sum of ->output over them */
  uint64_t out_queued[2];                   /* per stream: the offset after the last byte queued */
  bool host_stores;                         /* a host said STORED: written output is kept until it is covered */

  json_t *exit_info; /* the workload's EXIT payload, kept until a host acknowledges it */
  int sig_fd;        /* signalfd for SIGCHLD, SIGTERM, SIGINT */
  bool is_init;      /* running as PID 1 of its PID namespace */
  int64_t lease_end; /* monotonic ms at which the workload's lease ends unless renewed (LEASE); 0: no lease */

  nex_agent_proc_t procs[AGENT_MAX_PROCS]; /* [0]: the workload; then the exec session slots (free: not live) */
  nex_agent_proc_t warm[AGENT_MAX_WARM];   /* processes started ahead, not yet a session's (free: no warm_key) */
  json_t *warm_req;                        /* the last EXEC that asked for warm processes (its KEY's request) */
  char *warm_want_key;                     /* its key (owned) */
  int warm_want_n;                         /* how many it asked to keep */
  int warm_budget;                         /* how many the loop may still start for it */
  uint64_t warm_started;                   /* warm processes started so far (their warm_seq) */
} nex_agent_t;

/* --- queue.c: frames waiting for the host ---------------------------------------------------------------------- */

/* Queues a JSON control frame of TYPE on CHANNEL; OBJ is consumed.  PER_CONN marks a reply for the current
 * connection only; FIRST puts it ahead of everything not yet begun (a greeting).  Control frames are never
 * dropped for lack of room: there are only a handful per process, and per-connection replies are bounded by
 * the connection (conn.c). */
void nex_agent_queue_json (nex_agent_t *a, nex_wire_type_t type, uint16_t channel, json_t *obj, bool per_conn,
                           bool first);

/* Queues ERROR {message, phase?, errno?} on CHANNEL: PHASE NULL and ERRNUM 0 leave those fields out. */
void nex_agent_queue_verror (nex_agent_t *a, uint16_t channel, bool per_conn, const char *phase, int errnum,
                             const char *fmt, va_list ap) __attribute__ ((format (printf, 6, 0)));

/* Queues ERROR {message, phase?} on the control channel (0). */
void nex_agent_queue_error (nex_agent_t *a, bool per_conn, const char *phase, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

/* Queues N bytes of a process's output as a frame of TYPE on CHANNEL (N is at most AGENT_CHUNK).  Beyond the
 * output limit the bytes are added to *DROPPED instead: a host that reads slowly, or is not there, must cost
 * bounded memory and must never make a process block on a full pipe. */
void nex_agent_queue_output (nex_agent_t *a, nex_wire_type_t type, uint16_t channel, const uint8_t *data, size_t n,
                             uint64_t *dropped);

/* Frees the oldest frame, once it is written (the workload's output is kept instead, once a host said STORED). */
void nex_agent_queue_pop (nex_agent_t *a);

/* The host stored the workload's output up to offset STORED[s] of each stream: frees what was kept of it. */
void nex_agent_queue_stored (nex_agent_t *a, const uint64_t stored[2]);

/* Puts the kept output back in line, after a partly written first frame, for the next host (wire.h), and sets
 * NEXT[s] to the offset of the first byte of each stream the queue holds (the offset after the last one queued
 * when it holds none). */
void nex_agent_queue_resend (nex_agent_t *a, uint64_t next[2]);

/* Forgets the frames meant for a connection that is gone: its replies and exec sessions' frames. */
void nex_agent_queue_drop_replies (nex_agent_t *a);

/* --- conn.c: the host connection ------------------------------------------------------------------------------- */

/* Prepares the transport KIND on descriptor FD, or (a stream) on PATH when it is not NULL, and greets a stream.
 * Exits with a diagnostic when it is unusable.  Called once, at start. */
void nex_agent_conn_open (nex_agent_t *a, nex_agent_transport_t kind, int fd, const char *path);

/* Accepts a connection on the listening socket; the newest connection replaces the current one. */
void nex_agent_conn_accept (nex_agent_t *a);

/* Reads what the host sent and handles every complete frame (request.c). */
void nex_agent_conn_read (nex_agent_t *a);

/* Writes queued frames until the connection would block.  Never blocks. */
void nex_agent_conn_flush (nex_agent_t *a);

/* Closes the current connection (WHY, when not NULL, is logged) and ends the exec sessions it started.  Queued
 * state frames and output stay for the next host.  On a stream with nothing left to report, the agent leaves. */
void nex_agent_conn_close (nex_agent_t *a, const char *why);

/* Queues HELLO first in line.  NONCE, when the host's own HELLO carried a short string there, is echoed (NULL:
 * none). */
void nex_agent_conn_hello (nex_agent_t *a, json_t *nonce);

/* Leaves with CODE, handing the host whatever the connection takes without waiting. */
void nex_agent_exit (nex_agent_t *a, int code) __attribute__ ((noreturn));

/* --- request.c: what the host asks ----------------------------------------------------------------------------- */

/* Handles one frame from the host.  Requests it refuses are answered with ERROR; -1 with ERR only when the frame
 * is malformed, and the connection is then rejected. */
int nex_agent_request_handle (nex_agent_t *a, const nex_wire_frame_t *f, nex_error_t *err);

/* --- process.c: the workload and exec sessions ----------------------------------------------------------------- */

/* The workload's record, procs[0]. */
static inline nex_agent_proc_t *
nex_agent_workload (nex_agent_t *a)
{
  return &a->procs[0];
}

/* Where the workload is in its life cycle, read off its record and the kept EXIT. */
nex_agent_state_t nex_agent_workload_state (const nex_agent_t *a);

/* STOP: signals the running workload's process group with SIG and kills what is left after GRACE_MS (the
 * earliest such deadline wins).  Nothing to do unless it is running. */
void nex_agent_workload_stop (nex_agent_t *a, int sig, int64_t grace_ms);

/* LEASE: the workload may run TTL_MS from now (common/wire.h, "Leases"). */
void nex_agent_workload_lease (nex_agent_t *a, int64_t ttl_ms);

/* When the lease ended by NOW without a renewal: says so to a connected host (ERROR, phase "lease"), kills every
 * process of the workload and exits with status 3.  Nothing to do without a lease or before its end. */
void nex_agent_workload_lease_check (nex_agent_t *a, int64_t now);

/* Forgets the workload's last run before a restart (its record and its kept EXIT). */
void nex_agent_workload_reset (nex_agent_t *a);

/* Acts on what P's child reported while starting (nothing yet: nothing to do): STARTED, or for a child that gave
 * up, an exec session's refusal (ERROR on its channel; the slot is freed) or the workload's ERROR {phase: "exec"}
 * (its EXIT, code 127 and exec_failed, follows once it is reaped).  Never blocks. */
void nex_agent_proc_check_start (nex_agent_t *a, nex_agent_proc_t *p);

/* An empty record: not live, every descriptor -1. */
void nex_agent_proc_reset (nex_agent_proc_t *p);

/* Closes P's descriptors, frees its stdin buffer and empties the record. */
void nex_agent_proc_release (nex_agent_proc_t *p);

/* The live record on CHANNEL (0: the workload), or NULL. */
nex_agent_proc_t *nex_agent_proc_find (nex_agent_t *a, uint16_t channel);

/* A free exec session slot, or NULL when AGENT_MAX_EXECS are running. */
nex_agent_proc_t *nex_agent_proc_free_slot (nex_agent_t *a);

/* One log line about P, prefixed with its session ("exec session 5: ") unless it is the workload. */
void nex_agent_proc_log (const nex_agent_proc_t *p, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

/* Reads one chunk of P's output from *FD (its out_fd or err_fd) and queues it as TYPE.  Never blocks; EOF or an
 * error closes *FD, and P's EXIT follows once it has ended and both pipes are closed. */
void nex_agent_proc_read (nex_agent_t *a, nex_agent_proc_t *p, int *fd, nex_wire_type_t type);

/* Buffers N bytes of stdin for P (N 0: the host's EOF) and writes what the pipe takes.  Past a bound the stdin
 * is closed instead: a process that does not read it must not make PID 1 buffer without bound. */
void nex_agent_proc_feed_stdin (nex_agent_proc_t *p, const uint8_t *data, size_t n);

/* Writes buffered stdin to P until its pipe is full; closes the pipe after the host's EOF. */
void nex_agent_proc_write_stdin (nex_agent_proc_t *p);

/* SIGNAL for P: on a terminal, to the foreground process group, as a key would send it; SIGKILL also to P's own
 * process group (how the host ends a session whose client is gone). */
void nex_agent_proc_signal (nex_agent_proc_t *p, int sig);

/* Kills every exec session (their host is gone) and frees their slots; the reaper collects the processes. */
void nex_agent_proc_abandon_execs (nex_agent_t *a);

/* Reaps every process that ended (as init, every orphan in the namespace is the agent's child) and starts
 * draining the records whose process it was. */
void nex_agent_proc_reap (nex_agent_t *a);

/* Acts on the deadlines that passed by NOW: a process past its deadline is killed, a drain past its own ends
 * with EXIT. */
void nex_agent_proc_deadlines (nex_agent_t *a, int64_t now);

/* The earliest deadline of any record, or the lease's end (monotonic ms), 0 when there is none. */
int64_t nex_agent_proc_next_deadline (const nex_agent_t *a);

/* --- spawn.c: hardened children -------------------------------------------------------------------------------- */

/* What a START or EXEC asks for, validated. */
typedef struct nex_agent_spec
{
  const char *path;           /* program to execute (points into the request) */
  const char *cwd;            /* working directory (points into the request, or "/") */
  char **argv;                /* NULL-terminated; the strings point into the request */
  char **envp;                /* NULL-terminated "NAME=value" strings, owned */
  uint64_t keep_caps;         /* capabilities the process keeps (bit N: capability N); all others are dropped */
  struct sock_filter *filter; /* seccomp program installed right before execve, owned; NULL: none */
  unsigned short filter_len;
  bool tty; /* EXEC only: run on a new pseudo-terminal of ROWS x COLS */
  unsigned short rows, cols;
  bool park;    /* START only: the child parks (waits for a signal) instead of executing path */
  bool has_ids; /* uid, gid and groups given: the child becomes that user (an image's User) */
  uid_t uid;
  gid_t gid;
  gid_t *groups; /* supplementary groups, owned */
  size_t n_groups;
} nex_agent_spec_t;

/* Why a child could not become its program, as it reports through its status pipe. */
typedef struct nex_agent_child_failure
{
  int stage;  /* what failed (spawn.c's stages) */
  int errnum; /* errno of the failed call */
} nex_agent_child_failure_t;

/* Fills *S from REQ (path, cwd, argv, env, capabilities, seccomp, uid/gid/groups; START's and EXEC's common
 * fields).  A path without `/` is looked up in the env's PATH by the child, inside the root.  The strings
 * point into REQ, which must outlive S.  -1 with ERR (its field set) when a field is malformed.  Release S with
 * nex_agent_spec_release either way. */
int nex_agent_spec_parse (json_t *req, nex_agent_spec_t *s, nex_error_t *err);

/* Frees what S owns; S zeroed or parsed. */
void nex_agent_spec_release (nex_agent_spec_t *s);

/* Forks a child that becomes S: its own session, stdin from a pipe when WANT_STDIN (else empty), stdout and
 * stderr into pipes (S->tty: all three on a new pseudo-terminal), every other descriptor closed, capabilities
 * dropped, no_new_privs, seccomp, execve.  Does not wait for it: returns 0 with P's pid, path, cwd and
 * descriptors set (non-blocking), its status pipe in P->status_fd (read it with nex_agent_spawn_result), or -1
 * with errno and P untouched when no child could be made. */
int nex_agent_spawn (const nex_agent_spec_t *s, bool want_stdin, nex_agent_proc_t *p);

/* What became of the start of P's child.  */
typedef enum nex_agent_start
{
  AGENT_START_PENDING, /* it is still setting up (or P is not starting) */
  AGENT_START_OK,      /* it became its program */
  AGENT_START_FAILED,  /* it gave up before execve (*F says why) and exits 127 */
} nex_agent_start_t;

/* Reads P's status pipe without blocking; once it tells, closes it (P->status_fd -1).  A child that has ended
 * has told: its end of the pipe is closed. */
nex_agent_start_t nex_agent_spawn_result (nex_agent_proc_t *p, nex_agent_child_failure_t *f);

/* "exec `/x`: No such file or directory" for P's child that gave up with F; the caller frees it. */
char *nex_agent_spawn_failure_text (const nex_agent_proc_t *p, const nex_agent_child_failure_t *f);

/* Sets O_NONBLOCK on FD.  -1 with errno. */
int nex_agent_set_nonblock (int fd);

/* --- warm processes (process.c) ---------------------------------------------------------------------------------
 *
 * An EXEC may ask for `warm: N` (a function's runs do): the agent then keeps up to N processes of that very
 * request started ahead (forked, hardened, past execve, blocked reading their stdin), and the next EXEC whose
 * request is the same (KEY: the request without timeout_ms and warm, canonical JSON) becomes one of them instead
 * of a fork: its STARTED goes out at once and its stdin reaches a program already running.  Each EXEC starts at
 * most two more (one to replace the one it took, one to grow towards N), evicting processes kept for other
 * requests when the pool is full, so that a request never costs more than a cold start's fork or two.  A warm
 * process is not polled (what it writes waits in its pipe), is reaped like any child (its status kept for the
 * session it becomes), its timeout starts when it becomes a session, and the pool is killed when the workload
 * ends. */

/* Makes a process kept for KEY the exec session X (a free slot) on CHANNEL: 1 when there was one, 0 when not.  */
int nex_agent_warm_take (nex_agent_t *a, const char *key, nex_agent_proc_t *x, uint16_t channel);

/* Records that REQ (an EXEC's request, without timeout_ms and warm; a reference is taken) with canonical text KEY
 * wants N processes kept, and that two more may be started for it. */
void nex_agent_warm_want (nex_agent_t *a, json_t *req, const char *key, int n);

/* Starts what nex_agent_warm_want asked for (the loop calls it once it has been quiet for
 * nex_agent_warm_delay, so that the forks delay no session's stdin or output).  Failures are only logged: the
 * next EXEC starts cold. */
void nex_agent_warm_fill (nex_agent_t *a);

/* How long (ms) the loop waits for quiet before it starts the wanted warm processes: 0 when none is kept for
 * the request (the next one would start cold), else AGENT_WARM_IDLE_MS, so that the fork does not land while a
 * run that took one is answering. */
int nex_agent_warm_delay (const nex_agent_t *a);

/* Kills every warm process and frees its slot (the workload ended). */
void nex_agent_warm_discard (nex_agent_t *a);

/* --- function.c: persistent function processes ---------------------------------------------------------------- */

/* An idle persistent process started for KEY becomes the session on CHANNEL (STARTED is queued at once), or NULL
 * when none is idle. */
nex_agent_proc_t *nex_agent_fn_take (nex_agent_t *a, const char *key, uint16_t channel);

/* Kills an idle persistent process and returns its freed record (for a session that needs the slot), or NULL
 * when none is idle. */
nex_agent_proc_t *nex_agent_fn_evict (nex_agent_t *a);

/* Session P (just taken, or just forked for KEY) serves a call on SUBJECT: it becomes persistent and its stdin
 * gathers the call's payload. */
void nex_agent_fn_begin (nex_agent_proc_t *p, const char *key, const char *subject);

/* STDIN for persistent P: N bytes of the call's payload, or (N 0) its end, whereupon the call's header and
 * payload are written. */
void nex_agent_fn_feed (nex_agent_proc_t *p, const uint8_t *data, size_t n);

/* N bytes P wrote on stdout: parsed as replies; a complete one ends P's session (EXIT {code, reply}) and P goes
 * idle; anything that breaks the protocol kills P (ERROR {phase: "function"} for its session). */
void nex_agent_fn_stdout (nex_agent_t *a, nex_agent_proc_t *p, const uint8_t *buf, size_t n);

#endif
