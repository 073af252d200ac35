/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/token-cache.h — registry Bearer tokens kept across pulls, per scope, until they expire.
 *
 * A token endpoint answers {token, expires_in}; the distribution spec says a client may reuse the token for its
 * scope until then (expires_in defaults to 60 s when the answer has none).  The key is what the token was asked
 * for: realm, service and scope (the credentials sent with it are the operator's for that registry, fixed for
 * the node's life).  A token is given out until NEX_TOKEN_MARGIN_S before its end, so that one taken from the
 * cache does not lapse on its way; one a registry refused anyway is dropped (nex_token_cache_drop).  At most
 * NEX_TOKEN_CACHE_MAX entries (the one nearest its end makes room).
 *
 * Thread safety: every function may be called from any thread. */
#ifndef NEX_TOKEN_CACHE_H
#define NEX_TOKEN_CACHE_H

#include <stdint.h>

#define NEX_TOKEN_CACHE_MAX 64
#define NEX_TOKEN_MARGIN_S 1
#define NEX_TOKEN_DEFAULT_S 60
#define NEX_TOKEN_MAX_S 86400 /* a longer expires_in is taken as this */

typedef struct nex_token_cache nex_token_cache_t;

nex_token_cache_t *nex_token_cache_new (void);

/* Frees C.  Safe on NULL. */
void nex_token_cache_free (nex_token_cache_t *c);

/* A copy of the token (the whole Authorization header line) kept for KEY and still valid at NOW_MS (a monotonic
 * clock), or NULL.  The caller frees it.  NULL when C is NULL. */
char *nex_token_cache_get (nex_token_cache_t *c, const char *key, int64_t now_ms);

/* Keeps HEADER for KEY until NOW_MS + EXPIRES_IN_S (<= 0: NEX_TOKEN_DEFAULT_S), replacing what KEY had.  No-op
 * when C is NULL. */
void nex_token_cache_put (nex_token_cache_t *c, const char *key, const char *header, int64_t expires_in_s,
                          int64_t now_ms);

/* Forgets KEY's token (the registry refused it).  No-op when C is NULL. */
void nex_token_cache_drop (nex_token_cache_t *c, const char *key);

#endif
