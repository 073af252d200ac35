/* SPDX-License-Identifier: Apache-2.0 */
/* net/spec.h — a bridge workload's network spec: the deploy fields ports, egress and nats, validated, and their
 * JSON form in the workload's record.
 *
 * The spec is one JSON object, stored as the workload's `net` column and held in nex_workload_t.net:
 *
 *     {"address": "10.87.0.2" | null,      assigned at deploy (net.c), null until then
 *      "ports": [{"host": 8081, "workload": 80, "protocol": "tcp", "host_ip": "127.0.0.1"}, ...],
 *      "egress": {"allow": ["10.0.0.0/8:443", "nex-host:4222", "nats"], "deny": [...]},
 *      "nats": false}
 *
 * `host: 0` in a port asks the node to pick a free port; net.c writes the one it picked back into the spec. */
#ifndef NEX_NET_SPEC_H
#define NEX_NET_SPEC_H

#include <stdint.h>

#include <jansson.h>

#include "common/error.h"
#include "common/jsontext.h"

#define NEX_NET_MAX_PORTS 32 /* published ports per workload */
#define NEX_NET_MAX_RULES 64 /* entries in each of egress.allow and egress.deny */

/* One egress entry. */
typedef enum nex_net_rule_kind
{
  NEX_NET_RULE_CIDR = 0, /* an IPv4 address or network, optionally one port */
  NEX_NET_RULE_HOST,     /* nex-host[:port]: the node itself as the workload sees it (the gateway address) */
  NEX_NET_RULE_NATS,     /* nats: the node's NATS forwarder on the gateway address */
} nex_net_rule_kind_t;

typedef struct nex_net_rule
{
  nex_net_rule_kind_t kind;
  uint32_t addr; /* host byte order, masked to PREFIX (CIDR only) */
  int prefix;    /* 0..32 (CIDR only) */
  int port;      /* 1..65535, or 0: every port */
} nex_net_rule_t;

/* Parses TEXT (`CIDR[:port]`, `address[:port]`, `nex-host[:port]` or `nats`) into *OUT.  0, or -1 with
 * NEX_ERR_INVALID naming FIELD. */
int nex_net_rule_parse (const char *text, const char *field, nex_net_rule_t *out, nex_error_t *err);

/* Reads the bridge fields of deploy request BODY into *OUT (a new spec object, address null).  0, or -1 with
 * NEX_ERR_INVALID naming the field (`ports[1].host`, `egress.allow[0]`, ...). */
int nex_net_spec_parse (const json_t *body, json_t **out, nex_error_t *err);

/* Fails (NEX_ERR_INVALID naming it) when BODY has one of the bridge-only fields with a non-null value: they
 * mean nothing for network none or host.  0 otherwise. */
int nex_net_spec_absent (const json_t *body, nex_error_t *err);

/* Writes the record fields address, ports, egress and nats of a workload's JSON object into T (inside the open
 * object) from SPEC (NULL for a workload not in bridge mode: null, [], null, false). */
void nex_net_spec_write_json (const json_t *spec, nex_jsontext_t *t);

/* Dotted text of ADDR (host byte order) into BUF (at least 16 bytes); returns BUF. */
char *nex_net_addr_text (uint32_t addr, char *buf);

/* Parses dotted IPv4 TEXT into *OUT (host byte order).  0, or -1 (no error set) when it is not one. */
int nex_net_addr_parse (const char *text, uint32_t *out);

#endif
