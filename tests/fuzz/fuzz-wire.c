/* fuzz-wire.c — a fuzz harness for the wire decoder (common/wire.c), the code that reads every byte a guest or
 * host sends.
 *
 * The first input byte chooses how the rest is cut into reads (1 to 256 bytes each, or everything at once),
 * so the fuzzer explores both framing and chunking.  Each chunk is fed (never more than
 * nex_wire_reader_room), frames are decoded until the reader needs more or fails, and JSON-typed payloads go
 * through nex_wire_frame_json.  The harness aborts when an invariant breaks: a buffer above one maximal frame,
 * a decoded frame with an invalid type or oversized length, an error of a kind other than protocol, or a
 * parsed control payload that is not an object.
 *
 * Not built by Makefile.am.  From the source tree:
 *
 *   libFuzzer (clang):
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -DNEX_FUZZ_LIBFUZZER -D_GNU_SOURCE -I. \
 *       tests/fuzz/fuzz-wire.c common/wire.c common/error.c common/fdio.c common/xalloc.c -ljansson \
 *       -o /tmp/fuzz-wire
 *     mkdir -p /tmp/fuzz-wire-corpus && /tmp/fuzz-wire /tmp/fuzz-wire-corpus -max_total_time=60
 *
 *   replay only (any compiler, no libFuzzer): the same without -fsanitize=fuzzer and -DNEX_FUZZ_LIBFUZZER,
 *   then `/tmp/fuzz-wire FILE...` runs each file once (e.g. a crash reproducer) and reports how it ended. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"
#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

#define FUZZ_LIMIT ((size_t)NEX_WIRE_HEADER_SIZE + NEX_WIRE_MAX_PAYLOAD)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
fuzz_check (int cond, const char *what)
{
  if (!cond)
    {
      fprintf (stderr, "fuzz-wire: invariant broken: %s\n", what);
      abort ();
    }
}

/* Decodes every complete frame; 0 when more is needed, -1 on a protocol error. */
static int
fuzz_drain (nex_wire_reader_t *r, size_t *frames)
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
      (*frames)++;
      fuzz_check (nex_wire_type_valid (f.type), "decoded frames have a valid type");
      fuzz_check (f.len <= NEX_WIRE_MAX_PAYLOAD, "decoded frames are within the cap");
      fuzz_check (f.len == 0 || (f.payload >= r->buf && f.payload + f.len <= r->buf + r->len),
                  "payload lies inside the reader's buffer");
      if (nex_wire_type_is_json (f.type))
        {
          cleanup_error nex_error_t jerr = NULL;
          cleanup_json json_t *j = nex_wire_frame_json (&f, &jerr);
          fuzz_check (j ? json_is_object (j) : jerr != NULL && jerr->kind == NEX_ERR_PROTOCOL,
                      "frame_json yields an object or a protocol error");
          if (j)
            {
              /* What was accepted must encode again (the agent echoes such objects back). */
              size_t n;
              cleanup_free uint8_t *enc = nex_wire_encode_json (f.type, f.channel, j, &n, NULL);
              fuzz_check (enc != NULL, "an accepted object re-encodes");
            }
        }
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  size_t step = data[0] == 0 ? size : data[0];
  data++;
  size--;

  nex_wire_reader_t r;
  nex_wire_reader_init (&r);
  size_t frames = 0;
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
      if (fuzz_drain (&r, &frames) < 0)
        break;
    }
  nex_wire_reader_release (&r);
  return 0;
}

#ifndef NEX_FUZZ_LIBFUZZER
/* Replays each file named on the command line through the harness. */
int
main (int argc, char **argv)
{
  if (argc < 2)
    {
      fprintf (stderr, "usage: %s FILE...\n", argv[0]);
      return 2;
    }
  for (int i = 1; i < argc; i++)
    {
      cleanup_error nex_error_t err = NULL;
      size_t len;
      cleanup_free char *buf = nex_file_read (argv[i], 64u << 20, &len, &err);
      if (buf == NULL)
        {
          fprintf (stderr, "fuzz-wire: %s\n", err->msg);
          return 1;
        }
      LLVMFuzzerTestOneInput ((const uint8_t *)buf, len);
      printf ("fuzz-wire: %s: %zu bytes, ok\n", argv[i], len);
    }
  return 0;
}
#endif
