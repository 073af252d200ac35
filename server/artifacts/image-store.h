/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/image-store.h — the node's OCI images: pulled once, flattened once, shared read-only.
 *
 * An image is known by its manifest digest.  Its blobs (config, layers) are kept verified in
 * DATA_DIR/oci/blobs/<hex> (distribution.h), its layers flattened once into the read-only tree
 * DATA_DIR/oci/trees/<hex> (layer.h), which every workload of the image shares as the lower layer of its root;
 * the registry's images and image_refs tables (schema 007) hold its config, size, blobs, last use and the
 * references that resolved to it.  A reference by tag is resolved once, when first pulled: later deploys of the
 * same tag run the digest it resolved to, until `POST /v1/images/pull` (REFRESH) asks the registry again.
 *
 * Pulls run on threads of their own (one per reference being pulled), never on the caller's: a slow registry
 * delays only the deploys waiting for that image.  Deploys of a reference already being pulled join that pull
 * (one transfer, every waiter told), so concurrent deploys of one image pull it once.  Each pull reports the
 * events image_pull_started, image_pull_progress (bytes done/total, at most 4 a second), image_pull_completed or
 * image_pull_failed {image, digest?, bytes_done, bytes_total, reason?}.
 *
 * Thread safety: every function may be called from any thread. */
#ifndef NEX_IMAGE_STORE_H
#define NEX_IMAGE_STORE_H

#include <jansson.h>

#include "common/error.h"

typedef struct nex_node nex_node_t;
typedef struct nex_image_store nex_image_store_t;

/* Told when a pull ends: DIGEST ("sha256:...") of the image now in the store, or NULL with ERR saying why.
 * Called on the pull's thread; ERR is the store's (copy what is kept). */
typedef void (*nex_image_ready_t) (void *ctx, const char *digest, const nex_error_s *err);

/* Opens the store of NODE (its data dir, configuration, registry and events): makes DATA_DIR/oci/{blobs,trees},
 * removes what an interrupted pull left, reads --registry-auth.  NULL with *ERR. */
nex_image_store_t *nex_image_store_open (nex_node_t *node, nex_error_t *err);

/* Refuses new pulls and waits for those under way to end (their READY callbacks have all returned when it
 * returns).  Call before whatever a READY callback reaches goes away. */
void nex_image_store_drain (nex_image_store_t *s);

/* Frees S (drained first).  Safe on NULL. */
void nex_image_store_close (nex_image_store_t *s);

/* Makes image REF (reference text, image-ref.h) available.  1 when it is in the store already (and REFRESH is
 * 0): DIGEST is filled and READY is not called.  0 when a pull was started or joined: READY (CTX) will be called
 * once, from the pull's thread.  -1 with *ERR when REF is malformed (NEX_ERR_INVALID field "image") or the store
 * is draining. */
int nex_image_store_get (nex_image_store_t *s, const char *ref, int refresh, char digest[72], nex_image_ready_t ready,
                         void *ctx, nex_error_t *err);

/* As nex_image_store_get, waiting for the pull on the calling thread (POST /v1/images/pull).  0 with DIGEST set,
 * or -1. */
int nex_image_store_pull_wait (nex_image_store_t *s, const char *ref, int refresh, char digest[72], nex_error_t *err);

/* The flattened tree of image DIGEST (the caller frees the path).  Exists once a pull of it succeeded. */
char *nex_image_store_tree (nex_image_store_t *s, const char *digest);

/* Image DIGEST's config (the whole config JSON as pulled), a new reference; NULL with *ERR (NEX_ERR_NOT_FOUND
 * when the store has no such image). */
json_t *nex_image_store_config (nex_image_store_t *s, const char *digest, nex_error_t *err);

/* Records that a workload is about to run image DIGEST (its last_used_at). */
void nex_image_store_touch (nex_image_store_t *s, const char *digest);

/* Removes image DIGEST: its registry rows (NEX_ERR_CONFLICT while a live workload uses it, NEX_ERR_NOT_FOUND when
 * there is none), its tree, and its blobs no other image shares. */
int nex_image_store_remove (nex_image_store_t *s, const char *digest, nex_error_t *err);

/* --- loading an image tar: POST /v1/images ---------------------------------------------------------------------
 * The body (an OCI image layout or a docker-archive as one tar, image-archive.h) is streamed into a temporary
 * file below the blobs, bounded by --image-max-unpacked-mb (NEX_ERR_TOO_LARGE; refused before a byte is read
 * when DECLARED, the Content-Length or -1, is beyond it).  Finishing unpacks it into a temporary layout, pulls
 * every image it lists from there (verified as any pull), flattens it, and maps to it each of its
 * org.opencontainers.image.ref.name annotations (docker-archive: RepoTags) that is a whole reference with a tag.
 * One upload belongs to one thread; loading runs on the caller's thread. */
typedef struct nex_image_upload nex_image_upload_t;

nex_image_upload_t *nex_image_store_upload_begin (nex_image_store_t *s, int64_t declared, nex_error_t *err);

/* Appends N bytes.  -1 with *ERR past the bound or on a write error. */
int nex_image_store_upload_write (nex_image_upload_t *up, const void *data, size_t n, nex_error_t *err);

/* Loads the tar: {digest (the first image's), images: [{digest, references, size}], count}, a new reference, or
 * NULL with *ERR (NEX_ERR_INVALID field "body" for what the tar holds wrong). */
json_t *nex_image_store_upload_finish (nex_image_upload_t *up, nex_error_t *err);

/* Frees UP and its temporary file.  Safe on NULL. */
void nex_image_store_upload_free (nex_image_upload_t *up);

#endif
