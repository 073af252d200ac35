/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-ws-frame.c — feeds hostile bytes to the websocket frame parsers (common/ws-frame.c): the one nexd runs on
 * every byte a client sends (nex_ws_frame_parse, masked frames) and the one the `nex` CLI runs on a server's
 * (nex_ws_frame_parse_server), each as a loop over a buffer the way server/api/ws.c's parse_input consumes it.
 *
 * The first input byte chooses the payload bound (as nexd's 8 KiB and 64 KiB buffers do, scaled down so the
 * fuzzer reaches it) and the opcode of a round trip: the rest of the input, framed by nex_ws_frame_header (server
 * to client) and nex_ws_frame_header_masked (client to server) and parsed back, must come back unchanged.
 * Invariants: a parse never claims more bytes than it was given, the payload lies inside the buffer and within
 * the bound, a refusal gives close code 1002 or 1009. */
#include <string.h>

#include "common/cleanup.h"
#include "common/ws-frame.h"
#include "common/xalloc.h"
#include "tests/fuzz/fuzz.h"

typedef long (*parse_fn) (uint8_t *buf, size_t len, size_t max_payload, nex_ws_frame_t *out, int *close_code);

/* Parses every frame of BUF (LEN bytes) as a reader would, checking each. */
static void
fuzz_loop (parse_fn parse, uint8_t *buf, size_t len, size_t max)
{
  size_t at = 0;
  for (;;)
    {
      nex_ws_frame_t f;
      int code = 0;
      long used = parse (buf + at, len - at, max, &f, &code);
      if (used < 0)
        {
          fuzz_check (code == NEX_WS_CLOSE_PROTOCOL || code == NEX_WS_CLOSE_TOO_BIG, "a refusal has its close code");
          return;
        }
      if (used == 0)
        return;
      fuzz_check ((size_t)used <= len - at, "a frame takes no more than the buffer holds");
      fuzz_check (f.len <= max, "a payload is within the bound");
      fuzz_check (f.len == 0 || (f.payload >= buf + at && f.payload + f.len <= buf + at + used),
                  "the payload lies inside its frame");
      fuzz_check (f.opcode >= 0 && f.opcode <= 0xF, "the opcode has 4 bits");
      at += (size_t)used;
    }
}

/* Frames PAYLOAD both ways and parses it back. */
static void
fuzz_round_trip (int opcode, const uint8_t *payload, size_t n)
{
  cleanup_free uint8_t *buf = nex_xmalloc (NEX_WS_MAX_CLIENT_HEADER + n + 1);
  nex_ws_frame_t f;
  int code = 0;
  size_t h = nex_ws_frame_header (buf, opcode, n);
  if (n)
    memcpy (buf + h, payload, n);
  long used = nex_ws_frame_parse_server (buf, h + n, n, &f, &code);
  fuzz_check (used == (long)(h + n) && f.opcode == opcode && f.fin && f.len == n
                  && (n == 0 || memcmp (f.payload, payload, n) == 0),
              "a server frame parses back unchanged");
  static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
  h = nex_ws_frame_header_masked (buf, opcode, n, mask);
  for (size_t i = 0; i < n; i++)
    buf[h + i] = payload[i] ^ mask[i % 4];
  used = nex_ws_frame_parse (buf, h + n, n, &f, &code);
  fuzz_check (used == (long)(h + n) && f.opcode == opcode && f.fin && f.len == n
                  && (n == 0 || memcmp (f.payload, payload, n) == 0),
              "a client frame parses back unchanged");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  size_t max = (size_t)(data[0] & 0x3f) * 64;
  static const int opcodes[] = { NEX_WS_TEXT, NEX_WS_BINARY, NEX_WS_CONTINUATION, NEX_WS_CLOSE };
  int opcode = opcodes[data[0] >> 6];
  data++;
  size--;
  cleanup_free uint8_t *copy = nex_xmalloc (size + 1);
  if (size)
    memcpy (copy, data, size);
  fuzz_loop (nex_ws_frame_parse, copy, size, max);
  if (size)
    memcpy (copy, data, size);
  fuzz_loop (nex_ws_frame_parse_server, copy, size, max);
  /* Control frames carry at most 125 bytes (RFC 6455 section 5.5). */
  fuzz_round_trip (opcode, data, opcode == NEX_WS_CLOSE && size > 125 ? 125 : size);
  return 0;
}
