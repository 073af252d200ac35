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
 * The child is a fresh image of nexd, not only a fork of it: a fork of a threaded process inherits every lock
 * another thread held at that moment, and under AddressSanitizer (whose allocator the fork does not reset) an
 * unpack child hung on one in CI.  So the forked child at once executes /proc/self/exe as NEX_UNPACK_ARGV0 with
 * the layers, the budget and two descriptors (the tree's root, the report pipe) on its command line, and nexd's
 * main hands that invocation to nex_unpack_child_main.  It dies with its parent (PR_SET_PDEATHSIG). */
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
/* argv[0] of the unpack child's image; nexd's main runs nex_unpack_child_main when it is started so. */
#define NEX_UNPACK_ARGV0 "nexd-unpack"

/* The unpack child's main: ARGV as nex_unpack_tree builds it.  Does not return when ARGV is well formed (the
 * report goes over the pipe, then _exit); 2 for a command line it does not know (not for people to run). */
int nex_unpack_child_main (int argc, char **argv);

int nex_unpack_tree (int root_fd, const nex_unpack_layer_t *layers, size_t n, nex_layer_budget_t *budget,
                     nex_error_t *err);

#endif
