/* SPDX-License-Identifier: Apache-2.0 */
/* api/ws-accept.c — see api/ws-accept.h.  SHA-1 and base64 come from libwebsockets; a nexd configured with
 * --disable-websockets refuses handshakes (503). */
#include "server/api/ws-accept.h"

#include <string.h>

#include "autoconfig.h"
#ifdef HAVE_WEBSOCKETS
#include <libwebsockets.h>
#endif

/* Appended to the client's key before hashing (RFC 6455 section 1.3). */
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int
nex_ws_accept_key (const char *key, char out[29], nex_error_t *err)
{
  /* 16 bytes in base64: 22 characters of the alphabet and "==". */
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (key == NULL || strlen (key) != 24 || strspn (key, alphabet) != 22 || strcmp (key + 22, "==") != 0)
    return nex_error_set (err, NEX_ERR_MALFORMED, "Sec-WebSocket-Key must be the base64 of 16 bytes");
#ifndef HAVE_WEBSOCKETS
  return nex_error_set (err, NEX_ERR_UNAVAILABLE, "this nexd was built without websockets (--disable-websockets)");
#else
  char buf[24 + sizeof WS_GUID];
  memcpy (buf, key, 24);
  memcpy (buf + 24, WS_GUID, sizeof WS_GUID);
  unsigned char sha[20];
  lws_SHA1 ((const unsigned char *)buf, 24 + sizeof WS_GUID - 1, sha);
  char b64[40]; /* libwebsockets wants room beyond the 28 characters and the NUL */
  if (lws_b64_encode_string ((const char *)sha, sizeof sha, b64, sizeof b64) != 28)
    return nex_error_set (err, NEX_ERR_SYSTEM, "base64 of the accept key failed");
  memcpy (out, b64, 28);
  out[28] = '\0';
  return 0;
#endif
}
