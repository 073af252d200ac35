/* SPDX-License-Identifier: Apache-2.0 */
/* utf8.c — see utf8.h. */
#include "common/utf8.h"

#include <string.h>

#include "common/xalloc.h"

size_t
nex_utf8_sequence (const char *text, size_t avail)
{
  const unsigned char *s = (const unsigned char *)text;
  if (avail == 0)
    return 0;
  unsigned c = s[0];
  size_t n = 0; /* length of the sequence C starts; 0 for bytes that never start one */
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    n = 3;
  else if (c >= 0xF0 && c <= 0xF4)
    n = 4;
  if (n == 0 || n > avail)
    return 0;
  /* The second byte's range is what excludes overlong forms, surrogates and values above U+10FFFF. */
  unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
  unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t k = 2; k < n; k++)
    if ((s[k] & 0xC0) != 0x80)
      return 0;
  return n;
}

int
nex_utf8_valid (const char *text, size_t len)
{
  size_t i = 0;
  while (i < len)
    {
      if ((unsigned char)text[i] < 0x80)
        {
          i++;
          continue;
        }
      size_t n = nex_utf8_sequence (text + i, len - i);
      if (n == 0)
        return 0;
      i += n;
    }
  return 1;
}

char *
nex_utf8_sanitize (const char *text, size_t len, size_t *out_len)
{
  char *out = nex_xmalloc (len * 3 + 1); /* at worst every byte becomes a 3-byte replacement */
  size_t o = 0;
  size_t i = 0;
  while (i < len)
    {
      size_t n = nex_utf8_sequence (text + i, len - i);
      if (n > 0)
        {
          memcpy (out + o, text + i, n);
          o += n;
          i += n;
        }
      else
        {
          memcpy (out + o, NEX_UTF8_REPLACEMENT, 3);
          o += 3;
          i++;
        }
    }
  out[o] = '\0';
  *out_len = o;
  return out;
}
