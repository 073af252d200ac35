/* SPDX-License-Identifier: Apache-2.0 */
/* nkeys.h — NATS nkeys: the text form of ed25519 and curve25519 keys that NATS, nex and their clients use.
 *
 * An nkey is base32 (RFC 4648 alphabet, no padding) of: a prefix byte naming the key's role (its first letter
 * when encoded: N server, A account, O operator, U user, X curve), the 32 key bytes, and a CRC-16/XMODEM of
 * both, little-endian.  A seed carries two prefix bytes instead: 'S' (18 << 3) with the role's top bits, then
 * the role's low bits, so that seeds read "SN...", "SA...", "SX...".  The key bytes of an ed25519 seed are the
 * 32-byte libsodium seed; those of a curve seed are the curve25519 private key itself.
 *
 * The node's identity is a server nkey (its public key is the node id) and a curve "xkey" to which clients seal
 * environments.  Sealed data uses nkeys' xkey format: "xkv1", a 24-byte nonce, then libsodium's crypto_box_easy
 * output (the same bytes as NaCl's box).
 *
 * Everything here works on memory only and is safe from any thread once sodium_init has succeeded. */
#ifndef NEX_NKEYS_H
#define NEX_NKEYS_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Prefix bytes (the first byte before base32). */
#define NEX_NKEY_SEED (18 << 3)     /* 'S' */
#define NEX_NKEY_SERVER (13 << 3)   /* 'N' */
#define NEX_NKEY_ACCOUNT (0)        /* 'A' */
#define NEX_NKEY_OPERATOR (14 << 3) /* 'O' */
#define NEX_NKEY_USER (20 << 3)     /* 'U' */
#define NEX_NKEY_CURVE (23 << 3)    /* 'X' */

#define NEX_NKEY_PUBLIC_LEN 56 /* characters of a public key */
#define NEX_NKEY_SEED_LEN 58   /* characters of a seed */

/* CRC-16/XMODEM (polynomial 0x1021, initial value 0) of N bytes at P. */
uint16_t nex_nkey_crc16 (const uint8_t *p, size_t n);

/* Base32 (RFC 4648 alphabet, no padding) of N bytes into OUT, which must hold (N * 8 + 4) / 5 + 1 bytes;
 * NUL-terminated. */
void nex_nkey_base32_encode (const uint8_t *in, size_t n, char *out);

/* Decodes base32 TEXT into OUT (at most MAX bytes); returns the byte count or -1 for a bad character, padding
 * or length. */
int nex_nkey_base32_decode (const char *text, uint8_t *out, size_t max);

/* Encodes the 32-byte public KEY with role PREFIX into OUT (NEX_NKEY_PUBLIC_LEN + 1 bytes). */
void nex_nkey_encode_public (uint8_t prefix, const uint8_t key[32], char out[NEX_NKEY_PUBLIC_LEN + 1]);

/* Encodes the 32-byte SEED of role PREFIX into OUT (NEX_NKEY_SEED_LEN + 1 bytes). */
void nex_nkey_encode_seed (uint8_t prefix, const uint8_t seed[32], char out[NEX_NKEY_SEED_LEN + 1]);

/* Decodes public nkey TEXT into KEY and *PREFIX.  -1 with NEX_ERR_INVALID when it is not a well-formed public
 * nkey (length, alphabet, checksum, unknown role). */
int nex_nkey_decode_public (const char *text, uint8_t *prefix, uint8_t key[32], nex_error_t *err);

/* Decodes seed TEXT into SEED and the role *PREFIX.  -1 with NEX_ERR_INVALID when malformed. */
int nex_nkey_decode_seed (const char *text, uint8_t *prefix, uint8_t seed[32], nex_error_t *err);

/* An ed25519 signing key derived from its seed. */
typedef struct nex_nkey_sign
{
  uint8_t seed[32];
  uint8_t pk[32];
  uint8_t sk[64];
  char public_text[NEX_NKEY_PUBLIC_LEN + 1];
} nex_nkey_sign_t;

/* A curve25519 key (an "xkey"). */
typedef struct nex_nkey_curve
{
  uint8_t sk[32];
  uint8_t pk[32];
  char public_text[NEX_NKEY_PUBLIC_LEN + 1];
} nex_nkey_curve_t;

/* Derives K from SEED with role PREFIX (a signing role such as NEX_NKEY_SERVER). */
void nex_nkey_sign_from_seed (uint8_t prefix, const uint8_t seed[32], nex_nkey_sign_t *k);

/* Derives K from the curve private key SK. */
void nex_nkey_curve_from_seed (const uint8_t sk[32], nex_nkey_curve_t *k);

/* Verifies the ed25519 signature SIG (64 bytes) of N bytes at MSG by public nkey ISSUER (any signing role).
 * 0 when it verifies; -1 with NEX_ERR_INVALID otherwise. */
int nex_nkey_verify (const char *issuer, const uint8_t *msg, size_t n, const uint8_t sig[64], nex_error_t *err);

/* Opens SEALED (N bytes in the xkv1 format) sent by public xkey SENDER to RECIPIENT.  Returns a new
 * NUL-terminated buffer (*LEN bytes before the NUL) that the caller must wipe (sodium_memzero) and free, or NULL
 * with NEX_ERR_INVALID when the format is wrong or the box does not open (wrong keys, tampered bytes). */
uint8_t *nex_nkey_open (const nex_nkey_curve_t *recipient, const char *sender, const uint8_t *sealed, size_t n,
                        size_t *len, nex_error_t *err);

/* Seals N bytes at MSG from SENDER to the public xkey RECIPIENT (the inverse of nex_nkey_open).  New buffer of
 * *LEN bytes, or NULL with NEX_ERR_INVALID for a bad recipient key. */
uint8_t *nex_nkey_seal (const nex_nkey_curve_t *sender, const char *recipient, const uint8_t *msg, size_t n,
                        size_t *len, nex_error_t *err);

#endif
