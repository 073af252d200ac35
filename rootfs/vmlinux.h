/* SPDX-License-Identifier: Apache-2.0 */
/* vmlinux.h — getting the uncompressed kernel (vmlinux, an ELF file) out of a bzImage.
 *
 * QEMU boots a bzImage; Firecracker wants the kernel's uncompressed ELF image.  Distributions ship only the
 * bzImage (Debian's vmlinuz), whose setup header (x86 boot protocol 2.08 and later) says where the compressed
 * kernel lies (payload_offset, payload_length).  This module finds that payload, names its compression from its
 * magic bytes, and decompresses the one Debian's kernels use, LZ4 (the "legacy" frame format the kernel's build
 * writes); an uncompressed ELF payload is copied as it is.  Other compressions are refused by name.
 *
 * The input is treated as untrusted bytes: every offset and length is checked against the buffer before use,
 * and the output is bounded (NEX_VMLINUX_MAX_BYTES).  Pure functions on memory; any thread. */
#ifndef NEX_VMLINUX_H
#define NEX_VMLINUX_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define NEX_VMLINUX_MAX_BYTES (512u << 20) /* no kernel is bigger; bounds the decompression of hostile input */

/* Decompresses the kernel inside the bzImage BZ (LEN bytes).  Returns a new buffer (caller frees) of *OUT_LEN
 * bytes that starts with an ELF header, or NULL with NEX_ERR_INVALID saying what is wrong ("not a bzImage",
 * "payload compressed with xz is not supported", "corrupt LZ4 data at byte N"). */
uint8_t *nex_vmlinux_extract (const uint8_t *bz, size_t len, size_t *out_len, nex_error_t *err);

/* Decodes one LZ4 block (no frame) of SRC_LEN bytes into DST of DST_CAP bytes.  Returns the bytes produced, or
 * -1 when the block is malformed or would not fit. */
long nex_lz4_block_decode (const uint8_t *src, size_t src_len, uint8_t *dst, size_t dst_cap);

#endif
