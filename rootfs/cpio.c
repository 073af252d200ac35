/* SPDX-License-Identifier: Apache-2.0 */
/* cpio.c — newc archive writer (see cpio.h).  Each entry is a 110-byte ASCII header ("070701" and thirteen
 * 8-digit hex fields), the NUL-terminated name padded to a multiple of 4 bytes, then the data padded likewise. */
#include "rootfs/cpio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"

#define CPIO_CHUNK (64 * 1024)

void
nex_cpio_init (nex_cpio_t *c, int fd)
{
  c->fd = fd;
  c->ino = 0;
  c->off = 0;
}

static int
put (nex_cpio_t *c, const void *buf, size_t n, nex_error_t *err)
{
  if (nex_fd_write_all (c->fd, buf, n, err) < 0)
    return -1;
  c->off += n;
  return 0;
}

/* Zero bytes up to the next multiple of 4. */
static int
pad4 (nex_cpio_t *c, nex_error_t *err)
{
  static const char zeros[4] = { 0 };
  size_t n = (4 - (c->off & 3)) & 3;
  return n ? put (c, zeros, n, err) : 0;
}

static int
header (nex_cpio_t *c, const char *name, mode_t mode, uint64_t size, unsigned rmajor, unsigned rminor, nex_error_t *err)
{
  size_t namesize = strlen (name) + 1;
  if (name[0] == '\0' || name[0] == '/' || namesize > 4096)
    return nex_error_set (err, NEX_ERR_INVALID, "cpio: bad entry name `%s`", name);
  if (size > UINT32_MAX)
    return nex_error_set (err, NEX_ERR_TOO_LARGE, "cpio: `%s` is larger than newc allows (4 GiB)", name);
  char h[111];
  /* Hard links are never written, so each entry gets its own inode number and a link count of 1 (2 for a
   * directory, which the kernel does not check). */
  snprintf (h, sizeof h, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", ++c->ino, (unsigned)mode, 0u, 0u,
            S_ISDIR (mode) ? 2u : 1u, 0u, (unsigned)size, 0u, 0u, rmajor, rminor, (unsigned)namesize, 0u);
  if (put (c, h, 110, err) < 0 || put (c, name, namesize, err) < 0)
    return -1;
  return pad4 (c, err);
}

int
nex_cpio_dir (nex_cpio_t *c, const char *name, mode_t perm, nex_error_t *err)
{
  return header (c, name, S_IFDIR | (perm & 07777), 0, 0, 0, err);
}

int
nex_cpio_data (nex_cpio_t *c, const char *name, mode_t perm, const void *data, size_t len, nex_error_t *err)
{
  if (header (c, name, S_IFREG | (perm & 07777), len, 0, 0, err) < 0 || (len && put (c, data, len, err) < 0))
    return -1;
  return pad4 (c, err);
}

int
nex_cpio_file (nex_cpio_t *c, const char *name, mode_t perm, int src_fd, nex_error_t *err)
{
  struct stat st;
  if (fstat (src_fd, &st) < 0)
    return nex_error_sys (err, errno, "cpio: stat `%s`", name);
  if (!S_ISREG (st.st_mode))
    return nex_error_set (err, NEX_ERR_INVALID, "cpio: `%s` is not a regular file", name);
  if (header (c, name, S_IFREG | (perm & 07777), (uint64_t)st.st_size, 0, 0, err) < 0)
    return -1;
  cleanup_free char *buf = nex_xmalloc (CPIO_CHUNK);
  uint64_t left = (uint64_t)st.st_size;
  off_t at = 0;
  while (left > 0)
    {
      ssize_t n = pread (src_fd, buf, left < CPIO_CHUNK ? left : CPIO_CHUNK, at);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return nex_error_sys (err, errno, "cpio: read `%s`", name);
      if (n == 0)
        return nex_error_set (err, NEX_ERR_SYSTEM, "cpio: `%s` shrank while it was archived", name);
      if (put (c, buf, (size_t)n, err) < 0)
        return -1;
      left -= (uint64_t)n;
      at += n;
    }
  return pad4 (c, err);
}

int
nex_cpio_chardev (nex_cpio_t *c, const char *name, mode_t perm, unsigned major, unsigned minor, nex_error_t *err)
{
  return header (c, name, S_IFCHR | (perm & 07777), 0, major, minor, err);
}

int
nex_cpio_symlink (nex_cpio_t *c, const char *name, const char *target, nex_error_t *err)
{
  size_t len = strlen (target);
  if (header (c, name, S_IFLNK | 0777, len, 0, 0, err) < 0 || put (c, target, len, err) < 0)
    return -1;
  return pad4 (c, err);
}

int
nex_cpio_finish (nex_cpio_t *c, nex_error_t *err)
{
  return header (c, "TRAILER!!!", 0, 0, 0, 0, err);
}
