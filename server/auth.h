/* SPDX-License-Identifier: Apache-2.0 */
/* auth.h — who may do what through the API: bearer tokens with scopes, optionally limited to namespaces.
 *
 * Scopes nest: `admin` ⊇ `deploy` ⊇ `read`.  What a request needs follows from its method and path alone (one
 * policy for every route, present and future, in nex_auth_required): reading needs `read`; anything that
 * changes something (POST, PUT, PATCH, DELETE) needs `deploy`; /v1/tokens needs `admin`; the health checks and
 * the API's own documentation need nothing.
 *
 * A token is "nex_" + 16 hex digits (its public id) + "_" + 43 characters of secret (32 random bytes, base64url).
 * Only its BLAKE2b-256 is stored (registry table tokens); a presented token is found by its id and its hash is
 * compared in constant time.  The configured `admin_token` (any string of 24 to 256 printable characters) is an
 * admin that lives only in the configuration, compared the same way.
 *
 * At the first start of a node without `admin_token` (no token ever created), an admin token is generated,
 * written to DATA_DIR/admin.token (mode 0600) and printed once on stderr.  Requests without a token get the
 * `anonymous` scopes of the configuration (none by default).
 *
 * Thread safety: every function may be called from any thread; tokens are cached in memory under a mutex and
 * reloaded whenever one is created or revoked. */
#ifndef NEX_AUTH_H
#define NEX_AUTH_H

#include <jansson.h>

#include "common/error.h"
#include "server/node.h"

#define NEX_SCOPE_READ 1u
#define NEX_SCOPE_DEPLOY 2u
#define NEX_SCOPE_ADMIN 4u

/* Who sent a request, as far as the API cares. */
typedef struct nex_principal
{
  unsigned scopes;    /* effective scopes (nesting applied) */
  char token_id[24];  /* the token's id, "config" for admin_token, "" when anonymous */
  json_t *namespaces; /* array of namespaces it may touch; NULL: all.  Owned: nex_principal_release */
} nex_principal_t;

void nex_principal_release (nex_principal_t *p);

/* Whether P may touch workloads of namespace NS. */
int nex_principal_allows_namespace (const nex_principal_t *p, const char *ns);

typedef struct nex_auth nex_auth_t;

/* Loads the tokens, creates the first admin token when there never was one (see above).  NULL on failure
 * (e.g. a malformed `anonymous` or `admin_token`, or admin.token cannot be written). */
nex_auth_t *nex_auth_open (nex_node_t *node, nex_error_t *err);
void nex_auth_close (nex_auth_t *a);

/* The scope METHOD on PATH needs, 0 for public paths.  GET /v1/workloads/{id}/exec (an interactive exec session)
 * needs `deploy`, like every request that runs something. */
unsigned nex_auth_required (const char *method, const char *path);

/* Identifies the bearer of TOKEN (NULL when the request carried none: the anonymous scopes).  A token that is
 * malformed, unknown or revoked is NEX_ERR_UNAUTHENTICATED.  Fills *P (release it). */
int nex_auth_identify (nex_auth_t *a, const char *token, nex_principal_t *p, nex_error_t *err);

/* The names of the scopes bit set SCOPES holds, nesting applied (read, deploy, admin): a new JSON array. */
json_t *nex_auth_scopes_json (unsigned scopes);

/* Parses SCOPES (a JSON array of scope names) into a bit set; NEX_ERR_INVALID field "scopes" otherwise. */
int nex_auth_parse_scopes (const json_t *scopes, unsigned *out, nex_error_t *err);

/* Creates a token named NAME with SCOPES (array) and NAMESPACES (array or NULL); *OUT receives its public form
 * with the secret (`token`), which is never available again.  Field errors are NEX_ERR_INVALID. */
int nex_auth_token_create (nex_auth_t *a, const char *name, const json_t *scopes, const json_t *namespaces,
                           json_t **out, nex_error_t *err);

/* The public form of every token (no secrets), oldest first.  New reference or NULL. */
json_t *nex_auth_token_list (nex_auth_t *a, nex_error_t *err);

/* Revokes token ID (idempotent); *OUT receives its public form.  NEX_ERR_NOT_FOUND for an unknown id. */
int nex_auth_token_revoke (nex_auth_t *a, const char *id, json_t **out, nex_error_t *err);

#endif
