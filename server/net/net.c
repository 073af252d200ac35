/* SPDX-License-Identifier: Apache-2.0 */
/* net/net.c — see net.h: the module's public face, gluing the pool, leases, links and rules together. */
#include "server/net/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nftables/libnftables.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "rootfs/layout.h"
#include "server/log.h"

/* The host and port of the first URL in NATS_URL ("nats://[user:pass@]host[:port][,...]") into NET. */
static void
parse_nats_url (nex_net_t *net, const char *nats_url)
{
  if (nats_url == NULL || *nats_url == '\0')
    return;
  cleanup_free char *url = nex_xstrndup (nats_url, strcspn (nats_url, ","));
  char *p = strstr (url, "://");
  p = p ? p + 3 : url;
  char *at = strrchr (p, '@');
  if (at)
    p = at + 1;
  p[strcspn (p, "/?")] = '\0';
  char *colon = strrchr (p, ':');
  net->nats_port = 4222;
  if (colon && strchr (p, ']') < colon)
    {
      *colon = '\0';
      net->nats_port = atoi (colon + 1);
    }
  if (*p == '[')
    {
      p++;
      p[strcspn (p, "]")] = '\0';
    }
  if (net->nats_port <= 0 || net->nats_port > 65535 || *p == '\0')
    {
      net->nats_port = 0;
      return;
    }
  net->nats_host = nex_xstrdup (p);
}

/* The live bridge workloads of the registry as leases (*OUT, *N) and as a set of ids (returned). */
static json_t *
load_live (nex_net_t *net, nex_net_lease_t **out, size_t *n)
{
  nex_workload_t *list = NULL;
  size_t count = 0;
  json_t *live = json_object ();
  cleanup_error nex_error_t err = NULL;
  *out = NULL;
  *n = 0;
  if (nex_registry_workload_list (net->reg, NULL, &list, &count, &err) < 0)
    {
      nex_log_error (NEX_LOG_ERROR, err, "network: cannot list workloads");
      return live;
    }
  *out = nex_xzalloc ((count + 1) * sizeof **out);
  for (size_t i = 0; i < count; i++)
    {
      nex_workload_t *w = &list[i];
      if (w->net && !nex_state_is_final (w->state))
        {
          if (nex_net_lease_from_spec (w->id, w->net, &(*out)[*n], &err) == 0)
            {
              json_object_set_new (live, w->id, json_true ());
              uint32_t off = (*out)[*n].addr - net->pool.base;
              if (off > net->cursor + 1)
                net->cursor = off - 1;
              (*n)++;
            }
          else
            nex_log_error (NEX_LOG_WARN, err, "workload %s: its network is not restored", w->id);
          nex_error_free (&err);
        }
      nex_workload_release (w);
    }
  free (list);
  return live;
}

/* Removes nx* links that belong to no live lease (LIVE: their interface names). */
static void
sweep_links (const json_t *ifnames)
{
  char **links = nex_net_link_list ();
  for (char **l = links; *l; l++)
    {
      if (json_object_get (ifnames, *l) == NULL)
        {
          cleanup_error nex_error_t err = NULL;
          nex_info ("network: removing leftover link %s", *l);
          if (nex_net_link_delete (*l, &err) < 0)
            nex_log_error (NEX_LOG_WARN, err, "network: leftover link %s", *l);
        }
      free (*l);
    }
  free (links);
}

/* Rebuilds the table from the registry's live bridge workloads, drops the other leases, sweeps links.  A node
 * that never ran a bridge workload (registry meta net_used) leaves the host's network alone until it does, so
 * that nodes which do not use it (and other nodes' tables) are never touched. */
static int
restore (nex_net_t *net, nex_error_t *err)
{
  cleanup_free char *used = NULL;
  if (nex_registry_meta_get (net->reg, "net_used", &used, err) < 0)
    return -1;
  if (used == NULL)
    return 0;
  net->ready = 1;
  nex_net_lease_t *leases = NULL;
  size_t n = 0;
  cleanup_json json_t *live = load_live (net, &leases, &n);
  cleanup_free nex_net_lease_t *owned = leases;
  int dropped = nex_net_lease_prune (net, live);
  cleanup_json json_t *ifnames = json_object ();
  for (size_t i = 0; i < n; i++)
    json_object_set_new (ifnames, leases[i].ifname, json_true ());
  cleanup_unlock pthread_mutex_t *locked = &net->lock;
  pthread_mutex_lock (locked);
  if (nex_net_rules_rebuild_locked (net, leases, n, err) < 0)
    return -1;
  json_object_update (net->leased, live);
  sweep_links (ifnames);
  nex_info ("network %s: %zu bridge workloads restored, %d ended leases dropped", net->cidr, n,
            dropped > 0 ? dropped : 0);
  return 0;
}

static void
net_freep (nex_net_t **p)
{
  nex_net_close (*p);
}

nex_net_t *
nex_net_open (nex_registry_t *reg, const nex_net_options_t *opts, nex_error_t *err)
{
  if (geteuid () != 0)
    {
      nex_error_set (err, NEX_ERR_UNAVAILABLE, "nexd is not running as root (links and nftables need it)");
      return NULL;
    }
  cleanup_with (net_freep) nex_net_t *net = nex_xzalloc (sizeof *net);
  pthread_mutex_init (&net->lock, NULL);
  net->nftd_fd = -1;
  /* First: the helper is forked before this module starts threads (the forwarder, the teardown). */
  cleanup_error nex_error_t herr = NULL;
  if (nex_net_nftd_start (net, &herr) < 0)
    nex_log_error (NEX_LOG_WARN, herr, "network: nftables transactions run in nexd itself");
  net->reg = reg;
  net->installed = json_object ();
  net->leased = json_object ();
  net->resolvers = nex_net_etc_resolvers ();
  if (*net->resolvers == '\0')
    nex_warn ("network: the host has no resolver a workload can reach (only loopback ones in /etc/resolv.conf): "
              "bridge workloads get an empty /etc/resolv.conf");
  if (opts->egress_default && strcmp (opts->egress_default, "deny") == 0)
    net->egress_deny = 1;
  else if (opts->egress_default && strcmp (opts->egress_default, "allow") != 0)
    {
      nex_error_field (err, "egress_default", "--egress-default must be allow or deny");
      return NULL;
    }
  if (nex_net_pool_choose (opts->cidr, net->resolvers, &net->pool, err) < 0)
    return NULL;
  char a[16];
  snprintf (net->cidr, sizeof net->cidr, "%s/%d", nex_net_addr_text (net->pool.base, a), net->pool.prefix);
  if ((net->nft = nex_net_rules_open (err)) == NULL || restore (net, err) < 0)
    return NULL;
  parse_nats_url (net, opts->nats_url);
  if (net->nats_host
      && (net->fwd = nex_net_forward_start (&net->pool, net->nats_port, net->nats_host, net->nats_port, err)) == NULL)
    {
      nex_log_error (NEX_LOG_WARN, *err, "network: workloads cannot reach NATS");
      nex_error_free (err);
      net->nats_port = 0;
    }
  if (nex_net_teardown_start (net, err) < 0)
    {
      nex_log_error (NEX_LOG_WARN, *err, "network: ended workloads' networks are taken down on the way");
      nex_error_free (err);
    }
  return NEX_STEAL_PTR (net);
}

void
nex_net_close (nex_net_t *net)
{
  if (net == NULL)
    return;
  nex_net_teardown_stop (net);
  nex_net_nftd_stop (net);
  nex_net_forward_stop (net->fwd);
  if (net->nft)
    nft_ctx_free (net->nft);
  json_decref (net->installed);
  json_decref (net->leased);
  free (net->nats_host);
  free (net->resolvers);
  pthread_mutex_destroy (&net->lock);
  free (net);
}

const char *
nex_net_cidr (const nex_net_t *net)
{
  return net->cidr;
}

char *
nex_net_gateway_text (const nex_net_t *net, char *buf)
{
  return nex_net_addr_text (net->pool.gateway, buf);
}

/* The table, made at the first bridge workload of a node that had none (see restore). */
static int
make_ready (nex_net_t *net, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = &net->lock;
  pthread_mutex_lock (locked);
  if (net->ready)
    return 0;
  if (nex_net_rules_rebuild_locked (net, NULL, 0, err) < 0
      || nex_registry_meta_set (net->reg, "net_used", "1", err) < 0)
    return -1;
  net->ready = 1;
  return 0;
}

int
nex_net_reserve (nex_net_t *net, nex_workload_t *w, nex_error_t *err)
{
  if (make_ready (net, err) < 0)
    return -1;
  if (json_is_true (json_object_get (w->net, "nats")) && net->nats_port <= 0)
    return nex_error_field (err, "nats", "this node has no NATS server to give workloads (start nexd with --nats)");
  /* Ports of workloads that have ended are free once their teardown is done (teardown.c). */
  nex_net_teardown_wait (net);
  json_t *egress = json_object_get (w->net, "egress");
  json_object_set_new (egress, "default", json_string (net->egress_deny ? "deny" : "allow"));
  if (nex_net_lease_take (net, w->id, w->net, err) < 0)
    return -1;
  pthread_mutex_lock (&net->lock);
  json_object_set_new (net->leased, w->id, json_true ());
  pthread_mutex_unlock (&net->lock);
  return 0;
}

/* A monotonic time in milliseconds with a fraction: what the debug log says each step of a link took. */
static double
elapsed_ms (const struct timespec *since)
{
  struct timespec now;
  clock_gettime (CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

static void
ip_forward_on (void)
{
  cleanup_close int fd = open ("/proc/sys/net/ipv4/ip_forward", O_RDWR | O_CLOEXEC);
  char c = 0;
  if (fd >= 0 && read (fd, &c, 1) == 1 && c != '1')
    {
      nex_info ("network: turning on net.ipv4.ip_forward (bridge workloads are routed through the host)");
      (void)!pwrite (fd, "1", 1, 0);
    }
}

int
nex_net_attach (nex_net_t *net, const nex_workload_t *w, pid_t pid, const char *etc_dir, nex_error_t *err)
{
  nex_net_lease_t l;
  struct timespec t0;
  clock_gettime (CLOCK_MONOTONIC, &t0);
  if (nex_net_lease_from_spec (w->id, w->net, &l, err) < 0
      || nex_net_etc_write (etc_dir, w->name, l.addr, net->pool.gateway, net->resolvers, err) < 0)
    return -1;
  ip_forward_on ();
  if (nex_net_link_create (&l, net->pool.gateway, pid, l.n_ports > 0, err) < 0)
    return -1;
  if (w->resources.net_mbps > 0 && nex_net_shape (l.ifname, pid, w->resources.net_mbps, err) < 0)
    {
      nex_net_link_delete (l.ifname, NULL);
      return -1;
    }
  double link_ms = elapsed_ms (&t0);
  cleanup_unlock pthread_mutex_t *locked = &net->lock;
  pthread_mutex_lock (locked);
  if (nex_net_rules_add_locked (net, &l, err) < 0)
    {
      nex_net_link_delete (l.ifname, NULL);
      return -1;
    }
  nex_debug ("workload %s: network attached (link %.2f ms, rules %.2f ms)", w->id, link_ms, elapsed_ms (&t0) - link_ms);
  return 0;
}

/* "ADDR,GATEWAY[,RESOLVER...]" for a VM's agent: the lease's address, the gateway and the resolvers of
 * NET->resolvers ("nameserver A\n" lines), at most NEX_VM_NET_MAX_RESOLVERS. */
static char *
guest_spec (const nex_net_t *net, uint32_t addr)
{
  char a[16], g[16];
  char *out = nex_xasprintf ("%s,%s", nex_net_addr_text (addr, a), nex_net_addr_text (net->pool.gateway, g));
  int n = 0;
  for (const char *p = net->resolvers; (p = strstr (p, "nameserver ")) != NULL && n < NEX_VM_NET_MAX_RESOLVERS; n++)
    {
      p += strlen ("nameserver ");
      size_t len = strcspn (p, " \n");
      char *more = nex_xasprintf ("%s,%.*s", out, (int)len, p);
      free (out);
      out = more;
      p += len;
    }
  return out;
}

int
nex_net_attach_tap (nex_net_t *net, const nex_workload_t *w, int persist, char **guest, nex_error_t *err)
{
  nex_net_lease_t l;
  if (nex_net_lease_from_spec (w->id, w->net, &l, err) < 0)
    return -1;
  ip_forward_on ();
  cleanup_close int fd = nex_net_link_create_tap (&l, net->pool.gateway, l.n_ports > 0, persist, err);
  if (fd < 0)
    return -1;
  cleanup_unlock pthread_mutex_t *locked = &net->lock;
  pthread_mutex_lock (locked);
  if (nex_net_rules_add_locked (net, &l, err) < 0)
    {
      if (persist)
        nex_net_link_delete (l.ifname, NULL);
      return -1;
    }
  *guest = guest_spec (net, l.addr);
  return NEX_STEAL_FD (fd);
}

void
nex_net_release (nex_net_t *net, const char *id)
{
  if (net == NULL)
    return;
  cleanup_unlock pthread_mutex_t *locked = &net->lock;
  pthread_mutex_lock (locked);
  /* Most workloads have no lease (network none): they cost a lookup here and nothing else. */
  if (json_object_get (net->leased, id) == NULL)
    return;
  json_object_del (net->leased, id);
  nex_net_teardown_queue_locked (net, id);
}

void
nex_net_release_now (nex_net_t *net, const char *id)
{
  char ifname[NEX_NET_IFNAME_LEN];
  nex_net_ifname (id, ifname);
  cleanup_error nex_error_t err = NULL;
  struct timespec t0;
  clock_gettime (CLOCK_MONOTONIC, &t0);
  pthread_mutex_lock (&net->lock);
  if (nex_net_rules_remove_locked (net, id, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: network rules", id);
  pthread_mutex_unlock (&net->lock);
  double rules_ms = elapsed_ms (&t0);
  nex_error_free (&err);
  if (nex_net_link_delete (ifname, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: link", id);
  double link_ms = elapsed_ms (&t0) - rules_ms;
  nex_net_lease_drop (net, id);
  nex_debug ("workload %s: network released (rules %.2f ms, link %.2f ms, lease %.2f ms)", id, rules_ms, link_ms,
             elapsed_ms (&t0) - rules_ms - link_ms);
}

void
nex_net_env (const nex_net_t *net, const nex_workload_t *w, json_t *env)
{
  char g[16];
  nex_net_addr_text (net->pool.gateway, g);
  json_object_set_new (env, "NEX_HOST_ADDR", json_string (g));
  if (json_is_true (json_object_get (w->net, "nats")) && net->nats_port > 0)
    json_object_set_new (env, "NEX_NATS_URL", json_sprintf ("nats://%s:%d", g, net->nats_port));
}

int
nex_net_counters (const nex_workload_t *w, nex_net_counters_t *out)
{
  memset (out, 0, sizeof *out);
  if (w->net == NULL)
    return 0;
  char ifname[NEX_NET_IFNAME_LEN];
  nex_net_ifname (w->id, ifname);
  return nex_net_link_counters (ifname, out);
}

char *
nex_net_metrics (nex_net_t *net)
{
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream (&out, &len);
  if (net == NULL)
    {
      fclose (f);
      return out;
    }
  pthread_mutex_lock (&net->lock);
  cleanup_json json_t *ids = json_deep_copy (net->leased);
  pthread_mutex_unlock (&net->lock);
  static const char *const names[] = { "bytes", "packets" };
  cleanup_json json_t *rows = json_array ();
  const char *id;
  json_t *v;
  json_object_foreach (ids, id, v)
  {
    char ifname[NEX_NET_IFNAME_LEN];
    nex_net_counters_t c;
    nex_net_ifname (id, ifname);
    if (nex_net_link_counters (ifname, &c))
      json_array_append_new (rows,
                             json_pack ("{s:s, s:[I,I,I,I]}", "id", id, "c", (json_int_t)c.rx_bytes,
                                        (json_int_t)c.tx_bytes, (json_int_t)c.rx_packets, (json_int_t)c.tx_packets));
  }
  fprintf (f, "# HELP nex_network_links bridge workloads with a link now\n# TYPE nex_network_links gauge\n");
  fprintf (f, "nex_network_links %zu\n", json_array_size (rows));
  for (int k = 0; k < 2; k++)
    {
      fprintf (f, "# HELP nex_network_%s_total %s into (in) and out of (out) each bridge workload\n", names[k],
               names[k]);
      fprintf (f, "# TYPE nex_network_%s_total counter\n", names[k]);
      size_t i;
      json_t *r;
      json_array_foreach (rows, i, r)
      {
        const char *w = json_string_value (json_object_get (r, "id"));
        json_t *c = json_object_get (r, "c");
        fprintf (f, "nex_network_%s_total{workload=\"%s\",direction=\"in\"} %lld\n", names[k], w,
                 (long long)json_integer_value (json_array_get (c, 2 * k)));
        fprintf (f, "nex_network_%s_total{workload=\"%s\",direction=\"out\"} %lld\n", names[k], w,
                 (long long)json_integer_value (json_array_get (c, 2 * k + 1)));
      }
    }
  fclose (f);
  return out;
}

json_t *
nex_net_counters_to_json (const nex_net_counters_t *c)
{
  return json_pack ("{s:I, s:I, s:I, s:I}", "rx_bytes", (json_int_t)c->rx_bytes, "rx_packets",
                    (json_int_t)c->rx_packets, "tx_bytes", (json_int_t)c->tx_bytes, "tx_packets",
                    (json_int_t)c->tx_packets);
}
