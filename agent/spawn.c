/* SPDX-License-Identifier: Apache-2.0 */
/* spawn.c — how nex-agent turns a START or EXEC into a hardened child (see agent.h).
 *
 * The request is parsed into a spec first (every field from the host is hostile input), everything the child
 * needs is prepared before fork, and the child then only makes system calls: its own session, stdio on pipes or
 * on a pseudo-terminal of the sandbox's devpts, every other descriptor closed, the highest OOM score, the
 * working directory checked to be inside the root, capabilities dropped (bounding set first), no_new_privs, the
 * seccomp program last, execve.  A child that cannot become its program says why through a close-on-exec status
 * pipe: EOF on it means execve succeeded.  The agent does not wait for that: the pipe is the record's status_fd,
 * watched by the poll loop, so that a slow execve (a large program, a loaded machine) delays no other request
 * and concurrent execs start side by side.  Each security step's comment says what attack it stops. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/xalloc.h"

#define AGENT_MAX_FILTER 4096 /* BPF_MAXINSNS: the most seccomp instructions the kernel takes */

/* --- the spec ------------------------------------------------------------------------------------------------- */

void
nex_agent_spec_release (nex_agent_spec_t *s)
{
  free (s->filter);
  free (s->groups);
  free (s->argv);
  for (char **e = s->envp; e && *e; e++)
    free (*e);
  free (s->envp);
}

/* The hardening part of a START or EXEC: `capabilities` (numbers of the capabilities kept; absent: none kept)
 * and `seccomp` (the program as [code, jt, jf, k] instructions; absent: no filter).  Only the shape is checked
 * here; the kernel verifies the program itself when the child installs it. */
static int
parse_hardening (json_t *req, nex_agent_spec_t *s, nex_error_t *err)
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
  json_t *uid = json_object_get (req, "uid"), *gid = json_object_get (req, "gid");
  json_t *groups = json_object_get (req, "groups");
  if (uid && !json_is_null (uid))
    {
      if (!json_is_integer (uid) || !json_is_integer (gid) || json_integer_value (uid) < 0
          || json_integer_value (uid) > 65535 || json_integer_value (gid) < 0 || json_integer_value (gid) > 65535)
        return nex_error_field (err, "uid", "`uid` and `gid` must be numbers from 0 to 65535");
      s->has_ids = true;
      s->uid = (uid_t)json_integer_value (uid);
      s->gid = (gid_t)json_integer_value (gid);
      if (groups && !json_is_null (groups) && (!json_is_array (groups) || json_array_size (groups) > 64))
        return nex_error_field (err, "groups", "`groups` must be an array of at most 64 group ids");
      s->groups = nex_xzalloc ((json_array_size (groups) + 1) * sizeof *s->groups);
      json_array_foreach (groups, i, v)
      {
        if (!json_is_integer (v) || json_integer_value (v) < 0 || json_integer_value (v) > 65535)
          return nex_error_field (err, "groups", "`groups[%zu]` must be a number from 0 to 65535", i);
        s->groups[s->n_groups++] = (gid_t)json_integer_value (v);
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

int
nex_agent_spec_parse (json_t *req, nex_agent_spec_t *s, nex_error_t *err)
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
  return parse_hardening (req, s, err);
}

/* --- the child ------------------------------------------------------------------------------------------------ */

/* What the child reports through its status pipe (nex_agent_child_failure_t.stage) when it cannot become its
 * program. */
typedef enum child_stage
{
  AGENT_CHILD_STDIO,
  AGENT_CHILD_CHDIR,
  AGENT_CHILD_EXEC,
  AGENT_CHILD_CWD,     /* the working directory is not inside the root */
  AGENT_CHILD_CAPS,    /* dropping capabilities failed */
  AGENT_CHILD_NNP,     /* no_new_privs failed */
  AGENT_CHILD_SECCOMP, /* the kernel refused the seccomp program */
  AGENT_CHILD_TTY,     /* the terminal could not become the controlling terminal */
  AGENT_CHILD_IDS,     /* becoming the image's user failed */
} child_stage_t;

static const char *
stage_name (int stage)
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
    case AGENT_CHILD_IDS:
      return "set user";
    }
  return "setup";
}

static void __attribute__ ((noreturn)) child_fail (int status_fd, child_stage_t stage, int errnum)
{
  nex_agent_child_failure_t f = { .stage = stage, .errnum = errnum };
  (void)!write (status_fd, &f, sizeof f);
  _exit (127);
}

/* Closes every descriptor from FIRST up. */
static void
close_from (int first)
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
drop_bounding (uint64_t keep)
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
  return 0;
}

/* The ambient and the process's own sets (after drop_bounding, and after set_ids: a user other than root has
 * lost its capabilities with its uid already, and keeps none). */
static int
drop_own (uint64_t keep)
{
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

/* Becomes S's user (an image's User): supplementary groups, gid, uid, in that order (each needs the privilege the
 * next one drops).  Needs CAP_SETUID/CAP_SETGID, still held: call between drop_bounding and drop_own. */
static int
set_ids (const nex_agent_spec_t *s)
{
  if (setgroups (s->n_groups, s->groups) < 0 || setresgid (s->gid, s->gid, s->gid) < 0
      || setresuid (s->uid, s->uid, s->uid) < 0)
    return -1;
  return 0;
}

/* execve of S's program; a path without `/` is looked up in PATH of S's environment (inside the root), as a
 * shell would.  Returns only on failure, with errno. */
static void
exec_program (const nex_agent_spec_t *s)
{
  if (strchr (s->path, '/'))
    {
      execve (s->path, s->argv, s->envp);
      return;
    }
  const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (char **e = s->envp; *e; e++)
    if (strncmp (*e, "PATH=", 5) == 0)
      path = *e + 5;
  int saved = ENOENT;
  for (const char *p = path; *p;)
    {
      size_t n = strcspn (p, ":");
      char full[PATH_MAX];
      if (n > 0 && n + strlen (s->path) + 2 <= sizeof full)
        {
          memcpy (full, p, n);
          full[n] = '/';
          strcpy (full + n + 1, s->path);
          execve (full, s->argv, s->envp);
          if (errno != ENOENT && errno != ENOTDIR)
            saved = errno;
        }
      p += n;
      if (*p == ':')
        p++;
    }
  errno = saved;
}

/* The forked child: becomes the workload or reports why not.  Everything it uses was prepared before fork. */
static void __attribute__ ((noreturn))
child (const nex_agent_spec_t *s, const char *tty, int in_r, int out_w, int err_w, int status_w)
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
        child_fail (status_w, AGENT_CHILD_TTY, errno);
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
        child_fail (status_w, AGENT_CHILD_STDIO, errno);
      close (p[1]);
      in = p[0];
    }
  if (dup2 (in, 0) < 0 || dup2 (out_w, 1) < 0 || dup2 (err_w, 2) < 0)
    child_fail (status_w, AGENT_CHILD_STDIO, errno);

  /* Keep only the status pipe (moved to 3, still close-on-exec) and close everything else: the workload must
   * not inherit the listening socket or the host connection (it could impersonate the host or hijack the
   * control channel), nor the signalfd or the pipes' read ends. */
  if (status_w != 3)
    {
      if (dup3 (status_w, 3, O_CLOEXEC) < 0)
        child_fail (status_w, AGENT_CHILD_STDIO, errno);
      status_w = 3;
    }
  close_from (4);

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
    child_fail (status_w, AGENT_CHILD_CHDIR, errno);
  /* A directory reached through a path that leaves the root (a descriptor or mount from outside) reads back as
   * unreachable: refuse to start the workload anywhere it could walk out of its root from. */
  char here[PATH_MAX];
  if (getcwd (here, sizeof here) == NULL || here[0] != '/')
    child_fail (status_w, AGENT_CHILD_CWD, errno ? errno : ENOENT);

  if (drop_bounding (s->keep_caps) < 0)
    child_fail (status_w, AGENT_CHILD_CAPS, errno);
  if (s->has_ids && set_ids (s) < 0)
    child_fail (status_w, AGENT_CHILD_IDS, errno);
  if (drop_own (s->keep_caps) < 0)
    child_fail (status_w, AGENT_CHILD_CAPS, errno);
  /* no_new_privs: execve can never grant privileges again (setuid bits, file capabilities), and it lets an
   * unprivileged process install the seccomp filter. */
  if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    child_fail (status_w, AGENT_CHILD_NNP, errno);
  /* Last, so that everything above ran unfiltered; the filter allows execve and everything after it is the
   * workload's. */
  if (s->filter)
    {
      struct sock_fprog prog = { .len = s->filter_len, .filter = s->filter };
      if (prctl (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        child_fail (status_w, AGENT_CHILD_SECCOMP, errno);
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
  exec_program (s);
  child_fail (status_w, AGENT_CHILD_EXEC, errno);
}

/* --- fork ---------------------------------------------------------------------------------------------------- */

int
nex_agent_set_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);
  if (fl < 0)
    return -1;
  return fcntl (fd, F_SETFL, fl | O_NONBLOCK);
}

/* Opens a pseudo-terminal of S->rows x S->cols on the sandbox's devpts: its master (non-blocking, close-on-exec)
 * and in SLAVE the path of its slave.  -1 with errno. */
static int
open_pty (const nex_agent_spec_t *s, char *slave, size_t size)
{
  cleanup_close int m = posix_openpt (O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    return -1;
  struct winsize ws = { .ws_row = s->rows, .ws_col = s->cols };
  if (grantpt (m) < 0 || unlockpt (m) < 0 || ptsname_r (m, slave, size) != 0 || ioctl (m, TIOCSWINSZ, &ws) < 0
      || nex_agent_set_nonblock (m) < 0)
    return -1;
  return NEX_STEAL_FD (m);
}

/* The parts of P every spawn sets alike: its pid, what it runs and its status pipe ST (made non-blocking). */
static int
started (const nex_agent_spec_t *s, nex_agent_proc_t *p, pid_t pid, int st)
{
  nex_agent_set_nonblock (st);
  p->pid = pid;
  p->status_fd = st;
  p->path = nex_xstrdup (s->path);
  p->cwd = nex_xstrdup (s->cwd);
  return 0;
}

nex_agent_start_t
nex_agent_spawn_result (nex_agent_proc_t *p, nex_agent_child_failure_t *f)
{
  if (p->status_fd < 0)
    return AGENT_START_PENDING;
  ssize_t n;
  do
    n = read (p->status_fd, f, sizeof *f);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return AGENT_START_PENDING;
  close (NEX_STEAL_FD (p->status_fd));
  /* The child writes its report in one write of a few bytes (atomic on a pipe): anything else, a short read
   * included, is EOF after execve. */
  return n == (ssize_t)sizeof *f ? AGENT_START_FAILED : AGENT_START_OK;
}

/* Closes the end *FD the child took (the parent must not hold it: the status pipe's EOF, the output pipes' EOF
 * depend on the child's copies alone). */
static void
close_child_end (int *fd)
{
  if (*fd >= 0)
    close (NEX_STEAL_FD (*fd));
}

/* The TTY form of nex_agent_spawn: one pseudo-terminal instead of the three pipes. */
static int
spawn_tty (const nex_agent_spec_t *s, nex_agent_proc_t *p)
{
  char slave[64];
  cleanup_close int m = open_pty (s, slave, sizeof slave);
  if (m < 0)
    return -1;
  cleanup_close int out = fcntl (m, F_DUPFD_CLOEXEC, 0);
  cleanup_close int in = fcntl (m, F_DUPFD_CLOEXEC, 0);
  cleanup_pipe int st[2] = { -1, -1 };
  if (out < 0 || in < 0 || pipe2 (st, O_CLOEXEC) < 0)
    return -1;
  pid_t pid = fork ();
  if (pid < 0)
    return -1;
  if (pid == 0)
    child (s, slave, -1, -1, -1, st[1]);
  close_child_end (&st[1]);
  p->in_fd = NEX_STEAL_FD (in);
  p->out_fd = NEX_STEAL_FD (out);
  p->err_fd = -1;
  p->tty_fd = NEX_STEAL_FD (m);
  return started (s, p, pid, NEX_STEAL_FD (st[0]));
}

int
nex_agent_spawn (const nex_agent_spec_t *s, bool want_stdin, nex_agent_proc_t *p)
{
  if (s->tty)
    return spawn_tty (s, p);
  cleanup_pipe int out[2] = { -1, -1 };
  cleanup_pipe int errp[2] = { -1, -1 };
  cleanup_pipe int st[2] = { -1, -1 };
  cleanup_pipe int in[2] = { -1, -1 };
  if (pipe2 (out, O_CLOEXEC) < 0 || pipe2 (errp, O_CLOEXEC) < 0 || pipe2 (st, O_CLOEXEC) < 0
      || (want_stdin && pipe2 (in, O_CLOEXEC) < 0))
    return -1;
  pid_t pid = fork ();
  if (pid < 0)
    return -1;
  if (pid == 0)
    child (s, NULL, in[0], out[1], errp[1], st[1]);

  close_child_end (&out[1]);
  close_child_end (&errp[1]);
  close_child_end (&st[1]);
  close_child_end (&in[0]);
  nex_agent_set_nonblock (out[0]);
  nex_agent_set_nonblock (errp[0]);
  if (in[1] >= 0)
    nex_agent_set_nonblock (in[1]);
  p->in_fd = NEX_STEAL_FD (in[1]);
  p->out_fd = NEX_STEAL_FD (out[0]);
  p->err_fd = NEX_STEAL_FD (errp[0]);
  p->tty_fd = -1;
  return started (s, p, pid, NEX_STEAL_FD (st[0]));
}

char *
nex_agent_spawn_failure_text (const nex_agent_proc_t *p, const nex_agent_child_failure_t *f)
{
  const char *what = stage_name (f->stage);
  const char *arg = f->stage == AGENT_CHILD_EXEC                                   ? p->path
                    : f->stage == AGENT_CHILD_CHDIR || f->stage == AGENT_CHILD_CWD ? p->cwd
                                                                                   : "";
  return nex_xasprintf ("%s `%s`: %s", what, arg, strerror (f->errnum));
}
