/* SPDX-License-Identifier: Apache-2.0 */
/* client.c — see client.h. */
#include "cli/client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <sodium.h>

#include "common/cleanup.h"
#include "common/ws-frame.h"
#include "common/xalloc.h"

/* Answers larger than this are refused: a CLI has no use for more, and a wrong server could send anything. */
#define MAX_ANSWER_BYTES (64 * 1024 * 1024)
#define CONNECT_TIMEOUT_S 10L
#define WS_MAX_MESSAGE (1024 * 1024)   /* the largest frame a node may send this client */
#define WS_MAX_ANSWER_HEAD (64 * 1024) /* the handshake's answer: status line and headers */
#define WS_IO_TIMEOUT_MS 30000         /* how long a send or the handshake's answer may wait */

struct nex_client
{
  CURL *curl;
  char *server;
  char *auth_header; /* "Authorization: Bearer ..." or NULL */
  char *cacert;      /* PEM file of trusted CAs, or NULL for the system's */
  /* the websocket, once nex_client_ws_open succeeded */
  int ws_fd;      /* the connection's socket (libcurl's), -1 when none */
  uint8_t *ws_in; /* bytes received, not yet returned as messages */
  size_t ws_len, ws_cap, ws_used;
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
  c->ws_fd = -1;
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
  free (c->ws_in);
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

/* --- websockets --------------------------------------------------------------------------------------------- */

/* Waits until the websocket's socket is ready for EVENTS; -1 with ERR after WS_IO_TIMEOUT_MS. */
static int
ws_wait (nex_client_t *c, short events, nex_error_t *err)
{
  struct pollfd p = { .fd = c->ws_fd, .events = events };
  int r;
  do
    r = poll (&p, 1, WS_IO_TIMEOUT_MS);
  while (r < 0 && errno == EINTR);
  if (r <= 0)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "%s does not answer", c->server);
  return 0;
}

/* Sends N bytes in full. */
static int
ws_send_raw (nex_client_t *c, const void *data, size_t n, nex_error_t *err)
{
  const uint8_t *p = data;
  while (n > 0)
    {
      size_t sent = 0;
      CURLcode rc = curl_easy_send (c->curl, p, n, &sent);
      if (rc == CURLE_AGAIN)
        {
          if (ws_wait (c, POLLOUT, err) < 0)
            return -1;
          continue;
        }
      if (rc != CURLE_OK)
        return nex_error_set (err, NEX_ERR_UNAVAILABLE, "lost the connection to %s: %s", c->server,
                              curl_easy_strerror (rc));
      p += sent;
      n -= sent;
    }
  return 0;
}

/* Reads what is there into ws_in (growing it up to one maximal frame).  1 read something, 0 nothing yet, -1 the
 * connection ended or failed. */
static int
ws_fill (nex_client_t *c, nex_error_t *err)
{
  if (c->ws_used > 0)
    {
      memmove (c->ws_in, c->ws_in + c->ws_used, c->ws_len - c->ws_used);
      c->ws_len -= c->ws_used;
      c->ws_used = 0;
    }
  if (c->ws_len == c->ws_cap)
    {
      if (c->ws_cap >= WS_MAX_MESSAGE + NEX_WS_MAX_HEADER)
        return nex_error_set (err, NEX_ERR_PROTOCOL, "%s sent an oversized websocket frame", c->server);
      c->ws_cap = c->ws_cap ? c->ws_cap * 2 : 16384;
      c->ws_in = nex_xrealloc (c->ws_in, c->ws_cap);
    }
  size_t got = 0;
  CURLcode rc = curl_easy_recv (c->curl, c->ws_in + c->ws_len, c->ws_cap - c->ws_len, &got);
  if (rc == CURLE_AGAIN)
    return 0;
  if (rc != CURLE_OK || got == 0)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "%s closed the connection", c->server);
  c->ws_len += got;
  return 1;
}

/* The value of header NAME in the answer's head HEAD (NUL-terminated, lines ending in CRLF), copied; or NULL. */
static char *
ws_header (const char *head, const char *name)
{
  size_t nl = strlen (name);
  for (const char *l = strstr (head, "\r\n"); l && l[2]; l = strstr (l + 2, "\r\n"))
    if (strncasecmp (l + 2, name, nl) == 0 && l[2 + nl] == ':')
      {
        const char *v = l + 3 + nl;
        v += strspn (v, " \t");
        return nex_xstrndup (v, strcspn (v, "\r"));
      }
  return NULL;
}

int
nex_client_ws_open (nex_client_t *c, const char *path, long *status, nex_error_t *err)
{
  *status = 0;
  curl_easy_reset (c->curl);
  cleanup_free char *url = nex_xasprintf ("%s%s", c->server, path);
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt (c->curl, CURLOPT_URL, url);
  curl_easy_setopt (c->curl, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt (c->curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt (c->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
  curl_easy_setopt (c->curl, CURLOPT_NOSIGNAL, 1L);
  if (c->cacert)
    curl_easy_setopt (c->curl, CURLOPT_CAINFO, c->cacert);
  CURLcode rc = curl_easy_perform (c->curl);
  curl_socket_t sock = CURL_SOCKET_BAD;
  if (rc == CURLE_OK)
    rc = curl_easy_getinfo (c->curl, CURLINFO_ACTIVESOCKET, &sock);
  if (rc != CURLE_OK || sock == CURL_SOCKET_BAD)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "cannot reach %s: %s", c->server,
                          errbuf[0] ? errbuf : curl_easy_strerror (rc));
  c->ws_fd = (int)sock;

  /* The key only has to be fresh: it keeps caches and non-websocket servers from answering by mistake. */
  unsigned char nonce[16];
  char key[sodium_base64_ENCODED_LEN (16, sodium_base64_VARIANT_ORIGINAL)];
  randombytes_buf (nonce, sizeof nonce);
  sodium_bin2base64 (key, sizeof key, nonce, sizeof nonce, sodium_base64_VARIANT_ORIGINAL);
  const char *host = strstr (c->server, "://") + 3;
  cleanup_free char *request
      = nex_xasprintf ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: nex-cli\r\n"
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s%s"
                       "Accept: application/problem+json\r\n\r\n",
                       path, host, key, c->auth_header ? c->auth_header : "", c->auth_header ? "\r\n" : "");
  if (ws_send_raw (c, request, strlen (request), err) < 0)
    return -1;

  /* The answer's head; what follows it is the first frames (101) or the problem's body. */
  char *end;
  for (;;)
    {
      if (c->ws_in && c->ws_len > 0 && (end = memmem (c->ws_in, c->ws_len, "\r\n\r\n", 4)) != NULL)
        break;
      if (c->ws_len > WS_MAX_ANSWER_HEAD)
        return nex_error_set (err, NEX_ERR_PROTOCOL, "the answer of %s has an oversized head", c->server);
      int r = ws_fill (c, err);
      if (r < 0)
        return -1;
      if (r == 0 && ws_wait (c, POLLIN, err) < 0)
        return -1;
    }
  size_t head_len = (size_t)(end - (char *)c->ws_in) + 4;
  cleanup_free char *head = nex_xstrndup ((char *)c->ws_in, head_len);
  c->ws_used = head_len;
  if (sscanf (head, "HTTP/1.1 %ld", status) != 1)
    return nex_error_set (err, NEX_ERR_PROTOCOL, "%s does not speak HTTP/1.1", c->server);
  if (*status == 101)
    {
      cleanup_free char *upgrade = ws_header (head, "Upgrade");
      if (upgrade == NULL || strcasecmp (upgrade, "websocket") != 0)
        return nex_error_set (err, NEX_ERR_PROTOCOL, "%s switched to something else than a websocket", c->server);
      return 0;
    }
  /* A refusal: its problem JSON, as long as Content-Length says. */
  cleanup_free char *length = ws_header (head, "Content-Length");
  size_t want = length ? strtoul (length, NULL, 10) : 0;
  if (want > WS_MAX_ANSWER_HEAD)
    want = WS_MAX_ANSWER_HEAD;
  while (c->ws_len - c->ws_used < want)
    {
      int r = ws_fill (c, err);
      if (r < 0)
        break;
      if (r == 0 && ws_wait (c, POLLIN, err) < 0)
        break;
    }
  nex_error_free (err);
  size_t have = c->ws_len - c->ws_used;
  answer_t a = { .buf = nex_xstrndup ((char *)c->ws_in + c->ws_used, have < want ? have : want) };
  a.len = strlen (a.buf);
  int r = api_error (*status, &a, err);
  free (a.buf);
  return r;
}

int
nex_client_ws_fd (nex_client_t *c)
{
  return c->ws_fd;
}

int
nex_client_ws_send (nex_client_t *c, int opcode, const void *data, size_t len, nex_error_t *err)
{
  uint8_t mask[4];
  randombytes_buf (mask, sizeof mask);
  cleanup_free uint8_t *frame = nex_xmalloc (NEX_WS_MAX_CLIENT_HEADER + len);
  size_t n = nex_ws_frame_header_masked (frame, opcode, len, mask);
  const uint8_t *p = data;
  for (size_t i = 0; i < len; i++)
    frame[n + i] = p[i] ^ mask[i & 3];
  return ws_send_raw (c, frame, n + len, err);
}

int
nex_client_ws_recv (nex_client_t *c, int *opcode, const uint8_t **data, size_t *len, nex_error_t *err)
{
  for (;;)
    {
      nex_ws_frame_t f;
      int code;
      long used = nex_ws_frame_parse_server (c->ws_in + c->ws_used, c->ws_len - c->ws_used, WS_MAX_MESSAGE, &f, &code);
      if (used < 0)
        return nex_error_set (err, NEX_ERR_PROTOCOL, "%s broke the websocket protocol (%d)", c->server, code);
      if (used > 0)
        {
          c->ws_used += (size_t)used;
          if (f.opcode == NEX_WS_PING)
            {
              if (nex_client_ws_send (c, NEX_WS_PONG, f.payload, f.len, err) < 0)
                return -1;
              continue;
            }
          if (f.opcode == NEX_WS_PONG)
            continue;
          /* nexd never fragments its messages. */
          *opcode = f.opcode;
          *data = f.payload;
          *len = f.len;
          return 1;
        }
      int r = ws_fill (c, err);
      if (r <= 0)
        return r;
    }
}
