/* SPDX-License-Identifier: Apache-2.0 */
/* net/nftd.c — nftables transactions run in a small helper process of nexd's, forked when the network opens.
 *
 * Why a process: a sandbox's child is cloned from nexd (no CLONE_VM) and waits, sharing every page of nexd
 * copy-on-write, while nexd gives it its network.  libnftables builds its cache afresh for each command (a
 * dozen hash tables of 128 KiB, each memset), so a transaction run inside nexd then takes a copy-on-write fault
 * and a TLB shootdown on every page it touches: perf showed 165-220 faults and 4-10 ms of CPU per transaction,
 * against 7 faults and under 1 ms for the same one in a small single-threaded program.  The helper is that small
 * program: nobody forks from it, so its pages stay its own.
 *
 * Protocol, over a stream socketpair: nexd writes a u32 length and the script; the helper answers a u32 status
 * (0: applied) and a u32 length with libnftables' error text.  One request at a time (callers hold the
 * network's lock).  The helper is forked before nexd starts threads of its own (net.c calls it first thing), runs
 * only libnftables and read/write, dies with nexd (PR_SET_PDEATHSIG) and ends when its socket closes.  If it is
 * gone, the caller runs the transaction in-process as before (rules.c). */
#include "server/net/internal.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

#define NFTD_SCRIPT_MAX (64u << 20) /* a rebuild of a full pool's table is a few MiB */

/* Reads or writes exactly N bytes.  0, or -1 (errno; EPIPE for an end of file). */
static int
io_full (int fd, void *buf, size_t n, int writing)
{
  char *p = buf;
  while (n > 0)
    {
      ssize_t r = writing ? send (fd, p, n, MSG_NOSIGNAL) : read (fd, p, n);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        {
          if (r == 0)
            errno = EPIPE;
          return -1;
        }
      p += r;
      n -= (size_t)r;
    }
  return 0;
}

/* The helper's loop: never returns. */
static void __attribute__ ((noreturn)) helper_main (int fd)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
  prctl (PR_SET_NAME, "nexd-nft"); /* what ps shows: not taken for nexd itself */
  if (getppid () == 1)
    _exit (0); /* nexd died before the line above */
  struct nft_ctx *nft = nft_ctx_new (NFT_CTX_DEFAULT);
  if (nft == NULL)
    _exit (1);
  nft_ctx_buffer_output (nft);
  nft_ctx_buffer_error (nft);
  for (;;)
    {
      uint32_t len;
      if (io_full (fd, &len, sizeof len, 0) < 0 || len > NFTD_SCRIPT_MAX)
        _exit (0);
      char *script = malloc ((size_t)len + 1);
      if (script == NULL || io_full (fd, script, len, 0) < 0)
        _exit (1);
      script[len] = '\0';
      uint32_t status = nft_run_cmd_from_buffer (nft, script) == 0 ? 0 : 1;
      free (script);
      const char *msg = status ? nft_ctx_get_error_buffer (nft) : "";
      uint32_t mlen = msg ? (uint32_t)strlen (msg) : 0;
      if (io_full (fd, &status, sizeof status, 1) < 0 || io_full (fd, &mlen, sizeof mlen, 1) < 0
          || (mlen && io_full (fd, (void *)msg, mlen, 1) < 0))
        _exit (0);
    }
}

int
nex_net_nftd_start (nex_net_t *net, nex_error_t *err)
{
  int sv[2];
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    return nex_error_sys (err, errno, "socketpair for the nftables helper");
  pid_t pid = fork ();
  if (pid < 0)
    {
      int e = errno;
      close (sv[0]);
      close (sv[1]);
      return nex_error_sys (err, e, "fork the nftables helper");
    }
  if (pid == 0)
    {
      /* Nothing of nexd's but this socket (as fd 3) and stdio stays open in the helper. */
      if (sv[1] != 3 && dup2 (sv[1], 3) < 0)
        _exit (1);
      close_range (4, ~0u, 0);
      helper_main (3);
    }
  close (sv[1]);
  net->nftd_fd = sv[0];
  net->nftd_pid = pid;
  return 0;
}

int
nex_net_nftd_run (nex_net_t *net, const char *script, char **msg)
{
  *msg = NULL;
  if (net->nftd_fd < 0)
    return -1;
  size_t n = strlen (script);
  uint32_t len = (uint32_t)n, status = 1, mlen = 0;
  if (n > NFTD_SCRIPT_MAX || io_full (net->nftd_fd, &len, sizeof len, 1) < 0
      || io_full (net->nftd_fd, (void *)script, n, 1) < 0 || io_full (net->nftd_fd, &status, sizeof status, 0) < 0
      || io_full (net->nftd_fd, &mlen, sizeof mlen, 0) < 0 || mlen > NFTD_SCRIPT_MAX)
    {
      nex_net_nftd_stop (net); /* gone or broken: in-process from now on */
      return -1;
    }
  *msg = nex_xzalloc ((size_t)mlen + 1);
  if (mlen && io_full (net->nftd_fd, *msg, mlen, 0) < 0)
    {
      free (*msg);
      *msg = NULL;
      nex_net_nftd_stop (net);
      return -1;
    }
  return status == 0 ? 0 : 1;
}

void
nex_net_nftd_stop (nex_net_t *net)
{
  if (net->nftd_fd < 0)
    return;
  close (net->nftd_fd); /* the helper's read ends: it exits */
  net->nftd_fd = -1;
  while (waitpid (net->nftd_pid, NULL, 0) < 0 && errno == EINTR)
    ;
  net->nftd_pid = 0;
}
