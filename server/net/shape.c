/* SPDX-License-Identifier: Apache-2.0 */
/* net/shape.c — a bridge sandbox's bandwidth limit (`resources.net_mbps`): a token bucket (tc's tbf qdisc) on each
 * end of its veth, the host side for what the workload receives and eth0 inside its namespace for what it sends.
 *
 * Both are egress qdiscs, so each direction is shaped where its packets queue (TCP slows down instead of losing
 * packets); this kernel has no ingress policing (no classifier or action modules), and a qdisc is what every
 * kernel has.  The workload has no CAP_NET_ADMIN in its namespace, so it cannot remove the inner one.  tc
 * (iproute2) is run for it, in the sandbox's network namespace for eth0: a fork that enters the namespace
 * before it executes tc, so no thread of nexd ever changes namespace. */
#include "server/net/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"

static const char *
tc_path (void)
{
  static const char *const paths[] = { "/usr/sbin/tc", "/sbin/tc" };
  for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
    if (access (paths[i], X_OK) == 0)
      return paths[i];
  return NULL;
}

/* Runs tc ARGV (ARGV[0] ignored) in the network namespace NETNS_FD (-1: nexd's).  0, or -1 with ERR. */
static int
run_tc (int netns_fd, char *argv[], nex_error_t *err)
{
  const char *tc = tc_path ();
  if (tc == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "resources.net_mbps needs tc (iproute2) on the node");
  argv[0] = (char *)tc;
  pid_t pid = fork ();
  if (pid < 0)
    return nex_error_sys (err, errno, "fork for tc");
  if (pid == 0)
    {
      /* Only async-signal-safe calls between fork and exec (nexd has threads). */
      int null = open ("/dev/null", O_RDWR);
      if (null >= 0)
        {
          dup2 (null, 0);
          dup2 (null, 1);
        }
      if (netns_fd >= 0 && setns (netns_fd, CLONE_NEWNET) < 0)
        _exit (126);
      execv (tc, argv);
      _exit (127);
    }
  int status = 0;
  while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
    return 0;
  return nex_error_set (err, NEX_ERR_SYSTEM, "tc qdisc on %s failed (status %d)", argv[4], status);
}

/* A tbf of MBPS Mbit/s on link IFNAME of namespace NETNS_FD: a bucket of 20 ms at that rate (at least 32 KiB, so
 * that a full-size TSO segment fits), and at most 50 ms of queue. */
static int
tbf (int netns_fd, const char *ifname, int64_t mbps, nex_error_t *err)
{
  char rate[32], burst[32];
  snprintf (rate, sizeof rate, "%lldmbit", (long long)mbps);
  long long bytes = mbps * 1000000 / 8 / 50;
  snprintf (burst, sizeof burst, "%lld", bytes < 65536 ? 65536 : bytes);
  char *argv[] = { NULL,   "qdisc", "replace", "dev", (char *)ifname, "root", "tbf",
                   "rate", rate,    "burst",   burst, "latency",      "50ms", NULL };
  return run_tc (netns_fd, argv, err);
}

int
nex_net_shape (const char *ifname, pid_t pid, int64_t mbps, nex_error_t *err)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/ns/net", (int)pid);
  cleanup_close int netns_fd = open (path, O_RDONLY | O_CLOEXEC);
  if (netns_fd < 0)
    return nex_error_sys (err, errno, "open %s", path);
  if (tbf (-1, ifname, mbps, err) < 0 || tbf (netns_fd, "eth0", mbps, err) < 0)
    return nex_error_wrap (err, "resources.net_mbps");
  return 0;
}
