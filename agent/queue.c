/* SPDX-License-Identifier: Apache-2.0 */
/* queue.c — the frames nex-agent has for the host, oldest first (see agent.h).
 *
 * Everything the agent says goes through this one queue, so that frames never interleave and the host reads
 * them in the order they happened (output, then the EXIT that follows it).  The queue outlives connections:
 * state frames and output wait for the next host, while replies meant for one connection (per_conn) and exec
 * sessions' frames are dropped with it.  Process output is bounded (AGENT_OUTPUT_LIMIT), control frames are not:
 * they are few, and replies are bounded per connection (conn.c).  Once a host has said STORED, the workload's
 * output is kept after it is written, until a STORED covers it, and put back in line for the next host (wire.h):
 * the kept frames and the queue share the output bound. */
#include <stdarg.h>
#include <stdlib.h>

#include "agent/agent.h"
#include "common/cleanup.h"
#include "common/xalloc.h"

#define AGENT_OUTPUT_LIMIT (8u << 20) /* process output queued for the host at most; the rest is dropped */

static void
frame_free (nex_agent_frame_t *f)
{
  free (f->data);
  free (f);
}

static nex_agent_frame_t *
frame_new (uint8_t *data, size_t len, uint16_t channel, size_t output, bool per_conn)
{
  nex_agent_frame_t *f = nex_xzalloc (sizeof *f);
  f->data = data;
  f->len = len;
  f->channel = channel;
  f->output = output;
  f->per_conn = per_conn;
  f->stream = -1;
  return f;
}

/* Counts F into the queue's totals (ADD) or out of them. */
static void
account (nex_agent_t *a, const nex_agent_frame_t *f, bool add)
{
  size_t replies = f->per_conn ? f->len : 0;
  if (add)
    {
      a->queued_output += f->output;
      a->queued_replies += replies;
    }
  else
    {
      a->queued_output -= f->output;
      a->queued_replies -= replies;
    }
}

static void
append (nex_agent_t *a, nex_agent_frame_t *f)
{
  if (a->tail)
    a->tail->next = f;
  else
    a->head = f;
  a->tail = f;
  account (a, f, true);
}

/* Puts F first in line, or second when the first frame is already partly written (frames never interleave). */
static void
prepend (nex_agent_t *a, nex_agent_frame_t *f)
{
  if (a->head == NULL)
    {
      append (a, f);
      return;
    }
  nex_agent_frame_t **at = a->head->off > 0 ? &a->head->next : &a->head;
  f->next = *at;
  *at = f;
  if (f->next == NULL)
    a->tail = f;
  account (a, f, true);
}

void
nex_agent_queue_pop (nex_agent_t *a)
{
  nex_agent_frame_t *f = a->head;
  a->head = f->next;
  if (a->head == NULL)
    a->tail = NULL;
  account (a, f, false);
  if (f->stream < 0 || !a->host_stores)
    {
      frame_free (f);
      return;
    }
  f->next = NULL;
  if (a->kept_tail)
    a->kept_tail->next = f;
  else
    a->kept_head = f;
  a->kept_tail = f;
  a->kept_output += f->output;
}

/* Frees the kept frames that COVERED says may go (all of them when it is NULL: room for new output). */
static void
drop_kept (nex_agent_t *a, const uint64_t covered[2], size_t want_room)
{
  nex_agent_frame_t **pp = &a->kept_head;
  a->kept_tail = NULL;
  while (*pp)
    {
      nex_agent_frame_t *f = *pp;
      bool go = covered ? f->start + f->output <= covered[f->stream]
                        : AGENT_OUTPUT_LIMIT - a->queued_output - a->kept_output < want_room;
      if (go)
        {
          *pp = f->next;
          a->kept_output -= f->output;
          frame_free (f);
          continue;
        }
      a->kept_tail = f;
      pp = &f->next;
    }
}

void
nex_agent_queue_stored (nex_agent_t *a, const uint64_t stored[2])
{
  a->host_stores = true;
  drop_kept (a, stored, 0);
}

void
nex_agent_queue_resend (nex_agent_t *a, uint64_t next[2])
{
  if (a->kept_head)
    {
      nex_agent_frame_t **at = a->head && a->head->off > 0 ? &a->head->next : &a->head;
      a->kept_tail->next = *at;
      if (*at == NULL)
        a->tail = a->kept_tail;
      *at = a->kept_head;
      for (nex_agent_frame_t *f = a->kept_head; f != a->kept_tail->next; f = f->next)
        {
          f->off = 0;
          account (a, f, true);
        }
      a->kept_output = 0;
      a->kept_head = a->kept_tail = NULL;
    }
  next[0] = a->out_queued[0];
  next[1] = a->out_queued[1];
  bool seen[2] = { false, false };
  for (nex_agent_frame_t *f = a->head; f; f = f->next)
    if (f->stream >= 0 && f->off == 0 && !seen[f->stream])
      {
        seen[f->stream] = true;
        next[f->stream] = f->start;
      }
}

void
nex_agent_queue_drop_replies (nex_agent_t *a)
{
  nex_agent_frame_t **pp = &a->head;
  a->tail = NULL;
  while (*pp)
    {
      nex_agent_frame_t *f = *pp;
      if (f->per_conn || f->channel != 0)
        {
          *pp = f->next;
          account (a, f, false);
          frame_free (f);
          continue;
        }
      a->tail = f;
      pp = &f->next;
    }
}

void
nex_agent_queue_json (nex_agent_t *a, nex_wire_type_t type, uint16_t channel, json_t *obj, bool per_conn, bool first)
{
  cleanup_json json_t *o = obj;
  cleanup_error nex_error_t err = NULL;
  size_t len;
  uint8_t *data = nex_wire_encode_json (type, channel, o, &len, &err);
  if (data == NULL)
    {
      nex_agent_log ("cannot encode a %s frame: %s", nex_wire_type_name (type), err->msg);
      return;
    }
  nex_agent_frame_t *f = frame_new (data, len, channel, 0, per_conn);
  if (first)
    prepend (a, f);
  else
    append (a, f);
}

void
nex_agent_queue_verror (nex_agent_t *a, uint16_t channel, bool per_conn, const char *phase, int errnum, const char *fmt,
                        va_list ap)
{
  cleanup_free char *msg = nex_xvasprintf (fmt, ap);
  json_t *o = json_object ();
  json_object_set_new (o, "message", json_string (msg));
  if (phase)
    json_object_set_new (o, "phase", json_string (phase));
  if (errnum)
    json_object_set_new (o, "errno", json_integer (errnum));
  nex_agent_queue_json (a, NEX_WIRE_ERROR, channel, o, per_conn, false);
}

void
nex_agent_queue_error (nex_agent_t *a, bool per_conn, const char *phase, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  nex_agent_queue_verror (a, 0, per_conn, phase, 0, fmt, ap);
  va_end (ap);
}

void
nex_agent_queue_output (nex_agent_t *a, nex_wire_type_t type, uint16_t channel, const uint8_t *data, size_t n,
                        uint64_t *dropped)
{
  /* Output kept for a host that already has it most likely goes first, before new output is dropped. */
  if (a->kept_head && AGENT_OUTPUT_LIMIT - a->queued_output - a->kept_output < n)
    drop_kept (a, NULL, n);
  size_t room = AGENT_OUTPUT_LIMIT - a->queued_output - a->kept_output;
  if (n > room)
    {
      *dropped += n - room;
      n = room;
    }
  if (n == 0)
    return;
  size_t len;
  uint8_t *frame = nex_wire_encode (type, channel, data, n, &len, NULL);
  nex_agent_frame_t *f = frame_new (frame, len, channel, n, false);
  if (channel == 0 && (type == NEX_WIRE_STDOUT || type == NEX_WIRE_STDERR))
    {
      f->stream = type == NEX_WIRE_STDERR;
      f->start = a->out_queued[f->stream];
      a->out_queued[f->stream] += n;
    }
  append (a, f);
}
