/* SPDX-License-Identifier: Apache-2.0 */
/* image-root.h — how a sandbox gets an OCI image's root: an overlay on the shared tree, or a private copy.
 *
 * The sandbox's overlay (drivers/sandbox.c: the tree as lowerdir, a tmpfs upper of disk_mb, `userxattr`) is
 * mounted by the sandbox's root in its user namespace, which kernels before 5.11, and kernels or security
 * modules that forbid it, refuse.  The node finds out once, at start (image_root auto: a probe sandbox mounts
 * such an overlay, nex_sandbox_probe_overlay), and keeps the verdict, shown in GET /v1/node for the sandbox
 * driver (drivers[].image_root, image_root_reason).  Where the overlay is refused (or image_root is copy), each
 * image workload gets a private copy of the tree instead, made by nexd in its run dir before the sandbox
 * starts and bound as its root (read-write): slower to start and using the image's size on disk per workload,
 * its writes bounded by the data dir's file system rather than disk_mb, but every workload still sees only its
 * own writes.  The copy goes with the run dir (the sandbox's destroy).
 *
 * The verdict is set once at start-up, before any workload runs, and read-only afterwards: any thread. */
#ifndef NEX_IMAGE_ROOT_H
#define NEX_IMAGE_ROOT_H

#include "common/error.h"

#define NEX_IMAGE_ROOT_COPY_DIR "copy" /* the private copy's name in a sandbox's run dir */

/* Records the node's verdict: OVERLAY 1 (usable) or 0 with REASON (copied) saying why not. */
void nex_image_root_set (int overlay, const char *reason);

/* Whether image sandboxes get an overlay (1) or a private copy (0, *REASON then says why; caller frees). */
int nex_image_root_overlay (char **reason);

/* What GET /v1/node shows: "overlay" or "copy". */
const char *nex_image_root_name (void);

/* Releases the recorded reason (at shutdown). */
void nex_image_root_release (void);

/* Copies the image tree TREE to DST (which must not exist), as root: directories, regular files (their bytes
 * with copy_file_range), symlinks (their targets as they are: they resolve inside the sandbox's root), with
 * their modes and owners; a hardlink becomes a file of its own; nothing is followed.  Refused: anything else
 * (the store made no such entry).  On failure DST is removed.  0 or -1. */
int nex_image_root_copy (const char *tree, const char *dst, nex_error_t *err);

/* The probe (drivers/sandbox.c): starts a sandbox in RUN_DIR/.overlay-probe whose root is an overlay on a tiny
 * tree, as an image workload's would be, and that ends once its root is built.  1 when it was, else 0 with
 * *REASON (caller frees: what failed, e.g. "sandbox set-up failed: mount the image overlay: Operation not
 * permitted").  AGENT_PATH is nex-agent (bound, never run).  Root only; at start-up, before workloads run. */
int nex_sandbox_probe_overlay (const char *run_dir, const char *agent_path, char **reason);

/* Removes the private copy in RUN_DIR, if there is one.  Best effort. */
void nex_image_root_remove_copy (const char *run_dir);

#endif
