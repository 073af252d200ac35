/* SPDX-License-Identifier: Apache-2.0 */
/* artifacts/image-config.h — what an image workload runs: the OCI image config turned into a process.
 *
 * By the image spec's conversion rules (conversion.md), with the request's overrides:
 *   argv  the request's `entrypoint` (which drops the image's Cmd, as Docker does) or the image's Entrypoint,
 *         followed by the request's `cmd` or the image's Cmd; nothing at all is a refusal (field "cmd");
 *   env   the image's Env, the request's `env` on top; PATH defaults to the usual list and HOME to the user's home
 *         (from /etc/passwd) or `/` when the image sets neither;
 *   cwd   the request's `cwd`, else the image's WorkingDir, else `/`; it must be absolute, without `.`/`..`, and not
 *         under /proc (a WorkingDir like /proc/self/fd/N would start the process outside its root:
 *         CVE-2024-21626);
 *   user  the request's `user`, else the image's User, else root: `uid[:gid]` numbers, or names looked up in the
 *         image's own /etc/passwd and /etc/group, read inside the image's tree (openat2 RESOLVE_IN_ROOT: the
 *         image's symlinks resolve inside it); a name that is not there is a refusal naming it (field "user").
 *         A named user also gets the supplementary groups /etc/group lists it in.  Ids must lie in the sandbox's
 *         range (below 65536).
 * Thread safety: reentrant. */
#ifndef NEX_IMAGE_CONFIG_H
#define NEX_IMAGE_CONFIG_H

#include <jansson.h>

#include "common/error.h"
#include "server/workload.h"

#define NEX_IMAGE_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The process workload W runs from image CONFIG (the whole config JSON) whose tree is TREE: a new object
 * {path, argv, env, cwd, uid, gid, groups, user}, or NULL with NEX_ERR_INVALID naming the field at fault. */
json_t *nex_image_config_process (const json_t *config, const nex_workload_t *w, const char *tree, nex_error_t *err);

#endif
