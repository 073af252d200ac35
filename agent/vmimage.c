/* SPDX-License-Identifier: Apache-2.0 */
/* vmimage.c — nex-agent's move into an OCI image's tree in a microVM (see vmimage.h).  Runs in the VM's init,
 * before the agent's loop, single-threaded. */
#include "agent/vmimage.h"
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rootfs/layout.h"

/* The pseudo file systems the agent mounted in the initramfs, moved into the image's root. */
static const char *const moved[] = { "/dev", "/proc", "/sys", "/tmp" };

static int
fail (const char *what, const char *path)
{
  nex_agent_log ("image disk: %s `%s`: %s", what, path, strerror (errno));
  return -1;
}

/* Waits for DEVICE to exist (its driver probes the disk after the module loaded). */
static int
wait_device (const char *device)
{
  int64_t deadline = nex_agent_now_ms () + NEX_AGENT_VM_IMAGE_WAIT_MS;
  struct stat st;
  while (stat (device, &st) < 0)
    {
      if (errno != ENOENT || nex_agent_now_ms () >= deadline)
        return fail ("no device", device);
      usleep (5000);
    }
  return 0;
}

/* The overlay: the disk below (never written: mounted read-only), a tmpfs of DISK_MB above. */
static int
mount_overlay (const char *device, long disk_mb)
{
  char opts[128];
  snprintf (opts, sizeof opts, "mode=0755,size=%ldm", disk_mb > 0 ? disk_mb : 64);
  /* A read-only root (Firecracker's ext4 root without an initramfs) takes no mount points: a tmpfs over /nex,
   * whose modules are loaded by now, holds them. */
  if (mkdir (NEX_VM_IMAGE_DIR, 0755) < 0 && errno == EROFS
      && mount ("tmpfs", "/nex", "tmpfs", MS_NODEV | MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m") < 0)
    return fail ("mount tmpfs", "/nex");
  mkdir (NEX_VM_IMAGE_DIR, 0755);
  mkdir (NEX_VM_IMAGE_RW, 0755);
  mkdir (NEX_VM_IMAGE_ROOT, 0755);
  if (mount (device, NEX_VM_IMAGE_DIR, "ext4", MS_RDONLY | MS_NODEV, "") < 0)
    return fail ("mount ext4", device);
  if (mount ("tmpfs", NEX_VM_IMAGE_RW, "tmpfs", MS_NODEV, opts) < 0)
    return fail ("mount tmpfs", NEX_VM_IMAGE_RW);
  if ((mkdir (NEX_VM_IMAGE_RW "/upper", 0755) < 0 && errno != EEXIST)
      || (mkdir (NEX_VM_IMAGE_RW "/work", 0755) < 0 && errno != EEXIST))
    return fail ("mkdir", NEX_VM_IMAGE_RW "/upper");
  if (mount ("overlay", NEX_VM_IMAGE_ROOT, "overlay", MS_NODEV,
             "lowerdir=" NEX_VM_IMAGE_DIR ",upperdir=" NEX_VM_IMAGE_RW "/upper,workdir=" NEX_VM_IMAGE_RW "/work")
      < 0)
    return fail ("mount overlay", NEX_VM_IMAGE_ROOT);
  return 0;
}

/* Moves the mount at FROM to the same place in the new root.  The image store refused images whose /dev or
 * /proc are symlinks; another such entry (/sys, /tmp) would resolve in the initramfs: it is left alone. */
static int
move_into_root (const char *from)
{
  char to[64];
  snprintf (to, sizeof to, "%s%s", NEX_VM_IMAGE_ROOT, from);
  struct stat st;
  if (lstat (to, &st) < 0 && mkdir (to, 0755) < 0)
    return fail ("mkdir", to);
  if (lstat (to, &st) < 0 || !S_ISDIR (st.st_mode))
    {
      nex_agent_log ("image disk: `%s` is not a directory in the image; not mounted there", from);
      return 0;
    }
  if (mount (from, to, NULL, MS_MOVE, NULL) < 0)
    return fail ("move the mount", from);
  return 0;
}

int
nex_agent_vm_image (const char *device, long disk_mb)
{
  if (wait_device (device) < 0 || mount_overlay (device, disk_mb) < 0)
    return -1;
  for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++)
    if (move_into_root (moved[i]) < 0)
      return -1;
  /* switch_root's move: the overlay over /, then / is it. */
  if (chdir (NEX_VM_IMAGE_ROOT) < 0 || mount (".", "/", NULL, MS_MOVE, NULL) < 0 || chroot (".") < 0 || chdir ("/") < 0)
    return fail ("make the root", NEX_VM_IMAGE_ROOT);
  return 0;
}
