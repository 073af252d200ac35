/* SPDX-License-Identifier: Apache-2.0 */
/* main.c — nex-agent's start-up and its poll loop (the agent as a whole: agent.h).
 *
 * Start-up: the options (or, as a VM's /init, none: vm.c prepares the machine and names the channel), the
 * descriptors 0-2, signals turned into data by a signalfd, the transport (conn.c).  Then one poll() loop, for
 * the agent's whole life, over
 *
 *   - the signalfd (SIGCHLD, SIGTERM, SIGINT: blocked, so they arrive as data, never as interruptions),
 *   - the read ends of every process's stdout and stderr, the write end of a session's stdin with bytes
 *     waiting, and the status pipe of a process still starting (process.c),
 *   - the host connection, read as frames and written from the queue whenever it is writable (conn.c),
 *   - the listening socket, on which every accept replaces the current host connection,
 *   - and one timeout: the earliest deadline of any process (a STOP's grace, a session's timeout, a drain) or
 *     the end of the workload's lease (common/wire.h, "Leases"). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/vm.h"
#include "common/xalloc.h"
#include "rootfs/layout.h"

#define AGENT_DEFAULT_LISTEN_FD 3 /* where nexd puts the listening socket when no option says otherwise */

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

int64_t
nex_agent_now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the loop -------------------------------------------------------------------------------------------------- */

static void
handle_signals (nex_agent_t *a)
{
  struct signalfd_siginfo si;
  while (read (a->sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
    {
      switch (si.ssi_signo)
        {
        case SIGCHLD:
          nex_agent_proc_reap (a);
          break;
        case SIGTERM:
        case SIGINT:
          {
            /* Sent by whoever shuts the sandbox down (or by the workload itself, which can only stop itself
             * this way): stop the workload as a STOP would; with nothing left to report, leave. */
            nex_agent_state_t state = nex_agent_workload_state (a);
            if (state == AGENT_IDLE || state == AGENT_EXITED)
              nex_agent_exit (a, 0);
            nex_agent_workload_stop (a, SIGTERM, AGENT_STOP_GRACE_MS);
            break;
          }
        default:
          break;
        }
    }
}

static int
poll_timeout (const nex_agent_t *a)
{
  int64_t next = nex_agent_proc_next_deadline (a);
  if (next == 0)
    return -1;
  int64_t left = next - nex_agent_now_ms ();
  return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* Where each process's descriptors sit in this round's pollfd array (-1: not polled). */
typedef struct polled
{
  int out, err, in, status;
} polled_t;

static void __attribute__ ((noreturn)) run (nex_agent_t *a)
{
  for (;;)
    {
      struct pollfd p[3 + 4 * AGENT_MAX_PROCS];
      polled_t at[AGENT_MAX_PROCS];
      int n = 0, i_sig, i_listen = -1, i_conn = -1;
      p[i_sig = n++] = (struct pollfd){ .fd = a->sig_fd, .events = POLLIN };
      if (a->listen_fd >= 0)
        p[i_listen = n++] = (struct pollfd){ .fd = a->listen_fd, .events = POLLIN };
      if (a->conn_fd >= 0)
        p[i_conn = n++] = (struct pollfd){ .fd = a->conn_fd, .events = POLLIN | (a->head ? POLLOUT : 0) };
      for (int i = 0; i < AGENT_MAX_PROCS; i++)
        {
          nex_agent_proc_t *x = &a->procs[i];
          at[i] = (polled_t){ -1, -1, -1, -1 };
          if (!x->live)
            continue;
          if (x->out_fd >= 0)
            p[at[i].out = n++] = (struct pollfd){ .fd = x->out_fd, .events = POLLIN };
          if (x->err_fd >= 0)
            p[at[i].err = n++] = (struct pollfd){ .fd = x->err_fd, .events = POLLIN };
          if (x->in_fd >= 0 && x->in_len > 0)
            p[at[i].in = n++] = (struct pollfd){ .fd = x->in_fd, .events = POLLOUT };
          if (x->status_fd >= 0)
            p[at[i].status = n++] = (struct pollfd){ .fd = x->status_fd, .events = POLLIN };
        }

      /* Warm processes are started when nothing else is waiting (a fork must not delay a session's input or
       * output): at once when none is left, else once the loop has been idle a moment (nex_agent_warm_delay). */
      bool fill = a->warm_budget > 0;
      int timeout = poll_timeout (a);
      if (fill && (timeout < 0 || nex_agent_warm_delay (a) < timeout))
        timeout = nex_agent_warm_delay (a);
      int ready = poll (p, (nfds_t)n, timeout);
      if (ready < 0)
        {
          if (errno == EINTR)
            continue;
          nex_agent_log ("poll: %s", strerror (errno));
          exit (1);
        }
      if (ready == 0 && fill)
        {
          nex_agent_warm_fill (a);
          continue;
        }

      if (p[i_sig].revents)
        handle_signals (a);
      /* Starts first, then output, so that STARTED precedes what a process wrote and that precedes an EXIT this
       * round may produce (a process with output has become its program: its status pipe tells, so output is
       * never read from a record still starting).  A descriptor is used only if its record still holds it: one
       * round may end a session and start another. */
      for (int i = 0; i < AGENT_MAX_PROCS; i++)
        {
          nex_agent_proc_t *x = &a->procs[i];
          if (x->live && x->status_fd >= 0 && (at[i].out >= 0 || at[i].err >= 0 || at[i].status >= 0))
            nex_agent_proc_check_start (a, x);
          if (!x->live)
            continue;
          if (at[i].out >= 0 && p[at[i].out].revents && x->out_fd == p[at[i].out].fd)
            nex_agent_proc_read (a, x, &x->out_fd, NEX_WIRE_STDOUT);
          if (at[i].err >= 0 && p[at[i].err].revents && x->err_fd == p[at[i].err].fd)
            nex_agent_proc_read (a, x, &x->err_fd, NEX_WIRE_STDERR);
          if (at[i].in >= 0 && p[at[i].in].revents && x->in_fd == p[at[i].in].fd)
            nex_agent_proc_write_stdin (x);
        }
      if (i_conn >= 0 && a->conn_fd == p[i_conn].fd)
        {
          if (p[i_conn].revents & (POLLIN | POLLHUP | POLLERR))
            nex_agent_conn_read (a);
          if (a->conn_fd >= 0 && (p[i_conn].revents & POLLOUT))
            nex_agent_conn_flush (a);
        }
      if (i_listen >= 0 && (p[i_listen].revents & POLLIN))
        nex_agent_conn_accept (a);
      nex_agent_proc_deadlines (a, nex_agent_now_ms ());
      nex_agent_workload_lease_check (a, nex_agent_now_ms ());
      /* What this round queued (STARTED, output, EXIT) leaves now rather than after one more poll. */
      if (a->conn_fd >= 0 && a->head)
        nex_agent_conn_flush (a);
    }
}

/* --- start-up ------------------------------------------------------------------------------------------------- */

/* Descriptors 0-2 must be open before anything else is: as PID 1 of a VM they may not be, and a pipe or socket
 * landing on 1 or 2 would then receive the agent's diagnostics, or be clobbered by the child's dup2. */
static void
fill_std_fds (void)
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
usage (FILE *out)
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
parse_fd (const char *s)
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
  nex_agent_transport_t kind = AGENT_TRANSPORT_LISTEN;
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
          fd = parse_fd (optarg);
          break;
        case 's':
          kind = AGENT_TRANSPORT_STREAM;
          fd = parse_fd (optarg);
          break;
        case 'p':
          kind = AGENT_TRANSPORT_STREAM;
          path = optarg;
          break;
        case 'h':
          usage (stdout);
          return 0;
        default:
          usage (stderr);
          return 2;
        }
      chosen++;
    }
  if (!vm_init && (optind < argc || chosen > 1))
    {
      usage (stderr);
      return 2;
    }

  bool vm = nex_agent_vm_detect (argv[0], chosen > 0);
  if (vm)
    nex_agent_vm_init ();
  fill_std_fds ();
  /* Out of memory is fatal everywhere in Nex; jansson allocates through the same aborting allocator, so no
   * JSON call below can fail half-way for lack of memory. */
  json_set_alloc_funcs (nex_xmalloc, free);

  nex_agent_t a = {
    .listen_fd = -1,
    .conn_fd = -1,
    .sig_fd = -1,
    .is_init = getpid () == 1,
  };
  nex_wire_reader_init (&a.reader);
  for (int i = 0; i < AGENT_MAX_PROCS; i++)
    nex_agent_proc_reset (&a.procs[i]);

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
  nex_agent_conn_open (&a, kind, fd, path);
  run (&a);
}
