/* SPDX-License-Identifier: Apache-2.0 */
/* elf.c — the static-executable check for native workloads (contract in elf.h).
 *
 * One parser serves both callers: it reads through a small `source` that is either a memory buffer or a file
 * descriptor, and every read names an absolute offset and a length that the source checks against its size
 * before touching anything.  So a lying header can make the parser ask for bytes that are not there, but never
 * get them: the request is refused and reported as a corrupt (usually truncated) file.  All offset arithmetic
 * is done in uint64_t in the form `off <= size && n <= size - off`, which cannot overflow. */
#include "server/artifacts/elf.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

/* The machine this nexd was compiled for: a native workload must have been built for the same one. */
#if defined __x86_64__
#define HOST_MACHINE EM_X86_64
#define HOST_MACHINE_NAME "x86_64"
#elif defined __aarch64__
#define HOST_MACHINE EM_AARCH64
#define HOST_MACHINE_NAME "aarch64"
#elif defined __riscv && __riscv_xlen == 64
#define HOST_MACHINE EM_RISCV
#define HOST_MACHINE_NAME "riscv64"
#else
#error "elf.c: Nex does not know this architecture's ELF machine number; add it next to the others"
#endif

/* Fields are read in the host's byte order, so an image must be in that order too (it could not run here
 * otherwise).  This makes the parser correct on big-endian hosts as well, should one ever be added above. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_DATA ELFDATA2LSB
#else
#define HOST_DATA ELFDATA2MSB
#endif

/* How much of a PT_INTERP path is read and shown: enough for any real loader path, and a bound on what a
 * hostile file can put into an error message. */
#define INTERP_SHOWN 128

typedef struct source
{
  const unsigned char *buf; /* memory image, when FD is -1 */
  int fd;                   /* file read with pread, or -1 */
  uint64_t size;            /* bytes available: the buffer's length or the file's size */
} source_t;

/* Reads N bytes at OFF into DST.  Returns 1 when done, 0 when [OFF, OFF+N) is not inside the source (a file
 * that shrank under us counts as that too), or -1 with *ERR set when the read itself failed. */
static int
source_read (const source_t *s, uint64_t off, void *dst, size_t n, nex_error_t *err)
{
  if (off > s->size || n > s->size - off)
    return 0;
  if (s->fd < 0)
    {
      memcpy (dst, s->buf + off, n);
      return 1;
    }
  unsigned char *p = dst;
  while (n > 0)
    {
      ssize_t r = pread (s->fd, p, n, (off_t)off);
      if (r < 0)
        {
          if (errno == EINTR)
            continue;
          nex_error_sys (err, errno, "read ELF headers");
          return -1;
        }
      if (r == 0)
        return 0;
      p += r;
      off += (uint64_t)r;
      n -= (size_t)r;
    }
  return 1;
}

/* Names an e_machine value the way `uname -m` would on such a machine (this is only reached for 64-bit
 * images, hence the 64-bit names).  Returns a static string, or NULL for a machine not listed. */
static const char *
machine_name (unsigned machine)
{
  switch (machine)
    {
    case EM_X86_64:
      return "x86_64";
    case EM_AARCH64:
      return "aarch64";
    case EM_RISCV:
      return "riscv64";
    case EM_386:
      return "i386";
    case EM_ARM:
      return "arm";
    case EM_PPC64:
      return "ppc64";
    case EM_PPC:
      return "ppc";
    case EM_S390:
      return "s390x";
    case EM_MIPS:
      return "mips64";
    case EM_SPARCV9:
      return "sparc64";
    case EM_IA_64:
      return "ia64";
    case EM_LOONGARCH:
      return "loongarch64";
    case EM_ALPHA:
      return "alpha";
    default:
      return NULL;
    }
}

static int refuse (nex_error_t *err, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

/* Every refusal of the content goes through here, so all of them carry the same kind and field. */
static int
refuse (nex_error_t *err, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  cleanup_free char *msg = nex_xvasprintf (fmt, ap);
  va_end (ap);
  return nex_error_field (err, "artifact", "%s", msg);
}

/* Refuses a dynamically linked image, quoting its interpreter path from PH.  The path is hostile bytes: at
 * most INTERP_SHOWN of them are read, the quote stops at the first NUL, and anything but printable ASCII (and
 * the backquote that closes the quote) is shown as '?', so the message cannot carry terminal escapes, newlines
 * that forge log lines, or invalid UTF-8 into JSON and logs. */
static int
refuse_dynamic (const source_t *s, const Elf64_Phdr *ph, nex_error_t *err)
{
  if (ph->p_offset > s->size || ph->p_filesz > s->size - ph->p_offset)
    return refuse (err,
                   "corrupt ELF: interpreter path (offset %" PRIu64 ", %" PRIu64
                   " bytes) runs past the end of the file (%" PRIu64 " bytes)",
                   (uint64_t)ph->p_offset, (uint64_t)ph->p_filesz, s->size);
  size_t n = ph->p_filesz < INTERP_SHOWN ? (size_t)ph->p_filesz : INTERP_SHOWN;
  char raw[INTERP_SHOWN], shown[INTERP_SHOWN + 4];
  int r = source_read (s, ph->p_offset, raw, n, err);
  if (r < 0)
    return -1;
  if (r == 0)
    return refuse (err, "corrupt ELF: interpreter path runs past the end of the file");
  size_t i;
  for (i = 0; i < n && raw[i] != '\0'; i++)
    shown[i] = (raw[i] >= 0x20 && raw[i] < 0x7f && raw[i] != '`') ? raw[i] : '?';
  if (i == n && ph->p_filesz > n)
    {
      memcpy (shown + i, "...", 3);
      i += 3;
    }
  shown[i] = '\0';
  return refuse (err, "dynamically linked (interpreter `%s`): Nex runs statically linked executables", shown);
}

/* The check itself; see nex_elf_check_static for what is accepted. */
static int
check_source (const source_t *s, nex_error_t *err)
{
  unsigned char ident[EI_NIDENT];
  int r;

  if ((r = source_read (s, 0, ident, SELFMAG, err)) < 0)
    return -1;
  if (r == 0 || memcmp (ident, ELFMAG, SELFMAG) != 0)
    return refuse (err, "not an ELF file");
  if ((r = source_read (s, 0, ident, EI_NIDENT, err)) < 0)
    return -1;
  if (r == 0)
    return refuse (err, "corrupt ELF: truncated header (%" PRIu64 " of %zu bytes)", s->size, sizeof (Elf64_Ehdr));
  if (ident[EI_CLASS] == ELFCLASS32)
    return refuse (err, "32-bit ELF is not supported");
  if (ident[EI_CLASS] != ELFCLASS64)
    return refuse (err, "corrupt ELF: unknown class %u", ident[EI_CLASS]);
  if (ident[EI_DATA] != ELFDATA2LSB && ident[EI_DATA] != ELFDATA2MSB)
    return refuse (err, "corrupt ELF: unknown byte order %u", ident[EI_DATA]);
  if (ident[EI_DATA] != HOST_DATA)
    return refuse (err, "%s-endian ELF is not supported: this node is %s-endian",
                   ident[EI_DATA] == ELFDATA2LSB ? "little" : "big", HOST_DATA == ELFDATA2LSB ? "little" : "big");
  if (ident[EI_VERSION] != EV_CURRENT)
    return refuse (err, "corrupt ELF: unknown ELF version %u", ident[EI_VERSION]);

  /* Copied out rather than cast in place: BUF carries no alignment promise. */
  Elf64_Ehdr eh;
  if ((r = source_read (s, 0, &eh, sizeof eh, err)) < 0)
    return -1;
  if (r == 0)
    return refuse (err, "corrupt ELF: truncated header (%" PRIu64 " of %zu bytes)", s->size, sizeof eh);

  if (eh.e_machine != HOST_MACHINE)
    {
      const char *name = machine_name (eh.e_machine);
      if (name != NULL)
        return refuse (err, "built for %s but this node is %s", name, HOST_MACHINE_NAME);
      return refuse (err, "built for machine %u but this node is %s", eh.e_machine, HOST_MACHINE_NAME);
    }
  if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
    return refuse (err, "not an executable (ELF type %u)", eh.e_type);

  /* The program header table: its entry size must be the native one (as Linux requires) and its total size is
   * bounded before anything is allocated or read, so e_phnum cannot make us allocate or loop much.  e_phnum is
   * 16 bits, so the product cannot overflow; PN_XNUM (the "real count is elsewhere" escape) exceeds the bound
   * and is refused with the rest, as Linux does. */
  if (eh.e_phentsize != sizeof (Elf64_Phdr))
    return refuse (err, "corrupt ELF: program header entries of %u bytes (expected %zu)", eh.e_phentsize,
                   sizeof (Elf64_Phdr));
  if (eh.e_phnum == 0)
    return refuse (err, "corrupt ELF: no program headers");
  size_t table = (size_t)eh.e_phnum * sizeof (Elf64_Phdr);
  if (table > NEX_ELF_MAX_PHDR_BYTES)
    return refuse (err, "corrupt ELF: %u program headers (at most %zu are supported)", eh.e_phnum,
                   NEX_ELF_MAX_PHDR_BYTES / sizeof (Elf64_Phdr));
  cleanup_free Elf64_Phdr *ph = nex_xmalloc (table);
  if ((r = source_read (s, eh.e_phoff, ph, table, err)) < 0)
    return -1;
  if (r == 0)
    return refuse (err,
                   "corrupt ELF: program header table (offset %" PRIu64 ", %zu bytes) runs past the end of the "
                   "file (%" PRIu64 " bytes)",
                   (uint64_t)eh.e_phoff, table, s->size);

  const Elf64_Phdr *interp = NULL, *outside = NULL;
  size_t loads = 0, outside_index = 0;
  for (size_t i = 0; i < eh.e_phnum; i++)
    {
      if (ph[i].p_type == PT_INTERP && interp == NULL)
        interp = &ph[i];
      if (ph[i].p_type != PT_LOAD)
        continue;
      loads++;
      /* A loadable segment's file bytes must all be in the file: a truncated upload or download is refused
       * here rather than dying of SIGBUS on first touch of an unbacked page inside the sandbox. */
      if (outside == NULL && (ph[i].p_offset > s->size || ph[i].p_filesz > s->size - ph[i].p_offset))
        {
          outside = &ph[i];
          outside_index = i;
        }
    }
  /* Reported first: it is the refusal that no repair of the file would fix. */
  if (interp != NULL)
    return refuse_dynamic (s, interp, err);
  if (loads == 0)
    return refuse (err, "corrupt ELF: no loadable segment");
  if (outside != NULL)
    return refuse (err,
                   "corrupt ELF: segment %zu (offset %" PRIu64 ", %" PRIu64 " bytes) runs past the end of the file "
                   "(%" PRIu64 " bytes); is it truncated?",
                   outside_index, (uint64_t)outside->p_offset, (uint64_t)outside->p_filesz, s->size);
  return 0;
}

int
nex_elf_check_static (const void *buf, size_t len, nex_error_t *err)
{
  /* A NULL buffer is an empty one: every read is then out of bounds and BUF is never dereferenced. */
  source_t s = { .buf = buf, .fd = -1, .size = buf != NULL ? len : 0 };
  return check_source (&s, err);
}

int
nex_elf_check_fd (int fd, nex_error_t *err)
{
  struct stat st;
  if (fstat (fd, &st) < 0)
    return nex_error_sys (err, errno, "fstat");
  if (!S_ISREG (st.st_mode))
    return refuse (err, "not a regular file");
  source_t s = { .buf = NULL, .fd = fd, .size = (uint64_t)st.st_size };
  return check_source (&s, err);
}

static const char *
file_type_name (mode_t mode)
{
  if (S_ISDIR (mode))
    return "a directory";
  if (S_ISFIFO (mode))
    return "a FIFO";
  if (S_ISSOCK (mode))
    return "a socket";
  if (S_ISCHR (mode))
    return "a character device";
  if (S_ISBLK (mode))
    return "a block device";
  return "not a regular file";
}

int
nex_elf_open (const char *path, nex_error_t *err)
{
  struct stat st;
  /* Looked at before opening: opening a device can have side effects (a tape rewinds, a modem hangs up), and
   * opening a FIFO would wait for a writer.  Neither may be triggered by naming a path in a request. */
  if (stat (path, &st) < 0)
    return nex_error_field (err, "artifact", "cannot read `%s`: %s", path, strerror (errno));
  if (!S_ISREG (st.st_mode))
    return nex_error_field (err, "artifact", "`%s` is not a regular file (it is %s)", path,
                            file_type_name (st.st_mode));
  /* The path may be swapped for something else between stat and open.  O_NONBLOCK keeps a swapped-in FIFO from
   * blocking us, O_NOCTTY keeps a swapped-in terminal from becoming ours, and the fstat below refuses whatever
   * was actually opened unless it is a regular file. */
  cleanup_close int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return nex_error_field (err, "artifact", "cannot read `%s`: %s", path, strerror (errno));
  if (fstat (fd, &st) < 0)
    return nex_error_sys (err, errno, "fstat `%s`", path);
  if (!S_ISREG (st.st_mode))
    return nex_error_field (err, "artifact", "`%s` is not a regular file (it is %s)", path,
                            file_type_name (st.st_mode));
  return NEX_STEAL_FD (fd);
}

int
nex_elf_check_file (const char *path, nex_error_t *err)
{
  cleanup_close int fd = nex_elf_open (path, err);
  if (fd < 0)
    return -1;
  if (nex_elf_check_fd (fd, err) < 0)
    return nex_error_wrap (err, "`%s`", path);
  return 0;
}

const char *
nex_elf_host_machine (void)
{
  return HOST_MACHINE_NAME;
}
