/* SPDX-License-Identifier: Apache-2.0 */
/* resync.h — finding the agent's answer in a byte stream that nexd joined in the middle.
 *
 * Over a stream endpoint (a VM's console port, see driver.h) the agent cannot know that a new nexd has attached:
 * the new nexd may arrive in the middle of a frame, after bytes that were lost while no one listened.  So it
 * greets first with HELLO {nonce}, a fresh random string, and discards everything until a HELLO frame from the
 * agent that echoes that nonce; from the byte after it, the stream is in step again.  Bytes in between may hold
 * anything — including, inside some STDOUT payload, a forged HELLO written by the workload — but not the nonce,
 * which only nexd and the agent have seen.
 *
 * The scanner keeps at most one candidate frame (NEX_RESYNC_MAX_HELLO bytes of payload) in memory, whatever
 * the stream holds.  One per re-attach, owned by the supervisor thread. */
#ifndef NEX_RESYNC_H
#define NEX_RESYNC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/wire.h"

#define NEX_RESYNC_MAX_HELLO 4096 /* a HELLO is a few hundred bytes; longer candidates are not it */

typedef struct nex_resync
{
  char nonce[33]; /* 32 hex digits */
  uint8_t *buf;   /* bytes not yet ruled out */
  size_t len, cap;
  size_t skipped; /* bytes discarded so far (for the log) */
} nex_resync_t;

/* Starts a scan with a fresh nonce. */
void nex_resync_init (nex_resync_t *r);

/* The greeting to send: HELLO's payload {nonce}.  New reference. */
json_t *nex_resync_greeting (const nex_resync_t *r);

/* Scans N more bytes.  Returns 1 when the agent's answer was found: *HELLO describes it (its payload points into
 * the scanner, valid until the next call), and *REST / *REST_LEN are the bytes that followed it, to be fed to
 * a fresh wire reader.  Returns 0 when more bytes are needed.  Never fails: anything else is skipped. */
int nex_resync_feed (nex_resync_t *r, const uint8_t *data, size_t n, nex_wire_frame_t *hello, const uint8_t **rest,
                     size_t *rest_len);

void nex_resync_release (nex_resync_t *r);

#endif
