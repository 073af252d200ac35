/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz-elf.c — feeds hostile bytes to the ELF check (server/artifacts/elf.c) that decides at deploy and start
 * time whether a client's file is a static executable for this node: nex_elf_check_static on the bytes in
 * memory, and nex_elf_check_fd on the same bytes as a file (a memfd), which reads only the headers with pread.
 *
 * Invariants: a refusal is NEX_ERR_INVALID naming the field "artifact" (a 422), and both checks come to the same
 * verdict on the same bytes. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/fdio.h"
#include "server/artifacts/elf.h"
#include "tests/fuzz/fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  cleanup_error nex_error_t err = NULL;
  int in_memory = nex_elf_check_static (data, size, &err);
  if (in_memory < 0)
    fuzz_check (err && err->kind == NEX_ERR_INVALID && err->field && strcmp (err->field, "artifact") == 0,
                "a refusal is NEX_ERR_INVALID on field artifact");
  nex_error_free (&err);

  cleanup_close int fd = memfd_create ("fuzz-elf", MFD_CLOEXEC);
  fuzz_check (fd >= 0, "memfd_create works");
  fuzz_check (size == 0 || nex_fd_write_all (fd, data, size, NULL) == 0, "the bytes are written to the memfd");
  int from_file = nex_elf_check_fd (fd, &err);
  if (from_file < 0)
    fuzz_check (err && err->kind == NEX_ERR_INVALID && err->field && strcmp (err->field, "artifact") == 0,
                "a refusal of the file is NEX_ERR_INVALID on field artifact");
  fuzz_check (in_memory == from_file, "the memory and file checks agree");
  return 0;
}
