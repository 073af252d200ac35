/* SPDX-License-Identifier: Apache-2.0 */
/* nats/objstore.c — see nats/objstore.h.  Reads take the metadata with a "last message by subject" request and
 * the chunks with an ordered push consumer (nats.c recreates it if a message is missed), hashing as they come. */
#include "server/nats/objstore.h"

#include <ctype.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"

#define CHUNK_WAIT_MS 5000
#define DEFAULT_CHUNK (128 * 1024)
#define DIGEST_PREFIX "SHA-256="
#define NUID_LEN 22

int
nex_objstore_bucket_valid (const char *name)
{
  if (name == NULL || *name == '\0' || strlen (name) > 200)
    return 0;
  for (const char *c = name; *c; c++)
    if (!isalnum ((unsigned char)*c) && *c != '_' && *c != '-')
      return 0;
  return 1;
}

/* Cleanups of nats.c's types, for cleanup_with: each is a no-op on NULL. */
static void
js_ctx_destroyp (jsCtx **js)
{
  jsCtx_Destroy (*js);
}

static void
msg_destroyp (natsMsg **msg)
{
  natsMsg_Destroy (*msg);
}

/* A subscription ended on the server's side too, then freed. */
static void
sub_endp (natsSubscription **sub)
{
  if (*sub)
    {
      natsSubscription_Unsubscribe (*sub);
      natsSubscription_Destroy (*sub);
    }
}

static char *
meta_subject (const char *bucket, const char *name)
{
  size_t n = strlen (name);
  size_t cap = sodium_base64_encoded_len (n, sodium_base64_VARIANT_URLSAFE);
  cleanup_free char *enc = nex_xmalloc (cap);
  sodium_bin2base64 (enc, cap, (const unsigned char *)name, n, sodium_base64_VARIANT_URLSAFE);
  return nex_xasprintf ("$O.%s.M.%s", bucket, enc);
}

static int
js_fail (nex_error_t *err, natsStatus s, jsErrCode jerr, const char *what)
{
  if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_CLOSED || s == NATS_NOT_YET_CONNECTED)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "object store: %s: NATS %s", what, natsStatus_GetText (s));
  return nex_error_set (err, NEX_ERR_SYSTEM, "object store: %s: %s (JetStream error %d)", what, natsStatus_GetText (s),
                        (int)jerr);
}

/* Decodes the digest text "SHA-256=<base64url, padded or not, or hex>" into OUT. */
static int
parse_digest (const char *text, unsigned char out[crypto_hash_sha256_BYTES])
{
  if (text == NULL || strncmp (text, DIGEST_PREFIX, strlen (DIGEST_PREFIX)) != 0)
    return -1;
  const char *v = text + strlen (DIGEST_PREFIX);
  size_t len = strlen (v), got = 0;
  if (len == 64 && sodium_hex2bin (out, 32, v, len, NULL, &got, NULL) == 0 && got == 32)
    return 0;
  static const int variants[] = { sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING,
                                  sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING };
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
    if (sodium_base642bin (out, 32, v, len, NULL, &got, NULL, variants[i]) == 0 && got == 32)
      return 0;
  return -1;
}

static int
valid_nuid (const char *s)
{
  if (s == NULL || *s == '\0' || strlen (s) > 64)
    return 0;
  for (const char *c = s; *c; c++)
    if (!isalnum ((unsigned char)*c))
      return 0;
  return 1;
}

/* Loads the metadata of NAME: 1 and *META when found, 0 when there is none (or it is deleted), -1 on error. */
static int
get_meta (jsCtx *js, const char *bucket, const char *name, json_t **meta, nex_error_t *err)
{
  cleanup_free char *stream = nex_xasprintf ("OBJ_%s", bucket);
  cleanup_free char *subject = meta_subject (bucket, name);
  cleanup_with (msg_destroyp) natsMsg *msg = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetLastMsg (&msg, js, stream, subject, NULL, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr || jerr == JSNoMessageFoundErr)
    return 0;
  if (s != NATS_OK)
    return js_fail (err, s, jerr, "read metadata");
  json_error_t jerror;
  *meta = json_loadb (natsMsg_GetData (msg) ? natsMsg_GetData (msg) : "", (size_t)natsMsg_GetDataLength (msg), 0,
                      &jerror);
  if (!json_is_object (*meta))
    {
      json_decref (*meta);
      *meta = NULL;
      return nex_error_set (err, NEX_ERR_INVALID, "object store: metadata of `%s` is not a JSON object", name);
    }
  if (json_is_true (json_object_get (*meta, "deleted")))
    {
      json_decref (*meta);
      *meta = NULL;
      return 0;
    }
  return 1;
}

int
nex_objstore_get (natsConnection *nc, const char *bucket, const char *name, uint64_t max_bytes,
                  nex_objstore_write_t write, void *sink, nex_error_t *err)
{
  if (!nex_objstore_bucket_valid (bucket))
    return nex_error_field (err, "artifact", "object store bucket names are made of A-Z a-z 0-9 _ -");
  cleanup_with (js_ctx_destroyp) jsCtx *js = NULL;
  if (natsConnection_JetStream (&js, nc, NULL) != NATS_OK)
    return nex_error_set (err, NEX_ERR_SYSTEM, "object store: no JetStream context");
  cleanup_with (sub_endp) natsSubscription *sub = NULL;
  cleanup_json json_t *meta = NULL;
  int found = get_meta (js, bucket, name, &meta, err);
  if (found < 0)
    return -1;
  if (found == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "object store: bucket `%s` has no object `%s`", bucket, name);
  json_t *jsize = json_object_get (meta, "size");
  json_t *jchunks = json_object_get (meta, "chunks");
  const char *nuid = json_string_value (json_object_get (meta, "nuid"));
  unsigned char want[crypto_hash_sha256_BYTES];
  /* The metadata comes from whoever can publish to the bucket: check it before it steers anything. */
  if (!json_is_integer (jsize) || json_integer_value (jsize) < 0 || !json_is_integer (jchunks)
      || json_integer_value (jchunks) < 0 || !valid_nuid (nuid)
      || parse_digest (json_string_value (json_object_get (meta, "digest")), want) < 0)
    return nex_error_set (err, NEX_ERR_INVALID, "object store: metadata of `%s` is malformed", name);
  uint64_t size = (uint64_t)json_integer_value (jsize);
  int64_t chunks = json_integer_value (jchunks);
  if (size > max_bytes)
    return nex_error_set (err, NEX_ERR_TOO_LARGE, "object store: `%s` is larger than %llu bytes", name,
                          (unsigned long long)max_bytes);
  crypto_hash_sha256_state sha;
  crypto_hash_sha256_init (&sha);
  uint64_t got = 0;
  int64_t got_chunks = 0;
  if (chunks > 0)
    {
      cleanup_free char *stream = nex_xasprintf ("OBJ_%s", bucket);
      cleanup_free char *subject = nex_xasprintf ("$O.%s.C.%s", bucket, nuid);
      jsSubOptions so;
      jsSubOptions_Init (&so);
      so.Stream = stream;
      so.Ordered = true;
      so.Config.DeliverPolicy = js_DeliverAll;
      jsErrCode jerr = 0;
      natsStatus s = js_SubscribeSync (&sub, js, subject, NULL, &so, &jerr);
      if (s != NATS_OK)
        return js_fail (err, s, jerr, "read chunks");
    }
  while (got_chunks < chunks)
    {
      cleanup_with (msg_destroyp) natsMsg *m = NULL;
      natsStatus s = natsSubscription_NextMsg (&m, sub, CHUNK_WAIT_MS);
      if (s != NATS_OK)
        return js_fail (err, s, 0, "read chunks");
      size_t n = (size_t)natsMsg_GetDataLength (m);
      if (n > size - got)
        return nex_error_set (err, NEX_ERR_INVALID, "object store: `%s` has more bytes than its metadata says", name);
      crypto_hash_sha256_update (&sha, (const unsigned char *)natsMsg_GetData (m), n);
      if (n > 0 && write (sink, natsMsg_GetData (m), n, err) < 0)
        return -1;
      got += n;
      got_chunks++;
    }
  unsigned char have[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final (&sha, have);
  if (got != size)
    return nex_error_set (err, NEX_ERR_INVALID, "object store: `%s` has %llu bytes, its metadata says %llu", name,
                          (unsigned long long)got, (unsigned long long)size);
  if (sodium_memcmp (have, want, sizeof want) != 0)
    return nex_error_set (err, NEX_ERR_INVALID, "object store: `%s` does not match the digest of its metadata", name);
  return 0;
}

static void
new_nuid (char out[NUID_LEN + 1])
{
  static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  for (int i = 0; i < NUID_LEN; i++)
    out[i] = digits[randombytes_uniform (sizeof digits - 1)];
  out[NUID_LEN] = '\0';
}

static int
ensure_stream (jsCtx *js, const char *bucket, nex_error_t *err)
{
  cleanup_free char *stream = nex_xasprintf ("OBJ_%s", bucket);
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = js_GetStreamInfo (&si, js, stream, NULL, &jerr);
  if (s == NATS_OK)
    {
      jsStreamInfo_Destroy (si);
      return 0;
    }
  if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
    return js_fail (err, s, jerr, "look up the bucket");
  cleanup_free char *chunks = nex_xasprintf ("$O.%s.C.>", bucket);
  cleanup_free char *metas = nex_xasprintf ("$O.%s.M.>", bucket);
  const char *subjects[] = { chunks, metas };
  jsStreamConfig cfg;
  jsStreamConfig_Init (&cfg);
  cfg.Name = stream;
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 2;
  cfg.Discard = js_DiscardNew;
  cfg.AllowRollup = true;
  cfg.AllowDirect = true;
  cfg.Replicas = 1;
  s = js_AddStream (NULL, js, &cfg, NULL, &jerr);
  if (s != NATS_OK)
    return js_fail (err, s, jerr, "create the bucket");
  return 0;
}

int
nex_objstore_put (natsConnection *nc, const char *bucket, const char *name, const void *data, size_t n, char digest[65],
                  nex_error_t *err)
{
  if (!nex_objstore_bucket_valid (bucket))
    return nex_error_field (err, "bucket", "object store bucket names are made of A-Z a-z 0-9 _ -");
  if (name == NULL || *name == '\0')
    return nex_error_field (err, "name", "object name must not be empty");
  cleanup_with (js_ctx_destroyp) jsCtx *js = NULL;
  if (natsConnection_JetStream (&js, nc, NULL) != NATS_OK)
    return nex_error_set (err, NEX_ERR_SYSTEM, "object store: no JetStream context");
  cleanup_json json_t *old = NULL;
  if (ensure_stream (js, bucket, err) < 0 || get_meta (js, bucket, name, &old, err) < 0)
    return -1;
  char nuid[NUID_LEN + 1];
  new_nuid (nuid);
  cleanup_free char *chunk_subject = nex_xasprintf ("$O.%s.C.%s", bucket, nuid);
  size_t chunk = DEFAULT_CHUNK;
  int64_t maxp = natsConnection_GetMaxPayload (nc);
  if (maxp > 0 && (size_t)maxp < chunk)
    chunk = (size_t)maxp;
  crypto_hash_sha256_state sha;
  crypto_hash_sha256_init (&sha);
  int64_t chunks = 0;
  for (size_t off = 0; off < n; off += chunk)
    {
      size_t len = n - off < chunk ? n - off : chunk;
      jsErrCode jerr = 0;
      natsStatus s = js_Publish (NULL, js, chunk_subject, (const char *)data + off, (int)len, NULL, &jerr);
      if (s != NATS_OK)
        return js_fail (err, s, jerr, "write a chunk");
      crypto_hash_sha256_update (&sha, (const unsigned char *)data + off, len);
      chunks++;
    }
  unsigned char sum[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final (&sha, sum);
  sodium_bin2hex (digest, 65, sum, sizeof sum);
  char b64[sodium_base64_ENCODED_LEN (crypto_hash_sha256_BYTES, sodium_base64_VARIANT_URLSAFE)];
  sodium_bin2base64 (b64, sizeof b64, sum, sizeof sum, sodium_base64_VARIANT_URLSAFE);
  char mtime[NEX_CLOCK_RFC3339_LEN];
  cleanup_free char *dig = nex_xasprintf (DIGEST_PREFIX "%s", b64);
  cleanup_json json_t *meta = json_pack ("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:b, s:{s:I}}", "name", name, "bucket",
                                         bucket, "nuid", nuid, "size", (json_int_t)n, "chunks", (json_int_t)chunks,
                                         "mtime", nex_clock_format (nex_clock_now_ms (), mtime, sizeof mtime), "digest",
                                         dig, "deleted", 0, "options", "max_chunk_size", (json_int_t)chunk);
  cleanup_free char *text = json_dumps (meta, JSON_COMPACT);
  cleanup_free char *subject = meta_subject (bucket, name);
  cleanup_with (msg_destroyp) natsMsg *msg = NULL;
  if (natsMsg_Create (&msg, subject, NULL, text, (int)strlen (text)) != NATS_OK
      || natsMsgHeader_Set (msg, "Nats-Rollup", "sub") != NATS_OK)
    return nex_error_set (err, NEX_ERR_SYSTEM, "object store: cannot build the metadata message");
  jsErrCode jerr = 0;
  natsStatus s = js_PublishMsg (NULL, js, msg, NULL, &jerr);
  if (s != NATS_OK)
    return js_fail (err, s, jerr, "write the metadata");
  const char *old_nuid = json_string_value (json_object_get (old, "nuid"));
  if (valid_nuid (old_nuid))
    {
      /* The new object is live; the old one's chunks are garbage now (failing to purge them loses nothing). */
      cleanup_free char *stream = nex_xasprintf ("OBJ_%s", bucket);
      cleanup_free char *old_subject = nex_xasprintf ("$O.%s.C.%s", bucket, old_nuid);
      jsOptions o;
      jsOptions_Init (&o);
      o.Stream.Purge.Subject = old_subject;
      js_PurgeStream (js, stream, &o, NULL);
    }
  return 0;
}
