/* vm.h — what the microVM drivers (drivers/qemu.c, drivers/firecracker.c) share: the node's VM settings, where
 * the kernel and the images are, whether KVM is usable, a VM's size, and the start of a VMM process that must
 * outlive nexd.
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

typedef struct nex_vm_settings
{
  char *kernel_dir;       /* absolute: vmlinuz (bzImage), vmlinux (ELF), modules/<driver>/NN-name.ko */
  char *images_dir;       /* absolute: data_dir/images, the content-addressed image cache */
  char *qemu_path;        /* as configured (a bare name is searched in PATH) */
  char *firecracker_path; /* likewise */
  char *kvm_device;       /* /dev/kvm unless configured otherwise */
  int64_t memory_mib;     /* default VM size */
  int64_t vcpus;
} nex_vm_settings_t;

/* Records the settings from CFG; KERNEL_DIR and DATA_DIR are absolute.  Called once, before any driver runs. */
void nex_vm_configure (const nex_config_t *cfg, const char *kernel_dir, const char *data_dir);

/* Releases what nex_vm_configure recorded (at shutdown; for leak checkers). */
void nex_vm_release (void);

/* The settings; zeroed (no kernel dir) before nex_vm_configure. */
const nex_vm_settings_t *nex_vm_settings (void);

/* Resolves PROGRAM as execvp would (a name with a '/' is taken as a path): the absolute path of an executable
 * file (caller frees), or NULL. */
char *nex_vm_find_program (const char *program);

/* 1 when the KVM device can be opened read-write, else 0 with *REASON (caller frees) saying why not. */
int nex_vm_kvm_usable (char **reason);

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
pid_t nex_vm_spawn (const nex_launch_t *l, const char *path, char *const argv[], const char *log, const int *keep_fds, int n_keep,
                    nex_error_t *err);

/* The host's TSC rate in kHz, measured once (about 20 ms, the first time; then cached), or 0 when unknown or
 * not x86.  Under TCG a guest's TSC runs at the host's rate, and telling the guest kernel so (tsc_early_khz=)
 * spares it the calibration against the emulated PIT, which fails on a busy host and then hangs its boot.
 * Supervisor thread only (the cache is not locked). */
int64_t nex_vm_host_tsc_khz (void);

/* The last non-empty line of the file PATH (at most 400 bytes; caller frees), or NULL. */
char *nex_vm_last_line (const char *path);

#endif
