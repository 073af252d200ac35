/* SPDX-License-Identifier: Apache-2.0 */
/* ws-frame.h — RFC 6455 websocket framing for both ends: frames a server sends (never masked) and receives
 * (always masked, from hostile clients), and — for the `nex` CLI's client — frames a client sends and receives.
 *
 * nexd serves websockets on the REST API's own port: libmicrohttpd answers the opening handshake (101) and
 * hands over the socket (ARCHITECTURE.md says why this is not libwebsockets), and these functions speak the
 * protocol on it; the handshake's accept key is api/ws-accept.h.  They do no I/O and keep no state, so the
 * unit tests drive them with any bytes. */
#ifndef NEX_COMMON_WS_FRAME_H
#define NEX_COMMON_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 6455 section 5.2). */
#define NEX_WS_CONTINUATION 0x0
#define NEX_WS_TEXT 0x1
#define NEX_WS_BINARY 0x2
#define NEX_WS_CLOSE 0x8
#define NEX_WS_PING 0x9
#define NEX_WS_PONG 0xA

/* Close codes nexd sends or understands (section 7.4.1). */
#define NEX_WS_CLOSE_NORMAL 1000
#define NEX_WS_CLOSE_GOING_AWAY 1001
#define NEX_WS_CLOSE_PROTOCOL 1002
#define NEX_WS_CLOSE_POLICY 1008
#define NEX_WS_CLOSE_TOO_BIG 1009

/* Largest header a server frame needs: 2 bytes, plus 8 for a 64-bit length; a client's adds its 4-byte mask. */
#define NEX_WS_MAX_HEADER 10
#define NEX_WS_MAX_CLIENT_HEADER 14

/* Writes the header of an unmasked, final frame of OPCODE carrying LEN payload bytes into OUT; returns its size
 * (2, 4 or 10). */
size_t nex_ws_frame_header (uint8_t out[NEX_WS_MAX_HEADER], int opcode, uint64_t len);

/* A frame received from a client.  PAYLOAD points into the buffer given to nex_ws_frame_parse, unmasked in
 * place. */
typedef struct nex_ws_frame
{
  int fin;
  int opcode;
  uint8_t *payload;
  size_t len;
} nex_ws_frame_t;

/* Parses one client frame at BUF (LEN bytes available).  Returns the bytes the frame takes (header and payload)
 * with *OUT filled and its payload unmasked in place; 0 when more bytes are needed; -1 with *CLOSE_CODE set when
 * the frame breaks the protocol (unmasked, reserved bits or opcodes, a fragmented or oversized control frame:
 * NEX_WS_CLOSE_PROTOCOL) or when its payload exceeds MAX_PAYLOAD (NEX_WS_CLOSE_TOO_BIG).  Never reads outside
 * BUF[0, LEN). */
long nex_ws_frame_parse (uint8_t *buf, size_t len, size_t max_payload, nex_ws_frame_t *out, int *close_code);

/* Client side: as nex_ws_frame_parse for a frame a server sent, which must not be masked. */
long nex_ws_frame_parse_server (uint8_t *buf, size_t len, size_t max_payload, nex_ws_frame_t *out, int *close_code);

/* Client side: writes the header of a final frame of OPCODE carrying LEN bytes, masked with MASK (which the caller
 * then applies to the payload: byte i ^= MASK[i % 4]); returns its size (6, 8 or 14). */
size_t nex_ws_frame_header_masked (uint8_t out[NEX_WS_MAX_CLIENT_HEADER], int opcode, uint64_t len,
                                   const uint8_t mask[4]);

#endif
