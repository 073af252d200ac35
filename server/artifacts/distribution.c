/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/distribution.c — pulling OCI images from registries and OCI layouts (contract in distribution.h).
 *
 * Bottom up: a sink (memory or a temporary file) that hashes and bounds what it is given; one HTTP request with
 * libcurl, redirects followed here so that credentials stay with their host; the registry conversation on top
 * (authentication challenges, manifests, blobs); the OCI layout as a second source of the same two things
 * (manifests and blobs by digest); and the pull itself, which is the same for both sources: manifest, platform
 * choice, config, layers, each checked against its descriptor. */
#include "server/artifacts/distribution.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/artifacts/token-cache.h"
#include "server/clock.h"

#define MAX_REDIRECTS 5
#define MAX_TOKEN_BYTES (1024 * 1024)
#define MAX_HEADER_VALUE 4096

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define ACCEPT_MANIFESTS "Accept: " MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_DOCKER_MANIFEST

/* --- sinks: where fetched bytes go, hashed and bounded --------------------------------------------------------- */

typedef struct sink
{
  int fd;    /* a temporary file, or -1: memory */
  char *buf; /* memory: the bytes so far (NUL-terminated) */
  size_t len, cap;
  uint64_t bytes, max;
  crypto_hash_sha256_state sha;
  const char *what;        /* "manifest", "config", "layer": for the bound's message */
  uint64_t *progress_done; /* counted here too when not NULL */
  const nex_pull_opts_t *opts;
  uint64_t progress_total;
} sink_t;

static void
sink_init (sink_t *s, int fd, uint64_t max, const char *what)
{
  memset (s, 0, sizeof *s);
  s->fd = fd;
  s->max = max;
  s->what = what;
  crypto_hash_sha256_init (&s->sha);
}

static void
sink_reset (sink_t *s)
{
  s->len = 0;
  s->bytes = 0;
  crypto_hash_sha256_init (&s->sha);
  /* A failed truncation shows as a size or digest mismatch later. */
  if (s->fd >= 0 && ftruncate (s->fd, 0) == 0)
    lseek (s->fd, 0, SEEK_SET);
}

static void
sink_release (sink_t *s)
{
  free (s->buf);
  s->buf = NULL;
}

static int
sink_write (sink_t *s, const void *data, size_t n, nex_error_t *err)
{
  if (s->bytes + n > s->max)
    return nex_error_set (err, NEX_ERR_TOO_LARGE, "image %s is larger than %llu bytes", s->what,
                          (unsigned long long)s->max);
  crypto_hash_sha256_update (&s->sha, data, n);
  s->bytes += n;
  if (s->progress_done)
    {
      *s->progress_done += n;
      if (s->opts->progress)
        s->opts->progress (s->opts->progress_ctx, *s->progress_done, s->progress_total);
    }
  if (s->fd >= 0)
    return nex_fd_write_all (s->fd, data, n, err);
  if (s->len + n + 1 > s->cap)
    {
      s->cap = (s->len + n + 1) * 2;
      s->buf = nex_xrealloc (s->buf, s->cap);
    }
  memcpy (s->buf + s->len, data, n);
  s->len += n;
  s->buf[s->len] = '\0';
  return 0;
}

/* The sink's digest as "sha256:<hex>". */
static void
sink_digest (sink_t *s, char out[72])
{
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final (&s->sha, d);
  strcpy (out, "sha256:");
  sodium_bin2hex (out + 7, 65, d, sizeof d);
}

/* Checks that S received exactly what descriptor (DIGEST, SIZE; SIZE < 0: unknown) promised. */
static int
sink_verify (sink_t *s, const char *digest, int64_t size, nex_error_t *err)
{
  char got[72];
  sink_digest (s, got);
  if (size >= 0 && s->bytes != (uint64_t)size)
    return nex_error_field (err, "image", "%s %s has %llu bytes where its descriptor says %lld", s->what, digest,
                            (unsigned long long)s->bytes, (long long)size);
  if (strcmp (got, digest) != 0)
    return nex_error_field (err, "image", "%s digest mismatch: expected %s, got %s", s->what, digest, got);
  return 0;
}

/* --- one HTTP request ----------------------------------------------------------------------------------------- */

static void
easy_cleanup (CURL **c)
{
  if (*c)
    curl_easy_cleanup (*c);
}
#define cleanup_curl cleanup_with (easy_cleanup)

static void
slist_cleanup (struct curl_slist **l)
{
  curl_slist_free_all (*l);
}
#define cleanup_slist cleanup_with (slist_cleanup)

static void
curlu_cleanup (CURLU **u)
{
  if (*u)
    curl_url_cleanup (*u);
}
#define cleanup_curlu cleanup_with (curlu_cleanup)

/* The answer's headers this file reads. */
typedef struct response
{
  long status;
  char content_type[256];
  char www_authenticate[MAX_HEADER_VALUE];
  char content_digest[80];
  char location[MAX_HEADER_VALUE];
} response_t;

typedef struct transfer
{
  sink_t *sink;
  response_t *resp;
  nex_error_t err;
} transfer_t;

static void
header_value (const char *line, size_t n, const char *name, char *out, size_t cap)
{
  size_t k = strlen (name);
  if (n <= k || strncasecmp (line, name, k) != 0 || line[k] != ':')
    return;
  const char *v = line + k + 1;
  size_t len = n - k - 1;
  while (len && (*v == ' ' || *v == '\t'))
    v++, len--;
  while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
    len--;
  if (len >= cap)
    len = cap - 1;
  memcpy (out, v, len);
  out[len] = '\0';
}

static size_t
on_header (char *line, size_t size, size_t n, void *ctx)
{
  transfer_t *t = ctx;
  size_t len = size * n;
  if (len > 5 && strncmp (line, "HTTP/", 5) == 0)
    {
      /* A new response (after a 100 Continue, say): forget the previous one's headers.  Its status decides
       * whether the body is kept (on_body). */
      memset (t->resp, 0, sizeof *t->resp);
      const char *sp = memchr (line, ' ', len);
      if (sp && (size_t)(sp - line) + 4 <= len)
        t->resp->status = strtol (sp + 1, NULL, 10);
      return len;
    }
  header_value (line, len, "Content-Type", t->resp->content_type, sizeof t->resp->content_type);
  header_value (line, len, "WWW-Authenticate", t->resp->www_authenticate, sizeof t->resp->www_authenticate);
  header_value (line, len, "Docker-Content-Digest", t->resp->content_digest, sizeof t->resp->content_digest);
  header_value (line, len, "Location", t->resp->location, sizeof t->resp->location);
  return len;
}

static size_t
on_body (char *data, size_t size, size_t n, void *ctx)
{
  transfer_t *t = ctx;
  /* Only a 200's body is the thing asked for; error pages and redirects are dropped. */
  if (t->resp->status != 200)
    return size * n;
  if (t->sink == NULL || sink_write (t->sink, data, size * n, &t->err) < 0)
    return t->sink == NULL ? size * n : 0;
  return size * n;
}

/* The host[:port] of URL into a new string, or NULL. */
static char *
url_host (const char *url)
{
  cleanup_curlu CURLU *u = curl_url ();
  char *host = NULL, *port = NULL;
  if (u == NULL || curl_url_set (u, CURLUPART_URL, url, 0) != CURLUE_OK
      || curl_url_get (u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    return NULL;
  curl_url_get (u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
  char *out = nex_xasprintf ("%s:%s", host, port ? port : "");
  curl_free (host);
  curl_free (port);
  return out;
}

/* URL resolved against BASE (a redirect's Location may be relative); NULL when it is no http(s) URL. */
static char *
url_resolve (const char *base, const char *location)
{
  cleanup_curlu CURLU *u = curl_url ();
  char *scheme = NULL, *full = NULL;
  if (u == NULL || curl_url_set (u, CURLUPART_URL, base, 0) != CURLUE_OK
      || curl_url_set (u, CURLUPART_URL, location, 0) != CURLUE_OK
      || curl_url_get (u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
    return NULL;
  int ok = strcmp (scheme, "http") == 0 || strcmp (scheme, "https") == 0;
  curl_free (scheme);
  if (!ok || curl_url_get (u, CURLUPART_URL, &full, 0) != CURLUE_OK)
    return NULL;
  char *out = nex_xstrdup (full);
  curl_free (full);
  return out;
}

/* GETs URL into SINK (may be NULL: the body is not wanted), following redirects here.  AUTH (a whole header
 * line, or NULL) is sent only while the request stays on URL's host.  RESP gets the last answer's status and
 * headers.  0 when a final answer arrived (whatever its status), -1 when none did. */
static int
http_get (const char *url, const char *accept, const char *auth, sink_t *sink, response_t *resp, nex_error_t *err)
{
  cleanup_free char *origin = url_host (url);
  cleanup_free char *current = nex_xstrdup (url);
  if (origin == NULL)
    return nex_error_field (err, "image", "cannot make a URL of `%s`", url);
  for (int hop = 0; hop <= MAX_REDIRECTS; hop++)
    {
      cleanup_curl CURL *c = curl_easy_init ();
      cleanup_slist struct curl_slist *headers = NULL;
      cleanup_free char *host = url_host (current);
      if (c == NULL || host == NULL)
        return nex_error_set (err, NEX_ERR_SYSTEM, "cannot start an HTTP transfer");
      if (accept)
        headers = curl_slist_append (headers, accept);
      /* Credentials belong to the host they were meant for: a redirect to blob storage elsewhere gets none. */
      if (auth && strcmp (host, origin) == 0)
        headers = curl_slist_append (headers, auth);
      transfer_t t = { .sink = sink, .resp = resp };
      char curl_msg[CURL_ERROR_SIZE] = "";
      memset (resp, 0, sizeof *resp);
      if (sink)
        sink_reset (sink);
      curl_easy_setopt (c, CURLOPT_URL, current);
      curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
      curl_easy_setopt (c, CURLOPT_FOLLOWLOCATION, 0L);
      curl_easy_setopt (c, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT, (long)NEX_PULL_CONNECT_S);
      curl_easy_setopt (c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
      curl_easy_setopt (c, CURLOPT_LOW_SPEED_TIME, (long)NEX_PULL_STALL_S);
      curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt (c, CURLOPT_USERAGENT, "nexd");
      curl_easy_setopt (c, CURLOPT_ERRORBUFFER, curl_msg);
      curl_easy_setopt (c, CURLOPT_HEADERFUNCTION, on_header);
      curl_easy_setopt (c, CURLOPT_HEADERDATA, &t);
      curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, on_body);
      curl_easy_setopt (c, CURLOPT_WRITEDATA, &t);
      CURLcode rc = curl_easy_perform (c);
      if (t.err)
        {
          if (err)
            *err = t.err;
          else
            nex_error_free (&t.err);
          return -1;
        }
      if (rc != CURLE_OK)
        return nex_error_set (err, NEX_ERR_UNAVAILABLE, "GET %s: %s", current,
                              curl_msg[0] ? curl_msg : curl_easy_strerror (rc));
      curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &resp->status);
      if (resp->status < 300 || resp->status >= 400 || resp->location[0] == '\0')
        return 0;
      char *next = url_resolve (current, resp->location);
      if (next == NULL)
        return nex_error_set (err, NEX_ERR_UNAVAILABLE, "GET %s: redirected to a location that is no http(s) URL",
                              current);
      free (current);
      current = next;
    }
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "GET %s: more than %d redirects", url, MAX_REDIRECTS);
}

/* --- the registry --------------------------------------------------------------------------------------------- */

typedef struct session
{
  const nex_image_ref_t *ref;
  const nex_pull_opts_t *opts;
  char *base;  /* "https://host[:port]" */
  char *basic; /* "Authorization: Basic ..." from the operator's credentials, or NULL */
  char *auth;  /* what is sent now: a Bearer token, or BASIC */
} session_t;

static void
session_release (session_t *s)
{
  free (s->base);
  free (s->basic);
  free (s->auth);
}

/* Whether HOST (host[:port]) is on loopback: localhost, 127.0.0.0/8 or [::1]. */
static int
host_is_loopback (const char *host)
{
  size_t n = strcspn (host, ":");
  if (host[0] == '[')
    return strncmp (host, "[::1]", 5) == 0;
  return (n == 9 && strncmp (host, "localhost", 9) == 0) || strncmp (host, "127.", 4) == 0;
}

/* Whether HOST is named in the comma-separated LIST (as host:port, or as the bare host). */
static int
host_in_list (const char *list, const char *host)
{
  if (list == NULL)
    return 0;
  size_t bare = strcspn (host, ":");
  for (const char *p = list; *p;)
    {
      size_t n = strcspn (p, ",");
      if ((n == strlen (host) && strncmp (p, host, n) == 0) || (n == bare && strncmp (p, host, n) == 0))
        return 1;
      p += n;
      if (*p == ',')
        p++;
    }
  return 0;
}

/* The operator's credentials for REGISTRY from AUTHS (docker config.json's `auths`): the key is the registry,
 * possibly with a scheme and path ("https://index.docker.io/v1/" for Docker Hub); the value holds `auth`
 * (base64 of user:password) or `username` and `password`.  A header line, or NULL. */
static char *
basic_for (const json_t *auths, const char *registry)
{
  const char *key;
  const json_t *v;
  int hub = strcmp (registry, NEX_IMAGE_DOCKER_HUB) == 0;
  json_object_foreach ((json_t *)auths, key, v)
  {
    const char *k = strstr (key, "://") ? strstr (key, "://") + 3 : key;
    size_t n = strcspn (k, "/");
    int match = (n == strlen (registry) && strncmp (k, registry, n) == 0)
                || (hub && (strncmp (k, "index.docker.io", n) == 0 || strncmp (k, "registry-1.docker.io", n) == 0));
    if (!match)
      continue;
    const char *b64 = json_string_value (json_object_get (v, "auth"));
    if (b64 && *b64)
      return nex_xasprintf ("Authorization: Basic %s", b64);
    const char *user = json_string_value (json_object_get (v, "username"));
    const char *pass = json_string_value (json_object_get (v, "password"));
    if (user && pass)
      {
        cleanup_free char *pair = nex_xasprintf ("%s:%s", user, pass);
        size_t cap = sodium_base64_encoded_len (strlen (pair), sodium_base64_VARIANT_ORIGINAL);
        cleanup_free char *enc = nex_xmalloc (cap);
        sodium_bin2base64 (enc, cap, (const unsigned char *)pair, strlen (pair), sodium_base64_VARIANT_ORIGINAL);
        sodium_memzero (pair, strlen (pair));
        return nex_xasprintf ("Authorization: Basic %s", enc);
      }
  }
  return NULL;
}

/* The value of parameter NAME in a challenge's list (`realm="x",service="y"`), or NULL; the caller frees it. */
static char *
challenge_param (const char *params, const char *name)
{
  size_t k = strlen (name);
  for (const char *p = params; *p;)
    {
      while (*p == ' ' || *p == ',')
        p++;
      const char *eq = strchr (p, '=');
      if (eq == NULL)
        return NULL;
      int hit = (size_t)(eq - p) == k && strncasecmp (p, name, k) == 0;
      const char *v = eq + 1;
      const char *end;
      char *value;
      if (*v == '"')
        {
          end = strchr (v + 1, '"');
          if (end == NULL)
            return NULL;
          value = nex_xstrndup (v + 1, (size_t)(end - v - 1));
          end++;
        }
      else
        {
          end = v + strcspn (v, ",");
          value = nex_xstrndup (v, (size_t)(end - v));
        }
      if (hit)
        return value;
      free (value);
      p = end;
    }
  return NULL;
}

static char *
url_escape (const char *s)
{
  char *e = curl_easy_escape (NULL, s, 0);
  char *out = nex_xstrdup (e ? e : "");
  curl_free (e);
  return out;
}

/* Answers S's last 401 challenge CHALLENGE: Basic with the operator's credentials, or a Bearer token from the
 * challenge's realm (the one kept for its realm, service and scope unless FRESH: the last one was refused).  0
 * with S->auth set, -1 when the challenge cannot be met. */
static int
authenticate (session_t *s, const char *challenge, int fresh, nex_error_t *err)
{
  if (strncasecmp (challenge, "Basic", 5) == 0)
    {
      if (s->basic == NULL)
        return nex_error_set (err, NEX_ERR_UNAVAILABLE,
                              "registry %s asks for credentials (Basic) and --registry-auth has none for it",
                              s->ref->registry);
      free (s->auth);
      s->auth = nex_xstrdup (s->basic);
      return 0;
    }
  if (strncasecmp (challenge, "Bearer ", 7) != 0)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "registry %s asks for an authentication scheme nexd does not speak",
                          s->ref->registry);
  cleanup_free char *realm = challenge_param (challenge + 7, "realm");
  cleanup_free char *service = challenge_param (challenge + 7, "service");
  cleanup_free char *scope = challenge_param (challenge + 7, "scope");
  if (realm == NULL || (strncmp (realm, "https://", 8) != 0 && strncmp (realm, "http://", 7) != 0))
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "registry %s sent a Bearer challenge without an http(s) realm",
                          s->ref->registry);
  if (scope == NULL)
    scope = nex_xasprintf ("repository:%s:pull", s->ref->repository);
  cleanup_free char *key = nex_xasprintf ("%s %s %s", realm, service ? service : "", scope);
  nex_token_cache_t *tokens = s->opts->tokens;
  char *kept = fresh ? NULL : nex_token_cache_get (tokens, key, nex_clock_mono_ms ());
  if (kept)
    {
      free (s->auth);
      s->auth = kept;
      return 0;
    }
  nex_token_cache_drop (tokens, key);
  cleanup_free char *e_service = url_escape (service ? service : "");
  cleanup_free char *e_scope = url_escape (scope);
  cleanup_free char *url
      = nex_xasprintf ("%s%sservice=%s&scope=%s", realm, strchr (realm, '?') ? "&" : "?", e_service, e_scope);
  sink_t body;
  sink_init (&body, -1, MAX_TOKEN_BYTES, "token answer");
  response_t resp;
  int rc = http_get (url, NULL, s->basic, &body, &resp, err);
  if (rc == 0 && resp.status != 200)
    rc = nex_error_set (err, NEX_ERR_UNAVAILABLE, "token endpoint %s answered HTTP %ld", realm, resp.status);
  cleanup_json json_t *j = rc == 0 ? json_loadb (body.buf ? body.buf : "", body.len, 0, NULL) : NULL;
  sink_release (&body);
  if (rc < 0)
    return -1;
  const char *token = json_string_value (json_object_get (j, "token"));
  if (token == NULL)
    token = json_string_value (json_object_get (j, "access_token"));
  if (token == NULL || token[0] == '\0' || strpbrk (token, "\r\n"))
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "token endpoint %s gave no token", realm);
  free (s->auth);
  s->auth = nex_xasprintf ("Authorization: Bearer %s", token);
  const json_t *expires = json_object_get (j, "expires_in");
  nex_token_cache_put (tokens, key, s->auth, json_is_integer (expires) ? json_integer_value (expires) : 0,
                       nex_clock_mono_ms ());
  return 0;
}

/* GETs PATH (below /v2/) from S's registry into SINK, meeting one authentication challenge on the way.  Anything
 * but a final 200 is an error naming the status. */
static int
registry_get (session_t *s, const char *path, const char *accept, sink_t *sink, response_t *resp, nex_error_t *err)
{
  cleanup_free char *url = nex_xasprintf ("%s/v2/%s", s->base, path);
  for (int attempt = 0; attempt < 2; attempt++)
    {
      if (http_get (url, accept, s->auth, sink, resp, err) < 0)
        return -1;
      if (resp->status == 401 && attempt == 0 && resp->www_authenticate[0])
        {
          /* Refused with what was sent (a kept token that the registry no longer takes): ask afresh. */
          if (authenticate (s, resp->www_authenticate, s->auth != NULL, err) < 0)
            return -1;
          continue;
        }
      break;
    }
  if (resp->status == 200)
    return 0;
  if (resp->status == 404)
    return nex_error_field (err, "image", "%s: not found in registry %s (GET /v2/%s: 404)", s->ref->canonical,
                            s->ref->registry, path);
  if (resp->status == 401 || resp->status == 403)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "registry %s refused %s (HTTP %ld)", s->ref->registry, path,
                          resp->status);
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "registry %s answered HTTP %ld to GET /v2/%s", s->ref->registry,
                        resp->status, path);
}

static int
session_open (session_t *s, const nex_image_ref_t *ref, const nex_pull_opts_t *o, nex_error_t *err)
{
  memset (s, 0, sizeof *s);
  s->ref = ref;
  s->opts = o;
  const char *host = nex_image_ref_api_host (ref);
  /* Plain http only where the operator said so, or on loopback (which never leaves the machine). */
  int plain = host_is_loopback (host) || host_in_list (o->insecure, host) || host_in_list (o->insecure, ref->registry);
  s->base = nex_xasprintf ("%s://%s", plain ? "http" : "https", host);
  if (o->auths)
    s->basic = basic_for (o->auths, ref->registry);
  /* The /v2/ probe: the registry speaks the distribution API, and its challenge (if any) is met once here. */
  response_t resp;
  cleanup_free char *url = nex_xasprintf ("%s/v2/", s->base);
  if (http_get (url, NULL, NULL, NULL, &resp, err) < 0)
    return nex_error_wrap (err, "registry %s", ref->registry);
  if (resp.status == 401 && resp.www_authenticate[0])
    return authenticate (s, resp.www_authenticate, 0, err);
  if (resp.status != 200)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "registry %s: GET /v2/ answered HTTP %ld (no OCI registry?)",
                          ref->registry, resp.status);
  return 0;
}

/* --- sources: a registry, or an OCI layout -------------------------------------------------------------------- */

typedef struct source
{
  session_t *session; /* a registry, or NULL */
  const char *layout; /* an OCI layout directory, or NULL */
} source_t;

/* Reads blob DIGEST of the layout into SINK. */
static int
layout_blob (const char *layout, const char *digest, sink_t *sink, nex_error_t *err)
{
  cleanup_free char *path = nex_xasprintf ("%s/blobs/sha256/%s", layout, digest + 7);
  cleanup_close int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return nex_error_field (err, "image", "OCI layout %s has no blob %s", layout, digest);
  char buf[65536];
  for (;;)
    {
      ssize_t n = read (fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return nex_error_sys (err, errno, "read `%s`", path);
      if (n == 0)
        return 0;
      if (sink_write (sink, buf, (size_t)n, err) < 0)
        return -1;
    }
}

/* Fetches blob DIGEST from SRC into SINK (not verified yet). */
static int
source_blob (source_t *src, const char *digest, const char *accept, sink_t *sink, nex_error_t *err)
{
  if (src->layout)
    return layout_blob (src->layout, digest, sink, err);
  response_t resp;
  cleanup_free char *path = nex_xasprintf ("%s/blobs/%s", src->session->ref->repository, digest);
  return registry_get (src->session, path, accept, sink, &resp, err);
}

/* The media type of a manifest body: its `mediaType`, which must agree with the Content-Type it was served with
 * when both are there. */
static const char *
manifest_type (const json_t *m, const char *content_type, nex_error_t *err)
{
  const char *mt = json_string_value (json_object_get (m, "mediaType"));
  char served[256] = "";
  if (content_type)
    snprintf (served, sizeof served, "%.*s", (int)strcspn (content_type, "; "), content_type);
  if (mt && served[0] && strcmp (served, "application/json") != 0 && strcmp (mt, served) != 0)
    {
      nex_error_field (err, "image", "manifest says mediaType %s but was served as %s", mt, served);
      return NULL;
    }
  /* OCI manifests may leave mediaType out: then what it was served as says, or (a layout) its shape. */
  if (mt == NULL && served[0] && strcmp (served, "application/json") != 0)
    mt = served;
  if (mt == NULL)
    mt = json_object_get (m, "manifests") ? MT_OCI_INDEX : MT_OCI_MANIFEST;
  static const char *const known[] = { MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST };
  for (size_t i = 0; i < 4; i++)
    if (strcmp (mt, known[i]) == 0)
      return known[i];
  nex_error_field (err, "image", "manifest media type %s is not an OCI or Docker schema 2 manifest or index", mt);
  return NULL;
}

static int
is_index (const char *mt)
{
  return strcmp (mt, MT_OCI_INDEX) == 0 || strcmp (mt, MT_DOCKER_LIST) == 0;
}

/* A manifest fetched and checked: its body parsed into *OUT, its type, its digest. */
typedef struct manifest
{
  json_t *body;
  const char *type;
  char digest[72];
} manifest_t;

/* Fetches the manifest REFERENCE (a tag or a digest) from SRC, or (layout) descriptor DESC's blob.  EXPECT
 * (a digest, or NULL) and SIZE (< 0: unknown) are what it must be. */
static int
fetch_manifest (source_t *src, const char *reference, const char *expect, int64_t size, manifest_t *out,
                nex_error_t *err)
{
  sink_t s;
  sink_init (&s, -1, NEX_PULL_MAX_MANIFEST, "manifest");
  response_t resp = { 0 };
  int rc;
  if (src->layout)
    rc = layout_blob (src->layout, reference, &s, err);
  else
    {
      cleanup_free char *path = nex_xasprintf ("%s/manifests/%s", src->session->ref->repository, reference);
      rc = registry_get (src->session, path, ACCEPT_MANIFESTS, &s, &resp, err);
    }
  if (rc == 0)
    {
      sink_digest (&s, out->digest);
      crypto_hash_sha256_init (&s.sha); /* sink_verify hashes again: feed it the same bytes */
      crypto_hash_sha256_update (&s.sha, (const unsigned char *)s.buf, s.len);
      if (expect)
        rc = sink_verify (&s, expect, size, err);
      else if (nex_image_digest_valid (resp.content_digest) && strcmp (resp.content_digest, out->digest) != 0)
        rc = nex_error_field (err, "image", "manifest digest mismatch: the registry says %s, the bytes are %s",
                              resp.content_digest, out->digest);
    }
  json_error_t jerr;
  out->body = rc == 0 ? json_loadb (s.buf ? s.buf : "", s.len, 0, &jerr) : NULL;
  sink_release (&s);
  if (rc < 0)
    return -1;
  if (!json_is_object (out->body))
    return nex_error_field (err, "image", "manifest %s is not a JSON object", out->digest);
  out->type = manifest_type (out->body, src->layout ? NULL : resp.content_type, err);
  return out->type ? 0 : -1;
}

const char *
nex_distribution_host_arch (void)
{
  struct utsname u;
  if (uname (&u) < 0)
    return "unknown";
  if (strcmp (u.machine, "x86_64") == 0)
    return "amd64";
  if (strcmp (u.machine, "aarch64") == 0)
    return "arm64";
  if (strcmp (u.machine, "riscv64") == 0)
    return "riscv64";
  if (strcmp (u.machine, "s390x") == 0)
    return "s390x";
  if (strcmp (u.machine, "ppc64le") == 0)
    return "ppc64le";
  return "unknown";
}

/* The descriptor of INDEX's manifest for this host (os linux, its architecture; on arm64 variant v8 or none),
 * or NULL with *ERR saying which platforms there are. */
static const json_t *
pick_platform (const json_t *index, nex_error_t *err)
{
  const char *arch = nex_distribution_host_arch ();
  const json_t *list = json_object_get (index, "manifests");
  size_t i;
  const json_t *d;
  cleanup_free char *seen = nex_xstrdup ("");
  json_array_foreach (list, i, d)
  {
    const json_t *p = json_object_get (d, "platform");
    const char *os = json_string_value (json_object_get (p, "os"));
    const char *a = json_string_value (json_object_get (p, "architecture"));
    const char *variant = json_string_value (json_object_get (p, "variant"));
    if (os && a && strcmp (os, "linux") == 0 && strcmp (a, arch) == 0
        && (variant == NULL || strcmp (arch, "arm64") != 0 || strcmp (variant, "v8") == 0))
      return d;
    char *more = nex_xasprintf ("%s%s%s/%s%s%s", seen, seen[0] ? ", " : "", os ? os : "?", a ? a : "?",
                                variant ? "/" : "", variant ? variant : "");
    free (seen);
    seen = more;
  }
  nex_error_field (err, "image", "the image has no manifest for linux/%s (it has: %s)", arch, seen[0] ? seen : "none");
  return NULL;
}

/* A descriptor's digest and size, checked. */
static int
descriptor (const json_t *d, const char *what, const char **digest, int64_t *size, nex_error_t *err)
{
  *digest = json_string_value (json_object_get (d, "digest"));
  const json_t *sz = json_object_get (d, "size");
  if (!nex_image_digest_valid (*digest))
    return nex_error_field (err, "image", "%s descriptor has no sha256 digest", what);
  if (!json_is_integer (sz) || json_integer_value (sz) < 0)
    return nex_error_field (err, "image", "%s descriptor has no size", what);
  *size = json_integer_value (sz);
  return 0;
}

/* The layout's top-level descriptor for REF: by digest, by the tag annotation, or the only one. */
static const json_t *
layout_entry (const json_t *index, const nex_image_ref_t *ref, nex_error_t *err)
{
  const json_t *list = json_object_get (index, "manifests");
  const json_t *found = NULL;
  size_t i;
  const json_t *d;
  json_array_foreach (list, i, d)
  {
    const char *name
        = json_string_value (json_object_get (json_object_get (d, "annotations"), "org.opencontainers.image.ref.name"));
    const char *dig = json_string_value (json_object_get (d, "digest"));
    if ((ref->digest && dig && strcmp (dig, ref->digest) == 0)
        || (!ref->digest && ref->tag && name && strcmp (name, ref->tag) == 0))
      return d;
  }
  if (ref->digest || ref->tag)
    {
      nex_error_field (err, "image", "OCI layout %s has no manifest %s", ref->layout,
                       ref->digest ? ref->digest : ref->tag);
      return NULL;
    }
  if (json_array_size (list) == 1)
    found = json_array_get (list, 0);
  else
    nex_error_field (err, "image", "OCI layout %s holds %zu manifests: name one with :tag", ref->layout,
                     json_array_size (list));
  return found;
}

/* The image manifest REF names in SRC, through an index when there is one. */
static int
resolve (source_t *src, const nex_image_ref_t *ref, manifest_t *m, nex_error_t *err)
{
  if (src->layout)
    {
      cleanup_free char *path = nex_xasprintf ("%s/index.json", ref->layout);
      cleanup_error nex_error_t rerr = NULL;
      cleanup_free char *text = nex_file_read (path, NEX_PULL_MAX_MANIFEST, NULL, &rerr);
      if (text == NULL)
        return nex_error_field (err, "image", "OCI layout %s: %s", ref->layout, rerr->msg);
      cleanup_json json_t *index = json_loads (text, 0, NULL);
      const json_t *d = json_is_object (index) ? layout_entry (index, ref, err) : NULL;
      if (d == NULL)
        return json_is_object (index)
                   ? -1
                   : nex_error_field (err, "image", "OCI layout %s: index.json is no object", ref->layout);
      const char *digest;
      int64_t size;
      if (descriptor (d, "manifest", &digest, &size, err) < 0 || fetch_manifest (src, digest, digest, size, m, err) < 0)
        return -1;
    }
  else if (fetch_manifest (src, ref->digest ? ref->digest : ref->tag, ref->digest, -1, m, err) < 0)
    return -1;
  if (!is_index (m->type))
    return 0;
  const json_t *d = pick_platform (m->body, err);
  const char *digest;
  int64_t size;
  if (d == NULL || descriptor (d, "manifest", &digest, &size, err) < 0)
    return -1;
  cleanup_free char *child = nex_xstrdup (digest);
  json_decref (m->body);
  m->body = NULL;
  if (fetch_manifest (src, child, child, size, m, err) < 0)
    return -1;
  if (is_index (m->type))
    return nex_error_field (err, "image", "index %s names another index for this platform", child);
  return 0;
}

static int
layer_type_ok (const char *mt)
{
  static const char *const ok[] = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    if (mt && strcmp (mt, ok[i]) == 0)
      return 1;
  return 0;
}

char *
nex_distribution_blob_path (const char *blobs_dir, const char *digest)
{
  return nex_xasprintf ("%s/%s", blobs_dir, digest + 7);
}

/* Fetches blob DIGEST of SIZE bytes into the blob store unless it is there, verified. */
static int
store_blob (source_t *src, const nex_pull_opts_t *o, const char *digest, int64_t size, const char *what, uint64_t *done,
            uint64_t total, nex_error_t *err)
{
  cleanup_free char *path = nex_distribution_blob_path (o->blobs_dir, digest);
  struct stat st;
  if (stat (path, &st) == 0 && st.st_size == size)
    {
      *done += (uint64_t)size;
      if (o->progress)
        o->progress (o->progress_ctx, *done, total);
      return 0; /* verified when it was stored */
    }
  cleanup_free char *tmp = nex_xasprintf ("%s/.pull-XXXXXX", o->blobs_dir);
  cleanup_close int fd = mkostemp (tmp, O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "create a blob in `%s`", o->blobs_dir);
  sink_t s;
  sink_init (&s, fd, strcmp (what, "config") == 0 ? NEX_PULL_MAX_CONFIG : NEX_PULL_MAX_LAYER_BYTES, what);
  s.progress_done = done;
  s.opts = o;
  s.progress_total = total;
  uint64_t before = *done;
  int rc = source_blob (src, digest, NULL, &s, err);
  if (rc == 0)
    {
      /* A redirect or a retry started the sink again: count what was really received. */
      *done = before + s.bytes;
      rc = sink_verify (&s, digest, size, err);
    }
  if (rc == 0 && (fsync (fd) < 0 || rename (tmp, path) < 0))
    rc = nex_error_sys (err, errno, "store blob %s", digest);
  if (rc < 0)
    unlink (tmp);
  sink_release (&s);
  return rc;
}

static int
read_config (const nex_pull_opts_t *o, const char *digest, json_t **out, nex_error_t *err)
{
  cleanup_free char *path = nex_distribution_blob_path (o->blobs_dir, digest);
  cleanup_error nex_error_t rerr = NULL;
  cleanup_free char *text = nex_file_read (path, NEX_PULL_MAX_CONFIG, NULL, &rerr);
  if (text == NULL)
    return nex_error_set (err, NEX_ERR_SYSTEM, "image config: %s", rerr->msg);
  *out = json_loads (text, 0, NULL);
  if (!json_is_object (*out))
    return nex_error_field (err, "image", "image config %s is not a JSON object", digest);
  return 0;
}

static int
pull_from (source_t *src, const nex_pull_opts_t *o, const nex_image_ref_t *ref, nex_pulled_t *out, nex_error_t *err)
{
  manifest_t m = { 0 };
  int rc = resolve (src, ref, &m, err);
  cleanup_json json_t *body = m.body;
  if (rc < 0)
    return -1;
  memcpy (out->digest, m.digest, sizeof out->digest);
  const json_t *config = json_object_get (body, "config");
  const json_t *layers = json_object_get (body, "layers");
  const char *cdigest;
  int64_t csize;
  if (descriptor (config, "config", &cdigest, &csize, err) < 0)
    return -1;
  if (csize > (int64_t)NEX_PULL_MAX_CONFIG)
    return nex_error_set (err, NEX_ERR_TOO_LARGE, "image config is %lld bytes, more than %u", (long long)csize,
                          NEX_PULL_MAX_CONFIG);
  if (!json_is_array (layers) || json_array_size (layers) == 0)
    return nex_error_field (err, "image", "manifest %s has no layers", m.digest);
  if (json_array_size (layers) > NEX_PULL_MAX_LAYERS)
    return nex_error_set (err, NEX_ERR_TOO_LARGE, "image has %zu layers, more than %d", json_array_size (layers),
                          NEX_PULL_MAX_LAYERS);
  out->n_layers = json_array_size (layers);
  out->layers = nex_xzalloc (out->n_layers * sizeof *out->layers);
  uint64_t total = (uint64_t)csize;
  for (size_t i = 0; i < out->n_layers; i++)
    {
      const json_t *l = json_array_get (layers, i);
      const char *digest;
      int64_t size;
      const char *mt = json_string_value (json_object_get (l, "mediaType"));
      if (descriptor (l, "layer", &digest, &size, err) < 0)
        return -1;
      if (json_object_get (l, "urls"))
        return nex_error_field (err, "image", "layer %s is a foreign layer (urls): not supported", digest);
      if (!layer_type_ok (mt))
        return nex_error_field (err, "image", "layer %s has media type %s, which nexd cannot unpack", digest,
                                mt ? mt : "(none)");
      snprintf (out->layers[i].digest, sizeof out->layers[i].digest, "%s", digest);
      out->layers[i].media_type = nex_xstrdup (mt);
      out->layers[i].size = (uint64_t)size;
      total += (uint64_t)size;
    }
  out->bytes = total;
  uint64_t done = 0;
  if (store_blob (src, o, cdigest, csize, "config", &done, total, err) < 0)
    return -1;
  snprintf (out->config_digest, sizeof out->config_digest, "%s", cdigest);
  if (read_config (o, cdigest, &out->config, err) < 0)
    return -1;
  for (size_t i = 0; i < out->n_layers; i++)
    if (store_blob (src, o, out->layers[i].digest, (int64_t)out->layers[i].size, "layer", &done, total, err) < 0)
      return -1;
  return 0;
}

int
nex_distribution_pull (const nex_image_ref_t *ref, const nex_pull_opts_t *o, nex_pulled_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  if (sodium_init () < 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "libsodium failed to start");
  source_t src = { 0 };
  cleanup_with (session_release) session_t session = { 0 };
  int rc;
  if (ref->layout)
    {
      src.layout = ref->layout;
      rc = pull_from (&src, o, ref, out, err);
    }
  else
    {
      rc = session_open (&session, ref, o, err);
      src.session = &session;
      if (rc == 0)
        rc = pull_from (&src, o, ref, out, err);
    }
  if (rc < 0)
    nex_pulled_release (out);
  return rc;
}

void
nex_pulled_release (nex_pulled_t *p)
{
  for (size_t i = 0; i < p->n_layers && p->layers; i++)
    free (p->layers[i].media_type);
  free (p->layers);
  json_decref (p->config);
  memset (p, 0, sizeof *p);
}
