-- SPDX-License-Identifier: Apache-2.0
-- 007_images.sql — OCI images: the node's image cache, and what an image workload asked for and ran.
--
-- images holds one row per image (its manifest digest) whose layers were pulled, verified and flattened into a
-- read-only tree under data_dir/oci/trees/<hex>; image_refs maps each reference that was pulled (its canonical
-- text, "docker.io/library/busybox:1.36") to the digest it resolved to.  A workload whose `image` is set has an
-- empty `artifact` (the column is NOT NULL since 001) and records the image's digest and the process it ran.
CREATE TABLE images (
  digest       TEXT PRIMARY KEY,         -- "sha256:<hex>" of the image manifest
  config       TEXT NOT NULL,            -- the image's config JSON as pulled (verified against its digest)
  layers       TEXT NOT NULL,            -- JSON array of its blob digests: config, then layers bottom first
  size         INTEGER NOT NULL,         -- bytes of config and layers as pulled (compressed)
  created_at   INTEGER NOT NULL,         -- Unix ms when it was pulled
  last_used_at INTEGER                   -- Unix ms of the last deploy that used it
);

CREATE TABLE image_refs (
  ref     TEXT PRIMARY KEY,              -- canonical reference text
  digest  TEXT NOT NULL                  -- the image it resolved to
);

ALTER TABLE workloads ADD COLUMN image TEXT;         -- the reference as the client gave it, image workloads only
ALTER TABLE workloads ADD COLUMN image_digest TEXT;  -- the manifest digest that ran
ALTER TABLE workloads ADD COLUMN entrypoint TEXT;    -- JSON array: the request's entrypoint override, or NULL
ALTER TABLE workloads ADD COLUMN cmd TEXT;           -- JSON array: the request's cmd override, or NULL
ALTER TABLE workloads ADD COLUMN user TEXT;          -- the request's user override, or NULL
ALTER TABLE workloads ADD COLUMN process TEXT;       -- JSON: the process resolved from image and request
