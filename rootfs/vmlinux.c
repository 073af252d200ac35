/* SPDX-License-Identifier: Apache-2.0 */
/* vmlinux.c — bzImage payload extraction and an LZ4 block decoder (see vmlinux.h).
 *
 * The LZ4 legacy frame, as the kernel's build writes it: the magic 02 21 4C 18, then blocks, each a 32-bit
 * little-endian compressed size followed by that many bytes of one LZ4 block that decodes to at most 8 MiB.  The
 * kernel's build appends the uncompressed size (32-bit little-endian) after the last block, so the frame ends
 * 4 bytes before the payload does.  A repeated magic in place of a block size starts a new frame. */
#include "rootfs/vmlinux.h"

#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

#define SETUP_SECTS_AT 0x1f1
#define HEADER_MAGIC_AT 0x202 /* "HdrS" */
#define VERSION_AT 0x206
#define PAYLOAD_OFFSET_AT 0x248
#define PAYLOAD_LENGTH_AT 0x24c
#define LZ4_LEGACY_MAGIC 0x184C2102u
#define LZ4_LEGACY_BLOCK_MAX (8u << 20)

static uint32_t
le32 (const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t
le16 (const uint8_t *p)
{
  return (uint16_t)(p[0] | p[1] << 8);
}

long
nex_lz4_block_decode (const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap)
{
  size_t s = 0, d = 0;
  while (s < src_len)
    {
      unsigned token = src[s++];
      size_t lit = token >> 4;
      if (lit == 15)
        for (;;)
          {
            if (s >= src_len)
              return -1;
            unsigned b = src[s++];
            lit += b;
            if (b != 255)
              break;
          }
      if (lit > src_len - s || lit > dst_cap - d)
        return -1;
      memcpy (dst + d, src + s, lit);
      s += lit;
      d += lit;
      if (s == src_len)
        break; /* the last sequence has literals only */
      if (src_len - s < 2)
        return -1;
      size_t offset = le16 (src + s);
      s += 2;
      if (offset == 0 || offset > d)
        return -1;
      size_t match = (token & 15) + 4;
      if ((token & 15) == 15)
        for (;;)
          {
            if (s >= src_len)
              return -1;
            unsigned b = src[s++];
            match += b;
            if (b != 255)
              break;
          }
      if (match > dst_cap - d)
        return -1;
      /* Byte by byte: a match may overlap the bytes it produces (offset < length repeats a pattern). */
      for (size_t i = 0; i < match; i++, d++)
        dst[d] = dst[d - offset];
    }
  return (long)d;
}

static uint8_t *
lz4_legacy_decode (const uint8_t *p, size_t len, size_t *out_len, nex_error_t *err)
{
  size_t cap = 64u << 20, used = 0, at = 4;
  uint8_t *out = nex_xmalloc (cap);
  /* Stop at the 4-byte size trailer (or anything shorter than a block header). */
  while (len - at > 4)
    {
      uint32_t n = le32 (p + at);
      if (n == LZ4_LEGACY_MAGIC)
        {
          at += 4;
          continue;
        }
      at += 4;
      if (n > len - at)
        {
          free (out);
          nex_error_set (err, NEX_ERR_INVALID, "corrupt LZ4 data: a block at byte %zu runs past the payload", at);
          return NULL;
        }
      while (cap - used < LZ4_LEGACY_BLOCK_MAX)
        {
          if (cap >= NEX_VMLINUX_MAX_BYTES)
            {
              free (out);
              nex_error_set (err, NEX_ERR_INVALID, "the kernel decompresses to more than %u MiB",
                             NEX_VMLINUX_MAX_BYTES >> 20);
              return NULL;
            }
          cap *= 2;
          out = nex_xrealloc (out, cap);
        }
      long got = nex_lz4_block_decode (p + at, n, out + used, LZ4_LEGACY_BLOCK_MAX);
      if (got < 0)
        {
          free (out);
          nex_error_set (err, NEX_ERR_INVALID, "corrupt LZ4 data in the block at byte %zu", at);
          return NULL;
        }
      used += (size_t)got;
      at += n;
    }
  *out_len = used;
  return out;
}

/* The name of the compression whose magic starts P (N bytes), or NULL. */
static const char *
compression_name (const uint8_t *p, size_t n)
{
  static const struct
  {
    const char *name;
    const char *magic;
    size_t len;
  } kinds[] = {
    { "gzip", "\x1f\x8b", 2 },
    { "xz",
      "\xfd"
      "7zXZ\x00",
      6 },
    { "bzip2", "BZh", 3 },
    { "lzma", "\x5d\x00\x00", 3 },
    { "lzo", "\x89LZO", 4 },
    { "zstd", "\x28\xb5\x2f\xfd", 4 },
    { "lz4", "\x02\x21\x4c\x18", 4 },
    { "none",
      "\x7f"
      "ELF",
      4 },
  };
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (n >= kinds[i].len && memcmp (p, kinds[i].magic, kinds[i].len) == 0)
      return kinds[i].name;
  return NULL;
}

uint8_t *
nex_vmlinux_extract (const uint8_t *bz, size_t len, size_t *out_len, nex_error_t *err)
{
  if (len < PAYLOAD_LENGTH_AT + 4 || memcmp (bz + HEADER_MAGIC_AT, "HdrS", 4) != 0)
    {
      nex_error_set (err, NEX_ERR_INVALID, "not a bzImage (no HdrS setup header)");
      return NULL;
    }
  unsigned version = le16 (bz + VERSION_AT);
  if (version < 0x208)
    {
      nex_error_set (err, NEX_ERR_INVALID, "boot protocol %u.%02u is too old to locate the payload (2.08 needed)",
                     version >> 8, version & 0xff);
      return NULL;
    }
  size_t setup_sects = bz[SETUP_SECTS_AT] ? bz[SETUP_SECTS_AT] : 4;
  size_t start = (setup_sects + 1) * 512 + le32 (bz + PAYLOAD_OFFSET_AT);
  size_t plen = le32 (bz + PAYLOAD_LENGTH_AT);
  if (start > len || plen > len - start || plen < 8)
    {
      nex_error_set (err, NEX_ERR_INVALID, "the bzImage's payload (%zu bytes at %zu) lies outside the file", plen,
                     start);
      return NULL;
    }
  const uint8_t *p = bz + start;
  const char *kind = compression_name (p, plen);
  uint8_t *out = NULL;
  if (kind == NULL)
    nex_error_set (err, NEX_ERR_INVALID, "the bzImage's payload has an unknown compression");
  else if (strcmp (kind, "lz4") == 0)
    out = lz4_legacy_decode (p, plen, out_len, err);
  else if (strcmp (kind, "none") == 0)
    {
      out = nex_xmalloc (plen);
      memcpy (out, p, plen);
      *out_len = plen;
    }
  else
    nex_error_set (err, NEX_ERR_INVALID,
                   "the kernel is compressed with %s, which is not supported (LZ4, as Debian's kernels use, is)", kind);
  if (out
      && (*out_len < 4
          || memcmp (out,
                     "\x7f"
                     "ELF",
                     4)
                 != 0))
    {
      free (out);
      nex_error_set (err, NEX_ERR_INVALID, "the decompressed kernel is not an ELF file");
      return NULL;
    }
  return out;
}
