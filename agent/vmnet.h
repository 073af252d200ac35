/* SPDX-License-Identifier: Apache-2.0 */
/* vmnet.h — nex-agent configuring a microVM's network (network bridge): the guest kernel has no IP
 * autoconfiguration, so the agent, as the VM's init, gives eth0 the address the host chose. */
#ifndef NEX_AGENT_VMNET_H
#define NEX_AGENT_VMNET_H

/* Configures the guest from SPEC, the value of nex.net= (rootfs/layout.h: "ADDR,GATEWAY[,RESOLVER...]"):
 * waits up to NEX_AGENT_VM_NET_WAIT_MS for eth0 (its driver probes after its module loaded), gives it ADDR/32,
 * brings it up, routes GATEWAY on it and the default route through GATEWAY; writes /etc/hosts (localhost,
 * HOSTNAME at ADDR, nex-host at GATEWAY) and /etc/resolv.conf (the resolvers); lets any user bind any port.
 * Failures are reported on stderr (the console), not fatal: the workload then runs without its network.
 * 0, or -1 when SPEC is malformed or eth0 could not be configured. */
#define NEX_AGENT_VM_NET_WAIT_MS 10000
int nex_agent_vm_net (const char *spec, const char *hostname);

#endif
