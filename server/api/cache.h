/* SPDX-License-Identifier: Apache-2.0 */
/* api/cache.h — answers kept while the registry is unchanged.
 *
 * A read route whose answer depends only on the registry may keep the answer's text under a key, stamped with
 * the registry's generation read *before* the registry was read (nex_registry_generation); the copy is served
 * only while the generation is still the same, so that it is never older than what the registry holds.  The
 * cache is a fixed number of slots (a key's slot is its hash), so its memory is bounded whatever the keys.  With
 * each answer it keeps one more string (the workload's namespace), so that access checks still run on a hit.
 * Any thread; one mutex, held only to copy. */
#ifndef NEX_API_CACHE_H
#define NEX_API_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct nex_api_cache nex_api_cache_t;

nex_api_cache_t *nex_api_cache_new (size_t slots);
void nex_api_cache_free (nex_api_cache_t *c);

/* 1 with copies of the TEXT and the EXTRA string kept for KEY at GENERATION (caller frees both), else 0. */
int nex_api_cache_get (nex_api_cache_t *c, const char *key, uint64_t generation, char **text, char **extra);

/* Keeps TEXT and EXTRA (copied) for KEY at GENERATION, replacing what the slot held. */
void nex_api_cache_put (nex_api_cache_t *c, const char *key, uint64_t generation, const char *text, const char *extra);

#endif
