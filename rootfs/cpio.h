/* SPDX-License-Identifier: Apache-2.0 */
/* cpio.h — writing a newc ("070701") cpio archive, the format the Linux kernel unpacks as an initramfs.
 *
 * Only what an initramfs needs: directories, regular files (copied from an open descriptor), character device
 * nodes and symbolic links, each owned by root with mtime 0, so that the same inputs always give the same bytes
 * (the image cache relies on that).  Device nodes are written as archive entries, so building an image needs no
 * privilege: the kernel creates the nodes when it unpacks the archive.  Entries go straight to the output
 * descriptor; nothing is buffered beyond one copy chunk.  Not thread-safe per archive. */
#ifndef NEX_CPIO_H
#define NEX_CPIO_H

#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

typedef struct nex_cpio
{
  int fd;       /* output; the caller owns it */
  uint32_t ino; /* last inode number handed out */
  uint64_t off; /* bytes written so far (entries are aligned on 4 bytes from the start) */
} nex_cpio_t;

/* Starts an archive written to FD (at its current position, which counts as offset 0). */
void nex_cpio_init (nex_cpio_t *c, int fd);

/* Adds directory NAME (a relative path such as "dev" or "nex/modules") with permission bits PERM. */
int nex_cpio_dir (nex_cpio_t *c, const char *name, mode_t perm, nex_error_t *err);

/* Adds a regular file NAME with PERM holding the whole content of SRC_FD (read from offset 0 to its size at
 * the time of the call).  Fails if the file changes size while it is copied. */
int nex_cpio_file (nex_cpio_t *c, const char *name, mode_t perm, int src_fd, nex_error_t *err);

/* Adds a regular file NAME with PERM holding the LEN bytes at DATA. */
int nex_cpio_data (nex_cpio_t *c, const char *name, mode_t perm, const void *data, size_t len, nex_error_t *err);

/* Adds character device NAME (MAJOR, MINOR) with PERM. */
int nex_cpio_chardev (nex_cpio_t *c, const char *name, mode_t perm, unsigned major, unsigned minor, nex_error_t *err);

/* Adds symbolic link NAME pointing at TARGET. */
int nex_cpio_symlink (nex_cpio_t *c, const char *name, const char *target, nex_error_t *err);

/* Writes the TRAILER!!! entry that ends the archive.  The descriptor is not closed. */
int nex_cpio_finish (nex_cpio_t *c, nex_error_t *err);

#endif
