/* SPDX-License-Identifier: Apache-2.0 */
/* net/link.c — a workload's routed point-to-point link, made over rtnetlink with libmnl: a veth for a sandbox,
 * a tap for a QEMU microVM.
 *
 * The veth is created with its peer already inside the sandbox's network namespace (IFLA_NET_NS_FD), so that
 * no half-made interface ever sits in the host's namespace under the workload's name.  The sandbox side is
 * configured through a netlink socket opened inside that namespace by a short-lived thread (setns changes only
 * the calling thread's namespace, and this one ends right after: no thread of nexd is ever left elsewhere).
 *
 * Addresses are point-to-point /32s: host side GATEWAY peer ADDR, workload side ADDR peer GATEWAY.  Every host
 * side holds the same gateway address, so the host is one address for every workload (NEX_HOST_ADDR), and each
 * peer route names its own link: no bridge, no ARP between workloads, nothing one can sniff of another.
 *
 * A VM's tap is made by nexd (TUNSETIFF on /dev/net/tun, not persistent) and its descriptor handed to QEMU
 * (`-netdev tap,fd=`): once nexd has closed its copy, the tap lives exactly as long as QEMU, like a veth with its
 * namespace.  Firecracker opens its tap itself, by name: that one is made persistent, nexd lets go of it before
 * Firecracker starts, and it is deleted with the workload's network (or swept at start).  Its guest side is the
 * agent's to configure (agent/vmnet.c), from what the kernel command line says. */
#include "server/net/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

static void
mnl_closep (struct mnl_socket **nl)
{
  if (*nl)
    mnl_socket_close (*nl);
}
#define cleanup_mnl cleanup_with (mnl_closep)

/* Sends NLH on NL and reads its acknowledgement: 0, or -1 with the kernel's errno.  WHAT names the request. */
static int
nl_talk (struct mnl_socket *nl, struct nlmsghdr *nlh, const char *what, nex_error_t *err)
{
  static uint32_t seq_counter;
  nlh->nlmsg_seq = __atomic_add_fetch (&seq_counter, 1, __ATOMIC_RELAXED) + (uint32_t)time (NULL);
  nlh->nlmsg_flags |= NLM_F_ACK;
  if (mnl_socket_sendto (nl, nlh, nlh->nlmsg_len) < 0)
    return nex_error_sys (err, errno, "netlink: %s", what);
  char buf[MNL_SOCKET_BUFFER_SIZE];
  ssize_t n = mnl_socket_recvfrom (nl, buf, sizeof buf);
  if (n < 0)
    return nex_error_sys (err, errno, "netlink: %s", what);
  if (mnl_cb_run (buf, (size_t)n, nlh->nlmsg_seq, mnl_socket_get_portid (nl), NULL, NULL) < 0)
    return nex_error_sys (err, errno, "netlink: %s", what);
  return 0;
}

static struct mnl_socket *
nl_open (nex_error_t *err)
{
  struct mnl_socket *nl = mnl_socket_open2 (NETLINK_ROUTE, SOCK_CLOEXEC);
  if (nl == NULL || mnl_socket_bind (nl, 0, MNL_SOCKET_AUTOPID) < 0)
    {
      int e = errno;
      if (nl)
        mnl_socket_close (nl);
      nex_error_sys (err, e, "netlink socket");
      return NULL;
    }
  return nl;
}

/* A request header of TYPE with FLAGS in BUF, followed by a zeroed family header of HDR_LEN bytes (*HDR). */
static struct nlmsghdr *
nl_request (char *buf, uint16_t type, uint16_t flags, size_t hdr_len, void **hdr)
{
  struct nlmsghdr *nlh = mnl_nlmsg_put_header (buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = NLM_F_REQUEST | flags;
  *hdr = mnl_nlmsg_put_extra_header (nlh, hdr_len);
  return nlh;
}

static int
veth_create (struct mnl_socket *nl, const char *name, const char *peer, int netns_fd, nex_error_t *err)
{
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct ifinfomsg *ifi;
  struct nlmsghdr *nlh = nl_request (buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof *ifi, (void **)&ifi);
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz (nlh, IFLA_IFNAME, name);
  struct nlattr *linkinfo = mnl_attr_nest_start (nlh, IFLA_LINKINFO);
  mnl_attr_put_strz (nlh, IFLA_INFO_KIND, "veth");
  struct nlattr *data = mnl_attr_nest_start (nlh, IFLA_INFO_DATA);
  struct nlattr *peer_info = mnl_attr_nest_start (nlh, VETH_INFO_PEER);
  struct ifinfomsg *pifi = mnl_nlmsg_put_extra_header (nlh, sizeof *pifi);
  pifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz (nlh, IFLA_IFNAME, peer);
  mnl_attr_put_u32 (nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
  mnl_attr_nest_end (nlh, peer_info);
  mnl_attr_nest_end (nlh, data);
  mnl_attr_nest_end (nlh, linkinfo);
  return nl_talk (nl, nlh, "create veth", err);
}

static int
link_up (struct mnl_socket *nl, int index, nex_error_t *err)
{
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct ifinfomsg *ifi;
  struct nlmsghdr *nlh = nl_request (buf, RTM_NEWLINK, 0, sizeof *ifi, (void **)&ifi);
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  return nl_talk (nl, nlh, "set link up", err);
}

/* LOCAL/32 peer PEER on link INDEX. */
static int
addr_add_ptp (struct mnl_socket *nl, int index, uint32_t local, uint32_t peer, nex_error_t *err)
{
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct ifaddrmsg *ifa;
  struct nlmsghdr *nlh = nl_request (buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, sizeof *ifa, (void **)&ifa);
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = 32;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = (unsigned)index;
  mnl_attr_put_u32 (nlh, IFA_LOCAL, htonl (local));
  mnl_attr_put_u32 (nlh, IFA_ADDRESS, htonl (peer));
  return nl_talk (nl, nlh, "add address", err);
}

static int
default_route (struct mnl_socket *nl, int index, uint32_t gateway, nex_error_t *err)
{
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct rtmsg *rtm;
  struct nlmsghdr *nlh = nl_request (buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof *rtm, (void **)&rtm);
  rtm->rtm_family = AF_INET;
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_BOOT;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32 (nlh, RTA_GATEWAY, htonl (gateway));
  mnl_attr_put_u32 (nlh, RTA_OIF, (uint32_t)index);
  return nl_talk (nl, nlh, "add default route", err);
}

static void
write_sysctl (const char *path, const char *value)
{
  cleanup_close int fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd >= 0)
    (void)!write (fd, value, strlen (value));
}

/* What the thread that enters the sandbox's namespace hands back. */
typedef struct enter_ns
{
  int netns_fd;
  struct mnl_socket *nl; /* a netlink socket bound inside the namespace */
  int eth0;              /* index of eth0 there */
  int errnum;
} enter_ns_t;

static void *
enter_ns_main (void *arg)
{
  enter_ns_t *e = arg;
  if (setns (e->netns_fd, CLONE_NEWNET) < 0)
    {
      e->errnum = errno;
      return NULL;
    }
  e->nl = mnl_socket_open2 (NETLINK_ROUTE, SOCK_CLOEXEC);
  if (e->nl == NULL || mnl_socket_bind (e->nl, 0, MNL_SOCKET_AUTOPID) < 0)
    e->errnum = errno;
  e->eth0 = (int)if_nametoindex ("eth0");
  /* Any port is the workload's to bind in a namespace of its own (as in containers): a web server needs no
   * capability for port 80.  /proc/sys/net is the opening thread's namespace. */
  write_sysctl ("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
  if (e->eth0 == 0 && e->errnum == 0)
    e->errnum = errno ? errno : ENODEV;
  return NULL;
}

/* A netlink socket inside the namespace NETNS_FD, and the index of its eth0. */
static struct mnl_socket *
nl_open_in (int netns_fd, int *eth0, nex_error_t *err)
{
  enter_ns_t e = { .netns_fd = netns_fd };
  pthread_t t;
  int r = pthread_create (&t, NULL, enter_ns_main, &e);
  if (r != 0)
    {
      nex_error_sys (err, r, "thread to enter the sandbox's network namespace");
      return NULL;
    }
  pthread_join (t, NULL);
  if (e.errnum != 0)
    {
      if (e.nl)
        mnl_socket_close (e.nl);
      nex_error_sys (err, e.errnum, "entering the sandbox's network namespace");
      return NULL;
    }
  *eth0 = e.eth0;
  return e.nl;
}

/* The sandbox's side: eth0 up with its address, the default route through the gateway. */
static int
configure_inside (int netns_fd, uint32_t addr, uint32_t gateway, nex_error_t *err)
{
  int eth0 = 0;
  cleanup_mnl struct mnl_socket *nl = nl_open_in (netns_fd, &eth0, err);
  if (nl == NULL || addr_add_ptp (nl, eth0, addr, gateway, err) < 0 || link_up (nl, eth0, err) < 0
      || default_route (nl, eth0, gateway, err) < 0)
    return nex_error_wrap (err, "configuring eth0 in the sandbox");
  return 0;
}

static int
configure_host_side (struct mnl_socket *nl, const nex_net_lease_t *l, uint32_t gateway, int route_localnet,
                     nex_error_t *err)
{
  int index = (int)if_nametoindex (l->ifname);
  if (index == 0)
    return nex_error_sys (err, errno, "link %s", l->ifname);
  char path[96];
  /* Workloads have no IPv6 address; the host side takes none either (no link-local chatter to filter). */
  snprintf (path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", l->ifname);
  write_sysctl (path, "1");
  /* Published ports reached from the host's loopback (curl 127.0.0.1:P) are DNATed out of this link with a
   * 127.0.0.1 source, which routing refuses on a non-loopback link unless route_localnet is set on it (the
   * masquerade that replaces the source comes after routing).  Its danger (CVE-2020-8558: packets *from* the
   * link to 127.0.0.1 accepted) is closed by the table's raw prerouting rule dropping those. */
  if (route_localnet)
    {
      snprintf (path, sizeof path, "/proc/sys/net/ipv4/conf/%s/route_localnet", l->ifname);
      write_sysctl (path, "1");
    }
  if (addr_add_ptp (nl, index, gateway, l->addr, err) < 0 || link_up (nl, index, err) < 0)
    return nex_error_wrap (err, "configuring %s", l->ifname);
  return 0;
}

int
nex_net_link_create (const nex_net_lease_t *l, uint32_t gateway, pid_t pid, int route_localnet, nex_error_t *err)
{
  char path[64];
  snprintf (path, sizeof path, "/proc/%d/ns/net", (int)pid);
  cleanup_close int netns_fd = open (path, O_RDONLY | O_CLOEXEC);
  if (netns_fd < 0)
    return nex_error_sys (err, errno, "open %s", path);
  cleanup_mnl struct mnl_socket *nl = nl_open (err);
  if (nl == NULL)
    return -1;
  /* A link of the same name is a leftover of an earlier run of this workload id (there is none other). */
  nex_net_link_delete (l->ifname, NULL);
  if (veth_create (nl, l->ifname, "eth0", netns_fd, err) < 0)
    return nex_error_wrap (err, "link %s", l->ifname);
  if (configure_host_side (nl, l, gateway, route_localnet, err) < 0
      || configure_inside (netns_fd, l->addr, gateway, err) < 0)
    {
      nex_net_link_delete (l->ifname, NULL);
      return -1;
    }
  return 0;
}

int
nex_net_link_create_tap (const nex_net_lease_t *l, uint32_t gateway, int route_localnet, int persist, nex_error_t *err)
{
  cleanup_close int fd = open ("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "open /dev/net/tun (a VM's tap needs the tun module)");
  /* The virtio-net header lets QEMU pass checksum and segmentation offloads through instead of doing them. */
  struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
  snprintf (ifr.ifr_name, sizeof ifr.ifr_name, "%s", l->ifname);
  nex_net_link_delete (l->ifname, NULL);
  if (ioctl (fd, TUNSETIFF, &ifr) < 0)
    return nex_error_sys (err, errno, "create tap %s", l->ifname);
  if (persist && ioctl (fd, TUNSETPERSIST, 1) < 0)
    return nex_error_sys (err, errno, "make tap %s persistent", l->ifname);
  cleanup_mnl struct mnl_socket *nl = nl_open (err);
  /* On failure the tap goes with its descriptor (a persistent one is deleted). */
  if (nl == NULL || configure_host_side (nl, l, gateway, route_localnet, err) < 0)
    {
      if (persist)
        nex_net_link_delete (l->ifname, NULL);
      return -1;
    }
  return NEX_STEAL_FD (fd);
}

int
nex_net_link_delete (const char *ifname, nex_error_t *err)
{
  int index = (int)if_nametoindex (ifname);
  if (index == 0)
    return 0;
  cleanup_mnl struct mnl_socket *nl = nl_open (err);
  if (nl == NULL)
    return -1;
  char buf[MNL_SOCKET_BUFFER_SIZE];
  struct ifinfomsg *ifi;
  struct nlmsghdr *nlh = nl_request (buf, RTM_DELLINK, 0, sizeof *ifi, (void **)&ifi);
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  cleanup_error nex_error_t e = NULL;
  if (nl_talk (nl, nlh, "delete link", &e) < 0 && e->errnum != ENODEV)
    return nex_error_set (err, NEX_ERR_SYSTEM, "%s: %s", ifname, e->msg);
  return 0;
}

char **
nex_net_link_list (void)
{
  struct if_nameindex *all = if_nameindex ();
  size_t n = 0;
  for (struct if_nameindex *i = all; i && i->if_index; i++)
    n++;
  char **out = nex_xzalloc ((n + 1) * sizeof *out);
  size_t k = 0;
  for (struct if_nameindex *i = all; i && i->if_index; i++)
    if (strncmp (i->if_name, NEX_NET_IF_PREFIX, strlen (NEX_NET_IF_PREFIX)) == 0)
      out[k++] = nex_xstrdup (i->if_name);
  if (all)
    if_freenameindex (all);
  return out;
}

/* /sys/class/net/IFNAME/statistics/WHAT, or -1. */
static int64_t
read_stat (const char *ifname, const char *what)
{
  char path[128], buf[32];
  snprintf (path, sizeof path, "/sys/class/net/%s/statistics/%s", ifname, what);
  cleanup_close int fd = open (path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read (fd, buf, sizeof buf - 1) : -1;
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  return strtoll (buf, NULL, 10);
}

int
nex_net_link_counters (const char *ifname, nex_net_counters_t *out)
{
  out->tx_bytes = read_stat (ifname, "rx_bytes");
  if (out->tx_bytes < 0)
    return 0;
  out->tx_packets = read_stat (ifname, "rx_packets");
  out->rx_bytes = read_stat (ifname, "tx_bytes");
  out->rx_packets = read_stat (ifname, "tx_packets");
  return 1;
}
