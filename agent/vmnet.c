/* SPDX-License-Identifier: Apache-2.0 */
/* vmnet.c — a microVM's eth0 from nex.net= (see vmnet.h), with the classic ioctls: the static agent carries no
 * netlink library, and an address, a flag and two routes are all it needs.  The result is what a sandbox's
 * eth0 gets over netlink (server/net/link.c): ADDR/32, the gateway reached on the link, the default route
 * through it. */
#include "agent/vmnet.h"
#include "agent/agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "rootfs/layout.h"

#define VMNET_IF "eth0"

typedef struct vmnet_spec
{
  struct in_addr addr, gateway;
  struct in_addr resolvers[NEX_VM_NET_MAX_RESOLVERS];
  int n_resolvers;
} vmnet_spec_t;

/* "ADDR,GATEWAY[,RESOLVER...]" into *OUT: 0, or -1 when it is not that. */
static int
parse_spec (const char *spec, vmnet_spec_t *out)
{
  char buf[256];
  if (strlen (spec) >= sizeof buf)
    return -1;
  snprintf (buf, sizeof buf, "%s", spec);
  memset (out, 0, sizeof *out);
  int n = 0;
  char *save = NULL;
  for (char *tok = strtok_r (buf, ",", &save); tok; tok = strtok_r (NULL, ",", &save), n++)
    {
      struct in_addr a;
      if (inet_pton (AF_INET, tok, &a) != 1)
        return -1;
      if (n == 0)
        out->addr = a;
      else if (n == 1)
        out->gateway = a;
      else if (out->n_resolvers < NEX_VM_NET_MAX_RESOLVERS)
        out->resolvers[out->n_resolvers++] = a;
    }
  return n >= 2 ? 0 : -1;
}

static void
set_sockaddr (struct sockaddr *sa, struct in_addr a)
{
  struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr = a };
  memcpy (sa, &sin, sizeof sin);
}

/* Request REQ on FD for interface VMNET_IF with IFR; WHAT names it in errors. */
static int
if_ioctl (int fd, unsigned long req, struct ifreq *ifr, const char *what)
{
  snprintf (ifr->ifr_name, IFNAMSIZ, "%s", VMNET_IF);
  if (ioctl (fd, req, ifr) < 0)
    {
      nex_agent_log ("network: %s on %s: %s", what, VMNET_IF, strerror (errno));
      return -1;
    }
  return 0;
}

/* A route to DST/MASK on eth0, through GATEWAY when it is not 0. */
static int
add_route (int fd, struct in_addr dst, struct in_addr mask, struct in_addr gateway, const char *what)
{
  struct rtentry rt = { 0 };
  char dev[IFNAMSIZ] = VMNET_IF;
  set_sockaddr (&rt.rt_dst, dst);
  set_sockaddr (&rt.rt_genmask, mask);
  set_sockaddr (&rt.rt_gateway, gateway);
  rt.rt_flags = RTF_UP | (gateway.s_addr ? RTF_GATEWAY : RTF_HOST);
  rt.rt_dev = dev;
  if (ioctl (fd, SIOCADDRT, &rt) < 0 && errno != EEXIST)
    {
      nex_agent_log ("network: %s: %s", what, strerror (errno));
      return -1;
    }
  return 0;
}

static int
configure_eth0 (const vmnet_spec_t *s)
{
  int64_t deadline = nex_agent_now_ms () + NEX_AGENT_VM_NET_WAIT_MS;
  while (if_nametoindex (VMNET_IF) == 0 && nex_agent_now_ms () < deadline)
    usleep (5000);
  if (if_nametoindex (VMNET_IF) == 0)
    {
      nex_agent_log ("network: no %s appeared (is virtio_net among the VM's modules?)", VMNET_IF);
      return -1;
    }
  cleanup_close int fd = socket (AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    {
      nex_agent_log ("network: socket: %s", strerror (errno));
      return -1;
    }
  struct ifreq ifr = { 0 };
  struct in_addr all = { .s_addr = INADDR_BROADCAST }, none = { 0 };
  set_sockaddr (&ifr.ifr_addr, s->addr);
  if (if_ioctl (fd, SIOCSIFADDR, &ifr, "set address") < 0)
    return -1;
  set_sockaddr (&ifr.ifr_netmask, all);
  if (if_ioctl (fd, SIOCSIFNETMASK, &ifr, "set netmask") < 0 || if_ioctl (fd, SIOCGIFFLAGS, &ifr, "get flags") < 0)
    return -1;
  ifr.ifr_flags |= IFF_UP;
  if (if_ioctl (fd, SIOCSIFFLAGS, &ifr, "bring up") < 0)
    return -1;
  /* Loopback too: the kernel brings up no interface by itself. */
  struct ifreq lo = { 0 };
  snprintf (lo.ifr_name, IFNAMSIZ, "lo");
  if (ioctl (fd, SIOCGIFFLAGS, &lo) == 0)
    {
      lo.ifr_flags |= IFF_UP;
      (void)!ioctl (fd, SIOCSIFFLAGS, &lo);
    }
  if (add_route (fd, s->gateway, all, none, "route to the gateway") < 0
      || add_route (fd, none, none, s->gateway, "default route") < 0)
    return -1;
  return 0;
}

static void
write_file (const char *path, const char *text)
{
  cleanup_close int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write (fd, text, strlen (text)) != (ssize_t)strlen (text))
    nex_agent_log ("network: write %s: %s", path, strerror (errno));
}

static void
write_etc (const vmnet_spec_t *s, const char *hostname)
{
  char a[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN], r[INET_ADDRSTRLEN];
  inet_ntop (AF_INET, &s->addr, a, sizeof a);
  inet_ntop (AF_INET, &s->gateway, g, sizeof g);
  char hosts[512];
  snprintf (hosts, sizeof hosts, "127.0.0.1\tlocalhost\n%s\t%s\n%s\tnex-host\n", a, hostname ? hostname : "", g);
  char resolv[256] = "";
  size_t len = 0;
  for (int i = 0; i < s->n_resolvers && len < sizeof resolv; i++)
    len += (size_t)snprintf (resolv + len, sizeof resolv - len, "nameserver %s\n",
                             inet_ntop (AF_INET, &s->resolvers[i], r, sizeof r));
  mkdir ("/etc", 0755);
  write_file ("/etc/hosts", hosts);
  write_file ("/etc/resolv.conf", resolv);
  /* The VM is the workload's own: a web server needs no privilege for port 80 (as in a sandbox). */
  write_file ("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
}

int
nex_agent_vm_net (const char *spec, const char *hostname)
{
  vmnet_spec_t s;
  if (parse_spec (spec, &s) < 0)
    {
      nex_agent_log ("network: malformed %s=%s", NEX_VM_PARAM_NET, spec);
      return -1;
    }
  write_etc (&s, hostname);
  return configure_eth0 (&s);
}
