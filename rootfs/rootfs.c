/* SPDX-License-Identifier: Apache-2.0 */
/* rootfs.c — VM images: content keys, the initramfs writer, the ext4 builder and the cache (see rootfs.h).
 *
 * The cache computes an image's key from its inputs, writes the image, and computes the key again: an input
 * replaced in between would otherwise publish an image under a name that its bytes do not match.
 */
#include "rootfs/rootfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "rootfs/cpio.h"
#include "rootfs/layout.h"

#define KEY_VERSION "nex-rootfs 1"  /* bump when the layout changes, so that old cache entries are not reused */
#define EXT4_SLACK_BYTES (8u << 20) /* free room in an ext4 image beyond its files (metadata, journal-less) */
#define MKFS_OUTPUT_MAX 4096        /* bytes of mkfs.ext4's complaints kept for the error message */

/* The kernel modules of SPEC: sorted base names of the *.ko files in its modules_dir. */
typedef struct module_list
{
  char *names[NEX_VM_MAX_MODULES];
  size_t n;
} module_list_t;

static void
module_list_release (module_list_t *m)
{
  for (size_t i = 0; i < m->n; i++)
    free (m->names[i]);
  m->n = 0;
}

static int
compare_names (const void *a, const void *b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

static int
module_list_load (const nex_rootfs_spec_t *spec, module_list_t *m, nex_error_t *err)
{
  m->n = 0;
  if (spec->modules_dir == NULL)
    return 0;
  cleanup_dir DIR *d = opendir (spec->modules_dir);
  if (d == NULL)
    {
      if (errno == ENOENT)
        return 0;
      return nex_error_sys (err, errno, "open module directory `%s`", spec->modules_dir);
    }
  struct dirent *de;
  while ((de = readdir (d)) != NULL)
    {
      size_t len = strlen (de->d_name);
      if (len < 4 || strcmp (de->d_name + len - 3, ".ko") != 0 || de->d_name[0] == '.')
        continue;
      if (m->n == NEX_VM_MAX_MODULES)
        {
          module_list_release (m);
          return nex_error_set (err, NEX_ERR_INVALID, "module directory `%s` holds more than %d modules",
                                spec->modules_dir, NEX_VM_MAX_MODULES);
        }
      m->names[m->n++] = nex_xstrdup (de->d_name);
    }
  qsort (m->names, m->n, sizeof m->names[0], compare_names);
  return 0;
}

static int
open_input (const char *path, nex_error_t *err)
{
  cleanup_close int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "open `%s`", path);
  struct stat st;
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    return nex_error_set (err, NEX_ERR_INVALID, "`%s` is not a regular file", path);
  return NEX_STEAL_FD (fd);
}

/* SHA-256 of everything FD holds, as hex into HEX. */
static int
hash_fd (int fd, const char *what, char hex[65], nex_error_t *err)
{
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init (&st);
  cleanup_free unsigned char *buf = nex_xmalloc (1 << 16);
  off_t at = 0;
  for (;;)
    {
      ssize_t n = pread (fd, buf, 1 << 16, at);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return nex_error_sys (err, errno, "read `%s`", what);
      if (n == 0)
        break;
      crypto_hash_sha256_update (&st, buf, (unsigned long long)n);
      at += n;
    }
  unsigned char sum[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final (&st, sum);
  sodium_bin2hex (hex, 65, sum, sizeof sum);
  return 0;
}

static int
hash_path (const char *path, char hex[65], nex_error_t *err)
{
  cleanup_close int fd = open_input (path, err);
  if (fd < 0)
    return -1;
  return hash_fd (fd, path, hex, err);
}

int
nex_rootfs_key (nex_rootfs_kind_t kind, const nex_rootfs_spec_t *spec, char key[65], nex_error_t *err)
{
  char workload[65], agent[65];
  cleanup_with (module_list_release) module_list_t mods = { 0 };
  if (spec->workload_path == NULL)
    snprintf (workload, sizeof workload, "none"); /* an image workload: its files are on a disk of their own */
  else if (spec->workload_digest)
    snprintf (workload, sizeof workload, "%s", spec->workload_digest);
  else if (hash_path (spec->workload_path, workload, err) < 0)
    return -1;
  if (hash_path (spec->agent_path, agent, err) < 0 || module_list_load (spec, &mods, err) < 0)
    return -1;

  crypto_hash_sha256_state st;
  crypto_hash_sha256_init (&st);
  cleanup_free char *head = nex_xasprintf ("%s\nkind %s\nworkload %s\nagent %s\n", KEY_VERSION,
                                           kind == NEX_ROOTFS_EXT4 ? "ext4" : "initramfs", workload, agent);
  crypto_hash_sha256_update (&st, (const unsigned char *)head, strlen (head));
  for (size_t i = 0; i < mods.n; i++)
    {
      char mod[65];
      cleanup_free char *path = nex_xasprintf ("%s/%s", spec->modules_dir, mods.names[i]);
      if (hash_path (path, mod, err) < 0)
        return -1;
      cleanup_free char *line = nex_xasprintf ("module %s %s\n", mods.names[i], mod);
      crypto_hash_sha256_update (&st, (const unsigned char *)line, strlen (line));
    }
  unsigned char sum[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final (&st, sum);
  sodium_bin2hex (key, 65, sum, sizeof sum);
  return 0;
}

/* --- initramfs ------------------------------------------------------------------------------------------------ */

static int
cpio_add_path (nex_cpio_t *c, const char *name, mode_t perm, const char *path, nex_error_t *err)
{
  cleanup_close int fd = open_input (path, err);
  if (fd < 0)
    return -1;
  return nex_cpio_file (c, name, perm, fd, err);
}

static int
write_initramfs (int fd, const nex_rootfs_spec_t *spec, nex_error_t *err)
{
  cleanup_with (module_list_release) module_list_t mods = { 0 };
  if (module_list_load (spec, &mods, err) < 0)
    return -1;
  nex_cpio_t c;
  nex_cpio_init (&c, fd);
  /* Names in the archive are relative; NEX_VM_* paths start with '/'. */
  if (nex_cpio_dir (&c, "dev", 0755, err) < 0 || nex_cpio_chardev (&c, "dev/console", 0600, 5, 1, err) < 0
      || nex_cpio_chardev (&c, "dev/null", 0666, 1, 3, err) < 0 || nex_cpio_dir (&c, "proc", 0555, err) < 0
      || nex_cpio_dir (&c, "sys", 0555, err) < 0 || nex_cpio_dir (&c, "tmp", 01777, err) < 0
      || nex_cpio_dir (&c, "nex", 0755, err) < 0 || nex_cpio_dir (&c, NEX_VM_MODULES_DIR + 1, 0755, err) < 0)
    return -1;
  for (size_t i = 0; i < mods.n; i++)
    {
      cleanup_free char *src = nex_xasprintf ("%s/%s", spec->modules_dir, mods.names[i]);
      cleanup_free char *name = nex_xasprintf ("%s/%s", NEX_VM_MODULES_DIR + 1, mods.names[i]);
      if (cpio_add_path (&c, name, 0444, src, err) < 0)
        return -1;
    }
  if (cpio_add_path (&c, NEX_VM_INIT + 1, 0555, spec->agent_path, err) < 0
      || (spec->workload_path && cpio_add_path (&c, NEX_VM_WORKLOAD + 1, 0555, spec->workload_path, err) < 0))
    return -1;
  return nex_cpio_finish (&c, err);
}

/* --- ext4 ----------------------------------------------------------------------------------------------------- */

/* Copies SRC to DST (created with PERM); returns the size copied or -1. */
static off_t
copy_file (const char *src, const char *dst, mode_t perm, nex_error_t *err)
{
  cleanup_close int in = open_input (src, err);
  if (in < 0)
    return -1;
  cleanup_close int out = open (dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, perm);
  if (out < 0)
    return nex_error_sys (err, errno, "create `%s`", dst);
  cleanup_free char *buf = nex_xmalloc (1 << 16);
  off_t total = 0;
  for (;;)
    {
      ssize_t n = read (in, buf, 1 << 16);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return nex_error_sys (err, errno, "read `%s`", src);
      if (n == 0)
        break;
      if (nex_fd_write_all (out, buf, (size_t)n, err) < 0)
        return -1;
      total += n;
    }
  if (fchmod (out, perm) < 0)
    return nex_error_sys (err, errno, "chmod `%s`", dst);
  return total;
}

/* Removes the staging tree made by stage_tree (only the names it creates). */
static void
unstage (const char *stage, const module_list_t *mods)
{
  static const char *const files[] = { "init", "workload", "dev/console", "dev/null" };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    {
      cleanup_free char *p = nex_xasprintf ("%s/%s", stage, files[i]);
      unlink (p);
    }
  for (size_t i = 0; mods && i < mods->n; i++)
    {
      cleanup_free char *p = nex_xasprintf ("%s%s/%s", stage, NEX_VM_MODULES_DIR, mods->names[i]);
      unlink (p);
    }
  static const char *const dirs[] = { "nex/modules", "nex", "dev", "proc", "sys", "tmp", "" };
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
    {
      cleanup_free char *p = nex_xasprintf ("%s/%s", stage, dirs[i]);
      rmdir (p);
    }
}

/* Lays out the image's tree under STAGE (which exists and is empty); adds the bytes of its files to *SIZE. */
static int
stage_tree (const char *stage, const nex_rootfs_spec_t *spec, const module_list_t *mods, off_t *size, nex_error_t *err)
{
  static const struct
  {
    const char *name;
    mode_t mode;
  } dirs[] = { { "dev", 0755 },  { "proc", 0555 }, { "sys", 0555 },
               { "tmp", 01777 }, { "nex", 0755 },  { "nex/modules", 0755 } };
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
    {
      cleanup_free char *p = nex_xasprintf ("%s/%s", stage, dirs[i].name);
      if (mkdir (p, dirs[i].mode) < 0 || chmod (p, dirs[i].mode) < 0)
        return nex_error_sys (err, errno, "mkdir `%s`", p);
    }
  /* Device nodes need privilege on the host; without it the image has none, and the agent's devtmpfs mount
   * provides them at boot all the same (only the kernel's early console messages to init are lost). */
  cleanup_free char *console = nex_xasprintf ("%s/dev/console", stage);
  cleanup_free char *null = nex_xasprintf ("%s/dev/null", stage);
  if (mknod (console, S_IFCHR | 0600, makedev (5, 1)) == 0)
    mknod (null, S_IFCHR | 0666, makedev (1, 3));

  cleanup_free char *init = nex_xasprintf ("%s%s", stage, NEX_VM_INIT);
  cleanup_free char *workload = nex_xasprintf ("%s%s", stage, NEX_VM_WORKLOAD);
  off_t n;
  if ((n = copy_file (spec->agent_path, init, 0555, err)) < 0)
    return -1;
  *size += n;
  if (spec->workload_path && (n = copy_file (spec->workload_path, workload, 0555, err)) < 0)
    return -1;
  *size += spec->workload_path ? n : 0;
  for (size_t i = 0; i < mods->n; i++)
    {
      cleanup_free char *src = nex_xasprintf ("%s/%s", spec->modules_dir, mods->names[i]);
      cleanup_free char *dst = nex_xasprintf ("%s%s/%s", stage, NEX_VM_MODULES_DIR, mods->names[i]);
      if ((n = copy_file (src, dst, 0444, err)) < 0)
        return -1;
      *size += n;
    }
  return 0;
}

/* How mkfs.ext4 is to run (run_mkfs). */
typedef struct mkfs_job
{
  const char *stage;    /* the directory whose tree becomes the file system */
  const char *image;    /* the file to fill (of the final size) */
  int image_fd;         /* with id_base: IMAGE open for writing, given to the tool as /proc/self/fd/3 */
  int stage_fd;         /* with id_base: STAGE open, the tool's working directory (it reads `.`): the way there
                           may pass directories only root may search (a data dir of mode 0700) */
  uid_t id_base;        /* 0, or the host uid (and gid) that is 0 in the tree: the tool runs in a user namespace
                           mapping id_base.. to 0.., so the file system records the tree's own ids */
  unsigned long inodes; /* 0: mkfs.ext4's default count */
} mkfs_job_t;

/* In run_mkfs's child, before it executes the tool: a user namespace of its own whose ids the parent maps
 * (it reads a byte from READY when the namespace exists, and writes one to GO once the maps are written), then
 * its root.  Only async-signal-safe calls: nexd has other threads. */
static int
mkfs_child_userns (int ready, int go)
{
  char b = 0;
  if (unshare (CLONE_NEWUSER) < 0 || write (ready, "u", 1) != 1 || read (go, &b, 1) != 1)
    return -1;
  return setresgid (0, 0, 0) < 0 || setresuid (0, 0, 0) < 0 ? -1 : 0;
}

/* Writes the id maps of the user namespace of PID: 0..65535 inside are BASE.. outside. */
static int
mkfs_map_ids (pid_t pid, uid_t base, nex_error_t *err)
{
  static const char *const files[] = { "uid_map", "gid_map" };
  for (size_t i = 0; i < 2; i++)
    {
      char path[64], map[64];
      snprintf (path, sizeof path, "/proc/%d/%s", (int)pid, files[i]);
      int len = snprintf (map, sizeof map, "0 %u 65536\n", (unsigned)base);
      cleanup_close int fd = open (path, O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write (fd, map, (size_t)len) != len)
        return nex_error_sys (err, errno, "write `%s`", path);
    }
  return 0;
}

static void __attribute__ ((noreturn)) mkfs_exec (const mkfs_job_t *j, int out, int ready, int go)
{
  if (j->id_base && mkfs_child_userns (ready, go) < 0)
    {
      dprintf (out, "cannot enter a user namespace for mkfs.ext4: %s", strerror (errno));
      _exit (127);
    }
  int null = open ("/dev/null", O_RDONLY);
  if (null < 0 || dup2 (null, 0) < 0 || dup2 (out, 1) < 0 || dup2 (out, 2) < 0)
    _exit (127);
  /* The disk as descriptor 3, kept across execve (dup2 onto itself would leave it close-on-exec). */
  if (j->id_base
      && ((j->image_fd == 3 ? fcntl (3, F_SETFD, 0) : dup2 (j->image_fd, 3)) < 0 || fchdir (j->stage_fd) < 0))
    _exit (127);
  const char *stage = j->id_base ? "." : j->stage;
  char inodes[32];
  snprintf (inodes, sizeof inodes, "%lu", j->inodes);
  const char *image = j->id_base ? "/proc/self/fd/3" : j->image;
  /* No journal: the image is read-only to the guest and rebuilt rather than repaired.  -m 0: no blocks kept
   * for root, nothing writes to it. */
  if (j->inodes)
    execlp ("mkfs.ext4", "mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0", "-N", inodes, "-L", "nex-root", "-E",
            "root_owner=0:0", "-d", stage, image, (char *)NULL);
  else
    execlp ("mkfs.ext4", "mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", "nex-root", "-E", "root_owner=0:0", "-d",
            stage, image, (char *)NULL);
  dprintf (2, "cannot run mkfs.ext4: %s", strerror (errno));
  _exit (127);
}

/* Reads what the tool says on FD, to its end, into MSG (CAP bytes; NUL-terminated, trailing blanks cut). */
static void
mkfs_read_output (int fd, char *msg, size_t cap)
{
  size_t len = 0;
  for (;;)
    {
      char buf[1024];
      ssize_t n = read (fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      size_t take = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
      memcpy (msg + len, buf, take);
      len += take;
    }
  msg[len] = '\0';
  while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
    msg[--len] = '\0';
}

/* Runs mkfs.ext4 as J says.  The tool's output becomes the message of a failure. */
static int
run_mkfs (const mkfs_job_t *j, nex_error_t *err)
{
  cleanup_pipe int out[2] = { -1, -1 };
  cleanup_pipe int ready[2] = { -1, -1 };
  cleanup_pipe int go[2] = { -1, -1 };
  if (pipe2 (out, O_CLOEXEC) < 0 || pipe2 (ready, O_CLOEXEC) < 0 || pipe2 (go, O_CLOEXEC) < 0)
    return nex_error_sys (err, errno, "pipe");
  pid_t pid = fork ();
  if (pid < 0)
    return nex_error_sys (err, errno, "fork");
  if (pid == 0)
    mkfs_exec (j, out[1], ready[1], go[0]);
  close (NEX_STEAL_FD (out[1])); /* the child's copy is the only writer left: its end is our EOF */
  close (NEX_STEAL_FD (ready[1]));
  char b;
  int mapped = 0;
  if (j->id_base && read (ready[0], &b, 1) == 1 && (mapped = mkfs_map_ids (pid, j->id_base, err)) == 0)
    (void)!write (go[1], "g", 1);
  close (NEX_STEAL_FD (go[1])); /* a child still waiting sees EOF and gives up */
  char msg[MKFS_OUTPUT_MAX];
  mkfs_read_output (out[0], msg, sizeof msg);
  int status;
  while (waitpid (pid, &status, 0) < 0)
    if (errno != EINTR)
      return nex_error_sys (err, errno, "waitpid mkfs.ext4");
  if (mapped < 0)
    return -1;
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "mkfs.ext4 failed (status %d)%s%s",
                          WIFEXITED (status) ? WEXITSTATUS (status) : 128 + WTERMSIG (status), msg[0] ? ": " : "", msg);
  return 0;
}

static int
write_ext4 (const char *image, const nex_rootfs_spec_t *spec, nex_error_t *err)
{
  cleanup_with (module_list_release) module_list_t mods = { 0 };
  if (module_list_load (spec, &mods, err) < 0)
    return -1;
  cleanup_free char *stage = nex_xasprintf ("%s.stage-XXXXXX", image);
  if (mkdtemp (stage) == NULL)
    return nex_error_sys (err, errno, "mkdtemp `%s`", stage);
  off_t size = 0;
  int r = stage_tree (stage, spec, &mods, &size, err);
  if (r == 0)
    {
      /* Room for the files, their metadata and the slack, in whole MiB. */
      off_t bytes = ((size + size / 8 + EXT4_SLACK_BYTES + (1 << 20) - 1) >> 20) << 20;
      cleanup_close int fd = open (image, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || ftruncate (fd, bytes) < 0)
        r = nex_error_sys (err, errno, "create `%s`", image);
      else
        {
          mkfs_job_t j = { .stage = stage, .image = image, .image_fd = -1, .stage_fd = -1 };
          r = run_mkfs (&j, err);
        }
    }
  unstage (stage, &mods);
  return r;
}

/* --- an image's tree as an ext4 disk --------------------------------------------------------------------------- */

/* What a tree needs on an ext4 file system (tree_measure). */
static __thread off_t measure_bytes;
static __thread unsigned long measure_entries;

static int
measure_one (const char *path, const struct stat *st, int flag, struct FTW *f)
{
  measure_entries++;
  if (S_ISREG (st->st_mode) || S_ISDIR (st->st_mode) || S_ISLNK (st->st_mode))
    measure_bytes += (st->st_size + 4095) & ~(off_t)4095; /* whole blocks */
  return 0;
}

/* The size of an ext4 image for TREE, in whole MiB, and the inodes it needs, or -1.  nftw does not follow
 * symlinks (FTW_PHYS) nor leave the tree's file system (FTW_MOUNT). */
static int
tree_measure (const char *tree, off_t *bytes, unsigned long *inodes, nex_error_t *err)
{
  measure_bytes = 0;
  measure_entries = 0;
  if (nftw (tree, measure_one, 32, FTW_PHYS | FTW_MOUNT) < 0)
    return nex_error_sys (err, errno, "measure the tree `%s`", tree);
  /* Inode tables (256 bytes each), block groups' metadata, directories' index blocks: a quarter on top and the
   * slack; the file is sparse, so room that stays unused costs no disk. */
  *inodes = measure_entries + measure_entries / 4 + 1024;
  off_t need = measure_bytes + measure_bytes / 4 + (off_t)*inodes * 256 + 4 * (off_t)EXT4_SLACK_BYTES;
  *bytes = ((need + (1 << 20) - 1) >> 20) << 20;
  return 0;
}

int
nex_rootfs_tree_ext4 (const char *tree, const char *out_path, uid_t id_base, nex_error_t *err)
{
  off_t bytes = 0;
  unsigned long inodes = 0;
  if (tree_measure (tree, &bytes, &inodes, err) < 0)
    return -1;
  cleanup_free char *tmp = nex_xasprintf ("%s.tmp-XXXXXX", out_path);
  cleanup_close int fd = mkostemp (tmp, O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "create a temporary file beside `%s`", out_path);
  /* The tool runs as id_base (root of its user namespace): the file is its to write while it is built. */
  int r = 0;
  if (ftruncate (fd, bytes) < 0 || (id_base && fchown (fd, id_base, id_base) < 0))
    r = nex_error_sys (err, errno, "create `%s`", tmp);
  cleanup_close int tree_fd = open (tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r == 0 && tree_fd < 0)
    r = nex_error_sys (err, errno, "open the tree `%s`", tree);
  mkfs_job_t j
      = { .stage = tree, .image = tmp, .image_fd = fd, .stage_fd = tree_fd, .id_base = id_base, .inodes = inodes };
  if (r == 0)
    r = run_mkfs (&j, err);
  if (r == 0 && (fchown (fd, 0, 0) < 0 || fsync (fd) < 0 || fchmod (fd, 0444) < 0))
    r = nex_error_sys (err, errno, "finish `%s`", tmp);
  if (r == 0 && rename (tmp, out_path) < 0)
    r = nex_error_sys (err, errno, "rename `%s` to `%s`", tmp, out_path);
  if (r < 0)
    {
      unlink (tmp);
      return nex_error_wrap (err, "building the ext4 disk `%s` of the tree `%s`", out_path, tree);
    }
  return 0;
}

/* --- publishing ----------------------------------------------------------------------------------------------- */

int
nex_rootfs_write (nex_rootfs_kind_t kind, const nex_rootfs_spec_t *spec, const char *out_path, nex_error_t *err)
{
  cleanup_free char *tmp = nex_xasprintf ("%s.tmp-XXXXXX", out_path);
  cleanup_close int fd = mkostemp (tmp, O_CLOEXEC);
  if (fd < 0)
    return nex_error_sys (err, errno, "create a temporary file beside `%s`", out_path);
  int r = kind == NEX_ROOTFS_EXT4 ? write_ext4 (tmp, spec, err) : write_initramfs (fd, spec, err);
  if (r == 0 && (fsync (fd) < 0 || fchmod (fd, 0444) < 0))
    r = nex_error_sys (err, errno, "finish `%s`", tmp);
  if (r == 0 && rename (tmp, out_path) < 0)
    r = nex_error_sys (err, errno, "rename `%s` to `%s`", tmp, out_path);
  if (r < 0)
    {
      unlink (tmp);
      return nex_error_wrap (err, "building %s image `%s`", kind == NEX_ROOTFS_EXT4 ? "ext4" : "initramfs", out_path);
    }
  return 0;
}

char *
nex_rootfs_image (const char *cache_dir, nex_rootfs_kind_t kind, const nex_rootfs_spec_t *spec, nex_error_t *err)
{
  char key[65];
  if (nex_mkdir_p (cache_dir, 0700, err) < 0 || nex_rootfs_key (kind, spec, key, err) < 0)
    return NULL;
  cleanup_free char *path = nex_xasprintf ("%s/%s.%s", cache_dir, key, kind == NEX_ROOTFS_EXT4 ? "ext4" : "cpio");
  if (access (path, R_OK) == 0)
    return NEX_STEAL_PTR (path);
  if (nex_rootfs_write (kind, spec, path, err) < 0)
    return NULL;
  /* An input replaced while it was copied would leave bytes under a name they do not match. */
  char again[65];
  if (nex_rootfs_key (kind, spec, again, err) < 0 || strcmp (key, again) != 0)
    {
      unlink (path);
      if (*err == NULL)
        nex_error_set (err, NEX_ERR_CONFLICT, "the inputs of image `%s` changed while it was built", path);
      return NULL;
    }
  return NEX_STEAL_PTR (path);
}
