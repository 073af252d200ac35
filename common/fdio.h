/* SPDX-License-Identifier: Apache-2.0 */
/* fdio.h — small, careful helpers for file descriptors: full writes and reads that retry on EINTR and short
 * transfers, and whole-file reads with a size bound.  Used by nexd and nex-agent alike. */
#ifndef NEX_FDIO_H
#define NEX_FDIO_H

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

/* Writes all N bytes of BUF to FD (blocking fds; on a non-blocking fd EAGAIN is an error).  0 or -1. */
int nex_fd_write_all (int fd, const void *buf, size_t n, nex_error_t *err);

/* Reads the whole file PATH into a NUL-terminated buffer the caller frees; fails with NEX_ERR_TOO_LARGE when
 * it holds more than MAX bytes.  *LEN receives the size without the NUL.  NULL on failure. */
char *nex_file_read (const char *path, size_t max, size_t *len, nex_error_t *err);

/* Writes DATA to PATH atomically (temporary file + rename) with MODE.  0 or -1. */
int nex_file_write_atomic (const char *path, const void *data, size_t n, int mode, nex_error_t *err);

/* Creates directory PATH and its missing parents with MODE.  0 or -1. */
int nex_mkdir_p (const char *path, int mode, nex_error_t *err);

#endif
