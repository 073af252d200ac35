/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/token-cache.c — registry Bearer tokens per scope until they expire (contract in token-cache.h).
 *
 * A small array under one lock: a node pulls from a handful of registries and repositories, so a linear search
 * is all it needs.  Tokens are secrets: wiped when dropped or replaced. */
#include "server/artifacts/token-cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

typedef struct entry
{
  char *key;
  char *header;
  int64_t until_ms;
} entry_t;

struct nex_token_cache
{
  pthread_mutex_t lock;
  entry_t entries[NEX_TOKEN_CACHE_MAX];
  size_t n;
};

nex_token_cache_t *
nex_token_cache_new (void)
{
  nex_token_cache_t *c = nex_xzalloc (sizeof *c);
  pthread_mutex_init (&c->lock, NULL);
  return c;
}

static void
entry_clear (entry_t *e)
{
  if (e->header)
    sodium_memzero (e->header, strlen (e->header));
  free (e->header);
  free (e->key);
  memset (e, 0, sizeof *e);
}

/* Removes entry I (the last one takes its place).  Under the lock. */
static void
remove_at (nex_token_cache_t *c, size_t i)
{
  entry_clear (&c->entries[i]);
  if (i != c->n - 1)
    c->entries[i] = c->entries[c->n - 1];
  memset (&c->entries[c->n - 1], 0, sizeof c->entries[0]);
  c->n--;
}

static entry_t *
find (nex_token_cache_t *c, const char *key)
{
  for (size_t i = 0; i < c->n; i++)
    if (strcmp (c->entries[i].key, key) == 0)
      return &c->entries[i];
  return NULL;
}

void
nex_token_cache_free (nex_token_cache_t *c)
{
  if (c == NULL)
    return;
  while (c->n)
    remove_at (c, c->n - 1);
  pthread_mutex_destroy (&c->lock);
  free (c);
}

char *
nex_token_cache_get (nex_token_cache_t *c, const char *key, int64_t now_ms)
{
  if (c == NULL)
    return NULL;
  cleanup_unlock pthread_mutex_t *locked = &c->lock;
  pthread_mutex_lock (&c->lock);
  entry_t *e = find (c, key);
  if (e == NULL)
    return NULL;
  if (now_ms >= e->until_ms - NEX_TOKEN_MARGIN_S * 1000)
    {
      remove_at (c, (size_t)(e - c->entries));
      return NULL;
    }
  return nex_xstrdup (e->header);
}

void
nex_token_cache_put (nex_token_cache_t *c, const char *key, const char *header, int64_t expires_in_s, int64_t now_ms)
{
  if (c == NULL)
    return;
  if (expires_in_s <= 0)
    expires_in_s = NEX_TOKEN_DEFAULT_S;
  if (expires_in_s > NEX_TOKEN_MAX_S)
    expires_in_s = NEX_TOKEN_MAX_S;
  cleanup_unlock pthread_mutex_t *locked = &c->lock;
  pthread_mutex_lock (&c->lock);
  entry_t *e = find (c, key);
  if (e)
    entry_clear (e);
  else if (c->n < NEX_TOKEN_CACHE_MAX)
    e = &c->entries[c->n++];
  else
    {
      /* Full: the entry nearest its end makes room. */
      e = &c->entries[0];
      for (size_t i = 1; i < c->n; i++)
        if (c->entries[i].until_ms < e->until_ms)
          e = &c->entries[i];
      entry_clear (e);
    }
  e->key = nex_xstrdup (key);
  e->header = nex_xstrdup (header);
  e->until_ms = now_ms + expires_in_s * 1000;
}

void
nex_token_cache_drop (nex_token_cache_t *c, const char *key)
{
  if (c == NULL)
    return;
  cleanup_unlock pthread_mutex_t *locked = &c->lock;
  pthread_mutex_lock (&c->lock);
  entry_t *e = find (c, key);
  if (e)
    remove_at (c, (size_t)(e - c->entries));
}
