/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/http.c — HTTP(S) artifact fetching with libcurl (contract in artifacts/http.h). */
#include "server/artifacts/http.h"

#include <string.h>

#include <curl/curl.h>

#include "common/cleanup.h"

static void
easy_cleanup (CURL **c)
{
  if (*c)
    curl_easy_cleanup (*c);
}
#define cleanup_curl cleanup_with (easy_cleanup)

static void
url_cleanup (CURLU **u)
{
  if (*u)
    curl_url_cleanup (*u);
}
#define cleanup_curlu cleanup_with (url_cleanup)

int
nex_artifact_http_check (const char *url, nex_error_t *err)
{
  cleanup_curlu CURLU *u = curl_url ();
  if (u == NULL)
    return nex_error_set (err, NEX_ERR_SYSTEM, "out of memory");
  if (curl_url_set (u, CURLUPART_URL, url, 0) != CURLUE_OK)
    return nex_error_field (err, "artifact", "is not a well-formed http(s) URL");
  char *scheme = NULL, *host = NULL;
  int ok = curl_url_get (u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
           && curl_url_get (u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] != '\0'
           && (strcmp (scheme, "http") == 0 || strcmp (scheme, "https") == 0);
  curl_free (scheme);
  curl_free (host);
  if (!ok)
    return nex_error_field (err, "artifact", "http(s) URLs need a host: http://host/path");
  return 0;
}

/* What the write callback needs: where bytes go, and the first error (libcurl only knows that we stopped). */
typedef struct transfer
{
  nex_artifact_write_t write;
  void *sink;
  nex_error_t err;
} transfer_t;

static size_t
on_body (char *data, size_t size, size_t n, void *ctx)
{
  transfer_t *t = ctx;
  if (t->write (t->sink, data, size * n, &t->err) < 0)
    return 0; /* makes libcurl stop with CURLE_WRITE_ERROR */
  return size * n;
}

int
nex_artifact_http_get (const char *url, uint64_t max_bytes, nex_artifact_write_t write, void *sink, nex_error_t *err)
{
  cleanup_curl CURL *c = curl_easy_init ();
  if (c == NULL)
    return nex_error_set (err, NEX_ERR_SYSTEM, "cannot start an HTTP transfer");
  transfer_t t = { .write = write, .sink = sink };
  char curl_msg[CURL_ERROR_SIZE] = "";
  curl_easy_setopt (c, CURLOPT_URL, url);
  curl_easy_setopt (c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt (c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt (c, CURLOPT_MAXREDIRS, (long)NEX_HTTP_MAX_REDIRECTS);
  curl_easy_setopt (c, CURLOPT_CONNECTTIMEOUT, (long)NEX_HTTP_CONNECT_TIMEOUT_S);
  curl_easy_setopt (c, CURLOPT_TIMEOUT, (long)NEX_HTTP_TOTAL_TIMEOUT_S);
  curl_easy_setopt (c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt (c, CURLOPT_LOW_SPEED_TIME, (long)NEX_HTTP_STALL_S);
  curl_easy_setopt (c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes);
  curl_easy_setopt (c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (c, CURLOPT_FAILONERROR, 1L); /* an error page is not an artifact: stop at its status */
  curl_easy_setopt (c, CURLOPT_USERAGENT, "nexd");
  curl_easy_setopt (c, CURLOPT_ERRORBUFFER, curl_msg);
  curl_easy_setopt (c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt (c, CURLOPT_WRITEDATA, &t);
  CURLcode rc = curl_easy_perform (c);
  if (t.err)
    {
      /* Our own refusal (too large, a full disk) says more than libcurl's "write error". */
      if (err)
        *err = t.err;
      else
        nex_error_free (&t.err);
      return -1;
    }
  if (rc == CURLE_FILESIZE_EXCEEDED)
    return nex_error_set (err, NEX_ERR_TOO_LARGE, "artifact is larger than %llu bytes", (unsigned long long)max_bytes);
  long status = 0;
  curl_easy_getinfo (c, CURLINFO_RESPONSE_CODE, &status);
  if (rc == CURLE_HTTP_RETURNED_ERROR)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "fetch `%s`: the server answered HTTP %ld", url, status);
  if (rc != CURLE_OK)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "fetch `%s`: %s", url,
                          curl_msg[0] ? curl_msg : curl_easy_strerror (rc));
  if (status != 200)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "fetch `%s`: the server answered HTTP %ld", url, status);
  return 0;
}
