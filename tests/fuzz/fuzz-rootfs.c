/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-rootfs.c — feeds hostile bytes to the VM image tooling (rootfs/): the bzImage reader and its LZ4 decoder
 * (rootfs/vmlinux.c), which read a kernel file an operator points --vm-kernel-dir at, and the initramfs writer
 * (rootfs/cpio.c), whose entry names and contents come from the workload and the module directory.  The first
 * input byte picks what the rest is:
 *
 *   0  a bzImage, through nex_vmlinux_extract;
 *   1  one LZ4 block, through nex_lz4_block_decode into a buffer whose size the next two bytes give;
 *   2  initramfs entries "name\0content\0..." written with nex_cpio_data / nex_cpio_dir / nex_cpio_symlink into a
 *      memfd, the archive then read back as the kernel would (newc headers, 4-byte alignment, the trailer last).
 *
 * The ext4 image is made by mkfs.ext4 -d from a staging directory (a separate program), so it has no parser here.
 * Invariants: refusals are NEX_ERR_INVALID; an extracted kernel starts with an ELF header and is within
 * NEX_VMLINUX_MAX_BYTES; a block never decodes past its buffer; the archive holds every entry, in order, named
 * as given, with its content. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "rootfs/cpio.h"
#include "rootfs/vmlinux.h"
#include "tests/fuzz/fuzz.h"

static void
fuzz_bzimage (const uint8_t *data, size_t size)
{
  size_t len = 0;
  cleanup_error nex_error_t err = NULL;
  cleanup_free uint8_t *elf = nex_vmlinux_extract (data, size, &len, &err);
  if (elf == NULL)
    fuzz_check (err && err->kind == NEX_ERR_INVALID, "a refused bzImage is NEX_ERR_INVALID");
  else
    fuzz_check (len >= 4 && len <= NEX_VMLINUX_MAX_BYTES
                    && memcmp (elf,
                               "\x7f"
                               "ELF",
                               4)
                           == 0,
                "an extracted kernel is an ELF file within the bound");
}

static void
fuzz_lz4 (const uint8_t *data, size_t size)
{
  if (size < 2)
    return;
  size_t cap = (size_t)data[0] << 8 | data[1];
  /* Exactly CAP bytes, so that ASan sees a write past the end. */
  cleanup_free uint8_t *dst = nex_xmalloc (cap ? cap : 1);
  long n = nex_lz4_block_decode (data + 2, size - 2, dst, cap);
  fuzz_check (n >= -1 && n <= (long)cap, "a block decodes within its buffer");
}

/* The number in the LEN hex digits at P. */
static unsigned long
fuzz_hex (const char *p)
{
  char buf[9];
  memcpy (buf, p, 8);
  buf[8] = '\0';
  return strtoul (buf, NULL, 16);
}

/* Reads the newc archive of LEN bytes at A back: the NAMES[i] entries with their CONTENTS, then the trailer. */
static void
fuzz_cpio_check (const char *a, size_t len, char **names, const char **contents, size_t *sizes, size_t n)
{
  size_t at = 0;
  for (size_t i = 0; i <= n; i++)
    {
      fuzz_check (len - at >= 110 && memcmp (a + at, "070701", 6) == 0, "each entry starts with a newc header");
      unsigned long filesize = fuzz_hex (a + at + 54), namesize = fuzz_hex (a + at + 94);
      const char *want = i < n ? names[i] : "TRAILER!!!";
      fuzz_check (namesize == strlen (want) + 1 && len - at - 110 >= namesize
                      && memcmp (a + at + 110, want, namesize) == 0,
                  "each entry is named as given");
      at += (110 + namesize + 3) & ~(size_t)3;
      fuzz_check (len - at >= filesize, "each entry's content lies inside the archive");
      if (i < n && sizes[i] != (size_t)-1)
        fuzz_check (filesize == sizes[i] && memcmp (a + at, contents[i], filesize) == 0, "each file holds its content");
      at += (filesize + 3) & ~(size_t)3;
    }
  fuzz_check (at <= len && len % 4 == 0, "the archive ends after its trailer, aligned");
}

static void
fuzz_cpio (const uint8_t *data, size_t size)
{
  enum
  {
    MAX_ENTRIES = 16
  };
  char *names[MAX_ENTRIES];
  const char *contents[MAX_ENTRIES];
  size_t sizes[MAX_ENTRIES];
  size_t n = 0;
  cleanup_close int fd = memfd_create ("fuzz-cpio", MFD_CLOEXEC);
  fuzz_check (fd >= 0, "memfd_create works");
  nex_cpio_t c;
  nex_cpio_init (&c, fd);
  const char *p = (const char *)data, *end = p + size;
  int ok = 1;
  while (ok && n < MAX_ENTRIES && p < end)
    {
      const char *name_end = memchr (p, '\0', (size_t)(end - p));
      if (name_end == NULL || name_end + 1 >= end)
        break;
      const char *content = name_end + 1;
      const char *content_end = memchr (content, '\0', (size_t)(end - content));
      size_t clen = content_end ? (size_t)(content_end - content) : (size_t)(end - content);
      cleanup_error nex_error_t err = NULL;
      names[n] = nex_xstrndup (p, (size_t)(name_end - p));
      contents[n] = content;
      switch (content[0] % 3)
        {
        case 0:
          sizes[n] = clen;
          ok = nex_cpio_data (&c, names[n], 0644, content, clen, &err) == 0;
          break;
        case 1:
          sizes[n] = 0;
          ok = nex_cpio_dir (&c, names[n], 0755, &err) == 0;
          break;
        default:
          {
            cleanup_free char *target = nex_xstrndup (content, clen);
            sizes[n] = (size_t)-1; /* the link's target, as the header says */
            ok = nex_cpio_symlink (&c, names[n], target, &err) == 0;
          }
        }
      if (!ok)
        {
          fuzz_check (err && err->kind == NEX_ERR_INVALID, "a refused entry is NEX_ERR_INVALID");
          free (names[n]);
        }
      n += ok;
      p = content_end ? content_end + 1 : end;
    }
  if (ok)
    {
      fuzz_check (nex_cpio_finish (&c, NULL) == 0, "the trailer is written");
      off_t len = lseek (fd, 0, SEEK_END);
      cleanup_free char *a = nex_xmalloc ((size_t)len + 1);
      fuzz_check (pread (fd, a, (size_t)len, 0) == len, "the archive reads back");
      fuzz_cpio_check (a, (size_t)len, names, contents, sizes, n);
    }
  for (size_t i = 0; i < n; i++)
    free (names[i]);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  switch (data[0] % 3)
    {
    case 0:
      fuzz_bzimage (data + 1, size - 1);
      break;
    case 1:
      fuzz_lz4 (data + 1, size - 1);
      break;
    default:
      fuzz_cpio (data + 1, size - 1);
    }
  return 0;
}
