/* artifact.h — getting a workload's executable onto the node.
 *
 * A workload names its executable by URL.  Each URL scheme is one entry in a table in artifact.c that knows how
 * to parse its URLs, what it can check at request time, and how to stream the bytes; everything after that is
 * shared: the bytes are copied into a temporary file in the node's artifact cache while their SHA-256 is
 * computed, the digest is compared with the one the client expected, the copy is checked to be a static ELF
 * executable for this node (server/elf.h), and it is published read-only as CACHE_DIR/<digest>.  The cache is
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
 *   http://, https://  recognised, refused for now ("not supported yet"); meant for libcurl.
 *   nats://bucket/key  object KEY of JetStream object store BUCKET, read through the node's NATS connection
 *                      (server/nats-objstore.h: size and digest checked against the object's metadata).  Only
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

#include <stdint.h>
#include <stddef.h>

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

/* Where a scheme implemented outside artifact.c writes the bytes it fetches (hashing and bounds included). */
typedef int (*nex_artifact_write_t) (void *sink, const void *buf, size_t n, nex_error_t *err);

/* Reads object KEY of BUCKET into WRITE(SINK, ...), at most MAX_BYTES; 0 or -1. */
typedef int (*nex_artifact_nats_get_t) (void *ctx, const char *bucket, const char *key, uint64_t max_bytes,
                                        nex_artifact_write_t write, void *sink, nex_error_t *err);

/* Makes nats:// URLs fetchable through GET (with CTX), or unavailable again when GET is NULL.  Called by the NATS
 * bridge when it starts (before the supervisor) and when it closes (after the supervisor stopped). */
void nex_artifact_set_nats (nex_artifact_nats_get_t get, void *ctx);

#endif
