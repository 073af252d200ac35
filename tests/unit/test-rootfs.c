/* SPDX-License-Identifier: Apache-2.0 */
/* test-rootfs.c — unit tests of the VM image tooling: the LZ4 decoder and bzImage extraction on hand-made
 * inputs (and on the real kernel when scripts/setup fetched one), the initramfs read back entry by entry, the
 * content-addressed cache, and the ext4 image read back with debugfs.  Runs from the top of the build dir. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "rootfs/rootfs.h"
#include "rootfs/vmlinux.h"
#include "tests/unit/tap.h"
#include "tests/unit/testutil.h"

static void
test_lz4 (void)
{
  /* "abc", then a match of 9 at offset 3 (overlapping: repeats the pattern), then the literal "!" */
  static const uint8_t block[] = { 0x35, 'a', 'b', 'c', 3, 0, 0x10, '!' };
  uint8_t out[64];
  long n = nex_lz4_block_decode (block, sizeof block, out, sizeof out);
  TAP_OK (n == 13 && memcmp (out, "abcabcabcabc!", 13) == 0, "lz4: literals and an overlapping match decode");
  TAP_OK (nex_lz4_block_decode (block, sizeof block, out, 12) < 0, "lz4: output that would not fit is refused");

  static const uint8_t zero_offset[] = { 0x10, 'a', 0, 0, 0x10, 'b' };
  TAP_OK (nex_lz4_block_decode (zero_offset, sizeof zero_offset, out, sizeof out) < 0, "lz4: offset 0 is refused");
  static const uint8_t far_offset[] = { 0x10, 'a', 5, 0, 0x10, 'b' };
  TAP_OK (nex_lz4_block_decode (far_offset, sizeof far_offset, out, sizeof out) < 0,
          "lz4: an offset before the start of the output is refused");
  static const uint8_t long_literal[] = { 0xf0, 200 };
  TAP_OK (nex_lz4_block_decode (long_literal, sizeof long_literal, out, sizeof out) < 0,
          "lz4: literals running past the input are refused");
}

/* A minimal bzImage: one setup sector after the boot sector, the payload right after. */
static uint8_t *
fake_bzimage (const uint8_t *payload, size_t plen, size_t *len)
{
  *len = 1024 + plen;
  uint8_t *bz = nex_xzalloc (*len);
  bz[0x1f1] = 1;
  memcpy (bz + 0x202, "HdrS", 4);
  bz[0x206] = 0x0f;
  bz[0x207] = 0x02;
  bz[0x24c] = (uint8_t)plen;
  bz[0x24d] = (uint8_t)(plen >> 8);
  memcpy (bz + 1024, payload, plen);
  return bz;
}

static void
test_bzimage (void)
{
  /* LZ4 legacy frame: magic, block size 9, a block giving "\x7fELFA" and a match of 7 at offset 1 (12 bytes),
   * then the uncompressed size the kernel's build appends. */
  static const uint8_t lz4[]
      = { 0x02, 0x21, 0x4c, 0x18, 9, 0, 0, 0, 0x53, 0x7f, 'E', 'L', 'F', 'A', 1, 0, 0, 12, 0, 0, 0 };
  size_t len, out_len = 0;
  cleanup_free uint8_t *bz = fake_bzimage (lz4, sizeof lz4, &len);
  cleanup_error nex_error_t err = NULL;
  cleanup_free uint8_t *elf = nex_vmlinux_extract (bz, len, &out_len, &err);
  TAP_OK (elf && out_len == 12
              && memcmp (elf,
                         "\x7f"
                         "ELFAAAAAAAA",
                         12)
                     == 0,
          "vmlinux: an LZ4 payload is decompressed (%s)", err ? err->msg : "ok");

  nex_error_free (&err);
  static const uint8_t xz[] = { 0xfd, '7', 'z', 'X', 'Z', 0, 1, 2, 3, 4 };
  cleanup_free uint8_t *bz2 = fake_bzimage (xz, sizeof xz, &len);
  uint8_t *none = nex_vmlinux_extract (bz2, len, &out_len, &err);
  TAP_OK (none == NULL && err && strstr (err->msg, "xz"), "vmlinux: an xz payload is refused by name (%s)",
          err ? err->msg : "no error");
  free (none);

  nex_error_free (&err);
  bz2[0x202] = 'X';
  none = nex_vmlinux_extract (bz2, len, &out_len, &err);
  TAP_OK (none == NULL && err && strstr (err->msg, "bzImage"), "vmlinux: a file without a setup header is refused");
  free (none);

  nex_error_free (&err);
  bz2[0x202] = 'H';
  bz2[0x24d] = 0x7f; /* payload length far beyond the file */
  none = nex_vmlinux_extract (bz2, len, &out_len, &err);
  TAP_OK (none == NULL && err && strstr (err->msg, "outside"), "vmlinux: a payload outside the file is refused");
  free (none);

  /* The real kernel, when scripts/setup fetched it into the build dir. */
  nex_error_free (&err);
  size_t klen = 0;
  cleanup_free char *k = nex_file_read ("kernel/vmlinuz", 256u << 20, &klen, NULL);
  if (k == NULL)
    {
      TAP_SKIP ("vmlinux: the real kernel: kernel/vmlinuz is not in the build dir");
      return;
    }
  cleanup_free uint8_t *real = nex_vmlinux_extract ((uint8_t *)k, klen, &out_len, &err);
  /* e_machine 62 (x86-64) at offset 18 */
  TAP_OK (real && out_len > (1u << 20) && real[4] == 2 && real[18] == 62,
          "vmlinux: the real kernel decompresses to an x86-64 ELF of %zu bytes (%s)", out_len, err ? err->msg : "ok");
}

/* --- a newc reader, to look at what the writer made ---------------------------------------------------------- */

typedef struct entry
{
  char name[256];
  unsigned mode, rmajor, rminor;
  size_t size;
  const uint8_t *data;
} entry_t;

static unsigned
hex8 (const uint8_t *p)
{
  char tmp[9];
  memcpy (tmp, p, 8);
  tmp[8] = '\0';
  return (unsigned)strtoul (tmp, NULL, 16);
}

/* Parses the archive in BUF; returns the number of entries before the trailer, or -1 if malformed. */
static int
read_newc (const uint8_t *buf, size_t len, entry_t *out, int max)
{
  size_t at = 0;
  int n = 0;
  while (at + 110 <= len && n < max)
    {
      const uint8_t *h = buf + at;
      if (memcmp (h, "070701", 6) != 0)
        return -1;
      entry_t *e = &out[n];
      e->mode = hex8 (h + 14);
      e->size = hex8 (h + 54);
      e->rmajor = hex8 (h + 78);
      e->rminor = hex8 (h + 86);
      size_t namesize = hex8 (h + 94);
      if (namesize == 0 || namesize > sizeof e->name || at + 110 + namesize > len)
        return -1;
      memcpy (e->name, h + 110, namesize);
      at = (at + 110 + namesize + 3) & ~(size_t)3;
      e->data = buf + at;
      at = (at + e->size + 3) & ~(size_t)3;
      if (at > len + 3)
        return -1;
      if (strcmp (e->name, "TRAILER!!!") == 0)
        return n;
      n++;
    }
  return -1;
}

static const entry_t *
find (const entry_t *es, int n, const char *name)
{
  for (int i = 0; i < n; i++)
    if (strcmp (es[i].name, name) == 0)
      return &es[i];
  return NULL;
}

static void
test_initramfs (const char *dir)
{
  cleanup_free char *agent = nex_xasprintf ("%s/agent", dir);
  cleanup_free char *workload = nex_xasprintf ("%s/workload", dir);
  cleanup_free char *mods = nex_xasprintf ("%s/modules", dir);
  cleanup_free char *m1 = nex_xasprintf ("%s/20-b.ko", mods);
  cleanup_free char *m2 = nex_xasprintf ("%s/10-a.ko", mods);
  cleanup_free char *other = nex_xasprintf ("%s/README", mods);
  cleanup_free char *out = nex_xasprintf ("%s/image.cpio", dir);
  test_write_text (agent, "AGENT-BYTES", 0755);
  test_write_text (workload, "WORKLOAD", 0755);
  mkdir (mods, 0755);
  test_write_text (m1, "module b", 0755);
  test_write_text (m2, "module a", 0755);
  test_write_text (other, "not a module", 0755);

  nex_rootfs_spec_t spec = { .workload_path = workload, .agent_path = agent, .modules_dir = mods };
  cleanup_error nex_error_t err = NULL;
  TAP_OK (nex_rootfs_write (NEX_ROOTFS_INITRAMFS, &spec, out, &err) == 0, "initramfs: written (%s)",
          err ? err->msg : "ok");
  size_t len = 0;
  cleanup_free char *buf = nex_file_read (out, 1 << 20, &len, NULL);
  entry_t es[32];
  int n = buf ? read_newc ((uint8_t *)buf, len, es, 32) : -1;
  TAP_OK (n > 0 && len % 4 == 0, "initramfs: a well-formed newc archive of %d entries", n);
  const entry_t *init = find (es, n, "init");
  TAP_OK (init && init->mode == (S_IFREG | 0555) && init->size == 11 && memcmp (init->data, "AGENT-BYTES", 11) == 0,
          "initramfs: the agent is /init, executable");
  const entry_t *w = find (es, n, "workload");
  TAP_OK (w && w->mode == (S_IFREG | 0555) && w->size == 8 && memcmp (w->data, "WORKLOAD", 8) == 0,
          "initramfs: the workload is /workload");
  const entry_t *con = find (es, n, "dev/console");
  TAP_OK (con && S_ISCHR (con->mode) && con->rmajor == 5 && con->rminor == 1, "initramfs: /dev/console is c 5 1");
  const entry_t *tmp = find (es, n, "tmp");
  TAP_OK (tmp && tmp->mode == (S_IFDIR | 01777), "initramfs: /tmp is a sticky, world-writable directory");
  const entry_t *a = find (es, n, "nex/modules/10-a.ko");
  const entry_t *b = find (es, n, "nex/modules/20-b.ko");
  TAP_OK (a && b && a < b && find (es, n, "nex/modules/README") == NULL,
          "initramfs: only *.ko modules are included, in name order");

  /* The cache: same inputs, same file; a new agent, a new image. */
  cleanup_free char *cache = nex_xasprintf ("%s/cache", dir);
  nex_error_free (&err);
  cleanup_free char *p1 = nex_rootfs_image (cache, NEX_ROOTFS_INITRAMFS, &spec, &err);
  struct stat st1 = { 0 }, st2 = { 0 };
  stat (p1 ? p1 : "/nonexistent", &st1);
  cleanup_free char *p2 = nex_rootfs_image (cache, NEX_ROOTFS_INITRAMFS, &spec, &err);
  stat (p2 ? p2 : "/nonexistent", &st2);
  TAP_OK (p1 && p2 && strcmp (p1, p2) == 0 && st1.st_ino == st2.st_ino && (st1.st_mode & 0777) == 0444,
          "cache: the same inputs reuse the cached image (%s)", p1 ? p1 : err->msg);
  test_write_text (agent, "AGENT-BYTES-2", 0755);
  cleanup_free char *p3 = nex_rootfs_image (cache, NEX_ROOTFS_INITRAMFS, &spec, &err);
  TAP_OK (p3 && strcmp (p1 ? p1 : "", p3) != 0, "cache: a different agent gives a different image");
  char digest[65] = "0000000000000000000000000000000000000000000000000000000000000000";
  spec.workload_digest = digest;
  char k1[65], k2[65];
  nex_rootfs_key (NEX_ROOTFS_INITRAMFS, &spec, k1, NULL);
  digest[0] = '1';
  nex_rootfs_key (NEX_ROOTFS_INITRAMFS, &spec, k2, NULL);
  TAP_OK (strcmp (k1, k2) != 0, "cache: the workload's digest is part of the key");
  spec.workload_digest = NULL;

  spec.agent_path = "/nonexistent/agent";
  nex_error_free (&err);
  cleanup_free char *bad = nex_rootfs_image (cache, NEX_ROOTFS_INITRAMFS, &spec, &err);
  TAP_OK (bad == NULL && err && strstr (err->msg, "/nonexistent/agent"), "a missing agent fails naming it");
}

static void
test_ext4 (const char *dir)
{
  if (!test_have_program ("mkfs.ext4") || !test_have_program ("debugfs"))
    {
      TAP_SKIP ("ext4: image read back: mkfs.ext4 or debugfs (e2fsprogs) is missing");
      return;
    }
  cleanup_free char *agent = nex_xasprintf ("%s/agent", dir);
  cleanup_free char *workload = nex_xasprintf ("%s/workload", dir);
  cleanup_free char *out = nex_xasprintf ("%s/image.ext4", dir);
  nex_rootfs_spec_t spec = { .workload_path = workload, .agent_path = agent };
  cleanup_error nex_error_t err = NULL;
  TAP_OK (nex_rootfs_write (NEX_ROOTFS_EXT4, &spec, out, &err) == 0, "ext4: written (%s)", err ? err->msg : "ok");
  cleanup_free char *cmd = nex_xasprintf ("debugfs -R 'cat /workload' %s 2>/dev/null", out);
  FILE *p = popen (cmd, "r");
  char got[64] = "";
  size_t n = p ? fread (got, 1, sizeof got - 1, p) : 0;
  if (p)
    pclose (p);
  got[n] = '\0';
  TAP_OK (strcmp (got, "WORKLOAD") == 0, "ext4: /workload holds the workload (read back: `%s`)", got);
  cleanup_free char *leftover = nex_xasprintf ("ls -d %s/image.ext4.* 2>/dev/null | grep -q .", dir);
  TAP_OK (system (leftover) != 0, "ext4: no staging directory or temporary file is left behind");
}

/* An image workload's initramfs: the agent and the modules, no /workload, under a key of its own. */
static void
test_no_workload (const char *dir)
{
  cleanup_free char *agent = nex_xasprintf ("%s/agent", dir);
  cleanup_free char *workload = nex_xasprintf ("%s/workload", dir);
  cleanup_free char *out = nex_xasprintf ("%s/image-noworkload.cpio", dir);
  nex_rootfs_spec_t spec = { .workload_path = workload, .agent_path = agent };
  char with[65] = "", without[65] = "";
  nex_rootfs_key (NEX_ROOTFS_INITRAMFS, &spec, with, NULL);
  spec.workload_path = NULL;
  cleanup_error nex_error_t err = NULL;
  nex_rootfs_key (NEX_ROOTFS_INITRAMFS, &spec, without, &err);
  TAP_OK (without[0] && strcmp (with, without) != 0, "no workload: a key of its own");
  TAP_OK (nex_rootfs_write (NEX_ROOTFS_INITRAMFS, &spec, out, &err) == 0, "no workload: written (%s)",
          err ? err->msg : "ok");
  size_t len = 0;
  cleanup_free char *buf = nex_file_read (out, 1 << 20, &len, NULL);
  entry_t es[32];
  int n = buf ? read_newc ((uint8_t *)buf, len, es, 32) : -1;
  TAP_OK (n > 0 && find (es, n, "init") && find (es, n, "workload") == NULL, "no workload: /init and no /workload");
}

/* An image's tree as an ext4 disk: the shifted owners (host 100000 + uid) recorded as the image's own. */
static void
test_tree_ext4 (const char *dir)
{
  if (!test_have_program ("mkfs.ext4") || !test_have_program ("debugfs") || geteuid () != 0)
    {
      TAP_SKIP ("tree ext4: needs root, mkfs.ext4 and debugfs");
      return;
    }
  cleanup_free char *tree = nex_xasprintf ("%s/tree", dir);
  cleanup_free char *home = nex_xasprintf ("%s/home", tree);
  cleanup_free char *file = nex_xasprintf ("%s/home/hello", tree);
  cleanup_free char *out = nex_xasprintf ("%s/tree.ext4", dir);
  mkdir (tree, 0755);
  mkdir (home, 0750);
  test_write_text (file, "HELLO", 0600);
  int owned
      = chown (tree, 100000, 100000) == 0 && chown (home, 101000, 101000) == 0 && chown (file, 101000, 102000) == 0;
  cleanup_error nex_error_t err = NULL;
  TAP_OK (owned && nex_rootfs_tree_ext4 (tree, out, 100000, &err) == 0, "tree ext4: written (%s)",
          err ? err->msg : "ok");
  struct stat st = { 0 };
  stat (out, &st);
  TAP_OK (st.st_uid == 0 && (st.st_mode & 0777) == 0444, "tree ext4: root's, read-only (%o)", st.st_mode & 0777);
  cleanup_free char *cmd
      = nex_xasprintf ("debugfs -R 'stat /home/hello' %s 2>/dev/null | grep -c 'User:  1000   Group:  2000'; "
                       "debugfs -R 'cat /home/hello' %s 2>/dev/null",
                       out, out);
  FILE *p = popen (cmd, "r");
  char got[64] = "";
  size_t n = p ? fread (got, 1, sizeof got - 1, p) : 0;
  if (p)
    pclose (p);
  got[n] = '\0';
  TAP_OK (strcmp (got, "1\nHELLO") == 0, "tree ext4: the image's owners and bytes (read back: `%s`)", got);
  cleanup_free char *leftover = nex_xasprintf ("ls -d %s/tree.ext4.* 2>/dev/null | grep -q .", dir);
  TAP_OK (system (leftover) != 0, "tree ext4: no temporary file is left behind");
}

int
main (void)
{
  if (sodium_init () < 0)
    return 1;
  const char *dir = test_dir ();
  test_lz4 ();
  test_bzimage ();
  test_initramfs (dir);
  test_ext4 (dir);
  test_no_workload (dir);
  test_tree_ext4 (dir);
  return tap_done ();
}
