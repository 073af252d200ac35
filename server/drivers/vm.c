/* SPDX-License-Identifier: Apache-2.0 */
/* vm.c — shared parts of the microVM drivers (see vm.h). */
#include "server/drivers/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __x86_64__
#include <x86intrin.h>
#endif

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/drivers/kvm.h"

#define VM_MAX_MEMORY_MIB (1 << 20) /* 1 TiB: larger is a typo, and would overflow QEMU's -m parsing */
#define VM_MAX_VCPUS 256

static nex_vm_settings_t settings;

void
nex_vm_configure (const nex_config_t *cfg, const char *kernel_dir, const char *data_dir)
{
  nex_vm_release ();
  settings.kernel_dir = nex_xstrdup (kernel_dir);
  settings.images_dir = nex_xasprintf ("%s/images", data_dir);
  settings.qemu_path = nex_xstrdup (cfg->qemu_path ? cfg->qemu_path : "qemu-system-x86_64");
  settings.firecracker_path = nex_xstrdup (cfg->firecracker_path ? cfg->firecracker_path : "firecracker");
  settings.kvm_device = nex_xstrdup (cfg->kvm_device ? cfg->kvm_device : "/dev/kvm");
  settings.memory_mib = cfg->vm_memory_mib > 0 ? cfg->vm_memory_mib : 128;
  settings.vcpus = cfg->vm_vcpus > 0 ? cfg->vm_vcpus : 1;
  const char *accel = cfg->vm_accel ? cfg->vm_accel : "auto";
  settings.accel = strcmp (accel, "kvm") == 0   ? NEX_VM_ACCEL_KVM
                   : strcmp (accel, "tcg") == 0 ? NEX_VM_ACCEL_TCG
                                                : NEX_VM_ACCEL_AUTO;
  settings.kvm_boot_ms = (cfg->kvm_boot_s > 0 ? cfg->kvm_boot_s : 20) * 1000;
  /* Firecracker needs KVM whatever vm_accel says, so the verdict is taken in every mode. */
  nex_kvm_configure (settings.kvm_device, cfg->kvm_probe == NULL || strcmp (cfg->kvm_probe, "off") != 0);
}

void
nex_vm_release (void)
{
  free (settings.kernel_dir);
  free (settings.images_dir);
  free (settings.qemu_path);
  free (settings.firecracker_path);
  free (settings.kvm_device);
  memset (&settings, 0, sizeof settings);
  nex_kvm_release ();
}

const nex_vm_settings_t *
nex_vm_settings (void)
{
  return &settings;
}

static int
is_executable_file (const char *path)
{
  struct stat st;
  return stat (path, &st) == 0 && S_ISREG (st.st_mode) && access (path, X_OK) == 0;
}

char *
nex_vm_find_program (const char *program)
{
  if (program == NULL || program[0] == '\0')
    return NULL;
  if (strchr (program, '/'))
    return is_executable_file (program) ? nex_xstrdup (program) : NULL;
  const char *path = getenv ("PATH");
  cleanup_free char *dirs = nex_xstrdup (path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
  char *save = NULL;
  for (char *dir = strtok_r (dirs, ":", &save); dir; dir = strtok_r (NULL, ":", &save))
    {
      char *candidate = nex_xasprintf ("%s/%s", dir, program);
      if (candidate[0] == '/' && is_executable_file (candidate))
        return candidate;
      free (candidate);
    }
  return NULL;
}

int
nex_vm_use_kvm (char **why_not)
{
  if (settings.accel == NEX_VM_ACCEL_TCG)
    {
      *why_not = nex_xstrdup ("vm_accel is tcg");
      return 0;
    }
  cleanup_free char *why = NULL;
  if (nex_kvm_usable (&why))
    return 1;
  *why_not = NEX_STEAL_PTR (why);
  return settings.accel == NEX_VM_ACCEL_KVM ? -1 : 0;
}

char *
nex_vm_kernel_file (const char *file, char **reason)
{
  if (settings.kernel_dir == NULL)
    {
      *reason = nex_xstrdup ("no VM kernel directory is configured");
      return NULL;
    }
  char *path = nex_xasprintf ("%s/%s", settings.kernel_dir, file);
  if (access (path, R_OK) < 0)
    {
      *reason = nex_xasprintf ("no VM kernel: `%s` is missing (scripts/setup fetches one; or set vm_kernel_dir)", path);
      free (path);
      return NULL;
    }
  return path;
}

void
nex_vm_size (const nex_launch_t *l, int64_t *memory_mib, int64_t *vcpus)
{
  *memory_mib = settings.memory_mib > 0 ? settings.memory_mib : 128;
  *vcpus = settings.vcpus > 0 ? settings.vcpus : 1;
  if (l->workload == NULL)
    return;
  const nex_resources_t *r = &l->workload->resources;
  if (r->memory_mb > 0)
    *memory_mib = r->memory_mb < VM_MAX_MEMORY_MIB ? r->memory_mb : VM_MAX_MEMORY_MIB;
  if (r->vcpus > 0)
    {
      /* A VM has whole vCPUs: a fraction rounds up (the cgroup's CPU quota still holds it to the fraction). */
      int64_t whole = (int64_t)ceil (r->vcpus);
      *vcpus = whole < VM_MAX_VCPUS ? whole : VM_MAX_VCPUS;
    }
}

char *
nex_vm_image (const nex_launch_t *l, nex_rootfs_kind_t kind, const char *modules, nex_error_t *err)
{
  cleanup_free char *dir = nex_xasprintf ("%s/%s", settings.kernel_dir, modules);
  nex_rootfs_spec_t spec = {
    .workload_path = l->artifact_path, .workload_digest = l->digest, .agent_path = l->agent_path, .modules_dir = dir
  };
  return nex_rootfs_image (settings.images_dir, kind, &spec, err);
}

pid_t
nex_vm_spawn (const nex_launch_t *l, const char *path, char *const argv[], const char *log, const int *keep_fds,
              int n_keep, nex_error_t *err)
{
  cleanup_close int log_fd = open (log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  cleanup_close int null_fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  int status[2], go[2];
  if (log_fd < 0 || null_fd < 0 || pipe2 (status, O_CLOEXEC) < 0)
    return nex_error_sys (err, errno, "prepare to start `%s`", path);
  if (pipe2 (go, O_CLOEXEC) < 0)
    {
      close (status[0]);
      close (status[1]);
      return nex_error_sys (err, errno, "prepare to start `%s`", path);
    }
  pid_t pid = fork ();
  if (pid < 0)
    {
      close (status[0]);
      close (status[1]);
      close (go[0]);
      close (go[1]);
      return nex_error_sys (err, errno, "fork");
    }
  if (pid == 0)
    {
      /* Only async-signal-safe calls from here on: nexd has other threads.  Its own session keeps the VMM out
       * of nexd's process group (a Ctrl-C to nexd, or its death, does not end the VM: re-adoption needs it). */
      setsid ();
      int hi = 64; /* park the descriptors above the range being rearranged */
      int moved[16];
      for (int i = 0; i < n_keep && i < 16; i++)
        if ((moved[i] = fcntl (keep_fds[i], F_DUPFD_CLOEXEC, hi)) < 0)
          _exit (127);
      int st = fcntl (status[1], F_DUPFD_CLOEXEC, hi);
      /* Wait until the parent has placed this process (in the workload's cgroup): whatever the VMM creates
       * afterwards is then counted there from its first instruction. */
      char ok = 0;
      if (read (go[0], &ok, 1) != 1)
        _exit (127);
      if (st < 0 || dup2 (null_fd, 0) < 0 || dup2 (log_fd, 1) < 0 || dup2 (log_fd, 2) < 0)
        _exit (127);
      for (int i = 0; i < n_keep && i < 16; i++)
        if (dup2 (moved[i], 3 + i) < 0)
          _exit (127);
      for (int fd = 3 + n_keep; fd < 1024; fd++)
        if (fd != st)
          close (fd);
      sigset_t none;
      sigemptyset (&none);
      sigprocmask (SIG_SETMASK, &none, NULL);
      for (int sig = 1; sig < NSIG; sig++)
        signal (sig, SIG_DFL);
      execv (path, argv);
      int e = errno;
      (void)!write (st, &e, sizeof e);
      _exit (127);
    }
  close (status[1]);
  close (go[0]);
  if (l && l->place && l->place (l->place_ctx, pid, err) < 0)
    {
      close (go[1]);
      close (status[0]);
      kill (pid, SIGKILL);
      waitpid (pid, NULL, 0);
      return -1;
    }
  (void)!write (go[1], "g", 1);
  close (go[1]);
  int e = 0;
  ssize_t n;
  do
    n = read (status[0], &e, sizeof e);
  while (n < 0 && errno == EINTR);
  close (status[0]);
  if (n > 0)
    {
      waitpid (pid, NULL, 0);
      return nex_error_sys (err, e, "execute `%s`", path);
    }
  return pid;
}

char *
nex_vm_last_line_with (const char *path, const char *needle)
{
  cleanup_close int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  char buf[4096];
  off_t size = lseek (fd, 0, SEEK_END);
  off_t at = size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0;
  ssize_t n = pread (fd, buf, sizeof buf - 1, at);
  if (n <= 0)
    return NULL;
  buf[n] = '\0';
  /* From the end: cut off one line at a time. */
  for (;;)
    {
      while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
      if (n == 0)
        return NULL;
      char *start = strrchr (buf, '\n');
      char *line = start ? start + 1 : buf;
      if (needle == NULL || strstr (line, needle))
        return nex_xstrndup (line, 400);
      if (start == NULL)
        return NULL;
      *start = '\0';
      n = start - buf;
    }
}

char *
nex_vm_last_line (const char *path)
{
  return nex_vm_last_line_with (path, NULL);
}

int64_t
nex_vm_host_tsc_khz (void)
{
#ifdef __x86_64__
  static int64_t khz = -1;
  if (khz >= 0)
    return khz;
  struct timespec t0, t1, pause = { 0, 20 * 1000 * 1000 };
  clock_gettime (CLOCK_MONOTONIC_RAW, &t0);
  uint64_t c0 = __rdtsc ();
  while (nanosleep (&pause, &pause) < 0 && errno == EINTR)
    ;
  uint64_t c1 = __rdtsc ();
  clock_gettime (CLOCK_MONOTONIC_RAW, &t1);
  int64_t ns = (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec);
  khz = ns > 0 && c1 > c0 ? (int64_t)((double)(c1 - c0) * 1e6 / (double)ns) : 0;
  return khz;
#else
  return 0;
#endif
}
