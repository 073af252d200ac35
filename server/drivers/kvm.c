/* SPDX-License-Identifier: Apache-2.0 */
/* kvm.c — the KVM probe and the node's verdict on KVM (see kvm.h).
 *
 * The probe's child reports how far it got as one fixed-size record on a pipe (the step it stopped at, errno,
 * and a value such as the exit reason); the parent turns that into the reason text, so the child needs nothing
 * but system calls (nexd has other threads, whose locks a forked child must not touch). */
#include "server/drivers/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __x86_64__
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#endif

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/log.h"

/* How far the probe's child got; every step but STEP_DONE is a failure at that step. */
typedef enum
{
  STEP_OPEN,
  STEP_API_VERSION,
  STEP_API_MISMATCH, /* value: the version the device speaks */
  STEP_CREATE_VM,
  STEP_GUEST_MEMORY, /* mmap of the host memory backing the guest's page */
  STEP_SET_MEMORY,   /* KVM_SET_USER_MEMORY_REGION */
  STEP_CREATE_VCPU,
  STEP_RUN_SIZE, /* KVM_GET_VCPU_MMAP_SIZE */
  STEP_RUN_MAP,  /* mmap of the vCPU's kvm_run area */
  STEP_GET_SREGS,
  STEP_SET_SREGS,
  STEP_SET_REGS,
  STEP_RUN,
  STEP_EXIT, /* value: the exit reason; detail: its hardware or internal error code */
  STEP_GET_REGS,
  STEP_RESULT, /* value: the guest's rax */
  STEP_DONE,
  STEP_UNSUPPORTED, /* not an x86-64 host */
} step_t;

typedef struct outcome
{
  int32_t step;
  int32_t errnum;
  int64_t value;
  uint64_t detail;
} outcome_t;

#define GUEST_ADDR 0x1000
#define GUEST_RESULT 0x102a /* what the guest code leaves in ax */

#ifdef __x86_64__
/* Real mode at GUEST_ADDR: mov ax, 0x2a; add ax, 0x1000; hlt. */
static const uint8_t guest_code[] = { 0xb8, 0x2a, 0x00, 0x05, 0x00, 0x10, 0xf4 };

static outcome_t
fail_at (step_t step, int64_t value)
{
  return (outcome_t){ .step = step, .errnum = errno, .value = value };
}

/* The probe proper, in the child: system calls only.  Descriptors and mappings end with the child. */
static outcome_t
probe_in_child (const char *device)
{
  int kvm = open (device, O_RDWR | O_CLOEXEC);
  if (kvm < 0)
    return fail_at (STEP_OPEN, 0);
  int version = ioctl (kvm, KVM_GET_API_VERSION, 0);
  if (version < 0)
    return fail_at (STEP_API_VERSION, 0);
  if (version != KVM_API_VERSION)
    return fail_at (STEP_API_MISMATCH, version);
  int vm = ioctl (kvm, KVM_CREATE_VM, 0);
  if (vm < 0)
    return fail_at (STEP_CREATE_VM, 0);
  /* Intel hosts without unrestricted guest run real mode through a TSS of their own; elsewhere it is unused. */
  (void)ioctl (vm, KVM_SET_TSS_ADDR, 0xfffbd000UL);
  uint8_t *mem = mmap (NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED)
    return fail_at (STEP_GUEST_MEMORY, 0);
  memcpy (mem, guest_code, sizeof guest_code);
  struct kvm_userspace_memory_region region
      = { .slot = 0, .guest_phys_addr = GUEST_ADDR, .memory_size = 4096, .userspace_addr = (uintptr_t)mem };
  if (ioctl (vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
    return fail_at (STEP_SET_MEMORY, 0);
  int vcpu = ioctl (vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0)
    return fail_at (STEP_CREATE_VCPU, 0);
  int run_size = ioctl (kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size < (int)sizeof (struct kvm_run))
    return fail_at (STEP_RUN_SIZE, run_size);
  struct kvm_run *run = mmap (NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED)
    return fail_at (STEP_RUN_MAP, 0);
  struct kvm_sregs sregs;
  if (ioctl (vcpu, KVM_GET_SREGS, &sregs) < 0)
    return fail_at (STEP_GET_SREGS, 0);
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl (vcpu, KVM_SET_SREGS, &sregs) < 0)
    return fail_at (STEP_SET_SREGS, 0);
  struct kvm_regs regs = { .rip = GUEST_ADDR, .rflags = 0x2 };
  if (ioctl (vcpu, KVM_SET_REGS, &regs) < 0)
    return fail_at (STEP_SET_REGS, 0);
  int r;
  while ((r = ioctl (vcpu, KVM_RUN, 0)) < 0 && errno == EINTR)
    ;
  if (r < 0)
    return fail_at (STEP_RUN, 0);
  if (run->exit_reason != KVM_EXIT_HLT)
    {
      outcome_t o = fail_at (STEP_EXIT, run->exit_reason);
      if (run->exit_reason == KVM_EXIT_FAIL_ENTRY)
        o.detail = run->fail_entry.hardware_entry_failure_reason;
      else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
        o.detail = run->internal.suberror;
      return o;
    }
  if (ioctl (vcpu, KVM_GET_REGS, &regs) < 0)
    return fail_at (STEP_GET_REGS, 0);
  if ((regs.rax & 0xffff) != GUEST_RESULT)
    return fail_at (STEP_RESULT, (int64_t)regs.rax);
  return (outcome_t){ .step = STEP_DONE };
}
#else
static outcome_t
probe_in_child (const char *device)
{
  (void)device;
  return (outcome_t){ .step = STEP_UNSUPPORTED };
}
#endif

/* The name of a KVM exit reason the probe may meet, or NULL. */
static const char *
exit_name (int64_t reason)
{
  static const char *const names[] = {
    [0] = "KVM_EXIT_UNKNOWN",
    [1] = "KVM_EXIT_EXCEPTION",
    [2] = "KVM_EXIT_IO",
    [6] = "KVM_EXIT_MMIO",
    [8] = "KVM_EXIT_SHUTDOWN",
    [9] = "KVM_EXIT_FAIL_ENTRY",
    [17] = "KVM_EXIT_INTERNAL_ERROR",
  };
  return reason >= 0 && (size_t)reason < sizeof names / sizeof names[0] ? names[reason] : NULL;
}

/* The reason text for a failed outcome O of probing DEVICE (caller frees). */
static char *
outcome_reason (const outcome_t *o, const char *device)
{
  static const char *const ioctl_of[] = {
    [STEP_CREATE_VM] = "KVM_CREATE_VM",
    [STEP_GUEST_MEMORY] = "mmap of the guest's memory",
    [STEP_SET_MEMORY] = "KVM_SET_USER_MEMORY_REGION",
    [STEP_CREATE_VCPU] = "KVM_CREATE_VCPU",
    [STEP_RUN_MAP] = "mmap of the vCPU's run area",
    [STEP_GET_SREGS] = "KVM_GET_SREGS",
    [STEP_SET_SREGS] = "KVM_SET_SREGS",
    [STEP_SET_REGS] = "KVM_SET_REGS",
    [STEP_RUN] = "KVM_RUN",
    [STEP_GET_REGS] = "KVM_GET_REGS",
  };
  const char *e = strerror (o->errnum);
  switch ((step_t)o->step)
    {
    case STEP_OPEN:
      return nex_xasprintf ("cannot open %s: %s", device, e);
    case STEP_API_VERSION:
      return nex_xasprintf ("cannot open %s as KVM: not a KVM device (KVM_GET_API_VERSION: %s)", device, e);
    case STEP_API_MISMATCH:
      return nex_xasprintf ("%s speaks KVM API version %lld, not 12", device, (long long)o->value);
    case STEP_RUN_SIZE:
      return nex_xasprintf ("KVM_GET_VCPU_MMAP_SIZE failed: %s", o->value < 0 ? e : "the run area is too small");
    case STEP_EXIT:
      {
        const char *name = exit_name (o->value);
        cleanup_free char *code = o->detail ? nex_xasprintf (", code %#llx", (unsigned long long)o->detail) : NULL;
        return nex_xasprintf ("vCPU exited with reason %lld instead of HLT%s%s%s%s", (long long)o->value,
                              name ? " (" : "", name ? name : "", code ? code : "", name ? ")" : "");
      }
    case STEP_RESULT:
      return nex_xasprintf ("the probe's guest computed %#llx instead of %#x", (unsigned long long)o->value,
                            GUEST_RESULT);
    case STEP_UNSUPPORTED:
      return nex_xstrdup ("the KVM probe knows only x86-64 guests");
    case STEP_DONE:
      return NULL;
    default:
      if (o->step >= 0 && (size_t)o->step < sizeof ioctl_of / sizeof ioctl_of[0] && ioctl_of[o->step])
        return nex_xasprintf ("%s failed: %s", ioctl_of[o->step], e);
      return nex_xasprintf ("the probe stopped at an unknown step %d", (int)o->step);
    }
}

/* Reads the child's record from FD until DEADLINE (monotonic ms).  1 with *O filled, 0 on end of file (the
 * child died first), -1 when the deadline passed. */
static int
read_outcome (int fd, int64_t deadline, outcome_t *o)
{
  size_t got = 0;
  while (got < sizeof *o)
    {
      int64_t left = deadline - nex_clock_mono_ms ();
      struct pollfd p = { .fd = fd, .events = POLLIN };
      int r = left > 0 ? poll (&p, 1, (int)left) : 0;
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        return -1;
      ssize_t n = read (fd, (char *)o + got, sizeof *o - got);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return 0;
      got += (size_t)n;
    }
  return 1;
}

int
nex_kvm_probe (const char *device, int64_t deadline_ms, char **reason)
{
  cleanup_pipe int fds[2] = { -1, -1 };
  if (pipe2 (fds, O_CLOEXEC) < 0)
    {
      *reason = nex_xasprintf ("cannot run the KVM probe: pipe: %s", strerror (errno));
      return 0;
    }
  int64_t deadline = nex_clock_mono_ms () + deadline_ms;
  cleanup_pid pid_t child = fork ();
  if (child < 0)
    {
      *reason = nex_xasprintf ("cannot run the KVM probe: fork: %s", strerror (errno));
      return 0;
    }
  if (child == 0)
    {
      close (fds[0]);
      outcome_t o = probe_in_child (device);
      (void)!write (fds[1], &o, sizeof o);
      _exit (0);
    }
  close (NEX_STEAL_FD (fds[1]));
  outcome_t o = { 0 };
  int r = read_outcome (fds[0], deadline, &o);
  if (r < 0)
    {
      *reason = nex_xasprintf ("probe did not finish in %.3g s", (double)deadline_ms / 1000.0);
      return 0; /* cleanup_pid kills and reaps the child */
    }
  if (r == 0)
    {
      int status = 0;
      while (waitpid (child, &status, 0) < 0 && errno == EINTR)
        ;
      NEX_STEAL_PID (child);
      if (WIFSIGNALED (status))
        *reason = nex_xasprintf ("the probe was killed by signal %d (%s)", WTERMSIG (status),
                                 strsignal (WTERMSIG (status)));
      else
        *reason = nex_xasprintf ("the probe exited with status %d before it reported", WEXITSTATUS (status));
      return 0;
    }
  *reason = outcome_reason (&o, device);
  return *reason == NULL;
}

/* --- the node's verdict ---------------------------------------------------------------------------------------- */

static struct
{
  pthread_mutex_t lock;
  int taken; /* nex_kvm_configure ran */
  int usable;
  char *reason; /* why not, when not usable */
} verdict = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* Takes the verdict's lock; pair with `cleanup_unlock pthread_mutex_t *locked = verdict_lock ();`. */
static pthread_mutex_t *
verdict_lock (void)
{
  pthread_mutex_lock (&verdict.lock);
  return &verdict.lock;
}

void
nex_kvm_configure (const char *device, int probe)
{
  char *why = NULL;
  int ok;
  if (probe)
    ok = nex_kvm_probe (device, NEX_KVM_PROBE_DEADLINE_MS, &why);
  else
    {
      int fd = open (device, O_RDWR | O_CLOEXEC);
      ok = fd >= 0;
      if (!ok)
        why = nex_xasprintf ("cannot open %s: %s", device, strerror (errno));
      else
        close (fd);
    }
  if (ok)
    nex_info ("KVM: %s is usable (%s)", device, probe ? "a probe guest ran to its HLT" : "it opens; not probed");
  else
    nex_info ("KVM: not usable: %s", why);
  cleanup_unlock pthread_mutex_t *locked = verdict_lock ();
  free (verdict.reason);
  verdict.taken = 1;
  verdict.usable = ok;
  verdict.reason = why;
}

int
nex_kvm_usable (char **reason)
{
  cleanup_unlock pthread_mutex_t *locked = verdict_lock ();
  if (!verdict.taken)
    {
      *reason = nex_xstrdup ("KVM was not probed");
      return 0;
    }
  if (!verdict.usable)
    *reason = nex_xstrdup (verdict.reason);
  return verdict.usable;
}

int
nex_kvm_mark_unusable (const char *reason)
{
  cleanup_unlock pthread_mutex_t *locked = verdict_lock ();
  if (verdict.taken && !verdict.usable)
    return 0;
  nex_warn ("KVM: marked unusable for this node: %s", reason);
  free (verdict.reason);
  verdict.taken = 1;
  verdict.usable = 0;
  verdict.reason = nex_xstrdup (reason);
  return 1;
}

void
nex_kvm_release (void)
{
  cleanup_unlock pthread_mutex_t *locked = verdict_lock ();
  free (verdict.reason);
  verdict.reason = NULL;
  verdict.taken = 0;
  verdict.usable = 0;
}
