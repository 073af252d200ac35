/* SPDX-License-Identifier: Apache-2.0 */
/* auth.c — see auth.h. */
#include "server/auth.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

#define TOKEN_PREFIX "nex_"
#define ID_HEX 16 /* 8 random bytes */
#define SECRET_BYTES 32
#define SECRET_CHARS 43 /* base64url of 32 bytes, no padding */
#define TOKEN_LEN (4 + ID_HEX + 1 + SECRET_CHARS)
#define TOUCH_INTERVAL_MS 60000 /* last_used_at is written at most this often per token */
#define NAME_MAX_CHARS 100
#define MAX_NAMESPACES 64

typedef struct cached
{
  char id[ID_HEX + 1];
  unsigned char hash[crypto_generichash_BYTES];
  unsigned scopes;
  json_t *namespaces;
  int revoked;
  int64_t touched; /* when last_used_at was last written */
} cached_t;

struct nex_auth
{
  nex_node_t *node;
  pthread_mutex_t lock;
  cached_t *tokens; /* under lock */
  size_t n;
  unsigned anonymous;
  int has_config_admin;
  unsigned char config_hash[crypto_generichash_BYTES];
};

static const struct
{
  const char *name;
  unsigned bits; /* the scope and those it contains */
} scope_names[] = {
  { "read", NEX_SCOPE_READ },
  { "deploy", NEX_SCOPE_READ | NEX_SCOPE_DEPLOY },
  { "admin", NEX_SCOPE_READ | NEX_SCOPE_DEPLOY | NEX_SCOPE_ADMIN },
};

void
nex_principal_release (nex_principal_t *p)
{
  json_decref (p->namespaces);
  memset (p, 0, sizeof *p);
}

int
nex_principal_allows_namespace (const nex_principal_t *p, const char *ns)
{
  if (p->namespaces == NULL)
    return 1;
  size_t i;
  json_t *v;
  json_array_foreach (p->namespaces, i, v)
  {
    if (ns && json_string_value (v) && strcmp (json_string_value (v), ns) == 0)
      return 1;
  }
  return 0;
}

static void
hash_token (const char *token, size_t len, unsigned char out[crypto_generichash_BYTES])
{
  crypto_generichash (out, crypto_generichash_BYTES, (const unsigned char *)token, len, NULL, 0);
}

static int
scope_bits (const char *name, unsigned *out)
{
  for (size_t i = 0; i < sizeof scope_names / sizeof scope_names[0]; i++)
    if (strcmp (name, scope_names[i].name) == 0)
      {
        *out |= scope_names[i].bits;
        return 0;
      }
  return -1;
}

json_t *
nex_auth_scopes_json (unsigned scopes)
{
  json_t *names = json_array ();
  for (size_t i = 0; i < sizeof scope_names / sizeof scope_names[0]; i++)
    if ((scopes & scope_names[i].bits) == scope_names[i].bits)
      json_array_append_new (names, json_string (scope_names[i].name));
  return names;
}

int
nex_auth_parse_scopes (const json_t *scopes, unsigned *out, nex_error_t *err)
{
  *out = 0;
  if (!json_is_array (scopes) || json_array_size (scopes) == 0)
    return nex_error_field (err, "scopes", "must be a non-empty array of read, deploy and admin");
  size_t i;
  json_t *v;
  json_array_foreach ((json_t *)scopes, i, v)
  {
    cleanup_free char *field = nex_xasprintf ("scopes[%zu]", i);
    if (!json_is_string (v) || scope_bits (json_string_value (v), out) < 0)
      return nex_error_field (err, field, "must be read, deploy or admin");
  }
  return 0;
}

/* --- the cache ---------------------------------------------------------------------------------------------- */

static void
cache_free (cached_t *tokens, size_t n)
{
  for (size_t i = 0; i < n; i++)
    json_decref (tokens[i].namespaces);
  free (tokens);
}

/* Reloads every token from the registry. */
static int
reload (nex_auth_t *a, nex_error_t *err)
{
  nex_token_record_t *recs = NULL;
  size_t n = 0;
  if (nex_registry_token_list (a->node->reg, &recs, &n, err) < 0)
    return -1;
  cached_t *fresh = nex_xzalloc ((n ? n : 1) * sizeof *fresh);
  for (size_t i = 0; i < n; i++)
    {
      cached_t *c = &fresh[i];
      memcpy (c->id, recs[i].id, sizeof c->id);
      size_t bin_len = 0;
      if (sodium_hex2bin (c->hash, sizeof c->hash, recs[i].hash, strlen (recs[i].hash), NULL, &bin_len, NULL) != 0
          || bin_len != sizeof c->hash)
        c->revoked = 1; /* a damaged row matches nothing */
      nex_auth_parse_scopes (recs[i].scopes, &c->scopes, NULL);
      c->namespaces = json_incref (recs[i].namespaces);
      c->revoked |= recs[i].revoked_at != 0;
      nex_token_record_release (&recs[i]);
    }
  free (recs);
  pthread_mutex_lock (&a->lock);
  /* Keep when each token was last recorded as used, so that a reload does not cause a burst of writes. */
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < a->n; j++)
      if (strcmp (fresh[i].id, a->tokens[j].id) == 0)
        fresh[i].touched = a->tokens[j].touched;
  cached_t *old = a->tokens;
  size_t old_n = a->n;
  a->tokens = fresh;
  a->n = n;
  pthread_mutex_unlock (&a->lock);
  cache_free (old, old_n);
  return 0;
}

/* --- tokens ------------------------------------------------------------------------------------------------- */

static json_t *
time_or_null (int64_t ms)
{
  char buf[NEX_CLOCK_RFC3339_LEN];
  return ms ? json_string (nex_clock_format (ms, buf, sizeof buf)) : json_null ();
}

static json_t *
public_form (const nex_token_record_t *t)
{
  json_t *o = json_pack ("{s:s, s:s, s:O}", "id", t->id, "name", t->name ? t->name : "", "scopes", t->scopes);
  json_object_set_new (o, "namespaces", t->namespaces ? json_incref (t->namespaces) : json_null ());
  json_object_set_new (o, "created_at", time_or_null (t->created_at));
  json_object_set_new (o, "last_used_at", time_or_null (t->last_used_at));
  json_object_set_new (o, "revoked_at", time_or_null (t->revoked_at));
  return o;
}

/* Makes a fresh token into TOKEN (TOKEN_LEN + 1 bytes) and its record (hash, id). */
static void
generate (char token[TOKEN_LEN + 1], nex_token_record_t *rec)
{
  unsigned char id[ID_HEX / 2], secret[SECRET_BYTES];
  randombytes_buf (id, sizeof id);
  randombytes_buf (secret, sizeof secret);
  sodium_bin2hex (rec->id, sizeof rec->id, id, sizeof id);
  char b64[SECRET_CHARS + 1];
  sodium_bin2base64 (b64, sizeof b64, secret, sizeof secret, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  snprintf (token, TOKEN_LEN + 1, TOKEN_PREFIX "%s_%s", rec->id, b64);
  unsigned char h[crypto_generichash_BYTES];
  hash_token (token, strlen (token), h);
  sodium_bin2hex (rec->hash, sizeof rec->hash, h, sizeof h);
  sodium_memzero (secret, sizeof secret);
}

static int
check_name (const char *name, nex_error_t *err)
{
  size_t n = name ? strlen (name) : 0;
  if (n == 0 || n > NAME_MAX_CHARS)
    return nex_error_field (err, "name", "must be 1 to %d characters", NAME_MAX_CHARS);
  for (const unsigned char *c = (const unsigned char *)name; *c; c++)
    if (*c < 0x20 || *c == 0x7f)
      return nex_error_field (err, "name", "must not contain control characters");
  return 0;
}

static int
check_namespaces (const json_t *namespaces, nex_error_t *err)
{
  if (namespaces == NULL || json_is_null (namespaces))
    return 0;
  if (!json_is_array (namespaces) || json_array_size (namespaces) == 0 || json_array_size (namespaces) > MAX_NAMESPACES)
    return nex_error_field (err, "namespaces", "must be null or an array of 1 to %d namespace names", MAX_NAMESPACES);
  size_t i;
  json_t *v;
  json_array_foreach ((json_t *)namespaces, i, v)
  {
    const char *s = json_string_value (v);
    size_t len = s ? strlen (s) : 0;
    int ok = len > 0 && len <= 63 && isalnum ((unsigned char)s[0]) && json_string_length (v) == len;
    for (size_t k = 1; ok && k < len; k++)
      ok = isalnum ((unsigned char)s[k]) || strchr ("._-", s[k]) != NULL;
    if (!ok)
      {
        cleanup_free char *field = nex_xasprintf ("namespaces[%zu]", i);
        return nex_error_field (err, field, "must be a namespace name");
      }
  }
  return 0;
}

/* Stores a new token; *OUT gets its public form plus the secret. */
static int
create (nex_auth_t *a, const char *name, const json_t *scopes, const json_t *namespaces, json_t **out,
        char token[TOKEN_LEN + 1], nex_error_t *err)
{
  unsigned bits;
  if (check_name (name, err) < 0 || nex_auth_parse_scopes (scopes, &bits, err) < 0
      || check_namespaces (namespaces, err) < 0)
    return -1;
  nex_token_record_t rec = { 0 };
  generate (token, &rec);
  rec.name = (char *)name;
  rec.scopes = (json_t *)scopes;
  rec.namespaces = json_is_array (namespaces) ? (json_t *)namespaces : NULL;
  rec.created_at = nex_clock_now_ms ();
  if (nex_registry_token_insert (a->node->reg, &rec, err) < 0)
    return -1;
  if (out)
    {
      *out = public_form (&rec);
      json_object_set_new (*out, "token", json_string (token));
    }
  return reload (a, err);
}

int
nex_auth_token_create (nex_auth_t *a, const char *name, const json_t *scopes, const json_t *namespaces, json_t **out,
                       nex_error_t *err)
{
  char token[TOKEN_LEN + 1];
  int r = create (a, name, scopes, namespaces, out, token, err);
  sodium_memzero (token, sizeof token);
  return r;
}

json_t *
nex_auth_token_list (nex_auth_t *a, nex_error_t *err)
{
  nex_token_record_t *recs = NULL;
  size_t n = 0;
  if (nex_registry_token_list (a->node->reg, &recs, &n, err) < 0)
    return NULL;
  json_t *list = json_array ();
  for (size_t i = 0; i < n; i++)
    {
      json_array_append_new (list, public_form (&recs[i]));
      nex_token_record_release (&recs[i]);
    }
  free (recs);
  return list;
}

int
nex_auth_token_revoke (nex_auth_t *a, const char *id, json_t **out, nex_error_t *err)
{
  if (strlen (id) != ID_HEX || strspn (id, "0123456789abcdef") != ID_HEX)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no token `%.40s`", id);
  if (nex_registry_token_revoke (a->node->reg, id, nex_clock_now_ms (), err) < 0 || reload (a, err) < 0)
    return -1;
  cleanup_json json_t *all = nex_auth_token_list (a, err);
  size_t i;
  json_t *t;
  json_array_foreach (all, i, t)
  {
    if (strcmp (json_string_value (json_object_get (t, "id")), id) == 0)
      {
        *out = json_incref (t);
        return 0;
      }
  }
  return nex_error_set (err, NEX_ERR_NOT_FOUND, "no token `%s`", id);
}

/* --- requests ----------------------------------------------------------------------------------------------- */

unsigned
nex_auth_required (const char *method, const char *path)
{
  /* Health checks, the API's documentation and static pages carry nothing a token protects; a node that
   * cannot be checked without a secret is harder to run. */
  if (strncmp (path, "/v1/", 4) != 0 && strcmp (path, "/v1") != 0 && strcmp (path, "/metrics") != 0)
    return 0;
  if (strncmp (path, "/v1/tokens", 10) == 0 && (path[10] == '\0' || path[10] == '/'))
    return NEX_SCOPE_ADMIN;
  /* GET .../exec opens an interactive exec session (a websocket): it runs a command, so it changes things. */
  size_t n = strlen (path);
  if (strncmp (path, "/v1/workloads/", 14) == 0 && n > 19 && strcmp (path + n - 5, "/exec") == 0)
    return NEX_SCOPE_DEPLOY;
  /* Draining a node stops it: as much an operator's act as managing tokens. */
  if (strncmp (path, "/v1/cluster/nodes/", 18) == 0 && n > 24 && strcmp (path + n - 6, "/drain") == 0)
    return NEX_SCOPE_ADMIN;
  if (strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0 || strcmp (method, "OPTIONS") == 0)
    return NEX_SCOPE_READ;
  return NEX_SCOPE_DEPLOY;
}

int
nex_auth_identify (nex_auth_t *a, const char *token, nex_principal_t *p, nex_error_t *err)
{
  memset (p, 0, sizeof *p);
  if (token == NULL)
    {
      p->scopes = a->anonymous;
      return 0;
    }
  size_t len = strlen (token);
  unsigned char h[crypto_generichash_BYTES];
  hash_token (token, len, h);
  /* Compared in constant time, like every secret here: the time taken says nothing about how much matched. */
  if (a->has_config_admin && sodium_memcmp (h, a->config_hash, sizeof h) == 0)
    {
      p->scopes = NEX_SCOPE_READ | NEX_SCOPE_DEPLOY | NEX_SCOPE_ADMIN;
      snprintf (p->token_id, sizeof p->token_id, "config");
      return 0;
    }
  if (len != TOKEN_LEN || strncmp (token, TOKEN_PREFIX, 4) != 0 || token[4 + ID_HEX] != '_')
    return nex_error_set (err, NEX_ERR_UNAUTHENTICATED, "the bearer token is not a token of this node");
  char id[ID_HEX + 1];
  memcpy (id, token + 4, ID_HEX);
  id[ID_HEX] = '\0';
  int found = 0, touch = 0;
  int64_t now = nex_clock_now_ms ();
  pthread_mutex_lock (&a->lock);
  for (size_t i = 0; i < a->n; i++)
    {
      cached_t *c = &a->tokens[i];
      if (strcmp (c->id, id) != 0)
        continue;
      if (!c->revoked && sodium_memcmp (h, c->hash, sizeof h) == 0)
        {
          found = 1;
          p->scopes = c->scopes;
          p->namespaces = c->namespaces ? json_deep_copy (c->namespaces) : NULL;
          memcpy (p->token_id, c->id, sizeof c->id);
          if (now - c->touched >= TOUCH_INTERVAL_MS)
            {
              c->touched = now;
              touch = 1;
            }
        }
      break;
    }
  pthread_mutex_unlock (&a->lock);
  if (!found)
    return nex_error_set (err, NEX_ERR_UNAUTHENTICATED, "the bearer token is unknown or revoked");
  if (touch)
    {
      cleanup_error nex_error_t terr = NULL;
      if (nex_registry_token_touch (a->node->reg, id, now, &terr) < 0)
        nex_log_error (NEX_LOG_WARN, terr, "token %s", id);
    }
  return 0;
}

/* --- set-up ------------------------------------------------------------------------------------------------- */

static int
parse_anonymous (const char *text, unsigned *out, nex_error_t *err)
{
  *out = 0;
  if (text == NULL || *text == '\0' || strcmp (text, "none") == 0)
    return 0;
  cleanup_free char *copy = nex_xstrdup (text);
  char *save = NULL;
  for (char *tok = strtok_r (copy, ", ", &save); tok; tok = strtok_r (NULL, ", ", &save))
    if (scope_bits (tok, out) < 0)
      return nex_error_field (err, "anonymous", "anonymous must be none or a list of read, deploy and admin; got `%s`",
                              tok);
  return 0;
}

/* Creates the first admin token, writes it to DATA_DIR/admin.token and says so once. */
static int
bootstrap (nex_auth_t *a, nex_error_t *err)
{
  cleanup_json json_t *list = nex_auth_token_list (a, err);
  if (list == NULL)
    return -1;
  if (json_array_size (list) > 0)
    return 0;
  cleanup_json json_t *scopes = json_pack ("[s]", "admin");
  char token[TOKEN_LEN + 1];
  if (create (a, "admin (created at first start)", scopes, NULL, NULL, token, err) < 0)
    return -1;
  cleanup_free char *path = nex_xasprintf ("%s/admin.token", a->node->data_dir);
  cleanup_free char *line = nex_xasprintf ("%s\n", token);
  /* Mode 0600: the file is the node's master key. */
  int r = nex_file_write_atomic (path, line, strlen (line), 0600, err);
  if (r == 0)
    fprintf (stderr, "nexd: created the first admin token (shown once; also in %s, mode 0600): %s\n", path, token);
  sodium_memzero (token, sizeof token);
  sodium_memzero (line, strlen (line));
  return r;
}

nex_auth_t *
nex_auth_open (nex_node_t *node, nex_error_t *err)
{
  if (sodium_init () < 0)
    {
      nex_error_set (err, NEX_ERR_SYSTEM, "libsodium failed to initialise");
      return NULL;
    }
  nex_auth_t *a = nex_xzalloc (sizeof *a);
  a->node = node;
  pthread_mutex_init (&a->lock, NULL);
  const char *admin = node->cfg->admin_token;
  if (admin)
    {
      size_t n = strlen (admin);
      int printable = 1;
      for (size_t i = 0; i < n; i++)
        printable &= admin[i] > 0x20 && admin[i] < 0x7f;
      if (n < 24 || n > 256 || !printable)
        {
          nex_error_field (err, "admin_token", "admin_token must be 24 to 256 printable characters without spaces");
          nex_auth_close (a);
          return NULL;
        }
      hash_token (admin, n, a->config_hash);
      a->has_config_admin = 1;
    }
  if (parse_anonymous (node->cfg->anonymous, &a->anonymous, err) < 0 || reload (a, err) < 0
      || (!admin && bootstrap (a, err) < 0))
    {
      nex_auth_close (a);
      return NULL;
    }
  return a;
}

void
nex_auth_close (nex_auth_t *a)
{
  if (a == NULL)
    return;
  cache_free (a->tokens, a->n);
  sodium_memzero (a->config_hash, sizeof a->config_hash);
  pthread_mutex_destroy (&a->lock);
  free (a);
}
