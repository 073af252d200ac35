/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/layer.c — safe unpacking of image layers (contract in layer.h).
 *
 * Two libarchive readers are stacked: the outer one decompresses the blob (any filter, "raw" format: one entry
 * that is the whole uncompressed stream), and the inner one parses tar from what the outer one hands it,
 * through a read callback that also hashes those bytes (the diff_id) and counts them against the budget.  So the
 * diff_id is computed over exactly the bytes the entries came from, in one pass.
 *
 * Writing: walk_parent opens an entry's parent one component at a time (openat2 with RESOLVE_IN_ROOT |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, below the root's descriptor), creating missing directories; then
 * the last component is made by a call that does not follow it.  Every path in the layer is remembered (a small
 * hash set), for the opaque whiteout's "what this layer unpacked is kept". */
#include "server/artifacts/layer.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <sodium.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

#define READ_CHUNK (64 * 1024)
#define WHITEOUT ".wh."
#define OPAQUE ".wh..wh..opq"
#define MAX_ID 2147483647LL

static void
archive_cleanup (struct archive **a)
{
  if (*a)
    archive_read_free (*a);
}
#define cleanup_archive cleanup_with (archive_cleanup)

/* --- the set of paths this layer wrote ------------------------------------------------------------------------ */

typedef struct pathset
{
  char **slots;
  size_t cap, n;
} pathset_t;

static uint64_t
hash_str (const char *s)
{
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static void pathset_add (pathset_t *ps, const char *path);

static void
pathset_grow (pathset_t *ps)
{
  pathset_t bigger = { .cap = ps->cap ? ps->cap * 2 : 256 };
  bigger.slots = nex_xzalloc (bigger.cap * sizeof *bigger.slots);
  for (size_t i = 0; i < ps->cap; i++)
    if (ps->slots[i])
      {
        pathset_add (&bigger, ps->slots[i]);
        free (ps->slots[i]);
      }
  free (ps->slots);
  *ps = bigger;
}

static int
pathset_has (const pathset_t *ps, const char *path)
{
  if (ps->cap == 0)
    return 0;
  for (size_t i = hash_str (path) & (ps->cap - 1);; i = (i + 1) & (ps->cap - 1))
    {
      if (ps->slots[i] == NULL)
        return 0;
      if (strcmp (ps->slots[i], path) == 0)
        return 1;
    }
}

static void
pathset_add (pathset_t *ps, const char *path)
{
  if ((ps->n + 1) * 2 > ps->cap)
    pathset_grow (ps);
  size_t i = hash_str (path) & (ps->cap - 1);
  for (; ps->slots[i]; i = (i + 1) & (ps->cap - 1))
    if (strcmp (ps->slots[i], path) == 0)
      return;
  ps->slots[i] = nex_xstrdup (path);
  ps->n++;
}

static void
pathset_release (pathset_t *ps)
{
  for (size_t i = 0; i < ps->cap; i++)
    free (ps->slots[i]);
  free (ps->slots);
}

#define NEX_LAYER_MAX_DEPTH 256 /* path components of an entry */

/* --- paths ---------------------------------------------------------------------------------------------------- */

/* NAME normalised into OUT: leading `/` and `./` dropped, `.` components and repeated or trailing slashes
 * removed.  -1 when a component is `..`. */
static int
normalise (const char *name, char *out, size_t cap)
{
  size_t o = 0;
  const char *p = name;
  while (*p)
    {
      while (*p == '/')
        p++;
      size_t n = strcspn (p, "/");
      if (n == 0)
        break;
      if (n == 2 && p[0] == '.' && p[1] == '.')
        return -1;
      if (!(n == 1 && p[0] == '.'))
        {
          if (o + n + 2 > cap)
            return -1;
          if (o)
            out[o++] = '/';
          memcpy (out + o, p, n);
          o += n;
        }
      p += n;
    }
  out[o] = '\0';
  return 0;
}

static int
open_beneath (int dir, const char *name, uint64_t flags)
{
  struct open_how how
      = { .flags = flags | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
  return (int)syscall (SYS_openat2, dir, name, &how, sizeof how);
}

static uint32_t
shift_id (const nex_layer_budget_t *b, int64_t id)
{
  return b->id_base + (id < b->id_count ? (uint32_t)id : NEX_LAYER_NOBODY);
}

/* Opens the directory PARENT (normalised, "" for the root) below ROOT, creating missing components (mode 0755,
 * owned by the sandbox's root).  A component that is a symlink or no directory is refused: the layer would write
 * through it. */
static int
walk_parent (int root, const char *parent, const char *entry, const nex_layer_budget_t *b, nex_error_t *err)
{
  cleanup_close int cur = open_beneath (root, ".", O_PATH | O_DIRECTORY);
  if (cur < 0)
    return nex_error_sys (err, errno, "open the image root");
  const char *p = parent;
  while (*p)
    {
      size_t n = strcspn (p, "/");
      char comp[256];
      if (n >= sizeof comp)
        return nex_error_field (err, "image", "layer entry `%s` has a path component longer than 255 bytes", entry);
      memcpy (comp, p, n);
      comp[n] = '\0';
      int next = open_beneath (cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW);
      if (next < 0 && errno == ENOENT)
        {
          if (mkdirat (cur, comp, 0755) < 0 && errno != EEXIST)
            return nex_error_sys (err, errno, "layer entry `%s`: make directory `%s`", entry, comp);
          fchownat (cur, comp, b->id_base, b->id_base, AT_SYMLINK_NOFOLLOW);
          next = open_beneath (cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW);
        }
      if (next < 0 && (errno == ELOOP || errno == ENOTDIR || errno == EXDEV))
        return nex_error_field (err, "image", "layer entry `%s` writes through a symlink or non-directory `%.*s`",
                                entry, (int)(p - parent + n), parent);
      if (next < 0)
        return nex_error_sys (err, errno, "layer entry `%s`: open `%s`", entry, comp);
      close (cur);
      cur = next;
      p += n;
      while (*p == '/')
        p++;
    }
  return NEX_STEAL_FD (cur);
}

/* --- removing ------------------------------------------------------------------------------------------------- */

int
nex_layer_remove_tree (int dir_fd, const char *name)
{
  struct stat st;
  if (fstatat (dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR (st.st_mode))
    return unlinkat (dir_fd, name, 0);
  int fd = openat (dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  cleanup_dir DIR *d = fdopendir (fd);
  if (d == NULL)
    {
      close (fd);
      return -1;
    }
  struct dirent *de;
  while ((de = readdir (d)) != NULL)
    if (strcmp (de->d_name, ".") != 0 && strcmp (de->d_name, "..") != 0 && nex_layer_remove_tree (fd, de->d_name) < 0)
      return -1;
  return unlinkat (dir_fd, name, AT_REMOVEDIR);
}

/* The opaque whiteout in directory DIR_PATH (DIR_FD): removes every child the layers below made. */
static int
apply_opaque (int dir_fd, const char *dir_path, const pathset_t *mine, nex_error_t *err)
{
  int fd = openat (dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "opaque whiteout in `%s`", dir_path);
  cleanup_dir DIR *d = fdopendir (fd);
  if (d == NULL)
    {
      close (fd);
      return nex_error_sys (err, errno, "opaque whiteout in `%s`", dir_path);
    }
  struct dirent *de;
  while ((de = readdir (d)) != NULL)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      cleanup_free char *path = dir_path[0] ? nex_xasprintf ("%s/%s", dir_path, de->d_name) : nex_xstrdup (de->d_name);
      if (!pathset_has (mine, path) && nex_layer_remove_tree (fd, de->d_name) < 0)
        return nex_error_sys (err, errno, "opaque whiteout: remove `%s`", path);
    }
  return 0;
}

/* --- reading ------------------------------------------------------------------------------------------------ */

typedef struct layer_reader
{
  struct archive *outer;
  crypto_hash_sha256_state sha;
  nex_layer_budget_t *budget;
  char buf[READ_CHUNK];
  int over_budget; /* the inner read stopped on the byte budget */
} layer_reader_t;

static la_ssize_t
inner_read (struct archive *a, void *ctx, const void **out)
{
  layer_reader_t *r = ctx;
  la_ssize_t n = archive_read_data (r->outer, r->buf, sizeof r->buf);
  if (n < 0)
    {
      archive_set_error (a, EIO, "%s", archive_error_string (r->outer));
      return -1;
    }
  crypto_hash_sha256_update (&r->sha, (const unsigned char *)r->buf, (size_t)n);
  r->budget->bytes += (uint64_t)n;
  if (r->budget->bytes > r->budget->max_bytes)
    {
      r->over_budget = 1;
      archive_set_error (a, EFBIG, "over the budget");
      return -1;
    }
  *out = r->buf;
  return n;
}

/* --- writing one entry ---------------------------------------------------------------------------------------- */

typedef struct entry_ctx
{
  int root;
  struct archive *inner;
  nex_layer_budget_t *budget;
  pathset_t *mine;
} entry_ctx_t;

static int
copy_data (struct archive *a, int fd, const char *name, nex_error_t *err)
{
  const void *block;
  size_t size;
  la_int64_t offset;
  for (;;)
    {
      int rc = archive_read_data_block (a, &block, &size, &offset);
      if (rc == ARCHIVE_EOF)
        return 0;
      if (rc < ARCHIVE_WARN)
        return nex_error_field (err, "image", "layer entry `%s`: %s", name, archive_error_string (a));
      if (size && pwrite (fd, block, size, offset) != (ssize_t)size)
        return nex_error_sys (err, errno, "layer entry `%s`: write", name);
    }
}

static int
make_hardlink (entry_ctx_t *c, int parent, const char *base, const char *name, const char *target_raw, nex_error_t *err)
{
  char target[4096];
  if (normalise (target_raw, target, sizeof target) < 0 || target[0] == '\0')
    return nex_error_field (err, "image", "layer hardlink `%s` points outside the image (`%s`)", name, target_raw);
  char *slash = strrchr (target, '/');
  const char *tbase = slash ? slash + 1 : target;
  if (slash)
    *slash = '\0';
  cleanup_close int tparent = walk_parent (c->root, slash ? target : "", name, c->budget, err);
  if (tparent < 0)
    return -1;
  struct stat st;
  if (fstatat (tparent, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return nex_error_field (err, "image", "layer hardlink `%s` points to `%s`, which is not in the image", name,
                            target_raw);
  if (!S_ISREG (st.st_mode))
    return nex_error_field (err, "image", "layer hardlink `%s` points to `%s`, which is not a regular file", name,
                            target_raw);
  if (linkat (tparent, tbase, parent, base, 0) < 0)
    return nex_error_sys (err, errno, "layer hardlink `%s`", name);
  return 0;
}

/* Makes entry E (normalised NAME, BASE its last component) in directory PARENT. */
static int
make_entry (entry_ctx_t *c, struct archive_entry *e, int parent, const char *base, const char *name, nex_error_t *err)
{
  mode_t type = archive_entry_filetype (e);
  la_int64_t uid = archive_entry_uid (e), gid = archive_entry_gid (e);
  if (uid < 0 || gid < 0 || uid > MAX_ID || gid > MAX_ID)
    return nex_error_field (err, "image", "layer entry `%s` has uid/gid %lld/%lld, beyond 2^31-1", name, (long long)uid,
                            (long long)gid);
  mode_t perm = archive_entry_perm (e) & 07777;
  uint32_t huid = shift_id (c->budget, uid), hgid = shift_id (c->budget, gid);
  const char *hardlink = archive_entry_hardlink (e);

  struct stat old;
  int exists = fstatat (parent, base, &old, AT_SYMLINK_NOFOLLOW) == 0;
  if (exists && !(type == AE_IFDIR && S_ISDIR (old.st_mode)) && nex_layer_remove_tree (parent, base) < 0)
    return nex_error_sys (err, errno, "layer entry `%s`: replace", name);

  if (hardlink)
    return make_hardlink (c, parent, base, name, hardlink, err);
  switch (type)
    {
    case AE_IFDIR:
      {
        if (!(exists && S_ISDIR (old.st_mode)) && mkdirat (parent, base, 0700) < 0)
          return nex_error_sys (err, errno, "layer entry `%s`: mkdir", name);
        cleanup_close int fd = openat (parent, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fchown (fd, huid, hgid) < 0 || fchmod (fd, perm) < 0)
          return nex_error_sys (err, errno, "layer entry `%s`: directory", name);
        return 0;
      }
    case AE_IFREG:
      {
        cleanup_close int fd = openat (parent, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
          return nex_error_sys (err, errno, "layer entry `%s`: create", name);
        if (copy_data (c->inner, fd, name, err) < 0)
          return -1;
        /* setuid/setgid dropped: see layer.h. */
        if (fchown (fd, huid, hgid) < 0 || fchmod (fd, perm & ~(mode_t)(S_ISUID | S_ISGID)) < 0)
          return nex_error_sys (err, errno, "layer entry `%s`: owner", name);
        return 0;
      }
    case AE_IFLNK:
      {
        const char *target = archive_entry_symlink (e);
        if (target == NULL || target[0] == '\0')
          return nex_error_field (err, "image", "layer symlink `%s` has no target", name);
        if (symlinkat (target, parent, base) < 0 || fchownat (parent, base, huid, hgid, AT_SYMLINK_NOFOLLOW) < 0)
          return nex_error_sys (err, errno, "layer entry `%s`: symlink", name);
        return 0;
      }
    case AE_IFIFO:
      if (mknodat (parent, base, S_IFIFO | (perm & 0777), 0) < 0
          || fchownat (parent, base, huid, hgid, AT_SYMLINK_NOFOLLOW) < 0)
        return nex_error_sys (err, errno, "layer entry `%s`: fifo", name);
      return 0;
    case AE_IFCHR:
    case AE_IFBLK:
      return nex_error_field (err, "image", "layer entry `%s` is a device node: refused", name);
    default:
      return nex_error_field (err, "image", "layer entry `%s` is of a type nexd does not unpack (mode %o)", name,
                              (unsigned)type);
    }
}

static int
apply_entry (entry_ctx_t *c, struct archive_entry *e, nex_error_t *err)
{
  const char *raw = archive_entry_pathname (e);
  char name[4096];
  if (raw == NULL)
    return nex_error_field (err, "image", "layer entry without a name");
  if (normalise (raw, name, sizeof name) < 0)
    return nex_error_field (err, "image", "layer entry `%s` reaches out of the image (`..`)", raw);
  /* A tree deeper than this could not be removed again by a walk that holds a descriptor per level within
   * nexd's descriptor limit (fuzz-layer's finding); no real image comes near it. */
  size_t depth = 1;
  for (const char *ch = name; *ch; ch++)
    depth += *ch == '/';
  if (depth > NEX_LAYER_MAX_DEPTH)
    return nex_error_field (err, "image", "layer entry `%.64s...` is %zu directories deep (at most %d)", raw, depth,
                            NEX_LAYER_MAX_DEPTH);
  if (name[0] == '\0')
    {
      /* The root itself: only a directory may stand there. */
      if (archive_entry_filetype (e) != AE_IFDIR || archive_entry_hardlink (e))
        return nex_error_field (err, "image", "layer entry `%s` would replace the image root", raw);
      return 0;
    }
  char *slash = strrchr (name, '/');
  const char *base = slash ? slash + 1 : name;
  char parent_path[4096];
  snprintf (parent_path, sizeof parent_path, "%.*s", slash ? (int)(slash - name) : 0, name);
  cleanup_close int parent = walk_parent (c->root, parent_path, raw, c->budget, err);
  if (parent < 0)
    return -1;
  if (strcmp (base, OPAQUE) == 0)
    return apply_opaque (parent, parent_path, c->mine, err);
  if (strncmp (base, WHITEOUT, strlen (WHITEOUT)) == 0)
    {
      const char *victim = base + strlen (WHITEOUT);
      if (victim[0] == '\0' || strcmp (victim, ".") == 0 || strcmp (victim, "..") == 0)
        return nex_error_field (err, "image", "layer whiteout `%s` names nothing", raw);
      if (nex_layer_remove_tree (parent, victim) < 0)
        return nex_error_sys (err, errno, "layer whiteout `%s`", raw);
      return 0;
    }
  pathset_add (c->mine, name);
  return make_entry (c, e, parent, base, name, err);
}

int
nex_layer_apply (int root_fd, const char *blob_path, const char *diff_id, nex_layer_budget_t *budget, nex_error_t *err)
{
  cleanup_free layer_reader_t *r = nex_xzalloc (sizeof *r);
  r->budget = budget;
  crypto_hash_sha256_init (&r->sha);
  cleanup_archive struct archive *outer = archive_read_new ();
  cleanup_archive struct archive *inner = archive_read_new ();
  if (outer == NULL || inner == NULL)
    return nex_error_set (err, NEX_ERR_SYSTEM, "libarchive: out of memory");
  archive_read_support_filter_gzip (outer);
  archive_read_support_filter_zstd (outer);
  archive_read_support_format_raw (outer);
  struct archive_entry *e;
  if (archive_read_open_filename (outer, blob_path, READ_CHUNK) != ARCHIVE_OK
      || archive_read_next_header (outer, &e) != ARCHIVE_OK)
    return nex_error_field (err, "image", "layer %s cannot be read: %s", diff_id, archive_error_string (outer));
  r->outer = outer;
  archive_read_support_format_tar (inner);
  if (archive_read_open (inner, r, NULL, inner_read, NULL) != ARCHIVE_OK)
    return nex_error_field (err, "image", "layer %s is not a tar archive: %s", diff_id, archive_error_string (inner));
  cleanup_with (pathset_release) pathset_t mine = { 0 };
  entry_ctx_t c = { .root = root_fd, .inner = inner, .budget = budget, .mine = &mine };
  for (;;)
    {
      int rc = archive_read_next_header (inner, &e);
      if (rc == ARCHIVE_EOF)
        break;
      if (r->over_budget)
        return nex_error_set (err, NEX_ERR_TOO_LARGE, "image is larger than %llu bytes unpacked",
                              (unsigned long long)budget->max_bytes);
      if (rc < ARCHIVE_WARN)
        return nex_error_field (err, "image", "layer %s: %s", diff_id, archive_error_string (inner));
      if (++budget->entries > budget->max_entries)
        return nex_error_set (err, NEX_ERR_TOO_LARGE, "image has more than %llu files",
                              (unsigned long long)budget->max_entries);
      if (apply_entry (&c, e, err) < 0)
        return -1;
    }
  if (r->over_budget)
    return nex_error_set (err, NEX_ERR_TOO_LARGE, "image is larger than %llu bytes unpacked",
                          (unsigned long long)budget->max_bytes);
  /* The diff_id covers the whole stream, padding after the tar's end included. */
  for (;;)
    {
      const void *out;
      la_ssize_t n = inner_read (inner, r, &out);
      if (n <= 0)
        {
          if (n < 0)
            return r->over_budget
                       ? nex_error_set (err, NEX_ERR_TOO_LARGE, "image is larger than %llu bytes unpacked",
                                        (unsigned long long)budget->max_bytes)
                       : nex_error_field (err, "image", "layer %s: %s", diff_id, archive_error_string (outer));
          break;
        }
    }
  unsigned char d[crypto_hash_sha256_BYTES];
  char got[72] = "sha256:";
  crypto_hash_sha256_final (&r->sha, d);
  sodium_bin2hex (got + 7, 65, d, sizeof d);
  if (diff_id == NULL || strcmp (got, diff_id) != 0)
    return nex_error_field (err, "image", "layer diff_id mismatch: the config says %s, the layer unpacks to %s",
                            diff_id ? diff_id : "(none)", got);
  return 0;
}

int
nex_layer_finish_root (int root_fd, const nex_layer_budget_t *budget, nex_error_t *err)
{
  static const char *const mounts[] = { "dev", "proc", "tmp" };
  for (size_t i = 0; i < 3; i++)
    {
      struct stat st;
      if (fstatat (root_fd, mounts[i], &st, AT_SYMLINK_NOFOLLOW) == 0)
        {
          if (!S_ISDIR (st.st_mode))
            return nex_error_field (err, "image",
                                    "`/%s` in the image is not a directory (a symlink there would lead the sandbox's "
                                    "mounts elsewhere)",
                                    mounts[i]);
          continue;
        }
      if (mkdirat (root_fd, mounts[i], i == 2 ? 01777 : 0755) < 0
          || fchownat (root_fd, mounts[i], budget->id_base, budget->id_base, AT_SYMLINK_NOFOLLOW) < 0)
        return nex_error_sys (err, errno, "make `/%s` in the image", mounts[i]);
      if (i == 2)
        fchmodat (root_fd, mounts[i], 01777, 0);
    }
  if (nex_layer_remove_tree (root_fd, ".nex-agent") < 0)
    return nex_error_sys (err, errno, "make room for the agent in the image");
  cleanup_close int fd = openat (root_fd, ".nex-agent", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0555);
  if (fd < 0 || fchown (fd, budget->id_base, budget->id_base) < 0)
    return nex_error_sys (err, errno, "make the agent's mount point in the image");
  return 0;
}
