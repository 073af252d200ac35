/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/unpack.h — an image's layers unpacked in a forked child behind a second wall.
 *
 * layer.c already refuses, entry by entry, anything that would reach out of the tree or past the image's budget.
 * The child adds what the kernel enforces whatever that code gets wrong: RLIMIT_FSIZE at the image's whole
 * unpacked budget (no file it writes can grow beyond it: a pwrite past it fails with EFBIG, SIGXFSZ being
 * ignored), so a file made huge by a sparse entry's offsets, which layer.c's byte count (bytes read) does not
 * see, stops there; and a crash in libarchive or in our parsing ends the child, not nexd.  The parent gets the
 * outcome (0, or the error's kind, field and message) and the budget used over a pipe, as one fixed record.
 *
 * Forking a threaded process: the child runs only this thread, uses glibc's malloc (fork-safe) and no lock of
 * nexd's (layer.c logs nothing), and ends with _exit.  It dies with its parent (PR_SET_PDEATHSIG). */
#ifndef NEX_UNPACK_H
#define NEX_UNPACK_H

#include <stddef.h>

#include "common/error.h"
#include "server/artifacts/layer.h"

/* One layer of an image: its blob and the config's diff_id for it. */
typedef struct nex_unpack_layer
{
  const char *blob_path;
  const char *diff_id;
} nex_unpack_layer_t;

/* Applies the N LAYERS (bottom first) onto the tree whose root is ROOT_FD, then checks it and makes its mount
 * points (nex_layer_apply, nex_layer_finish_root), in a child as above; BUDGET's counts are updated.  0, or -1
 * with *ERR as those functions set it (or saying how the child ended).  The tree must be thrown away after a
 * failure.  Any thread; waits for the child. */
int nex_unpack_tree (int root_fd, const nex_unpack_layer_t *layers, size_t n, nex_layer_budget_t *budget,
                     nex_error_t *err);

#endif
