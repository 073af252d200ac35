/* SPDX-License-Identifier: Apache-2.0 */
/* output.c — see output.h.  Lines are appended to one byte arena with an index beside it; the index is a ring
 * of BOUND slots, and the arena is compacted (the live lines moved to its front) when it fills with text of lines
 * the ring has passed over. */
#include "server/output.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

typedef struct
{
  nex_stream_t stream;
  int64_t ts;
  size_t off, len; /* in the arena */
} slot_t;

struct nex_output
{
  int64_t bound;
  size_t max_bytes;
  slot_t *slots; /* ring of bound slots, allocated as it grows */
  size_t cap;    /* slots allocated */
  size_t head;   /* oldest kept */
  size_t count;  /* kept */
  int64_t skipped;
  char *arena;
  size_t used, size; /* arena bytes written, allocated */
  size_t live;       /* bytes of the kept lines */
};

nex_output_t *
nex_output_new (int64_t bound, size_t max_bytes)
{
  nex_output_t *o = nex_xzalloc (sizeof *o);
  o->bound = bound < 1 ? 1 : bound;
  o->max_bytes = max_bytes < 4096 ? 4096 : max_bytes;
  return o;
}

void
nex_output_free (nex_output_t *o)
{
  if (o == NULL)
    return;
  free (o->slots);
  free (o->arena);
  free (o);
}

static slot_t *
slot_at (nex_output_t *o, size_t i)
{
  return &o->slots[(o->head + i) % o->cap];
}

/* Moves the kept lines' text to the arena's front (in ring order). */
static void
compact (nex_output_t *o)
{
  char *fresh = nex_xmalloc (o->live > 0 ? o->live : 1);
  size_t at = 0;
  for (size_t i = 0; i < o->count; i++)
    {
      slot_t *s = slot_at (o, i);
      memcpy (fresh + at, o->arena + s->off, s->len);
      s->off = at;
      at += s->len;
    }
  free (o->arena);
  o->arena = fresh;
  o->used = o->size = at;
}

/* Makes room in the ring for one more slot: grows it (doubling, up to bound) while it may, else passes over the
 * oldest kept line. */
static void
ring_room (nex_output_t *o)
{
  if (o->count < o->cap)
    return;
  if ((int64_t)o->cap < o->bound)
    {
      size_t cap = o->cap ? o->cap * 2 : 64;
      if ((int64_t)cap > o->bound)
        cap = (size_t)o->bound;
      slot_t *slots = nex_xmalloc (cap * sizeof *slots);
      for (size_t i = 0; i < o->count; i++)
        slots[i] = *slot_at (o, i);
      free (o->slots);
      o->slots = slots;
      o->cap = cap;
      o->head = 0;
      return;
    }
  o->live -= o->slots[o->head].len;
  o->head = (o->head + 1) % o->cap;
  o->count--;
  o->skipped++;
}

int
nex_output_add (nex_output_t *o, nex_stream_t stream, int64_t ts, const char *text, size_t len)
{
  ring_room (o);
  if (o->used + len > o->size)
    {
      /* Text of passed-over lines is dead weight: drop it before growing. */
      if (o->live < o->used / 2)
        compact (o);
      if (o->used + len > o->size)
        {
          size_t size = o->size ? o->size : 4096;
          while (size < o->used + len)
            size *= 2;
          o->arena = nex_xrealloc (o->arena, size);
          o->size = size;
        }
    }
  if (len > 0)
    memcpy (o->arena + o->used, text, len);
  size_t tail = (o->head + o->count) % o->cap;
  o->slots[tail] = (slot_t){ .stream = stream, .ts = ts, .off = o->used, .len = len };
  o->count++;
  o->used += len;
  o->live += len;
  return o->live >= o->max_bytes;
}

size_t
nex_output_pending (const nex_output_t *o)
{
  return o->count;
}

int64_t
nex_output_skipped (const nex_output_t *o)
{
  return o->skipped;
}

size_t
nex_output_take (nex_output_t *o, nex_log_line_t **lines, int64_t *skipped)
{
  size_t n = o->count;
  *skipped = o->skipped;
  *lines = NULL;
  if (n > 0)
    {
      nex_log_line_t *out = nex_xmalloc (n * sizeof *out);
      for (size_t i = 0; i < n; i++)
        {
          const slot_t *s = slot_at (o, i);
          out[i] = (nex_log_line_t){ .stream = s->stream, .ts = s->ts, .text = o->arena + s->off, .len = s->len };
        }
      *lines = out;
    }
  /* The texts stay where they are until the next add: reset the ring, keep the arena's bytes. */
  o->head = o->count = 0;
  o->skipped = 0;
  o->live = 0;
  o->used = 0;
  return n;
}
