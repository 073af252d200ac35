/* SPDX-License-Identifier: Apache-2.0 */
/* wire.c — encoder and incremental decoder of the host<->agent wire protocol (contract and frame layout in
 * wire.h).
 *
 * Both ends use this file: nex-agent decodes what nexd sends, nexd decodes what the agent (that is, the guest)
 * sends.  The decoder is therefore written for a hostile peer: the header is checked before any payload byte is
 * buffered, the buffer never grows past one maximal frame, and JSON is parsed only from a complete, capped
 * payload.  Nothing here blocks except nex_wire_send*, which is documented for blocking descriptors. */
#include "common/wire.h"

#include <string.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

/* The largest buffer a reader ever holds: one header plus one maximal payload. */
#define WIRE_READER_LIMIT ((size_t)NEX_WIRE_HEADER_SIZE + NEX_WIRE_MAX_PAYLOAD)

/* First allocation of a reader; most control frames and small output chunks fit. */
#define WIRE_READER_INITIAL 4096

int
nex_wire_type_valid (unsigned type)
{
  return type >= NEX_WIRE_HELLO && type <= NEX_WIRE_TYPE_MAX;
}

int
nex_wire_type_is_json (nex_wire_type_t type)
{
  switch (type)
    {
    case NEX_WIRE_HELLO:
    case NEX_WIRE_START:
    case NEX_WIRE_STARTED:
    case NEX_WIRE_EXIT:
    case NEX_WIRE_STOP:
    case NEX_WIRE_ACK:
    case NEX_WIRE_ERROR:
    case NEX_WIRE_SIGNAL:
    case NEX_WIRE_EXEC:
    case NEX_WIRE_RESIZE:
    case NEX_WIRE_LEASE:
    case NEX_WIRE_STORED:
      return 1;
    case NEX_WIRE_STDOUT:
    case NEX_WIRE_STDERR:
    case NEX_WIRE_STDIN:
      return 0;
    }
  return 0;
}

const char *
nex_wire_type_name (unsigned type)
{
  switch (type)
    {
    case NEX_WIRE_HELLO:
      return "hello";
    case NEX_WIRE_START:
      return "start";
    case NEX_WIRE_STARTED:
      return "started";
    case NEX_WIRE_STDOUT:
      return "stdout";
    case NEX_WIRE_STDERR:
      return "stderr";
    case NEX_WIRE_EXIT:
      return "exit";
    case NEX_WIRE_STOP:
      return "stop";
    case NEX_WIRE_ACK:
      return "ack";
    case NEX_WIRE_ERROR:
      return "error";
    case NEX_WIRE_STDIN:
      return "stdin";
    case NEX_WIRE_SIGNAL:
      return "signal";
    case NEX_WIRE_EXEC:
      return "exec";
    case NEX_WIRE_RESIZE:
      return "resize";
    case NEX_WIRE_LEASE:
      return "lease";
    case NEX_WIRE_STORED:
      return "stored";
    }
  return "unknown";
}

void
nex_wire_header_encode (uint8_t out[NEX_WIRE_HEADER_SIZE], nex_wire_type_t type, uint16_t channel, uint32_t len)
{
  out[0] = (uint8_t)(len >> 24);
  out[1] = (uint8_t)(len >> 16);
  out[2] = (uint8_t)(len >> 8);
  out[3] = (uint8_t)len;
  out[4] = (uint8_t)type;
  out[5] = 0; /* flags: reserved */
  out[6] = (uint8_t)(channel >> 8);
  out[7] = (uint8_t)channel;
}

void
nex_wire_reader_init (nex_wire_reader_t *r)
{
  memset (r, 0, sizeof *r);
}

void
nex_wire_reader_release (nex_wire_reader_t *r)
{
  free (r->buf);
  memset (r, 0, sizeof *r);
}

size_t
nex_wire_reader_room (const nex_wire_reader_t *r)
{
  return WIRE_READER_LIMIT - (r->len - r->consumed);
}

/* Drops the bytes already handed out as frames, moving the undecoded rest to the front of the buffer. */
static void
reader_compact (nex_wire_reader_t *r)
{
  if (r->consumed == 0)
    return;
  if (r->consumed < r->len)
    memmove (r->buf, r->buf + r->consumed, r->len - r->consumed);
  r->len -= r->consumed;
  r->consumed = 0;
}

int
nex_wire_reader_feed (nex_wire_reader_t *r, const void *data, size_t n, nex_error_t *err)
{
  if (n == 0)
    return 0;
  reader_compact (r);
  /* The hard cap: a peer can never make a reader hold more than one maximal frame, whatever it sends. */
  if (n > WIRE_READER_LIMIT - r->len)
    return nex_error_set (err, NEX_ERR_PROTOCOL, "wire: %zu buffered bytes exceed one frame (%zu bytes)", r->len + n,
                          WIRE_READER_LIMIT);
  if (r->len + n > r->cap)
    {
      size_t cap = r->cap ? r->cap : WIRE_READER_INITIAL;
      while (cap < r->len + n)
        cap *= 2;
      if (cap > WIRE_READER_LIMIT)
        cap = WIRE_READER_LIMIT;
      r->buf = nex_xrealloc (r->buf, cap);
      r->cap = cap;
    }
  memcpy (r->buf + r->len, data, n);
  r->len += n;
  return 0;
}

int
nex_wire_reader_next (nex_wire_reader_t *r, nex_wire_frame_t *out, nex_error_t *err)
{
  /* The previous frame's payload is no longer needed; when everything was consumed, start over cheaply. */
  if (r->consumed == r->len)
    r->consumed = r->len = 0;

  size_t avail = r->len - r->consumed;
  if (avail < NEX_WIRE_HEADER_SIZE)
    return 0;

  const uint8_t *h = r->buf + r->consumed;
  uint32_t len = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | (uint32_t)h[3];
  unsigned type = h[4];
  unsigned flags = h[5];
  uint16_t channel = (uint16_t)(((unsigned)h[6] << 8) | h[7]);

  /* The header is judged as soon as it is complete, before any of the payload is waited for: an oversized
   * length is refused here so that a peer cannot make us buffer (or wait for) more than the cap. */
  if (len > NEX_WIRE_MAX_PAYLOAD)
    return nex_error_set (err, NEX_ERR_PROTOCOL, "wire: frame of %u bytes exceeds the %u-byte cap", len,
                          NEX_WIRE_MAX_PAYLOAD);
  if (!nex_wire_type_valid (type))
    return nex_error_set (err, NEX_ERR_PROTOCOL, "wire: unknown frame type %u", type);
  /* Reserved flags must be zero so that a later protocol version can give them meaning safely. */
  if (flags != 0)
    return nex_error_set (err, NEX_ERR_PROTOCOL, "wire: reserved flags 0x%02x set on a %s frame", flags,
                          nex_wire_type_name (type));

  if (avail - NEX_WIRE_HEADER_SIZE < len)
    return 0;

  out->type = (nex_wire_type_t)type;
  out->channel = channel;
  out->len = len;
  out->payload = h + NEX_WIRE_HEADER_SIZE;
  r->consumed += NEX_WIRE_HEADER_SIZE + (size_t)len;
  return 1;
}

json_t *
nex_wire_frame_json (const nex_wire_frame_t *f, nex_error_t *err)
{
  if (!nex_wire_type_is_json (f->type))
    {
      nex_error_set (err, NEX_ERR_PROTOCOL, "wire: %s frames do not carry JSON", nex_wire_type_name (f->type));
      return NULL;
    }
  /* Duplicate keys are refused so that two readers of the same bytes cannot disagree on a field's value.
   * Nesting depth is bounded by jansson's parser limit and the total size by the frame cap, so a hostile
   * payload costs at most a bounded amount of memory and stack.  Embedded NULs in strings are refused by
   * jansson's default (no JSON_ALLOW_NUL), so every string can be used as a C string. */
  json_error_t jerr;
  json_t *j = json_loadb ((const char *)f->payload, f->len, JSON_REJECT_DUPLICATES, &jerr);
  if (j == NULL)
    {
      nex_error_set (err, NEX_ERR_PROTOCOL, "wire: %s frame: invalid JSON at byte %d: %s", nex_wire_type_name (f->type),
                     jerr.position, jerr.text);
      return NULL;
    }
  if (!json_is_object (j))
    {
      json_decref (j);
      nex_error_set (err, NEX_ERR_PROTOCOL, "wire: %s frame: payload is not a JSON object",
                     nex_wire_type_name (f->type));
      return NULL;
    }
  return j;
}

uint8_t *
nex_wire_encode (nex_wire_type_t type, uint16_t channel, const void *data, size_t len, size_t *out_len,
                 nex_error_t *err)
{
  if (len > NEX_WIRE_MAX_PAYLOAD)
    {
      nex_error_set (err, NEX_ERR_TOO_LARGE, "wire: %s frame of %zu bytes exceeds the %u-byte cap",
                     nex_wire_type_name (type), len, NEX_WIRE_MAX_PAYLOAD);
      return NULL;
    }
  uint8_t *buf = nex_xmalloc (NEX_WIRE_HEADER_SIZE + len);
  nex_wire_header_encode (buf, type, channel, (uint32_t)len);
  if (len > 0)
    memcpy (buf + NEX_WIRE_HEADER_SIZE, data, len);
  *out_len = NEX_WIRE_HEADER_SIZE + len;
  return buf;
}

uint8_t *
nex_wire_encode_json (nex_wire_type_t type, uint16_t channel, const json_t *obj, size_t *out_len, nex_error_t *err)
{
  if (!json_is_object (obj))
    {
      nex_error_set (err, NEX_ERR_INVALID, "wire: %s frame: payload must be a JSON object", nex_wire_type_name (type));
      return NULL;
    }
  /* Measure first, then serialise straight behind the header: one allocation, no copy. */
  size_t len = json_dumpb (obj, NULL, 0, JSON_COMPACT);
  if (len == 0)
    {
      nex_error_set (err, NEX_ERR_INVALID, "wire: %s frame: cannot serialise the payload", nex_wire_type_name (type));
      return NULL;
    }
  if (len > NEX_WIRE_MAX_PAYLOAD)
    {
      nex_error_set (err, NEX_ERR_TOO_LARGE, "wire: %s frame of %zu bytes exceeds the %u-byte cap",
                     nex_wire_type_name (type), len, NEX_WIRE_MAX_PAYLOAD);
      return NULL;
    }
  cleanup_free uint8_t *buf = nex_xmalloc (NEX_WIRE_HEADER_SIZE + len);
  if (json_dumpb (obj, (char *)buf + NEX_WIRE_HEADER_SIZE, len, JSON_COMPACT) != len)
    {
      nex_error_set (err, NEX_ERR_INVALID, "wire: %s frame: serialisation changed size", nex_wire_type_name (type));
      return NULL;
    }
  nex_wire_header_encode (buf, type, channel, (uint32_t)len);
  *out_len = NEX_WIRE_HEADER_SIZE + len;
  return NEX_STEAL_PTR (buf);
}

int
nex_wire_send (int fd, nex_wire_type_t type, uint16_t channel, const void *data, size_t len, nex_error_t *err)
{
  size_t n;
  cleanup_free uint8_t *buf = nex_wire_encode (type, channel, data, len, &n, err);
  if (buf == NULL)
    return -1;
  if (nex_fd_write_all (fd, buf, n, err) < 0)
    return nex_error_wrap (err, "wire: send %s frame", nex_wire_type_name (type));
  return 0;
}

int
nex_wire_send_json (int fd, nex_wire_type_t type, uint16_t channel, const json_t *obj, nex_error_t *err)
{
  size_t n;
  cleanup_free uint8_t *buf = nex_wire_encode_json (type, channel, obj, &n, err);
  if (buf == NULL)
    return -1;
  if (nex_fd_write_all (fd, buf, n, err) < 0)
    return nex_error_wrap (err, "wire: send %s frame", nex_wire_type_name (type));
  return 0;
}
