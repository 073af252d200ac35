/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/http.h — fetching artifacts over HTTP(S) with libcurl, for artifact.c's http and https schemes.
 *
 * Kept apart from artifact.c so that the cache and its checks know nothing of libcurl: this file checks a URL's
 * shape and streams a response body into artifact.c's sink (which hashes and bounds it); everything after that
 * (digest, ELF check, publishing) is the shared path. */
#ifndef NEX_ARTIFACT_HTTP_H
#define NEX_ARTIFACT_HTTP_H

#include <stdint.h>

#include "common/error.h"
#include "server/artifacts/artifact.h"

#define NEX_HTTP_CONNECT_TIMEOUT_S 10 /* to open the connection */
#define NEX_HTTP_STALL_S 30           /* a transfer slower than 1 KiB/s for this long is abandoned */
#define NEX_HTTP_TOTAL_TIMEOUT_S 600  /* the whole transfer, redirects included */
#define NEX_HTTP_MAX_REDIRECTS 5

/* Checks that URL is an absolute http:// or https:// URL with a host (libcurl's parser, so that what is
 * checked is what will be fetched).  NEX_ERR_INVALID naming the field "artifact" otherwise.  Any thread. */
int nex_artifact_http_check (const char *url, nex_error_t *err);

/* GETs URL and hands the body to WRITE (SINK, ...) as it arrives; at most MAX_BYTES (WRITE enforces it too).
 * Follows at most NEX_HTTP_MAX_REDIRECTS redirects, to http(s) only; anything but a final 200 fails, naming the
 * status.  libcurl's usual proxy variables (http_proxy, ...) in nexd's environment apply.
 * Blocks its thread for the transfer (bounded by the timeouts above).  0 or -1. */
int nex_artifact_http_get (const char *url, uint64_t max_bytes, nex_artifact_write_t write, void *sink,
                           nex_error_t *err);

#endif
