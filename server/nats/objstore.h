/* SPDX-License-Identifier: Apache-2.0 */
/* nats/objstore.h — JetStream object stores (as the official NATS clients write them), on nats.c 3.4, which has
 * JetStream calls but no object-store API.
 *
 * The format: bucket B is the stream OBJ_B with subjects $O.B.C.> (chunks) and $O.B.M.> (metadata).  Object N's
 * metadata is the last message on $O.B.M.<base64url(N), padded> — JSON {name, bucket, nuid, size, chunks,
 * digest: "SHA-256=<base64url of the SHA-256>", mtime, deleted?, options: {max_chunk_size}} — published with
 * the header Nats-Rollup: sub; its bytes are the messages on $O.B.C.<nuid>, in order.
 *
 * Reads trust nothing the server says: the metadata is checked (types, a nuid that is one subject token, sizes
 * within the caller's bound), and the bytes received must add up to the size and the digest the metadata
 * claims, or the read fails.  Any thread; each call uses its own JetStream context on the shared connection. */
#ifndef NEX_NATS_OBJSTORE_H
#define NEX_NATS_OBJSTORE_H

#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "common/error.h"

/* Where read bytes go: returns 0, or -1 with *ERR to abort the read. */
typedef int (*nex_objstore_write_t) (void *sink, const void *buf, size_t n, nex_error_t *err);

/* Whether NAME is a usable bucket name ([A-Za-z0-9_-]+, as the clients require). */
int nex_objstore_bucket_valid (const char *name);

/* Streams object NAME of BUCKET into WRITE(SINK, ...), refusing objects larger than MAX_BYTES.  Returns 0 when
 * every byte arrived and matched the object's size and SHA-256 digest; -1 with NEX_ERR_NOT_FOUND (no bucket, no
 * such object, or deleted), NEX_ERR_TOO_LARGE, NEX_ERR_INVALID (malformed metadata, size or digest mismatch),
 * NEX_ERR_UNAVAILABLE (NATS unreachable, timeouts) or the sink's own error. */
int nex_objstore_get (natsConnection *nc, const char *bucket, const char *name, uint64_t max_bytes,
                      nex_objstore_write_t write, void *sink, nex_error_t *err);

/* Puts the N bytes at DATA as object NAME of BUCKET (creating the bucket's stream when missing), in chunks of
 * 128 KiB (or the server's maximum payload when smaller), then its metadata; the chunks of an object it
 * replaces are purged.  *DIGEST (65 bytes) receives the SHA-256 as hex.  0 or -1. */
int nex_objstore_put (natsConnection *nc, const char *bucket, const char *name, const void *data, size_t n,
                      char digest[65], nex_error_t *err);

#endif
