/* SPDX-License-Identifier: Apache-2.0 */
/* nkeys.c — see nkeys.h.  Written from the nkeys format description (prefix byte(s), key, CRC-16/XMODEM
 * little-endian, base32 without padding); checked against nkeys.js by tests/integration/test_nats_control.py
 * (test_identity_is_an_nkey_nkeys_js_agrees_with) and against vectors by tests/unit/test-nkeys.c. */
#include "server/nats/nkeys.h"

#include <string.h>

#include <sodium.h>

#include "common/xalloc.h"

#define XKEY_VERSION "xkv1"
#define XKEY_VERSION_LEN 4

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

uint16_t
nex_nkey_crc16 (const uint8_t *p, size_t n)
{
  uint16_t crc = 0;
  for (size_t i = 0; i < n; i++)
    {
      crc ^= (uint16_t)(p[i] << 8);
      for (int b = 0; b < 8; b++)
        crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
  return crc;
}

void
nex_nkey_base32_encode (const uint8_t *in, size_t n, char *out)
{
  uint32_t acc = 0;
  int bits = 0;
  size_t j = 0;
  for (size_t i = 0; i < n; i++)
    {
      acc = (acc << 8) | in[i];
      bits += 8;
      while (bits >= 5)
        {
          out[j++] = b32_alphabet[(acc >> (bits - 5)) & 31];
          bits -= 5;
        }
    }
  if (bits > 0)
    out[j++] = b32_alphabet[(acc << (5 - bits)) & 31];
  out[j] = '\0';
}

int
nex_nkey_base32_decode (const char *text, uint8_t *out, size_t max)
{
  uint32_t acc = 0;
  int bits = 0;
  size_t j = 0;
  for (const char *c = text; *c; c++)
    {
      const char *pos = (*c != '\0') ? strchr (b32_alphabet, *c) : NULL;
      if (pos == NULL)
        return -1;
      acc = (acc << 5) | (uint32_t)(pos - b32_alphabet);
      bits += 5;
      if (bits >= 8)
        {
          if (j >= max)
            return -1;
          out[j++] = (uint8_t)(acc >> (bits - 8));
          bits -= 8;
        }
    }
  /* Leftover bits must be zero padding of the last character, never data. */
  if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0)
    return -1;
  return (int)j;
}

static void
encode_raw (const uint8_t *raw, size_t n, char *out)
{
  uint8_t buf[40];
  memcpy (buf, raw, n);
  uint16_t crc = nex_nkey_crc16 (buf, n);
  buf[n] = (uint8_t)(crc & 0xff);
  buf[n + 1] = (uint8_t)(crc >> 8);
  nex_nkey_base32_encode (buf, n + 2, out);
  sodium_memzero (buf, sizeof buf);
}

void
nex_nkey_encode_public (uint8_t prefix, const uint8_t key[32], char out[NEX_NKEY_PUBLIC_LEN + 1])
{
  uint8_t raw[33];
  raw[0] = prefix;
  memcpy (raw + 1, key, 32);
  encode_raw (raw, sizeof raw, out);
}

void
nex_nkey_encode_seed (uint8_t prefix, const uint8_t seed[32], char out[NEX_NKEY_SEED_LEN + 1])
{
  uint8_t raw[34];
  raw[0] = (uint8_t)(NEX_NKEY_SEED | (prefix >> 5));
  raw[1] = (uint8_t)((prefix & 31) << 3);
  memcpy (raw + 2, seed, 32);
  encode_raw (raw, sizeof raw, out);
  sodium_memzero (raw, sizeof raw);
}

static int
known_role (uint8_t prefix)
{
  return prefix == NEX_NKEY_SERVER || prefix == NEX_NKEY_ACCOUNT || prefix == NEX_NKEY_OPERATOR
         || prefix == NEX_NKEY_USER || prefix == NEX_NKEY_CURVE || prefix == (2 << 3) /* cluster */;
}

/* Decodes TEXT of EXPECT_LEN characters into RAW (RAW_LEN bytes with the checksum verified and removed). */
static int
decode_checked (const char *text, size_t expect_len, uint8_t *raw, size_t raw_len, nex_error_t *err)
{
  uint8_t buf[40];
  if (text == NULL || strlen (text) != expect_len)
    return nex_error_set (err, NEX_ERR_INVALID, "not an nkey: wrong length");
  int n = nex_nkey_base32_decode (text, buf, sizeof buf);
  if (n != (int)raw_len + 2)
    return nex_error_set (err, NEX_ERR_INVALID, "not an nkey: bad base32");
  uint16_t crc = (uint16_t)(buf[raw_len] | (buf[raw_len + 1] << 8));
  if (crc != nex_nkey_crc16 (buf, raw_len))
    {
      sodium_memzero (buf, sizeof buf);
      return nex_error_set (err, NEX_ERR_INVALID, "not an nkey: checksum mismatch");
    }
  memcpy (raw, buf, raw_len);
  sodium_memzero (buf, sizeof buf);
  return 0;
}

int
nex_nkey_decode_public (const char *text, uint8_t *prefix, uint8_t key[32], nex_error_t *err)
{
  uint8_t raw[33];
  if (decode_checked (text, NEX_NKEY_PUBLIC_LEN, raw, sizeof raw, err) < 0)
    return -1;
  if (!known_role (raw[0]))
    return nex_error_set (err, NEX_ERR_INVALID, "not a public nkey: unknown prefix");
  *prefix = raw[0];
  memcpy (key, raw + 1, 32);
  return 0;
}

int
nex_nkey_decode_seed (const char *text, uint8_t *prefix, uint8_t seed[32], nex_error_t *err)
{
  uint8_t raw[34];
  if (decode_checked (text, NEX_NKEY_SEED_LEN, raw, sizeof raw, err) < 0)
    return -1;
  uint8_t role = (uint8_t)(((raw[0] & 7) << 5) | ((raw[1] & 0xf8) >> 3));
  if ((raw[0] & 0xf8) != NEX_NKEY_SEED || !known_role (role))
    {
      sodium_memzero (raw, sizeof raw);
      return nex_error_set (err, NEX_ERR_INVALID, "not an nkey seed: bad prefix");
    }
  *prefix = role;
  memcpy (seed, raw + 2, 32);
  sodium_memzero (raw, sizeof raw);
  return 0;
}

void
nex_nkey_sign_from_seed (uint8_t prefix, const uint8_t seed[32], nex_nkey_sign_t *k)
{
  memcpy (k->seed, seed, 32);
  crypto_sign_seed_keypair (k->pk, k->sk, seed);
  nex_nkey_encode_public (prefix, k->pk, k->public_text);
}

void
nex_nkey_curve_from_seed (const uint8_t sk[32], nex_nkey_curve_t *k)
{
  memcpy (k->sk, sk, 32);
  crypto_scalarmult_base (k->pk, k->sk);
  nex_nkey_encode_public (NEX_NKEY_CURVE, k->pk, k->public_text);
}

int
nex_nkey_verify (const char *issuer, const uint8_t *msg, size_t n, const uint8_t sig[64], nex_error_t *err)
{
  uint8_t prefix, pk[32];
  if (nex_nkey_decode_public (issuer, &prefix, pk, err) < 0)
    return nex_error_wrap (err, "issuer");
  /* A curve key cannot sign; accepting one would treat arbitrary bytes as an ed25519 key. */
  if (prefix == NEX_NKEY_CURVE)
    return nex_error_set (err, NEX_ERR_INVALID, "issuer is a curve key, which cannot sign");
  if (crypto_sign_verify_detached (sig, msg, n, pk) != 0)
    return nex_error_set (err, NEX_ERR_INVALID, "signature does not verify");
  return 0;
}

static int
curve_public (const char *text, uint8_t pk[32], nex_error_t *err)
{
  uint8_t prefix;
  if (nex_nkey_decode_public (text, &prefix, pk, err) < 0)
    return -1;
  if (prefix != NEX_NKEY_CURVE)
    return nex_error_set (err, NEX_ERR_INVALID, "not a curve (X...) public key");
  return 0;
}

uint8_t *
nex_nkey_open (const nex_nkey_curve_t *recipient, const char *sender, const uint8_t *sealed, size_t n, size_t *len,
               nex_error_t *err)
{
  uint8_t spk[32];
  if (curve_public (sender, spk, err) < 0)
    {
      nex_error_wrap (err, "sender_public_key");
      return NULL;
    }
  size_t head = XKEY_VERSION_LEN + crypto_box_NONCEBYTES;
  if (n < head + crypto_box_MACBYTES || memcmp (sealed, XKEY_VERSION, XKEY_VERSION_LEN) != 0)
    {
      nex_error_set (err, NEX_ERR_INVALID, "sealed data is not in the xkv1 format");
      return NULL;
    }
  size_t clen = n - head;
  uint8_t *out = nex_xmalloc (clen - crypto_box_MACBYTES + 1);
  if (crypto_box_open_easy (out, sealed + head, clen, sealed + XKEY_VERSION_LEN, spk, recipient->sk) != 0)
    {
      free (out);
      nex_error_set (err, NEX_ERR_INVALID, "sealed data does not open with this node's xkey and the sender's key");
      return NULL;
    }
  *len = clen - crypto_box_MACBYTES;
  out[*len] = '\0';
  return out;
}

uint8_t *
nex_nkey_seal (const nex_nkey_curve_t *sender, const char *recipient, const uint8_t *msg, size_t n, size_t *len,
               nex_error_t *err)
{
  uint8_t rpk[32];
  if (curve_public (recipient, rpk, err) < 0)
    return NULL;
  size_t head = XKEY_VERSION_LEN + crypto_box_NONCEBYTES;
  uint8_t *out = nex_xmalloc (head + crypto_box_MACBYTES + n);
  memcpy (out, XKEY_VERSION, XKEY_VERSION_LEN);
  randombytes_buf (out + XKEY_VERSION_LEN, crypto_box_NONCEBYTES);
  if (crypto_box_easy (out + head, msg, n, out + XKEY_VERSION_LEN, rpk, sender->sk) != 0)
    {
      free (out);
      nex_error_set (err, NEX_ERR_INVALID, "cannot seal to `%s`", recipient);
      return NULL;
    }
  *len = head + crypto_box_MACBYTES + n;
  return out;
}
