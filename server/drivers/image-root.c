/* SPDX-License-Identifier: Apache-2.0 */
/* image-root.c — the overlay-or-copy verdict for image sandboxes, and the private copy (see image-root.h). */
#include "server/drivers/image-root.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifacts/layer.h"

#define COPY_MAX_DEPTH 300 /* deeper than any tree the store accepts (layer.c: 256 directories) */

static struct
{
  int copy;     /* 1: private copies */
  char *reason; /* why */
} verdict;

void
nex_image_root_set (int overlay, const char *reason)
{
  free (verdict.reason);
  verdict.copy = !overlay;
  verdict.reason = overlay ? NULL : nex_xstrdup (reason ? reason : "overlay refused");
}

int
nex_image_root_overlay (char **reason)
{
  if (!verdict.copy)
    return 1;
  if (reason)
    *reason = nex_xstrdup (verdict.reason);
  return 0;
}

const char *
nex_image_root_name (void)
{
  return verdict.copy ? "copy" : "overlay";
}

void
nex_image_root_release (void)
{
  free (verdict.reason);
  memset (&verdict, 0, sizeof verdict);
}

static int copy_entry (int from_dir, int to_dir, const char *name, const char *path, int depth, nex_error_t *err);

/* The bytes of regular file NAME (FROM_DIR) into a new file NAME (TO_DIR) with mode and owner of ST. */
static int
copy_file (int from_dir, int to_dir, const char *name, const struct stat *st, const char *path, nex_error_t *err)
{
  cleanup_close int in = openat (from_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  cleanup_close int out
      = in < 0 ? -1 : openat (to_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (in < 0 || out < 0)
    return nex_error_sys (err, errno, "copy `%s`", path);
  for (off_t left = st->st_size; left > 0;)
    {
      ssize_t n = copy_file_range (in, NULL, out, NULL, (size_t)(left < (1 << 30) ? left : (1 << 30)), 0);
      if (n < 0)
        return nex_error_sys (err, errno, "copy `%s`", path);
      if (n == 0)
        break; /* it shrank meanwhile: the store's trees are not written, so it is not ours to fix */
      left -= n;
    }
  if (fchown (out, st->st_uid, st->st_gid) < 0 || fchmod (out, st->st_mode & 07777) < 0)
    return nex_error_sys (err, errno, "copy `%s`", path);
  return 0;
}

/* Directory FROM_NAME (FROM_DIR, stat ST) and what it holds into TO_DIR as TO_NAME. */
static int
copy_dir (int from_dir, const char *from_name, int to_dir, const char *to_name, const struct stat *st, const char *path,
          int depth, nex_error_t *err)
{
  if (depth > COPY_MAX_DEPTH)
    return nex_error_set (err, NEX_ERR_SYSTEM, "copy `%s`: too deep", path);
  if (mkdirat (to_dir, to_name, 0700) < 0)
    return nex_error_sys (err, errno, "copy `%s`", path);
  cleanup_close int out = openat (to_dir, to_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int in = openat (from_dir, from_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  cleanup_dir DIR *d = in < 0 ? NULL : fdopendir (in);
  if (out < 0 || d == NULL)
    {
      if (in >= 0 && d == NULL)
        close (in);
      return nex_error_sys (err, errno, "copy `%s`", path);
    }
  struct dirent *de;
  while ((de = readdir (d)) != NULL)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      cleanup_free char *child = nex_xasprintf ("%s/%s", path, de->d_name);
      if (copy_entry (dirfd (d), out, de->d_name, child, depth + 1, err) < 0)
        return -1;
    }
  if (fchown (out, st->st_uid, st->st_gid) < 0 || fchmod (out, st->st_mode & 07777) < 0)
    return nex_error_sys (err, errno, "copy `%s`", path);
  return 0;
}

static int
copy_symlink (int from_dir, int to_dir, const char *name, const struct stat *st, const char *path, nex_error_t *err)
{
  char target[PATH_MAX];
  ssize_t n = readlinkat (from_dir, name, target, sizeof target - 1);
  if (n < 0)
    return nex_error_sys (err, errno, "copy `%s`", path);
  target[n] = '\0';
  if (symlinkat (target, to_dir, name) < 0 || fchownat (to_dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
    return nex_error_sys (err, errno, "copy `%s`", path);
  return 0;
}

static int
copy_entry (int from_dir, int to_dir, const char *name, const char *path, int depth, nex_error_t *err)
{
  struct stat st;
  if (fstatat (from_dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return nex_error_sys (err, errno, "copy `%s`", path);
  if (S_ISDIR (st.st_mode))
    return copy_dir (from_dir, name, to_dir, name, &st, path, depth, err);
  if (S_ISREG (st.st_mode))
    return copy_file (from_dir, to_dir, name, &st, path, err);
  if (S_ISLNK (st.st_mode))
    return copy_symlink (from_dir, to_dir, name, &st, path, err);
  return nex_error_set (err, NEX_ERR_SYSTEM, "copy `%s`: not a file, directory or symlink", path);
}

int
nex_image_root_copy (const char *tree, const char *dst, nex_error_t *err)
{
  cleanup_free char *tree_parent = nex_xstrdup (tree);
  cleanup_free char *dst_parent = nex_xstrdup (dst);
  char *ts = strrchr (tree_parent, '/'), *ds = strrchr (dst_parent, '/');
  if (ts == NULL || ds == NULL)
    return nex_error_set (err, NEX_ERR_SYSTEM, "copy `%s` to `%s`: absolute paths needed", tree, dst);
  *ts = *ds = '\0';
  cleanup_close int from = open (tree_parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  cleanup_close int to = open (dst_parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (from < 0 || to < 0)
    return nex_error_sys (err, errno, "copy `%s` to `%s`", tree, dst);
  struct stat st;
  if (fstatat (from, ts + 1, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR (st.st_mode))
    return nex_error_sys (err, errno ? errno : ENOTDIR, "copy `%s`", tree);
  int r = copy_dir (from, ts + 1, to, ds + 1, &st, tree, 0, err);
  if (r < 0)
    nex_layer_remove_tree (to, ds + 1);
  return r;
}

void
nex_image_root_remove_copy (const char *run_dir)
{
  cleanup_close int fd = open (run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0)
    nex_layer_remove_tree (fd, NEX_IMAGE_ROOT_COPY_DIR);
}
