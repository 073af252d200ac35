/* SPDX-License-Identifier: Apache-2.0 */
/* elf-image.h — a small, well-formed static ELF executable for this host, built in memory from <elf.h>
 * structures, for the tests of the static-ELF check (test-elf.c takes it apart) and of artifact fetching
 * (test-artifact.c fetches it when the host has no static busybox).  Static inline, like testutil.h. */
#ifndef NEX_ELF_IMAGE_H
#define NEX_ELF_IMAGE_H

#include <elf.h>
#include <stddef.h>
#include <string.h>

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
static inline image_t
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
  eh.e_type = (Elf64_Half)o.type;
  eh.e_machine = (Elf64_Half)o.machine;
  eh.e_version = EV_CURRENT;
  eh.e_entry = 0x400000 + code_off;
  eh.e_phoff = sizeof (Elf64_Ehdr);
  eh.e_ehsize = sizeof (Elf64_Ehdr);
  eh.e_phentsize = sizeof (Elf64_Phdr);
  eh.e_phnum = (Elf64_Half)nph;
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

static inline image_t
static_exec (void)
{
  return make_image ((image_opts_t){ .type = ET_EXEC, .machine = HOST_EM });
}

#endif
