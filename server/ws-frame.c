/* ws-frame.c — see ws-frame.h.  SHA-1 and base64 for the handshake come from libwebsockets; a nexd configured
 * with --disable-websockets refuses handshakes (503). */
#include "server/ws-frame.h"

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

size_t
nex_ws_frame_header (uint8_t out[NEX_WS_MAX_HEADER], int opcode, uint64_t len)
{
  out[0] = (uint8_t)(0x80 | (opcode & 0x0f)); /* FIN: nexd never fragments */
  if (len < 126)
    {
      out[1] = (uint8_t)len;
      return 2;
    }
  if (len <= 0xffff)
    {
      out[1] = 126;
      out[2] = (uint8_t)(len >> 8);
      out[3] = (uint8_t)len;
      return 4;
    }
  out[1] = 127;
  for (int i = 0; i < 8; i++)
    out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

long
nex_ws_frame_parse (uint8_t *buf, size_t len, size_t max_payload, nex_ws_frame_t *out, int *close_code)
{
  if (len < 2)
    return 0;
  int fin = buf[0] >> 7;
  int rsv = (buf[0] >> 4) & 0x7;
  int opcode = buf[0] & 0x0f;
  int masked = buf[1] >> 7;
  uint64_t plen = buf[1] & 0x7f;
  size_t at = 2;
  *close_code = NEX_WS_CLOSE_PROTOCOL;
  /* No extension was negotiated, so reserved bits must be clear; opcodes 3-7 and 11-15 are reserved. */
  if (rsv != 0 || (opcode > NEX_WS_BINARY && opcode < NEX_WS_CLOSE) || opcode > NEX_WS_PONG)
    return -1;
  /* Clients must mask every frame (section 5.1): it is what keeps a browser from being made to send
   * attacker-chosen bytes to intermediaries. */
  if (!masked)
    return -1;
  if (opcode >= NEX_WS_CLOSE && (!fin || plen > 125))
    return -1;
  if (plen == 126)
    {
      if (len < 4)
        return 0;
      plen = (uint64_t)buf[2] << 8 | buf[3];
      at = 4;
    }
  else if (plen == 127)
    {
      if (len < 10)
        return 0;
      plen = 0;
      for (int i = 0; i < 8; i++)
        plen = plen << 8 | buf[2 + i];
      if (plen >> 63)
        return -1;
      at = 10;
    }
  if (plen > max_payload)
    {
      *close_code = NEX_WS_CLOSE_TOO_BIG;
      return -1;
    }
  if (len - at < 4 + plen)
    return 0;
  const uint8_t *mask = buf + at;
  uint8_t *payload = buf + at + 4;
  for (uint64_t i = 0; i < plen; i++)
    payload[i] ^= mask[i & 3];
  out->fin = fin;
  out->opcode = opcode;
  out->payload = payload;
  out->len = (size_t)plen;
  *close_code = 0;
  return (long)(at + 4 + plen);
}
