/* SPDX-License-Identifier: Apache-2.0 */
/* drivers/qemu.c — the QEMU microvm driver: each workload in its own virtual machine.
 *
 * A workload's VM is a `qemu-system-x86_64 -M microvm` process (the accelerator by vm_accel: in auto, KVM while
 * KVM's verdict says usable (kvm.h), TCG emulation otherwise) booting the node's kernel (vm_kernel_dir/vmlinuz)
 * with an initramfs built for the workload (rootfs.h: nex-agent as /init, the workload, the virtio modules of
 * vm_kernel_dir/modules/qemu).  No disk, no firmware option ROMs, no PCI: only what the agent needs; a network
 * device only for network bridge: a virtio-net device on the tap nexd made (`-netdev tap,fd=5`, net/net.h),
 * configured inside by the agent from the kernel parameter nex.net=.
 *
 *   agent channel   a virtconsole port (/dev/hvc0 in the guest) on a virtio-mmio serial device, whose host end
 *                   is the unix socket run_dir/agent.sock: nexd creates it listening (mode 0600) and hands it
 *                   to QEMU as a descriptor (`-chardev socket,fd=3,server=on`), so it can be dialled at once,
 *                   before QEMU is ready, and again by a restarted nexd (QEMU accepts one client at a time)
 *   console         the guest's ttyS0 (kernel messages, the agent's diagnostics), on run_dir/console.sock the
 *                   same way, also logged by QEMU to run_dir/console.log; nexd stores it as the `console` stream
 *   qemu.log        QEMU's own stdout and stderr (why it refused to start, if it did)
 *   qmp.sock        QEMU's QMP monitor, handed over the same way: pause, resume and snapshots
 *                   (qemu-snapshot.c); a restore from a snapshot adds `-incoming fd:N` on its file
 *
 * QEMU runs in a session of its own and is not stopped when nexd stops: workloads outlive nexd, which finds the
 * VM again by its recorded pid and socket.  The agent's channel is a stream (the agent cannot tell a new host
 * from an old one), so a re-attaching nexd greets first (driver.h: stream_endpoint).
 *
 * KVM that passes the probe can still fail QEMU (nested virtualisation: QEMU aborts setting an MSR, or the guest
 * hangs in early boot).  So in vm_accel auto a VM under KVM is started with may_fall_back and a boot deadline of
 * kvm_boot_s: when QEMU dies or the agent has not greeted by then, fall_back marks KVM unusable for the node
 * (with QEMU's error line, or the deadline, as the reason) and the supervisor starts the workload once more,
 * which then runs under TCG.
 *
 * Guest to host, every byte is hostile: the channel is parsed by the same bounded wire decoder as a sandbox's,
 * the console is split into bounded lines, and nothing the guest sends names a host path or runs a host
 * command.  The guest can at worst burn the CPU time and memory its VM was given. */
#include "server/drivers/driver.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "rootfs/layout.h"
#include "rootfs/rootfs.h"
#include "server/drivers/kvm.h"
#include "server/drivers/qemu-internal.h"
#include "server/drivers/vm-image.h"
#include "server/drivers/vm.h"

#define QEMU_MAX_ARGS 56
#define QEMU_MODULES "modules/qemu" /* in the kernel dir: what the agent loads to reach /dev/hvc0 */

static const char *const run_files[]
    = { "agent.sock", "console.sock", "console.log", "qemu.log", "qemu.pid", NEX_QEMU_QMP_SOCK, NULL };

static int
qemu_probe (const nex_driver_t *d, char **reason)
{
  const nex_vm_settings_t *s = nex_vm_settings ();
  cleanup_free char *qemu = nex_vm_find_program (s->qemu_path);
  if (qemu == NULL)
    {
      *reason = nex_xasprintf ("QEMU `%s` was not found (install qemu-system-x86, or set qemu_path)",
                               s->qemu_path ? s->qemu_path : "");
      return 0;
    }
  cleanup_free char *kernel = nex_vm_kernel_file ("vmlinuz", reason);
  if (kernel == NULL)
    return 0;
  cleanup_free char *no_kvm = NULL;
  if (nex_vm_use_kvm (&no_kvm) < 0)
    {
      *reason = nex_xasprintf ("vm_accel is kvm, and KVM is not usable: %s", no_kvm);
      return 0;
    }
  return 1;
}

static const char *
qemu_accel (const nex_driver_t *d, char **kvm_reason)
{
  return nex_vm_use_kvm (kvm_reason) == 0 ? "tcg" : "kvm";
}

/* The argument vector, built before the fork; every element is allocated. */
typedef struct args
{
  char *v[QEMU_MAX_ARGS + 1];
  int n;
} args_t;

static void add (args_t *a, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

static void
add (args_t *a, const char *fmt, ...)
{
  if (a->n >= QEMU_MAX_ARGS)
    abort (); /* a programming error: QEMU_MAX_ARGS is sized for the fixed list below */
  va_list ap;
  va_start (ap, fmt);
  a->v[a->n++] = nex_xvasprintf (fmt, ap);
  va_end (ap);
}

static void
args_release (args_t *a)
{
  for (int i = 0; i < a->n; i++)
    free (a->v[i]);
  a->n = 0;
}

/* An image workload's disk (vm-image.h): read-only, a virtio-blk device on virtio-mmio (/dev/vda inside). */
static void
qemu_add_image_disk (args_t *a, const char *disk)
{
  cleanup_free char *file = nex_vm_image_qemu_escape (disk);
  add (a, "-drive");
  add (a, "file=%s,if=none,id=image,format=raw,readonly=on", file);
  add (a, "-device");
  add (a, "virtio-blk-device,drive=image");
}

static int
qemu_start (const nex_driver_t *d, const nex_launch_t *l, nex_instance_t *out, nex_error_t *err)
{
  const nex_vm_settings_t *s = nex_vm_settings ();
  cleanup_free char *why = NULL;
  cleanup_free char *kernel = nex_vm_kernel_file ("vmlinuz", &why);
  if (kernel == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "%s", why);
  cleanup_free char *qemu = nex_vm_find_program (s->qemu_path);
  if (qemu == NULL)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "QEMU `%s` was not found", s->qemu_path);
  cleanup_free char *no_kvm = NULL;
  int kvm = nex_vm_use_kvm (&no_kvm);
  if (kvm < 0)
    return nex_error_set (err, NEX_ERR_UNAVAILABLE, "vm_accel is kvm, and KVM is not usable: %s", no_kvm);

  cleanup_free char *initrd = nex_vm_image (l, NEX_ROOTFS_INITRAMFS, QEMU_MODULES, err);
  if (initrd == NULL)
    return -1;
  cleanup_free char *disk = l->image_tree ? nex_vm_image_disk (l, err) : NULL;
  if (l->image_tree && disk == NULL)
    return -1;
  cleanup_free char *image = nex_vm_image_params (l, "/dev/vda");

  cleanup_free char *agent_sock = nex_xasprintf ("%s/agent.sock", l->run_dir);
  cleanup_free char *console_sock = nex_xasprintf ("%s/console.sock", l->run_dir);
  cleanup_free char *console_log = nex_xasprintf ("%s/console.log", l->run_dir);
  cleanup_free char *qemu_log = nex_xasprintf ("%s/qemu.log", l->run_dir);
  cleanup_free char *pidfile = nex_xasprintf ("%s/qemu.pid", l->run_dir);
  cleanup_close int agent_fd = nex_driver_listen_unix (agent_sock, err);
  cleanup_close int console_fd = agent_fd < 0 ? -1 : nex_driver_listen_unix (console_sock, err);
  cleanup_free char *qmp_sock = nex_xasprintf ("%s/" NEX_QEMU_QMP_SOCK, l->run_dir);
  cleanup_close int qmp_fd = console_fd < 0 ? -1 : nex_driver_listen_unix (qmp_sock, err);
  cleanup_close int incoming_fd = -1;
  if (qmp_fd >= 0 && l->snapshot_path && (incoming_fd = open (l->snapshot_path, O_RDONLY | O_CLOEXEC)) < 0)
    return nex_error_sys (err, errno, "open the snapshot `%s`", l->snapshot_path);
  if (agent_fd < 0 || console_fd < 0 || qmp_fd < 0)
    return -1;

  int64_t memory_mib, vcpus;
  nex_vm_size (l, &memory_mib, &vcpus);

  cleanup_with (args_release) args_t a = { 0 };
  add (&a, "%s", qemu);
  add (&a, "-name");
  add (&a, "nex-%s", l->workload_id);
  /* microvm: no PCI, no firmware ROMs; one ISA serial port (ttyS0) for the console; virtio over MMIO. */
  add (&a, "-M");
  add (&a, "microvm,x-option-roms=off,isa-serial=on");
  add (&a, "-accel");
  add (&a, "%s", kvm ? "kvm" : "tcg");
  if (kvm)
    {
      add (&a, "-cpu");
      add (&a, "host");
    }
  add (&a, "-m");
  add (&a, "%lldM", (long long)memory_mib);
  add (&a, "-smp");
  add (&a, "%lld", (long long)vcpus);
  /* Nothing but what is named here: no default devices, no user config files, no display, no monitor; a guest
   * reboot (or panic) ends QEMU instead of booting again. */
  add (&a, "-nodefaults");
  add (&a, "-no-user-config");
  add (&a, "-nographic");
  add (&a, "-no-reboot");
  add (&a, "-kernel");
  add (&a, "%s", kernel);
  add (&a, "-initrd");
  add (&a, "%s", initrd);
  /* The workload's name passed the name rule ([A-Za-z0-9._-]), so it cannot add kernel parameters. */
  cleanup_free char *tsc = NULL;
  int64_t khz = kvm ? 0 : nex_vm_host_tsc_khz ();
  if (khz > 0)
    tsc = nex_xasprintf (" tsc_early_khz=%lld", (long long)khz);
  add (&a, "-append");
  cleanup_free char *net = l->net_guest ? nex_xasprintf (" %s=%s", NEX_VM_PARAM_NET, l->net_guest) : NULL;
  add (&a, "console=ttyS0 quiet panic=-1%s nex.agent=/dev/hvc0 nex.hostname=%s%s%s", tsc ? tsc : "", l->hostname,
       net ? net : "", image);
  add (&a, "-chardev");
  add (&a, "socket,id=console,fd=4,server=on,wait=off,logfile=%s", console_log);
  add (&a, "-serial");
  add (&a, "chardev:console");
  add (&a, "-chardev");
  add (&a, "socket,id=agent,fd=3,server=on,wait=off");
  add (&a, "-device");
  add (&a, "virtio-serial-device,max_ports=1");
  add (&a, "-device");
  add (&a, "virtconsole,chardev=agent");
  if (l->net_guest)
    {
      add (&a, "-netdev");
      add (&a, "tap,id=net0,fd=5");
      add (&a, "-device");
      add (&a, "virtio-net-device,netdev=net0");
    }
  if (disk)
    qemu_add_image_disk (&a, disk);
  add (&a, "-pidfile");
  add (&a, "%s", pidfile);

  int keep[5] = { agent_fd, console_fd, l->net_guest ? l->net_tap_fd : -1 };
  int n_keep = l->net_guest ? 3 : 2;
  /* QMP (qemu-snapshot.c: pause, resume, snapshot), and a restore's migration stream: descriptors after those. */
  add (&a, "-chardev");
  add (&a, "socket,id=qmp,fd=%d,server=on,wait=off", 3 + n_keep);
  keep[n_keep++] = qmp_fd;
  add (&a, "-mon");
  add (&a, "chardev=qmp,mode=control");
  /* A snapshot is taken with the VM stopped; without the run state in the stream, a restore starts running. */
  add (&a, "-global");
  add (&a, "migration.store-global-state=off");
  if (incoming_fd >= 0)
    {
      add (&a, "-incoming");
      add (&a, "fd:%d", 3 + n_keep);
      keep[n_keep++] = incoming_fd;
    }
  pid_t pid = nex_vm_spawn (l, qemu, a.v, qemu_log, keep, n_keep, err);
  if (pid < 0)
    return -1;
  out->pid = pid;
  out->endpoint = NEX_STEAL_PTR (agent_sock);
  out->may_fall_back = kvm && s->accel == NEX_VM_ACCEL_AUTO;
  out->boot_ms = out->may_fall_back ? s->kvm_boot_ms : 0;
  return 0;
}

static int
qemu_connect_console (const nex_driver_t *d, const nex_instance_t *i, nex_error_t *err)
{
  cleanup_free char *path = nex_xasprintf ("%s/console.sock", i->run_dir);
  return nex_driver_connect_unix (path, err);
}

/* QEMU's own account of why it failed: its last line that says `error`, else its last line (caller frees), or
 * NULL.  (An abort under KVM ends with the assertion that failed, after the error that explains it.) */
static char *
qemu_error_line (const nex_instance_t *i)
{
  cleanup_free char *qemu_log = nex_xasprintf ("%s/qemu.log", i->run_dir);
  char *line = nex_vm_last_line_with (qemu_log, "error");
  return line ? line : nex_vm_last_line (qemu_log);
}

static char *
qemu_describe_end (const nex_driver_t *d, const nex_instance_t *i, int reaped, int status)
{
  if (i->run_dir == NULL)
    return NULL;
  if (reaped && (WIFSIGNALED (status) || WEXITSTATUS (status) != 0))
    {
      cleanup_free char *line = qemu_error_line (i);
      cleanup_free char *how = WIFSIGNALED (status)
                                   ? nex_xasprintf ("the VM's qemu was killed by signal %d", WTERMSIG (status))
                                   : nex_xasprintf ("qemu exited with status %d", WEXITSTATUS (status));
      return nex_xasprintf ("%s%s%s", how, line ? ": " : "", line ? line : "");
    }
  /* QEMU ended normally: the guest powered off or its kernel panicked; its console says which. */
  cleanup_free char *console_log = nex_xasprintf ("%s/console.log", i->run_dir);
  cleanup_free char *line = nex_vm_last_line (console_log);
  return nex_xasprintf ("the VM stopped before its agent reported the workload's end%s%s%s", line ? " (console: " : "",
                        line ? line : "", line ? ")" : "");
}

static int
qemu_fall_back (const nex_driver_t *d, const nex_instance_t *i, int reaped, int status, int boot_timed_out,
                char **reason)
{
  if (!i->may_fall_back || i->run_dir == NULL)
    return -1;
  if (boot_timed_out)
    *reason = nex_xasprintf ("guest did not boot under KVM in %lld s", (long long)(i->boot_ms / 1000));
  else if (reaped
           && ((WIFSIGNALED (status) && WTERMSIG (status) != SIGKILL)
               || (WIFEXITED (status) && WEXITSTATUS (status) != 0)))
    {
      /* QEMU died under KVM.  A guest that powered off or panicked (QEMU's exit 0) would do so under TCG too;
       * SIGKILL is nexd's own kill (or the OOM killer's), no sign of KVM failing. */
      *reason = qemu_error_line (i);
      if (*reason == NULL)
        *reason = WIFSIGNALED (status) ? nex_xasprintf ("qemu was killed by signal %d under KVM", WTERMSIG (status))
                                       : nex_xasprintf ("qemu exited with status %d under KVM", WEXITSTATUS (status));
    }
  else
    return -1;
  return nex_kvm_mark_unusable (*reason);
}

const nex_driver_t nex_driver_qemu = {
  .name = "qemu",
  .probe = qemu_probe,
  .start = qemu_start,
  .run_files = run_files,
  .stream_endpoint = 1,
  .sized_by_guest = 1,
  .bridge_network = NEX_DRIVER_NET_TAP,
  .connect_console = qemu_connect_console,
  .describe_end = qemu_describe_end,
  .fall_back = qemu_fall_back,
  .accel = qemu_accel,
  .pause = nex_qemu_pause,
  .snapshot = nex_qemu_snapshot,
  .kernel_file = "vmlinuz",
};
