/* SPDX-License-Identifier: Apache-2.0 */
/* seccomp.h — the default seccomp profile of every sandboxed workload.
 *
 * nexd compiles the profile with libseccomp into a classic BPF program and hands it to the agent in START (and
 * EXEC) as JSON: an array of [code, jt, jf, k] instructions.  The agent installs it with
 * prctl(PR_SET_SECCOMP) in the workload's process right before execve, after no_new_privs and after dropping
 * capabilities, so the agent's own set-up is not constrained and the agent stays small (no libseccomp inside
 * the static agent, and the same agent serves VMs).  The policy lives in one place, here, for every driver.
 *
 * The profile allows by default and refuses with EPERM what a workload has no business doing and what widens
 * the kernel's attack surface: mounting and namespace games, kernel modules and kexec, bpf, keyrings, ptrace and
 * cross-process memory access, perf, userfaultfd, time and swap changes, reboot, syslog, acct, and the like;
 * clone with namespace flags; personality changes that disable ASLR or make memory executable; TIOCSTI.  Calls
 * of another architecture (i386 syscalls through int 0x80) kill the process: the deny list would not see them. */
#ifndef NEX_SECCOMP_H
#define NEX_SECCOMP_H

#include <jansson.h>

#include "common/error.h"

#define NEX_SECCOMP_MAX_INSNS 4096 /* BPF_MAXINSNS: the kernel's bound, which the agent enforces too */

/* The default profile as a JSON array of [code, jt, jf, k].  New reference, or NULL (libseccomp failed). */
json_t *nex_seccomp_default_profile (nex_error_t *err);

#endif
