/* SPDX-License-Identifier: Apache-2.0 */
/* net/net.h — networking for workloads in `network: "bridge"`: an address of their own from the node's pool,
 * a routed point-to-point veth to the host, NAT to the outside, published ports and an egress policy.
 *
 * The kernel does the work: one veth per sandbox (host side nx<12 hex digits of its id>, the other side eth0
 * in the sandbox's network namespace) or one tap of the same name per QEMU VM (eth0 in the guest is set up by
 * the agent from the kernel command line), addresses /32 point-to-point with the host side holding the pool's
 * gateway address, and one nftables table, `inet nex`, that nexd owns and nobody else writes.  Every workload
 * change is one nftables transaction; the table is rebuilt from the registry at start, where leases of workloads
 * that ended while nexd was down are dropped and leftover nx* links removed.  Links vanish with their sandbox's
 * network namespace, so a workload that ends on its own never leaves one behind.
 *
 * Life of a bridge workload: nex_net_reserve at deploy (address and host ports, stored: a port in use is a 409),
 * nex_net_attach when its sandbox exists but runs nothing yet (link, rules, /etc files) or nex_net_attach_tap
 * before its VM starts (tap, rules; the guest writes its own /etc files), nex_net_release when it
 * reaches a final state (rules, link and lease go, on a thread of the module's own). */
#ifndef NEX_NET_H
#define NEX_NET_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "common/error.h"
#include "server/registry.h"
#include "server/workload.h"

typedef struct nex_net nex_net_t;

/* Settings from nexd's configuration. */
typedef struct nex_net_options
{
  const char *cidr;           /* --network-cidr; NULL: the first of the default ranges that collides with nothing */
  const char *egress_default; /* --egress-default: "allow" (NULL) or "deny" */
  const char *nats_url;       /* the node's --nats (first URL), NULL without NATS: the forwarder's upstream */
} nex_net_options_t;

/* Per-workload counters, from the workload's point of view. */
typedef struct nex_net_counters
{
  int64_t rx_bytes, rx_packets; /* into the workload */
  int64_t tx_bytes, tx_packets; /* out of the workload */
} nex_net_counters_t;

/* Sets networking up for the node: chooses and checks the pool, creates table inet nex with the rules of every
 * bridge workload REG records as live (pending, starting, running), drops the other leases, removes nx* links
 * that belong to none, starts the NATS forwarder when OPTS has a NATS URL.  NULL with ERR when this host cannot
 * do it (no nf_tables, not root, a pool that collides): bridge workloads are then refused with the reason.
 * Call before the supervisor recovers workloads. */
nex_net_t *nex_net_open (nex_registry_t *reg, const nex_net_options_t *opts, nex_error_t *err);

/* Stops the forwarder and frees NET; the table and links stay (workloads outlive nexd).  Safe on NULL. */
void nex_net_close (nex_net_t *net);

/* The pool as text ("10.87.0.0/16") and its gateway address (NEX_HOST_ADDR), into BUF (16 bytes). */
const char *nex_net_cidr (const nex_net_t *net);
char *nex_net_gateway_text (const nex_net_t *net, char *buf);

/* For W (network bridge, spec in W->net, not stored yet): leases its address and host ports and writes them
 * into W->net, with the node's egress default.  NEX_ERR_CONFLICT naming a port that is published already or in
 * use on the host; NEX_ERR_INVALID for `nats` on a node without NATS.  Any thread. */
int nex_net_reserve (nex_net_t *net, nex_workload_t *w, nex_error_t *err);

/* Gives W's sandbox, whose root process is PID (not running anything of its own yet), its network: the veth,
 * the rules, and ETC_DIR/hosts and ETC_DIR/resolv.conf for its /etc.  Supervisor thread. */
int nex_net_attach (nex_net_t *net, const nex_workload_t *w, pid_t pid, const char *etc_dir, nex_error_t *err);

/* Gives W's VM (network bridge, leased) its network before its VMM starts: creates its tap (host side
 * configured; PERSIST: it stays once its descriptor closes, for a VMM that opens it by name) and W's rules.
 * Returns the tap's descriptor (CLOEXEC) for the VMM, which the caller closes once the VMM has it (PERSIST:
 * before the VMM opens it), and *GUEST (caller frees) the value of the kernel parameter nex.net= from which the
 * agent configures the guest (rootfs/layout.h: "ADDR,GATEWAY[,RESOLVER...]"); -1 with ERR.  Supervisor thread. */
int nex_net_attach_tap (nex_net_t *net, const nex_workload_t *w, int persist, char **guest, nex_error_t *err);

/* The name of workload ID's link on the host (veth or tap): nx + 12 hex digits of ID, into BUF (16 bytes). */
void nex_net_ifname (const char *id, char *buf);

/* Ends workload ID's networking: its rules, its link and its lease, taken down on the module's own thread in the
 * order asked (teardown.c), so the caller does not wait for them; a later nex_net_reserve does, and so does
 * nex_net_close.  Idempotent; nothing for a workload that had none.  Any thread. */
void nex_net_release (nex_net_t *net, const char *id);

/* Adds what a bridge workload W finds in its environment to ENV: NEX_HOST_ADDR (the gateway) and, when it asked
 * for nats, NEX_NATS_URL (the forwarder). */
void nex_net_env (const nex_net_t *net, const nex_workload_t *w, json_t *env);

/* W's counters into *OUT: 1, or 0 when W has no link (not bridge, or not running). */
int nex_net_counters (const nex_workload_t *w, nex_net_counters_t *out);

/* The network's lines of /metrics (Prometheus text): bridge workloads with a link, and bytes and packets in
 * and out per workload.  "" when NET is NULL.  Caller frees.  Any thread. */
char *nex_net_metrics (nex_net_t *net);

/* Counters as JSON {rx_bytes, rx_packets, tx_bytes, tx_packets}; new reference. */
json_t *nex_net_counters_to_json (const nex_net_counters_t *c);

#endif
