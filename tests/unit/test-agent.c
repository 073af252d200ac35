/* SPDX-License-Identifier: Apache-2.0 */
/* test-agent.c — an end-to-end test of the real nex-agent.
 *
 * Spawns the nex-agent binary (found via $NEX_AGENT, default ./nex-agent, i.e. run from the build directory) on a
 * unix socket in a temporary directory, or on a pre-connected stream, and speaks the wire protocol
 * (common/wire.h) to it as nexd would: greeting, START, output, EXIT, ACK, restarts, exec sessions, hardening
 * fields, STOP, signals, malformed input, re-attaching, output kept while no host is connected, a flood of
 * output.  The agent is not PID 1 here and runs the host's /bin/sh, which is enough to test the protocol and
 * process handling; the sandbox around it is tested by the integration tests. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/wire.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "tests/unit/testutil.h"
#include "tests/unit/tap.h"

/* --- the host side -------------------------------------------------------------------------------------------- */

#define TIMEOUT_MS 10000

static const char *agent_bin;
static char tmpdir[] = "/tmp/nex-test-agent-XXXXXX";
static int sock_counter;

typedef struct agent_proc
{
  pid_t pid;
  char path[108]; /* socket the agent listens on (empty for a stream agent) */
} agent_proc_t;

typedef struct host
{
  int fd;
  nex_wire_reader_t r;
} host_t;

/* A received frame with its own copy of the payload. */
typedef struct frame
{
  nex_wire_type_t type;
  uint16_t channel;
  size_t len;
  uint8_t *data;
  json_t *json; /* parsed for JSON types */
} frame_t;

static void
frame_clear (frame_t *f)
{
  free (f->data);
  json_decref (f->json);
  memset (f, 0, sizeof *f);
}

static int64_t
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms (int ms)
{
  struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
  nanosleep (&ts, NULL);
}

/* Starts `nex-agent OPT 3` with FD moved to descriptor 3. */
static pid_t
spawn_agent (int fd, const char *opt)
{
  pid_t pid = fork ();
  if (pid == 0)
    {
      if (fd != 3)
        {
          dup2 (fd, 3);
          close (fd);
        }
      else
        fcntl (3, F_SETFD, 0);
      execl (agent_bin, "nex-agent", opt, "3", (char *)NULL);
      _exit (127);
    }
  return pid;
}

static int
agent_start (agent_proc_t *ag)
{
  memset (ag, 0, sizeof *ag);
  snprintf (ag->path, sizeof ag->path, "%s/agent-%d.sock", tmpdir, sock_counter++);
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  strcpy (sa.sun_path, ag->path);
  if (fd < 0 || bind (fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen (fd, 8) < 0)
    return -1;
  ag->pid = spawn_agent (fd, "--listen-fd");
  close (fd);
  return ag->pid > 0 ? 0 : -1;
}

static void
host_init (host_t *h, int fd)
{
  h->fd = fd;
  nex_wire_reader_init (&h->r);
}

static int
host_connect (host_t *h, const agent_proc_t *ag)
{
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  strcpy (sa.sun_path, ag->path);
  if (fd < 0 || connect (fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    {
      if (fd >= 0)
        close (fd);
      host_init (h, -1);
      return -1;
    }
  host_init (h, fd);
  return 0;
}

static void
host_close (host_t *h)
{
  if (h->fd >= 0)
    close (h->fd);
  h->fd = -1;
  nex_wire_reader_release (&h->r);
}

/* Receives one frame.  1 with a frame, 0 at end of stream, -1 on timeout or a protocol error. */
static int
host_recv (host_t *h, frame_t *out, int timeout_ms)
{
  memset (out, 0, sizeof *out);
  int64_t deadline = now_ms () + timeout_ms;
  for (;;)
    {
      nex_wire_frame_t f;
      int rc = nex_wire_reader_next (&h->r, &f, NULL);
      if (rc < 0)
        return -1;
      if (rc == 1)
        {
          out->type = f.type;
          out->channel = f.channel;
          out->len = f.len;
          out->data = nex_xmalloc (f.len + 1);
          memcpy (out->data, f.payload, f.len);
          out->data[f.len] = 0;
          if (nex_wire_type_is_json (f.type))
            out->json = nex_wire_frame_json (&f, NULL);
          return 1;
        }
      int64_t left = deadline - now_ms ();
      if (left <= 0 || h->fd < 0)
        return -1;
      struct pollfd p = { .fd = h->fd, .events = POLLIN };
      if (poll (&p, 1, (int)left) <= 0)
        continue;
      uint8_t buf[65536];
      size_t room = nex_wire_reader_room (&h->r);
      ssize_t n = read (h->fd, buf, room < sizeof buf ? room : sizeof buf);
      if (n == 0 || (n < 0 && errno == ECONNRESET))
        return 0;
      if (n < 0)
        return -1;
      if (nex_wire_reader_feed (&h->r, buf, (size_t)n, NULL) < 0)
        return -1;
    }
}

/* Receives frames until one of TYPE, skipping output; returns its JSON (new reference) or NULL. */
static json_t *
host_expect (host_t *h, nex_wire_type_t type, int timeout_ms)
{
  int64_t deadline = now_ms () + timeout_ms;
  for (;;)
    {
      frame_t f;
      int64_t left = deadline - now_ms ();
      if (left <= 0 || host_recv (h, &f, (int)left) != 1)
        return NULL;
      if (f.type == type)
        {
          json_t *j = f.json ? json_incref (f.json) : json_object ();
          frame_clear (&f);
          return j;
        }
      int output = f.type == NEX_WIRE_STDOUT || f.type == NEX_WIRE_STDERR;
      if (!output)
        fprintf (stderr, "# skipped a %s frame: %.*s\n", nex_wire_type_name (f.type), (int)f.len, f.data);
      frame_clear (&f);
      if (!output)
        return NULL;
    }
}

static int
host_send (host_t *h, nex_wire_type_t type, const char *json_text)
{
  cleanup_json json_t *o = json_loads (json_text, 0, NULL);
  if (o == NULL)
    {
      fprintf (stderr, "# bad test JSON: %s\n", json_text);
      return -1;
    }
  return nex_wire_send_json (h->fd, type, 0, o, NULL);
}

/* Waits for the agent to exit; its exit code, -2 if it was killed by a signal, -1 on timeout. */
static int
agent_wait (agent_proc_t *ag, int timeout_ms)
{
  int64_t deadline = now_ms () + timeout_ms;
  while (now_ms () < deadline)
    {
      int st;
      pid_t p = waitpid (ag->pid, &st, WNOHANG);
      if (p == ag->pid)
        {
          ag->pid = 0;
          return WIFEXITED (st) ? WEXITSTATUS (st) : -2;
        }
      sleep_ms (10);
    }
  return -1;
}

static int
agent_alive (const agent_proc_t *ag)
{
  int st;
  return ag->pid > 0 && waitpid (ag->pid, &st, WNOHANG) == 0;
}

/* Tears down what a failed test may have left. */
static void
agent_kill (agent_proc_t *ag, pid_t workload)
{
  if (workload > 0)
    kill (-workload, SIGKILL);
  if (ag->pid > 0)
    {
      kill (ag->pid, SIGKILL);
      waitpid (ag->pid, NULL, 0);
      ag->pid = 0;
    }
  if (ag->path[0])
    unlink (ag->path);
}

/* ACKs the workload's EXIT and checks (the check named WHAT) that the agent then exits 0; tears down what is left
 * either way (WORKLOAD: a process group to kill, 0 for none). */
static void
ack_and_teardown (agent_proc_t *ag, host_t *h, pid_t workload, const char *what)
{
  host_send (h, NEX_WIRE_ACK, "{}");
  TAP_OK (agent_wait (ag, TIMEOUT_MS) == 0, "%s", what);
  host_close (h);
  agent_kill (ag, workload);
}

static json_int_t
jint (json_t *o, const char *key)
{
  json_t *v = json_object_get (o, key);
  return json_is_integer (v) ? json_integer_value (v) : -1;
}

static const char *
jstr (json_t *o, const char *key)
{
  const char *s = json_string_value (json_object_get (o, key));
  return s ? s : "";
}

/* Collects output until EXIT.  Returns the EXIT payload (or NULL); OUT/ERR receive the output. */
typedef struct run
{
  char *out, *err;
  size_t out_len, err_len, max_frame;
  json_t *exit;
  json_t *error;
} run_t;

static void
run_clear (run_t *r)
{
  free (r->out);
  free (r->err);
  json_decref (r->exit);
  json_decref (r->error);
  memset (r, 0, sizeof *r);
}

static int
collect (host_t *h, run_t *run, int timeout_ms)
{
  int64_t deadline = now_ms () + timeout_ms;
  for (;;)
    {
      frame_t f;
      int64_t left = deadline - now_ms ();
      if (left <= 0 || host_recv (h, &f, (int)left) != 1)
        return -1;
      char **buf = NULL;
      size_t *len = NULL;
      if (f.type == NEX_WIRE_STDOUT)
        buf = &run->out, len = &run->out_len;
      else if (f.type == NEX_WIRE_STDERR)
        buf = &run->err, len = &run->err_len;
      if (buf)
        {
          *buf = nex_xrealloc (*buf, *len + f.len + 1);
          memcpy (*buf + *len, f.data, f.len);
          *len += f.len;
          (*buf)[*len] = 0;
          if (f.len > run->max_frame)
            run->max_frame = f.len;
        }
      else if (f.type == NEX_WIRE_ERROR && run->error == NULL)
        run->error = json_incref (f.json);
      else if (f.type == NEX_WIRE_EXIT)
        {
          run->exit = json_incref (f.json);
          frame_clear (&f);
          return 0;
        }
      frame_clear (&f);
    }
}

static int
connect_retry (host_t *h, const agent_proc_t *ag)
{
  for (int i = 0; i < 200; i++)
    {
      if (host_connect (h, ag) == 0)
        return 0;
      sleep_ms (10);
    }
  return -1;
}

static void
test_agent_basic (void)
{
  agent_proc_t ag;
  host_t h;
  pid_t wpid = 0;
  host_init (&h, -1);
  int connected = agent_start (&ag) == 0 && connect_retry (&h, &ag) == 0;
  TAP_OK (connected, "agent: host connects to the listening socket");

  cleanup_json json_t *hello = host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS);
  TAP_OK (hello && jint (hello, "version") == NEX_WIRE_VERSION && strcmp (jstr (hello, "state"), "idle") == 0
              && jint (hello, "agent_pid") == ag.pid,
          "agent: HELLO {version 1, state idle, agent_pid} on accept");

  cleanup_json json_t *err0 = NULL;
  host_send (&h, NEX_WIRE_STOP, "{}");
  err0 = host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS);
  TAP_OK (err0 && strstr (jstr (err0, "message"), "no workload"), "agent: STOP before START gets ERROR");

  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"echo out; echo err >&2; exit 3\"]}");
  cleanup_json json_t *started = host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS);
  wpid = (pid_t)(started ? jint (started, "pid") : 0);
  TAP_OK (started && wpid > 0, "agent: START /bin/sh gets STARTED {pid}");

  run_t run = { 0 };
  int rc = collect (&h, &run, TIMEOUT_MS);
  TAP_OK (rc == 0 && run.out && strcmp (run.out, "out\n") == 0, "agent: STDOUT frames carry \"out\\n\"");
  TAP_OK (rc == 0 && run.err && strcmp (run.err, "err\n") == 0, "agent: STDERR frames carry \"err\\n\"");
  TAP_OK (run.exit && jint (run.exit, "code") == 3 && json_object_get (run.exit, "signal") == NULL
              && jint (run.exit, "dropped_bytes") == 0,
          "agent: EXIT {code 3, dropped_bytes 0}");
  run_clear (&run);

  /* After the EXIT, a START is a restart (the host's restart policy) in the same agent. */
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"sleep 0.3; exit 4\"]}");
  cleanup_json json_t *restarted = host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS);
  TAP_OK (restarted && jint (restarted, "pid") > 0 && jint (restarted, "pid") != wpid,
          "agent: START after EXIT restarts the workload (a new pid)");
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/true\"}");
  cleanup_json json_t *err1 = host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS);
  TAP_OK (err1 && strstr (jstr (err1, "message"), "already"), "agent: a START while running gets ERROR");
  TAP_OK (collect (&h, &run, TIMEOUT_MS) == 0 && run.exit && jint (run.exit, "code") == 4,
          "agent: the restarted run reports its own EXIT {code 4}");
  run_clear (&run);

  host_send (&h, NEX_WIRE_STOP, "{}");
  ack_and_teardown (&ag, &h, 0, "agent: STOP after exit is ignored; ACK makes the agent exit 0");
}

static json_t *agent_attach (agent_proc_t *ag, host_t *h);

/* As collect, for the frames of exec session CHANNEL only (ERROR ends it too). */
static int
collect_on (host_t *h, uint16_t channel, run_t *run, int timeout_ms)
{
  int64_t deadline = now_ms () + timeout_ms;
  for (;;)
    {
      frame_t f;
      int64_t left = deadline - now_ms ();
      if (left <= 0 || host_recv (h, &f, (int)left) != 1)
        return -1;
      if (f.channel != channel)
        {
          frame_clear (&f);
          continue;
        }
      char **buf = f.type == NEX_WIRE_STDOUT ? &run->out : f.type == NEX_WIRE_STDERR ? &run->err : NULL;
      size_t *len = f.type == NEX_WIRE_STDOUT ? &run->out_len : &run->err_len;
      if (buf)
        {
          *buf = nex_xrealloc (*buf, *len + f.len + 1);
          memcpy (*buf + *len, f.data, f.len);
          *len += f.len;
          (*buf)[*len] = 0;
        }
      int done = f.type == NEX_WIRE_EXIT || f.type == NEX_WIRE_ERROR;
      if (f.type == NEX_WIRE_EXIT)
        run->exit = json_incref (f.json);
      if (f.type == NEX_WIRE_ERROR)
        run->error = json_incref (f.json);
      frame_clear (&f);
      if (done)
        return 0;
    }
}

/* Exec sessions beside a running workload: stdin in, output and exit status out on the session's channel; a
 * missing program is an ERROR with errno 2; a timeout kills; EXEC is refused once the workload has ended. */
static void
test_agent_exec_sessions (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sleep\",\"argv\":[\"sleep\",\"30\"]}");
  cleanup_json json_t *started = hello ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  TAP_OK (started != NULL, "agent exec: the workload runs");

  nex_wire_send (h.fd, NEX_WIRE_EXEC, 5, "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"cat; echo e >&2; exit 6\"]}",
                 strlen ("{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"cat; echo e >&2; exit 6\"]}"), NULL);
  nex_wire_send (h.fd, NEX_WIRE_STDIN, 5, "hi\n", 3, NULL);
  nex_wire_send (h.fd, NEX_WIRE_STDIN, 5, NULL, 0, NULL);
  run_t run = { 0 };
  int rc = collect_on (&h, 5, &run, TIMEOUT_MS);
  TAP_OK (rc == 0 && run.out && strcmp (run.out, "hi\n") == 0 && run.err && strcmp (run.err, "e\n") == 0 && run.exit
              && jint (run.exit, "code") == 6 && json_is_false (json_object_get (run.exit, "timed_out")),
          "agent exec: stdin reaches the session, its stdout/stderr/EXIT {code 6} come back on its channel");
  run_clear (&run);

  const char *missing = "{\"path\":\"/no/such/tool\",\"argv\":[\"/no/such/tool\"]}";
  nex_wire_send (h.fd, NEX_WIRE_EXEC, 6, missing, strlen (missing), NULL);
  rc = collect_on (&h, 6, &run, TIMEOUT_MS);
  TAP_OK (rc == 0 && run.error && jint (run.error, "errno") == ENOENT
              && strstr (jstr (run.error, "message"), "/no/such/tool"),
          "agent exec: a missing program is ERROR {errno 2} on the session's channel");
  run_clear (&run);

  const char *slow = "{\"path\":\"/bin/sleep\",\"argv\":[\"sleep\",\"10\"],\"timeout_ms\":200}";
  nex_wire_send (h.fd, NEX_WIRE_EXEC, 7, slow, strlen (slow), NULL);
  rc = collect_on (&h, 7, &run, TIMEOUT_MS);
  TAP_OK (rc == 0 && run.exit && jint (run.exit, "signal") == SIGKILL
              && json_is_true (json_object_get (run.exit, "timed_out")),
          "agent exec: timeout_ms kills the session (EXIT {signal 9, timed_out})");
  run_clear (&run);

  /* A TTY session: a pseudo-terminal of the asked size, the session's controlling terminal; RESIZE changes its size
   * (ordered with the input, so the second `stty size` sees it); everything comes back as STDOUT. */
  const char *tty = "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"stty size; tty; read l; stty size; echo got=$l; "
                    "exit 2\"],\"tty\":true,\"rows\":7,\"cols\":33}";
  nex_wire_send (h.fd, NEX_WIRE_EXEC, 9, tty, strlen (tty), NULL);
  nex_wire_send (h.fd, NEX_WIRE_RESIZE, 9, "{\"rows\":9,\"cols\":44}", strlen ("{\"rows\":9,\"cols\":44}"), NULL);
  nex_wire_send (h.fd, NEX_WIRE_STDIN, 9, "abc\n", 4, NULL);
  rc = collect_on (&h, 9, &run, TIMEOUT_MS);
  TAP_OK (rc == 0 && run.out && strstr (run.out, "/dev/pts/") && strstr (run.out, "9 44") && strstr (run.out, "got=abc")
              && run.err == NULL && run.exit && jint (run.exit, "code") == 2,
          "agent exec: a TTY session runs on a pseudo-terminal, resized by RESIZE, output as STDOUT");
  run_clear (&run);
  const char *bad_tty = "{\"path\":\"/bin/true\",\"tty\":true,\"rows\":0}";
  nex_wire_send (h.fd, NEX_WIRE_EXEC, 10, bad_tty, strlen (bad_tty), NULL);
  rc = collect_on (&h, 10, &run, TIMEOUT_MS);
  TAP_OK (rc == 0 && run.error && jint (run.error, "errno") == EINVAL, "agent exec: a TTY of 0 rows is refused");
  run_clear (&run);

  host_send (&h, NEX_WIRE_STOP, "{\"grace_ms\":0}");
  TAP_OK (collect (&h, &run, TIMEOUT_MS) == 0 && run.exit, "agent exec: the workload stops");
  run_clear (&run);
  const char *late = "{\"path\":\"/bin/true\"}";
  nex_wire_send (h.fd, NEX_WIRE_EXEC, 8, late, strlen (late), NULL);
  rc = collect_on (&h, 8, &run, TIMEOUT_MS);
  TAP_OK (rc == 0 && run.error && strstr (jstr (run.error, "message"), "not running"),
          "agent exec: refused once the workload has ended");
  run_clear (&run);
  ack_and_teardown (&ag, &h, 0, "agent exec: exits 0 after ACK");
}

/* What one session of test_agent_exec_concurrent saw, in order. */
typedef struct seen
{
  bool started, out_before_started, error, exit;
  int errnum, code;
  char out[64];
} seen_t;

/* Sends EXEC of JSON on CHANNEL and its stdin's EOF. */
static void
exec_on (host_t *h, uint16_t channel, const char *json)
{
  nex_wire_send (h->fd, NEX_WIRE_EXEC, channel, json, strlen (json), NULL);
  nex_wire_send (h->fd, NEX_WIRE_STDIN, channel, NULL, 0, NULL);
}

/* Reads frames until channels FIRST..FIRST+N-1 have all ended (EXIT or ERROR), into SEEN[0..N-1].  -1 on a
 * timeout. */
static int
collect_sessions (host_t *h, uint16_t first, int n, seen_t *seen, int timeout_ms)
{
  int64_t deadline = now_ms () + timeout_ms;
  for (int done = 0; done < n;)
    {
      frame_t f;
      int64_t left = deadline - now_ms ();
      if (left <= 0 || host_recv (h, &f, (int)left) != 1)
        return -1;
      if (f.channel >= first && f.channel < first + n)
        {
          seen_t *x = &seen[f.channel - first];
          if (f.type == NEX_WIRE_STARTED)
            x->started = true;
          if (f.type == NEX_WIRE_STDOUT && !x->started)
            x->out_before_started = true;
          if (f.type == NEX_WIRE_STDOUT && strlen (x->out) + f.len < sizeof x->out)
            strncat (x->out, (const char *)f.data, f.len);
          if (f.type == NEX_WIRE_EXIT)
            x->code = (int)jint (f.json, "code");
          if (f.type == NEX_WIRE_ERROR)
            x->errnum = (int)jint (f.json, "errno");
          x->exit |= f.type == NEX_WIRE_EXIT;
          x->error |= f.type == NEX_WIRE_ERROR;
          done += f.type == NEX_WIRE_EXIT || f.type == NEX_WIRE_ERROR;
        }
      frame_clear (&f);
    }
  return 0;
}

/* Exec sessions run at once: the agent never waits for a child's execve, so 8 sessions that sleep 1 s end
 * together, each with STARTED ahead of its output; a missing program among them is refused on its own channel;
 * past AGENT_MAX_EXECS (16) sessions, an EXEC is refused with EAGAIN while the others run on. */
static void
test_agent_exec_concurrent (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sleep\",\"argv\":[\"sleep\",\"60\"]}");
  cleanup_json json_t *started = hello ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  TAP_OK (started != NULL, "agent concurrent execs: the workload runs");

  const char *nap = "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"sleep 1; echo ok\"]}";
  seen_t seen[9];
  memset (seen, 0, sizeof seen);
  int64_t t0 = now_ms ();
  for (uint16_t c = 20; c < 28; c++)
    exec_on (&h, c, nap);
  exec_on (&h, 28, "{\"path\":\"/no/such/tool\"}");
  int rc = collect_sessions (&h, 20, 9, seen, TIMEOUT_MS);
  int64_t took = now_ms () - t0;
  int good = 0;
  for (int i = 0; i < 8; i++)
    good += seen[i].started && !seen[i].out_before_started && seen[i].exit && seen[i].code == 0
            && strcmp (seen[i].out, "ok\n") == 0;
  TAP_OK (rc == 0 && good == 8 && took < 2500,
          "agent concurrent execs: 8 sessions sleeping 1 s end together (%lld ms), STARTED before output (%d/8)",
          (long long)took, good);
  TAP_OK (seen[8].error && seen[8].errnum == ENOENT && !seen[8].started && !seen[8].exit,
          "agent concurrent execs: a missing program among them is ERROR {errno 2} on its channel alone");

  seen_t flood[18];
  memset (flood, 0, sizeof flood);
  for (uint16_t c = 40; c < 58; c++)
    exec_on (&h, c, nap);
  rc = collect_sessions (&h, 40, 18, flood, TIMEOUT_MS);
  int ran = 0, busy = 0;
  for (int i = 0; i < 18; i++)
    {
      ran += flood[i].exit && flood[i].code == 0;
      busy += flood[i].error && flood[i].errnum == EAGAIN;
    }
  TAP_OK (rc == 0 && ran == 16 && busy == 2, "agent concurrent execs: of 18 at once, 16 run and 2 get EAGAIN (%d, %d)",
          ran, busy);

  run_t run = { 0 };
  host_send (&h, NEX_WIRE_STOP, "{\"grace_ms\":0}");
  TAP_OK (collect (&h, &run, TIMEOUT_MS) == 0 && run.exit, "agent concurrent execs: the workload stops");
  run_clear (&run);
  ack_and_teardown (&ag, &h, 0, "agent concurrent execs: exits 0 after ACK");
}

/* The agent's children (pids), from /proc: N of them into PIDS. */
static int
children_of (pid_t agent, pid_t *pids, int max)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/task/%d/children", (int)agent, (int)agent);
  FILE *f = fopen (path, "r");
  int n = 0, pid;
  while (f && n < max && fscanf (f, "%d", &pid) == 1)
    pids[n++] = pid;
  if (f)
    fclose (f);
  return n;
}

static bool
has_pid (const pid_t *pids, int n, pid_t pid)
{
  for (int i = 0; i < n; i++)
    if (pids[i] == pid)
      return true;
  return false;
}

/* One EXEC of JSON on CHANNEL with stdin IN; its run in *SEEN, its STARTED pid returned (0: none). */
static pid_t
exec_once (host_t *h, uint16_t channel, const char *json, const char *in, seen_t *seen)
{
  memset (seen, 0, sizeof *seen);
  nex_wire_send (h->fd, NEX_WIRE_EXEC, channel, json, strlen (json), NULL);
  if (in)
    nex_wire_send (h->fd, NEX_WIRE_STDIN, channel, in, strlen (in), NULL);
  nex_wire_send (h->fd, NEX_WIRE_STDIN, channel, NULL, 0, NULL);
  pid_t pid = 0;
  int64_t deadline = now_ms () + TIMEOUT_MS;
  while (!seen->exit && !seen->error)
    {
      frame_t f;
      int64_t left = deadline - now_ms ();
      if (left <= 0 || host_recv (h, &f, (int)left) != 1)
        return 0;
      if (f.channel == channel && f.type == NEX_WIRE_STARTED)
        pid = (pid_t)jint (f.json, "pid");
      if (f.channel == channel && f.type == NEX_WIRE_STDOUT && strlen (seen->out) + f.len < sizeof seen->out)
        strncat (seen->out, (const char *)f.data, f.len);
      if (f.channel == channel && f.type == NEX_WIRE_EXIT)
        {
          seen->exit = true;
          seen->code = (int)jint (f.json, "code");
        }
      if (f.channel == channel && f.type == NEX_WIRE_ERROR)
        {
          seen->error = true;
          seen->errnum = (int)jint (f.json, "errno");
        }
      frame_clear (&f);
    }
  return pid;
}

/* EXEC with `warm`: the agent keeps processes of that request started ahead, and the next identical request
 * becomes one of them (its pid existed before the EXEC was sent) with the same result a cold start gives; another
 * request starts cold; a warm process that ended before it was taken reports its own output and status; the pool
 * ends with the workload; `warm` out of range is refused. */
static void
test_agent_exec_warm (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sleep\",\"argv\":[\"sleep\",\"60\"]}");
  cleanup_json json_t *started = hello ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  pid_t wpid = started ? (pid_t)jint (started, "pid") : 0;
  TAP_OK (wpid > 0, "agent warm: the workload runs");

  const char *cat = "{\"path\":\"/bin/cat\",\"env\":{\"K\":\"v\"},\"warm\":2,\"timeout_ms\":5000}";
  seen_t run;
  pid_t first = exec_once (&h, 60, cat, "one", &run);
  TAP_OK (first > 0 && run.exit && run.code == 0 && strcmp (run.out, "one") == 0,
          "agent warm: the first EXEC asking for warm processes starts cold and runs");
  pid_t kids[32];
  int n = 0;
  for (int64_t until = now_ms () + TIMEOUT_MS; now_ms () < until && (n = children_of (ag.pid, kids, 32)) < 3;)
    sleep_ms (20);
  TAP_OK (n == 3 && has_pid (kids, n, wpid), "agent warm: two processes are kept started beside the workload (%d)", n);
  sleep_ms (200); /* past their execve */
  /* The same request with another timeout is the same request. */
  const char *cat2 = "{\"path\":\"/bin/cat\",\"env\":{\"K\":\"v\"},\"warm\":2,\"timeout_ms\":7000}";
  pid_t second = exec_once (&h, 61, cat2, "two", &run);
  TAP_OK (second > 0 && second != wpid && has_pid (kids, n, second) && run.exit && run.code == 0
              && strcmp (run.out, "two") == 0,
          "agent warm: the next identical EXEC is a process started ahead (pid %d), with its own stdin and EXIT",
          (int)second);
  const char *other = "{\"path\":\"/bin/cat\",\"env\":{\"K\":\"w\"},\"warm\":2}";
  pid_t third = exec_once (&h, 62, other, "three", &run);
  TAP_OK (third > 0 && !has_pid (kids, n, third) && run.exit && strcmp (run.out, "three") == 0,
          "agent warm: a request that differs (its env) starts cold");

  const char *early = "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"echo early; exit 5\"],\"warm\":1}";
  exec_once (&h, 63, early, NULL, &run);
  sleep_ms (300); /* the warm one runs and ends before any session takes it */
  exec_once (&h, 64, early, NULL, &run);
  TAP_OK (run.exit && run.code == 5 && strcmp (run.out, "early\n") == 0,
          "agent warm: a process that ended before it was taken reports its output and EXIT {code 5}");

  exec_once (&h, 65, "{\"path\":\"/bin/true\",\"warm\":17}", NULL, &run);
  TAP_OK (run.error && run.errnum == EINVAL, "agent warm: `warm` beyond 16 is refused (EINVAL)");
  seen_t neg, str, big;
  exec_once (&h, 66, "{\"path\":\"/bin/true\",\"warm\":-1}", NULL, &neg);
  exec_once (&h, 67, "{\"path\":\"/bin/true\",\"warm\":\"2\"}", NULL, &str);
  exec_once (&h, 68, "{\"path\":\"/bin/true\",\"warm\":1e300}", NULL, &big);
  TAP_OK (neg.error && neg.errnum == EINVAL && str.error && str.errnum == EINVAL && big.error && big.errnum == EINVAL,
          "agent warm: a negative, a string or a huge `warm` is refused (EINVAL), the agent answers on");
  exec_once (&h, 69, "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"tty\"],\"tty\":true,\"warm\":3}", NULL, &run);
  TAP_OK (run.exit && run.code == 0 && strstr (run.out, "/dev/pts/"),
          "agent warm: a TTY session asking for warm processes runs on its own terminal (cold)");

  run_t end = { 0 };
  host_send (&h, NEX_WIRE_STOP, "{\"grace_ms\":0}");
  TAP_OK (collect (&h, &end, TIMEOUT_MS) == 0 && end.exit, "agent warm: the workload stops");
  run_clear (&end);
  for (int64_t until = now_ms () + TIMEOUT_MS; now_ms () < until && (n = children_of (ag.pid, kids, 32)) > 0;)
    sleep_ms (20);
  TAP_OK (n == 0, "agent warm: its warm processes end with it (%d left)", n);
  ack_and_teardown (&ag, &h, 0, "agent warm: exits 0 after ACK");
}

/* Starts an agent and connects to it, consuming the HELLO; returns the HELLO's JSON or NULL. */
static json_t *
agent_attach (agent_proc_t *ag, host_t *h)
{
  host_init (h, -1);
  if (agent_start (ag) < 0 || connect_retry (h, ag) < 0)
    return NULL;
  return host_expect (h, NEX_WIRE_HELLO, TIMEOUT_MS);
}

static void
test_agent_exec_failure (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/nonexistent/nex-test\"}");
  run_t run = { 0 };
  int rc = hello ? collect (&h, &run, TIMEOUT_MS) : -1;
  TAP_OK (rc == 0 && run.error && strcmp (jstr (run.error, "phase"), "exec") == 0
              && strcmp (jstr (run.error, "message"), "exec `/nonexistent/nex-test`: No such file or directory") == 0,
          "agent: START of a missing path gets ERROR {phase exec, message \"exec `path`: strerror\"}");
  TAP_OK (run.exit && jint (run.exit, "code") == 127 && json_is_true (json_object_get (run.exit, "exec_failed")),
          "agent: ... followed by EXIT {code 127, exec_failed true}");
  run_clear (&run);
  ack_and_teardown (&ag, &h, 0, "agent: exits 0 after ACK of a failed exec");
}

static void
test_agent_spec (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);

  static const struct
  {
    const char *json, *what;
  } bad[] = {
    { "{}", "path" },
    { "{\"path\":\"\"}", "path" },
    { "{\"path\":7}", "path" },
    { "{\"path\":\"/bin/sh\",\"argv\":[]}", "argv" },
    { "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",1]}", "argv[1]" },
    { "{\"path\":\"/bin/sh\",\"argv\":\"sh\"}", "argv" },
    { "{\"path\":\"/bin/sh\",\"env\":[]}", "env" },
    { "{\"path\":\"/bin/sh\",\"env\":{\"A=B\":\"c\"}}", "hold no '='" },
    { "{\"path\":\"/bin/sh\",\"env\":{\"A\":1}}", "env.A" },
    { "{\"path\":\"/bin/sh\",\"cwd\":5}", "cwd" },
  };
  int ok = hello != NULL;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0] && ok; i++)
    {
      host_send (&h, NEX_WIRE_START, bad[i].json);
      cleanup_json json_t *e = host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS);
      ok = e && strstr (jstr (e, "message"), bad[i].what) != NULL;
      if (!ok)
        fprintf (stderr, "# START %s: %s\n", bad[i].json, e ? jstr (e, "message") : "(no ERROR)");
    }
  TAP_OK (ok, "agent: malformed STARTs get ERROR naming the field, on the same connection");

  host_send (&h, NEX_WIRE_START,
             "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"echo \\\"$FOO:$HOME:$(pwd)\\\"; /bin/ls /proc/$$/fd\"],"
             "\"env\":{\"FOO\":\"bar baz\"},\"cwd\":\"/tmp\"}");
  run_t run = { 0 };
  int rc = collect (&h, &run, TIMEOUT_MS);
  TAP_OK (rc == 0 && run.out && strncmp (run.out, "bar baz::/tmp\n", 14) == 0,
          "agent: the workload gets exactly the given env (no inherited HOME) and cwd");
  int fds_ok = rc == 0 && run.out && strcmp (run.out + 14, "0\n1\n2\n") == 0;
  if (!fds_ok)
    fprintf (stderr, "# workload output: %s\n", run.out ? run.out : "(none)");
  TAP_OK (fds_ok, "agent: the workload inherits only descriptors 0, 1, 2");
  TAP_OK (run.exit && jint (run.exit, "code") == 0, "agent: EXIT {code 0}");
  run_clear (&run);
  ack_and_teardown (&ag, &h, 0, "agent: exits 0 after ACK");
}

static void
test_agent_stop (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sleep\",\"argv\":[\"sleep\",\"100\"]}");
  cleanup_json json_t *started = hello ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  pid_t wpid = (pid_t)(started ? jint (started, "pid") : 0);
  host_send (&h, NEX_WIRE_STOP, "{\"signal\":\"TERM\"}");
  cleanup_json json_t *e = host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS);
  TAP_OK (e && strstr (jstr (e, "message"), "signal"), "agent: STOP with a non-integer signal gets ERROR");
  host_send (&h, NEX_WIRE_STOP, "{}");
  run_t run = { 0 };
  int rc = started ? collect (&h, &run, TIMEOUT_MS) : -1;
  TAP_OK (rc == 0 && run.exit && jint (run.exit, "signal") == SIGTERM && json_object_get (run.exit, "code") == NULL,
          "agent: STOP {} on `sleep 100` gets EXIT {signal 15}");
  run_clear (&run);
  ack_and_teardown (&ag, &h, wpid, "agent: exits 0 after ACK of a stopped workload");

  /* A workload that ignores SIGTERM is killed when the grace runs out. */
  cleanup_json json_t *hello2 = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START,
             "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"trap '' TERM; echo ready; sleep 100\"]}");
  cleanup_json json_t *started2 = hello2 ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  wpid = (pid_t)(started2 ? jint (started2, "pid") : 0);
  frame_t f;
  int ready = started2 && host_recv (&h, &f, TIMEOUT_MS) == 1 && f.type == NEX_WIRE_STDOUT;
  frame_clear (&f);
  int64_t t0 = now_ms ();
  host_send (&h, NEX_WIRE_STOP, "{\"signal\":15,\"grace_ms\":300}");
  rc = ready ? collect (&h, &run, TIMEOUT_MS) : -1;
  int64_t took = now_ms () - t0;
  TAP_OK (rc == 0 && run.exit && jint (run.exit, "signal") == SIGKILL && took >= 250 && took < 5000,
          "agent: a workload ignoring SIGTERM gets SIGKILL after grace_ms (EXIT {signal 9} after %lld ms)",
          (long long)took);
  run_clear (&run);

  /* SIGTERM to an agent whose workload exited, before any ACK: it leaves. */
  kill (ag.pid, SIGTERM);
  TAP_OK (agent_wait (&ag, TIMEOUT_MS) == 0, "agent: SIGTERM after the workload exited makes it exit 0");
  host_close (&h);
  agent_kill (&ag, wpid);
}

/* Whether PID is gone or a zombie (killed, not reaped yet by whoever inherited it). */
static int
process_gone (pid_t pid)
{
  char path[64], buf[512];
  snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen (path, "r");
  if (f == NULL)
    return 1;
  size_t n = fread (buf, 1, sizeof buf - 1, f);
  fclose (f);
  buf[n] = 0;
  const char *close_paren = strrchr (buf, ')');
  return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

static void
test_agent_lease (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sleep\",\"argv\":[\"sleep\",\"100\"]}");
  cleanup_json json_t *started = hello ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  pid_t wpid = (pid_t)(started ? jint (started, "pid") : 0);
  host_send (&h, NEX_WIRE_LEASE, "{\"ttl_ms\":0}");
  cleanup_json json_t *e = host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS);
  TAP_OK (e && strstr (jstr (e, "message"), "ttl_ms"), "agent: LEASE {ttl_ms: 0} gets ERROR");
  /* Armed for 400 ms, renewed after 250 ms: alive at 500 ms, ended (ERROR phase lease, exit 3) soon after 650. */
  int64_t t0 = now_ms ();
  host_send (&h, NEX_WIRE_LEASE, "{\"ttl_ms\":400}");
  sleep_ms (250);
  host_send (&h, NEX_WIRE_LEASE, "{\"ttl_ms\":400}");
  sleep_ms (250);
  TAP_OK (agent_alive (&ag) && !process_gone (wpid), "agent: a renewed lease keeps the workload running");
  cleanup_json json_t *lapse = host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS);
  int rc = agent_wait (&ag, TIMEOUT_MS);
  int64_t took = now_ms () - t0;
  int gone = 0;
  for (int i = 0; i < 100 && !(gone = process_gone (wpid)); i++)
    sleep_ms (10);
  TAP_OK (lapse && strcmp (jstr (lapse, "phase"), "lease") == 0 && rc == 3 && gone && took >= 600 && took < 3000,
          "agent: an expired lease kills the workload and the agent exits 3 (after %lld ms)", (long long)took);
  host_close (&h);
  agent_kill (&ag, wpid);
}

static void
test_agent_signals (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  kill (ag.pid, SIGTERM);
  TAP_OK (hello && agent_wait (&ag, TIMEOUT_MS) == 0, "agent: SIGTERM while idle makes it exit 0");
  host_close (&h);
  agent_kill (&ag, 0);

  cleanup_json json_t *hello2 = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sleep\",\"argv\":[\"sleep\",\"100\"]}");
  cleanup_json json_t *started = hello2 ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  pid_t wpid = (pid_t)(started ? jint (started, "pid") : 0);
  kill (ag.pid, SIGTERM);
  run_t run = { 0 };
  int rc = started ? collect (&h, &run, TIMEOUT_MS) : -1;
  TAP_OK (rc == 0 && run.exit && jint (run.exit, "signal") == SIGTERM,
          "agent: SIGTERM while running stops the workload (EXIT {signal 15})");
  run_clear (&run);
  ack_and_teardown (&ag, &h, wpid, "agent: exits 0 after ACK");
}

static void
test_agent_garbage (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);

  static const uint8_t junk[] = { 0, 0, 0, 2, 200, 0, 0, 0, '{', '}' };
  int ok = hello && write (h.fd, junk, sizeof junk) == (ssize_t)sizeof junk;
  cleanup_json json_t *e = ok ? host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS) : NULL;
  frame_t f;
  int eof = e && host_recv (&h, &f, TIMEOUT_MS) == 0;
  TAP_OK (e && strstr (jstr (e, "message"), "unknown frame type"), "agent: a frame of unknown type gets ERROR");
  TAP_OK (eof, "agent: ... and the connection is closed");
  host_close (&h);
  TAP_OK (agent_alive (&ag), "agent: still alive after garbage");

  ok = connect_retry (&h, &ag) == 0;
  cleanup_json json_t *hello2 = ok ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  TAP_OK (hello2 && strcmp (jstr (hello2, "state"), "idle") == 0, "agent: a new connection after garbage gets HELLO");

  /* Valid header, payload that is not JSON. */
  static const char notjson[] = "{\"path\": nope";
  ok = hello2 && nex_wire_send (h.fd, NEX_WIRE_START, 0, notjson, sizeof notjson - 1, NULL) == 0;
  cleanup_json json_t *e2 = ok ? host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS) : NULL;
  eof = e2 && host_recv (&h, &f, TIMEOUT_MS) == 0;
  TAP_OK (e2 && eof, "agent: START with invalid JSON gets ERROR and the connection is closed");
  host_close (&h);

  /* An oversized length: the agent must refuse it from the header alone. */
  ok = connect_retry (&h, &ag) == 0;
  cleanup_json json_t *hello3 = ok ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  uint8_t hdr[NEX_WIRE_HEADER_SIZE];
  nex_wire_header_encode (hdr, NEX_WIRE_START, 0, 0x7fffffff);
  ok = hello3 && write (h.fd, hdr, sizeof hdr) == (ssize_t)sizeof hdr;
  cleanup_json json_t *e3 = ok ? host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS) : NULL;
  eof = e3 && host_recv (&h, &f, TIMEOUT_MS) == 0;
  TAP_OK (e3 && eof && strstr (jstr (e3, "message"), "exceeds"), "agent: an oversized length gets ERROR and a close");
  host_close (&h);

  /* Valid frames the agent does not take: answered, connection kept. */
  ok = connect_retry (&h, &ag) == 0;
  cleanup_json json_t *hello4 = ok ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  ok = hello4 && nex_wire_send (h.fd, NEX_WIRE_STDIN, 0, "x", 1, NULL) == 0;
  cleanup_json json_t *e4 = ok ? host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS) : NULL;
  host_send (&h, NEX_WIRE_EXIT, "{}");
  cleanup_json json_t *e5 = e4 ? host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS) : NULL;
  host_send (&h, NEX_WIRE_ACK, "{}");
  cleanup_json json_t *e6 = e5 ? host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS) : NULL;
  host_send (&h, NEX_WIRE_HELLO, "{}");
  cleanup_json json_t *hello5 = e6 ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  TAP_OK (e4 && e5 && e6 && hello5,
          "agent: STDIN, EXIT and an early ACK get ERROR on a kept connection; a host HELLO gets HELLO back");

  /* Many garbage connections in a row, random bytes each. */
  int alive = 1;
  for (int i = 0; i < 30 && alive; i++)
    {
      host_close (&h);
      if (connect_retry (&h, &ag) < 0)
        break;
      uint8_t rnd[512];
      size_t n = 1 + (size_t)(test_rng () % sizeof rnd);
      for (size_t k = 0; k < n; k++)
        rnd[k] = (uint8_t)test_rng ();
      (void)!write (h.fd, rnd, n);
      alive = agent_alive (&ag);
    }
  host_close (&h);
  ok = alive && connect_retry (&h, &ag) == 0;
  cleanup_json json_t *hello6 = ok ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  TAP_OK (hello6 != NULL, "agent: survives 30 connections of random bytes and still greets");
  host_close (&h);
  agent_kill (&ag, 0);
}

static void
test_agent_reattach (void)
{
  agent_proc_t ag;
  host_t h1, h2, h3;
  cleanup_json json_t *hello = agent_attach (&ag, &h1);
  host_send (&h1, NEX_WIRE_START, "{\"path\":\"/bin/sleep\",\"argv\":[\"sleep\",\"100\"]}");
  cleanup_json json_t *started = hello ? host_expect (&h1, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  pid_t wpid = (pid_t)(started ? jint (started, "pid") : 0);

  int ok = connect_retry (&h2, &ag) == 0;
  cleanup_json json_t *hello2 = ok ? host_expect (&h2, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  TAP_OK (hello2 && strcmp (jstr (hello2, "state"), "running") == 0 && jint (hello2, "pid") == wpid && wpid > 0,
          "agent: reconnecting mid-run gets HELLO {state running, pid}");
  frame_t f;
  TAP_OK (host_recv (&h1, &f, TIMEOUT_MS) == 0, "agent: the new connection replaced the old one (old one closed)");
  host_close (&h1);

  host_send (&h2, NEX_WIRE_STOP, "{\"grace_ms\":5000}");
  cleanup_json json_t *ex = host_expect (&h2, NEX_WIRE_EXIT, TIMEOUT_MS);
  TAP_OK (ex && jint (ex, "signal") == SIGTERM, "agent: STOP over the new connection gets EXIT {signal 15}");
  host_close (&h2);

  /* The exit status survives a host that went away without ACK. */
  ok = connect_retry (&h3, &ag) == 0;
  cleanup_json json_t *hello3 = ok ? host_expect (&h3, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  json_t *exit_info = hello3 ? json_object_get (hello3, "exit") : NULL;
  TAP_OK (hello3 && strcmp (jstr (hello3, "state"), "exited") == 0 && jint (exit_info, "signal") == SIGTERM,
          "agent: after an unacknowledged EXIT, HELLO says {state exited, exit {signal 15}}");
  ack_and_teardown (&ag, &h3, wpid, "agent: ACK on the third connection makes it exit 0");
}

static void
test_agent_offline_output (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  host_send (&h, NEX_WIRE_START,
             "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"sleep 0.3; echo later; echo oops >&2; exit 5\"]}");
  cleanup_json json_t *started = hello ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  pid_t wpid = (pid_t)(started ? jint (started, "pid") : 0);
  host_close (&h);
  sleep_ms (1200);

  int ok = started && connect_retry (&h, &ag) == 0;
  cleanup_json json_t *hello2 = ok ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  TAP_OK (hello2 && strcmp (jstr (hello2, "state"), "exited") == 0
              && jint (json_object_get (hello2, "exit"), "code") == 5,
          "agent: a host arriving after the end gets HELLO {state exited, exit {code 5}} first");
  run_t run = { 0 };
  int rc = hello2 ? collect (&h, &run, TIMEOUT_MS) : -1;
  TAP_OK (rc == 0 && run.out && strcmp (run.out, "later\n") == 0 && run.err && strcmp (run.err, "oops\n") == 0
              && jint (run.exit, "code") == 5,
          "agent: output written while no host was connected is delivered after HELLO, then EXIT");
  run_clear (&run);
  ack_and_teardown (&ag, &h, wpid, "agent: exits 0 after ACK");
}

/* The next STDOUT frame's bytes (caller frees), skipping other frames; NULL when none comes in TIMEOUT_MS. */
static char *
next_stdout (host_t *h, int timeout_ms)
{
  int64_t deadline = now_ms () + timeout_ms;
  for (;;)
    {
      frame_t f;
      int64_t left = deadline - now_ms ();
      if (left <= 0 || host_recv (h, &f, (int)left) != 1)
        return NULL;
      if (f.type == NEX_WIRE_STDOUT)
        {
          char *text = (char *)NEX_STEAL_PTR (f.data);
          frame_clear (&f);
          return text;
        }
      frame_clear (&f);
    }
}

static json_int_t
hello_stdout (json_t *hello)
{
  return jint (json_object_get (hello, "output"), "stdout");
}

static void
test_agent_stored_output (void)
{
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  TAP_OK (hello && hello_stdout (hello) == 0 && jint (json_object_get (hello, "output"), "stderr") == 0,
          "agent: HELLO says output {stdout 0, stderr 0} before anything was written");
  host_send (&h, NEX_WIRE_STORED, "{\"stdout\":0,\"stderr\":0}");
  host_send (&h, NEX_WIRE_START,
             "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"echo one; sleep 0.4; echo two; sleep 100\"]}");
  cleanup_json json_t *started = hello ? host_expect (&h, NEX_WIRE_STARTED, TIMEOUT_MS) : NULL;
  pid_t wpid = (pid_t)(started ? jint (started, "pid") : 0);
  cleanup_free char *one = started ? next_stdout (&h, TIMEOUT_MS) : NULL;
  TAP_OK (one && strcmp (one, "one\n") == 0, "agent: the first line arrives");
  host_close (&h);

  /* Read but never STORED: the next host gets it again, right after HELLO, which says where it starts. */
  int ok = one && connect_retry (&h, &ag) == 0;
  cleanup_json json_t *hello2 = ok ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  cleanup_free char *again = hello2 ? next_stdout (&h, TIMEOUT_MS) : NULL;
  TAP_OK (hello2 && hello_stdout (hello2) == 0 && again && strcmp (again, "one\n") == 0,
          "agent: output written but not STORED comes again on the next connection, from offset 0");
  host_send (&h, NEX_WIRE_STORED, "{\"stdout\":4,\"stderr\":0}");
  cleanup_free char *two = again ? next_stdout (&h, TIMEOUT_MS) : NULL;
  TAP_OK (two && strcmp (two, "two\n") == 0, "agent: the second line arrives");
  host_close (&h);

  ok = two && connect_retry (&h, &ag) == 0;
  cleanup_json json_t *hello3 = ok ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  cleanup_free char *two_again = hello3 ? next_stdout (&h, TIMEOUT_MS) : NULL;
  TAP_OK (hello3 && hello_stdout (hello3) == 4 && two_again && strcmp (two_again, "two\n") == 0,
          "agent: after STORED {stdout 4} only what follows offset 4 comes again (HELLO output.stdout 4)");
  host_send (&h, NEX_WIRE_STORED, "{\"stdout\":8,\"stderr\":0}");
  host_send (&h, NEX_WIRE_STORED, "{\"stdout\":-1,\"stderr\":\"x\"}");
  cleanup_json json_t *refused = hello3 ? host_expect (&h, NEX_WIRE_ERROR, TIMEOUT_MS) : NULL;
  TAP_OK (refused && strstr (jstr (refused, "message"), "stored"),
          "agent: STORED with offsets that are not gets ERROR");
  host_close (&h);

  ok = refused && connect_retry (&h, &ag) == 0;
  cleanup_json json_t *hello4 = ok ? host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS) : NULL;
  frame_t f = { 0 };
  int rc = hello4 ? host_recv (&h, &f, 300) : 1;
  TAP_OK (hello4 && hello_stdout (hello4) == 8 && rc == -1,
          "agent: once everything is STORED a new connection gets HELLO {output.stdout 8} and no output again");
  frame_clear (&f);
  host_send (&h, NEX_WIRE_STOP, "{\"grace_ms\":2000}");
  cleanup_json json_t *ex = hello4 ? host_expect (&h, NEX_WIRE_EXIT, TIMEOUT_MS) : NULL;
  ack_and_teardown (&ag, &h, wpid, "agent: exits 0 after ACK");
}

static void
test_agent_flood (void)
{
  const long total = 10 * 1000 * 1000;
  agent_proc_t ag;
  host_t h;
  cleanup_json json_t *hello = agent_attach (&ag, &h);
  char json[256];
  snprintf (json, sizeof json, "{\"path\":\"/usr/bin/head\",\"argv\":[\"head\",\"-c\",\"%ld\",\"/dev/zero\"]}", total);
  host_send (&h, NEX_WIRE_START, json);
  /* A slow host: nothing is read for two seconds, while the workload writes 10 MB. */
  sleep_ms (2000);
  run_t run = { 0 };
  int rc = hello ? collect (&h, &run, TIMEOUT_MS) : -1;
  json_int_t dropped = run.exit ? jint (run.exit, "dropped_bytes") : -1;
  TAP_OK (rc == 0 && jint (run.exit, "code") == 0, "agent: a workload writing 10 MB to a slow host is not blocked");
  TAP_OK (dropped > 0 && (long)run.out_len + dropped == total,
          "agent: output beyond the 8 MiB queue is dropped and counted (%zu delivered + %lld dropped)", run.out_len,
          (long long)dropped);
  TAP_OK (run.max_frame > 0 && run.max_frame <= 65536, "agent: output frames are at most 64 KiB (largest %zu)",
          run.max_frame);
  run_clear (&run);
  ack_and_teardown (&ag, &h, 0, "agent: exits 0 after ACK");
}

static void
test_agent_stream (void)
{
  int sv[2];
  agent_proc_t ag = { 0 };
  host_t h;
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    {
      TAP_OK (0, "agent: socketpair");
      return;
    }
  ag.pid = spawn_agent (sv[1], "--stream-fd");
  close (sv[1]);
  host_init (&h, sv[0]);
  cleanup_json json_t *hello = host_expect (&h, NEX_WIRE_HELLO, TIMEOUT_MS);
  TAP_OK (hello && strcmp (jstr (hello, "state"), "idle") == 0, "agent --stream-fd: HELLO at start");
  host_send (&h, NEX_WIRE_START, "{\"path\":\"/bin/sh\",\"argv\":[\"sh\",\"-c\",\"echo hi\"]}");
  run_t run = { 0 };
  int rc = hello ? collect (&h, &run, TIMEOUT_MS) : -1;
  TAP_OK (rc == 0 && run.out && strcmp (run.out, "hi\n") == 0 && jint (run.exit, "code") == 0,
          "agent --stream-fd: output and EXIT over the stream");
  run_clear (&run);
  ack_and_teardown (&ag, &h, 0, "agent --stream-fd: exits 0 after ACK");
}

static void
test_agent_cli (void)
{
  int p[2];
  if (pipe (p) < 0)
    return;
  pid_t pid = fork ();
  if (pid == 0)
    {
      dup2 (p[1], 1);
      execl (agent_bin, "nex-agent", "--help", (char *)NULL);
      _exit (127);
    }
  close (p[1]);
  char buf[2048] = "";
  ssize_t n, got = 0;
  while ((n = read (p[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0)
    got += n;
  close (p[0]);
  int st;
  waitpid (pid, &st, 0);
  TAP_OK (WIFEXITED (st) && WEXITSTATUS (st) == 0 && strstr (buf, "--listen-fd"), "agent: --help prints usage");

  /* Descriptor 3 is not a listening socket: refuse to start. */
  int fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  agent_proc_t ag = { .pid = spawn_agent (fd, "--listen-fd") };
  close (fd);
  TAP_OK (agent_wait (&ag, TIMEOUT_MS) == 1, "agent: --listen-fd on a non-socket exits 1");
}

int
main (void)
{
  signal (SIGPIPE, SIG_IGN);
  json_set_alloc_funcs (nex_xmalloc, free);

  agent_bin = getenv ("NEX_AGENT");
  if (agent_bin == NULL)
    agent_bin = "./nex-agent";
  if (access (agent_bin, X_OK) < 0)
    {
      TAP_OK (0, "nex-agent found at `%s` (set NEX_AGENT)", agent_bin);
      return tap_done ();
    }
  if (mkdtemp (tmpdir) == NULL)
    {
      TAP_OK (0, "mkdtemp: %s", strerror (errno));
      return tap_done ();
    }

  test_agent_cli ();
  test_agent_basic ();
  test_agent_exec_failure ();
  test_agent_exec_sessions ();
  test_agent_exec_concurrent ();
  test_agent_exec_warm ();
  test_agent_spec ();
  test_agent_stop ();
  test_agent_signals ();
  test_agent_lease ();
  test_agent_garbage ();
  test_agent_reattach ();
  test_agent_offline_output ();
  test_agent_stored_output ();
  test_agent_flood ();
  test_agent_stream ();

  rmdir (tmpdir);
  return tap_done ();
}
