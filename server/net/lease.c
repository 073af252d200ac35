/* SPDX-License-Identifier: Apache-2.0 */
/* net/lease.c — addresses and published host ports leased in the registry (schema/007_network.sql).
 *
 * A lease is taken at deploy, in one registry transaction, so that the answer to the deploy can say which port
 * is taken (409) and the record shows the address and the host ports before the workload runs; the registry's
 * UNIQUE constraints are what keeps two workloads from ever holding the same address or host port, across
 * nexd restarts too.  Addresses are handed out round-robin from a cursor, so that an address just released
 * (whose old link may still be going away) is the last to be taken again. */
#include "server/net/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

void
nex_net_ifname (const char *id, char *buf)
{
  char hex[13];
  size_t k = 0;
  for (const char *p = id; *p && k < 12; p++)
    if (*p != '-')
      hex[k++] = *p;
  hex[k] = '\0';
  snprintf (buf, NEX_NET_IFNAME_LEN, "%s%s", NEX_NET_IF_PREFIX, hex);
}

/* ---- SQL helpers (the registry's own are private to it) ---- */

static int
sql_error (sqlite3 *db, nex_error_t *err, const char *what)
{
  return nex_error_set (err, NEX_ERR_SYSTEM, "network leases: %s: %s", what, sqlite3_errmsg (db));
}

static sqlite3_stmt *
sql_prepare (sqlite3 *db, const char *sql, nex_error_t *err)
{
  sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) != SQLITE_OK)
    {
      sql_error (db, err, "prepare");
      return NULL;
    }
  return stmt;
}

/* Steps STMT to its end (a statement without rows).  0 or -1. */
static int
sql_done (sqlite3 *db, sqlite3_stmt *stmt, nex_error_t *err)
{
  return sqlite3_step (stmt) == SQLITE_DONE ? 0 : sql_error (db, err, "write");
}

/* ---- taking a lease ---- */

typedef struct take
{
  nex_net_t *net;
  const char *id;
  json_t *spec;
} take_t;

/* Marks the pool offsets taken by existing leases in USED (one byte per address). */
static int
load_used (sqlite3 *db, const nex_net_pool_t *pool, unsigned char *used, nex_error_t *err)
{
  cleanup_stmt sqlite3_stmt *stmt = sql_prepare (db, "SELECT address FROM network_leases", err);
  if (stmt == NULL)
    return -1;
  int r;
  uint32_t size = 1u << (32 - pool->prefix);
  while ((r = sqlite3_step (stmt)) == SQLITE_ROW)
    {
      uint32_t a;
      if (nex_net_addr_parse ((const char *)sqlite3_column_text (stmt, 0), &a) == 0 && a - pool->base < size)
        used[a - pool->base] = 1;
    }
  if (r != SQLITE_DONE)
    return sql_error (db, err, "read");
  /* Addresses routed to an nx* link now are in use too, by a workload this registry does not know (another
   * nexd's on the same host, or one whose lease was lost): taking one would make two routes to it. */
  cleanup_file FILE *f = fopen ("/proc/net/route", "re");
  char line[256];
  while (f && fgets (line, sizeof line, f))
    {
      char ifname[32];
      unsigned dest;
      if (sscanf (line, "%31s %x", ifname, &dest) == 2
          && strncmp (ifname, NEX_NET_IF_PREFIX, strlen (NEX_NET_IF_PREFIX)) == 0
          && __builtin_bswap32 (dest) - pool->base < size)
        used[__builtin_bswap32 (dest) - pool->base] = 1;
    }
  return 0;
}

/* Picks a free address (round-robin from the cursor) and stores the lease; writes it into the spec. */
static int
take_address (sqlite3 *db, take_t *t, nex_error_t *err)
{
  const nex_net_pool_t *pool = &t->net->pool;
  uint32_t size = 1u << (32 - pool->prefix);
  cleanup_free unsigned char *used = nex_xzalloc (size);
  if (load_used (db, pool, used, err) < 0)
    return -1;
  /* Offsets 0 (network), 1 (gateway) and size-1 (broadcast) are never leased. */
  uint32_t span = size - 3, found = 0;
  for (uint32_t k = 0; k < span && found == 0; k++)
    {
      uint32_t off = 2 + (t->net->cursor + k) % span;
      if (!used[off])
        found = off;
    }
  if (found == 0)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "the node's network %s has no free address left", t->net->cidr);
  t->net->cursor = found - 1; /* the next search starts after this one */
  char a[16];
  nex_net_addr_text (pool->base + found, a);
  cleanup_stmt sqlite3_stmt *stmt
      = sql_prepare (db, "INSERT INTO network_leases (workload_id, address, created_at) VALUES (?1, ?2, ?3)", err);
  if (stmt == NULL)
    return -1;
  sqlite3_bind_text (stmt, 1, t->id, -1, SQLITE_STATIC);
  sqlite3_bind_text (stmt, 2, a, -1, SQLITE_STATIC);
  sqlite3_bind_int64 (stmt, 3, nex_clock_now_ms ());
  if (sql_done (db, stmt, err) < 0)
    return -1;
  json_object_set_new (t->spec, "address", json_string (a));
  return 0;
}

/* The workload already publishing PROTOCOL PORT, or NULL (caller frees). */
static char *
port_holder (sqlite3 *db, const char *protocol, int port)
{
  cleanup_stmt sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (db, "SELECT workload_id FROM network_ports WHERE protocol = ?1 AND host_port = ?2", -1, &stmt,
                          NULL)
      != SQLITE_OK)
    return NULL;
  sqlite3_bind_text (stmt, 1, protocol, -1, SQLITE_STATIC);
  sqlite3_bind_int (stmt, 2, port);
  if (sqlite3_step (stmt) != SQLITE_ROW)
    return NULL;
  return nex_xstrdup ((const char *)sqlite3_column_text (stmt, 0));
}

/* Binds a socket of PROTOCOL to HOST_IP:PORT (0: the kernel picks) to learn whether the host uses the port.
 * Returns the port bound, or -1 with errno. */
static int
probe_bind (const char *protocol, uint32_t host_ip, int port)
{
  cleanup_close int s = socket (AF_INET, (strcmp (protocol, "udp") == 0 ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (s < 0)
    return -1;
  struct sockaddr_in sa
      = { .sin_family = AF_INET, .sin_port = htons ((uint16_t)port), .sin_addr.s_addr = htonl (host_ip) };
  socklen_t len = sizeof sa;
  if (bind (s, (struct sockaddr *)&sa, sizeof sa) < 0 || getsockname (s, (struct sockaddr *)&sa, &len) < 0)
    return -1;
  return ntohs (sa.sin_port);
}

/* Leases port entry P (index I) of the spec: picks a host port for host 0, checks the others. */
static int
take_port (sqlite3 *db, take_t *t, json_t *p, size_t i, nex_error_t *err)
{
  const char *protocol = json_string_value (json_object_get (p, "protocol"));
  const char *ip = json_string_value (json_object_get (p, "host_ip"));
  int host = (int)json_integer_value (json_object_get (p, "host"));
  uint32_t host_ip = 0;
  nex_net_addr_parse (ip, &host_ip);
  char field[48];
  snprintf (field, sizeof field, "ports[%zu].host_ip", i);
  /* A port the kernel picked is bound again by number before it is taken: between the two binds a connecting
   * socket of the host may have got it as its own ephemeral port, and then another is picked. */
  bool picked_here = host == 0;
  for (int tries = 0; host == 0 && tries < 64; tries++)
    {
      int picked = probe_bind (protocol, host_ip, 0);
      if (picked < 0)
        return nex_error_field (err, field, "cannot bind %s: %s", ip, strerror (errno));
      cleanup_free char *holder = port_holder (db, protocol, picked);
      if (holder == NULL && probe_bind (protocol, host_ip, picked) == picked)
        host = picked;
    }
  if (host == 0)
    return nex_error_set (err, NEX_ERR_CONFLICT, "no free host port found for ports[%zu]", i);
  cleanup_free char *holder = picked_here ? NULL : port_holder (db, protocol, host);
  if (holder)
    return nex_error_set (err, NEX_ERR_CONFLICT, "host port %d/%s is already published by workload %s", host, protocol,
                          holder);
  if (!picked_here && probe_bind (protocol, host_ip, host) < 0)
    {
      if (errno == EADDRINUSE || errno == EACCES)
        return nex_error_set (err, NEX_ERR_CONFLICT, "host port %d/%s on %s is in use on the host", host, protocol, ip);
      return nex_error_field (err, field, "%s:%d cannot be published: %s", ip, host, strerror (errno));
    }
  cleanup_stmt sqlite3_stmt *stmt = sql_prepare (db,
                                                 "INSERT INTO network_ports (protocol, host_port, host_ip, "
                                                 "workload_port, workload_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                                                 err);
  if (stmt == NULL)
    return -1;
  sqlite3_bind_text (stmt, 1, protocol, -1, SQLITE_STATIC);
  sqlite3_bind_int (stmt, 2, host);
  sqlite3_bind_text (stmt, 3, ip, -1, SQLITE_STATIC);
  sqlite3_bind_int (stmt, 4, (int)json_integer_value (json_object_get (p, "workload")));
  sqlite3_bind_text (stmt, 5, t->id, -1, SQLITE_STATIC);
  if (sql_done (db, stmt, err) < 0)
    return -1;
  json_object_set_new (p, "host", json_integer (host));
  return 0;
}

static int
take_tx (sqlite3 *db, void *ctx, nex_error_t *err)
{
  take_t *t = ctx;
  if (take_address (db, t, err) < 0)
    return -1;
  size_t i;
  json_t *p;
  json_array_foreach (json_object_get (t->spec, "ports"), i, p)
  {
    if (take_port (db, t, p, i, err) < 0)
      return -1;
  }
  return 0;
}

int
nex_net_lease_take (nex_net_t *net, const char *id, json_t *spec, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = &net->lock;
  pthread_mutex_lock (locked);
  /* Work on a copy: a refused transaction leaves the caller's spec as it was. */
  cleanup_json json_t *copy = json_deep_copy (spec);
  take_t t = { .net = net, .id = id, .spec = copy };
  if (nex_registry_run (net->reg, take_tx, &t, err) < 0)
    return -1;
  json_object_update (spec, copy);
  return 0;
}

/* ---- dropping leases ---- */

static int
drop_tx (sqlite3 *db, void *ctx, nex_error_t *err)
{
  cleanup_stmt sqlite3_stmt *ports = sql_prepare (db, "DELETE FROM network_ports WHERE workload_id = ?1", err);
  cleanup_stmt sqlite3_stmt *lease = sql_prepare (db, "DELETE FROM network_leases WHERE workload_id = ?1", err);
  if (ports == NULL || lease == NULL)
    return -1;
  sqlite3_bind_text (ports, 1, ctx, -1, SQLITE_STATIC);
  sqlite3_bind_text (lease, 1, ctx, -1, SQLITE_STATIC);
  return sql_done (db, ports, err) < 0 || sql_done (db, lease, err) < 0 ? -1 : 0;
}

void
nex_net_lease_drop (nex_net_t *net, const char *id)
{
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_run (net->reg, drop_tx, (void *)id, &err) < 0)
    nex_log_error (NEX_LOG_WARN, err, "workload %s: dropping its network lease", id);
}

typedef struct prune
{
  const json_t *live;
  int dropped;
} prune_t;

static int
prune_tx (sqlite3 *db, void *ctx, nex_error_t *err)
{
  prune_t *p = ctx;
  cleanup_stmt sqlite3_stmt *stmt = sql_prepare (db, "SELECT workload_id FROM network_leases", err);
  if (stmt == NULL)
    return -1;
  cleanup_json json_t *gone = json_array ();
  while (sqlite3_step (stmt) == SQLITE_ROW)
    {
      const char *id = (const char *)sqlite3_column_text (stmt, 0);
      if (id && json_object_get (p->live, id) == NULL)
        json_array_append_new (gone, json_string (id));
    }
  size_t i;
  json_t *id;
  json_array_foreach (gone, i, id)
  {
    if (drop_tx (db, (void *)json_string_value (id), err) < 0)
      return -1;
    p->dropped++;
  }
  return 0;
}

int
nex_net_lease_prune (nex_net_t *net, const json_t *live)
{
  prune_t p = { .live = live };
  cleanup_error nex_error_t err = NULL;
  if (nex_registry_run (net->reg, prune_tx, &p, &err) < 0)
    return -1;
  return p.dropped;
}

/* ---- the C form of a stored spec ---- */

static int
rules_from (const json_t *list, nex_net_rule_t *out, size_t *n, nex_error_t *err)
{
  size_t i;
  const json_t *e;
  *n = 0;
  json_array_foreach (list, i, e)
  {
    if (*n < NEX_NET_MAX_RULES && json_is_string (e)
        && nex_net_rule_parse (json_string_value (e), "egress", &out[*n], err) == 0)
      (*n)++;
    else if (*err)
      return -1;
  }
  return 0;
}

int
nex_net_lease_from_spec (const char *id, const json_t *spec, nex_net_lease_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  snprintf (out->id, sizeof out->id, "%s", id);
  nex_net_ifname (id, out->ifname);
  if (nex_net_addr_parse (json_string_value (json_object_get (spec, "address")), &out->addr) < 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "workload %s has no network address", id);
  size_t i;
  const json_t *p;
  json_array_foreach (json_object_get (spec, "ports"), i, p)
  {
    if (out->n_ports == NEX_NET_MAX_PORTS)
      break;
    nex_net_port_t *pt = &out->ports[out->n_ports++];
    pt->host = (int)json_integer_value (json_object_get (p, "host"));
    pt->workload = (int)json_integer_value (json_object_get (p, "workload"));
    snprintf (pt->protocol, sizeof pt->protocol, "%s",
              strcmp (json_string_value (json_object_get (p, "protocol")) ?: "", "udp") == 0 ? "udp" : "tcp");
    nex_net_addr_parse (json_string_value (json_object_get (p, "host_ip")), &pt->host_ip);
  }
  const json_t *egress = json_object_get (spec, "egress");
  out->nats = json_is_true (json_object_get (spec, "nats"));
  return rules_from (json_object_get (egress, "allow"), out->allow, &out->n_allow, err) < 0
                 || rules_from (json_object_get (egress, "deny"), out->deny, &out->n_deny, err) < 0
             ? -1
             : 0;
}
