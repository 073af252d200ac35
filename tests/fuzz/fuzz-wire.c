/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-wire.c — feeds hostile bytes to the wire protocol's readers: the frame decoder (common/wire.c) that both
 * nexd and nex-agent run on every byte from the other end, the JSON control payloads, nexd's handling of an exec
 * session's frames (server/exec.c: output, STARTED, EXIT, ERROR as the supervisor passes them on), and the
 * re-sync scanner (server/drivers/resync.c) that finds the agent's answer in a console stream joined midway.
 *
 * The first input byte chooses how the rest is cut into reads (1 to 255 bytes each, or everything at once when
 * 0), so both framing and chunking are explored.  The rest goes twice through: once as a plain stream (every
 * frame decoded; channel != 0 frames drive one exec session), once through the re-sync scanner with the fixed
 * nonce FUZZ_NONCE (the seeds hold an answer carrying it), whose tail then goes to a fresh reader as the
 * supervisor does.  Invariants: the reader's buffer never exceeds one maximal frame, decoded frames are valid,
 * errors are protocol errors, accepted JSON objects re-encode, an exec's gathered output stays within its bound.
 *
 * The agent's own parser of START/EXEC specs (nex_agent_spec_parse, agent/spawn.c) is built into the static agent
 * only; what reaches it is this same decoder and nex_wire_frame_json. */
#include <string.h>

#include "common/cleanup.h"
#include "common/wire.h"
#include "common/xalloc.h"
#include "server/drivers/resync.h"
#include "server/exec.h"
#include "tests/fuzz/fuzz.h"

#define FUZZ_LIMIT ((size_t)NEX_WIRE_HEADER_SIZE + NEX_WIRE_MAX_PAYLOAD)
#define FUZZ_NONCE "00112233445566778899aabbccddeeff"

/* One exec session on channel 1 as the supervisor keeps it; frames on other non-zero channels are ignored, as
 * frames of sessions given up. */
static void
fuzz_exec_frame (nex_exec_t *x, const nex_wire_frame_t *f)
{
  if (f->channel != 1)
    return;
  if (f->type == NEX_WIRE_STDOUT || f->type == NEX_WIRE_STDERR)
    {
      nex_exec_output (x, f->type == NEX_WIRE_STDERR ? 2 : 1, f->payload, f->len);
      return;
    }
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *msg = nex_wire_type_is_json (f->type) ? nex_wire_frame_json (f, &err) : NULL;
  if (msg == NULL)
    return;
  if (f->type == NEX_WIRE_STARTED)
    nex_exec_started (x, json_integer_value (json_object_get (msg, "pid")));
  else if (f->type == NEX_WIRE_EXIT)
    nex_exec_finish (x, msg);
  else if (f->type == NEX_WIRE_ERROR)
    {
      nex_error_t e = NULL;
      nex_error_set (&e, NEX_ERR_INVALID, "%.200s", json_string_value (json_object_get (msg, "message")) ?: "?");
      nex_exec_fail (x, &e);
    }
}

/* Checks one decoded frame and hands it on. */
static void
fuzz_frame (nex_wire_reader_t *r, const nex_wire_frame_t *f, nex_exec_t *x)
{
  fuzz_check (nex_wire_type_valid (f->type), "decoded frames have a valid type");
  fuzz_check (f->len <= NEX_WIRE_MAX_PAYLOAD, "decoded frames are within the cap");
  fuzz_check (f->len == 0 || (f->payload >= r->buf && f->payload + f->len <= r->buf + r->len),
              "payload lies inside the reader's buffer");
  if (nex_wire_type_is_json (f->type))
    {
      cleanup_error nex_error_t jerr = NULL;
      cleanup_json json_t *j = nex_wire_frame_json (f, &jerr);
      fuzz_check (j ? json_is_object (j) : jerr != NULL && jerr->kind == NEX_ERR_PROTOCOL,
                  "frame_json yields an object or a protocol error");
      if (j)
        {
          /* What was accepted must encode again (the agent echoes such objects back). */
          size_t n;
          cleanup_free uint8_t *enc = nex_wire_encode_json (f->type, f->channel, j, &n, NULL);
          fuzz_check (enc != NULL, "an accepted object re-encodes");
        }
    }
  if (f->channel != 0)
    fuzz_exec_frame (x, f);
}

/* Decodes every complete frame; 0 when more is needed, -1 on a protocol error. */
static int
fuzz_drain (nex_wire_reader_t *r, nex_exec_t *x)
{
  for (;;)
    {
      cleanup_error nex_error_t err = NULL;
      nex_wire_frame_t f;
      int rc = nex_wire_reader_next (r, &f, &err);
      if (rc < 0)
        {
          fuzz_check (err != NULL && err->kind == NEX_ERR_PROTOCOL, "reader_next fails with a protocol error");
          return -1;
        }
      if (rc == 0)
        return 0;
      fuzz_frame (r, &f, x);
    }
}

/* Feeds SIZE bytes to a fresh reader in reads of at most STEP bytes, as nexd's and the agent's read loops do. */
static void
fuzz_stream (const uint8_t *data, size_t size, size_t step, nex_exec_t *x)
{
  nex_wire_reader_t r;
  nex_wire_reader_init (&r);
  for (size_t off = 0; off < size;)
    {
      size_t chunk = size - off < step ? size - off : step;
      size_t room = nex_wire_reader_room (&r);
      fuzz_check (room > 0, "room is never 0 after the reader needs more");
      if (chunk > room)
        chunk = room;
      fuzz_check (nex_wire_reader_feed (&r, data + off, chunk, NULL) == 0, "feeding within room succeeds");
      off += chunk;
      fuzz_check (r.cap <= FUZZ_LIMIT && r.len <= r.cap, "the buffer stays within one maximal frame");
      if (fuzz_drain (&r, x) < 0)
        break;
    }
  nex_wire_reader_release (&r);
}

/* Scans the stream for the agent's answer as a re-attaching nexd does, then decodes what follows it. */
static void
fuzz_resync (const uint8_t *data, size_t size, size_t step, nex_exec_t *x)
{
  nex_resync_t rs;
  nex_resync_init (&rs);
  memcpy (rs.nonce, FUZZ_NONCE, sizeof rs.nonce);
  for (size_t off = 0; off < size;)
    {
      size_t chunk = size - off < step ? size - off : step;
      nex_wire_frame_t hello;
      const uint8_t *rest;
      size_t rest_len;
      off += chunk;
      if (nex_resync_feed (&rs, data + off - chunk, chunk, &hello, &rest, &rest_len))
        {
          fuzz_check (hello.type == NEX_WIRE_HELLO && hello.len <= NEX_RESYNC_MAX_HELLO, "the answer is a HELLO");
          cleanup_free uint8_t *tail = nex_xmalloc (rest_len + size - off + 1);
          memcpy (tail, rest, rest_len);
          memcpy (tail + rest_len, data + off, size - off);
          fuzz_stream (tail, rest_len + size - off, step, x);
          break;
        }
      fuzz_check (rs.len < NEX_WIRE_HEADER_SIZE + NEX_RESYNC_MAX_HELLO,
                  "the scanner keeps at most one candidate frame");
    }
  nex_resync_release (&rs);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  size_t step = data[0] == 0 ? size : data[0];
  data++;
  size--;

  cleanup_json json_t *argv = json_pack ("[s]", "/workload");
  nex_exec_spec_t spec = { .argv = argv, .timeout_ms = 1000 };
  nex_exec_t *x = nex_exec_new ("fuzz", &spec);
  fuzz_stream (data, size, step, x);
  fuzz_resync (data, size, step, x);
  nex_exec_result_t res = { 0 };
  cleanup_error nex_error_t err = NULL;
  if (nex_exec_wait (x, 0, &res, &err) == 0)
    {
      fuzz_check (res.out_len <= NEX_EXEC_MAX_OUTPUT && res.err_len <= NEX_EXEC_MAX_OUTPUT,
                  "gathered output stays within its bound");
      nex_exec_result_release (&res);
    }
  nex_exec_unref (x);
  return 0;
}
