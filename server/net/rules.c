/* SPDX-License-Identifier: Apache-2.0 */
/* net/rules.c — the nftables table `inet nex`, which nexd owns, through libnftables.
 *
 * The table's base chains are fixed; what differs per workload hangs off two verdict maps, so that adding or
 * removing a workload is one transaction of element and chain commands that touches nothing else (and keeps the
 * other workloads' connections and counters):
 *
 *   egress     iifname "nx<id>" : jump w_<id>   a workload's egress policy, for what it sends to the host
 *                                              (input) and through it (forward)
 *   published  tcp . 8081 : jump p_<id>        its published ports (DNAT), for traffic to a local address
 *                                              arriving from outside (prerouting) or made on the host (output)
 *
 * w_<id>, in order: established/related accepted; a source that is not the workload's own address dropped
 * (no spoofing); egress.deny entries refused; egress.allow entries (and the NATS forwarder for `nats`)
 * accepted; then the host's own addresses (fib daddr type local), 169.254.0.0/16 (cloud metadata) and the pool
 * (other workloads) refused; then the node default.  Refused means a TCP reset or an ICMP admin-prohibited, so
 * a workload's connect fails at once instead of timing out.
 *
 * Traffic towards a workload is accepted only as an answer (established) or through a published port (DNAT);
 * loopback sources DNATed to a workload are masqueraded to the gateway so its answers come back, and the pool
 * is masqueraded towards the outside.  IPv6 from workloads is dropped (they have no IPv6 address). */
#include "server/net/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

struct nft_ctx *
nex_net_rules_open (nex_error_t *err)
{
  struct nft_ctx *nft = nft_ctx_new (NFT_CTX_DEFAULT);
  if (nft == NULL)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "libnftables: no context");
      return NULL;
    }
  nft_ctx_buffer_output (nft);
  nft_ctx_buffer_error (nft);
  return nft;
}

/* libnftables' error text MSG as ERR (its first line).  -1. */
static int
refused (const char *msg, nex_error_t *err)
{
  cleanup_free char *first = nex_xstrdup (msg && *msg ? msg : "refused");
  first[strcspn (first, "\n")] = '\0';
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "nftables: %s", first);
}

/* Runs SCRIPT as one transaction in context NFT.  0, or -1 with libnftables' message. */
static int
run_in (struct nft_ctx *nft, const char *script, nex_error_t *err)
{
  if (nft_run_cmd_from_buffer (nft, script) == 0)
    return 0;
  return refused (nft_ctx_get_error_buffer (nft), err);
}

/* Runs SCRIPT as one transaction: in the helper process (nftd.c), or here when there is none.  Under NET's
 * lock.  0, or -1 with libnftables' message. */
static int
run (nex_net_t *net, const char *script, nex_error_t *err)
{
  cleanup_free char *msg = NULL;
  int r = nex_net_nftd_run (net, script, &msg);
  if (r < 0)
    return run_in (net->nft, script, err);
  return r == 0 ? 0 : refused (msg, err);
}

int
nex_net_rules_drop_table (struct nft_ctx *nft, nex_error_t *err)
{
  return run_in (nft, "add table inet " NEX_NET_TABLE "\ndelete table inet " NEX_NET_TABLE "\n", err);
}

/* The base chains and maps (see the file comment), for the pool CIDR. */
static void
render_table (FILE *f, const char *cidr)
{
  fprintf (f,
           "add table inet nex\n"
           "delete table inet nex\n"
           "table inet nex {\n"
           "  map egress { type ifname : verdict; }\n"
           "  map published { type inet_proto . inet_service : verdict; }\n"
           "  chain refuse {\n"
           "    meta l4proto tcp reject with tcp reset\n"
           "    reject with icmpx admin-prohibited\n"
           "  }\n"
           /* route_localnet on a host side lets 127/8 destinations be routed from it: never from a workload. */
           "  chain guard {\n"
           "    type filter hook prerouting priority raw; policy accept;\n"
           "    iifname \"nx*\" ip daddr 127.0.0.0/8 drop\n"
           "    iifname \"nx*\" meta nfproto ipv6 drop\n"
           "  }\n"
           "  chain input {\n"
           "    type filter hook input priority filter; policy accept;\n"
           "    iifname \"nx*\" iifname vmap @egress\n"
           "    iifname \"nx*\" drop\n"
           "  }\n"
           "  chain forward {\n"
           "    type filter hook forward priority filter; policy accept;\n"
           "    iifname \"nx*\" iifname vmap @egress\n"
           "    iifname \"nx*\" drop\n"
           "    oifname \"nx*\" ct state established,related accept\n"
           "    oifname \"nx*\" ct status dnat accept\n"
           "    oifname \"nx*\" drop\n"
           "  }\n"
           "  chain nat_pre {\n"
           "    type nat hook prerouting priority dstnat; policy accept;\n"
           "    fib daddr type local meta l4proto . th dport vmap @published\n"
           "  }\n"
           "  chain nat_out {\n"
           "    type nat hook output priority -100; policy accept;\n"
           "    fib daddr type local meta l4proto . th dport vmap @published\n"
           "  }\n"
           "  chain nat_post {\n"
           "    type nat hook postrouting priority srcnat; policy accept;\n"
           "    oifname \"nx*\" ip saddr 127.0.0.0/8 masquerade\n"
           "    ip saddr %s oifname != \"nx*\" masquerade\n"
           "  }\n"
           "}\n",
           cidr);
}

/* The match of egress entry R (without its verdict), or NULL for an entry that matches nothing here (nats on a
 * node without NATS). */
static char *
rule_match (const nex_net_t *net, const nex_net_rule_t *r)
{
  char a[16];
  cleanup_free char *port
      = r->port ? nex_xasprintf (" meta l4proto { tcp, udp } th dport %d", r->port) : nex_xstrdup ("");
  switch (r->kind)
    {
    case NEX_NET_RULE_NATS:
      if (net->nats_port <= 0)
        return NULL;
      return nex_xasprintf ("ip daddr %s tcp dport %d", nex_net_addr_text (net->pool.gateway, a), net->nats_port);
    case NEX_NET_RULE_HOST:
      return nex_xasprintf ("ip daddr %s%s", nex_net_addr_text (net->pool.gateway, a), port);
    case NEX_NET_RULE_CIDR:
    default:
      return nex_xasprintf ("ip daddr %s/%d%s", nex_net_addr_text (r->addr, a), r->prefix, port);
    }
}

static void
render_rule (FILE *f, const nex_net_t *net, const char *chain, const nex_net_rule_t *r, const char *verdict)
{
  cleanup_free char *m = rule_match (net, r);
  if (m)
    fprintf (f, "add rule inet nex %s %s %s\n", chain, m, verdict);
}

/* L's chains, rules and map elements as add commands. */
static void
render_workload (FILE *f, const nex_net_t *net, const nex_net_lease_t *l)
{
  const char *hex = l->ifname + strlen (NEX_NET_IF_PREFIX);
  char w[32], p[32], a[16], h[16];
  snprintf (w, sizeof w, "w_%s", hex);
  snprintf (p, sizeof p, "p_%s", hex);
  fprintf (f, "add chain inet nex %s\n", w);
  fprintf (f, "add rule inet nex %s ct state established,related accept\n", w);
  fprintf (f, "add rule inet nex %s ip saddr != %s drop\n", w, nex_net_addr_text (l->addr, a));
  for (size_t i = 0; i < l->n_deny; i++)
    render_rule (f, net, w, &l->deny[i], "goto refuse");
  for (size_t i = 0; i < l->n_allow; i++)
    render_rule (f, net, w, &l->allow[i], "accept");
  if (l->nats)
    render_rule (f, net, w, &(nex_net_rule_t){ .kind = NEX_NET_RULE_NATS }, "accept");
  fprintf (f, "add rule inet nex %s fib daddr type local goto refuse\n", w);
  fprintf (f, "add rule inet nex %s ip daddr 169.254.0.0/16 goto refuse\n", w);
  fprintf (f, "add rule inet nex %s ip daddr %s goto refuse\n", w, net->cidr);
  fprintf (f, "add rule inet nex %s %s\n", w, net->egress_deny ? "goto refuse" : "accept");
  fprintf (f, "add element inet nex egress { \"%s\" : jump %s }\n", l->ifname, w);
  if (l->n_ports == 0)
    return;
  fprintf (f, "add chain inet nex %s\n", p);
  for (size_t i = 0; i < l->n_ports; i++)
    {
      const nex_net_port_t *pt = &l->ports[i];
      cleanup_free char *daddr
          = pt->host_ip ? nex_xasprintf ("ip daddr %s ", nex_net_addr_text (pt->host_ip, h)) : nex_xstrdup ("");
      fprintf (f, "add rule inet nex %s %s%s dport %d dnat ip to %s:%d\n", p, daddr, pt->protocol, pt->host, a,
               pt->workload);
      fprintf (f, "add element inet nex published { %s . %d : jump %s }\n", pt->protocol, pt->host, p);
    }
}

/* The commands that undo render_workload for L. */
static char *
render_removal (const nex_net_lease_t *l)
{
  const char *hex = l->ifname + strlen (NEX_NET_IF_PREFIX);
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&out, &len);
  fprintf (f, "delete element inet nex egress { \"%s\" }\n", l->ifname);
  for (size_t i = 0; i < l->n_ports; i++)
    fprintf (f, "delete element inet nex published { %s . %d }\n", l->ports[i].protocol, l->ports[i].host);
  fprintf (f, "flush chain inet nex w_%s\ndelete chain inet nex w_%s\n", hex, hex);
  if (l->n_ports)
    fprintf (f, "flush chain inet nex p_%s\ndelete chain inet nex p_%s\n", hex, hex);
  fclose (f);
  return out;
}

/* Records how to remove L's rules. */
static void
remember (nex_net_t *net, const nex_net_lease_t *l)
{
  cleanup_free char *undo = render_removal (l);
  json_object_set_new (net->installed, l->id, json_string (undo));
}

int
nex_net_rules_rebuild_locked (nex_net_t *net, const nex_net_lease_t *leases, size_t n, nex_error_t *err)
{
  cleanup_free char *script = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&script, &len);
  render_table (f, net->cidr);
  for (size_t i = 0; i < n; i++)
    render_workload (f, net, &leases[i]);
  fclose (f);
  if (run (net, script, err) < 0)
    return nex_error_wrap (err, "building table inet nex");
  json_object_clear (net->installed);
  for (size_t i = 0; i < n; i++)
    remember (net, &leases[i]);
  return 0;
}

int
nex_net_rules_add_locked (nex_net_t *net, const nex_net_lease_t *l, nex_error_t *err)
{
  /* A workload id is never attached twice; rules still recorded for it are a leftover to replace. */
  if (nex_net_rules_remove_locked (net, l->id, err) < 0)
    return -1;
  cleanup_free char *script = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&script, &len);
  render_workload (f, net, l);
  fclose (f);
  if (run (net, script, err) < 0)
    return nex_error_wrap (err, "rules of %s", l->ifname);
  remember (net, l);
  return 0;
}

int
nex_net_rules_remove_locked (nex_net_t *net, const char *id, nex_error_t *err)
{
  const json_t *undo = json_object_get (net->installed, id);
  if (undo == NULL)
    return 0;
  int r = run (net, json_string_value (undo), err);
  json_object_del (net->installed, id);
  return r < 0 ? nex_error_wrap (err, "removing the rules of workload %s", id) : 0;
}
