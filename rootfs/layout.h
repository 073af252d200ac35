/* SPDX-License-Identifier: Apache-2.0 */
/* layout.h — what a Nex VM image holds and where: the one list shared by the image builder (rootfs.c) and the
 * agent that boots from the image (agent/vm.c).
 *
 *     /init              nex-agent: the kernel runs it as PID 1 (initramfs), or `init=/init` names it (ext4)
 *     /workload          the workload's verified executable (none for an image workload: its disk is its root)
 *     /dev/console, /dev/null   nodes the kernel and the agent need before devtmpfs is mounted over /dev
 *     /nex/modules/NAME.ko  kernel modules the agent loads in name order before it opens its channel
 *     /proc /sys /tmp    mount points (the agent mounts proc, sysfs, devtmpfs and a tmpfs on /tmp)
 */
#ifndef NEX_ROOTFS_LAYOUT_H
#define NEX_ROOTFS_LAYOUT_H

#define NEX_VM_INIT "/init"
#define NEX_VM_WORKLOAD "/workload"
#define NEX_VM_MODULES_DIR "/nex/modules"
#define NEX_VM_MAX_MODULES 64 /* more .ko files than this in a kernel's module dir is a mistake, not a wish */

/* Kernel command-line parameters the agent reads from /proc/cmdline. */
#define NEX_VM_PARAM_VM "nex.vm"       /* nex.vm=1: run as a VM's init even when not started as /init */
#define NEX_VM_PARAM_AGENT "nex.agent" /* where the host reaches the agent: a device path or vsock:PORT */
/* network bridge: nex.net=ADDR,GATEWAY[,RESOLVER...] (dotted IPv4): eth0 gets ADDR/32 with a route to GATEWAY
 * and the default route through it; /etc/hosts and /etc/resolv.conf are written from it (agent/vmnet.c) */
#define NEX_VM_PARAM_NET "nex.net"
#define NEX_VM_NET_MAX_RESOLVERS 3
/* an OCI image workload: nex.image=DEVICE is the read-only ext4 disk of the image's tree (server/drivers/vm-image.h),
 * nex.disk_mb=N the size of the writable layer the agent puts over it (agent/vmimage.c) */
#define NEX_VM_PARAM_IMAGE "nex.image"
#define NEX_VM_PARAM_DISK_MB "nex.disk_mb"
#define NEX_VM_IMAGE_DIR "/nex/image" /* where the agent mounts the disk, */
#define NEX_VM_IMAGE_RW "/nex/rw"     /* the tmpfs of the writable layer (upper/, work/), */
#define NEX_VM_IMAGE_ROOT "/nex/root" /* and the overlay that becomes the root */

#endif
