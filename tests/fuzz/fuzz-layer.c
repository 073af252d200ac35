/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-layer.c — feeds hostile bytes to the layer unpacker (nex_layer_apply, server/artifacts/layer.c) as a layer
 * blob: tar, or tar in gzip or zstd (libarchive finds the filter), applied onto a fresh image root per run, then
 * (when it was accepted) nex_layer_finish_root.  The root starts with a small tree a lower layer would have left,
 * so that whiteouts, opaque directories, hardlinks and replacements have something to act on, including
 * symlinks that lead out of the root: `out` -> ../outside, `abs` -> the absolute path of outside, `up` -> ..,
 * `loop` -> loop.  The diff_id given is the SHA-256 of the input, so that an uncompressed layer can be accepted.
 *
 * Layout of one run, in a temporary directory made and removed each run:  layer (the blob), outside/keep (what
 * must stay as it is), root/ (the image).  The budget is small (1 MiB, 512 entries) to keep a run cheap.
 *
 * Invariants: a refusal is NEX_ERR_INVALID on field "image", NEX_ERR_TOO_LARGE, or NEX_ERR_SYSTEM (the kernel
 * refusing a name or an offset); whatever the outcome, nothing was made, changed or removed outside root/ (the
 * temporary directory holds exactly layer, outside and root, outside holds only keep, with its content); after
 * an accepted layer every entry of the tree is owned inside the sandbox's id range, no regular file is setuid or
 * setgid, there is no device node or socket, and /dev, /proc, /tmp are directories and /.nex-agent a file. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/artifacts/layer.h"
#include "tests/fuzz/fuzz.h"

#define ID_BASE 100000u
#define ID_COUNT 65536u
#define KEEP "what lies outside the root"

static void
write_at (int dir, const char *name, const void *p, size_t len)
{
  cleanup_close int fd = openat (dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  fuzz_check (fd >= 0 && write (fd, p, len) == (ssize_t)len, "a file of the run is written");
}

/* The tree a lower layer left in ROOT (all of it owned by the sandbox's root). */
static void
lower_layer (int root, const char *jail)
{
  fuzz_check (mkdirat (root, "etc", 0755) == 0 && mkdirat (root, "d", 0755) == 0 && mkdirat (root, "d/e", 0755) == 0,
              "the lower layer's directories are made");
  write_at (root, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 30);
  write_at (root, "d/e/f", "f", 1);
  cleanup_free char *abs = nex_xasprintf ("%s/outside", jail);
  fuzz_check (symlinkat ("../outside", root, "out") == 0 && symlinkat (abs, root, "abs") == 0
                  && symlinkat ("..", root, "up") == 0 && symlinkat ("loop", root, "loop") == 0,
              "the lower layer's symlinks are made");
  static const char *const all[] = { "etc", "d", "d/e", "etc/passwd", "d/e/f", "out", "abs", "up", "loop" };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    fuzz_check (fchownat (root, all[i], ID_BASE, ID_BASE, AT_SYMLINK_NOFOLLOW) == 0, "the lower layer is owned");
}

/* Whether directory DIR holds exactly the NAMES. */
static int
holds_exactly (int dir, const char *const *names, size_t n)
{
  int fd = openat (dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  fuzz_check (fd >= 0, "a directory of the run opens");
  cleanup_dir DIR *d = fdopendir (fd);
  size_t seen = 0;
  struct dirent *de;
  while ((de = readdir (d)) != NULL)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      int known = 0;
      for (size_t i = 0; i < n; i++)
        known |= strcmp (de->d_name, names[i]) == 0;
      if (!known)
        return 0;
      seen++;
    }
  return seen == n;
}

static void
check_outside_untouched (int jail_fd)
{
  static const char *const top[] = { "layer", "outside", "root" };
  static const char *const inside_outside[] = { "keep" };
  fuzz_check (holds_exactly (jail_fd, top, 3), "nothing was made or removed beside the root");
  cleanup_close int out = openat (jail_fd, "outside", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  fuzz_check (out >= 0 && holds_exactly (out, inside_outside, 1), "nothing was made or removed outside the root");
  char buf[64] = "";
  cleanup_close int keep = openat (out, "keep", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  fuzz_check (keep >= 0 && read (keep, buf, sizeof buf) == (ssize_t)strlen (KEEP)
                  && memcmp (buf, KEEP, strlen (KEEP)) == 0,
              "the file outside the root is unchanged");
  struct stat st;
  fuzz_check (fstat (keep, &st) == 0 && st.st_uid == 0 && (st.st_mode & 07777) == 0644,
              "the file outside the root keeps its owner and mode");
}

static int
check_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  fuzz_check (st->st_uid >= ID_BASE && st->st_uid < ID_BASE + ID_COUNT && st->st_gid >= ID_BASE
                  && st->st_gid < ID_BASE + ID_COUNT,
              "every entry is owned inside the sandbox's ids");
  fuzz_check (!S_ISCHR (st->st_mode) && !S_ISBLK (st->st_mode) && !S_ISSOCK (st->st_mode),
              "no device node or socket is made");
  fuzz_check (!S_ISREG (st->st_mode) || (st->st_mode & (S_ISUID | S_ISGID)) == 0, "no file is setuid or setgid");
  return 0;
}

static void
check_finished (int root_fd, const char *root)
{
  fuzz_check (nftw (root, check_entry, 16, FTW_PHYS) == 0, "the tree is walked");
  struct stat st;
  static const char *const dirs[] = { "dev", "proc", "tmp" };
  for (size_t i = 0; i < 3; i++)
    fuzz_check (fstatat (root_fd, dirs[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR (st.st_mode),
                "the sandbox's mount points are directories");
  fuzz_check (fstatat (root_fd, ".nex-agent", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG (st.st_mode),
              "the agent's mount point is a file");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  char jail[64];
  snprintf (jail, sizeof jail, "%s/nex-fuzz-layer.XXXXXX", fuzz_tmp_base ());
  fuzz_check (mkdtemp (jail) != NULL, "a temporary directory is made");
  cleanup_close int jail_fd = open (jail, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  fuzz_check (jail_fd >= 0, "the temporary directory opens");
  write_at (jail_fd, "layer", data, size);
  fuzz_check (mkdirat (jail_fd, "outside", 0755) == 0 && mkdirat (jail_fd, "root", 0755) == 0,
              "outside and root are made");
  cleanup_close int out = openat (jail_fd, "outside", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  write_at (out, "keep", KEEP, strlen (KEEP));
  fchmodat (out, "keep", 0644, 0);
  cleanup_close int root = openat (jail_fd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  fuzz_check (root >= 0 && fchown (root, ID_BASE, ID_BASE) == 0, "the root opens");
  lower_layer (root, jail);

  unsigned char d[crypto_hash_sha256_BYTES];
  char diff_id[72] = "sha256:";
  crypto_hash_sha256 (d, data, size);
  sodium_bin2hex (diff_id + 7, 65, d, sizeof d);
  cleanup_free char *blob = nex_xasprintf ("%s/layer", jail);
  nex_layer_budget_t budget
      = { .max_bytes = 1024 * 1024, .max_entries = 512, .id_base = ID_BASE, .id_count = ID_COUNT };
  cleanup_error nex_error_t err = NULL;
  int rc = nex_layer_apply (root, blob, diff_id, &budget, &err);
  if (rc == 0)
    rc = nex_layer_finish_root (root, &budget, &err);
  if (rc < 0)
    fuzz_check (err
                    && ((err->kind == NEX_ERR_INVALID && err->field && strcmp (err->field, "image") == 0)
                        || err->kind == NEX_ERR_TOO_LARGE || err->kind == NEX_ERR_SYSTEM),
                "a refused layer is NEX_ERR_INVALID on field image, NEX_ERR_TOO_LARGE or NEX_ERR_SYSTEM");
  check_outside_untouched (jail_fd);
  if (rc == 0)
    {
      cleanup_free char *root_path = nex_xasprintf ("%s/root", jail);
      check_finished (root, root_path);
    }
  fuzz_check (nex_layer_remove_tree (AT_FDCWD, jail) == 0, "the run's files are removed");
  return 0;
}
