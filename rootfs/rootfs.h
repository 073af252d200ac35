/* SPDX-License-Identifier: Apache-2.0 */
/* rootfs.h — building what a microVM boots: an image holding nex-agent as /init, the workload, a minimal /dev
 * and the kernel modules the agent needs (layout in rootfs/layout.h).
 *
 * Two kinds of image: an initramfs (a newc cpio archive, written here without any tool or privilege; what the
 * QEMU driver boots) and an ext4 file system image (made by `mkfs.ext4 -d` from a staging directory, no loop
 * mount; what Firecracker attaches as its root drive).  Images are cached by content: the file name is the
 * SHA-256 of the kind, the workload's digest, the agent's digest and each module's name and digest, so a
 * second deploy of the same workload with the same agent and kernel reuses the image, and a new agent or
 * kernel never boots a stale one.  Images are published by rename, so concurrent builders at worst build the
 * same image twice.
 *
 * Used in-process by nexd (the microVM drivers, on the supervisor thread) and by the `nex-rootfs` command.
 * Functions are safe from any thread; they share no state. */
#ifndef NEX_ROOTFS_H
#define NEX_ROOTFS_H

#include <sys/types.h>

#include "common/error.h"

typedef enum nex_rootfs_kind
{
  NEX_ROOTFS_INITRAMFS, /* newc cpio, file suffix .cpio */
  NEX_ROOTFS_EXT4,      /* ext4 image, file suffix .ext4 */
} nex_rootfs_kind_t;

typedef struct nex_rootfs_spec
{
  const char *workload_path;   /* executable that becomes /workload; NULL: none (an image workload, whose files
                                  are an ext4 disk of their own, nex_rootfs_tree_ext4) */
  const char *workload_digest; /* its SHA-256 as 64 hex digits, or NULL to compute it here */
  const char *agent_path;      /* static nex-agent that becomes /init */
  const char *modules_dir;     /* directory whose *.ko files go to /nex/modules; NULL or missing: none */
} nex_rootfs_spec_t;

/* The content key of the image SPEC would produce, as 64 hex digits + NUL in KEY.  0 or -1. */
int nex_rootfs_key (nex_rootfs_kind_t kind, const nex_rootfs_spec_t *spec, char key[65], nex_error_t *err);

/* Writes an image of KIND for SPEC to OUT_PATH (replaced atomically; mode 0444).  0 or -1. */
int nex_rootfs_write (nex_rootfs_kind_t kind, const nex_rootfs_spec_t *spec, const char *out_path, nex_error_t *err);

/* The path of the cached image of KIND for SPEC under CACHE_DIR (created if missing), building it first when
 * it is not there.  The caller frees the path.  NULL on failure, leaving no partial file behind. */
char *nex_rootfs_image (const char *cache_dir, nex_rootfs_kind_t kind, const nex_rootfs_spec_t *spec, nex_error_t *err);

/* Writes an ext4 file system image of the directory TREE (an OCI image's flattened tree) to OUT_PATH (replaced
 * atomically; mode 0444, owned by root), sized for what the tree holds.  ID_BASE: 0, or the host uid and gid
 * that is 0 in the tree (its files belong to ID_BASE..ID_BASE+65535, as a sandbox's do): mkfs.ext4 then reads the
 * tree in a user namespace that maps them back, so the disk records the image's own owners.  Needs root (for
 * the user namespace's maps); runs mkfs.ext4 and waits for it.  Any thread.  0 or -1. */
int nex_rootfs_tree_ext4 (const char *tree, const char *out_path, uid_t id_base, nex_error_t *err);

#endif
