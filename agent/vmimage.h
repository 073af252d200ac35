/* SPDX-License-Identifier: Apache-2.0 */
/* vmimage.h — nex-agent moving a microVM into an OCI image's tree.
 *
 * An image workload's VM boots the shared initramfs (the agent and its modules) with the image's tree as a
 * read-only ext4 disk (server/drivers/vm-image.h) named by nex.image=.  Before it opens its channel, the agent
 * mounts the disk at NEX_VM_IMAGE_DIR, a tmpfs of nex.disk_mb MiB at NEX_VM_IMAGE_RW for the writable layer,
 * the overlay of both at NEX_VM_IMAGE_ROOT, moves /dev (with /dev/pts), /proc, /sys and /tmp into it, and makes it
 * the root (MS_MOVE onto / and chroot, as switch_root does: an initramfs cannot be pivot_root'ed away).  The
 * workload, its exec sessions and the agent itself then see the image's files, as in a sandbox; what the workload
 * writes goes to the tmpfs and dies with the VM.  The process (path, argv, env, user, cwd) comes from the host in
 * the start request, resolved there from the image's config as for a sandbox. */
#ifndef NEX_AGENT_VMIMAGE_H
#define NEX_AGENT_VMIMAGE_H

/* How long the disk's device node may take to appear (virtio_blk probes after its module loaded). */
#define NEX_AGENT_VM_IMAGE_WAIT_MS 10000

/* Makes the image on DEVICE the root, with a writable layer of DISK_MB MiB (see above).  0, or -1 after saying
 * why on stderr (the console): the VM cannot run its workload then. */
int nex_agent_vm_image (const char *device, long disk_mb);

#endif
