/* SPDX-License-Identifier: Apache-2.0 */
/* secure.c — see secure.h. */
#include "server/nats/secure.h"

#include <ctype.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/nats/nkeys.h"

#define JWT_MAX_BYTES 16384
#define SEALED_MAX_BYTES (256 * 1024)

/* Decodes base64 TEXT (URL-safe or standard, padded or not) into a new buffer; NULL when it is not base64. */
static uint8_t *
b64_decode (const char *text, size_t *len)
{
  size_t n = strlen (text);
  uint8_t *out = nex_xmalloc (n + 1);
  static const int variants[] = { sodium_base64_VARIANT_URLSAFE_NO_PADDING, sodium_base64_VARIANT_URLSAFE,
                                  sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING };
  for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
    if (sodium_base642bin (out, n + 1, text, n, NULL, len, NULL, variants[i]) == 0)
      return out;
  free (out);
  return NULL;
}

/* Decodes one base64url part of a JWT as a JSON object. */
static json_t *
jwt_part (const char *part, size_t n)
{
  cleanup_free char *copy = nex_xstrndup (part, n);
  size_t len = 0;
  cleanup_free uint8_t *raw = b64_decode (copy, &len);
  if (raw == NULL)
    return NULL;
  json_t *j = json_loadb ((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object (j))
    {
      json_decref (j);
      return NULL;
    }
  return j;
}

static int
issuer_allowed (const nex_node_t *node, const char *iss)
{
  const char *list = node->cfg->valid_issuers;
  if (list == NULL || *list == '\0')
    return 1;
  size_t n = strlen (iss);
  for (const char *p = list; *p;)
    {
      while (*p == ',' || *p == ' ')
        p++;
      const char *end = p;
      while (*end && *end != ',' && *end != ' ')
        end++;
      if ((size_t)(end - p) == n && strncmp (p, iss, n) == 0)
        return 1;
      p = end;
    }
  return 0;
}

json_t *
nex_secure_jwt_verify (nex_node_t *node, const char *jwt, nex_error_t *err)
{
  if (jwt == NULL || strlen (jwt) > JWT_MAX_BYTES)
    {
      nex_error_field (err, "workload_jwt", "must be a JWT of at most %d bytes", JWT_MAX_BYTES);
      return NULL;
    }
  const char *dot1 = strchr (jwt, '.');
  const char *dot2 = dot1 ? strchr (dot1 + 1, '.') : NULL;
  if (dot2 == NULL || strchr (dot2 + 1, '.') != NULL)
    {
      nex_error_field (err, "workload_jwt", "is not a JWT (three base64url parts separated by dots)");
      return NULL;
    }
  cleanup_json json_t *header = jwt_part (jwt, (size_t)(dot1 - jwt));
  cleanup_json json_t *claims = jwt_part (dot1 + 1, (size_t)(dot2 - dot1 - 1));
  if (header == NULL || claims == NULL)
    {
      nex_error_field (err, "workload_jwt", "header or claims are not base64url JSON objects");
      return NULL;
    }
  /* Only the one algorithm: trusting the header's choice is how "alg: none" attacks work. */
  const char *alg = json_string_value (json_object_get (header, "alg"));
  if (alg == NULL || (strcmp (alg, "ed25519-nkey") != 0 && strcmp (alg, "ed25519") != 0))
    {
      nex_error_field (err, "workload_jwt", "algorithm must be ed25519-nkey");
      return NULL;
    }
  const char *iss = json_string_value (json_object_get (claims, "iss"));
  if (iss == NULL)
    {
      nex_error_field (err, "workload_jwt", "claims name no issuer (iss)");
      return NULL;
    }
  size_t siglen = 0;
  cleanup_free uint8_t *sig = b64_decode (dot2 + 1, &siglen);
  if (sig == NULL || siglen != crypto_sign_BYTES)
    {
      nex_error_field (err, "workload_jwt", "signature is not 64 base64url-encoded bytes");
      return NULL;
    }
  nex_error_t verr = NULL;
  if (nex_nkey_verify (iss, (const uint8_t *)jwt, (size_t)(dot2 - jwt), sig, &verr) < 0)
    {
      nex_error_field (err, "workload_jwt", "signature check failed: %s", verr->msg);
      nex_error_free (&verr);
      return NULL;
    }
  if (!issuer_allowed (node, iss))
    {
      nex_error_field (err, "workload_jwt", "issuer %s is not one of this node's valid issuers", iss);
      return NULL;
    }
  time_t now = time (NULL);
  json_t *exp = json_object_get (claims, "exp");
  json_t *nbf = json_object_get (claims, "nbf");
  if (json_is_integer (exp) && json_integer_value (exp) > 0 && json_integer_value (exp) <= now)
    {
      nex_error_field (err, "workload_jwt", "has expired");
      return NULL;
    }
  if (json_is_integer (nbf) && json_integer_value (nbf) > now)
    {
      nex_error_field (err, "workload_jwt", "is not valid yet (nbf)");
      return NULL;
    }
  const char *jti = json_string_value (json_object_get (claims, "jti"));
  if (jti == NULL || *jti == '\0' || strlen (jti) > 256)
    {
      /* Without an id a JWT cannot be told from its replay. */
      nex_error_field (err, "workload_jwt", "claims carry no jti");
      return NULL;
    }
  return NEX_STEAL_PTR (claims);
}

/* The artifact hash the claims vouch for, lower-cased into OUT; -1 when absent or malformed. */
static int
claims_hash (json_t *claims, char out[65])
{
  const char *h = json_string_value (json_object_get (json_object_get (claims, "nats"), "hash"));
  if (h == NULL)
    h = json_string_value (json_object_get (claims, "hash"));
  if (h == NULL || strlen (h) != 64)
    return -1;
  for (int i = 0; i < 64; i++)
    {
      if (!isxdigit ((unsigned char)h[i]))
        return -1;
      out[i] = (char)tolower ((unsigned char)h[i]);
    }
  out[64] = '\0';
  return 0;
}

/* ENV (stolen, wiped) with every variable name upper-cased (ASCII), as nex's agent hands a sealed environment to
 * the workload (strings.ToUpper of each name): a nex client's `port=80` is PORT.  Two names that differ only by
 * case would be one variable, so they are refused.  New reference, or NULL with the error. */
static json_t *
upper_names (json_t *env, nex_error_t *err)
{
  json_t *out = json_object ();
  const char *key;
  json_t *v;
  json_object_foreach (env, key, v)
  {
    cleanup_free char *name = nex_xstrdup (key);
    for (char *c = name; *c; c++)
      *c = (char)toupper ((unsigned char)*c);
    if (json_object_get (out, name) != NULL)
      {
        nex_error_field (err, "environment", "two sealed variables are both named %s once upper-cased (as nex does)",
                         name);
        nex_secure_env_wipe (out);
        nex_secure_env_wipe (env);
        return NULL;
      }
    json_object_set_new (out, name, json_stringn (json_string_value (v), json_string_length (v)));
  }
  nex_secure_env_wipe (env);
  return out;
}

/* Opens base64 SEALED from SENDER with the node's xkey into a JSON object of strings (new reference). */
static json_t *
open_env (nex_node_t *node, const char *sealed, const char *sender, nex_error_t *err)
{
  size_t n = 0;
  cleanup_free uint8_t *box = b64_decode (sealed, &n);
  if (box == NULL)
    {
      nex_error_field (err, "environment", "must be base64 of a box sealed to the node's xkey");
      return NULL;
    }
  size_t len = 0;
  nex_error_t oerr = NULL;
  uint8_t *clear = nex_nkey_open (&node->identity.xkey, sender, box, n, &len, &oerr);
  if (clear == NULL)
    {
      nex_error_field (err, "environment", "%s", oerr->msg);
      nex_error_free (&oerr);
      return NULL;
    }
  json_t *env = json_loadb ((const char *)clear, len, JSON_REJECT_DUPLICATES, NULL);
  sodium_memzero (clear, len);
  free (clear);
  const char *key;
  json_t *v;
  int ok = json_is_object (env);
  json_object_foreach (env, key, v)
  {
    if (!json_is_string (v) || *key == '\0' || strchr (key, '=')
        || strlen (json_string_value (v)) != json_string_length (v))
      ok = 0;
  }
  if (!ok)
    {
      nex_secure_env_wipe (env);
      nex_error_field (err, "environment", "the sealed environment must be a JSON object of strings");
      return NULL;
    }
  return upper_names (env, err);
}

void
nex_secure_env_wipe (json_t *env)
{
  const char *key;
  json_t *v;
  json_object_foreach (env, key, v)
  {
    if (json_is_string (v))
      sodium_memzero ((char *)json_string_value (v), json_string_length (v));
  }
  json_decref (env);
}

/* Takes string member KEY out of REQUEST into *OUT (a copy; NULL when absent). */
static int
take_string (json_t *request, const char *key, size_t max, char **out, nex_error_t *err)
{
  json_t *v = json_object_get (request, key);
  *out = NULL;
  if (v == NULL || json_is_null (v))
    {
      json_object_del (request, key);
      return 0;
    }
  if (!json_is_string (v) || json_string_length (v) > max || strlen (json_string_value (v)) != json_string_length (v))
    return nex_error_field (err, key, "must be a string of at most %zu bytes", max);
  *out = nex_xstrdup (json_string_value (v));
  json_object_del (request, key);
  return 0;
}

int
nex_secure_take (nex_node_t *node, json_t *request, nex_secure_row_t *out, int *present, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  *present = 0;
  if (!json_is_object (request))
    return 0; /* nex_workload_from_request says what is wrong */
  cleanup_with (nex_secure_row_release) nex_secure_row_t row = { 0 };
  cleanup_free char *jwt = NULL;
  if (take_string (request, "environment", SEALED_MAX_BYTES, &row.sealed_env, err) < 0
      || take_string (request, "sender_public_key", 64, &row.sender_xkey, err) < 0
      || take_string (request, "workload_jwt", JWT_MAX_BYTES, &jwt, err) < 0)
    return -1;
  *present = row.sealed_env || row.sender_xkey || jwt;
  if (row.sealed_env && row.sender_xkey == NULL)
    return nex_error_field (err, "sender_public_key", "is required with a sealed environment");
  if (row.sealed_env)
    {
      /* Opened now only to refuse at once what could never start; the clear values are wiped here. */
      json_t *env = open_env (node, row.sealed_env, row.sender_xkey, err);
      if (env == NULL)
        return -1;
      nex_secure_env_wipe (env);
    }
  if (jwt == NULL && node->cfg->valid_issuers && *node->cfg->valid_issuers)
    return nex_error_field (err, "workload_jwt",
                            "this node only runs workloads with a JWT from one of its valid issuers");
  if (jwt)
    {
      cleanup_json json_t *claims = nex_secure_jwt_verify (node, jwt, err);
      if (claims == NULL)
        return -1;
      char hash[65];
      if (claims_hash (claims, hash) < 0)
        return nex_error_field (err, "workload_jwt", "claims carry no artifact hash (nats.hash: 64 hex digits)");
      const char *sha = json_string_value (json_object_get (request, "sha256"));
      if (sha == NULL)
        sha = json_string_value (json_object_get (request, "hash"));
      if (sha && strcasecmp (sha, hash) != 0)
        return nex_error_field (err, "workload_jwt", "the JWT vouches for hash %s, the request names %s", hash, sha);
      const char *iss = json_string_value (json_object_get (claims, "iss"));
      if (nex_registry_jti_claim (node->reg, iss, json_string_value (json_object_get (claims, "jti")), err) < 0)
        return -1;
      row.jwt_issuer = nex_xstrdup (iss);
      const char *sub = json_string_value (json_object_get (claims, "sub"));
      row.jwt_subject = sub ? nex_xstrdup (sub) : NULL;
      row.jwt_hash = nex_xstrdup (hash);
    }
  *out = row;
  memset (&row, 0, sizeof row);
  return 0;
}

int
nex_secure_check_digest (nex_node_t *node, const char *id, const char *digest, nex_error_t *err)
{
  nex_secure_row_t r;
  int found = nex_registry_secure_get (node->reg, id, &r, err);
  if (found < 0)
    return -1;
  int ret = 0;
  if (found && r.jwt_hash && strcasecmp (r.jwt_hash, digest) != 0)
    ret = nex_error_field (err, "workload_jwt",
                           "artifact hash mismatch: the workload JWT vouches for %s, the "
                           "artifact fetched has %s",
                           r.jwt_hash, digest);
  nex_secure_row_release (&r);
  return ret;
}

json_t *
nex_secure_start_env (nex_node_t *node, const char *id, json_t *env, nex_error_t *err)
{
  nex_secure_row_t r;
  int found = nex_registry_secure_get (node->reg, id, &r, err);
  if (found < 0)
    return NULL;
  json_t *merged = json_deep_copy (env);
  if (found && r.sealed_env)
    {
      json_t *sealed = open_env (node, r.sealed_env, r.sender_xkey, err);
      if (sealed == NULL)
        {
          json_decref (merged);
          merged = NULL;
        }
      else
        {
          /* Copies, not shared references: the opened object is wiped right after. */
          const char *key;
          json_t *v;
          json_object_foreach (sealed, key, v)
          {
            json_object_set_new (merged, key, json_stringn (json_string_value (v), json_string_length (v)));
          }
          nex_secure_env_wipe (sealed);
        }
    }
  nex_secure_row_release (&r);
  return merged;
}

int
nex_secure_check_stop (nex_node_t *node, const char *id, const char *jwt, nex_error_t *err)
{
  nex_secure_row_t r;
  int found = nex_registry_secure_get (node->reg, id, &r, err);
  if (found < 0)
    return -1;
  int ret = 0;
  if (found && r.jwt_issuer)
    {
      cleanup_json json_t *claims = jwt ? nex_secure_jwt_verify (node, jwt, err) : NULL;
      const char *iss = json_string_value (json_object_get (claims, "iss"));
      const char *sub = json_string_value (json_object_get (claims, "sub"));
      if (jwt == NULL)
        ret = nex_error_field (err, "workload_jwt",
                               "this workload was launched with a JWT: stopping it needs a "
                               "fresh one from the same issuer");
      else if (claims == NULL)
        ret = -1;
      else if (strcmp (iss, r.jwt_issuer) != 0)
        ret = nex_error_field (err, "workload_jwt", "only the issuer that started the workload may stop it");
      /* nex's client signs its stop claims for the workload id the node answered (its start claims name the
       * request's own id): either subject is this workload's. */
      else if (r.jwt_subject && sub && strcmp (sub, r.jwt_subject) != 0 && strcmp (sub, id) != 0)
        ret = nex_error_field (err, "workload_jwt", "subject does not match the one that started the workload");
      else
        ret = nex_registry_jti_claim (node->reg, iss, json_string_value (json_object_get (claims, "jti")), err);
    }
  nex_secure_row_release (&r);
  return ret;
}
