/* SPDX-License-Identifier: Apache-2.0 */
/* elf.h — deciding whether a file is something Nex can run natively: a statically linked ELF executable for
 * this node's architecture.
 *
 * Native workloads run in a sandbox that holds no shared libraries and no dynamic loader, so a dynamically
 * linked program would fail there with a bare ENOENT from execve.  These checks turn that into a refusal a user
 * understands, given at deploy time (on the client's file) and again at start time (on the node's own cached
 * copy, the check that counts).  The bytes come from clients and are treated as hostile: every offset and size
 * is bounds-checked with overflow-safe arithmetic, counts such as e_phnum are bounded before use, and nothing
 * beyond the ELF header, the program header table (at most NEX_ELF_MAX_PHDR_BYTES) and a bounded prefix of the
 * interpreter path is ever read.
 *
 * What is accepted is what Linux's binfmt_elf would load without an interpreter: ELFCLASS64, the host's byte
 * order, the host's e_machine, e_type ET_EXEC or ET_DYN (static-pie), program headers of the native size, at
 * least one PT_LOAD whose file bytes lie inside the file, and no PT_INTERP.
 *
 * Every refusal is NEX_ERR_INVALID naming the field "artifact" (HTTP 422), since the client chose the file.
 * Thread safety: all functions are reentrant and touch no global state. */
#ifndef NEX_ELF_H
#define NEX_ELF_H

#include <stddef.h>

#include "common/error.h"

/* Upper bound on the size of the program header table, in bytes.  Linux itself refuses tables larger than
 * 64 KiB (and, on 4 KiB-page hosts, larger than one page), so nothing loadable is turned away. */
#define NEX_ELF_MAX_PHDR_BYTES 65536

/* Checks the ELF image held in BUF (LEN bytes: the whole file, or at least every byte the program headers
 * refer to — a PT_LOAD segment running past LEN is refused as truncated).  Returns 0 when it is a statically
 * linked executable for this node, else -1 with *ERR set to NEX_ERR_INVALID, field "artifact", and one of:
 * "not an ELF file", "32-bit ELF is not supported", "built for <machine> but this node is <machine>",
 * "not an executable (ELF type N)", "dynamically linked (interpreter `...`): Nex runs statically linked
 * executables", "corrupt ELF: <what>".  Never reads outside BUF[0, LEN). */
int nex_elf_check_static (const void *buf, size_t len, nex_error_t *err);

/* As nex_elf_check_static, on the open file FD, reading only the ELF header, the program header table and at
 * most a short prefix of the interpreter path with pread (the file offset is not moved).  FD must be a regular
 * file.  Refusals are NEX_ERR_INVALID field "artifact"; a failing read is NEX_ERR_SYSTEM. */
int nex_elf_check_fd (int fd, nex_error_t *err);

/* Opens PATH read-only for checking or copying, refusing anything but a regular file (after following
 * symlinks): a missing or unreadable file, a directory, a FIFO or a device is refused with NEX_ERR_INVALID field
 * "artifact", naming PATH and saying which, since the client named it.  Opening never blocks and never makes a
 * terminal the controlling one.  Returns a descriptor (O_CLOEXEC) the caller closes, or -1.  This is the one
 * place deciding how a client-named file is opened; the file:// artifact scheme uses it too. */
int nex_elf_open (const char *path, nex_error_t *err);

/* As nex_elf_check_fd on the file PATH, opened with nex_elf_open (so the same refusals apply).  Messages about
 * the content are prefixed with "`PATH`: ". */
int nex_elf_check_file (const char *path, nex_error_t *err);

/* The name of this node's architecture as users know it ("x86_64", "aarch64", "riscv64").  A static string. */
const char *nex_elf_host_machine (void);

#endif
