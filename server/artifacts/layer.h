/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/layer.h — unpacking an image's layers into one tree, treating every byte as hostile.
 *
 * libarchive reads the layer (tar, plain or gzip or zstd); nothing is ever written with archive_write_disk
 * (CVE-2021-31566, CVE-2021-23177: it follows what the archive makes).  Each entry is written here instead,
 * relative to the image root's descriptor: every parent directory is opened one component at a time with
 * openat2 (RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), and the last component is created with
 * O_NOFOLLOW | O_EXCL (or mkdirat/symlinkat/linkat, which never follow it).  So nothing outside the root is ever
 * touched, whatever the names and links say.  Refused, with a reason naming the entry:
 *   - a name with a `..` component (absolute names are taken relative to the root, as tar does);
 *   - an entry whose parent path goes through a symlink ("writes through a symlink");
 *   - a hardlink whose target has `..`, is missing, or is not a regular file (a directory, a symlink);
 *   - the root itself as anything but a directory (`/.` as a symlink: CVE-2021-29136);
 *   - character or block devices and sockets; a uid or gid beyond 2^31-1 (or negative);
 *   - past the budget: more uncompressed bytes or entries than the image may have.
 * Whiteouts are applied and never created: `.wh.NAME` removes NAME from the layers below, `.wh..wh..opq` empties
 * its directory of what the layers below put there (what the same layer unpacked is kept).
 * Owners are shifted into the sandbox's id range: uid U becomes ID_BASE + U for U < ID_COUNT, and ID_BASE + 65534
 * (nobody) beyond; setuid and setgid bits are dropped from files (the sandbox runs with no_new_privs and nosuid
 * anyway; this keeps the tree harmless on the host too).
 * The layer's uncompressed bytes are hashed as they are read and compared with the config's diff_id.
 *
 * Thread safety: any thread; one root at a time per caller. */
#ifndef NEX_LAYER_H
#define NEX_LAYER_H

#include <stdint.h>

#include "common/error.h"

#define NEX_LAYER_NOBODY 65534

/* What one image's unpacking may take, and what it took so far (across its layers). */
typedef struct nex_layer_budget
{
  uint64_t max_bytes;   /* uncompressed bytes, all layers together */
  uint64_t max_entries; /* tar entries, all layers together */
  uint64_t bytes;       /* so far */
  uint64_t entries;     /* so far */
  uint32_t id_base;     /* host id of the sandbox's uid/gid 0 */
  uint32_t id_count;    /* ids mapped into the sandbox */
} nex_layer_budget_t;

/* Applies the layer blob at BLOB_PATH onto the tree whose root directory is ROOT_FD (O_PATH or O_RDONLY), and
 * checks that its uncompressed bytes have digest DIFF_ID ("sha256:<hex>").  0, or -1 with *ERR
 * (NEX_ERR_INVALID field "image" for what the layer does wrong, NEX_ERR_TOO_LARGE past the budget).  After a
 * failure the tree is half-made and must be thrown away. */
int nex_layer_apply (int root_fd, const char *blob_path, const char *diff_id, nex_layer_budget_t *budget,
                     nex_error_t *err);

/* Checks the finished tree: `/dev`, `/proc` and `/tmp` must be directories or absent (the sandbox mounts on them,
 * and a symlink would lead its mounts elsewhere), and makes the mount points the sandbox needs (those three and
 * the agent's file `/.nex-agent`), owned by the sandbox's root.  0 or -1. */
int nex_layer_finish_root (int root_fd, const nex_layer_budget_t *budget, nex_error_t *err);

/* Removes NAME below DIR_FD and everything in it, never following a symlink.  0 or -1 with errno. */
int nex_layer_remove_tree (int dir_fd, const char *name);

#endif
