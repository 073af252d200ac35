/* SPDX-License-Identifier: Apache-2.0 */
/* secure.h — secure launches: sealed environments and workload JWTs, on every front door (REST and NATS).
 *
 * A deploy request may carry, beside the plain fields (nex's names):
 *   environment        base64 of a JSON object of strings sealed to the node's xkey (nkeys' xkv1 box) by
 *   sender_public_key  the sender's xkey.  The node opens it once at request time to refuse what it cannot open,
 *                      then stores only the sealed form (registry: workload_secure); the clear values exist
 *                      only in memory, when the workload starts, and are wiped once sent to the agent.  Its
 *                      variable names are upper-cased, as nex's agent does (two names equal but for case are
 *                      refused); the plain `env` keeps its names as given.
 *   workload_jwt       a JWT (header alg "ed25519-nkey") signed by an issuer nkey.  It is accepted only if the
 *                      signature verifies, the issuer is one of valid_issuers (when configured; then a JWT is
 *                      required), it has not expired, its jti was never used, and its claims carry the
 *                      artifact's SHA-256 (claims.nats.hash or claims.hash, hex) — which the supervisor compares
 *                      with the digest of the bytes it actually fetched before anything runs (nex computes this
 *                      hash but never compares it; we do).
 * A workload launched with a JWT can only be stopped with a fresh JWT (a jti never seen) from the same issuer,
 * whose subject (when it has one) is the start JWT's or the workload's id (nex's client uses the latter).
 *
 * Every function may be called from any thread. */
#ifndef NEX_SECURE_H
#define NEX_SECURE_H

#include <jansson.h>

#include "common/error.h"
#include "server/node.h"

/* Takes the secure-launch fields out of deploy REQUEST (an object; they are removed from it) and checks them as
 * above, filling OUT (caller releases).  *PRESENT says whether there was any.  -1 with NEX_ERR_INVALID naming the
 * field (or NEX_ERR_CONFLICT for a replayed JWT); nothing is stored but the jti of a JWT that verified. */
int nex_secure_take (nex_node_t *node, json_t *request, nex_secure_row_t *out, int *present, nex_error_t *err);

/* Verifies JWT as described above and returns its claims (new reference), without claiming its jti.  NULL with
 * NEX_ERR_INVALID (field "workload_jwt") otherwise. */
json_t *nex_secure_jwt_verify (nex_node_t *node, const char *jwt, nex_error_t *err);

/* Before workload ID runs: when its JWT vouched for a hash, DIGEST (hex, as fetched) must be it.  0 or -1 with
 * the reason. */
int nex_secure_check_digest (nex_node_t *node, const char *id, const char *digest, nex_error_t *err);

/* The environment workload ID starts with: ENV plus its sealed environment opened with the node's xkey (sealed
 * values win).  New reference; release it with nex_secure_env_wipe.  NULL with the reason when the sealed
 * environment no longer opens. */
json_t *nex_secure_start_env (nex_node_t *node, const char *id, json_t *env, nex_error_t *err);

/* Overwrites the string values of ENV in memory, then releases it.  Safe on NULL. */
void nex_secure_env_wipe (json_t *env);

/* May workload ID be stopped with JWT (NULL when none came)?  0 when it was not launched with a JWT, or when
 * JWT verifies, comes from the same issuer (subject, when it has one: the start JWT's, or ID) and is fresh (its
 * jti is claimed now); -1 otherwise (NEX_ERR_INVALID, or NEX_ERR_CONFLICT for a replay). */
int nex_secure_check_stop (nex_node_t *node, const char *id, const char *jwt, nex_error_t *err);

#endif
