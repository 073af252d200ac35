/* SPDX-License-Identifier: Apache-2.0 */
/* seccomp.c — builds the default seccomp profile (see seccomp.h for what it refuses and why). */
#include "server/drivers/seccomp.h"

#include <errno.h>
#include <linux/filter.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

/* Refused with EPERM, each for what it would let a workload do:
 *   - change what the filesystem or its namespaces look like, or escape them (mount family, pivot_root,
 *     unshare, setns, open_by_handle_at which reaches files by handle around path checks);
 *   - change the running kernel (modules, kexec, bpf programs, perf, userfaultfd which helps kernel exploits);
 *   - reach other processes (ptrace, process_vm_*, kcmp);
 *   - reach kernel keyrings shared across the host (keyctl, add_key, request_key);
 *   - change host-wide state (clock, swap, reboot, syslog, acct, quotas, I/O ports, vhangup). */
/* Grouped by what they stop, as listed above. */
/* clang-format off */
static const char *const denied[] = {
  "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
  "open_tree", "mount_setattr", "unshare", "setns", "open_by_handle_at", "name_to_handle_at",
  "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
  "kexec_load", "kexec_file_load", "bpf", "perf_event_open", "userfaultfd", "lookup_dcookie",
  "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
  "keyctl", "add_key", "request_key",
  "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime", "swapon", "swapoff", "reboot", "syslog",
  "acct", "quotactl", "quotactl_fd", "iopl", "ioperm", "vhangup", "nfsservctl", "uselib", "_sysctl",
};
/* clang-format on */

/* clone flags that make new namespaces: refused on clone as unshare is. */
static const uint64_t namespace_flags[] = {
  CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP,
};

#define PER_ADDR_NO_RANDOMIZE 0x0040000
#define PER_READ_IMPLIES_EXEC 0x0400000

static void
release_ctx (scmp_filter_ctx *ctx)
{
  if (*ctx)
    seccomp_release (*ctx);
}

static int
rule (scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n, const struct scmp_arg_cmp *args,
      nex_error_t *err)
{
  int nr = seccomp_syscall_resolve_name (name);
  if (nr == __NR_SCMP_ERROR)
    return 0; /* not a system call of this architecture */
  int r = seccomp_rule_add_array (ctx, action, nr, n, args);
  if (r < 0)
    return nex_error_sys (err, -r, "seccomp rule for %s", name);
  return 0;
}

json_t *
nex_seccomp_default_profile (nex_error_t *err)
{
  cleanup_with (release_ctx) scmp_filter_ctx ctx = seccomp_init (SCMP_ACT_ALLOW);
  if (ctx == NULL)
    {
      nex_error_set (err, NEX_ERR_SYSTEM, "seccomp_init failed");
      return NULL;
    }
  /* Another ABI's system call numbers mean other calls: the deny list cannot apply to them. */
  int r = seccomp_attr_set (ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (r < 0)
    {
      nex_error_sys (err, -r, "seccomp bad-arch action");
      return NULL;
    }
  uint32_t eperm = SCMP_ACT_ERRNO (EPERM);
  for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++)
    if (rule (ctx, eperm, denied[i], 0, NULL, err) < 0)
      return NULL;
  for (size_t i = 0; i < sizeof namespace_flags / sizeof namespace_flags[0]; i++)
    {
      struct scmp_arg_cmp a = SCMP_A0_64 (SCMP_CMP_MASKED_EQ, namespace_flags[i], namespace_flags[i]);
      if (rule (ctx, eperm, "clone", 1, &a, err) < 0)
        return NULL;
    }
  /* clone3 passes its flags in memory, out of a filter's reach: "not implemented" makes libc fall back to clone,
   * whose flags are checked above. */
  if (rule (ctx, SCMP_ACT_ERRNO (ENOSYS), "clone3", 0, NULL, err) < 0)
    return NULL;
  /* personality: no turning off ASLR, no executable data (the 0xffffffff query has its top byte set and passes). */
  struct scmp_arg_cmp no_aslr
      = SCMP_A0_32 (SCMP_CMP_MASKED_EQ, 0xff000000u | PER_ADDR_NO_RANDOMIZE, PER_ADDR_NO_RANDOMIZE);
  struct scmp_arg_cmp rie = SCMP_A0_32 (SCMP_CMP_MASKED_EQ, 0xff000000u | PER_READ_IMPLIES_EXEC, PER_READ_IMPLIES_EXEC);
  if (rule (ctx, eperm, "personality", 1, &no_aslr, err) < 0 || rule (ctx, eperm, "personality", 1, &rie, err) < 0)
    return NULL;
  /* TIOCSTI pushes bytes into a terminal's input: with a TTY exec session, into the host side's. */
  struct scmp_arg_cmp sti = SCMP_A1_32 (SCMP_CMP_EQ, TIOCSTI);
  if (rule (ctx, eperm, "ioctl", 1, &sti, err) < 0)
    return NULL;

  cleanup_close int fd = memfd_create ("nex-seccomp", MFD_CLOEXEC);
  if (fd < 0)
    {
      nex_error_sys (err, errno, "memfd_create");
      return NULL;
    }
  r = seccomp_export_bpf (ctx, fd);
  if (r < 0)
    {
      nex_error_sys (err, -r, "seccomp_export_bpf");
      return NULL;
    }
  off_t size = lseek (fd, 0, SEEK_END);
  if (size <= 0 || size % (off_t)sizeof (struct sock_filter) != 0
      || size / (off_t)sizeof (struct sock_filter) > NEX_SECCOMP_MAX_INSNS)
    {
      nex_error_set (err, NEX_ERR_SYSTEM, "seccomp program of %lld bytes", (long long)size);
      return NULL;
    }
  size_t n = (size_t)size / sizeof (struct sock_filter);
  cleanup_free struct sock_filter *prog = nex_xmalloc ((size_t)size);
  if (pread (fd, prog, (size_t)size, 0) != size)
    {
      nex_error_sys (err, errno, "read seccomp program");
      return NULL;
    }
  json_t *out = json_array ();
  for (size_t i = 0; i < n; i++)
    json_array_append_new (out,
                           json_pack ("[i, i, i, I]", prog[i].code, prog[i].jt, prog[i].jf, (json_int_t)prog[i].k));
  return out;
}
