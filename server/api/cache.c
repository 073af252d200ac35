/* SPDX-License-Identifier: Apache-2.0 */
/* api/cache.c — see api/cache.h. */
#include "server/api/cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

typedef struct slot
{
  char *key;
  uint64_t generation;
  char *text;
  char *extra;
} slot_t;

struct nex_api_cache
{
  pthread_mutex_t lock;
  slot_t *slots;
  size_t n;
};

nex_api_cache_t *
nex_api_cache_new (size_t slots)
{
  nex_api_cache_t *c = nex_xzalloc (sizeof *c);
  pthread_mutex_init (&c->lock, NULL);
  c->n = slots ? slots : 1;
  c->slots = nex_xzalloc (c->n * sizeof *c->slots);
  return c;
}

static void
slot_clear (slot_t *s)
{
  free (s->key);
  free (s->text);
  free (s->extra);
  memset (s, 0, sizeof *s);
}

void
nex_api_cache_free (nex_api_cache_t *c)
{
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->n; i++)
    slot_clear (&c->slots[i]);
  free (c->slots);
  pthread_mutex_destroy (&c->lock);
  free (c);
}

/* FNV-1a: keys are ids nexd made or validated, so an even spread is all that is needed. */
static size_t
slot_of (const nex_api_cache_t *c, const char *key)
{
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char *p = (const unsigned char *)key; *p; p++)
    h = (h ^ *p) * 1099511628211ULL;
  return (size_t)(h % c->n);
}

int
nex_api_cache_get (nex_api_cache_t *c, const char *key, uint64_t generation, char **text, char **extra)
{
  int hit = 0;
  pthread_mutex_lock (&c->lock);
  slot_t *s = &c->slots[slot_of (c, key)];
  if (s->key && strcmp (s->key, key) == 0 && s->generation == generation)
    {
      *text = nex_xstrdup (s->text);
      *extra = s->extra ? nex_xstrdup (s->extra) : NULL;
      hit = 1;
    }
  pthread_mutex_unlock (&c->lock);
  return hit;
}

void
nex_api_cache_put (nex_api_cache_t *c, const char *key, uint64_t generation, const char *text, const char *extra)
{
  slot_t fresh = { nex_xstrdup (key), generation, nex_xstrdup (text), extra ? nex_xstrdup (extra) : NULL };
  pthread_mutex_lock (&c->lock);
  slot_t *s = &c->slots[slot_of (c, key)];
  slot_t old = *s;
  *s = fresh;
  pthread_mutex_unlock (&c->lock);
  slot_clear (&old);
}
