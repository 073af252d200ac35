/* SPDX-License-Identifier: Apache-2.0 */
/* test-ws.c — unit tests for the websocket framing (common/ws-frame.c, api/ws-accept.c): the RFC 6455 handshake
 * example, the three header sizes, client frames whole, split and hostile, and random bytes that must never be read
 * past; and the checks of what an exec client sends (api/ws.c's control messages, api/sandbox.c's exec body, api.c's
 * body parser), whose hostile forms tests/fuzz/ explores further. */
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/ws-frame.h"
#include "common/wire.h"
#include "server/api/api.h"
#include "server/api/ws.h"
#include "server/api/ws-accept.h"
#include "tests/unit/tap.h"

/* Builds a masked client frame of OPCODE with PAYLOAD into OUT; returns its size. */
static size_t
client_frame (uint8_t *out, int opcode, int fin, const uint8_t *payload, size_t n)
{
  size_t at = 0;
  out[at++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
  if (n < 126)
    out[at++] = (uint8_t)(0x80 | n);
  else if (n < 65536)
    {
      out[at++] = 0x80 | 126;
      out[at++] = (uint8_t)(n >> 8);
      out[at++] = (uint8_t)n;
    }
  else
    {
      out[at++] = 0x80 | 127;
      for (int i = 0; i < 8; i++)
        out[at++] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
  static const uint8_t key[4] = { 0x12, 0x34, 0x56, 0x78 };
  memcpy (out + at, key, 4);
  at += 4;
  for (size_t i = 0; i < n; i++)
    out[at + i] = payload[i] ^ key[i & 3];
  return at + n;
}

static void
test_handshake (void)
{
  nex_error_t err = NULL;
  char out[29];
  /* The example of RFC 6455 section 1.3. */
  TAP_OK (nex_ws_accept_key ("dGhlIHNhbXBsZSBub25jZQ==", out, &err) == 0
              && strcmp (out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0,
          "the RFC's example key gives the RFC's accept value (%s)", err ? err->msg : out);
  nex_error_free (&err);
  static const char *const bad[] = { NULL,
                                     "",
                                     "short",
                                     "dGhlIHNhbXBsZSBub25jZQ=",
                                     "dGhlIHNhbXBsZSBub25jZQ==x",
                                     "dGhlIHNhbXBsZSBub25j!Q==",
                                     "dGhlIHNhbXBsZSBub25jZQ=A" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    {
      TAP_OK (nex_ws_accept_key (bad[i], out, &err) < 0 && err && err->kind == NEX_ERR_MALFORMED, "bad key %zu refused",
              i);
      nex_error_free (&err);
    }
}

static void
test_headers (void)
{
  uint8_t h[NEX_WS_MAX_HEADER];
  TAP_OK (nex_ws_frame_header (h, NEX_WS_TEXT, 5) == 2 && h[0] == 0x81 && h[1] == 5, "short frame: 2 bytes");
  TAP_OK (nex_ws_frame_header (h, NEX_WS_TEXT, 126) == 4 && h[1] == 126 && h[2] == 0 && h[3] == 126,
          "126 bytes: 16-bit length");
  TAP_OK (nex_ws_frame_header (h, NEX_WS_BINARY, 65536) == 10 && h[0] == 0x82 && h[1] == 127 && h[7] == 1 && h[8] == 0
              && h[9] == 0,
          "65536 bytes: 64-bit length");
  TAP_OK (nex_ws_frame_header (h, NEX_WS_CLOSE, 2) == 2 && h[0] == 0x88, "close frame");
}

static void
test_parse (void)
{
  uint8_t buf[70000], payload[66000];
  for (size_t i = 0; i < sizeof payload; i++)
    payload[i] = (uint8_t)(i * 7);
  nex_ws_frame_t f;
  int code;
  size_t sizes[] = { 0, 1, 125, 126, 65535, 65536 };
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
    {
      size_t n = client_frame (buf, NEX_WS_BINARY, 1, payload, sizes[k]);
      int split_ok = 1;
      for (size_t cut = 0; cut < n && split_ok; cut += (n > 200 ? n / 50 + 1 : 1))
        split_ok = nex_ws_frame_parse (buf, cut, 1 << 20, &f, &code) == 0;
      long used = nex_ws_frame_parse (buf, n, 1 << 20, &f, &code);
      TAP_OK (split_ok && used == (long)n && f.len == sizes[k] && f.fin && f.opcode == NEX_WS_BINARY
                  && memcmp (f.payload, payload, sizes[k]) == 0,
              "a %zu-byte frame parses whole, and not before it is complete", sizes[k]);
    }
  /* two frames back to back */
  size_t a = client_frame (buf, NEX_WS_PING, 1, (const uint8_t *)"ab", 2);
  size_t b = client_frame (buf + a, NEX_WS_TEXT, 1, (const uint8_t *)"hello", 5);
  long u1 = nex_ws_frame_parse (buf, a + b, 100, &f, &code);
  int ping = u1 == (long)a && f.opcode == NEX_WS_PING && f.len == 2 && memcmp (f.payload, "ab", 2) == 0;
  long u2 = nex_ws_frame_parse (buf + a, b, 100, &f, &code);
  TAP_OK (ping && u2 == (long)b && f.opcode == NEX_WS_TEXT && memcmp (f.payload, "hello", 5) == 0,
          "two frames in one buffer");

  /* refusals */
  size_t n = client_frame (buf, NEX_WS_TEXT, 1, payload, 200);
  TAP_OK (nex_ws_frame_parse (buf, n, 100, &f, &code) < 0 && code == NEX_WS_CLOSE_TOO_BIG,
          "over the payload bound: 1009");
  TAP_OK (nex_ws_frame_parse (buf, 4, 100, &f, &code) < 0 && code == NEX_WS_CLOSE_TOO_BIG,
          "refused from its header alone");
  uint8_t unmasked[] = { 0x81, 0x02, 'h', 'i' };
  TAP_OK (nex_ws_frame_parse (unmasked, sizeof unmasked, 100, &f, &code) < 0 && code == NEX_WS_CLOSE_PROTOCOL,
          "unmasked client frame: 1002");
  n = client_frame (buf, 0x3, 1, payload, 1);
  TAP_OK (nex_ws_frame_parse (buf, n, 100, &f, &code) < 0 && code == NEX_WS_CLOSE_PROTOCOL, "reserved opcode");
  n = client_frame (buf, NEX_WS_TEXT, 1, payload, 1);
  buf[0] |= 0x40;
  TAP_OK (nex_ws_frame_parse (buf, n, 100, &f, &code) < 0 && code == NEX_WS_CLOSE_PROTOCOL, "reserved bit");
  n = client_frame (buf, NEX_WS_PING, 0, payload, 1);
  TAP_OK (nex_ws_frame_parse (buf, n, 100, &f, &code) < 0, "fragmented control frame");
  n = client_frame (buf, NEX_WS_CLOSE, 1, payload, 126);
  TAP_OK (nex_ws_frame_parse (buf, n, 1000, &f, &code) < 0, "control frame over 125 bytes");
  uint8_t huge[] = { 0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 };
  TAP_OK (nex_ws_frame_parse (huge, sizeof huge, (size_t)-1, &f, &code) < 0, "64-bit length with the top bit set");
}

/* The client's side (the `nex` CLI): what it sends parses as a client frame, what a server sends parses as a
 * server frame, and each refuses the other's. */
static void
test_client_side (void)
{
  uint8_t buf[NEX_WS_MAX_CLIENT_HEADER + 300];
  const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
  const char *text = "echo hello";
  size_t n = nex_ws_frame_header_masked (buf, NEX_WS_BINARY, strlen (text), mask);
  for (size_t i = 0; i < strlen (text); i++)
    buf[n + i] = (uint8_t)(text[i] ^ mask[i & 3]);
  nex_ws_frame_t f;
  int code;
  long used = nex_ws_frame_parse (buf, n + strlen (text), 1024, &f, &code);
  TAP_OK (n == 6 && used == (long)(n + strlen (text)) && f.opcode == NEX_WS_BINARY && f.len == strlen (text)
              && memcmp (f.payload, text, f.len) == 0,
          "a masked client frame round-trips");
  n = nex_ws_frame_header_masked (buf, NEX_WS_BINARY, 300, mask);
  memset (buf + n, 0, 300);
  TAP_OK (n == 8 && nex_ws_frame_parse (buf, n + 300, 1024, &f, &code) == (long)(n + 300) && f.len == 300,
          "a 16-bit length with a mask");
  TAP_OK (nex_ws_frame_parse_server (buf, n + 300, 1024, &f, &code) == -1 && code == NEX_WS_CLOSE_PROTOCOL,
          "a client refuses a masked server frame");
  n = nex_ws_frame_header (buf, NEX_WS_TEXT, 5);
  memcpy (buf + n, "{\"a\"}", 5);
  used = nex_ws_frame_parse_server (buf, n + 5, 1024, &f, &code);
  TAP_OK (used == (long)(n + 5) && f.opcode == NEX_WS_TEXT && f.len == 5 && memcmp (f.payload, "{\"a\"}", 5) == 0,
          "an unmasked server frame parses on the client's side");
  TAP_OK (nex_ws_frame_parse_server (buf, n + 4, 1024, &f, &code) == 0, "an incomplete server frame needs more");
  TAP_OK (nex_ws_frame_parse (buf, n + 5, 1024, &f, &code) == -1, "a server refuses an unmasked frame");
}

static void
test_random (void)
{
  /* Random bytes in a buffer of their own size (ASan catches any read past it): never a crash, and any frame
   * reported lies inside the buffer. */
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  int ok = 1;
  for (int round = 0; round < 20000 && ok; round++)
    {
      size_t len = (size_t)(x % 64);
      uint8_t *b = malloc (len ? len : 1);
      for (size_t i = 0; i < len; i++)
        {
          x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
          b[i] = (uint8_t)(x * 0x2545f4914f6cdd1dULL >> 56);
        }
      if (len)
        b[1 % len] |= 0x80; /* mostly masked, so that parsing goes deep */
      nex_ws_frame_t f;
      int code;
      long used = nex_ws_frame_parse (b, len, 40, &f, &code);
      if (used > 0)
        ok = (size_t)used <= len && f.payload >= b && f.payload + f.len <= b + len;
      free (b);
      x += 0x632be59bd9b4e019ULL;
    }
  TAP_OK (ok, "20000 random buffers: no frame outside its buffer");
}

/* Whether TEXT as a control message of a session with a terminal (TTY) becomes TYPE with payload WANT, or (WANT
 * NULL) is refused with a message containing WHY. */
static int
control_is (const char *text, int tty, int type, const char *want, const char *why)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_free char *frame = NULL;
  int got = 0;
  int r = nex_ws_exec_control_parse ((const uint8_t *)text, strlen (text), tty, &got, &frame, &err);
  if (want)
    return r == 0 && got == type && strcmp (frame, want) == 0;
  return r < 0 && frame == NULL && err->kind == NEX_ERR_INVALID && strstr (err->msg, why) != NULL;
}

static void
test_exec_control (void)
{
  TAP_OK (control_is ("{\"type\":\"resize\",\"rows\":40,\"cols\":120}", 1, NEX_WIRE_RESIZE,
                      "{\"rows\":40,\"cols\":120}", NULL),
          "exec control: resize becomes a RESIZE frame rebuilt from its numbers");
  TAP_OK (control_is ("{\"type\":\"resize\",\"rows\":40,\"cols\":120}", 0, 0, NULL, "no terminal"),
          "exec control: resize without a terminal is refused");
  TAP_OK (control_is ("{\"type\":\"resize\",\"rows\":0,\"cols\":10001}", 1, 0, NULL, "from 1 to 10000"),
          "exec control: a window size out of range is refused");
  TAP_OK (control_is ("{\"type\":\"signal\",\"signal\":\"int\",\"x\":\"\\\"}\"}", 0, NEX_WIRE_SIGNAL, "{\"signal\":2}",
                      NULL),
          "exec control: a signal by name becomes SIGNAL {signal: 2}, nothing else of the client's text");
  TAP_OK (control_is ("[1]", 0, 0, NULL, "JSON objects with a `type`")
              && control_is ("{\"type\":\"exit\"}", 0, 0, NULL, "unknown control message type `exit`")
              && control_is ("{\"type\":\"signal\",\"signal\":65}", 0, 0, NULL, "signal number"),
          "exec control: other messages are refused saying why");
}

static void
test_exec_request (void)
{
  const char *text = "{\"argv\":[\"/workload\",\"-c\"],\"argv0\":\"sh\",\"stdin\":\"x\",\"timeout_s\":0.0001}";
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *body = nex_api_body_parse (text, strlen (text), &err);
  nex_api_exec_request_t x = { 0 };
  TAP_OK (body && nex_api_exec_request_parse (body, &x, &err) == 0 && json_array_size (x.argv) == 2
              && strcmp (x.argv0, "sh") == 0 && x.stdin_len == 1 && x.env == NULL && x.timeout_ms == 1,
          "exec request: argv, argv0, stdin taken; a tiny timeout is at least 1 ms");
  cleanup_json json_t *bad = json_pack ("{s:[s], s:{s:s}}", "argv", "/workload", "env", "A=B", "c");
  TAP_OK (nex_api_exec_request_parse (bad, &x, &err) < 0 && err->kind == NEX_ERR_INVALID
              && strcmp (err->field, "env.A=B") == 0,
          "exec request: an env name with '=' is refused naming it");
  nex_error_free (&err);
  cleanup_json json_t *extra = json_pack ("{s:[s], s:i}", "argv", "/workload", "tty", 1);
  TAP_OK (nex_api_exec_request_parse (extra, &x, &err) < 0 && strcmp (err->field, "tty") == 0,
          "exec request: an unknown field is refused");
}

static void
test_body_parse (void)
{
  char deep[80];
  memset (deep, '[', 33);
  memset (deep + 33, ']', 33);
  cleanup_error nex_error_t err = NULL;
  TAP_OK (nex_api_body_parse (deep, 66, &err) == NULL && err->kind == NEX_ERR_INVALID
              && strstr (err->msg, "deeper than 32"),
          "body: 33 levels of nesting are refused before jansson parses them");
  nex_error_free (&err);
  cleanup_json json_t *ok = nex_api_body_parse (deep + 1, 64, &err);
  TAP_OK (json_is_array (ok), "body: 32 levels are parsed");
  TAP_OK (nex_api_body_parse ("{\"a\":1,\"a\":2}", 13, &err) == NULL && strstr (err->msg, "duplicate"),
          "body: duplicate keys are refused");
}

int
main (void)
{
  test_exec_control ();
  test_exec_request ();
  test_body_parse ();
  test_handshake ();
  test_headers ();
  test_parse ();
  test_client_side ();
  test_random ();
  return tap_done ();
}
