/* SPDX-License-Identifier: Apache-2.0 */
/* vm-image.c — an OCI image's disk for the microVM drivers (see vm-image.h). */
#include "server/drivers/vm-image.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "rootfs/layout.h"
#include "rootfs/rootfs.h"
#include "server/clock.h"
#include "server/drivers/vm.h"
#include "server/log.h"

#define DEFAULT_DISK_MB 64 /* the writable layer's size when disk_mb is not set, as in a sandbox */

/* The cached disk's path for the image whose hex digest is HEX (caller frees), or NULL when nothing is
 * configured or HEX is no digest (it names a file: only hex digits may go in). */
static char *
disk_path (const char *hex)
{
  const nex_vm_settings_t *s = nex_vm_settings ();
  if (s->images_dir == NULL || hex == NULL || strlen (hex) != 64 || strspn (hex, "0123456789abcdef") != 64)
    return NULL;
  return nex_xasprintf ("%s/oci-%s.ext4", s->images_dir, hex);
}

char *
nex_vm_image_disk (const nex_launch_t *l, nex_error_t *err)
{
  cleanup_free char *path = disk_path (l->digest);
  if (path == NULL || l->image_tree == NULL)
    {
      nex_error_set (err, NEX_ERR_SYSTEM, "no image disk for `%s`", l->digest ? l->digest : "");
      return NULL;
    }
  if (access (path, R_OK) == 0)
    return NEX_STEAL_PTR (path);
  if (nex_mkdir_p (nex_vm_settings ()->images_dir, 0700, err) < 0)
    return NULL;
  int64_t t0 = nex_clock_mono_ms ();
  if (nex_rootfs_tree_ext4 (l->image_tree, path, NEX_SANDBOX_UID_BASE, err) < 0)
    return NULL;
  nex_info ("image sha256:%s: built its VM disk %s in %lld ms", l->digest, path,
            (long long)(nex_clock_mono_ms () - t0));
  return NEX_STEAL_PTR (path);
}

char *
nex_vm_image_params (const nex_launch_t *l, const char *device)
{
  if (l->image_tree == NULL)
    return nex_xstrdup ("");
  return nex_xasprintf (" %s=%s %s=%lld", NEX_VM_PARAM_IMAGE, device, NEX_VM_PARAM_DISK_MB,
                        (long long)(l->tmp_mb > 0 ? l->tmp_mb : DEFAULT_DISK_MB));
}

char *
nex_vm_image_qemu_escape (const char *path)
{
  size_t n = strlen (path), commas = 0;
  for (size_t i = 0; i < n; i++)
    commas += path[i] == ',';
  char *out = nex_xmalloc (n + commas + 1), *o = out;
  for (size_t i = 0; i < n; i++)
    {
      *o++ = path[i];
      if (path[i] == ',')
        *o++ = ',';
    }
  *o = '\0';
  return out;
}

void
nex_vm_image_sweep (void)
{
  const char *dir = nex_vm_settings ()->images_dir;
  cleanup_dir DIR *d = dir ? opendir (dir) : NULL;
  struct dirent *de;
  while (d && (de = readdir (d)) != NULL)
    if (strstr (de->d_name, ".tmp-") && unlinkat (dirfd (d), de->d_name, 0) == 0)
      nex_info ("removed %s/%s, left by an interrupted build", dir, de->d_name);
}

void
nex_vm_image_disk_forget (const char *digest)
{
  if (digest == NULL)
    return;
  cleanup_free char *path = disk_path (strncmp (digest, "sha256:", 7) == 0 ? digest + 7 : digest);
  if (path && unlink (path) == 0)
    nex_info ("image %s: removed its VM disk %s", digest, path);
}
