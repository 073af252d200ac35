/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-exec.c — feeds hostile bytes to the exec requests' parsers: the body of POST /v1/workloads/{id}/exec
 * (nex_api_body_parse, then nex_api_exec_request_parse, server/api/sandbox.c) and the JSON control messages an
 * interactive exec client sends over its websocket (nex_ws_exec_control_parse, server/api/ws.c), for a session
 * with and without a terminal.  The same bytes go to both.
 *
 * Invariants: refusals are NEX_ERR_INVALID; an accepted request has a non-empty argv of strings, a timeout of at
 * least 1 ms, stdin within its bound, and becomes an exec request (nex_exec_new); an accepted control message
 * becomes a RESIZE or SIGNAL frame whose payload is a JSON object the agent can parse, with values in range. */
#include <signal.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/wire.h"
#include "server/api/api.h"
#include "server/api/ws.h"
#include "server/exec.h"
#include "tests/fuzz/fuzz.h"

static void
fuzz_request (const uint8_t *data, size_t size)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_json json_t *body = nex_api_body_parse ((const char *)data, size, &err);
  if (body == NULL)
    return;
  nex_api_exec_request_t x;
  if (nex_api_exec_request_parse (body, &x, &err) < 0)
    {
      fuzz_check (err && err->kind == NEX_ERR_INVALID, "a refused exec is NEX_ERR_INVALID");
      return;
    }
  fuzz_check (json_is_array (x.argv) && json_array_size (x.argv) > 0
                  && json_string_length (json_array_get (x.argv, 0)) > 0,
              "argv is a non-empty array with a path first");
  fuzz_check (x.timeout_ms >= 1, "the timeout is at least 1 ms");
  fuzz_check (x.stdin_len <= NEX_EXEC_MAX_STDIN, "stdin is within its bound");
  fuzz_check (x.argv0 == NULL || (strlen (x.argv0) > 0 && strlen (x.argv0) < 256), "argv0 is 1 to 255 bytes");
  nex_exec_spec_t spec = { .argv = (json_t *)x.argv,
                           .env = (json_t *)x.env,
                           .stdin_data = x.stdin_data,
                           .stdin_len = x.stdin_len,
                           .timeout_ms = x.timeout_ms };
  nex_exec_unref (nex_exec_new ("fuzz", &spec));
}

static void
fuzz_control (const uint8_t *data, size_t size, int tty)
{
  cleanup_error nex_error_t err = NULL;
  cleanup_free char *frame = NULL;
  int type = 0;
  if (nex_ws_exec_control_parse (data, size, tty, &type, &frame, &err) < 0)
    {
      fuzz_check (err && err->kind == NEX_ERR_INVALID && frame == NULL, "a refused message is NEX_ERR_INVALID");
      return;
    }
  fuzz_check (type == NEX_WIRE_RESIZE || type == NEX_WIRE_SIGNAL, "a message becomes RESIZE or SIGNAL");
  fuzz_check (type != NEX_WIRE_RESIZE || tty, "only a terminal is resized");
  nex_wire_frame_t f = { .type = type, .len = (uint32_t)strlen (frame), .payload = (const uint8_t *)frame };
  cleanup_json json_t *j = nex_wire_frame_json (&f, NULL);
  fuzz_check (j != NULL, "the frame's payload is a JSON object");
  if (type == NEX_WIRE_SIGNAL)
    {
      json_int_t sig = json_integer_value (json_object_get (j, "signal"));
      fuzz_check (sig >= 1 && sig < NSIG, "the signal is in range");
    }
  else
    {
      json_int_t rows = json_integer_value (json_object_get (j, "rows"));
      json_int_t cols = json_integer_value (json_object_get (j, "cols"));
      fuzz_check (rows >= 1 && rows <= 10000 && cols >= 1 && cols <= 10000, "the window size is in range");
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  fuzz_request (data, size);
  fuzz_control (data, size, 0);
  fuzz_control (data, size, 1);
  return 0;
}
