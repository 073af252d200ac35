/* SPDX-License-Identifier: Apache-2.0 */
/* vm.h — nex-agent as the init of a microVM.
 *
 * In a VM the agent is the first and only program the kernel starts, with nothing prepared: it mounts the
 * pseudo file systems, loads the kernel modules its channel needs (those the image holds, see rootfs/layout.h),
 * names the machine, configures its network when the host gave it one (nex.net=, agent/vmnet.c), and opens the channel
 * the kernel command line names (nex.agent=/dev/hvc0 for a virtio or serial console, nex.agent=vsock:PORT for vsock).
 * When the agent leaves, the VM powers off: PID 1 exiting would panic the kernel.  Everything else — the wire protocol,
 * the workload, reaping — is the agent's ordinary code, the same as in a sandbox. */
#ifndef NEX_AGENT_VM_H
#define NEX_AGENT_VM_H

#include <stdbool.h>

/* How the host reaches an agent in a VM. */
typedef struct nex_agent_vm_channel
{
  bool listening; /* fd is a listening socket (vsock) rather than a connected stream (a console) */
  int fd;
} nex_agent_vm_channel_t;

/* True when the agent runs as a VM's init: it is PID 1, no transport was given on its command line
 * (EXPLICIT_TRANSPORT false), and either ARGV0 is /init or the kernel command line says nex.vm=1.  May mount
 * /proc to read the command line. */
bool nex_agent_vm_detect (const char *argv0, bool explicit_transport);

/* Prepares the VM for the agent: devtmpfs on /dev, devpts on /dev/pts, proc, sysfs, a tmpfs on /tmp, the host name from
 * nex.hostname=, the modules in /nex/modules (in name order; failures are reported, not fatal), an image workload's
 * root from nex.image= (vmimage.h; a failure powers the VM off), eth0 from nex.net= (vmnet.h), and arranges for every
 * exit of the process to power the VM off.  Call once, first thing in main. */
void nex_agent_vm_init (void);

/* Opens the channel named by nex.agent= (default /dev/hvc0), waiting up to NEX_AGENT_VM_CHANNEL_WAIT_MS for a
 * console device to appear.  0 with *CH filled, or -1 after reporting why on stderr. */
#define NEX_AGENT_VM_CHANNEL_WAIT_MS 10000
int nex_agent_vm_channel (nex_agent_vm_channel_t *ch);

#endif
