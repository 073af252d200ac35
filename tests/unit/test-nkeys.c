/* SPDX-License-Identifier: Apache-2.0 */
/* test-nkeys.c — unit tests of server/nats/nkeys.c: CRC-16/XMODEM, base32, nkey and seed encoding against vectors
 * made by nkeys.js (the JavaScript nkeys library), signatures, xkey sealing, and refusal of malformed keys. */
#include <string.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "server/nats/nkeys.h"
#include "tests/unit/tap.h"

/* Made with nkeys.js 1.1: createServer(), createAccount() and sign("nex"), createCurve(). */
#define SERVER_SEED "SNAANX4YDQ7SSBHYQJTRRKNZ6IEEW7PU64DIGQF6ZCMRRBOCHDD6JEIMCM"
#define SERVER_PUB "NA5LN7UTDVIJE3E6UZ36ZYURFEKYXDS24DKLPEOXX74GCOYTO3YEIEPU"
#define ACCOUNT_SEED "SAAGJQYOHHVJHNM6PMNJXG26KTRDMPM7EJTDY6NVBKGHO4MDMS5VXRWNQQ"
#define ACCOUNT_PUB "ADLC3DI2HRPVDZPM2IKDPXCI2CJ4KHWYRA27AC2E722KSJFMOGX2QZYX"
#define ACCOUNT_SIG_NEX                                                                                                \
  "af90e4d589fc51188ae0b23860aa0729b0e44b0141fffe43ee4cba75242e443d830bc291f9b3c8005831f608978cbfe450be58517a117f1"    \
  "5d6fd80c636e4b202"
#define CURVE_SEED "SXAPGSN7WVNIBJ4QGCLNLAHLYIWXTMLD3OXA5SU7BACJT4NXBYO2V5LRVU"
#define CURVE_PUB "XDG6THRPEIHIIGPLIXAL3H3ZW624Z6JNEBT2FQPMZWO32PC2XGGUYM6J"

static void
test_primitives (void)
{
  TAP_OK (nex_nkey_crc16 ((const uint8_t *)"123456789", 9) == 0x31c3, "crc16/xmodem check value");
  char out[16];
  nex_nkey_base32_encode ((const uint8_t *)"foobar", 6, out);
  TAP_OK (strcmp (out, "MZXW6YTBOI") == 0, "base32 of foobar (RFC 4648, unpadded): %s", out);
  uint8_t back[8];
  TAP_OK (nex_nkey_base32_decode ("MZXW6YTBOI", back, sizeof back) == 6 && memcmp (back, "foobar", 6) == 0,
          "base32 decodes back");
  TAP_OK (nex_nkey_base32_decode ("MZXW6YTB0I", back, sizeof back) < 0, "base32 refuses '0'");
  TAP_OK (nex_nkey_base32_decode ("MZXW6YTBOJ", back, sizeof back) < 0, "base32 refuses non-zero pad bits");
}

static void
test_vectors (void)
{
  uint8_t seed[32], prefix = 0;
  nex_error_t err = NULL;
  TAP_OK (nex_nkey_decode_seed (SERVER_SEED, &prefix, seed, &err) == 0 && prefix == NEX_NKEY_SERVER,
          "server seed decodes with role N");
  nex_nkey_sign_t k;
  nex_nkey_sign_from_seed (prefix, seed, &k);
  TAP_OK (strcmp (k.public_text, SERVER_PUB) == 0, "server public key as nkeys.js: %s", k.public_text);
  char again[NEX_NKEY_SEED_LEN + 1];
  nex_nkey_encode_seed (NEX_NKEY_SERVER, seed, again);
  TAP_OK (strcmp (again, SERVER_SEED) == 0, "seed re-encodes identically");

  TAP_OK (nex_nkey_decode_seed (ACCOUNT_SEED, &prefix, seed, &err) == 0 && prefix == NEX_NKEY_ACCOUNT,
          "account seed decodes with role A");
  nex_nkey_sign_from_seed (prefix, seed, &k);
  TAP_OK (strcmp (k.public_text, ACCOUNT_PUB) == 0, "account public key as nkeys.js");
  uint8_t sig[64];
  size_t got = 0;
  sodium_hex2bin (sig, sizeof sig, ACCOUNT_SIG_NEX, strlen (ACCOUNT_SIG_NEX), NULL, &got, NULL);
  TAP_OK (got == 64 && nex_nkey_verify (ACCOUNT_PUB, (const uint8_t *)"nex", 3, sig, &err) == 0,
          "nkeys.js signature verifies");
  TAP_OK (nex_nkey_verify (ACCOUNT_PUB, (const uint8_t *)"nex!", 4, sig, &err) < 0, "other message: refused");
  nex_error_free (&err);
  TAP_OK (nex_nkey_verify (SERVER_PUB, (const uint8_t *)"nex", 3, sig, &err) < 0, "other key: refused");
  nex_error_free (&err);

  TAP_OK (nex_nkey_decode_seed (CURVE_SEED, &prefix, seed, &err) == 0 && prefix == NEX_NKEY_CURVE,
          "curve seed decodes with role X");
  nex_nkey_curve_t x;
  nex_nkey_curve_from_seed (seed, &x);
  TAP_OK (strcmp (x.public_text, CURVE_PUB) == 0, "curve public key as nkeys.js");
}

static void
test_malformed (void)
{
  uint8_t key[32], prefix;
  nex_error_t err = NULL;
  char bad[] = SERVER_PUB;
  bad[10] = bad[10] == 'A' ? 'B' : 'A';
  TAP_OK (nex_nkey_decode_public (bad, &prefix, key, &err) < 0 && strstr (err->msg, "checksum"),
          "one changed character: checksum refuses it");
  nex_error_free (&err);
  TAP_OK (nex_nkey_decode_public ("NABC", &prefix, key, &err) < 0, "short key refused");
  nex_error_free (&err);
  TAP_OK (nex_nkey_decode_public (SERVER_SEED, &prefix, key, &err) < 0, "a seed is not a public key");
  nex_error_free (&err);
  TAP_OK (nex_nkey_decode_seed (SERVER_PUB, &prefix, key, &err) < 0, "a public key is not a seed");
  nex_error_free (&err);
  uint8_t zero_sig[64] = { 0 };
  TAP_OK (nex_nkey_verify (CURVE_PUB, (const uint8_t *)"x", 1, zero_sig, &err) < 0 && strstr (err->msg, "curve"),
          "a curve key cannot sign");
  nex_error_free (&err);
}

static void
test_seal (void)
{
  nex_error_t err = NULL;
  uint8_t s1[32], s2[32], s3[32];
  randombytes_buf (s1, sizeof s1);
  randombytes_buf (s2, sizeof s2);
  randombytes_buf (s3, sizeof s3);
  nex_nkey_curve_t a, b, c;
  nex_nkey_curve_from_seed (s1, &a);
  nex_nkey_curve_from_seed (s2, &b);
  nex_nkey_curve_from_seed (s3, &c);
  size_t n = 0, m = 0;
  cleanup_free uint8_t *box = nex_nkey_seal (&a, b.public_text, (const uint8_t *)"{\"K\":\"v\"}", 9, &n, &err);
  TAP_OK (box && n == 4 + 24 + 16 + 9 && memcmp (box, "xkv1", 4) == 0, "sealed in the xkv1 format");
  cleanup_free uint8_t *open = nex_nkey_open (&b, a.public_text, box, n, &m, &err);
  TAP_OK (open && m == 9 && memcmp (open, "{\"K\":\"v\"}", 9) == 0, "recipient opens it");
  box[n - 1] ^= 1;
  TAP_OK (nex_nkey_open (&b, a.public_text, box, n, &m, &err) == NULL, "tampered box refused");
  nex_error_free (&err);
  box[n - 1] ^= 1;
  TAP_OK (nex_nkey_open (&c, a.public_text, box, n, &m, &err) == NULL, "another recipient cannot open");
  nex_error_free (&err);
  TAP_OK (nex_nkey_open (&b, c.public_text, box, n, &m, &err) == NULL, "wrong sender key: refused");
  nex_error_free (&err);
  TAP_OK (nex_nkey_open (&b, a.public_text, box, 20, &m, &err) == NULL, "truncated box refused");
  nex_error_free (&err);
  TAP_OK (nex_nkey_open (&b, SERVER_PUB, box, n, &m, &err) == NULL, "sender must be a curve key");
  nex_error_free (&err);
}

int
main (void)
{
  if (sodium_init () < 0)
    return 1;
  test_primitives ();
  test_vectors ();
  test_malformed ();
  test_seal ();
  return tap_done ();
}
