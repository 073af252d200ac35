/* SPDX-License-Identifier: Apache-2.0 */
/* vm.h — what the microVM drivers (drivers/qemu.c, drivers/firecracker.c) share: the node's VM settings, where
 * the kernel and the images are, which accelerator a VM gets (KVM's verdict itself is drivers/kvm.h's), a VM's
 * size, and the start of a VMM process that must outlive nexd.
 *
 * Settings are given once at start-up (nex_vm_configure, from nex_node_open) and read-only afterwards, so every
 * function here may be called from any thread. */
#ifndef NEX_VM_H
#define NEX_VM_H

#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"
#include "rootfs/rootfs.h"
#include "server/drivers/driver.h"
#include "server/config.h"

/* vm_accel: what QEMU VMs run on. */
typedef enum
{
  NEX_VM_ACCEL_AUTO, /* KVM when its verdict says usable, else TCG; a VM that fails to boot under KVM marks it
                        unusable for the node and is retried under TCG */
  NEX_VM_ACCEL_KVM,  /* KVM or nothing: without it the qemu driver is unavailable */
  NEX_VM_ACCEL_TCG,  /* TCG emulation only; KVM is never tried */
} nex_vm_accel_t;

typedef struct nex_vm_settings
{
  char *kernel_dir;       /* absolute: vmlinuz (bzImage), vmlinux (ELF), modules/<driver>/NN-name.ko */
  char *images_dir;       /* absolute: data_dir/images, the content-addressed image cache */
  char *qemu_path;        /* as configured (a bare name is searched in PATH) */
  char *firecracker_path; /* likewise */
  char *kvm_device;       /* /dev/kvm unless configured otherwise */
  int64_t memory_mib;     /* default VM size */
  int64_t vcpus;
  nex_vm_accel_t accel; /* vm_accel */
  int64_t kvm_boot_ms;  /* vm_accel auto: how long a VM under KVM has to greet */
} nex_vm_settings_t;

/* Records the settings from CFG and takes KVM's verdict (kvm.h: probed unless kvm_probe is off); KERNEL_DIR and
 * DATA_DIR are absolute.  Called once, before any driver runs. */
void nex_vm_configure (const nex_config_t *cfg, const char *kernel_dir, const char *data_dir);

/* Releases what nex_vm_configure recorded (at shutdown; for leak checkers). */
void nex_vm_release (void);

/* The settings; zeroed (no kernel dir) before nex_vm_configure. */
const nex_vm_settings_t *nex_vm_settings (void);

/* Resolves PROGRAM as execvp would (a name with a '/' is taken as a path): the absolute path of an executable
 * file (caller frees), or NULL. */
char *nex_vm_find_program (const char *program);

/* Whether the next QEMU VM runs under KVM, by vm_accel and KVM's verdict: 1 (KVM); 0 (TCG, with *WHY_NOT, caller
 * frees, saying why not KVM); -1 when vm_accel is kvm and KVM is not usable (no VM can start; *WHY_NOT says
 * why).  Any thread. */
int nex_vm_use_kvm (char **why_not);

/* The path of FILE in the kernel dir (caller frees), or NULL with *REASON (caller frees) when it is missing. */
char *nex_vm_kernel_file (const char *file, char **reason);

/* The VM size for L: the workload's resources.memory_mb and resources.vcpus (rounded up to whole vCPUs) when
 * it sets them, else the node's defaults. */
void nex_vm_size (const nex_launch_t *l, int64_t *memory_mib, int64_t *vcpus);

/* The VM image of KIND for L (rootfs.h: nex-agent as /init, the workload, and the kernel modules in kernel_dir's
 * subdirectory MODULES), built or found in the image cache: its path (caller frees), or NULL. */
char *nex_vm_image (const nex_launch_t *l, nex_rootfs_kind_t kind, const char *modules, nex_error_t *err);

/* Starts PATH with ARGV (NULL-terminated) as a VMM that outlives nexd: in a session of its own, with all signals
 * unblocked, stdin /dev/null, stdout and stderr appended to LOG, and KEEP_FDS[i] (N_KEEP of them) as
 * descriptors 3, 4, ...; nothing else is inherited.  Before it executes PATH, L->place (when L and it are set)
 * places it (in the workload's cgroup); a failure there ends it.  Returns its pid once it has been executed (an
 * exec failure is reported here), or -1. */
pid_t nex_vm_spawn (const nex_launch_t *l, const char *path, char *const argv[], const char *log, const int *keep_fds,
                    int n_keep, nex_error_t *err);

/* The host's TSC rate in kHz, measured once (about 20 ms, the first time; then cached), or 0 when unknown or
 * not x86.  Under TCG a guest's TSC runs at the host's rate, and telling the guest kernel so (tsc_early_khz=)
 * spares it the calibration against the emulated PIT, which fails on a busy host and then hangs its boot.
 * Supervisor thread only (the cache is not locked). */
int64_t nex_vm_host_tsc_khz (void);

/* The last non-empty line of the file PATH (at most 400 bytes; caller frees), or NULL. */
char *nex_vm_last_line (const char *path);

/* As nex_vm_last_line, the last such line that contains NEEDLE, among the file's last 4 KiB. */
char *nex_vm_last_line_with (const char *path, const char *needle);

#endif
