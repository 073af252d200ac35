/* SPDX-License-Identifier: Apache-2.0 */
/* utf8.c — see utf8.h. */
#include "common/utf8.h"

#include <string.h>

#include "common/xalloc.h"

char *
nex_utf8_sanitize (const char *text, size_t len, size_t *out_len)
{
  static const char replacement[] = "\xEF\xBF\xBD";
  const unsigned char *s = (const unsigned char *)text;
  char *out = nex_xmalloc (len * 3 + 1); /* at worst every byte becomes a 3-byte replacement */
  size_t o = 0;
  size_t i = 0;
  while (i < len)
    {
      unsigned c = s[i];
      size_t n = 0; /* length of the sequence C starts; 0 for bytes that never start one */
      if (c < 0x80)
        n = 1;
      else if (c >= 0xC2 && c <= 0xDF)
        n = 2;
      else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
      else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
      /* The second byte's range is what excludes overlong forms, surrogates and values above U+10FFFF. */
      unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
      unsigned hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
      int ok = n > 0 && n <= len - i;
      for (size_t k = 1; ok && k < n; k++)
        ok = k == 1 ? s[i + k] >= lo && s[i + k] <= hi : (s[i + k] & 0xC0) == 0x80;
      if (ok)
        {
          memcpy (out + o, s + i, n);
          o += n;
          i += n;
        }
      else
        {
          memcpy (out + o, replacement, 3);
          o += 3;
          i++;
        }
    }
  out[o] = '\0';
  *out_len = o;
  return out;
}
