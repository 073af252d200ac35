/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/image-ref.h — OCI image references: what a deploy's `image` names, parsed once.
 *
 * Two forms:
 *   [host[:port]/]path[:tag][@sha256:<64 hex>]   an image in a registry, by the rules of the distribution
 *       spec and Docker's reference grammar: the first `/`-separated component is a registry host when it holds
 *       a `.` or a `:`, or is `localhost`; otherwise the registry is Docker Hub (`docker.io`, whose API lives at
 *       registry-1.docker.io) and a one-component path gets Docker Hub's `library/` in front.  Path components
 *       are lower-case [a-z0-9] runs joined by `.`, `_`, `__` or dashes; a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127};
 *       neither tag nor digest means the tag `latest`.  A digest pins the manifest: with a tag too, the digest
 *       is what is pulled (the tag is kept as a name for the cache).
 *   oci-layout:///abs/path[:tag][@sha256:...]   an OCI image layout directory on this node (index.json,
 *       blobs/sha256/...): the tag is matched against the index's `org.opencontainers.image.ref.name`
 *       annotations; without tag or digest the index must hold exactly one manifest.
 *   docker-archive:///abs/path.tar[@sha256:...]   a tar as `docker save` writes it (image-archive.h); no tag (a
 *       colon belongs to the path); the archive's first image unless a digest names another.
 *   sha256:<64 hex>   an image already in the node's store (uploaded with POST /v1/images, or pulled before),
 *       by its manifest digest: only DIGEST and CANONICAL (the digest itself) are set.
 *
 * Every refusal is NEX_ERR_INVALID naming the field given to the parser (the deploy's "image"), saying which part
 * is wrong.  Thread safety: reentrant, no global state. */
#ifndef NEX_IMAGE_REF_H
#define NEX_IMAGE_REF_H

#include "common/error.h"

#define NEX_IMAGE_REF_MAX_LEN 512  /* the whole reference text */
#define NEX_IMAGE_NAME_MAX_LEN 255 /* host + path, as written and as normalised: Docker's bound */
#define NEX_IMAGE_TAG_MAX_LEN 128  /* a tag */
#define NEX_IMAGE_DOCKER_HUB "docker.io"
#define NEX_IMAGE_DOCKER_HUB_API "registry-1.docker.io"

/* A parsed reference.  Strings are owned (nex_image_ref_release); unused ones are NULL. */
typedef struct nex_image_ref
{
  char *layout;     /* oci-layout: the directory's absolute path; NULL for a registry image */
  char *archive;    /* docker-archive: the tar's absolute path, else NULL */
  char *registry;   /* registry: "docker.io", "localhost:5000", "ghcr.io" */
  char *repository; /* registry: "library/busybox" */
  char *tag;        /* the tag ("latest" when a registry reference names neither tag nor digest), or NULL */
  char *digest;     /* "sha256:<64 lower-case hex>", or NULL */
  char *canonical;  /* the normalised text: "docker.io/library/busybox:latest", "oci-layout:///p:t@sha256:..." */
} nex_image_ref_t;

/* Parses TEXT into *OUT (zeroed first).  0, or -1 with NEX_ERR_INVALID naming FIELD; *OUT is then empty. */
int nex_image_ref_parse (const char *text, const char *field, nex_image_ref_t *out, nex_error_t *err);

/* The host (and port) to send R's HTTP requests to: registry-1.docker.io for Docker Hub, else R's registry.  A
 * pointer into R or a static string. */
const char *nex_image_ref_api_host (const nex_image_ref_t *r);

/* Whether S is "sha256:" and 64 lower-case hex digits. */
int nex_image_digest_valid (const char *s);

/* Frees what R owns and zeroes it.  Safe on a zeroed struct. */
void nex_image_ref_release (nex_image_ref_t *r);

#endif
