/* test-elf.c — unit tests for the static-ELF check (server/elf.c) and artifact fetching (server/artifact.c).
 *
 * ELF images are built in memory from <elf.h> structures, then taken apart: every truncation, out-of-bounds
 * offsets and counts, and a few thousand seeded random mutations, each checked from an exactly-sized heap copy
 * so that AddressSanitizer catches any read past the end.  Real files follow (/bin/sh, busybox when installed),
 * then URL syntax, prechecks and fetches into a temporary cache directory, with the digest checked against
 * sha256sum(1) when it is available. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fdio.h"
#include "common/xalloc.h"
#include "server/artifacts/artifact.h"
#include "server/artifacts/elf.h"
#include "tests/unit/tap.h"

#if defined __x86_64__
#define HOST_EM EM_X86_64
#define OTHER_EM EM_AARCH64
#define OTHER_NAME "aarch64"
#elif defined __aarch64__
#define HOST_EM EM_AARCH64
#define OTHER_EM EM_X86_64
#define OTHER_NAME "x86_64"
#else
#define HOST_EM EM_RISCV
#define OTHER_EM EM_X86_64
#define OTHER_NAME "x86_64"
#endif

#define INTERP "/lib64/ld-linux-x86-64.so.2"
#define FILLER 200 /* bytes standing in for code; more than the 128 of an interpreter path that is shown */

/* --- building images ------------------------------------------------------------------------------------------ */

typedef struct image_opts
{
  unsigned type;    /* e_type */
  unsigned machine; /* e_machine */
  int interp;       /* add a PT_INTERP naming INTERP */
} image_opts_t;

typedef struct image
{
  unsigned char bytes[512];
  size_t len;
} image_t;

/* A small, well-formed 64-bit image: header, program headers right after it (PT_LOAD covering the whole file,
 * PT_GNU_STACK, optionally PT_INTERP), then the interpreter string and some filler standing in for code. */
static image_t
make_image (image_opts_t o)
{
  image_t im;
  memset (&im, 0, sizeof im);
  size_t nph = o.interp ? 3 : 2;
  size_t interp_off = sizeof (Elf64_Ehdr) + nph * sizeof (Elf64_Phdr);
  size_t code_off = interp_off + (o.interp ? sizeof INTERP : 0);
  im.len = code_off + FILLER;

  Elf64_Ehdr eh;
  memset (&eh, 0, sizeof eh);
  memcpy (eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_ident[EI_OSABI] = ELFOSABI_SYSV;
  eh.e_type = (Elf64_Half) o.type;
  eh.e_machine = (Elf64_Half) o.machine;
  eh.e_version = EV_CURRENT;
  eh.e_entry = 0x400000 + code_off;
  eh.e_phoff = sizeof (Elf64_Ehdr);
  eh.e_ehsize = sizeof (Elf64_Ehdr);
  eh.e_phentsize = sizeof (Elf64_Phdr);
  eh.e_phnum = (Elf64_Half) nph;
  memcpy (im.bytes, &eh, sizeof eh);

  Elf64_Phdr ph[3];
  memset (ph, 0, sizeof ph);
  size_t i = 0;
  if (o.interp)
    {
      ph[i].p_type = PT_INTERP;
      ph[i].p_flags = PF_R;
      ph[i].p_offset = interp_off;
      ph[i].p_vaddr = ph[i].p_paddr = 0x400000 + interp_off;
      ph[i].p_filesz = ph[i].p_memsz = sizeof INTERP;
      ph[i].p_align = 1;
      i++;
    }
  ph[i].p_type = PT_LOAD;
  ph[i].p_flags = PF_R | PF_X;
  ph[i].p_offset = 0;
  ph[i].p_vaddr = ph[i].p_paddr = 0x400000;
  ph[i].p_filesz = ph[i].p_memsz = im.len;
  ph[i].p_align = 0x1000;
  i++;
  ph[i].p_type = PT_GNU_STACK;
  ph[i].p_flags = PF_R | PF_W;
  memcpy (im.bytes + sizeof eh, ph, nph * sizeof (Elf64_Phdr));
  if (o.interp)
    memcpy (im.bytes + interp_off, INTERP, sizeof INTERP);
  memset (im.bytes + code_off, 0xcc, FILLER);
  return im;
}

static image_t
static_exec (void)
{
  return make_image ((image_opts_t){ .type = ET_EXEC, .machine = HOST_EM });
}

static Elf64_Ehdr *
ehdr_of (image_t *im)
{
  return (Elf64_Ehdr *) im->bytes;
}

static Elf64_Phdr *
phdr_of (image_t *im, size_t i)
{
  return (Elf64_Phdr *) (im->bytes + sizeof (Elf64_Ehdr) + i * sizeof (Elf64_Phdr));
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

/* One TAP line: R failed with NEX_ERR_INVALID on FIELD and a message containing NEEDLE. */
static void
expect_refusal (int r, nex_error_t *err, const char *field, const char *needle, const char *what)
{
  int ok = r < 0 && *err != NULL && (*err)->kind == NEX_ERR_INVALID && (*err)->field != NULL
           && strcmp ((*err)->field, field) == 0 && strstr ((*err)->msg, needle) != NULL;
  TAP_OK (ok, "%s: refused (%s)", what, *err ? (*err)->msg : "accepted");
  nex_error_free (err);
}

static void
expect_accept (int r, nex_error_t *err, const char *what)
{
  TAP_OK (r == 0 && *err == NULL, "%s: accepted%s%s", what, *err ? " -- " : "", *err ? (*err)->msg : "");
  nex_error_free (err);
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
  expect_refusal (check_exact ((const unsigned char *) script, strlen (script), &err), &err, "artifact",
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

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng (void)
{
  /* xorshift64*: deterministic, so a failure reproduces. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dULL;
}

static void
mutate (image_t *im)
{
  static const uint64_t edges[]
      = { 0, 1, 55, 56, 64, 0xff, 0xffff, 0x7fffffff, 0xffffffff, UINT64_MAX - 55, UINT64_MAX };
  int n = 1 + (int) (rng () % 6);
  for (int k = 0; k < n; k++)
    {
      uint64_t pick = rng () % 4;
      size_t at = (size_t) (rng () % im->len);
      if (pick == 0)
        im->bytes[at] = (unsigned char) rng ();
      else if (pick == 1)
        im->bytes[at] ^= (unsigned char) (1u << (rng () % 8));
      else
        {
          /* A header-sized field set to an edge value or to something near the image size. */
          uint64_t v = pick == 2 ? edges[rng () % (sizeof edges / sizeof edges[0])] : im->len - rng () % 80;
          size_t width = (size_t) 1 << (1 + rng () % 3);
          at = (size_t) (rng () % (sizeof (Elf64_Ehdr) + 3 * sizeof (Elf64_Phdr)));
          at &= ~(width - 1);
          if (at + width <= im->len)
            memcpy (im->bytes + at, &v, width);
        }
    }
  if (rng () % 8 == 0)
    im->len = (size_t) (rng () % (im->len + 1));
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
          if (nex_file_write_atomic (path, im.bytes, im.len, 0600, &ferr) < 0)
            {
              printf ("# %s\n", ferr->msg);
              same = 0;
            }
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

static int
write_file (const char *path, const void *data, size_t n, int mode)
{
  nex_error_t err = NULL;
  if (nex_file_write_atomic (path, data, n, mode, &err) < 0)
    {
      printf ("# %s\n", err->msg);
      nex_error_free (&err);
      return -1;
    }
  return 0;
}

static void
test_files (const char *dir)
{
  nex_error_t err = NULL;
  expect_refusal (nex_elf_check_file ("/bin/sh", &err), &err, "artifact", "dynamically linked (interpreter `/lib",
                  "/bin/sh");
  if (access ("/bin/busybox", R_OK) == 0 && system ("file -L /bin/busybox 2>/dev/null | grep -q 'statically'") == 0)
    expect_accept (nex_elf_check_file ("/bin/busybox", &err), &err, "/bin/busybox (static)");
  else
    printf ("ok %d # SKIP no static /bin/busybox (install busybox-static)\n", ++tap_count_);

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
    printf ("ok %d # SKIP mkfifo: %s\n", ++tap_count_, strerror (errno));

  image_t im = static_exec ();
  cleanup_free char *good = nex_xasprintf ("%s/static-image", dir);
  cleanup_free char *cut = nex_xasprintf ("%s/cut-image", dir);
  if (write_file (good, im.bytes, im.len, 0755) == 0 && write_file (cut, im.bytes, im.len - 5, 0755) == 0)
    {
      expect_accept (nex_elf_check_file (good, &err), &err, "constructed static image on disk");
      expect_refusal (nex_elf_check_file (cut, &err), &err, "artifact", "is it truncated?", "truncated file on disk");
    }
}

static void test_upload (const char *dir, const unsigned char *bytes, size_t n, const char *want_digest);

/* --- URLs ----------------------------------------------------------------------------------------------------- */

static void
test_urls (void)
{
  nex_error_t err = NULL;
  static const char *good[] = { "file:///x",
                                "file://localhost/bin/sh",
                                "FILE://LOCALHOST/x",
                                "file:///tmp/my%20prog",
                                "file:///a/.hidden/b..c",
                                "file:///%41",
                                "file:///caf%C3%A9",
                                "file:///\xe2\x82\xac-raw-utf8",
                                "nats://apps/bin/hello",
                                "NATS://my_bucket-1/a/b%20c" };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    expect_accept (nex_artifact_check_url (good[i], &err), &err, good[i]);

  static const struct
  {
    const char *url, *needle;
  } bad[] = {
    { "", "must not be empty" },
    { "x/y", "must be a URL" },
    { "/bin/busybox", "must be a URL" },
    { "file://host/x", "names host `host`" },
    { "file:/x", "must have the form" },
    { "file:x", "must have the form" },
    { "file://", "has no path" },
    { "file://localhost", "has no path" },
    { "http:///prog", "http(s)" },
    { "https:prog", "http(s)" },
    { "http://[::1/prog", "http(s)" },
    { "nats://bucket", "name a bucket and a key" },
    { "nats://bad.bucket/key", "bucket names are made of" },
    { "nats://bucket/key#frag", "must not contain" },
    { "ftp://example.com/prog", "scheme `ftp` is not supported" },
    { "1file:///x", "must be a URL" },
    { "averyveryverylongscheme:///x", "is not supported" },
    { "file:///a b", "space or control character" },
    { "file:///a\tb", "space or control character" },
    { "file:///a%00b", "%00" },
    { "file:///a%0ab", "control characters" },
    { "file:///a%2", "malformed %-escape" },
    { "file:///a%ff", "must be UTF-8" },
    { "file:///a%C3", "must be UTF-8" },
    { "file:///a%C0%AF", "must be UTF-8" },
    { "file:///a%ED%A0%80", "must be UTF-8" },
    { "file:///a%zz", "malformed %-escape" },
    { "file:///a%", "malformed %-escape" },
    { "file:///a/../etc/passwd", "`..`" },
    { "file:///a/%2e%2E/etc/passwd", "`..`" },
    { "file:///a%2F..%2Fb", "`..`" },
    { "file:///a/./b", "`.`" },
    { "file:///..", "`..`" },
    { "file:///x?y", "query or fragment" },
    { "file:///x#y", "query or fragment" },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_refusal (nex_artifact_check_url (bad[i].url, &err), &err, "artifact", bad[i].needle, bad[i].url);
  expect_refusal (nex_artifact_check_url (NULL, &err), &err, "artifact", "must not be empty", "NULL URL");
}

/* --- prechecks and fetches ------------------------------------------------------------------------------------ */

static int
count_entries (const char *dir)
{
  DIR *d = opendir (dir);
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir (d)) != NULL)
    if (strcmp (e->d_name, ".") != 0 && strcmp (e->d_name, "..") != 0)
      n++;
  closedir (d);
  return n;
}

/* sha256sum's digest of PATH into OUT (65 bytes), or -1 when the tool is not there. */
static int
sha256sum_of (const char *path, char out[65])
{
  cleanup_free char *cmd = nex_xasprintf ("sha256sum '%s' 2>/dev/null", path);
  FILE *p = popen (cmd, "r");
  if (p == NULL)
    return -1;
  int ok = fscanf (p, "%64s", out) == 1;
  return (pclose (p) == 0 && ok && strlen (out) == 64) ? 0 : -1;
}

static int
same_content (const char *a, const char *b)
{
  nex_error_t err = NULL;
  size_t na, nb;
  cleanup_free char *x = nex_file_read (a, NEX_ARTIFACT_MAX_BYTES, &na, &err);
  cleanup_free char *y = nex_file_read (b, NEX_ARTIFACT_MAX_BYTES, &nb, &err);
  nex_error_free (&err);
  return x != NULL && y != NULL && na == nb && memcmp (x, y, na) == 0;
}

static void
test_fetch (const char *dir)
{
  nex_error_t err = NULL;
  /* The source: busybox when it is a static executable here, else the constructed image. */
  cleanup_free char *src = nex_xasprintf ("%s/prog", dir);
  size_t n = 0;
  cleanup_free char *bytes = NULL;
  if (system ("file -L /bin/busybox 2>/dev/null | grep -q 'statically'") == 0)
    bytes = nex_file_read ("/bin/busybox", NEX_ARTIFACT_MAX_BYTES, &n, &err);
  nex_error_free (&err);
  if (bytes == NULL)
    {
      image_t im = static_exec ();
      bytes = nex_xmalloc (im.len);
      memcpy (bytes, im.bytes, im.len);
      n = im.len;
      printf ("# fetching the constructed image (no static busybox)\n");
    }
  else
    printf ("# fetching a copy of /bin/busybox (%zu bytes)\n", n);
  if (write_file (src, bytes, n, 0755) < 0)
    {
      TAP_OK (0, "write the source file");
      return;
    }
  cleanup_free char *url = nex_xasprintf ("file://%s", src);
  cleanup_free char *cache = nex_xasprintf ("%s/cache", dir);
  cleanup_free char *cache2 = nex_xasprintf ("%s/cache2", dir);
  mkdir (cache, 0700);
  mkdir (cache2, 0700);

  expect_accept (nex_artifact_precheck (url, &err), &err, "precheck of the source");
  expect_refusal (nex_artifact_precheck ("file:///bin/sh", &err), &err, "artifact", "dynamically linked",
                  "precheck of /bin/sh");
  expect_refusal (nex_artifact_precheck ("file:///nonexistent/prog", &err), &err, "artifact", "cannot read",
                  "precheck of a missing file");
  expect_accept (nex_artifact_precheck ("http://example.com/x", &err), &err,
                 "precheck of http accepts the URL (nothing to check before fetching)");

  char digest[65] = "";
  cleanup_free char *path = nex_artifact_fetch (cache, url, NULL, digest, &err);
  TAP_OK (path != NULL, "fetch without an expected digest%s%s", err ? ": " : "", err ? err->msg : "");
  nex_error_free (&err);
  if (path == NULL)
    return;
  char want[65];
  if (sha256sum_of (src, want) == 0)
    TAP_OK (strcmp (digest, want) == 0, "digest %s matches sha256sum", digest);
  else
    printf ("ok %d # SKIP sha256sum not available\n", ++tap_count_);
  cleanup_free char *expected_path = nex_xasprintf ("%s/%s", cache, digest);
  TAP_OK (strcmp (path, expected_path) == 0, "cached as <cache>/<digest> (%s)", path);
  struct stat st;
  TAP_OK (stat (path, &st) == 0 && S_ISREG (st.st_mode) && (st.st_mode & 07777) == 0555,
          "cached file has mode 0555 (%o)", (unsigned) (st.st_mode & 07777));
  TAP_OK (same_content (src, path), "cached bytes equal the source");
  TAP_OK (count_entries (cache) == 1, "nothing but the entry in the cache");

  char digest2[65] = "";
  cleanup_free char *again = nex_artifact_fetch (cache, url, digest, digest2, &err);
  TAP_OK (again != NULL && strcmp (again, path) == 0 && strcmp (digest, digest2) == 0 && count_entries (cache) == 1,
          "fetching again with the right digest reuses the entry%s%s", err ? ": " : "", err ? err->msg : "");
  nex_error_free (&err);

  char wrong[65];
  memcpy (wrong, digest, sizeof wrong);
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  char digest3[65] = "";
  char *bad = nex_artifact_fetch (cache2, url, wrong, digest3, &err);
  int ok = bad == NULL && err != NULL && strcmp (err->field, "sha256") == 0
           && strstr (err->msg, "sha256 mismatch: expected ") != NULL && strstr (err->msg, digest) != NULL;
  TAP_OK (ok, "wrong sha256 refused (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);
  TAP_OK (count_entries (cache2) == 0, "a refused fetch leaves nothing in the cache");

  bad = nex_artifact_fetch (cache2, url, "abc", digest3, &err);
  TAP_OK (bad == NULL && err != NULL && strcmp (err->field, "sha256") == 0, "malformed expected sha256 refused");
  nex_error_free (&err);
  free (bad);

  bad = nex_artifact_fetch (cache2, "file:///bin/sh", NULL, digest3, &err);
  TAP_OK (bad == NULL && err != NULL && strcmp (err->field, "artifact") == 0
              && strstr (err->msg, "dynamically linked") != NULL && count_entries (cache2) == 0,
          "fetch of a dynamic executable refused, cache left empty (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);

  bad = nex_artifact_fetch (cache2, "file:///etc/passwd", NULL, digest3, &err);
  TAP_OK (bad == NULL && err != NULL && strstr (err->msg, "not an ELF file") != NULL && count_entries (cache2) == 0,
          "fetch of a text file refused, cache left empty (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);

  /* Port 9 (discard) on loopback: nothing listens, the connection is refused at once. */
  bad = nex_artifact_fetch (cache2, "http://127.0.0.1:9/x", NULL, digest3, &err);
  TAP_OK (bad == NULL && err != NULL && strstr (err->msg, "fetch `http://127.0.0.1:9/x`") != NULL
              && count_entries (cache2) == 0,
          "fetch from a port nobody listens on fails, cache left empty (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);

  /* A sparse file one byte over the bound: refused as too large, without copying half a gigabyte. */
  cleanup_free char *huge = nex_xasprintf ("%s/huge", dir);
  cleanup_free char *huge_url = nex_xasprintf ("file://%s", huge);
  int fd = open (huge, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd >= 0 && ftruncate (fd, (off_t) NEX_ARTIFACT_MAX_BYTES + 1) == 0)
    {
      bad = nex_artifact_fetch (cache2, huge_url, NULL, digest3, &err);
      TAP_OK (bad == NULL && err != NULL && err->kind == NEX_ERR_TOO_LARGE && count_entries (cache2) == 0,
              "artifact over NEX_ARTIFACT_MAX_BYTES refused (%s)", err ? err->msg : "accepted");
      nex_error_free (&err);
      free (bad);
    }
  else
    printf ("ok %d # SKIP sparse file: %s\n", ++tap_count_, strerror (errno));
  if (fd >= 0)
    close (fd);

  bad = nex_artifact_fetch ("/nonexistent/cache", url, NULL, digest3, &err);
  TAP_OK (bad == NULL && err != NULL && err->kind == NEX_ERR_SYSTEM, "missing cache directory is a system error (%s)",
          err ? err->msg : "accepted");
  nex_error_free (&err);
  free (bad);

  test_upload (dir, (const unsigned char *) bytes, n, digest);
}

/* --- uploads and artifact:// ------------------------------------------------------------------------------------ */

/* Uploads the N bytes of BYTES into CACHE in three pieces, bounded by MAX; returns what finish returned. */
static int
upload_bytes (const char *cache, const unsigned char *bytes, size_t n, uint64_t max, const char *expected,
              char digest[65], int *existed, nex_error_t *err)
{
  nex_artifact_upload_t *up = nex_artifact_upload_begin (cache, max, err);
  if (up == NULL)
    return -1;
  size_t third = n / 3;
  int r = 0;
  if (nex_artifact_upload_write (up, bytes, third, err) < 0
      || nex_artifact_upload_write (up, bytes + third, third, err) < 0
      || nex_artifact_upload_write (up, bytes + 2 * third, n - 2 * third, err) < 0)
    r = -1;
  uint64_t size = 0;
  if (r == 0)
    r = nex_artifact_upload_finish (up, expected, digest, &size, existed, err);
  if (r == 0 && size != n)
    r = nex_error_set (err, NEX_ERR_SYSTEM, "size %llu, wanted %zu", (unsigned long long) size, n);
  nex_artifact_upload_free (up);
  return r;
}

static void
test_upload (const char *dir, const unsigned char *bytes, size_t n, const char *want_digest)
{
  nex_error_t err = NULL;
  cleanup_free char *cache = nex_xasprintf ("%s/upcache", dir);
  mkdir (cache, 0700);
  char digest[65] = "";
  int existed = -1;
  int r = upload_bytes (cache, bytes, n, NEX_ARTIFACT_MAX_BYTES, NULL, digest, &existed, &err);
  TAP_OK (r == 0 && strcmp (digest, want_digest) == 0 && existed == 0 && count_entries (cache) == 1,
          "upload in pieces: same digest as the fetch, one entry%s%s", err ? ": " : "", err ? err->msg : "");
  nex_error_free (&err);
  r = upload_bytes (cache, bytes, n, NEX_ARTIFACT_MAX_BYTES, want_digest, digest, &existed, &err);
  TAP_OK (r == 0 && existed == 1 && count_entries (cache) == 1, "the same upload again reuses the entry");
  nex_error_free (&err);
  r = upload_bytes (cache, bytes, n, n - 1, NULL, digest, &existed, &err);
  TAP_OK (r < 0 && err && err->kind == NEX_ERR_TOO_LARGE && count_entries (cache) == 1,
          "an upload over its bound is refused (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  static const unsigned char text[] = "#!/bin/sh\necho not an executable here\n";
  r = upload_bytes (cache, text, sizeof text - 1, NEX_ARTIFACT_MAX_BYTES, NULL, digest, &existed, &err);
  TAP_OK (r < 0 && err && strcmp (err->field, "artifact") == 0 && count_entries (cache) == 1,
          "a text upload is refused and leaves nothing (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  r = upload_bytes (cache, bytes, n, NEX_ARTIFACT_MAX_BYTES, "0000000000000000000000000000000000000000000000000000000000000000",
                    digest, &existed, &err);
  TAP_OK (r < 0 && err && strcmp (err->field, "sha256") == 0 && count_entries (cache) == 1,
          "an upload with another expected digest is refused (%s)", err ? err->msg : "accepted");
  nex_error_free (&err);
  nex_artifact_upload_t *up = nex_artifact_upload_begin (cache, 100, &err);
  uint64_t size;
  r = up ? nex_artifact_upload_finish (up, NULL, digest, &size, &existed, &err) : -1;
  TAP_OK (r < 0 && err && strstr (err->msg, "empty") != NULL, "an empty upload is refused (%s)",
          err ? err->msg : "accepted");
  nex_error_free (&err);
  nex_artifact_upload_free (up);

  /* artifact://<digest> names the entry. */
  cleanup_free char *url = nex_xasprintf ("artifact://%s", want_digest);
  expect_accept (nex_artifact_check_url (url, &err), &err, "artifact:// URL");
  expect_accept (nex_artifact_precheck_at (cache, url, &err), &err, "artifact:// precheck of a cached entry");
  expect_refusal (nex_artifact_check_url ("artifact://abc", &err), &err, "artifact", "SHA-256", "short digest");
  cleanup_free char *missing = nex_xasprintf ("artifact://%064d", 7);
  expect_accept (nex_artifact_precheck (missing, &err), &err, "artifact:// precheck without a cache: syntax only");
  expect_refusal (nex_artifact_precheck_at (cache, missing, &err), &err, "artifact", "no uploaded artifact",
                  "artifact:// of an entry not in the cache");
  char d2[65] = "";
  cleanup_free char *path = nex_artifact_fetch (cache, url, want_digest, d2, &err);
  cleanup_free char *want_path = nex_xasprintf ("%s/%s", cache, want_digest);
  TAP_OK (path && strcmp (path, want_path) == 0 && strcmp (d2, want_digest) == 0 && count_entries (cache) == 1,
          "fetching artifact:// resolves to the entry without a copy%s%s", err ? ": " : "", err ? err->msg : "");
  nex_error_free (&err);
  char *bad = nex_artifact_fetch (cache, url, "1111111111111111111111111111111111111111111111111111111111111111", d2,
                                  &err);
  TAP_OK (bad == NULL && err && strcmp (err->field, "sha256") == 0, "artifact:// with another pinned digest refused");
  nex_error_free (&err);
  uint64_t sz = 0;
  TAP_OK (nex_artifact_cached (cache, want_digest, &sz, &err) == 1 && sz == n, "nex_artifact_cached finds it");
  TAP_OK (nex_artifact_cached (cache, missing + 11, &sz, &err) == 0, "nex_artifact_cached: absent");
  nex_error_free (&err);
}

static int
remove_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  (void) st, (void) flag, (void) ftw;
  return remove (path);
}

int
main (void)
{
  char dir[] = "/tmp/nex-test-elf-XXXXXX";
  if (mkdtemp (dir) == NULL)
    {
      perror ("mkdtemp");
      return 1;
    }
  printf ("# host machine: %s\n", nex_elf_host_machine ());
  test_images ();
  test_mutations (dir);
  test_files (dir);
  test_urls ();
  test_fetch (dir);
  nftw (dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
  return tap_done ();
}
