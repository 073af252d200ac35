/* SPDX-License-Identifier: Apache-2.0 */
/* vm.c — nex-agent's duties as a microVM's init (see vm.h).  Runs before the agent's loop, single-threaded. */
#include "agent/vm.h"
#include "agent/agent.h"
#include "agent/vmimage.h"
#include "agent/vmnet.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "rootfs/layout.h"

#define CMDLINE_MAX 4096
#define DEFAULT_CHANNEL "/dev/hvc0"

static int channel_fd = -1; /* the console channel, drained before power-off */
static bool reboot_to_end;  /* nex.poweroff=reboot: the VMM ends on a reboot and has no power-off (Firecracker) */

/* The kernel command line, read once (mounting /proc first if needed).  Static storage; "" when unreadable. */
static const char *
cmdline (void)
{
  static char buf[CMDLINE_MAX];
  static bool loaded;
  if (loaded)
    return buf;
  loaded = true;
  cleanup_close int fd = open ("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0 && mount ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0)
    fd = open ("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return buf;
  ssize_t n = read (fd, buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

/* The value of parameter NAME (NAME=value) on the kernel command line, copied into OUT; false when absent. */
static bool
param (const char *name, char *out, size_t cap)
{
  size_t len = strlen (name);
  for (const char *p = cmdline (); *p;)
    {
      while (*p == ' ' || *p == '\n')
        p++;
      const char *end = p + strcspn (p, " \n");
      if ((size_t)(end - p) > len && strncmp (p, name, len) == 0 && p[len] == '=')
        {
          size_t vlen = (size_t)(end - p) - len - 1;
          if (vlen >= cap)
            return false;
          memcpy (out, p + len + 1, vlen);
          out[vlen] = '\0';
          return true;
        }
      p = end;
    }
  return false;
}

bool
nex_agent_vm_detect (const char *argv0, bool explicit_transport)
{
  if (getpid () != 1 || explicit_transport)
    return false;
  if (argv0 && strcmp (argv0, NEX_VM_INIT) == 0)
    return true;
  char v[8];
  return param (NEX_VM_PARAM_VM, v, sizeof v) && strcmp (v, "1") == 0;
}

static void
vm_power_off (void)
{
  /* Only the VM's init may power it off; a child that somehow ran exit handlers must not. */
  if (getpid () != 1)
    return;
  /* What the host has not read yet is still in the console's buffers: let it go out first. */
  if (channel_fd >= 0)
    tcdrain (channel_fd);
  sync ();
  reboot (reboot_to_end ? RB_AUTOBOOT : RB_POWER_OFF);
  _exit (1); /* not reached; if it were, the kernel would panic, which ends the VM too (panic=-1) */
}

static void
vm_mount (const char *src, const char *target, const char *type, unsigned long flags, const char *data)
{
  mkdir (target, 0755);
  if (mount (src, target, type, flags, data) < 0 && errno != EBUSY)
    nex_agent_log ("mount %s on %s: %s", type, target, strerror (errno));
}

static int
compare_names (const void *a, const void *b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

/* The names of the image's modules (*.ko in NEX_VM_MODULES_DIR), at most NEX_VM_MAX_MODULES, into NAMES (owned by
 * the caller).  Their count; 0 when there is no module directory. */
static size_t
vm_list_modules (char *names[NEX_VM_MAX_MODULES])
{
  cleanup_dir DIR *d = opendir (NEX_VM_MODULES_DIR);
  if (d == NULL)
    return 0;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir (d)) != NULL && n < NEX_VM_MAX_MODULES)
    {
      size_t len = strlen (de->d_name);
      if (len > 3 && strcmp (de->d_name + len - 3, ".ko") == 0 && de->d_name[0] != '.')
        names[n++] = nex_xstrdup (de->d_name);
    }
  return n;
}

/* Loads every module of the image, in name order (the numbers in their names put dependencies first). */
static void
vm_load_modules (void)
{
  char *names[NEX_VM_MAX_MODULES];
  size_t n = vm_list_modules (names);
  qsort (names, n, sizeof names[0], compare_names);
  for (size_t i = 0; i < n; i++)
    {
      cleanup_free char *name = names[i];
      char path[512];
      snprintf (path, sizeof path, "%s/%s", NEX_VM_MODULES_DIR, name);
      cleanup_close int fd = open (path, O_RDONLY | O_CLOEXEC);
      if (fd < 0 || (syscall (SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
        nex_agent_log ("load module %s: %s", path, strerror (errno));
    }
}

void
nex_agent_vm_init (void)
{
  char how[16];
  reboot_to_end = param ("nex.poweroff", how, sizeof how) && strcmp (how, "reboot") == 0;
  atexit (vm_power_off);
  vm_mount ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
  /* The terminals of interactive exec sessions (devtmpfs's /dev/ptmx serves this, the initial, instance). */
  vm_mount ("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "ptmxmode=0666,mode=0620");
  vm_mount ("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  vm_mount ("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  vm_mount ("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  char host[64];
  bool named = param ("nex.hostname", host, sizeof host);
  if (named && sethostname (host, strlen (host)) < 0)
    nex_agent_log ("sethostname: %s", strerror (errno));
  vm_load_modules ();
  char device[64], disk_mb[24];
  if (param (NEX_VM_PARAM_IMAGE, device, sizeof device))
    {
      long mb = param (NEX_VM_PARAM_DISK_MB, disk_mb, sizeof disk_mb) ? strtol (disk_mb, NULL, 10) : 0;
      /* Without its image the workload has nothing to run: the VM ends, the console says why. */
      if (nex_agent_vm_image (device, mb) < 0)
        exit (1);
    }
  char net[256];
  if (param (NEX_VM_PARAM_NET, net, sizeof net))
    nex_agent_vm_net (net, named ? host : NULL);
}

static int
vm_vsock_listen (const char *spec)
{
  char *end;
  errno = 0;
  unsigned long port = strtoul (spec, &end, 10);
  if (errno || end == spec || *end || port > 0xffffffffUL)
    {
      nex_agent_log ("bad vsock port `%s`", spec);
      return -1;
    }
  cleanup_close int fd = socket (AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = (unsigned)port };
  if (fd < 0 || bind (fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen (fd, 4) < 0)
    {
      nex_agent_log ("vsock port %lu: %s", port, strerror (errno));
      return -1;
    }
  return NEX_STEAL_FD (fd);
}

int
nex_agent_vm_channel (nex_agent_vm_channel_t *ch)
{
  char spec[256];
  if (!param (NEX_VM_PARAM_AGENT, spec, sizeof spec))
    snprintf (spec, sizeof spec, "%s", DEFAULT_CHANNEL);
  if (strncmp (spec, "vsock:", 6) == 0)
    {
      ch->listening = true;
      ch->fd = vm_vsock_listen (spec + 6);
      return ch->fd < 0 ? -1 : 0;
    }
  /* A console appears once its driver has probed the device, which may finish after the module loaded. */
  int64_t deadline = nex_agent_now_ms () + NEX_AGENT_VM_CHANNEL_WAIT_MS;
  int fd;
  while ((fd = open (spec, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0 && (errno == ENOENT || errno == ENXIO || errno == ENODEV)
         && nex_agent_now_ms () < deadline)
    usleep (5000);
  if (fd < 0)
    {
      nex_agent_log ("open channel `%s`: %s", spec, strerror (errno));
      return -1;
    }
  ch->listening = false;
  ch->fd = channel_fd = fd;
  return 0;
}
