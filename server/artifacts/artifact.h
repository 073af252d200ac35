/* SPDX-License-Identifier: Apache-2.0 */
/* artifact.h — getting a workload's executable onto the node.
 *
 * A workload names its executable by URL.  Each URL scheme is one entry in a table in artifact.c that knows how
 * to parse its URLs, what it can check at request time, and how to stream the bytes; everything after that is
 * shared: the bytes are copied into a temporary file in the node's artifact cache while their SHA-256 is
 * computed, the digest is compared with the one the client expected, the copy is checked to be a static ELF
 * executable for this node (artifacts/elf.h), and it is published read-only as CACHE_DIR/<digest>.  The cache is
 * content-addressed, so a workload runs exactly the bytes that were checked, whatever happens to the source
 * afterwards, and identical artifacts are stored once.
 *
 * Schemes:
 *   file:///abs/path   implemented.  A local-operator feature: nexd reads the file with its own privileges, so
 *                      any client that can reach the API can have any regular file nexd can read copied into
 *                      the cache and (if it is a static ELF executable) run in a sandbox.  Expose the API
 *                      beyond the node only where that is acceptable.  The host part must be empty or
 *                      "localhost"; %XX escapes are decoded and must spell UTF-8; query, fragment, NUL,
 *                      control characters and `.`/`..` path components are refused.
 *   artifact://<sha256> an artifact already in this node's cache, named by its digest: one uploaded with
 *                      POST /v1/artifacts (nex_artifact_upload_*), or fetched by an earlier deploy.  Nothing is
 *                      copied; the entry was checked when it was published.  Anyone who may deploy and knows a
 *                      digest may run that entry, which is the point of content addressing (the digest is the
 *                      name of the bytes, not a secret).
 *   http://, https://  fetched with libcurl (artifacts/http.h): redirects (at most 5, to http(s) only)
 *                      followed, anything but a final 200 refused naming the status, connect/stall/total
 *                      timeouts.  Nothing is checked at request time but the URL's shape.  The transfer runs
 *                      on the supervisor's thread, like every fetch (a known cost: see ARCHITECTURE.md).
 *   nats://bucket/key  object KEY of JetStream object store BUCKET, read through the node's NATS connection
 *                      (nats/objstore.h: size and digest checked against the object's metadata).  Only
 *                      available when the node runs with --nats (the bridge registers itself with
 *                      nex_artifact_set_nats); otherwise refused at request time.  The bucket is
 *                      [A-Za-z0-9_-]+; the key is the rest of the path, taken literally (no %-decoding), and must
 *                      not be empty nor hold `?` or `#`.
 * Anything else, and anything malformed, is refused.
 *
 * Every refusal of the URL or of the artifact's content is NEX_ERR_INVALID naming the field "artifact" (or
 * "sha256" for a digest mismatch), which the HTTP layer answers with 422.
 *
 * Temporary files are named CACHE_DIR/.fetch-XXXXXX and removed on every failure path; one left behind by a
 * crash is never mistaken for a cache entry (entries are named by 64 hex digits) and may be deleted at will.
 *
 * Thread safety: every function may be called from any thread concurrently, including several fetches into the
 * same cache directory; the only shared state is libsodium's one-time initialisation, which is thread-safe. */
#ifndef NEX_ARTIFACT_H
#define NEX_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

/* Largest artifact accepted, in bytes: a bound on the disk and time a single deploy can consume. */
#define NEX_ARTIFACT_MAX_BYTES (512ULL * 1024 * 1024)

/* Checks that URL is well-formed and uses a scheme this node can fetch.  Touches nothing outside memory.
 * Returns 0, or -1 with NEX_ERR_INVALID field "artifact" saying what is wrong (e.g. "scheme `http` is not
 * supported yet", "file URLs name a local file: file:///path/to/executable"). */
int nex_artifact_check_url (const char *url, nex_error_t *err);

/* Everything that can be known about URL at request time, so that the REST layer can answer 422 at once
 * instead of failing the workload later: nex_artifact_check_url, and for file:// that the file exists, is a
 * regular file and passes nex_elf_check_file.  Passing is no promise: the source may change before the fetch,
 * which checks again on its own copy.  Returns 0 or -1 (refusals NEX_ERR_INVALID field "artifact"). */
int nex_artifact_precheck (const char *url, nex_error_t *err);

/* As nex_artifact_precheck, also checking what needs the cache CACHE_DIR: an artifact:// URL must name an entry
 * that is there (else NEX_ERR_INVALID field "artifact", saying to upload it first). */
int nex_artifact_precheck_at (const char *cache_dir, const char *url, nex_error_t *err);

/* Whether CACHE_DIR holds the entry for SHA256 (64 hex digits, any case; else NEX_ERR_INVALID field "sha256"):
 * 1 with *SIZE set, 0 when absent, -1 on failure. */
int nex_artifact_cached (const char *cache_dir, const char *sha256, uint64_t *size, nex_error_t *err);

/* Fetches URL into the content-addressed cache CACHE_DIR (which must exist and be writable).  The bytes are
 * streamed into a temporary file in CACHE_DIR while their SHA-256 is computed, up to NEX_ARTIFACT_MAX_BYTES
 * (beyond that: NEX_ERR_TOO_LARGE).  Then:
 *   - if EXPECTED_SHA256 (64 hex digits, or NULL for "any") differs from the computed digest, fails with
 *     NEX_ERR_INVALID field "sha256": "sha256 mismatch: expected X, artifact has Y";
 *   - the copy is checked with the rules of nex_elf_check_static (refusals field "artifact");
 *   - it is flushed to disk, made mode 0555 and renamed to CACHE_DIR/<digest>; when that entry exists already
 *     (same digest, same bytes) the copy is dropped and the entry reused.
 * The ELF check runs on the node's own copy, which nobody else can write, so it is the check that counts: the
 * source may have changed since nex_artifact_precheck.
 * Returns the path of the cache entry (the caller frees it) and writes the digest as 64 lower-case hex digits
 * and a NUL into DIGEST (also on a sha256 mismatch); on failure returns NULL with *ERR set, and no file of this
 * call remains in CACHE_DIR. */
char *nex_artifact_fetch (const char *cache_dir, const char *url, const char *expected_sha256, char digest[65],
                          nex_error_t *err);

/* Receiving an artifact's bytes from a client (POST /v1/artifacts) into the same cache, by the same rules as a
 * fetch: streamed into a temporary file while hashed, bounded, then checked and published under its digest.
 * One upload belongs to one thread at a time. */
typedef struct nex_artifact_upload nex_artifact_upload_t;

/* Starts an upload into CACHE_DIR of at most MAX bytes (capped at NEX_ARTIFACT_MAX_BYTES).  NULL on failure. */
nex_artifact_upload_t *nex_artifact_upload_begin (const char *cache_dir, uint64_t max, nex_error_t *err);

/* Appends N bytes.  NEX_ERR_TOO_LARGE past the bound ("artifact is larger than ..."); the upload is then
 * useless and must be freed. */
int nex_artifact_upload_write (nex_artifact_upload_t *up, const void *data, size_t n, nex_error_t *err);

/* Completes the upload: an empty one is refused (field "artifact"); EXPECTED_SHA256 (NULL: any) must match
 * (field "sha256"); the bytes must be a static ELF for this node (field "artifact"); then they are published as
 * CACHE_DIR/<digest> unless that entry exists (*EXISTED = 1).  Fills DIGEST and *SIZE.  0 or -1. */
int nex_artifact_upload_finish (nex_artifact_upload_t *up, const char *expected_sha256, char digest[65], uint64_t *size,
                                int *existed, nex_error_t *err);

/* Frees UP, removing its temporary file unless it was published.  Safe on NULL. */
void nex_artifact_upload_free (nex_artifact_upload_t *up);

/* Where a scheme implemented outside artifact.c writes the bytes it fetches (hashing and bounds included). */
typedef int (*nex_artifact_write_t) (void *sink, const void *buf, size_t n, nex_error_t *err);

/* Reads object KEY of BUCKET into WRITE(SINK, ...), at most MAX_BYTES; 0 or -1. */
typedef int (*nex_artifact_nats_get_t) (void *ctx, const char *bucket, const char *key, uint64_t max_bytes,
                                        nex_artifact_write_t write, void *sink, nex_error_t *err);

/* Makes nats:// URLs fetchable through GET (with CTX), or unavailable again when GET is NULL.  Called by the NATS
 * bridge when it starts (before the supervisor) and when it closes (after the supervisor stopped). */
void nex_artifact_set_nats (nex_artifact_nats_get_t get, void *ctx);

#endif
