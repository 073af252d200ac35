/* SPDX-License-Identifier: Apache-2.0 */
/* identity.h — the node's keys: who it is on NATS and to whom clients seal secrets.
 *
 * At first start a node makes two random keys and keeps their seeds in DATA_DIR/identity.json (mode 0600,
 * written atomically): an ed25519 server nkey, whose public key ("N...", 56 characters) is the node id, and a
 * curve25519 xkey ("X..."), published in ping/info, to which clients seal workload environments.  Later starts
 * load the same keys, so the node keeps its id across restarts.  The file holds secrets: it is never served and
 * nexd refuses to use one that others can read. */
#ifndef NEX_IDENTITY_H
#define NEX_IDENTITY_H

#include "common/error.h"
#include "server/nats/nkeys.h"

typedef struct nex_identity
{
  nex_nkey_sign_t node; /* server nkey: node.public_text is the node id */
  nex_nkey_curve_t xkey;
} nex_identity_t;

/* Loads DATA_DIR/identity.json, or creates it with fresh keys when absent.  -1 when the file is unreadable,
 * malformed, or readable by group or others (NEX_ERR_INVALID naming field "identity"). */
int nex_identity_load (const char *data_dir, nex_identity_t *id, nex_error_t *err);

/* Wipes the secrets of ID. */
void nex_identity_wipe (nex_identity_t *id);

#endif
