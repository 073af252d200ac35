/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-nkeys.c — feeds hostile bytes to NATS trust parsing: nkey text (server/nats/nkeys.c: base32, checksums,
 * roles, seeds), xkv1 sealed boxes (nex_nkey_open), and workload JWTs (nex_secure_jwt_verify,
 * server/nats/secure.c).  The first input byte picks what the rest is:
 *
 *   0  nkey text: decoded as a public key, a seed and raw base32, and as the issuer of a signature check;
 *   1  a sealed box to the harness's xkey from a fixed sender (opened), and a message sealed and opened again;
 *   2  a JWT as text;
 *   3  a JWT's header and claims (JSON, split at the first newline) that the harness signs with its own issuer
 *      key, so the checks after the signature (issuer, expiry, jti) are reached; "@ISS@" in the claims becomes
 *      that issuer's public key.  Half of these run on a node whose valid_issuers lists it among others.
 *
 * Invariants: refusals are NEX_ERR_INVALID; what decodes encodes to a key that decodes to the same bytes; a box
 * opens only to its own message; an accepted JWT's claims are an object with an issuer and a jti. */
#include <string.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/config.h"
#include "server/nats/nkeys.h"
#include "server/nats/secure.h"
#include "server/node.h"
#include "tests/fuzz/fuzz.h"

static nex_nkey_curve_t recipient, sender;
static nex_nkey_sign_t issuer;

static void
fuzz_keys_init (void)
{
  static int done;
  if (done)
    return;
  fuzz_check (sodium_init () >= 0, "libsodium starts");
  uint8_t seed[32];
  for (int i = 0; i < 32; i++)
    seed[i] = (uint8_t)(i + 1);
  nex_nkey_curve_from_seed (seed, &recipient);
  seed[0] = 0x80;
  nex_nkey_curve_from_seed (seed, &sender);
  nex_nkey_sign_from_seed (NEX_NKEY_ACCOUNT, seed, &issuer);
  done = 1;
}

static void
fuzz_text (const char *text)
{
  uint8_t prefix, key[32], raw[256];
  cleanup_error nex_error_t err = NULL;
  if (nex_nkey_decode_public (text, &prefix, key, &err) == 0)
    {
      char again[NEX_NKEY_PUBLIC_LEN + 1];
      uint8_t prefix2, key2[32];
      nex_nkey_encode_public (prefix, key, again);
      fuzz_check (nex_nkey_decode_public (again, &prefix2, key2, NULL) == 0 && prefix2 == prefix
                      && memcmp (key, key2, 32) == 0,
                  "a decoded public key encodes to one that decodes the same");
    }
  else
    fuzz_check (err && err->kind == NEX_ERR_INVALID, "a bad public key is NEX_ERR_INVALID");
  nex_error_free (&err);
  if (nex_nkey_decode_seed (text, &prefix, key, &err) == 0)
    {
      char again[NEX_NKEY_SEED_LEN + 1];
      uint8_t prefix2, key2[32];
      nex_nkey_encode_seed (prefix, key, again);
      fuzz_check (nex_nkey_decode_seed (again, &prefix2, key2, NULL) == 0 && prefix2 == prefix
                      && memcmp (key, key2, 32) == 0,
                  "a decoded seed encodes to one that decodes the same");
    }
  nex_error_free (&err);
  int n = nex_nkey_base32_decode (text, raw, sizeof raw);
  fuzz_check (n >= -1 && n <= (int)sizeof raw, "base32 decodes within its output");
  uint8_t sig[64] = { 0 };
  fuzz_check (nex_nkey_verify (text, (const uint8_t *)"msg", 3, sig, NULL) < 0, "a zero signature never verifies");
}

static void
fuzz_box (const uint8_t *data, size_t size)
{
  size_t len = 0;
  cleanup_error nex_error_t err = NULL;
  uint8_t *clear = nex_nkey_open (&recipient, sender.public_text, data, size, &len, &err);
  if (clear)
    {
      sodium_memzero (clear, len);
      free (clear);
    }
  else
    fuzz_check (err && err->kind == NEX_ERR_INVALID, "a box that does not open is NEX_ERR_INVALID");
  size_t sealed_len = 0;
  cleanup_free uint8_t *sealed = nex_nkey_seal (&sender, recipient.public_text, data, size, &sealed_len, NULL);
  fuzz_check (sealed != NULL, "a message seals to a valid xkey");
  cleanup_free uint8_t *opened = nex_nkey_open (&recipient, sender.public_text, sealed, sealed_len, &len, NULL);
  fuzz_check (opened && len == size && memcmp (opened, data, size) == 0, "a sealed message opens to itself");
  if (sealed_len > 0)
    {
      sealed[sealed_len - 1] ^= 1;
      cleanup_free uint8_t *tampered = nex_nkey_open (&recipient, sender.public_text, sealed, sealed_len, &len, NULL);
      fuzz_check (tampered == NULL, "a tampered box does not open");
    }
}

static void
fuzz_jwt (const char *jwt, const char *valid_issuers)
{
  nex_config_t cfg;
  memset (&cfg, 0, sizeof cfg);
  cfg.valid_issuers = (char *)valid_issuers;
  nex_node_t node;
  memset (&node, 0, sizeof node);
  node.cfg = &cfg;
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *claims = nex_secure_jwt_verify (&node, jwt, &err);
  if (claims == NULL)
    {
      fuzz_check (err && err->kind == NEX_ERR_INVALID, "a refused JWT is NEX_ERR_INVALID");
      return;
    }
  fuzz_check (json_is_object (claims) && json_string_value (json_object_get (claims, "iss"))
                  && json_string_value (json_object_get (claims, "jti")),
              "accepted claims name an issuer and a jti");
}

static char *
fuzz_b64 (const void *data, size_t n)
{
  size_t cap = sodium_base64_ENCODED_LEN (n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  char *out = nex_xmalloc (cap);
  sodium_bin2base64 (out, cap, data, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  return out;
}

/* TEXT is "header\nclaims": signed here as issuer's JWT. */
static void
fuzz_signed_jwt (const char *text, int listed)
{
  const char *nl = strchr (text, '\n');
  if (nl == NULL)
    return;
  cleanup_free char *header = fuzz_b64 (text, (size_t)(nl - text));
  /* "@ISS@" in the claims becomes the issuer's public key. */
  cleanup_free char *claims_text = nex_xmalloc (strlen (nl + 1) * (NEX_NKEY_PUBLIC_LEN + 1) + 1);
  char *o = claims_text;
  for (const char *p = nl + 1; *p;)
    {
      if (strncmp (p, "@ISS@", 5) == 0)
        {
          memcpy (o, issuer.public_text, NEX_NKEY_PUBLIC_LEN);
          o += NEX_NKEY_PUBLIC_LEN;
          p += 5;
        }
      else
        *o++ = *p++;
    }
  *o = '\0';
  cleanup_free char *claims = fuzz_b64 (claims_text, strlen (claims_text));
  cleanup_free char *signing = nex_xasprintf ("%s.%s", header, claims);
  uint8_t sig[crypto_sign_BYTES];
  crypto_sign_detached (sig, NULL, (const uint8_t *)signing, strlen (signing), issuer.sk);
  cleanup_free char *sig_text = fuzz_b64 (sig, sizeof sig);
  cleanup_free char *jwt = nex_xasprintf ("%s.%s", signing, sig_text);
  cleanup_free char *issuers = nex_xasprintf ("UAAA, %s,%s", sender.public_text, issuer.public_text);
  fuzz_jwt (jwt, listed ? issuers : NULL);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_keys_init ();
  if (size == 0)
    return 0;
  int mode = data[0] & 3;
  cleanup_free char *text = nex_xstrndup ((const char *)data + 1, size - 1); /* up to the first NUL */
  switch (mode)
    {
    case 0:
      fuzz_text (text);
      break;
    case 1:
      fuzz_box (data + 1, size - 1);
      break;
    case 2:
      fuzz_jwt (text, NULL);
      break;
    default:
      fuzz_signed_jwt (text, data[0] & 4);
    }
  return 0;
}
