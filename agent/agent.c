/* agent.c — nex-agent, the small static program that runs as PID 1 inside every sandbox and VM.
 *
 * The agent is the guest end of the wire protocol (agent/wire.h).  It waits for the host (nexd) to reach it,
 * greets every new connection with HELLO, starts the one workload it is asked to START, streams the workload's
 * stdout and stderr back as frames, reaps every process that ends inside the sandbox (as init must), reports
 * the workload's end with EXIT and leaves once a host has acknowledged it.  Its shape follows bubblewrap's
 * do_init: one process, no threads, one poll() loop over
 *
 *   - the listening socket, on which every accept replaces the current host connection (how nexd re-attaches
 *     after a restart), or a single pre-connected stream (a serial or virtio console),
 *   - the host connection, read as frames and written from a queue whenever it is writable,
 *   - the read ends of the workload's stdout and stderr pipes,
 *   - a signalfd for SIGCHLD, SIGTERM and SIGINT (blocked, so they arrive as data, never as interruptions),
 *   - and one timeout: the earliest of the STOP grace and the post-exit pipe drain.
 *
 * Nothing the workload or the host does may stall the loop: descriptors are non-blocking, output waiting for a
 * slow or absent host is bounded (and the excess dropped and counted, never left in the pipe where it would
 * block the workload), and every byte from the host is parsed as hostile input.
 *
 * Life cycle of the workload: idle -> running (START forked it) -> draining (its main process ended; the pipes
 * are read to EOF for at most AGENT_DRAIN_MS) -> exited (EXIT queued; the status is kept, and reported in every
 * HELLO, until some host sends ACK, whereupon the agent exits 0). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "agent/vm.h"
#include "common/wire.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "rootfs/layout.h"

#define AGENT_CHUNK (64 * 1024)       /* largest STDOUT/STDERR payload, and largest single read */
#define AGENT_OUTPUT_LIMIT (8u << 20) /* workload output queued for the host at most; the rest is dropped */
#define AGENT_REPLY_LIMIT (1u << 20)  /* replies queued for one connection before it is cut off */
#define AGENT_DRAIN_MS 2000           /* how long the pipes are read after the workload's main process ended */
#define AGENT_STOP_GRACE_MS 10000     /* STOP's default grace before SIGKILL */
#define AGENT_MAX_GRACE_MS 86400000   /* a day: keeps deadline arithmetic far from overflow */
#define AGENT_DEFAULT_LISTEN_FD 3     /* where nexd puts the listening socket when no option says otherwise */
#define AGENT_MAX_FILTER 4096         /* BPF_MAXINSNS: the most seccomp instructions the kernel takes */
#define AGENT_MAX_EXECS 16            /* exec sessions at once */
#define AGENT_EXEC_STDIN_LIMIT (4u << 20) /* stdin bytes buffered for one session before it is refused */
#define AGENT_TTY_MAX_SIZE 10000          /* rows and columns a terminal may have */

/* One frame waiting to be written to the host. */
typedef struct agent_frame
{
  struct agent_frame *next;
  uint8_t *data; /* header + payload */
  size_t len;    /* bytes in data */
  size_t off;    /* bytes of data already written to the current connection */
  size_t output; /* payload bytes counted against AGENT_OUTPUT_LIMIT (0 for control frames) */
  bool per_conn; /* a reply meant for the current connection only (HELLO, refusals): dropped when it closes */
  uint16_t channel; /* frames of exec sessions (channel != 0) are dropped with the connection too */
} agent_frame_t;

typedef enum agent_state
{
  AGENT_IDLE,     /* no START yet */
  AGENT_RUNNING,  /* the workload's main process is alive */
  AGENT_DRAINING, /* it ended; reading what is left in the pipes */
  AGENT_EXITED,   /* EXIT queued; waiting for an ACK */
} agent_state_t;

/* How the host reaches the agent.  A listening transport accepts a connection whenever the host dials, each
 * replacing the last; a stream transport is one pre-connected byte stream for the agent's whole life (a serial
 * or virtio console), greeted once at start and on a host's HELLO.  A new transport (vsock, say) is one more
 * kind here and one more case in agent_transport_open. */
typedef enum agent_transport
{
  AGENT_TRANSPORT_LISTEN,
  AGENT_TRANSPORT_STREAM,
} agent_transport_t;

/* One exec session: a process the host asked to run beside the workload (EXEC on a channel of its own). */
typedef struct agent_exec
{
  uint16_t channel;        /* 0: the slot is free */
  pid_t pid;               /* the process (and its process group) */
  int out_fd, err_fd;      /* read ends of its stdout/stderr, -1 once closed */
  int in_fd;               /* write end of its stdin, -1 once closed */
  int tty_fd;              /* TTY sessions: the pseudo-terminal's master (out_fd and in_fd are duplicates), else -1 */
  uint8_t *in_buf;         /* stdin bytes the process has not taken yet */
  size_t in_len;
  bool in_eof;             /* the host closed stdin: close in_fd once in_buf is written */
  bool ended;              /* the process was reaped; draining its pipes */
  int status;              /* its wait status, once ended */
  bool timed_out;          /* killed because timeout_ms passed */
  int64_t deadline;        /* monotonic ms at which it is killed, 0: none */
  int64_t drain_deadline;  /* monotonic ms at which draining gives up */
  uint64_t dropped_bytes;  /* its output discarded for lack of room */
} agent_exec_t;

typedef struct agent
{
  agent_transport_t transport;
  int listen_fd;            /* listening socket (AGENT_TRANSPORT_LISTEN), else -1 */
  int conn_fd;              /* current host connection or stream, -1 when none */
  nex_wire_reader_t reader; /* decoder for conn_fd */

  agent_frame_t *head, *tail; /* outgoing frames, oldest first */
  size_t queued_output;       /* sum of ->output over the queue */
  size_t queued_replies;      /* bytes of per_conn frames in the queue */
  uint64_t dropped_bytes;     /* workload output discarded because the queue was full */

  agent_state_t state;
  pid_t pid;              /* the workload's main process (and process group), 0 before START */
  int out_fd, err_fd;     /* read ends of the workload's stdout/stderr pipes, -1 once closed */
  int wait_status;        /* how the main process ended (AGENT_DRAINING and later) */
  bool exec_failed;       /* it never became the workload: setup or execve failed */
  int64_t stop_deadline;  /* monotonic ms at which a stopping workload gets SIGKILL, 0 if none */
  int64_t drain_deadline; /* monotonic ms at which draining gives up, 0 if none */
  json_t *exit_info;      /* the EXIT payload, kept until a host acknowledges it */

  int sig_fd;   /* signalfd for SIGCHLD, SIGTERM, SIGINT */
  bool is_init; /* running as PID 1 of its PID namespace */

  agent_exec_t execs[AGENT_MAX_EXECS]; /* exec sessions; a slot with channel 0 is free */
} agent_t;

void
nex_agent_log (const char *fmt, ...)
{
  char line[512];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (line, sizeof line, fmt, ap);
  va_end (ap);
  fprintf (stderr, "nex-agent: %s\n", line);
}

static int64_t
agent_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *
agent_state_name (agent_state_t state)
{
  switch (state)
    {
    case AGENT_IDLE:
      return "idle";
    case AGENT_RUNNING:
    case AGENT_DRAINING:
      return "running";
    case AGENT_EXITED:
      return "exited";
    }
  return "idle";
}

/* --- the outgoing queue --------------------------------------------------------------------------------------- */

static void
agent_frame_free (agent_frame_t *f)
{
  free (f->data);
  free (f);
}

static agent_frame_t *
agent_frame_new (uint8_t *data, size_t len, size_t output, bool per_conn)
{
  agent_frame_t *f = nex_xzalloc (sizeof *f);
  f->data = data;
  f->len = len;
  f->output = output;
  f->per_conn = per_conn;
  return f;
}

static void
agent_queue_append (agent_t *a, agent_frame_t *f)
{
  if (a->tail)
    a->tail->next = f;
  else
    a->head = f;
  a->tail = f;
  a->queued_output += f->output;
  if (f->per_conn)
    a->queued_replies += f->len;
}

/* Puts F first in line, or second when the first frame is already partly written (frames never interleave). */
static void
agent_queue_prepend (agent_t *a, agent_frame_t *f)
{
  if (a->head == NULL)
    {
      agent_queue_append (a, f);
      return;
    }
  agent_frame_t **at = a->head->off > 0 ? &a->head->next : &a->head;
  f->next = *at;
  *at = f;
  if (f->next == NULL)
    a->tail = f;
  a->queued_output += f->output;
  if (f->per_conn)
    a->queued_replies += f->len;
}

static void
agent_queue_pop (agent_t *a)
{
  agent_frame_t *f = a->head;
  a->head = f->next;
  if (a->head == NULL)
    a->tail = NULL;
  a->queued_output -= f->output;
  if (f->per_conn)
    a->queued_replies -= f->len;
  agent_frame_free (f);
}

/* Forgets the replies meant for a connection that is gone. */
static void
agent_queue_drop_replies (agent_t *a)
{
  agent_frame_t **pp = &a->head;
  a->tail = NULL;
  while (*pp)
    {
      agent_frame_t *f = *pp;
      if (f->per_conn || f->channel != 0)
        {
          *pp = f->next;
          if (f->per_conn)
            a->queued_replies -= f->len;
          a->queued_output -= f->output;
          agent_frame_free (f);
          continue;
        }
      a->tail = f;
      pp = &f->next;
    }
}

/* Queues a JSON control frame; OBJ is consumed.  Control frames are never dropped for lack of room: there are
 * only a handful per workload, and per-connection replies are bounded by agent_conn_check_replies. */
static void
agent_queue_json_on (agent_t *a, nex_wire_type_t type, uint16_t channel, json_t *obj, bool per_conn, bool first)
{
  cleanup_json json_t *o = obj;
  cleanup_error nex_error_t err = NULL;
  size_t len;
  uint8_t *data = nex_wire_encode_json (type, channel, o, &len, &err);
  if (data == NULL)
    {
      nex_agent_log ("cannot encode a %s frame: %s", nex_wire_type_name (type), err->msg);
      return;
    }
  agent_frame_t *f = agent_frame_new (data, len, 0, per_conn);
  f->channel = channel;
  if (first)
    agent_queue_prepend (a, f);
  else
    agent_queue_append (a, f);
}

static void
agent_queue_json (agent_t *a, nex_wire_type_t type, json_t *obj, bool per_conn, bool first)
{
  agent_queue_json_on (a, type, 0, obj, per_conn, first);
}

static void agent_queue_error (agent_t *a, bool per_conn, const char *phase, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

/* Queues ERROR {message, phase?}. */
static void
agent_queue_error (agent_t *a, bool per_conn, const char *phase, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  cleanup_free char *msg = nex_xvasprintf (fmt, ap);
  va_end (ap);
  json_t *o = json_object ();
  json_object_set_new (o, "message", json_string (msg));
  if (phase)
    json_object_set_new (o, "phase", json_string (phase));
  agent_queue_json (a, NEX_WIRE_ERROR, o, per_conn, false);
}

/* Queues workload output as frames of at most AGENT_CHUNK bytes.  Beyond AGENT_OUTPUT_LIMIT the bytes are
 * counted and dropped: a host that reads slowly, or is not there, must cost bounded memory and must never make
 * the workload block on a full pipe. */
static void
agent_queue_output (agent_t *a, nex_wire_type_t type, uint16_t channel, const uint8_t *data, size_t n,
                    uint64_t *dropped)
{
  size_t room = AGENT_OUTPUT_LIMIT - a->queued_output;
  if (n > room)
    {
      *dropped += n - room;
      n = room;
    }
  if (n == 0)
    return;
  size_t len;
  uint8_t *frame = nex_wire_encode (type, channel, data, n, &len, NULL);
  agent_frame_t *f = agent_frame_new (frame, len, n, false);
  f->channel = channel;
  agent_queue_append (a, f);
}

/* --- the host connection -------------------------------------------------------------------------------------- */

/* Leaves, handing the host whatever the connection takes without waiting. */
static void agent_flush (agent_t *a);
static void __attribute__ ((noreturn)) agent_exit (agent_t *a, int code)
{
  agent_flush (a);
  nex_agent_log ("exiting");
  exit (code);
}

/* Queues HELLO.  NONCE, when the host's own HELLO carried a short string there, is echoed: over a stream that
 * the host re-attached to mid-flow, it tells the reply apart from bytes that merely look like a HELLO (the
 * workload's output cannot know it). */
static void
agent_queue_hello_nonce (agent_t *a, json_t *nonce)
{
  json_t *o = json_object ();
  if (json_is_string (nonce) && json_string_length (nonce) <= 64)
    json_object_set (o, "nonce", nonce);
  json_object_set_new (o, "version", json_integer (NEX_WIRE_VERSION));
  json_object_set_new (o, "agent_pid", json_integer (getpid ()));
  json_object_set_new (o, "state", json_string (agent_state_name (a->state)));
  if (a->pid > 0)
    json_object_set_new (o, "pid", json_integer (a->pid));
  if (a->exit_info)
    json_object_set (o, "exit", a->exit_info);
  /* First in line: the greeting must precede whatever output waited for this host. */
  agent_queue_json (a, NEX_WIRE_HELLO, o, true, true);
}

static void
agent_queue_hello (agent_t *a)
{
  agent_queue_hello_nonce (a, NULL);
}

static void agent_exec_abandon_all (agent_t *a);

/* Closes the current connection (or forgets a lost stream).  Queued state frames and output stay for the next
 * host; a frame that was only partly written is sent again from its start, so the next host sees whole frames. */
static void
agent_conn_close (agent_t *a, const char *why)
{
  if (a->conn_fd < 0)
    return;
  if (why)
    nex_agent_log ("host connection closed: %s", why);
  close (a->conn_fd);
  a->conn_fd = -1;
  nex_wire_reader_release (&a->reader);
  nex_wire_reader_init (&a->reader);
  if (a->head)
    a->head->off = 0;
  agent_queue_drop_replies (a);
  /* Exec sessions belong to the host that started them: nobody else will read their output or feed them. */
  agent_exec_abandon_all (a);
  if (a->transport == AGENT_TRANSPORT_STREAM)
    {
      /* A stream cannot be re-dialled: no host will ever reach this agent again.  The workload keeps running
       * (its end is simply not reported); with nothing running, there is nothing left to wait for. */
      nex_agent_log ("the host stream is gone for good");
      if (a->state == AGENT_IDLE || a->state == AGENT_EXITED)
        agent_exit (a, 0);
    }
}

/* Writes queued frames until the connection would block.  Never blocks. */
static void
agent_flush (agent_t *a)
{
  while (a->conn_fd >= 0 && a->head)
    {
      agent_frame_t *f = a->head;
      ssize_t w = write (a->conn_fd, f->data + f->off, f->len - f->off);
      if (w < 0)
        {
          if (errno == EINTR)
            continue;
          if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
          agent_conn_close (a, strerror (errno));
          return;
        }
      f->off += (size_t)w;
      if (f->off == f->len)
        agent_queue_pop (a);
    }
}

/* The host broke the protocol: tell it why if the socket takes it right now, then hang up.  A listening
 * transport goes back to accepting; a stream cannot be re-dialled, so its decoder is reset instead and the
 * stream kept (there is no way to resynchronise a byte stream better than that). */
static void
agent_conn_reject (agent_t *a, const char *msg)
{
  nex_agent_log ("protocol error from the host: %s", msg);
  agent_queue_error (a, true, NULL, "%s", msg);
  agent_flush (a);
  if (a->transport == AGENT_TRANSPORT_LISTEN)
    agent_conn_close (a, "protocol error");
  else
    {
      nex_wire_reader_release (&a->reader);
      nex_wire_reader_init (&a->reader);
    }
}

/* A host that keeps sending requests but never reads the replies would grow the queue without bound; past
 * AGENT_REPLY_LIMIT it is cut off.  Stops a memory-exhaustion attack on PID 1 through the control channel. */
static void
agent_conn_check_replies (agent_t *a)
{
  if (a->queued_replies > AGENT_REPLY_LIMIT)
    agent_conn_close (a, "host does not read its replies");
}

static void
agent_accept (agent_t *a)
{
  int fd = accept4 (a->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0)
    {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
        nex_agent_log ("accept: %s", strerror (errno));
      return;
    }
  /* Whoever can connect to this socket controls the workload: access is decided by where nexd put the socket
   * (a directory only it can reach, outside the sandbox's mount namespace) and the workload itself never holds
   * the descriptor (agent_child closes it).  The newest connection wins, so that a restarted nexd re-attaches
   * even when the old connection was never seen to close. */
  if (a->conn_fd >= 0)
    agent_conn_close (a, "replaced by a new connection");
  a->conn_fd = fd;
  agent_queue_hello (a);
}

/* --- starting the workload ------------------------------------------------------------------------------------ */

/* What a START asks for, validated. */
typedef struct agent_spec
{
  const char *path; /* program to execute (points into the START request) */
  const char *cwd;  /* working directory (points into the request, or "/") */
  char **argv;      /* NULL-terminated; the strings point into the request */
  char **envp;      /* NULL-terminated "NAME=value" strings, owned */
  uint64_t keep_caps;          /* capabilities the process keeps (bit N: capability N); all others are dropped */
  struct sock_filter *filter;  /* seccomp program installed right before execve, owned; NULL: none */
  unsigned short filter_len;
  bool tty;                    /* EXEC only: run on a new pseudo-terminal of ROWS x COLS */
  unsigned short rows, cols;
  bool park;                   /* START only: the child parks (waits for a signal) instead of executing path */
} agent_spec_t;

static void
agent_spec_release (agent_spec_t *s)
{
  free (s->filter);
  free (s->argv);
  for (char **e = s->envp; e && *e; e++)
    free (*e);
  free (s->envp);
}

/* The hardening part of a START or EXEC: `capabilities` (numbers of the capabilities kept; absent: none kept)
 * and `seccomp` (the program as [code, jt, jf, k] instructions; absent: no filter).  Only the shape is checked
 * here; the kernel verifies the program itself when the child installs it. */
static int
agent_spec_parse_hardening (json_t *req, agent_spec_t *s, nex_error_t *err)
{
  json_t *caps = json_object_get (req, "capabilities");
  size_t i;
  json_t *v;
  if (caps != NULL && !json_is_null (caps))
    {
      if (!json_is_array (caps))
        return nex_error_field (err, "capabilities", "`capabilities` must be an array of capability numbers");
      json_array_foreach (caps, i, v)
      {
        if (!json_is_integer (v) || json_integer_value (v) < 0 || json_integer_value (v) > 63)
          return nex_error_field (err, "capabilities", "`capabilities[%zu]` must be a number from 0 to 63", i);
        s->keep_caps |= UINT64_C (1) << json_integer_value (v);
      }
    }
  json_t *prog = json_object_get (req, "seccomp");
  if (prog == NULL || json_is_null (prog))
    return 0;
  if (!json_is_array (prog) || json_array_size (prog) == 0 || json_array_size (prog) > AGENT_MAX_FILTER)
    return nex_error_field (err, "seccomp", "`seccomp` must be an array of 1 to %d instructions", AGENT_MAX_FILTER);
  s->filter_len = (unsigned short)json_array_size (prog);
  s->filter = nex_xzalloc (s->filter_len * sizeof *s->filter);
  json_array_foreach (prog, i, v)
  {
    json_t *code = json_array_get (v, 0), *jt = json_array_get (v, 1), *jf = json_array_get (v, 2);
    json_t *k = json_array_get (v, 3);
    if (!json_is_array (v) || json_array_size (v) != 4 || !json_is_integer (code) || !json_is_integer (jt)
        || !json_is_integer (jf) || !json_is_integer (k) || json_integer_value (code) < 0
        || json_integer_value (code) > 0xffff || json_integer_value (jt) < 0 || json_integer_value (jt) > 0xff
        || json_integer_value (jf) < 0 || json_integer_value (jf) > 0xff || json_integer_value (k) < 0
        || json_integer_value (k) > 0xffffffffLL)
      return nex_error_field (err, "seccomp", "`seccomp[%zu]` must be [code, jt, jf, k] within their ranges", i);
    s->filter[i] = (struct sock_filter){ .code = (uint16_t)json_integer_value (code),
                                         .jt = (uint8_t)json_integer_value (jt),
                                         .jf = (uint8_t)json_integer_value (jf),
                                         .k = (uint32_t)json_integer_value (k) };
  }
  return 0;
}

static int
agent_spec_parse (json_t *req, agent_spec_t *s, nex_error_t *err)
{
  memset (s, 0, sizeof *s);

  json_t *path = json_object_get (req, "path");
  if (!json_is_string (path) || json_string_length (path) == 0)
    return nex_error_field (err, "path", "start: `path` must be a non-empty string");
  s->path = json_string_value (path);

  json_t *cwd = json_object_get (req, "cwd");
  if (cwd == NULL || json_is_null (cwd))
    s->cwd = "/";
  else if (json_is_string (cwd) && json_string_length (cwd) > 0)
    s->cwd = json_string_value (cwd);
  else
    return nex_error_field (err, "cwd", "start: `cwd` must be a non-empty string");

  json_t *argv = json_object_get (req, "argv");
  if (argv == NULL || json_is_null (argv))
    {
      s->argv = nex_xzalloc (2 * sizeof *s->argv);
      s->argv[0] = (char *)s->path;
    }
  else
    {
      if (!json_is_array (argv) || json_array_size (argv) == 0)
        return nex_error_field (err, "argv", "start: `argv` must be a non-empty array of strings");
      size_t n = json_array_size (argv);
      s->argv = nex_xzalloc ((n + 1) * sizeof *s->argv);
      for (size_t i = 0; i < n; i++)
        {
          json_t *v = json_array_get (argv, i);
          if (!json_is_string (v))
            {
              cleanup_free char *field = nex_xasprintf ("argv[%zu]", i);
              return nex_error_field (err, field, "start: `argv[%zu]` must be a string", i);
            }
          s->argv[i] = (char *)json_string_value (v);
        }
    }

  /* The environment is exactly what the host sent: nothing of the agent's own leaks into the workload. */
  json_t *env = json_object_get (req, "env");
  size_t n = 0;
  if (env != NULL && !json_is_null (env) && !json_is_object (env))
    return nex_error_field (err, "env", "start: `env` must be an object of strings");
  s->envp = nex_xzalloc ((json_object_size (env) + 1) * sizeof *s->envp);
  const char *key;
  json_t *val;
  json_object_foreach (env, key, val)
  {
    cleanup_free char *field = nex_xasprintf ("env.%s", key);
    /* A name holding '=' would smuggle a different variable in ("A=B" with value "c" reads as A="B=c"),
     * defeating any check the host made on names. */
    if (key[0] == '\0' || strchr (key, '=') != NULL)
      return nex_error_field (err, field, "start: environment variable names must be non-empty and hold no '='");
    if (!json_is_string (val))
      return nex_error_field (err, field, "start: `%s` must be a string", field);
    s->envp[n++] = nex_xasprintf ("%s=%s", key, json_string_value (val));
  }
  return agent_spec_parse_hardening (req, s, err);
}

/* What the child reports through its status pipe when it cannot become the workload. */
typedef enum agent_child_stage
{
  AGENT_CHILD_STDIO,
  AGENT_CHILD_CHDIR,
  AGENT_CHILD_EXEC,
  AGENT_CHILD_CWD,     /* the working directory is not inside the root */
  AGENT_CHILD_CAPS,    /* dropping capabilities failed */
  AGENT_CHILD_NNP,     /* no_new_privs failed */
  AGENT_CHILD_SECCOMP, /* the kernel refused the seccomp program */
  AGENT_CHILD_TTY,     /* the terminal could not become the controlling terminal */
} agent_child_stage_t;

typedef struct agent_child_failure
{
  int stage;  /* agent_child_stage_t */
  int errnum; /* errno of the failed call */
} agent_child_failure_t;

static const char *
agent_child_stage_name (int stage)
{
  switch (stage)
    {
    case AGENT_CHILD_STDIO:
      return "stdio";
    case AGENT_CHILD_CHDIR:
      return "chdir";
    case AGENT_CHILD_EXEC:
      return "exec";
    case AGENT_CHILD_CWD:
      return "working directory outside the root";
    case AGENT_CHILD_CAPS:
      return "drop capabilities";
    case AGENT_CHILD_NNP:
      return "no_new_privs";
    case AGENT_CHILD_SECCOMP:
      return "seccomp";
    case AGENT_CHILD_TTY:
      return "controlling terminal";
    }
  return "setup";
}

static void __attribute__ ((noreturn)) agent_child_fail (int status_fd, agent_child_stage_t stage, int errnum)
{
  agent_child_failure_t f = { .stage = stage, .errnum = errnum };
  (void)!write (status_fd, &f, sizeof f);
  _exit (127);
}

/* Closes every descriptor from FIRST up. */
static void
agent_close_from (int first)
{
  if (close_range ((unsigned)first, ~0u, 0) == 0)
    return;
  /* Kernels before 5.9: the slow way, up to the descriptor limit. */
  struct rlimit rl;
  int max = 65536;
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max)
    max = (int)rl.rlim_cur;
  for (int fd = first; fd < max; fd++)
    close (fd);
}

/* Drops every capability not in KEEP: from the bounding set first (which needs CAP_SETPCAP, still held), so that
 * no later execve can regain them, then the ambient set, then the process's own sets.  Stops a workload that
 * is root in its user namespace from using that namespace's capabilities (mount, raw sockets, ...) unless its
 * spec asked for them.  An agent that is not root (tests) cannot shrink its bounding set and need not: it holds
 * no capabilities, and no_new_privs keeps execve from granting any. */
static int
agent_drop_caps (uint64_t keep)
{
  for (int cap = 0; cap < 64; cap++)
    {
      if (keep & (UINT64_C (1) << cap))
        continue;
      if (prctl (PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
        break; /* past the kernel's last capability */
      if (prctl (PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && !(errno == EPERM && geteuid () != 0))
        return -1;
    }
  prctl (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); /* EINVAL on kernels without ambient caps */
  struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct d[2];
  memset (d, 0, sizeof d);
  if (geteuid () != 0)
    {
      /* Keep only what we hold anyway. */
      if (syscall (SYS_capget, &h, d) < 0)
        return -1;
      for (int i = 0; i < 2; i++)
        {
          uint32_t k = (uint32_t)(keep >> (32 * i));
          d[i].effective &= k;
          d[i].permitted &= k;
          d[i].inheritable &= k;
        }
    }
  else
    for (int i = 0; i < 2; i++)
      d[i].effective = d[i].permitted = d[i].inheritable = (uint32_t)(keep >> (32 * i));
  return (int)syscall (SYS_capset, &h, d);
}

/* The forked child: becomes the workload or reports why not.  Everything it uses was prepared before fork. */
static void __attribute__ ((noreturn)) agent_child (const agent_spec_t *s, const char *tty, int in_r, int out_w,
                                                    int err_w, int status_w)
{
  /* Its own session and process group: STOP signals the whole group (-pid), and the workload cannot reach the
   * agent's terminal, if it has one. */
  setsid ();

  /* A TTY session: the pseudo-terminal's slave becomes the new session's controlling terminal (so that ^C, job
   * control and SIGWINCH work) and its stdin, stdout and stderr. */
  if (tty)
    {
      int t = open (tty, O_RDWR);
      if (t < 0 || ioctl (t, TIOCSCTTY, 0) < 0)
        agent_child_fail (status_w, AGENT_CHILD_TTY, errno);
      in_r = out_w = err_w = t;
    }

  /* Dispositions the agent set (SIGPIPE ignored) and its blocked mask would otherwise survive execve and change
   * how the workload behaves; it gets the defaults a freshly started program expects. */
  for (int sig = 1; sig < NSIG; sig++)
    signal (sig, SIG_DFL);
  sigset_t none;
  sigemptyset (&none);
  sigprocmask (SIG_SETMASK, &none, NULL);

  /* stdin: the exec session's pipe, or empty.  A minimal VM root may lack /dev/null: a pipe whose write end is
   * closed reads as empty too. */
  int in = in_r >= 0 ? in_r : open ("/dev/null", O_RDONLY);
  if (in < 0)
    {
      int p[2];
      if (pipe (p) < 0)
        agent_child_fail (status_w, AGENT_CHILD_STDIO, errno);
      close (p[1]);
      in = p[0];
    }
  if (dup2 (in, 0) < 0 || dup2 (out_w, 1) < 0 || dup2 (err_w, 2) < 0)
    agent_child_fail (status_w, AGENT_CHILD_STDIO, errno);

  /* Keep only the status pipe (moved to 3, still close-on-exec) and close everything else: the workload must
   * not inherit the listening socket or the host connection (it could impersonate the host or hijack the
   * control channel), nor the signalfd or the pipes' read ends. */
  if (status_w != 3)
    {
      if (dup3 (status_w, 3, O_CLOEXEC) < 0)
        agent_child_fail (status_w, AGENT_CHILD_STDIO, errno);
      status_w = 3;
    }
  agent_close_from (4);

  /* The OOM killer must choose the workload, never the agent (PID 1: its death would lose the exit status):
   * every process the agent starts gets the highest score.  Raising the score needs no privilege; a workload may
   * lower its own again only down to the agent's level, where its size still makes it the one to go. */
  int adj = open ("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (adj >= 0)
    {
      (void)!write (adj, "1000", 4);
      close (adj);
    }

  if (chdir (s->cwd) < 0)
    agent_child_fail (status_w, AGENT_CHILD_CHDIR, errno);
  /* A directory reached through a path that leaves the root (a descriptor or mount from outside) reads back as
   * unreachable: refuse to start the workload anywhere it could walk out of its root from. */
  char here[PATH_MAX];
  if (getcwd (here, sizeof here) == NULL || here[0] != '/')
    agent_child_fail (status_w, AGENT_CHILD_CWD, errno ? errno : ENOENT);

  if (agent_drop_caps (s->keep_caps) < 0)
    agent_child_fail (status_w, AGENT_CHILD_CAPS, errno);
  /* no_new_privs: execve can never grant privileges again (setuid bits, file capabilities), and it lets an
   * unprivileged process install the seccomp filter. */
  if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    agent_child_fail (status_w, AGENT_CHILD_NNP, errno);
  /* Last, so that everything above ran unfiltered; the filter allows execve and everything after it is the
   * workload's. */
  if (s->filter)
    {
      struct sock_fprog prog = { .len = s->filter_len, .filter = s->filter };
      if (prctl (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        agent_child_fail (status_w, AGENT_CHILD_SECCOMP, errno);
    }
  if (s->park)
    {
      /* A function workload's placeholder main process: hardened like the workload, it only waits, so that the
       * sandbox is "running" (exec sessions run the function) and a stop or an OOM kill ends it as it would end
       * any workload.  Closing the status pipe reports the start as execve would. */
      close (status_w);
      for (;;)
        pause ();
    }
  execve (s->path, s->argv, s->envp);
  agent_child_fail (status_w, AGENT_CHILD_EXEC, errno);
}

static int
agent_set_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);
  if (fl < 0)
    return -1;
  return fcntl (fd, F_SETFL, fl | O_NONBLOCK);
}

static void
agent_close_pipes (int pipes[4][2])
{
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 2; j++)
      if (pipes[i][j] >= 0)
        close (pipes[i][j]);
}

/* A forked process and the parent's ends of its pipes (or of its terminal). */
typedef struct agent_proc
{
  pid_t pid;
  int in_fd;  /* write end of its stdin (-1 unless asked for) */
  int out_fd; /* read ends of its stdout and stderr, non-blocking (TTY: the master, and err_fd is -1) */
  int err_fd;
  int tty_fd; /* TTY: the pseudo-terminal's master (in_fd and out_fd are duplicates of it), else -1 */
  bool failed;                   /* it reported that it could not become S (then F says why) */
  agent_child_failure_t failure;
} agent_proc_t;

/* Opens a pseudo-terminal of S->rows x S->cols on the sandbox's devpts: its master (non-blocking, close-on-exec)
 * and in SLAVE the path of its slave.  -1 with errno. */
static int
agent_open_pty (const agent_spec_t *s, char *slave, size_t size)
{
  int m = posix_openpt (O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    return -1;
  struct winsize ws = { .ws_row = s->rows, .ws_col = s->cols };
  if (grantpt (m) < 0 || unlockpt (m) < 0 || ptsname_r (m, slave, size) != 0 || ioctl (m, TIOCSWINSZ, &ws) < 0
      || agent_set_nonblock (m) < 0)
    {
      int saved = errno;
      close (m);
      errno = saved;
      return -1;
    }
  return m;
}

/* The status pipe ST (close-on-exec in the child): EOF means execve succeeded, a record means the child gave up,
 * and P->failure holds why.  The read waits only for the child's few setup calls.  Closes ST. */
static void
agent_proc_await_exec (agent_proc_t *p, int st)
{
  ssize_t n;
  do
    n = read (st, &p->failure, sizeof p->failure);
  while (n < 0 && errno == EINTR);
  close (st);
  p->failed = n == (ssize_t)sizeof p->failure;
}

/* The TTY form of agent_fork: one pseudo-terminal instead of the three pipes. */
static int
agent_fork_tty (const agent_spec_t *s, agent_proc_t *p)
{
  char slave[64];
  int st[2] = { -1, -1 };
  int m = agent_open_pty (s, slave, sizeof slave);
  if (m < 0)
    return -1;
  int out = fcntl (m, F_DUPFD_CLOEXEC, 0), in = fcntl (m, F_DUPFD_CLOEXEC, 0);
  if (out < 0 || in < 0 || pipe2 (st, O_CLOEXEC) < 0)
    goto fail;
  pid_t pid = fork ();
  if (pid < 0)
    goto fail;
  if (pid == 0)
    agent_child (s, slave, -1, -1, -1, st[1]);
  close (st[1]);
  *p = (agent_proc_t){ .pid = pid, .in_fd = in, .out_fd = out, .err_fd = -1, .tty_fd = m };
  agent_proc_await_exec (p, st[0]);
  return 0;

fail:;
  int saved = errno;
  int fds[] = { m, out, in, st[0], st[1] };
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
    if (fds[i] >= 0)
      close (fds[i]);
  errno = saved;
  return -1;
}

/* Forks a child that becomes S (agent_child), with a stdin pipe when WANT_STDIN (or, for S->tty, on a
 * pseudo-terminal).  0 with *P filled (P->failed when the child gave up before execve), or -1 with errno when no
 * child could be made. */
static int
agent_fork (const agent_spec_t *s, bool want_stdin, agent_proc_t *p)
{
  if (s->tty)
    return agent_fork_tty (s, p);
  int pipes[4][2] = { { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 } };
  int *out = pipes[0], *errp = pipes[1], *st = pipes[2], *in = pipes[3];
  if (pipe2 (out, O_CLOEXEC) < 0 || pipe2 (errp, O_CLOEXEC) < 0 || pipe2 (st, O_CLOEXEC) < 0
      || (want_stdin && pipe2 (in, O_CLOEXEC) < 0))
    {
      int saved = errno;
      agent_close_pipes (pipes);
      errno = saved;
      return -1;
    }
  pid_t pid = fork ();
  if (pid < 0)
    {
      int saved = errno;
      agent_close_pipes (pipes);
      errno = saved;
      return -1;
    }
  if (pid == 0)
    agent_child (s, NULL, in[0], out[1], errp[1], st[1]);

  close (out[1]);
  close (errp[1]);
  close (st[1]);
  if (in[0] >= 0)
    close (in[0]);
  agent_set_nonblock (out[0]);
  agent_set_nonblock (errp[0]);
  if (in[1] >= 0)
    agent_set_nonblock (in[1]);
  *p = (agent_proc_t){ .pid = pid, .in_fd = in[1], .out_fd = out[0], .err_fd = errp[0], .tty_fd = -1 };
  agent_proc_await_exec (p, st[0]);
  return 0;
}

/* "exec `/x`: No such file or directory" for a child that gave up. */
static char *
agent_failure_text (const agent_spec_t *s, const agent_child_failure_t *f)
{
  const char *what = agent_child_stage_name (f->stage);
  const char *arg = f->stage == AGENT_CHILD_EXEC                                  ? s->path
                    : f->stage == AGENT_CHILD_CHDIR || f->stage == AGENT_CHILD_CWD ? s->cwd
                                                                                   : "";
  return nex_xasprintf ("%s `%s`: %s", what, arg, strerror (f->errnum));
}

/* Forks and execs the workload.  Failures before fork are refused with ERROR; failures in the child are reported
 * as ERROR {phase: "exec"} and, once the child is reaped, EXIT {code: 127, exec_failed: true}. */
static void
agent_spawn (agent_t *a, const agent_spec_t *s)
{
  agent_proc_t p;
  if (agent_fork (s, false, &p) < 0)
    {
      agent_queue_error (a, true, "start", "start: %s", strerror (errno));
      return;
    }
  a->out_fd = p.out_fd;
  a->err_fd = p.err_fd;
  a->pid = p.pid;
  a->state = AGENT_RUNNING;
  pid_t pid = p.pid;
  if (p.failed)
    {
      a->exec_failed = true;
      cleanup_free char *text = agent_failure_text (s, &p.failure);
      nex_agent_log ("%s", text);
      agent_queue_error (a, false, "exec", "%s", text);
      return;
    }
  nex_agent_log ("started `%s` as pid %d", s->path, (int)pid);
  json_t *o = json_object ();
  json_object_set_new (o, "pid", json_integer (pid));
  agent_queue_json (a, NEX_WIRE_STARTED, o, false, false);
}

/* --- stopping and ending -------------------------------------------------------------------------------------- */

/* SIGKILL for everything the workload may have left.  As PID 1, kill (-1) reaches every other process in the
 * namespace, including ones that left the workload's process group; otherwise the group is all we may touch. */
static void
agent_kill_all (agent_t *a)
{
  if (a->is_init)
    kill (-1, SIGKILL);
  else if (a->pid > 0)
    {
      kill (-a->pid, SIGKILL);
      kill (a->pid, SIGKILL);
    }
}

static void
agent_stop (agent_t *a, int sig, int64_t grace_ms)
{
  if (a->state != AGENT_RUNNING)
    return;
  nex_agent_log ("stopping pid %d with signal %d, %lld ms grace", (int)a->pid, sig, (long long)grace_ms);
  /* The whole group, so that a shell's children stop too; the process itself if it left the group. */
  if (kill (-a->pid, sig) < 0)
    kill (a->pid, sig);
  int64_t deadline = agent_now_ms () + grace_ms;
  if (a->stop_deadline == 0 || deadline < a->stop_deadline)
    a->stop_deadline = deadline;
}

/* The drain is over: report the end, keep the report for every later HELLO until an ACK. */
static void
agent_finish (agent_t *a)
{
  if (a->out_fd >= 0)
    close (a->out_fd);
  if (a->err_fd >= 0)
    close (a->err_fd);
  a->out_fd = a->err_fd = -1;
  a->drain_deadline = 0;

  json_t *o = json_object ();
  if (WIFSIGNALED (a->wait_status))
    json_object_set_new (o, "signal", json_integer (WTERMSIG (a->wait_status)));
  else
    json_object_set_new (o, "code", json_integer (WEXITSTATUS (a->wait_status)));
  json_object_set_new (o, "dropped_bytes", json_integer ((json_int_t)a->dropped_bytes));
  if (a->exec_failed)
    json_object_set_new (o, "exec_failed", json_true ());
  a->exit_info = o;
  a->state = AGENT_EXITED;
  agent_queue_json (a, NEX_WIRE_EXIT, json_incref (o), false, false);
  if (a->transport == AGENT_TRANSPORT_STREAM && a->conn_fd < 0)
    agent_exit (a, 0); /* the stream is gone: no ACK can ever come */
}

static void
agent_check_drained (agent_t *a)
{
  if (a->state == AGENT_DRAINING && a->out_fd < 0 && a->err_fd < 0)
    agent_finish (a);
}

static void
agent_workload_ended (agent_t *a, int status)
{
  if (WIFSIGNALED (status))
    nex_agent_log ("pid %d was killed by signal %d", (int)a->pid, WTERMSIG (status));
  else
    nex_agent_log ("pid %d exited with code %d", (int)a->pid, WEXITSTATUS (status));
  a->wait_status = status;
  a->state = AGENT_DRAINING;
  a->stop_deadline = 0;
  /* Nothing the workload started may outlive it (daemons, stragglers holding the pipes open). */
  agent_kill_all (a);
  a->drain_deadline = agent_now_ms () + AGENT_DRAIN_MS;
  agent_check_drained (a);
}

/* --- exec sessions -------------------------------------------------------------------------------------------- */

static int agent_json_int (json_t *obj, const char *key, json_int_t def, json_int_t min, json_int_t max,
                           json_int_t *out);

static agent_exec_t *
agent_exec_find (agent_t *a, uint16_t channel)
{
  for (int i = 0; i < AGENT_MAX_EXECS; i++)
    if (a->execs[i].channel == channel && channel != 0)
      return &a->execs[i];
  return NULL;
}

static void
agent_exec_release (agent_exec_t *x)
{
  if (x->out_fd >= 0)
    close (x->out_fd);
  if (x->err_fd >= 0)
    close (x->err_fd);
  if (x->in_fd >= 0)
    close (x->in_fd);
  if (x->tty_fd >= 0)
    close (x->tty_fd);
  free (x->in_buf);
  memset (x, 0, sizeof *x);
  x->out_fd = x->err_fd = x->in_fd = x->tty_fd = -1;
}

/* Kills session X's process group and forgets it (its host is gone; the reaper collects the process). */
static void
agent_exec_abandon (agent_exec_t *x)
{
  if (x->pid > 0 && !x->ended)
    {
      kill (-x->pid, SIGKILL);
      kill (x->pid, SIGKILL);
    }
  agent_exec_release (x);
}

static void
agent_exec_abandon_all (agent_t *a)
{
  for (int i = 0; i < AGENT_MAX_EXECS; i++)
    if (a->execs[i].channel != 0)
      agent_exec_abandon (&a->execs[i]);
}

/* Queues JSON OBJ (consumed) on session CHANNEL. */
static void
agent_exec_reply (agent_t *a, uint16_t channel, nex_wire_type_t type, json_t *obj)
{
  agent_queue_json_on (a, type, channel, obj, false, false);
}

static void
agent_exec_refuse (agent_t *a, uint16_t channel, int errnum, const char *fmt, ...) __attribute__ ((format (printf, 4, 5)));

static void
agent_exec_refuse (agent_t *a, uint16_t channel, int errnum, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  cleanup_free char *msg = nex_xvasprintf (fmt, ap);
  va_end (ap);
  agent_exec_reply (a, channel, NEX_WIRE_ERROR,
                    json_pack ("{s:s, s:s, s:i}", "message", msg, "phase", "exec", "errno", errnum));
}

/* The session's process is gone and its pipes are drained: report EXIT and free the slot. */
static void
agent_exec_check_drained (agent_t *a, agent_exec_t *x)
{
  if (!x->ended || x->out_fd >= 0 || x->err_fd >= 0)
    return;
  json_t *o = json_object ();
  if (WIFSIGNALED (x->status))
    json_object_set_new (o, "signal", json_integer (WTERMSIG (x->status)));
  else
    json_object_set_new (o, "code", json_integer (WEXITSTATUS (x->status)));
  json_object_set_new (o, "timed_out", json_boolean (x->timed_out));
  json_object_set_new (o, "dropped_bytes", json_integer ((json_int_t)x->dropped_bytes));
  agent_exec_reply (a, x->channel, NEX_WIRE_EXIT, o);
  agent_exec_release (x);
}

static void
agent_exec_ended (agent_t *a, pid_t pid, int status)
{
  for (int i = 0; i < AGENT_MAX_EXECS; i++)
    {
      agent_exec_t *x = &a->execs[i];
      if (x->channel == 0 || x->pid != pid || x->ended)
        continue;
      x->ended = true;
      x->status = status;
      x->deadline = 0;
      /* What it started must not linger (holding the pipes open, or running on after the session). */
      kill (-pid, SIGKILL);
      if (x->in_fd >= 0)
        {
          close (x->in_fd);
          x->in_fd = -1;
        }
      x->drain_deadline = agent_now_ms () + AGENT_DRAIN_MS;
      agent_exec_check_drained (a, x);
      return;
    }
}

/* Writes buffered stdin to session X's process until its pipe is full; closes the pipe after the host's EOF. */
static void
agent_exec_write_stdin (agent_exec_t *x)
{
  while (x->in_fd >= 0 && x->in_len > 0)
    {
      ssize_t w = write (x->in_fd, x->in_buf, x->in_len);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (w < 0)
        {
          /* The process closed its stdin (EPIPE): what is left has no reader. */
          x->in_len = 0;
          close (x->in_fd);
          x->in_fd = -1;
          return;
        }
      memmove (x->in_buf, x->in_buf + w, x->in_len - (size_t)w);
      x->in_len -= (size_t)w;
    }
  if (x->in_fd >= 0 && x->in_len == 0 && x->in_eof)
    {
      close (x->in_fd);
      x->in_fd = -1;
    }
}

static void
agent_handle_exec (agent_t *a, uint16_t channel, json_t *req)
{
  if (agent_exec_find (a, channel))
    {
      agent_exec_refuse (a, channel, EBUSY, "exec: channel %u is in use", (unsigned)channel);
      return;
    }
  if (a->state != AGENT_RUNNING)
    {
      agent_exec_refuse (a, channel, ESRCH, "exec: the workload is not running");
      return;
    }
  agent_exec_t *x = NULL;
  for (int i = 0; i < AGENT_MAX_EXECS && x == NULL; i++)
    if (a->execs[i].channel == 0)
      x = &a->execs[i];
  if (x == NULL)
    {
      agent_exec_refuse (a, channel, EAGAIN, "exec: %d sessions are running already", AGENT_MAX_EXECS);
      return;
    }
  json_int_t timeout;
  if (agent_json_int (req, "timeout_ms", 0, 0, AGENT_MAX_GRACE_MS, &timeout) < 0)
    {
      agent_exec_refuse (a, channel, EINVAL, "exec: `timeout_ms` must be an integer from 0 to %d",
                         AGENT_MAX_GRACE_MS);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  agent_spec_t spec;
  json_int_t rows, cols;
  if (agent_spec_parse (req, &spec, &err) < 0)
    {
      agent_exec_refuse (a, channel, EINVAL, "exec: %s", err->msg);
      agent_spec_release (&spec);
      return;
    }
  json_t *tty = json_object_get (req, "tty");
  if ((tty && !json_is_boolean (tty)) || agent_json_int (req, "rows", 24, 1, AGENT_TTY_MAX_SIZE, &rows) < 0
      || agent_json_int (req, "cols", 80, 1, AGENT_TTY_MAX_SIZE, &cols) < 0)
    {
      agent_exec_refuse (a, channel, EINVAL, "exec: `tty` must be a boolean, `rows` and `cols` from 1 to %d",
                         AGENT_TTY_MAX_SIZE);
      agent_spec_release (&spec);
      return;
    }
  spec.tty = json_is_true (tty);
  spec.rows = (unsigned short)rows;
  spec.cols = (unsigned short)cols;
  agent_proc_t p;
  if (agent_fork (&spec, true, &p) < 0)
    {
      agent_exec_refuse (a, channel, errno, "exec: %s", strerror (errno));
      agent_spec_release (&spec);
      return;
    }
  if (p.failed)
    {
      /* The child exits 127 and is reaped like any orphan; the session never existed. */
      cleanup_free char *text = agent_failure_text (&spec, &p.failure);
      agent_exec_refuse (a, channel, p.failure.errnum, "%s", text);
      int fds[] = { p.in_fd, p.out_fd, p.err_fd, p.tty_fd };
      for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
          close (fds[i]);
      agent_spec_release (&spec);
      return;
    }
  nex_agent_log ("exec session %u: started `%s` as pid %d", (unsigned)channel, spec.path, (int)p.pid);
  agent_spec_release (&spec);
  *x = (agent_exec_t){ .channel = channel, .pid = p.pid, .out_fd = p.out_fd, .err_fd = p.err_fd, .in_fd = p.in_fd,
                       .tty_fd = p.tty_fd, .deadline = timeout > 0 ? agent_now_ms () + timeout : 0 };
  agent_exec_reply (a, channel, NEX_WIRE_STARTED, json_pack ("{s:i}", "pid", (int)p.pid));
}

static void
agent_handle_stdin (agent_t *a, const nex_wire_frame_t *f)
{
  agent_exec_t *x = agent_exec_find (a, f->channel);
  if (x == NULL)
    {
      agent_queue_error (a, true, NULL, "stdin on channel %u: no such exec session", (unsigned)f->channel);
      return;
    }
  if (x->in_eof)
    return; /* after EOF: nothing more can be delivered */
  if (f->len == 0)
    x->in_eof = true;
  else if (x->in_fd >= 0)
    {
      if (x->in_len + f->len > AGENT_EXEC_STDIN_LIMIT)
        {
          /* A process that does not read its stdin must not make PID 1 buffer without bound. */
          nex_agent_log ("exec session %u: stdin beyond %u bytes; closing it", (unsigned)x->channel,
                     AGENT_EXEC_STDIN_LIMIT);
          x->in_len = 0;
          x->in_eof = true;
        }
      else
        {
          x->in_buf = nex_xrealloc (x->in_buf, x->in_len + f->len);
          memcpy (x->in_buf + x->in_len, f->payload, f->len);
          x->in_len += f->len;
        }
    }
  agent_exec_write_stdin (x);
}

static void
agent_handle_signal (agent_t *a, uint16_t channel, json_t *req)
{
  json_int_t sig;
  if (agent_json_int (req, "signal", 0, 1, NSIG - 1, &sig) < 0 || sig == 0)
    {
      agent_queue_error (a, true, NULL, "signal: `signal` must be an integer from 1 to %d", NSIG - 1);
      return;
    }
  if (channel == 0)
    {
      if (a->state == AGENT_RUNNING)
        kill (a->pid, (int)sig);
      return;
    }
  agent_exec_t *x = agent_exec_find (a, channel);
  if (x == NULL || x->ended)
    return;
  /* On a terminal, a signal is what a key (^C, ^Z) would send: to the foreground process group.  SIGKILL is how
   * the host ends a session whose client is gone: the foreground job and the session's own process group too. */
  pid_t fg = x->tty_fd >= 0 ? tcgetpgrp (x->tty_fd) : -1;
  if (fg > 0 && fg != x->pid)
    kill (-fg, (int)sig);
  if (sig == SIGKILL)
    kill (-x->pid, SIGKILL);
  if (fg <= 0 || fg == x->pid || sig == SIGKILL)
    kill (x->pid, (int)sig);
}

/* RESIZE {rows, cols} on a TTY session: the terminal's new window size (the kernel sends SIGWINCH). */
static void
agent_handle_resize (agent_t *a, uint16_t channel, json_t *req)
{
  json_int_t rows, cols;
  agent_exec_t *x = agent_exec_find (a, channel);
  if (agent_json_int (req, "rows", 0, 1, AGENT_TTY_MAX_SIZE, &rows) < 0
      || agent_json_int (req, "cols", 0, 1, AGENT_TTY_MAX_SIZE, &cols) < 0 || rows == 0 || cols == 0)
    {
      agent_queue_error (a, true, NULL, "resize: `rows` and `cols` must be integers from 1 to %d",
                         AGENT_TTY_MAX_SIZE);
      return;
    }
  if (x == NULL || x->tty_fd < 0)
    return; /* ended meanwhile, or not a terminal: nothing to resize */
  struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
  if (ioctl (x->tty_fd, TIOCSWINSZ, &ws) < 0)
    nex_agent_log ("exec session %u: resize: %s", (unsigned)channel, strerror (errno));
}

/* Reads one chunk of session X's output (see agent_read_output). */
static void
agent_exec_read (agent_t *a, agent_exec_t *x, int *fd, nex_wire_type_t type)
{
  static uint8_t buf[AGENT_CHUNK];
  ssize_t n = read (*fd, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0)
    {
      close (*fd);
      *fd = -1;
      agent_exec_check_drained (a, x);
      return;
    }
  agent_queue_output (a, type, x->channel, buf, (size_t)n, &x->dropped_bytes);
}

static void
agent_exec_deadlines (agent_t *a, int64_t now)
{
  for (int i = 0; i < AGENT_MAX_EXECS; i++)
    {
      agent_exec_t *x = &a->execs[i];
      if (x->channel == 0)
        continue;
      if (!x->ended && x->deadline && now >= x->deadline)
        {
          nex_agent_log ("exec session %u: timed out; killing pid %d", (unsigned)x->channel, (int)x->pid);
          kill (-x->pid, SIGKILL);
          kill (x->pid, SIGKILL);
          x->timed_out = true;
          x->deadline = 0;
        }
      if (x->ended && now >= x->drain_deadline)
        {
          if (x->out_fd >= 0)
            close (x->out_fd);
          if (x->err_fd >= 0)
            close (x->err_fd);
          x->out_fd = x->err_fd = -1;
          agent_exec_check_drained (a, x);
        }
    }
}

/* As init, every orphan in the namespace becomes our child: reap them all, or they pile up as zombies. */
static void
agent_reap (agent_t *a)
{
  for (;;)
    {
      int status;
      pid_t p = waitpid (-1, &status, WNOHANG);
      if (p <= 0)
        return;
      if (p == a->pid && a->state == AGENT_RUNNING)
        agent_workload_ended (a, status);
      else
        agent_exec_ended (a, p, status);
    }
}

/* Reads one chunk of workload output.  Never blocks; EOF or an error closes that pipe. */
static void
agent_read_output (agent_t *a, int *fd, nex_wire_type_t type)
{
  static uint8_t buf[AGENT_CHUNK];
  ssize_t n = read (*fd, buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0)
    {
      close (*fd);
      *fd = -1;
      agent_check_drained (a);
      return;
    }
  agent_queue_output (a, type, 0, buf, (size_t)n, &a->dropped_bytes);
}

/* --- requests from the host ----------------------------------------------------------------------------------- */

static void
agent_handle_start (agent_t *a, json_t *req)
{
  if (a->state == AGENT_EXITED)
    {
      /* A restart (the host's restart policy): the same sandbox, a fresh process.  The EXIT of the last run is
       * queued ahead of what the new run produces, so the host sees them in order. */
      nex_agent_log ("restarting the workload");
      json_decref (a->exit_info);
      a->exit_info = NULL;
      a->exec_failed = false;
      a->dropped_bytes = 0;
      a->pid = 0;
      a->state = AGENT_IDLE;
    }
  if (a->state != AGENT_IDLE)
    {
      agent_queue_error (a, true, "start", "start: the workload was already started (pid %d)", (int)a->pid);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  agent_spec_t spec;
  json_t *park = json_object_get (req, "park");
  if (agent_spec_parse (req, &spec, &err) < 0)
    agent_queue_error (a, true, "start", "%s", err->msg);
  else if (park != NULL && !json_is_boolean (park))
    agent_queue_error (a, true, "start", "start: `park` must be a boolean");
  else
    {
      spec.park = json_is_true (park);
      agent_spawn (a, &spec);
    }
  agent_spec_release (&spec);
}

/* Reads an optional integer field KEY of OBJ within [MIN, MAX]; DEF when absent or null. */
static int
agent_json_int (json_t *obj, const char *key, json_int_t def, json_int_t min, json_int_t max, json_int_t *out)
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

static void
agent_handle_stop (agent_t *a, json_t *req)
{
  json_int_t sig, grace;
  if (agent_json_int (req, "signal", SIGTERM, 1, NSIG - 1, &sig) < 0)
    {
      agent_queue_error (a, true, NULL, "stop: `signal` must be an integer from 1 to %d", NSIG - 1);
      return;
    }
  if (agent_json_int (req, "grace_ms", AGENT_STOP_GRACE_MS, 0, AGENT_MAX_GRACE_MS, &grace) < 0)
    {
      agent_queue_error (a, true, NULL, "stop: `grace_ms` must be an integer from 0 to %d", AGENT_MAX_GRACE_MS);
      return;
    }
  if (a->state == AGENT_IDLE)
    {
      agent_queue_error (a, true, NULL, "stop: no workload has been started");
      return;
    }
  /* After the end a STOP is a harmless race with the EXIT already on its way: nothing to do, nothing to say. */
  agent_stop (a, (int)sig, grace);
}

/* Handles one frame; -1 when it is malformed (the connection is then rejected). */
static int
agent_handle_frame (agent_t *a, const nex_wire_frame_t *f, nex_error_t *err)
{
  if (f->type == NEX_WIRE_STDIN && f->channel != 0)
    {
      agent_handle_stdin (a, f);
      return 0;
    }
  if (f->channel != 0 && f->type != NEX_WIRE_EXEC && f->type != NEX_WIRE_SIGNAL && f->type != NEX_WIRE_RESIZE)
    {
      agent_queue_error (a, true, NULL, "%s on channel %u: only exec, stdin, signal and resize belong to exec sessions",
                         nex_wire_type_name (f->type), (unsigned)f->channel);
      return 0;
    }
  if (!nex_wire_type_is_json (f->type))
    {
      agent_queue_error (a, true, NULL, "%s frames are not accepted by the agent", nex_wire_type_name (f->type));
      return 0;
    }
  cleanup_json json_t *req = nex_wire_frame_json (f, err);
  if (req == NULL)
    return -1;

  switch (f->type)
    {
    case NEX_WIRE_START:
      agent_handle_start (a, req);
      break;
    case NEX_WIRE_STOP:
      agent_handle_stop (a, req);
      break;
    case NEX_WIRE_EXEC:
      if (f->channel == 0)
        agent_queue_error (a, true, NULL, "exec: channel 0 is the workload's; use a fresh channel");
      else
        agent_handle_exec (a, f->channel, req);
      break;
    case NEX_WIRE_SIGNAL:
      agent_handle_signal (a, f->channel, req);
      break;
    case NEX_WIRE_RESIZE:
      agent_handle_resize (a, f->channel, req);
      break;
    case NEX_WIRE_ACK:
      if (a->state == AGENT_EXITED)
        agent_exit (a, 0);
      agent_queue_error (a, true, NULL, "ack: the workload has not exited");
      break;
    case NEX_WIRE_HELLO:
      /* A host on a stream cannot re-dial; its HELLO asks for a fresh greeting instead. */
      agent_queue_hello_nonce (a, json_object_get (req, "nonce"));
      break;
    case NEX_WIRE_ERROR:
      {
        /* Never answered, so that two ends refusing each other cannot loop. */
        const char *m = json_string_value (json_object_get (req, "message"));
        nex_agent_log ("host reports an error: %.200s", m ? m : "(no message)");
        break;
      }
    default:
      agent_queue_error (a, true, NULL, "unexpected %s frame", nex_wire_type_name (f->type));
      break;
    }
  return 0;
}

/* Reads what the host sent and handles every complete frame. */
static void
agent_conn_read (agent_t *a)
{
  uint8_t buf[AGENT_CHUNK];
  int fd = a->conn_fd;
  size_t want = nex_wire_reader_room (&a->reader);
  ssize_t n = read (fd, buf, want < sizeof buf ? want : sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0)
    {
      agent_conn_close (a, n == 0 ? "end of stream" : strerror (errno));
      return;
    }

  cleanup_error nex_error_t err = NULL;
  if (nex_wire_reader_feed (&a->reader, buf, (size_t)n, &err) < 0)
    {
      agent_conn_reject (a, err->msg);
      return;
    }
  for (;;)
    {
      nex_wire_frame_t f;
      int r = nex_wire_reader_next (&a->reader, &f, &err);
      if (r == 0)
        break;
      if (r < 0 || agent_handle_frame (a, &f, &err) < 0)
        {
          agent_conn_reject (a, err->msg);
          return;
        }
      if (a->conn_fd != fd)
        return;
    }
  agent_conn_check_replies (a);
}

static void
agent_handle_signals (agent_t *a)
{
  struct signalfd_siginfo si;
  while (read (a->sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
    {
      switch (si.ssi_signo)
        {
        case SIGCHLD:
          agent_reap (a);
          break;
        case SIGTERM:
        case SIGINT:
          /* Sent by whoever shuts the sandbox down (or by the workload itself, which can only stop itself
           * this way): stop the workload as a STOP would; with nothing left to report, leave. */
          if (a->state == AGENT_IDLE || a->state == AGENT_EXITED)
            agent_exit (a, 0);
          agent_stop (a, SIGTERM, AGENT_STOP_GRACE_MS);
          break;
        default:
          break;
        }
    }
}

static void
agent_handle_deadlines (agent_t *a)
{
  int64_t now = agent_now_ms ();
  if (a->state == AGENT_RUNNING && a->stop_deadline && now >= a->stop_deadline)
    {
      nex_agent_log ("pid %d outlived its grace; killing", (int)a->pid);
      agent_kill_all (a);
      a->stop_deadline = 0;
    }
  if (a->state == AGENT_DRAINING && a->drain_deadline && now >= a->drain_deadline)
    {
      nex_agent_log ("output pipes still open %d ms after the workload ended; closing them", AGENT_DRAIN_MS);
      agent_finish (a);
    }
  agent_exec_deadlines (a, now);
}

static int
agent_poll_timeout (const agent_t *a)
{
  int64_t next = 0;
  if (a->state == AGENT_RUNNING && a->stop_deadline)
    next = a->stop_deadline;
  if (a->state == AGENT_DRAINING && a->drain_deadline && (next == 0 || a->drain_deadline < next))
    next = a->drain_deadline;
  for (int i = 0; i < AGENT_MAX_EXECS; i++)
    {
      const agent_exec_t *x = &a->execs[i];
      int64_t t = x->channel == 0 ? 0 : x->ended ? x->drain_deadline : x->deadline;
      if (t && (next == 0 || t < next))
        next = t;
    }
  if (next == 0)
    return -1;
  int64_t left = next - agent_now_ms ();
  return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

static void __attribute__ ((noreturn)) agent_run (agent_t *a)
{
  for (;;)
    {
      struct pollfd p[5 + 3 * AGENT_MAX_EXECS];
      int n = 0, i_sig, i_listen = -1, i_conn = -1, i_out = -1, i_err = -1;
      int x_out[AGENT_MAX_EXECS], x_err[AGENT_MAX_EXECS], x_in[AGENT_MAX_EXECS];
      p[i_sig = n++] = (struct pollfd){ .fd = a->sig_fd, .events = POLLIN };
      if (a->listen_fd >= 0)
        p[i_listen = n++] = (struct pollfd){ .fd = a->listen_fd, .events = POLLIN };
      if (a->conn_fd >= 0)
        p[i_conn = n++] = (struct pollfd){ .fd = a->conn_fd, .events = POLLIN | (a->head ? POLLOUT : 0) };
      if (a->out_fd >= 0)
        p[i_out = n++] = (struct pollfd){ .fd = a->out_fd, .events = POLLIN };
      if (a->err_fd >= 0)
        p[i_err = n++] = (struct pollfd){ .fd = a->err_fd, .events = POLLIN };
      for (int i = 0; i < AGENT_MAX_EXECS; i++)
        {
          agent_exec_t *x = &a->execs[i];
          x_out[i] = x_err[i] = x_in[i] = -1;
          if (x->channel == 0)
            continue;
          if (x->out_fd >= 0)
            p[x_out[i] = n++] = (struct pollfd){ .fd = x->out_fd, .events = POLLIN };
          if (x->err_fd >= 0)
            p[x_err[i] = n++] = (struct pollfd){ .fd = x->err_fd, .events = POLLIN };
          if (x->in_fd >= 0 && x->in_len > 0)
            p[x_in[i] = n++] = (struct pollfd){ .fd = x->in_fd, .events = POLLOUT };
        }

      if (poll (p, (nfds_t)n, agent_poll_timeout (a)) < 0)
        {
          if (errno == EINTR)
            continue;
          nex_agent_log ("poll: %s", strerror (errno));
          exit (1);
        }

      if (p[i_sig].revents)
        agent_handle_signals (a);
      /* Output first, so that what the workload wrote is queued ahead of an EXIT this round may produce. */
      if (i_out >= 0 && p[i_out].revents && a->out_fd >= 0)
        agent_read_output (a, &a->out_fd, NEX_WIRE_STDOUT);
      if (i_err >= 0 && p[i_err].revents && a->err_fd >= 0)
        agent_read_output (a, &a->err_fd, NEX_WIRE_STDERR);
      /* A descriptor is used only if the session still holds it: one round may end a session and start another. */
      for (int i = 0; i < AGENT_MAX_EXECS; i++)
        {
          agent_exec_t *x = &a->execs[i];
          if (x_out[i] >= 0 && p[x_out[i]].revents && x->out_fd == p[x_out[i]].fd)
            agent_exec_read (a, x, &x->out_fd, NEX_WIRE_STDOUT);
          if (x_err[i] >= 0 && p[x_err[i]].revents && x->err_fd == p[x_err[i]].fd)
            agent_exec_read (a, x, &x->err_fd, NEX_WIRE_STDERR);
          if (x_in[i] >= 0 && p[x_in[i]].revents && x->in_fd == p[x_in[i]].fd)
            agent_exec_write_stdin (x);
        }
      if (i_conn >= 0 && a->conn_fd == p[i_conn].fd)
        {
          if (p[i_conn].revents & (POLLIN | POLLHUP | POLLERR))
            agent_conn_read (a);
          if (a->conn_fd >= 0 && (p[i_conn].revents & POLLOUT))
            agent_flush (a);
        }
      if (i_listen >= 0 && (p[i_listen].revents & POLLIN))
        agent_accept (a);
      agent_handle_deadlines (a);
    }
}

/* --- start-up ------------------------------------------------------------------------------------------------- */

/* Descriptors 0-2 must be open before anything else is: as PID 1 of a VM they may not be, and a pipe or socket
 * landing on 1 or 2 would then receive the agent's diagnostics, or be clobbered by the child's dup2. */
static void
agent_fill_std_fds (void)
{
  for (int fd = 0; fd < 3; fd++)
    {
      if (fcntl (fd, F_GETFD) >= 0 || errno != EBADF)
        continue;
      int nfd = open ("/dev/null", O_RDWR);
      if (nfd < 0)
        nfd = open ("/", O_RDONLY | O_DIRECTORY);
      if (nfd < 0)
        {
          /* Nothing to hold the slot with: an empty pipe's ends will do. */
          int p[2];
          if (pipe (p) < 0)
            _exit (1);
          nfd = p[0];
        }
      if (nfd != fd)
        _exit (1); /* lower slots are filled first, so this cannot happen */
    }
}

static void
agent_usage (FILE *out)
{
  fprintf (out,
           "Usage: nex-agent [--listen-fd N | --stream-fd N | --stream-path PATH]\n"
           "\n"
           "Runs as PID 1 of a Nex sandbox or VM and serves the host<->agent wire protocol.\n"
           "  --listen-fd N       accept host connections on listening socket N (default: %d)\n"
           "  --stream-fd N       speak over the already connected byte stream N\n"
           "  --stream-path PATH  open PATH (e.g. /dev/hvc0) and speak over it\n"
           "  --help              print this help\n"
           "As /init of a VM (PID 1) it takes no options: it mounts /dev, /proc, /sys and /tmp, loads the image's\n"
           "modules and speaks over the channel the kernel command line names (nex.agent=/dev/hvc0 or vsock:PORT).\n",
           AGENT_DEFAULT_LISTEN_FD);
}

static int
agent_parse_fd (const char *s)
{
  char *end;
  errno = 0;
  long v = strtol (s, &end, 10);
  if (errno || end == s || *end != '\0' || v < 0 || v > INT_MAX)
    {
      nex_agent_log ("invalid descriptor `%s`", s);
      exit (2);
    }
  return (int)v;
}

/* Prepares the transport chosen on the command line; exits with a diagnostic when it is unusable. */
static void
agent_transport_open (agent_t *a, agent_transport_t kind, int fd, const char *path)
{
  a->transport = kind;
  if (kind == AGENT_TRANSPORT_STREAM && path)
    {
      fd = open (path, O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (fd < 0)
        {
          nex_agent_log ("open `%s`: %s", path, strerror (errno));
          exit (1);
        }
    }
  if (fcntl (fd, F_SETFD, FD_CLOEXEC) < 0 || agent_set_nonblock (fd) < 0)
    {
      nex_agent_log ("descriptor %d: %s", fd, strerror (errno));
      exit (1);
    }
  if (kind == AGENT_TRANSPORT_LISTEN)
    {
      int listening = 0;
      socklen_t len = sizeof listening;
      if (getsockopt (fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
        {
          nex_agent_log ("descriptor %d is not a listening socket", fd);
          exit (1);
        }
      a->listen_fd = fd;
      return;
    }
  /* A console's line discipline would echo the host's bytes back and rewrite newlines and control characters,
   * corrupting frames in both directions: the terminal must pass bytes through untouched. */
  struct termios t;
  if (isatty (fd) && tcgetattr (fd, &t) == 0)
    {
      cfmakeraw (&t);
      if (tcsetattr (fd, TCSANOW, &t) < 0)
        nex_agent_log ("cannot make the console raw: %s", strerror (errno));
    }
  a->conn_fd = fd;
  agent_queue_hello (a);
}

int
main (int argc, char **argv)
{
  static const struct option opts[] = {
    { "listen-fd", required_argument, NULL, 'l' },
    { "stream-fd", required_argument, NULL, 's' },
    { "stream-path", required_argument, NULL, 'p' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  agent_transport_t kind = AGENT_TRANSPORT_LISTEN;
  int fd = AGENT_DEFAULT_LISTEN_FD;
  const char *path = NULL;
  int c, chosen = 0;
  /* As a VM's /init the agent takes no options: the kernel hands unknown boot parameters to init as arguments. */
  bool vm_init = getpid () == 1 && argv[0] && strcmp (argv[0], NEX_VM_INIT) == 0;
  while (!vm_init && (c = getopt_long (argc, argv, "", opts, NULL)) != -1)
    {
      switch (c)
        {
        case 'l':
          kind = AGENT_TRANSPORT_LISTEN;
          fd = agent_parse_fd (optarg);
          break;
        case 's':
          kind = AGENT_TRANSPORT_STREAM;
          fd = agent_parse_fd (optarg);
          break;
        case 'p':
          kind = AGENT_TRANSPORT_STREAM;
          path = optarg;
          break;
        case 'h':
          agent_usage (stdout);
          return 0;
        default:
          agent_usage (stderr);
          return 2;
        }
      chosen++;
    }
  if (!vm_init && (optind < argc || chosen > 1))
    {
      agent_usage (stderr);
      return 2;
    }

  bool vm = nex_agent_vm_detect (argv[0], chosen > 0);
  if (vm)
    nex_agent_vm_init ();
  agent_fill_std_fds ();
  /* Out of memory is fatal everywhere in Nex; jansson allocates through the same aborting allocator, so no
   * JSON call below can fail half-way for lack of memory. */
  json_set_alloc_funcs (nex_xmalloc, free);

  agent_t a = {
    .listen_fd = -1,
    .conn_fd = -1,
    .out_fd = -1,
    .err_fd = -1,
    .sig_fd = -1,
    .is_init = getpid () == 1,
  };
  nex_wire_reader_init (&a.reader);
  for (int i = 0; i < AGENT_MAX_EXECS; i++)
    a.execs[i].out_fd = a.execs[i].err_fd = a.execs[i].in_fd = a.execs[i].tty_fd = -1;

  /* The workload runs as the same user: without this it could ptrace the agent or read its memory and speak
   * to the host in the agent's name.  execve restores the flag for the workload itself. */
  prctl (PR_SET_DUMPABLE, 0, 0, 0, 0);

  /* A host that hangs up must cost a write error, not PID 1's life. */
  signal (SIGPIPE, SIG_IGN);

  sigset_t mask;
  sigemptyset (&mask);
  sigaddset (&mask, SIGCHLD);
  sigaddset (&mask, SIGTERM);
  sigaddset (&mask, SIGINT);
  if (sigprocmask (SIG_BLOCK, &mask, NULL) < 0 || (a.sig_fd = signalfd (-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
    {
      nex_agent_log ("signalfd: %s", strerror (errno));
      return 1;
    }

  if (vm)
    {
      nex_agent_vm_channel_t ch;
      if (nex_agent_vm_channel (&ch) < 0)
        return 1; /* and the VM powers off: the host sees it end, the console says why */
      kind = ch.listening ? AGENT_TRANSPORT_LISTEN : AGENT_TRANSPORT_STREAM;
      fd = ch.fd;
      path = NULL;
    }
  agent_transport_open (&a, kind, fd, path);
  agent_run (&a);
}
