/* SPDX-License-Identifier: Apache-2.0 */
/* kvm.h — whether this host's KVM really runs a guest, and the node's verdict on it.
 *
 * A KVM device that opens is not a KVM that works: under nested virtualisation /dev/kvm may open and answer
 * KVM_GET_API_VERSION, yet QEMU aborts on an MSR it cannot set, or the guest hangs in early boot.  So the probe
 * does what a VMM does, in miniature: it creates a VM with one page of guest memory holding a few real-mode
 * instructions that end in `hlt`, one vCPU, and runs it (KVM_RUN) expecting the exit KVM_EXIT_HLT with the
 * register the code computed.  It runs in a child process with a deadline, because a broken KVM can also hang
 * or crash whoever drives it.
 *
 * The node's verdict is taken once, at start (nex_kvm_configure), and kept for the node's life, except that a
 * VM that then fails under KVM may mark KVM unusable (nex_kvm_mark_unusable): the verdict only ever goes from
 * usable to unusable.  The verdict functions may be called from any thread. */
#ifndef NEX_KVM_H
#define NEX_KVM_H

#include <stdint.h>

#define NEX_KVM_PROBE_DEADLINE_MS 2000 /* the probe's child is killed after this */

/* Probes DEVICE (e.g. /dev/kvm) as described above, in a child that is killed when it has not finished after
 * DEADLINE_MS.  Returns 1 when a guest ran to its HLT; else 0 with *REASON (caller frees) saying precisely which
 * step failed and how ("KVM_CREATE_VM failed: ...", "vCPU exited with reason 9 instead of HLT", "probe did not
 * finish in 2 s", "cannot open /dev/null as KVM: not a KVM device (KVM_GET_API_VERSION: ...)").  Takes about a
 * millisecond on a working host.  Any thread (the child makes system calls only). */
int nex_kvm_probe (const char *device, int64_t deadline_ms, char **reason);

/* Takes the node's verdict on DEVICE: with PROBE, nex_kvm_probe's; without, whether DEVICE opens read-write (the
 * operator's choice where the probe misfires).  Logs the verdict.  Called once at start, before any driver runs;
 * a second call replaces the first. */
void nex_kvm_configure (const char *device, int probe);

/* The node's verdict: 1 when KVM is usable, else 0 with *REASON (caller frees) saying why not (the probe's
 * reason, or what nex_kvm_mark_unusable recorded).  Any thread. */
int nex_kvm_usable (char **reason);

/* Marks KVM unusable for the rest of the node's life because REASON (e.g. QEMU's last message when it died
 * under KVM).  Returns 1 when this call changed the verdict, 0 when KVM was already unusable (the first reason
 * is kept).  Any thread. */
int nex_kvm_mark_unusable (const char *reason);

/* Forgets the verdict (at shutdown; for leak checkers). */
void nex_kvm_release (void);

#endif
