/* SPDX-License-Identifier: Apache-2.0 */
/* vm-image.h — an OCI image in a microVM: its disk and what the guest's agent is told about it.
 *
 * An image workload's VM boots the shared initramfs (nex-agent and the modules, no /workload) and gets the
 * image's flattened tree (artifacts/image-store.h) as a second, read-only disk: an ext4 file system image made
 * once per image digest with `mkfs.ext4 -d` (rootfs.h: nex_rootfs_tree_ext4), cached beside the VM initramfs
 * images as images_dir/oci-<hex digest>.ext4 and removed with the image (nex_vm_image_disk_forget).  The VMM
 * attaches it as a virtio block device; inside, the agent (agent/vmimage.c) mounts it, puts a writable overlay
 * on top (tmpfs upper of disk_mb) and moves into it before the workload starts.
 *
 * Disks are built on the supervisor thread, the one that starts VMs, so concurrent deploys of one image build
 * it once: the second finds the first one's disk.  A build is published by rename (no half-written disk is ever
 * found under its name). */
#ifndef NEX_VM_IMAGE_H
#define NEX_VM_IMAGE_H

#include "common/error.h"
#include "server/drivers/driver.h"

/* The ext4 disk of L's image (L->image_tree, L->digest the image's hex digest), built when it is not cached
 * yet: its path (caller frees), or NULL.  Supervisor thread. */
char *nex_vm_image_disk (const nex_launch_t *l, nex_error_t *err);

/* The kernel parameters that tell the guest's agent about L's image disk, DEVICE the guest's name for it
 * (/dev/vda): " nex.image=DEVICE nex.disk_mb=N", with a leading space (caller frees); "" when L runs no image. */
char *nex_vm_image_params (const nex_launch_t *l, const char *device);

/* PATH with every ',' doubled: QEMU's option syntax for a comma inside a value (caller frees). */
char *nex_vm_image_qemu_escape (const char *path);

/* Removes what builds that a crash interrupted left in the VM image cache (names with `.tmp-`: disks and
 * rootfs.h's images alike).  At start-up, before any VM starts. */
void nex_vm_image_sweep (void);

/* Removes the cached disk of image DIGEST (sha256:<hex> or <hex>), if any: the image has been deleted or
 * evicted.  A VM still running from it keeps its open file.  Any thread. */
void nex_vm_image_disk_forget (const char *digest);

#endif
