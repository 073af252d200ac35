/* SPDX-License-Identifier: Apache-2.0 */
/* resync.c — see resync.h. */
#include "server/drivers/resync.h"

#include <string.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

void
nex_resync_init (nex_resync_t *r)
{
  memset (r, 0, sizeof *r);
  unsigned char raw[16];
  randombytes_buf (raw, sizeof raw);
  sodium_bin2hex (r->nonce, sizeof r->nonce, raw, sizeof raw);
}

json_t *
nex_resync_greeting (const nex_resync_t *r)
{
  return json_pack ("{s:s}", "nonce", r->nonce);
}

void
nex_resync_release (nex_resync_t *r)
{
  free (r->buf);
  r->buf = NULL;
  r->len = r->cap = 0;
}

/* True when the complete HELLO payload P (LEN bytes) is the agent's answer to our greeting. */
static int
is_answer (const nex_resync_t *r, const uint8_t *p, size_t len)
{
  cleanup_json json_t *o = json_loadb ((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);
  const char *nonce = json_string_value (json_object_get (o, "nonce"));
  return json_is_object (o) && nonce && strcmp (nonce, r->nonce) == 0 && json_is_string (json_object_get (o, "state"));
}

int
nex_resync_feed (nex_resync_t *r, const uint8_t *data, size_t n, nex_wire_frame_t *hello, const uint8_t **rest,
                 size_t *rest_len)
{
  if (r->len + n > r->cap)
    {
      r->cap = r->len + n + 1024;
      r->buf = nex_xrealloc (r->buf, r->cap);
    }
  if (n)
    memcpy (r->buf + r->len, data, n);
  r->len += n;

  size_t i = 0;
  while (r->len - i >= NEX_WIRE_HEADER_SIZE)
    {
      const uint8_t *h = r->buf + i;
      uint32_t plen = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
      int candidate = h[4] == NEX_WIRE_HELLO && h[5] == 0 && h[6] == 0 && h[7] == 0 && plen >= 2
                      && plen <= NEX_RESYNC_MAX_HELLO
                      && (r->len - i == NEX_WIRE_HEADER_SIZE || h[NEX_WIRE_HEADER_SIZE] == '{');
      if (candidate)
        {
          if (r->len - i < NEX_WIRE_HEADER_SIZE + plen)
            break; /* wait for the rest of it; what follows may hold the real one, it is kept too */
          if (is_answer (r, h + NEX_WIRE_HEADER_SIZE, plen))
            {
              *hello = (nex_wire_frame_t){
                .type = NEX_WIRE_HELLO, .channel = 0, .len = plen, .payload = h + NEX_WIRE_HEADER_SIZE
              };
              *rest = h + NEX_WIRE_HEADER_SIZE + plen;
              *rest_len = r->len - i - NEX_WIRE_HEADER_SIZE - plen;
              r->skipped += i;
              return 1;
            }
        }
      i++;
    }
  r->skipped += i;
  memmove (r->buf, r->buf + i, r->len - i);
  r->len -= i;
  return 0;
}
