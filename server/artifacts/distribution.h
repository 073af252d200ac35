/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/distribution.h — pulling an OCI image: its manifest, config and layers, every byte verified.
 *
 * From a registry, by the OCI distribution spec (libcurl, jansson): a `/v2/` probe, the manifest by tag or by
 * digest with the four Accept types (OCI index and manifest, Docker manifest list and schema 2), from an index
 * the manifest of this host's platform (os linux, the host's architecture and, where the index says, variant),
 * then the config and layer blobs by digest.  Or from an OCI image layout directory (oci-layout://), whose
 * index.json and blobs are read the same way.  What is refused, each with a reason naming what was wrong:
 *   - a manifest, config or layer whose SHA-256 or size is not what its descriptor (or the reference's digest,
 *     or the registry's Docker-Content-Digest) says;
 *   - a manifest whose `mediaType` disagrees with the Content-Type it was served with, or of another type;
 *   - more than NEX_PULL_MAX_MANIFEST bytes of manifest, NEX_PULL_MAX_CONFIG of config, NEX_PULL_MAX_LAYERS layers,
 *     a layer of a media type this node cannot unpack, or one with `urls` (foreign layers);
 *   - plain http to a registry that is neither loopback nor named in the insecure list.
 * Authentication: Basic from the credentials given (the `auths` object of a docker config.json, matched by
 * registry host), and Bearer tokens from a `WWW-Authenticate: Bearer realm=...,service=...,scope=...` challenge
 * (the token endpoint is asked with the Basic credentials when there are some; the token is kept in O's token
 * cache for its realm, service and scope until its expires_in, or for the rest of the pull without one).  Redirects are
 * followed by hand (at most 5, http(s) only): Authorization goes only to the host the request was first made to, never
 * to the host of a redirect (blob storage), nor to a token realm elsewhere unless it was asked with Basic credentials
 * the operator gave for the registry.
 *
 * Blobs land in BLOBS_DIR as <64 hex> (a temporary name while they arrive, renamed once verified); one already
 * there is not fetched again, so a second pull of an image moves only its manifest.
 *
 * Thread safety: a pull blocks its thread for the transfers (bounded by timeouts) and may run on any thread,
 * several at once. */
#ifndef NEX_DISTRIBUTION_H
#define NEX_DISTRIBUTION_H

#include <stdint.h>

#include <jansson.h>

#include "common/error.h"
#include "server/artifacts/image-ref.h"

#define NEX_PULL_MAX_MANIFEST (4u * 1024 * 1024)
#define NEX_PULL_MAX_CONFIG (8u * 1024 * 1024)
#define NEX_PULL_MAX_LAYERS 128
#define NEX_PULL_MAX_LAYER_BYTES (4ULL * 1024 * 1024 * 1024) /* one compressed layer */
#define NEX_PULL_STALL_S 30                                  /* a transfer below 1 KiB/s this long is abandoned */
#define NEX_PULL_CONNECT_S 10                                /* to open a connection */

/* How a pull may go. */
typedef struct nex_pull_opts
{
  const char *blobs_dir;          /* verified blobs, as <64 hex> (must exist) */
  const char *insecure;           /* comma-separated hosts (host or host:port) reached with plain http; NULL: none */
  const json_t *auths;            /* docker config.json's `auths` object, or NULL */
  struct nex_token_cache *tokens; /* Bearer tokens kept across pulls (token-cache.h), or NULL: one pull's only */
  void (*progress) (void *ctx, uint64_t done, uint64_t total); /* bytes of blobs so far; NULL: none */
  void *progress_ctx;
} nex_pull_opts_t;

/* A layer of a pulled image. */
typedef struct nex_pulled_layer
{
  char digest[72]; /* "sha256:<hex>" of the blob as stored */
  char *media_type;
  uint64_t size;
} nex_pulled_layer_t;

/* What a pull produced; release with nex_pulled_release. */
typedef struct nex_pulled
{
  char digest[72];        /* "sha256:<hex>" of the image manifest (for an index: of the platform's manifest) */
  char config_digest[72]; /* "sha256:<hex>" of the config blob */
  json_t *config;         /* the config, parsed */
  size_t n_layers;
  nex_pulled_layer_t *layers; /* bottom first */
  uint64_t bytes;             /* config + layers, compressed */
} nex_pulled_t;

/* Pulls REF by O into O->blobs_dir and fills *OUT.  0, or -1 with *ERR: NEX_ERR_INVALID for what the image or
 * the reference got wrong (field "image"), NEX_ERR_UNAVAILABLE when the registry cannot be reached or refuses,
 * NEX_ERR_TOO_LARGE past a bound. */
int nex_distribution_pull (const nex_image_ref_t *ref, const nex_pull_opts_t *o, nex_pulled_t *out, nex_error_t *err);

/* The path of blob DIGEST ("sha256:<hex>") in BLOBS_DIR; the caller frees it. */
char *nex_distribution_blob_path (const char *blobs_dir, const char *digest);

/* The OCI architecture name of this host ("amd64", "arm64", ...).  Static. */
const char *nex_distribution_host_arch (void);

void nex_pulled_release (nex_pulled_t *p);

#endif
