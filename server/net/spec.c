/* SPDX-License-Identifier: Apache-2.0 */
/* net/spec.c — see spec.h.  Hostile input: every field is bounded and checked; nothing here touches the host. */
#include "server/net/spec.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

char *
nex_net_addr_text (uint32_t addr, char *buf)
{
  snprintf (buf, 16, "%u.%u.%u.%u", addr >> 24, (addr >> 16) & 0xff, (addr >> 8) & 0xff, addr & 0xff);
  return buf;
}

int
nex_net_addr_parse (const char *text, uint32_t *out)
{
  struct in_addr a;
  if (text == NULL || strlen (text) > 15 || inet_pton (AF_INET, text, &a) != 1)
    return -1;
  *out = ntohl (a.s_addr);
  return 0;
}

/* A decimal port 1..65535 in TEXT (nothing else), or -1. */
static int
parse_port (const char *text)
{
  if (*text == '\0' || strlen (text) > 5 || strspn (text, "0123456789") != strlen (text))
    return -1;
  int p = atoi (text);
  return p >= 1 && p <= 65535 ? p : -1;
}

int
nex_net_rule_parse (const char *text, const char *field, nex_net_rule_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  if (strlen (text) > 64)
    return nex_error_field (err, field, "an entry has at most 64 characters");
  if (strcmp (text, "nats") == 0)
    {
      out->kind = NEX_NET_RULE_NATS;
      return 0;
    }
  char host[65];
  snprintf (host, sizeof host, "%s", text);
  char *colon = strchr (host, ':');
  if (colon)
    {
      *colon = '\0';
      if ((out->port = parse_port (colon + 1)) < 0)
        return nex_error_field (err, field, "`%s`: the port after `:` must be 1 to 65535", text);
    }
  if (strcmp (host, "nex-host") == 0)
    {
      out->kind = NEX_NET_RULE_HOST;
      return 0;
    }
  out->prefix = 32;
  char *slash = strchr (host, '/');
  if (slash)
    {
      *slash = '\0';
      const char *p = slash + 1;
      if (*p == '\0' || strlen (p) > 2 || strspn (p, "0123456789") != strlen (p) || atoi (p) > 32)
        return nex_error_field (err, field, "`%s`: the prefix length after `/` must be 0 to 32", text);
      out->prefix = atoi (p);
    }
  if (nex_net_addr_parse (host, &out->addr) < 0)
    return nex_error_field (err, field, "`%s` is not CIDR[:port], address[:port], nex-host[:port] or nats (IPv4 only)",
                            text);
  out->addr &= out->prefix ? ~0u << (32 - out->prefix) : 0;
  return 0;
}

/* Refuses members of O other than KNOWN (NULL-terminated), naming them under PREFIX. */
static int
only_known (const json_t *o, const char *const *known, const char *prefix, nex_error_t *err)
{
  const char *key;
  const json_t *v;
  json_object_foreach ((json_t *)o, key, v)
  {
    size_t i = 0;
    while (known[i] && strcmp (known[i], key) != 0)
      i++;
    if (known[i] == NULL)
      return nex_error_field (err, prefix, "unknown field `%s`", key);
  }
  return 0;
}

/* An integer member KEY of O in MIN..MAX into *OUT, DEFLT when absent or null. */
static int
port_member (const json_t *o, const char *key, const char *field, int min, int deflt, int *out, nex_error_t *err)
{
  const json_t *v = json_object_get (o, key);
  if (v == NULL || json_is_null (v))
    {
      if (deflt < 0)
        return nex_error_field (err, field, "is required");
      *out = deflt;
      return 0;
    }
  if (!json_is_integer (v) || json_integer_value (v) < min || json_integer_value (v) > 65535)
    return nex_error_field (err, field, "must be an integer from %d to 65535", min);
  *out = (int)json_integer_value (v);
  return 0;
}

/* One entry of ports (index I) as its stored object. */
static json_t *
read_port (const json_t *p, size_t i, nex_error_t *err)
{
  static const char *const known[] = { "host", "workload", "protocol", "host_ip", NULL };
  char field[64];
  snprintf (field, sizeof field, "ports[%zu]", i);
  if (!json_is_object (p))
    {
      nex_error_field (err, field, "must be an object {host, workload, protocol, host_ip}");
      return NULL;
    }
  if (only_known (p, known, field, err) < 0)
    return NULL;
  int host = 0, workload = 0;
  char f_host[80], f_workload[80], f_proto[80], f_ip[80];
  snprintf (f_host, sizeof f_host, "%s.host", field);
  snprintf (f_workload, sizeof f_workload, "%s.workload", field);
  snprintf (f_proto, sizeof f_proto, "%s.protocol", field);
  snprintf (f_ip, sizeof f_ip, "%s.host_ip", field);
  if (port_member (p, "host", f_host, 0, 0, &host, err) < 0
      || port_member (p, "workload", f_workload, 1, -1, &workload, err) < 0)
    return NULL;
  const json_t *proto = json_object_get (p, "protocol");
  const char *protocol = json_is_string (proto) ? json_string_value (proto) : "tcp";
  if ((proto && !json_is_null (proto) && !json_is_string (proto))
      || (strcmp (protocol, "tcp") != 0 && strcmp (protocol, "udp") != 0))
    {
      nex_error_field (err, f_proto, "must be tcp or udp");
      return NULL;
    }
  const json_t *ip = json_object_get (p, "host_ip");
  const char *host_ip = json_is_string (ip) ? json_string_value (ip) : "127.0.0.1";
  uint32_t a;
  if ((ip && !json_is_null (ip) && !json_is_string (ip)) || nex_net_addr_parse (host_ip, &a) < 0)
    {
      nex_error_field (err, f_ip, "must be a dotted IPv4 address (0.0.0.0: every address of the host)");
      return NULL;
    }
  char canon[16];
  return json_pack ("{s:i, s:i, s:s, s:s}", "host", host, "workload", workload, "protocol", protocol, "host_ip",
                    nex_net_addr_text (a, canon));
}

static int
read_ports (const json_t *body, json_t *spec, nex_error_t *err)
{
  const json_t *ports = json_object_get (body, "ports");
  json_t *out = json_array ();
  json_object_set_new (spec, "ports", out);
  if (ports == NULL || json_is_null (ports))
    return 0;
  if (!json_is_array (ports) || json_array_size (ports) > NEX_NET_MAX_PORTS)
    return nex_error_field (err, "ports", "must be an array of at most %d ports", NEX_NET_MAX_PORTS);
  size_t i;
  const json_t *p;
  json_array_foreach (ports, i, p)
  {
    json_t *port = read_port (p, i, err);
    if (port == NULL)
      return -1;
    size_t j;
    const json_t *q;
    json_array_foreach (out, j, q)
    {
      if (json_integer_value (json_object_get (port, "host")) != 0
          && json_equal (json_object_get (port, "host"), json_object_get (q, "host"))
          && json_equal (json_object_get (port, "protocol"), json_object_get (q, "protocol")))
        {
          json_decref (port);
          return nex_error_field (err, "ports", "host port %lld/%s is given twice",
                                  (long long)json_integer_value (json_object_get (q, "host")),
                                  json_string_value (json_object_get (q, "protocol")));
        }
    }
    json_array_append_new (out, port);
  }
  return 0;
}

/* egress.allow or egress.deny (KEY) of EGRESS into OUT, each entry checked. */
static int
read_rules (const json_t *egress, const char *key, json_t *out, nex_error_t *err)
{
  const json_t *list = json_object_get (egress, key);
  char field[64];
  snprintf (field, sizeof field, "egress.%s", key);
  if (list == NULL || json_is_null (list))
    return 0;
  if (!json_is_array (list) || json_array_size (list) > NEX_NET_MAX_RULES)
    return nex_error_field (err, field, "must be an array of at most %d entries", NEX_NET_MAX_RULES);
  size_t i;
  const json_t *e;
  json_array_foreach (list, i, e)
  {
    char f[96];
    snprintf (f, sizeof f, "%s[%zu]", field, i);
    nex_net_rule_t r;
    if (!json_is_string (e) || strlen (json_string_value (e)) != json_string_length (e))
      return nex_error_field (err, f, "must be a string");
    if (nex_net_rule_parse (json_string_value (e), f, &r, err) < 0)
      return -1;
    json_array_append_new (out, json_string (json_string_value (e)));
  }
  return 0;
}

static int
read_egress (const json_t *body, json_t *spec, nex_error_t *err)
{
  static const char *const known[] = { "allow", "deny", NULL };
  const json_t *egress = json_object_get (body, "egress");
  json_t *allow = json_array (), *deny = json_array ();
  json_object_set_new (spec, "egress", json_pack ("{s:o, s:o}", "allow", allow, "deny", deny));
  if (egress == NULL || json_is_null (egress))
    return 0;
  if (!json_is_object (egress))
    return nex_error_field (err, "egress", "must be an object {allow: [...], deny: [...]}");
  if (only_known (egress, known, "egress", err) < 0 || read_rules (egress, "allow", allow, err) < 0
      || read_rules (egress, "deny", deny, err) < 0)
    return -1;
  return 0;
}

int
nex_net_spec_parse (const json_t *body, json_t **out, nex_error_t *err)
{
  cleanup_json json_t *spec = json_pack ("{s:n}", "address");
  *out = NULL;
  const json_t *nats = json_object_get (body, "nats");
  if (nats && !json_is_null (nats) && !json_is_boolean (nats))
    return nex_error_field (err, "nats", "must be a boolean");
  json_object_set_new (spec, "nats", json_boolean (json_is_true (nats)));
  if (read_ports (body, spec, err) < 0 || read_egress (body, spec, err) < 0)
    return -1;
  *out = NEX_STEAL_PTR (spec);
  return 0;
}

int
nex_net_spec_absent (const json_t *body, nex_error_t *err)
{
  static const char *const fields[] = { "ports", "egress", "nats" };
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
    {
      const json_t *v = json_object_get (body, fields[i]);
      if (v && !json_is_null (v) && !json_is_false (v))
        return nex_error_field (err, fields[i], "needs network bridge");
    }
  return 0;
}

void
nex_net_spec_write_json (const json_t *spec, nex_jsontext_t *t)
{
  const json_t *v = spec ? json_object_get (spec, "address") : NULL;
  nex_jsontext_key (t, "address");
  nex_jsontext_value (t, json_is_string (v) ? v : NULL);
  v = spec ? json_object_get (spec, "ports") : NULL;
  nex_jsontext_key (t, "ports");
  if (json_is_array (v))
    nex_jsontext_value (t, v);
  else
    {
      nex_jsontext_open (t, '[');
      nex_jsontext_close (t, ']');
    }
  v = spec ? json_object_get (spec, "egress") : NULL;
  nex_jsontext_key (t, "egress");
  nex_jsontext_value (t, json_is_object (v) ? v : NULL);
  nex_jsontext_key (t, "nats");
  nex_jsontext_bool (t, spec && json_is_true (json_object_get (spec, "nats")));
}
