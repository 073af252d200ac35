/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/image-archive.h — an image as one tar file: an OCI image layout packed in a tar, or a docker-archive
 * (what `docker save` and `skopeo copy ... docker-archive:` write), turned into an OCI image layout directory
 * that distribution.c pulls from like any other.
 *
 * The tar is hostile input.  Nothing in it is written by its own name: each regular file is streamed into
 * DIR/blobs/sha256/<its own SHA-256>, so a name can neither reach outside DIR nor overwrite anything; names are
 * kept only as keys of a map (name -> digest, size).  Then:
 *   - with an `index.json` in the tar: an OCI layout; its index.json is copied to DIR/index.json (its
 *     descriptors find the blobs by digest, and the pull verifies every one of them);
 *   - with a `manifest.json`: a docker-archive: each of its entries ({Config, RepoTags, Layers}) becomes an OCI
 *     image manifest (config and layers by the digests of the files they name, layers typed as plain tar, which
 *     the unpacker reads whatever their compression) stored as a blob, and an index.json entry per RepoTag
 *     (annotation org.opencontainers.image.ref.name = the RepoTag, e.g. "busybox:1.36"), or one without a name;
 *   - else it is refused.
 * Symlinks and hardlinks in the tar (older `docker save` links identical layers) name another file of the tar;
 * devices, fifos and names with `..` are refused; at most MAX_BYTES of file data (after any gzip/zstd filter of
 * the whole tar) and NEX_IMAGE_ARCHIVE_MAX_FILES files.
 *
 * Thread safety: any thread, one DIR per call. */
#ifndef NEX_IMAGE_ARCHIVE_H
#define NEX_IMAGE_ARCHIVE_H

#include <stdint.h>

#include <jansson.h>

#include "common/error.h"

#define NEX_IMAGE_ARCHIVE_MAX_FILES 4096

/* Turns the tar at TAR_PATH into an OCI layout in the existing empty directory DIR.  The layout's index
 * `manifests` array (a new reference), or NULL with *ERR: NEX_ERR_INVALID field FIELD for what the tar holds
 * wrong, NEX_ERR_TOO_LARGE past a bound. */
json_t *nex_image_archive_to_layout (const char *tar_path, const char *dir, uint64_t max_bytes, const char *field,
                                     nex_error_t *err);

#endif
