/* SPDX-License-Identifier: Apache-2.0 */
/* test-elf.c — unit tests for the static-ELF check (server/artifacts/elf.c); artifact URLs and the cache are
 * test-artifact.c's.
 *
 * ELF images are built in memory (elf-image.h), then taken apart: every truncation, out-of-bounds offsets and
 * counts, and a few thousand seeded random mutations, each checked from an exactly-sized heap copy so that
 * AddressSanitizer catches any read past the end.  Real files follow (/bin/sh, busybox when installed, a FIFO,
 * the constructed image on disk, whole and cut). */
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/artifacts/elf.h"
#include "tests/unit/elf-image.h"
#include "tests/unit/tap.h"
#include "tests/unit/testutil.h"

/* --- taking images apart -------------------------------------------------------------------------------------- */

static Elf64_Ehdr *
ehdr_of (image_t *im)
{
  return (Elf64_Ehdr *)im->bytes;
}

static Elf64_Phdr *
phdr_of (image_t *im, size_t i)
{
  return (Elf64_Phdr *)(im->bytes + sizeof (Elf64_Ehdr) + i * sizeof (Elf64_Phdr));
}

/* Checks LEN bytes of BYTES from an exactly-sized heap copy, so that any read past the end is an ASan error. */
static int
check_exact (const unsigned char *bytes, size_t len, nex_error_t *err)
{
  unsigned char *copy = nex_xmalloc (len ? len : 1);
  memcpy (copy, bytes, len);
  int r = nex_elf_check_static (copy, len, err);
  free (copy);
  return r;
}

/* --- in-memory images ----------------------------------------------------------------------------------------- */

static void
test_images (void)
{
  nex_error_t err = NULL;
  image_t im = static_exec ();
  expect_accept (check_exact (im.bytes, im.len, &err), &err, "static ET_EXEC");

  im = make_image ((image_opts_t){ .type = ET_DYN, .machine = HOST_EM });
  expect_accept (check_exact (im.bytes, im.len, &err), &err, "static-pie ET_DYN");

  im = make_image ((image_opts_t){ .type = ET_EXEC, .machine = HOST_EM, .interp = 1 });
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact",
                  "dynamically linked (interpreter `" INTERP "`): Nex runs statically linked executables", "PT_INTERP");

  im = make_image ((image_opts_t){ .type = ET_DYN, .machine = HOST_EM, .interp = 1 });
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "dynamically linked", "PIE with PT_INTERP");

  im = make_image ((image_opts_t){ .type = ET_EXEC, .machine = OTHER_EM });
  char want[128];
  snprintf (want, sizeof want, "built for %s but this node is %s", OTHER_NAME, nex_elf_host_machine ());
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", want, "wrong machine");

  im = make_image ((image_opts_t){ .type = ET_EXEC, .machine = 0x1234 });
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "built for machine 4660", "unknown machine");

  im = static_exec ();
  im.bytes[EI_CLASS] = ELFCLASS32;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "32-bit ELF is not supported", "32-bit");

  im = static_exec ();
  im.bytes[EI_DATA] = ELFDATA2MSB;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "big-endian", "big-endian");

  im = make_image ((image_opts_t){ .type = ET_REL, .machine = HOST_EM });
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "not an executable (ELF type 1)",
                  "relocatable object");
  im = make_image ((image_opts_t){ .type = ET_CORE, .machine = HOST_EM });
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "not an executable (ELF type 4)",
                  "core file");

  static const char script[] = "#!/bin/sh\necho hello\n";
  expect_refusal (check_exact ((const unsigned char *)script, strlen (script), &err), &err, "artifact",
                  "not an ELF file", "shell script");
  expect_refusal (nex_elf_check_static (NULL, 0, &err), &err, "artifact", "not an ELF file", "NULL buffer");

  /* Every proper prefix is refused (the PT_LOAD covers the whole image, so even a prefix holding all the
   * headers is a truncated file), and the reads stay inside the prefix. */
  im = static_exec ();
  int all = 1;
  for (size_t len = 0; len < im.len; len++)
    {
      int r = check_exact (im.bytes, len, &err);
      if (r == 0 || err == NULL || err->kind != NEX_ERR_INVALID)
        {
          printf ("# prefix of %zu bytes: r=%d %s\n", len, r, err ? err->msg : "(no error)");
          all = 0;
        }
      nex_error_free (&err);
    }
  TAP_OK (all, "every truncation of %zu bytes (0..%zu) refused", im.len, im.len - 1);
  expect_accept (check_exact (im.bytes, im.len, &err), &err, "untruncated image");
  expect_refusal (check_exact (im.bytes, im.len - 1, &err), &err, "artifact", "is it truncated?", "one byte short");
  expect_refusal (check_exact (im.bytes, 40, &err), &err, "artifact", "truncated header", "cut inside the header");
  im = make_image ((image_opts_t){ .type = ET_EXEC, .machine = HOST_EM, .interp = 1 });
  all = 1;
  for (size_t len = 0; len < im.len; len++)
    {
      if (check_exact (im.bytes, len, &err) == 0)
        all = 0;
      nex_error_free (&err);
    }
  TAP_OK (all, "every truncation of the dynamic image refused");

  im = static_exec ();
  ehdr_of (&im)->e_phoff = im.len - 10;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "program header table", "e_phoff near end");
  im = static_exec ();
  ehdr_of (&im)->e_phoff = UINT64_MAX - 8;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "program header table",
                  "e_phoff that overflows");
  im = static_exec ();
  ehdr_of (&im)->e_phnum = 9;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "runs past the end", "e_phnum past end");
  im = static_exec ();
  ehdr_of (&im)->e_phnum = 0xffff;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "65535 program headers",
                  "huge e_phnum (PN_XNUM)");
  im = static_exec ();
  ehdr_of (&im)->e_phnum = 0;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "no program headers", "zero e_phnum");
  im = static_exec ();
  ehdr_of (&im)->e_phentsize = 32;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "program header entries of 32 bytes",
                  "short e_phentsize");
  im = static_exec ();
  phdr_of (&im, 0)->p_type = PT_NOTE;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "no loadable segment", "no PT_LOAD");
  im = static_exec ();
  phdr_of (&im, 0)->p_offset = 16;
  phdr_of (&im, 0)->p_filesz = UINT64_MAX - 8;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "segment 0", "PT_LOAD size that overflows");

  im = make_image ((image_opts_t){ .type = ET_EXEC, .machine = HOST_EM, .interp = 1 });
  phdr_of (&im, 0)->p_offset = 100000;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "interpreter path",
                  "PT_INTERP offset beyond");
  im = make_image ((image_opts_t){ .type = ET_EXEC, .machine = HOST_EM, .interp = 1 });
  phdr_of (&im, 0)->p_filesz = UINT64_MAX;
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "interpreter path",
                  "PT_INTERP size overflows");

  /* The interpreter string is hostile: non-printables are masked, no NUL terminator stays within bounds, and a
   * long one is cut. */
  im = make_image ((image_opts_t){ .type = ET_EXEC, .machine = HOST_EM, .interp = 1 });
  size_t ioff = phdr_of (&im, 0)->p_offset;
  memcpy (im.bytes + ioff, "/x\033[2J\n`y", 9);
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "(interpreter `/x?[2J??y", "escapes masked");
  im = make_image ((image_opts_t){ .type = ET_EXEC, .machine = HOST_EM, .interp = 1 });
  phdr_of (&im, 0)->p_filesz = im.len - ioff; /* no NUL inside: runs into the 0xcc filler to the end */
  memset (im.bytes + ioff, 'a', im.len - ioff);
  expect_refusal (check_exact (im.bytes, im.len, &err), &err, "artifact", "aaa...`)", "long interpreter cut");
}

/* --- random mutations ----------------------------------------------------------------------------------------- */

static void
mutate (image_t *im)
{
  static const uint64_t edges[]
      = { 0, 1, 55, 56, 64, 0xff, 0xffff, 0x7fffffff, 0xffffffff, UINT64_MAX - 55, UINT64_MAX };
  int n = 1 + (int)(test_rng () % 6);
  for (int k = 0; k < n; k++)
    {
      uint64_t pick = test_rng () % 4;
      size_t at = (size_t)(test_rng () % im->len);
      if (pick == 0)
        im->bytes[at] = (unsigned char)test_rng ();
      else if (pick == 1)
        im->bytes[at] ^= (unsigned char)(1u << (test_rng () % 8));
      else
        {
          /* A header-sized field set to an edge value or to something near the image size. */
          uint64_t v = pick == 2 ? edges[test_rng () % (sizeof edges / sizeof edges[0])] : im->len - test_rng () % 80;
          size_t width = (size_t)1 << (1 + test_rng () % 3);
          at = (size_t)(test_rng () % (sizeof (Elf64_Ehdr) + 3 * sizeof (Elf64_Phdr)));
          at &= ~(width - 1);
          if (at + width <= im->len)
            memcpy (im->bytes + at, &v, width);
        }
    }
  if (test_rng () % 8 == 0)
    im->len = (size_t)(test_rng () % (im->len + 1));
}

static void
test_mutations (const char *dir)
{
  int consistent = 1, same = 1, accepted = 0;
  const int rounds = 5000;
  cleanup_free char *path = nex_xasprintf ("%s/mutant", dir);
  for (int i = 0; i < rounds; i++)
    {
      image_t im = make_image ((image_opts_t){ .type = i % 3 ? ET_EXEC : ET_DYN, .machine = HOST_EM, .interp = i % 2 });
      mutate (&im);
      nex_error_t err = NULL;
      int r = check_exact (im.bytes, im.len, &err);
      if (r == 0)
        accepted++;
      if (!((r == 0 && err == NULL)
            || (r < 0 && err != NULL && err->kind == NEX_ERR_INVALID && strcmp (err->field, "artifact") == 0)))
        {
          printf ("# round %d: r=%d, %s\n", i, r, err ? err->msg : "no error");
          consistent = 0;
        }
      /* Every tenth mutant also goes through the file reader, which must reach the same verdict. */
      if (i % 10 == 0)
        {
          nex_error_t ferr = NULL;
          if (test_write (path, im.bytes, im.len, 0600) < 0)
            same = 0;
          else
            {
              int fr = nex_elf_check_file (path, &ferr);
              if (fr != r)
                {
                  printf ("# round %d: buffer says %d, file says %d (%s)\n", i, r, fr, ferr ? ferr->msg : "");
                  same = 0;
                }
            }
          nex_error_free (&ferr);
        }
      nex_error_free (&err);
    }
  TAP_OK (consistent, "%d seeded mutations: no crash, every verdict well-formed (%d accepted)", rounds, accepted);
  TAP_OK (same, "file reader agrees with buffer reader on %d mutants", rounds / 10);
}

/* --- real files ----------------------------------------------------------------------------------------------- */

static void
test_files (const char *dir)
{
  nex_error_t err = NULL;
  expect_refusal (nex_elf_check_file ("/bin/sh", &err), &err, "artifact", "dynamically linked (interpreter `/lib",
                  "/bin/sh");
  if (test_have_static_busybox ())
    expect_accept (nex_elf_check_file ("/bin/busybox", &err), &err, "/bin/busybox (static)");
  else
    TAP_SKIP ("no static /bin/busybox (install busybox-static)");

  expect_refusal (nex_elf_check_file ("/etc/passwd", &err), &err, "artifact", "`/etc/passwd`: not an ELF file",
                  "/etc/passwd");
  expect_refusal (nex_elf_check_file ("/nonexistent/prog", &err), &err, "artifact",
                  "cannot read `/nonexistent/prog`: No such file", "missing file");
  expect_refusal (nex_elf_check_file (dir, &err), &err, "artifact", "is not a regular file (it is a directory)",
                  "directory");
  expect_refusal (nex_elf_check_file ("/dev/null", &err), &err, "artifact", "a character device", "/dev/null");
  cleanup_free char *fifo = nex_xasprintf ("%s/fifo", dir);
  if (mkfifo (fifo, 0600) == 0)
    expect_refusal (nex_elf_check_file (fifo, &err), &err, "artifact", "(it is a FIFO)", "FIFO, without blocking");
  else
    TAP_SKIP ("mkfifo: %s", strerror (errno));

  image_t im = static_exec ();
  cleanup_free char *good = nex_xasprintf ("%s/static-image", dir);
  cleanup_free char *cut = nex_xasprintf ("%s/cut-image", dir);
  if (test_write (good, im.bytes, im.len, 0755) == 0 && test_write (cut, im.bytes, im.len - 5, 0755) == 0)
    {
      expect_accept (nex_elf_check_file (good, &err), &err, "constructed static image on disk");
      expect_refusal (nex_elf_check_file (cut, &err), &err, "artifact", "is it truncated?", "truncated file on disk");
    }
}

int
main (void)
{
  const char *dir = test_dir ();
  printf ("# host machine: %s\n", nex_elf_host_machine ());
  test_images ();
  test_mutations (dir);
  test_files (dir);
  return tap_done ();
}
