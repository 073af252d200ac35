/* SPDX-License-Identifier: Apache-2.0 */
/* net/pool.c — the node's address range for bridge workloads (--network-cidr).
 *
 * A range that overlaps one of the host's routes would make some of the host's own destinations unreachable
 * from workloads (or worse, route the host's traffic into a workload), and one that holds a resolver would make
 * DNS unreachable: both are refused at start.  The default is the first of a few /16s in 10/8 that overlaps
 * nothing.  Routes on nexd's own nx* links (left by workloads that outlived the previous nexd) are ours, not a
 * collision. */
#include "server/net/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

static const char *const default_ranges[] = { "10.87.0.0/16", "10.187.0.0/16", "10.217.0.0/16", "10.247.0.0/16" };

uint32_t
nex_net_pool_size (const nex_net_pool_t *p)
{
  return (1u << (32 - p->prefix)) - 3;
}

static int
overlaps (uint32_t a, int alen, uint32_t b, int blen)
{
  int len = alen < blen ? alen : blen;
  uint32_t mask = len ? ~0u << (32 - len) : 0;
  return (a & mask) == (b & mask);
}

/* Why P collides with the host (a route or a resolver), or NULL.  Caller frees. */
static char *
collision (const nex_net_pool_t *p, const char *resolvers)
{
  cleanup_file FILE *f = fopen ("/proc/net/route", "re");
  char line[256];
  while (f && fgets (line, sizeof line, f))
    {
      char ifname[32];
      unsigned dest, gw, flags, refcnt, use, metric, mask;
      if (sscanf (line, "%31s %x %x %x %u %u %u %x", ifname, &dest, &gw, &flags, &refcnt, &use, &metric, &mask) != 8)
        continue;
      if (mask == 0 || strncmp (ifname, NEX_NET_IF_PREFIX, strlen (NEX_NET_IF_PREFIX)) == 0)
        continue; /* the default route overlaps everything; nx* routes are ours */
      uint32_t d = __builtin_bswap32 (dest), m = __builtin_bswap32 (mask);
      int len = __builtin_popcount (m);
      if (overlaps (p->base, p->prefix, d, len))
        {
          char a[16];
          return nex_xasprintf ("it overlaps the host's route to %s/%d on %s", nex_net_addr_text (d, a), len, ifname);
        }
    }
  for (const char *r = resolvers; r && *r;)
    {
      char addr[32];
      size_t n = strcspn (r, "\n");
      uint32_t a;
      if (sscanf (r, "nameserver %31s", addr) == 1 && nex_net_addr_parse (addr, &a) == 0
          && overlaps (p->base, p->prefix, a, 32))
        return nex_xasprintf ("it holds the host's resolver %s", addr);
      r += n + (r[n] == '\n');
    }
  return NULL;
}

/* Parses TEXT (a.b.c.d/len) into *P.  0, or -1 (NEX_ERR_INVALID). */
static int
parse_cidr (const char *text, nex_net_pool_t *p, nex_error_t *err)
{
  nex_net_rule_t r;
  if (nex_net_rule_parse (text, "network_cidr", &r, err) < 0 || r.kind != NEX_NET_RULE_CIDR || r.port != 0
      || strchr (text, '/') == NULL)
    {
      nex_error_free (err);
      return nex_error_field (err, "network_cidr", "`%s` is not an IPv4 network a.b.c.d/len", text);
    }
  if (r.prefix < 12 || r.prefix > 29)
    return nex_error_field (err, "network_cidr", "`%s`: the prefix length must be 12 to 29", text);
  p->base = r.addr;
  p->prefix = r.prefix;
  p->gateway = r.addr + 1;
  return 0;
}

int
nex_net_pool_choose (const char *cidr, const char *resolvers, nex_net_pool_t *out, nex_error_t *err)
{
  if (cidr)
    {
      if (parse_cidr (cidr, out, err) < 0)
        return -1;
      cleanup_free char *why = collision (out, resolvers);
      if (why)
        return nex_error_field (err, "network_cidr", "--network-cidr %s cannot be used: %s", cidr, why);
      return 0;
    }
  cleanup_free char *last = NULL;
  for (size_t i = 0; i < sizeof default_ranges / sizeof default_ranges[0]; i++)
    {
      if (parse_cidr (default_ranges[i], out, err) < 0)
        return -1;
      free (last);
      last = collision (out, resolvers);
      if (last == NULL)
        return 0;
    }
  return nex_error_set (err, NEX_ERR_UNAVAILABLE,
                        "every default network range collides with the host (%s, %s); "
                        "choose one with --network-cidr",
                        default_ranges[3], last);
}
