/* SPDX-License-Identifier: Apache-2.0 */
/* net/internal.h — what the files of server/net/ share; nothing outside server/net/ includes it.
 *
 *   net.c      the module's public face (net.h): open/restore at start, reserve at deploy, attach at sandbox
 *              start, release at the end, the workload's environment and counters
 *   spec.c     the deploy fields (spec.h)
 *   pool.c     the node's address range: chosen and checked against the host's routes and resolvers at start
 *   lease.c    addresses and published host ports leased in the registry (schema/007_network.sql)
 *   link.c     a workload's routed point-to-point link (a sandbox's veth, a VM's tap), over rtnetlink (libmnl)
 *   rules.c    the nftables table `inet nex`, through libnftables: one transaction per workload change
 *   etc.c      the /etc/hosts and /etc/resolv.conf a workload sees
 *   forward.c  the TCP forwarder on the gateway address that gives workloads the node's NATS server
 *   teardown.c the thread that takes ended workloads' networks down, off the path of their final state
 *   shape.c    a bridge sandbox's bandwidth limit (resources.net_mbps): tc tbf on both ends of its veth
 *   nftd.c     the helper process that runs the nftables transactions (away from the sandboxes' COW pages) */
#ifndef NEX_NET_INTERNAL_H
#define NEX_NET_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "server/net/net.h"
#include "server/net/spec.h"

#define NEX_NET_IFNAME_LEN 16 /* IFNAMSIZ */
#define NEX_NET_IF_PREFIX "nx"
#define NEX_NET_TABLE "nex" /* table inet nex */

/* One published port of a lease. */
typedef struct nex_net_port
{
  int host;         /* host port (resolved: never 0 once leased) */
  int workload;     /* port inside the workload */
  char protocol[4]; /* "tcp" or "udp" */
  uint32_t host_ip; /* host byte order; 0: every local address */
} nex_net_port_t;

/* Everything the rules and the link of one workload are made from: its spec, as stored, in C. */
typedef struct nex_net_lease
{
  char id[NEX_ID_LEN + 1];
  char ifname[NEX_NET_IFNAME_LEN]; /* host side of its veth: nx + 12 hex digits of the id */
  uint32_t addr;                   /* the workload's address */
  nex_net_port_t ports[NEX_NET_MAX_PORTS];
  size_t n_ports;
  nex_net_rule_t allow[NEX_NET_MAX_RULES];
  size_t n_allow;
  nex_net_rule_t deny[NEX_NET_MAX_RULES];
  size_t n_deny;
  int nats; /* asked for NEX_NATS_URL (and so may reach the forwarder) */
} nex_net_lease_t;

/* The address range. */
typedef struct nex_net_pool
{
  uint32_t base;    /* network address, host byte order */
  int prefix;       /* 12..29 */
  uint32_t gateway; /* base + 1: the host side of every workload's link */
} nex_net_pool_t;

struct nex_nft; /* libnftables' context */

struct nex_net
{
  nex_registry_t *reg;
  nex_net_pool_t pool;
  char cidr[20];               /* the pool as text */
  int egress_deny;             /* --egress-default deny */
  pthread_mutex_t lock;        /* nft, installed, cursor */
  struct nft_ctx *nft;         /* libnftables context (not thread-safe: under lock) */
  json_t *installed;           /* id -> the nft script that removes that workload's rules */
  int ready;                   /* table inet nex is this node's (under lock) */
  json_t *leased;              /* ids holding a lease (a set): release is a no-op for the others */
  uint32_t cursor;             /* offset in the pool where the next address search starts */
  char *nats_host;             /* the node's NATS server (first --nats URL), NULL without one */
  int nats_port;               /* ... and its port: also the forwarder's port on the gateway */
  struct nex_net_forward *fwd; /* the NATS forwarder, NULL when off */
  char *resolvers;             /* "nameserver a\nnameserver b\n" for workloads, "" when the host has none usable */
  json_t *ending;              /* ids whose network is to be taken down, oldest first (under lock; teardown.c) */
  pthread_cond_t ending_cond;  /* signalled when ENDING grows or a teardown is done */
  pthread_t ending_thread;     /* takes them down */
  int ending_busy;             /* the thread is taking one down now (under lock) */
  int ending_stop;             /* the thread ends once ENDING is empty (under lock) */
  int ending_started;          /* the thread runs */
  int nftd_fd;                 /* socket to the nftables helper (nftd.c), -1 when there is none (under lock) */
  pid_t nftd_pid;              /* ... and its pid */
};

/* ---- net.c ---- */

/* Takes workload ID's network down now: its rules, its link, its lease (what nex_net_release queues).  Not under
 * NET's lock.  Any thread. */
void nex_net_release_now (nex_net_t *net, const char *id);

/* ---- teardown.c ---- */

/* Starts the thread that takes networks down.  0, or -1 with ERR (nex_net_release then does it itself). */
int nex_net_teardown_start (nex_net_t *net, nex_error_t *err);

/* Takes down what is still queued, then ends the thread.  Safe when it never started. */
void nex_net_teardown_stop (nex_net_t *net);

/* Queues ID's teardown (done at once when the thread does not run, the lock let go meanwhile).  Under NET's lock. */
void nex_net_teardown_queue_locked (nex_net_t *net, const char *id);

/* Returns once every queued teardown is done: a lease taken after it finds the ports of ended workloads free.
 * Not under NET's lock.  Any thread but the teardown thread. */
void nex_net_teardown_wait (nex_net_t *net);

/* ---- pool.c ---- */

/* Chooses the pool: CIDR (NULL: the first default range that collides with nothing), checked against the host's
 * routes (other than nexd's own nx* links) and RESOLVERS (newline-separated addresses).  0 or -1. */
int nex_net_pool_choose (const char *cidr, const char *resolvers, nex_net_pool_t *out, nex_error_t *err);

/* Number of addresses in P a workload may get (network, gateway and broadcast excluded). */
uint32_t nex_net_pool_size (const nex_net_pool_t *p);

/* ---- lease.c ---- */

/* Leases an address and W's published ports in the registry (spec W->net; `host: 0` ports get a free host port
 * and the spec is updated, as is its address).  NEX_ERR_CONFLICT names a port already published or in use on the
 * host; NEX_ERR_UNAVAILABLE when the pool is full.  Any thread (holds NET's lock for the cursor). */
int nex_net_lease_take (nex_net_t *net, const char *id, json_t *spec, nex_error_t *err);

/* Drops ID's lease (address and ports).  Idempotent. */
void nex_net_lease_drop (nex_net_t *net, const char *id);

/* Drops every lease whose workload is not in LIVE (a JSON object keyed by id).  Returns how many went. */
int nex_net_lease_prune (nex_net_t *net, const json_t *live);

/* Fills *OUT from workload ID and its stored SPEC (address, ports, egress, nats).  0 or -1. */
int nex_net_lease_from_spec (const char *id, const json_t *spec, nex_net_lease_t *out, nex_error_t *err);

/* ---- link.c ---- */

/* Creates L's veth: host side L->ifname (GATEWAY/32 peer L->addr, up; ROUTE_LOCALNET set when asked), the other
 * side eth0 in the network namespace of PID (L->addr/32 peer GATEWAY, up, default route via GATEWAY).  On
 * failure nothing is left.  Any thread. */
int nex_net_link_create (const nex_net_lease_t *l, uint32_t gateway, pid_t pid, int route_localnet, nex_error_t *err);

/* Creates L's tap for a VM: host side L->ifname configured as a veth's (GATEWAY/32 peer L->addr, up;
 * ROUTE_LOCALNET when asked).  Returns the tap's descriptor (CLOEXEC; the VMM's end: the tap goes when the last
 * copy closes, unless PERSIST, for a VMM that opens it by name), or -1 with nothing left.  Any thread. */
int nex_net_link_create_tap (const nex_net_lease_t *l, uint32_t gateway, int route_localnet, int persist,
                             nex_error_t *err);

/* Deletes link IFNAME; one that is gone already is no error. */
int nex_net_link_delete (const char *ifname, nex_error_t *err);

/* Names of the host's links that start with nx (nexd's), NULL-terminated; the caller frees each and the array. */
char **nex_net_link_list (void);

/* The host side's counters of IFNAME: what the workload sent is what the host side received. */
int nex_net_link_counters (const char *ifname, nex_net_counters_t *out);

/* ---- rules.c ---- */

/* Opens the libnftables context.  NULL with ERR when the kernel or the library refuse. */
struct nft_ctx *nex_net_rules_open (nex_error_t *err);

/* Replaces table inet nex, in one transaction, with the base chains and the rules of LEASES (N); sets
 * NET->installed.  Under NET's lock. */
int nex_net_rules_rebuild_locked (nex_net_t *net, const nex_net_lease_t *leases, size_t n, nex_error_t *err);

/* Adds L's rules in one transaction and records how to remove them.  Under NET's lock. */
int nex_net_rules_add_locked (nex_net_t *net, const nex_net_lease_t *l, nex_error_t *err);

/* Removes ID's rules in one transaction (nothing when none were added).  Under NET's lock. */
int nex_net_rules_remove_locked (nex_net_t *net, const char *id, nex_error_t *err);

/* Deletes table inet nex (at a clean shutdown nothing is removed: workloads live on; for tests). */
int nex_net_rules_drop_table (struct nft_ctx *nft, nex_error_t *err);

/* ---- nftd.c ---- */

/* Forks the nftables helper; call while nexd has no threads of its own yet.  0, or -1 with ERR (transactions then
 * run in-process). */
int nex_net_nftd_start (nex_net_t *net, nex_error_t *err);

/* Runs SCRIPT in the helper as one transaction: 0 applied, 1 refused (*MSG: libnftables' error text, caller
 * frees), -1 when there is no helper (or it broke: it is then stopped).  Under NET's lock. */
int nex_net_nftd_run (nex_net_t *net, const char *script, char **msg);

/* Ends the helper (closes its socket, reaps it).  Safe when there is none. */
void nex_net_nftd_stop (nex_net_t *net);

/* ---- shape.c ---- */

/* Limits the veth whose host side is IFNAME and whose other side is eth0 in the network namespace of PID to MBPS
 * Mbit/s each way (a tbf qdisc on both ends, made with tc).  0 or -1 with ERR.  Any thread. */
int nex_net_shape (const char *ifname, pid_t pid, int64_t mbps, nex_error_t *err);

/* ---- etc.c ---- */

/* The host's nameservers a workload can use, as "nameserver A\n..." (loopback ones are left out: they are not
 * reachable from inside); "" when none is left.  Caller frees. */
char *nex_net_etc_resolvers (void);

/* Writes DIR/hosts (localhost, NAME at ADDR, nex-host at GATEWAY) and DIR/resolv.conf (RESOLVERS).  0 or -1. */
int nex_net_etc_write (const char *dir, const char *name, uint32_t addr, uint32_t gateway, const char *resolvers,
                       nex_error_t *err);

/* ---- forward.c ---- */

typedef struct nex_net_forward nex_net_forward_t;

/* Listens on POOL's gateway address at PORT (even before any link holds that address) and relays each
 * connection from an address of POOL to UPSTREAM:UPSTREAM_PORT, on a thread of its own.  NULL with ERR. */
nex_net_forward_t *nex_net_forward_start (const nex_net_pool_t *pool, int port, const char *upstream, int upstream_port,
                                          nex_error_t *err);

/* Stops the forwarder and closes its connections.  Safe on NULL. */
void nex_net_forward_stop (nex_net_forward_t *f);

#endif
