/* SPDX-License-Identifier: Apache-2.0 */
/* test-wire.c — unit tests of the host<->agent wire protocol (common/wire.c): frame encoding and decoding.
 *
 * Feeds the decoder well-formed, truncated, malformed and random input and checks it never accepts a broken
 * header, never buffers more than one maximal frame and never crashes; encodes every frame type and reads it
 * back.  The real nex-agent speaking this protocol is tested by test-agent.c. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/wire.h"
#include "common/cleanup.h"
#include "common/xalloc.h"
#include "tests/unit/testutil.h"
#include "tests/unit/tap.h"

#define LIMIT ((size_t)NEX_WIRE_HEADER_SIZE + NEX_WIRE_MAX_PAYLOAD)

/* --- decoder helpers ------------------------------------------------------------------------------------------ */

static int
header_error (const uint8_t hdr[NEX_WIRE_HEADER_SIZE], nex_error_kind_t *kind)
{
  nex_wire_reader_t r;
  nex_wire_reader_init (&r);
  cleanup_error nex_error_t err = NULL;
  nex_wire_frame_t f;
  nex_wire_reader_feed (&r, hdr, NEX_WIRE_HEADER_SIZE, NULL);
  int rc = nex_wire_reader_next (&r, &f, &err);
  *kind = err ? err->kind : 0;
  nex_wire_reader_release (&r);
  return rc;
}

static json_t *
json_of (nex_wire_type_t type, const char *text, nex_error_kind_t *kind)
{
  nex_wire_frame_t f = { .type = type, .channel = 0, .len = (uint32_t)strlen (text), .payload = (const uint8_t *)text };
  cleanup_error nex_error_t err = NULL;
  json_t *j = nex_wire_frame_json (&f, &err);
  *kind = err ? err->kind : 0;
  return j;
}

static void
test_types (void)
{
  int ok = 1;
  for (unsigned t = NEX_WIRE_HELLO; t <= NEX_WIRE_STDIN; t++)
    ok &= nex_wire_type_valid (t) && strcmp (nex_wire_type_name (t), "unknown") != 0;
  TAP_OK (ok, "types 1..10 are valid and named");
  TAP_OK (!nex_wire_type_valid (0) && !nex_wire_type_valid (NEX_WIRE_TYPE_MAX + 1) && !nex_wire_type_valid (255)
              && nex_wire_type_valid (NEX_WIRE_SIGNAL) && nex_wire_type_valid (NEX_WIRE_EXEC)
              && nex_wire_type_is_json (NEX_WIRE_EXEC) && strcmp (nex_wire_type_name (NEX_WIRE_EXEC), "exec") == 0
              && nex_wire_type_valid (NEX_WIRE_RESIZE) && nex_wire_type_is_json (NEX_WIRE_RESIZE)
              && strcmp (nex_wire_type_name (NEX_WIRE_RESIZE), "resize") == 0,
          "types 0, past the last, 255 are invalid; signal, exec and resize are JSON");
  TAP_OK (strcmp (nex_wire_type_name (0), "unknown") == 0 && strcmp (nex_wire_type_name (NEX_WIRE_ACK), "ack") == 0,
          "type names");
  TAP_OK (nex_wire_type_is_json (NEX_WIRE_START) && nex_wire_type_is_json (NEX_WIRE_ERROR)
              && !nex_wire_type_is_json (NEX_WIRE_STDOUT) && !nex_wire_type_is_json (NEX_WIRE_STDIN),
          "control types carry JSON, data types raw bytes");

  uint8_t h[NEX_WIRE_HEADER_SIZE];
  nex_wire_header_encode (h, NEX_WIRE_STDOUT, 0x0a0b, 0x01020304);
  static const uint8_t want[] = { 1, 2, 3, 4, NEX_WIRE_STDOUT, 0, 0x0a, 0x0b };
  TAP_OK (memcmp (h, want, sizeof want) == 0, "header is big-endian length, type, zero flags, channel");
}

/* Encodes one frame of each type into one buffer (raw payloads and JSON objects). */
static uint8_t *
encode_all (size_t *total)
{
  uint8_t *all = NULL;
  *total = 0;
  for (unsigned t = NEX_WIRE_HELLO; t <= NEX_WIRE_STDIN; t++)
    {
      size_t n;
      uint8_t *fr;
      if (nex_wire_type_is_json (t))
        {
          cleanup_json json_t *o = json_pack ("{s:i, s:s, s:[i,i]}", "t", (int)t, "s", "x\"y", "a", 1, 2);
          fr = nex_wire_encode_json (t, (uint16_t)(t * 7), o, &n, NULL);
        }
      else
        {
          uint8_t raw[300];
          for (size_t i = 0; i < sizeof raw; i++)
            raw[i] = (uint8_t)(i * t);
          fr = nex_wire_encode (t, (uint16_t)(t * 7), raw, t * 30, &n, NULL);
        }
      all = nex_xrealloc (all, *total + n);
      memcpy (all + *total, fr, n);
      *total += n;
      free (fr);
    }
  return all;
}

/* Checks that F is the frame encode_all made for its type. */
static int
frame_matches (const nex_wire_frame_t *f, unsigned t)
{
  if (f->type != t || f->channel != t * 7)
    return 0;
  if (nex_wire_type_is_json (t))
    {
      cleanup_json json_t *got = nex_wire_frame_json (f, NULL);
      cleanup_json json_t *want = json_pack ("{s:i, s:s, s:[i,i]}", "t", (int)t, "s", "x\"y", "a", 1, 2);
      return got && json_equal (got, want);
    }
  if (f->len != t * 30)
    return 0;
  for (size_t i = 0; i < f->len; i++)
    if (f->payload[i] != (uint8_t)(i * t))
      return 0;
  return 1;
}

static void
test_round_trip (void)
{
  size_t total;
  cleanup_free uint8_t *all = encode_all (&total);

  /* Each type on its own. */
  size_t off = 0;
  for (unsigned t = NEX_WIRE_HELLO; t <= NEX_WIRE_STDIN; t++)
    {
      nex_wire_reader_t r;
      nex_wire_reader_init (&r);
      size_t len = NEX_WIRE_HEADER_SIZE + (((size_t)all[off + 2] << 8) | all[off + 3]);
      nex_wire_frame_t f;
      int ok = nex_wire_reader_feed (&r, all + off, len, NULL) == 0 && nex_wire_reader_next (&r, &f, NULL) == 1
               && frame_matches (&f, t) && nex_wire_reader_next (&r, &f, NULL) == 0;
      TAP_OK (ok, "round trip of a %s frame (%s)", nex_wire_type_name (t), nex_wire_type_is_json (t) ? "JSON" : "raw");
      nex_wire_reader_release (&r);
      off += len;
    }

  /* All of them in one feed. */
  nex_wire_reader_t r;
  nex_wire_reader_init (&r);
  nex_wire_frame_t f;
  unsigned t = NEX_WIRE_HELLO;
  int ok = nex_wire_reader_feed (&r, all, total, NULL) == 0;
  while (ok && nex_wire_reader_next (&r, &f, NULL) == 1)
    ok = frame_matches (&f, t++);
  TAP_OK (ok && t == NEX_WIRE_STDIN + 1, "ten frames in one feed decode in order");
  nex_wire_reader_release (&r);

  /* One byte at a time. */
  nex_wire_reader_init (&r);
  t = NEX_WIRE_HELLO;
  ok = 1;
  int early = 0;
  for (size_t i = 0; i < total && ok; i++)
    {
      ok = nex_wire_reader_feed (&r, all + i, 1, NULL) == 0;
      int rc;
      while (ok && (rc = nex_wire_reader_next (&r, &f, NULL)) == 1)
        {
          ok = frame_matches (&f, t++);
          /* A frame must be complete exactly when its last byte arrives, not earlier. */
          early |= r.len != r.consumed;
        }
      ok = ok && rc == 0;
    }
  TAP_OK (ok && !early && t == NEX_WIRE_STDIN + 1, "byte-at-a-time feeding yields every frame exactly once");
  nex_wire_reader_release (&r);

  /* Two frames in one feed, then a truncated one completed later. */
  size_t n1, n2;
  cleanup_free uint8_t *a = nex_wire_encode (NEX_WIRE_STDOUT, 0, "abc", 3, &n1, NULL);
  cleanup_free uint8_t *b = nex_wire_encode (NEX_WIRE_STDERR, 1, "defgh", 5, &n2, NULL);
  uint8_t two[64];
  memcpy (two, a, n1);
  memcpy (two + n1, b, n2);
  nex_wire_reader_init (&r);
  nex_wire_reader_feed (&r, two, n1 + n2, NULL);
  nex_wire_frame_t f1, f2;
  ok = nex_wire_reader_next (&r, &f1, NULL) == 1 && f1.type == NEX_WIRE_STDOUT && f1.len == 3
       && memcmp (f1.payload, "abc", 3) == 0;
  ok = ok && nex_wire_reader_next (&r, &f2, NULL) == 1 && f2.type == NEX_WIRE_STDERR && f2.channel == 1 && f2.len == 5
       && memcmp (f2.payload, "defgh", 5) == 0;
  ok = ok && nex_wire_reader_next (&r, &f2, NULL) == 0;
  TAP_OK (ok, "two frames in one feed");

  nex_wire_reader_feed (&r, two, n1 + n2 - 1, NULL);
  int zeros = nex_wire_reader_next (&r, &f1, NULL) == 1 && nex_wire_reader_next (&r, &f2, NULL) == 0
              && nex_wire_reader_next (&r, &f2, NULL) == 0;
  nex_wire_reader_feed (&r, two + n1 + n2 - 1, 1, NULL);
  ok = nex_wire_reader_next (&r, &f2, NULL) == 1 && f2.len == 5 && memcmp (f2.payload, "defgh", 5) == 0;
  TAP_OK (zeros && ok, "a truncated frame needs more (0) until its last byte arrives");
  nex_wire_reader_release (&r);

  /* Empty payload and a maximal one. */
  size_t n;
  cleanup_free uint8_t *e = nex_wire_encode (NEX_WIRE_STDOUT, 0, NULL, 0, &n, NULL);
  nex_wire_reader_init (&r);
  nex_wire_reader_feed (&r, e, n, NULL);
  TAP_OK (n == NEX_WIRE_HEADER_SIZE && nex_wire_reader_next (&r, &f, NULL) == 1 && f.len == 0, "empty payload");
  nex_wire_reader_release (&r);

  cleanup_free uint8_t *big = nex_xzalloc (NEX_WIRE_MAX_PAYLOAD);
  big[NEX_WIRE_MAX_PAYLOAD - 1] = 0x5a;
  cleanup_free uint8_t *bf = nex_wire_encode (NEX_WIRE_STDIN, 3, big, NEX_WIRE_MAX_PAYLOAD, &n, NULL);
  nex_wire_reader_init (&r);
  ok = nex_wire_reader_room (&r) == LIMIT && nex_wire_reader_feed (&r, bf, n, NULL) == 0
       && nex_wire_reader_room (&r) == 0 && nex_wire_reader_next (&r, &f, NULL) == 1 && f.len == NEX_WIRE_MAX_PAYLOAD
       && f.payload[f.len - 1] == 0x5a && r.cap <= LIMIT;
  TAP_OK (ok, "a maximal frame (%u bytes) fits exactly", NEX_WIRE_MAX_PAYLOAD);
  cleanup_error nex_error_t err = NULL;
  ok = nex_wire_reader_feed (&r, bf, 5, NULL) == 0 && nex_wire_reader_feed (&r, big, LIMIT - 4, &err) < 0 && err
       && err->kind == NEX_ERR_PROTOCOL && r.cap <= LIMIT;
  TAP_OK (ok, "feeding past one maximal frame fails and the buffer stays capped");
  nex_wire_reader_release (&r);
}

static void
test_malformed (void)
{
  uint8_t h[NEX_WIRE_HEADER_SIZE];
  nex_error_kind_t kind;

  nex_wire_header_encode (h, NEX_WIRE_STDOUT, 0, NEX_WIRE_MAX_PAYLOAD + 1);
  TAP_OK (header_error (h, &kind) < 0 && kind == NEX_ERR_PROTOCOL, "oversized length is a protocol error");
  nex_wire_header_encode (h, NEX_WIRE_STDOUT, 0, 0xffffffffu);
  TAP_OK (header_error (h, &kind) < 0 && kind == NEX_ERR_PROTOCOL, "length 0xffffffff is a protocol error");
  nex_wire_header_encode (h, 0, 0, 2);
  TAP_OK (header_error (h, &kind) < 0 && kind == NEX_ERR_PROTOCOL, "type 0 is a protocol error");
  nex_wire_header_encode (h, NEX_WIRE_TYPE_MAX + 1, 0, 2);
  TAP_OK (header_error (h, &kind) < 0 && kind == NEX_ERR_PROTOCOL, "an unknown type is a protocol error");
  nex_wire_header_encode (h, NEX_WIRE_ACK, 0, 2);
  h[5] = 0x80;
  TAP_OK (header_error (h, &kind) < 0 && kind == NEX_ERR_PROTOCOL, "non-zero flags are a protocol error");

  json_t *j;
  j = json_of (NEX_WIRE_START, "[1,2]", &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "a JSON array is refused (not an object)");
  j = json_of (NEX_WIRE_START, "\"s\"", &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "a JSON string is refused (not an object)");
  j = json_of (NEX_WIRE_START, "{\"path\":", &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "truncated JSON is refused");
  j = json_of (NEX_WIRE_ACK, "", &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "an empty payload is refused for a JSON type");
  j = json_of (NEX_WIRE_START, "{\"a\":1,\"a\":2}", &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "duplicate keys are refused");
  j = json_of (NEX_WIRE_START, "{\"a\":\"x\\u0000y\"}", &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "NUL inside a string is refused");
  j = json_of (NEX_WIRE_START, "{} {}", &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "trailing data after the object is refused");
  j = json_of (NEX_WIRE_STDOUT, "{}", &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "JSON is not parsed from a raw-typed frame");
  j = json_of (NEX_WIRE_ACK, "{}", &kind);
  TAP_OK (j != NULL && json_object_size (j) == 0, "{} is a valid ACK payload");
  json_decref (j);

  /* Deep nesting: bounded by jansson's depth limit, not by our stack. */
  size_t depth = 200000;
  cleanup_free char *deep = nex_xmalloc (2 * depth + 16);
  size_t o = 0;
  o += (size_t)sprintf (deep, "{\"a\":");
  for (size_t i = 0; i < depth; i++)
    deep[o++] = '[';
  for (size_t i = 0; i < depth; i++)
    deep[o++] = ']';
  deep[o++] = '}';
  deep[o] = '\0';
  j = json_of (NEX_WIRE_START, deep, &kind);
  TAP_OK (j == NULL && kind == NEX_ERR_PROTOCOL, "200000-deep nesting is refused without exhausting the stack");

  size_t n;
  cleanup_error nex_error_t err = NULL;
  cleanup_free uint8_t *big = nex_xzalloc (NEX_WIRE_MAX_PAYLOAD + 1);
  uint8_t *fr = nex_wire_encode (NEX_WIRE_STDOUT, 0, big, NEX_WIRE_MAX_PAYLOAD + 1, &n, &err);
  TAP_OK (fr == NULL && err && err->kind == NEX_ERR_TOO_LARGE, "encoding above the cap fails with too_large");
  nex_error_free (&err);
  cleanup_json json_t *arr = json_array ();
  fr = nex_wire_encode_json (NEX_WIRE_START, 0, arr, &n, &err);
  TAP_OK (fr == NULL && err != NULL, "encoding a non-object as a control frame fails");
}

static void
test_send (void)
{
  int sv[2];
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    {
      TAP_OK (0, "socketpair: %s", strerror (errno));
      return;
    }
  cleanup_json json_t *o = json_pack ("{s:i}", "pid", 42);
  int ok = nex_wire_send_json (sv[0], NEX_WIRE_STARTED, 0, o, NULL) == 0
           && nex_wire_send (sv[0], NEX_WIRE_STDERR, 9, "hi", 2, NULL) == 0;
  uint8_t buf[256];
  ssize_t n = read (sv[1], buf, sizeof buf);
  nex_wire_reader_t r;
  nex_wire_reader_init (&r);
  nex_wire_frame_t f;
  ok = ok && n > 0 && nex_wire_reader_feed (&r, buf, (size_t)n, NULL) == 0;
  ok = ok && nex_wire_reader_next (&r, &f, NULL) == 1 && f.type == NEX_WIRE_STARTED;
  cleanup_json json_t *got = ok ? nex_wire_frame_json (&f, NULL) : NULL;
  ok = ok && got && json_equal (got, o);
  ok = ok && nex_wire_reader_next (&r, &f, NULL) == 1 && f.type == NEX_WIRE_STDERR && f.channel == 9 && f.len == 2
       && memcmp (f.payload, "hi", 2) == 0;
  TAP_OK (ok, "nex_wire_send and nex_wire_send_json write decodable frames");
  nex_wire_reader_release (&r);
  close (sv[0]);
  close (sv[1]);
}

/* Random garbage, and garbage shaped like frames, in random chunk sizes. */
static void
test_random (void)
{
  const int rounds = 5000;
  int crashed_cap = 0, frames = 0, errors = 0, pending = 0, json_ok = 0;
  uint8_t buf[4096];
  for (int round = 0; round < rounds; round++)
    {
      size_t n = (size_t)(test_rng () % sizeof buf);
      for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)test_rng ();
      /* Half the rounds plant plausible headers so that the decoder gets past the header checks. */
      if (round % 2 == 0)
        for (size_t at = 0; at + NEX_WIRE_HEADER_SIZE <= n;)
          {
            uint32_t len = (uint32_t)(test_rng () % 7 == 0 ? test_rng () : test_rng () % 200);
            unsigned type = (unsigned)(test_rng () % 12);
            nex_wire_header_encode (buf + at, type, (uint16_t)test_rng (), len);
            if (test_rng () % 10 == 0)
              buf[at + 5] = (uint8_t)test_rng ();
            if (test_rng () % 3 == 0 && at + NEX_WIRE_HEADER_SIZE + 2 <= n)
              {
                /* Sometimes a small object, sometimes the start of one. */
                if (test_rng () % 2 == 0)
                  nex_wire_header_encode (buf + at, NEX_WIRE_STOP, 0, len = 2);
                buf[at + NEX_WIRE_HEADER_SIZE] = '{';
                buf[at + NEX_WIRE_HEADER_SIZE + 1] = len == 2 ? '}' : '"';
              }
            at += NEX_WIRE_HEADER_SIZE + (len < 200 ? len : 0);
          }

      nex_wire_reader_t r;
      nex_wire_reader_init (&r);
      int rc = 0;
      for (size_t off = 0; off < n && rc >= 0;)
        {
          size_t chunk = 1 + (size_t)(test_rng () % 600);
          if (chunk > n - off)
            chunk = n - off;
          size_t room = nex_wire_reader_room (&r);
          if (chunk > room)
            chunk = room;
          cleanup_error nex_error_t err = NULL;
          if (nex_wire_reader_feed (&r, buf + off, chunk, &err) < 0)
            {
              rc = -1;
              break;
            }
          off += chunk;
          nex_wire_frame_t f;
          while ((rc = nex_wire_reader_next (&r, &f, &err)) == 1)
            {
              frames++;
              if (!nex_wire_type_valid (f.type) || f.len > NEX_WIRE_MAX_PAYLOAD)
                crashed_cap++;
              if (nex_wire_type_is_json (f.type))
                {
                  json_t *j = nex_wire_frame_json (&f, NULL);
                  json_ok += j != NULL;
                  json_decref (j);
                }
            }
          if (rc < 0 && (err == NULL || err->kind != NEX_ERR_PROTOCOL))
            crashed_cap++;
          if (r.cap > LIMIT || r.len > r.cap)
            crashed_cap++;
        }
      if (rc < 0)
        errors++;
      else
        pending++;
      nex_wire_reader_release (&r);
    }
  TAP_OK (crashed_cap == 0 && errors + pending == rounds,
          "%d random buffers in random chunks: each ends in error (%d) or need-more (%d), buffer within the cap "
          "(%d frames decoded, %d valid JSON)",
          rounds, errors, pending, frames, json_ok);

  /* The same property for a stream fed frames that claim huge lengths. */
  nex_wire_reader_t r;
  nex_wire_reader_init (&r);
  uint8_t h[NEX_WIRE_HEADER_SIZE];
  nex_wire_header_encode (h, NEX_WIRE_STDIN, 0, NEX_WIRE_MAX_PAYLOAD);
  nex_wire_reader_feed (&r, h, sizeof h, NULL);
  nex_wire_frame_t f;
  int ok = nex_wire_reader_next (&r, &f, NULL) == 0;
  size_t fed = 0;
  while (nex_wire_reader_room (&r) > 0)
    {
      size_t c = nex_wire_reader_room (&r) < sizeof buf ? nex_wire_reader_room (&r) : sizeof buf;
      ok = ok && nex_wire_reader_feed (&r, buf, c, NULL) == 0;
      fed += c;
    }
  ok = ok && nex_wire_reader_feed (&r, buf, 1, NULL) < 0 && r.cap <= LIMIT && fed == NEX_WIRE_MAX_PAYLOAD;
  ok = ok && nex_wire_reader_next (&r, &f, NULL) == 1 && nex_wire_reader_room (&r) == LIMIT;
  TAP_OK (ok, "room() bounds what a reader accepts while a large frame assembles");
  nex_wire_reader_release (&r);
}

int
main (void)
{
  signal (SIGPIPE, SIG_IGN);
  json_set_alloc_funcs (nex_xmalloc, free);

  test_types ();
  test_round_trip ();
  test_malformed ();
  test_send ();
  test_random ();
  return tap_done ();
}
