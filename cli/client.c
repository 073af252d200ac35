/* client.c — see client.h. */
#include "cli/client.h"

#include <stdarg.h>
#include <string.h>

#include <curl/curl.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

/* Answers larger than this are refused: a CLI has no use for more, and a wrong server could send anything. */
#define MAX_ANSWER_BYTES (64 * 1024 * 1024)
#define CONNECT_TIMEOUT_S 10L

struct nex_client
{
  CURL *curl;
  char *server;
  char *auth_header; /* "Authorization: Bearer ..." or NULL */
  char *cacert;      /* PEM file of trusted CAs, or NULL for the system's */
};

typedef struct answer
{
  char *buf;
  size_t len;
  int too_large;
} answer_t;

static size_t
on_data (char *data, size_t size, size_t nmemb, void *userdata)
{
  answer_t *a = userdata;
  size_t n = size * nmemb;
  if (a->len + n > MAX_ANSWER_BYTES)
    {
      a->too_large = 1;
      return 0; /* makes libcurl fail the transfer */
    }
  a->buf = nex_xrealloc (a->buf, a->len + n + 1);
  memcpy (a->buf + a->len, data, n);
  a->len += n;
  a->buf[a->len] = '\0';
  return n;
}

nex_client_t *
nex_client_new (const char *server, const char *token)
{
  static int initialised;
  if (!initialised)
    {
      curl_global_init (CURL_GLOBAL_DEFAULT);
      initialised = 1;
    }
  nex_client_t *c = nex_xzalloc (sizeof *c);
  c->curl = curl_easy_init ();
  if (c->curl == NULL)
    {
      fprintf (stderr, "nex: libcurl failed to initialise\n");
      abort ();
    }
  size_t n = strlen (server);
  while (n > 0 && server[n - 1] == '/')
    n--;
  c->server = nex_xstrndup (server, n);
  if (token && *token)
    c->auth_header = nex_xasprintf ("Authorization: Bearer %s", token);
  return c;
}

void
nex_client_free (nex_client_t *c)
{
  if (c == NULL)
    return;
  curl_easy_cleanup (c->curl);
  free (c->server);
  free (c->auth_header);
  free (c->cacert);
  free (c);
}

void
nex_client_set_cacert (nex_client_t *c, const char *path)
{
  free (c->cacert);
  c->cacert = path ? nex_xstrdup (path) : NULL;
}

char *
nex_client_path (nex_client_t *c, const char *path, ...)
{
  va_list ap;
  va_start (ap, path);
  char *out = nex_xstrdup (path);
  char sep = strchr (path, '?') ? '&' : '?';
  for (;;)
    {
      const char *key = va_arg (ap, const char *);
      if (key == NULL)
        break;
      const char *value = va_arg (ap, const char *);
      if (value == NULL)
        continue;
      char *escaped = curl_easy_escape (c->curl, value, 0);
      char *next = nex_xasprintf ("%s%c%s=%s", out, sep, key, escaped ? escaped : "");
      curl_free (escaped);
      free (out);
      out = next;
      sep = '&';
    }
  va_end (ap);
  return out;
}

/* Turns an error answer (problem JSON, or anything else) into ERR. */
static int
api_error (long status, const answer_t *a, nex_error_t *err)
{
  cleanup_json json_t *p = a->buf ? json_loadb (a->buf, a->len, 0, NULL) : NULL;
  const char *detail = json_string_value (json_object_get (p, "detail"));
  const char *field = json_string_value (json_object_get (p, "field"));
  nex_error_kind_t kind = status == 404 ? NEX_ERR_NOT_FOUND : status == 422 ? NEX_ERR_INVALID : NEX_ERR_SYSTEM;
  if (detail == NULL)
    return nex_error_set (err, kind, "the node answered HTTP %ld", status);
  /* Field messages ("must be a string") need their field to make sense. */
  if (field && *field && strncmp (detail, field, strlen (field)) != 0)
    return nex_error_set (err, kind, "%s: %s", field, detail);
  return nex_error_set (err, kind, "%s", detail);
}

/* Runs the transfer set up on c->curl and interprets the answer. */
static int
perform (nex_client_t *c, const char *method, const char *path, struct curl_slist *headers, long *status, json_t **out,
         nex_error_t *err)
{
  answer_t a = { 0 };
  cleanup_free char *url = nex_xasprintf ("%s%s", c->server, path);
  char errbuf[CURL_ERROR_SIZE] = "";
  if (c->auth_header)
    headers = curl_slist_append (headers, c->auth_header);
  headers = curl_slist_append (headers, "Accept: application/json, application/problem+json");
  curl_easy_setopt (c->curl, CURLOPT_URL, url);
  curl_easy_setopt (c->curl, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt (c->curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt (c->curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt (c->curl, CURLOPT_WRITEDATA, &a);
  curl_easy_setopt (c->curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt (c->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
  curl_easy_setopt (c->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c->curl, CURLOPT_USERAGENT, "nex-cli");
  if (c->cacert)
    curl_easy_setopt (c->curl, CURLOPT_CAINFO, c->cacert);
  CURLcode rc = curl_easy_perform (c->curl);
  curl_slist_free_all (headers);
  *status = 0;
  *out = NULL;
  if (rc != CURLE_OK)
    {
      int r;
      if (a.too_large)
        r = nex_error_set (err, NEX_ERR_TOO_LARGE, "the answer of %s is larger than %d MiB", c->server,
                           MAX_ANSWER_BYTES >> 20);
      else
        r = nex_error_set (err, NEX_ERR_UNAVAILABLE, "cannot reach %s: %s", c->server,
                           errbuf[0] ? errbuf : curl_easy_strerror (rc));
      free (a.buf);
      return r;
    }
  curl_easy_getinfo (c->curl, CURLINFO_RESPONSE_CODE, status);
  if (*status < 200 || *status > 299)
    {
      int r = api_error (*status, &a, err);
      free (a.buf);
      return r;
    }
  json_error_t jerr;
  *out = a.len ? json_loadb (a.buf, a.len, 0, &jerr) : json_object ();
  free (a.buf);
  if (*out == NULL)
    return nex_error_set (err, NEX_ERR_PROTOCOL, "the answer of %s is not JSON: %s", c->server, jerr.text);
  return 0;
}

int
nex_client_call (nex_client_t *c, const char *method, const char *path, const json_t *body, long *status, json_t **out,
                 nex_error_t *err)
{
  curl_easy_reset (c->curl);
  struct curl_slist *headers = NULL;
  cleanup_free char *text = NULL;
  if (body)
    {
      text = json_dumps (body, JSON_COMPACT);
      headers = curl_slist_append (headers, "Content-Type: application/json");
      curl_easy_setopt (c->curl, CURLOPT_POSTFIELDS, text);
      curl_easy_setopt (c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen (text));
    }
  return perform (c, method, path, headers, status, out, err);
}

int
nex_client_upload (nex_client_t *c, const char *path, FILE *f, int64_t size, long *status, json_t **out,
                   nex_error_t *err)
{
  curl_easy_reset (c->curl);
  struct curl_slist *headers = NULL;
  /* libcurl asks with "Expect: 100-continue" before sending a large body, so a node that refuses the upload
   * (too large, not allowed) answers before the bytes travel. */
  headers = curl_slist_append (headers, "Content-Type: application/octet-stream");
  curl_easy_setopt (c->curl, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt (c->curl, CURLOPT_READDATA, f);
  curl_easy_setopt (c->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
  return perform (c, "POST", path, headers, status, out, err);
}
