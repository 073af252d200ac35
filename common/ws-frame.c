/* SPDX-License-Identifier: Apache-2.0 */
/* ws-frame.c — see ws-frame.h. */
#include "common/ws-frame.h"

#include <string.h>

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

/* Parses one frame sent by a client (MASKED: every frame must be masked) or by a server (no frame may be). */
static long
frame_parse (uint8_t *buf, size_t len, size_t max_payload, nex_ws_frame_t *out, int *close_code, int masked_role)
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
   * attacker-chosen bytes to intermediaries.  Servers must not. */
  if (masked != masked_role)
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
  size_t mask_len = masked ? 4 : 0;
  if (len - at < mask_len + plen)
    return 0;
  const uint8_t *mask = buf + at;
  uint8_t *payload = buf + at + mask_len;
  for (uint64_t i = 0; masked && i < plen; i++)
    payload[i] ^= mask[i & 3];
  out->fin = fin;
  out->opcode = opcode;
  out->payload = payload;
  out->len = (size_t)plen;
  *close_code = 0;
  return (long)(at + mask_len + plen);
}

long
nex_ws_frame_parse (uint8_t *buf, size_t len, size_t max_payload, nex_ws_frame_t *out, int *close_code)
{
  return frame_parse (buf, len, max_payload, out, close_code, 1);
}

long
nex_ws_frame_parse_server (uint8_t *buf, size_t len, size_t max_payload, nex_ws_frame_t *out, int *close_code)
{
  return frame_parse (buf, len, max_payload, out, close_code, 0);
}

size_t
nex_ws_frame_header_masked (uint8_t out[NEX_WS_MAX_CLIENT_HEADER], int opcode, uint64_t len, const uint8_t mask[4])
{
  size_t n = nex_ws_frame_header (out, opcode, len);
  out[1] |= 0x80;
  memcpy (out + n, mask, 4);
  return n + 4;
}
