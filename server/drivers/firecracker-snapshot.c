/* SPDX-License-Identifier: Apache-2.0 */
/* drivers/firecracker-snapshot.c — pausing, snapshotting and restoring a Firecracker microVM over its API, as
 * Firecracker's API description (1.17) gives them:
 *
 *     PATCH /vm              {state: Paused | Resumed}                        pause, resume
 *     PUT /snapshot/create   {snapshot_type: Full, snapshot_path, mem_file_path}   the VM must be Paused
 *     PUT /snapshot/load     {snapshot_path, mem_backend {backend_type: File, backend_path}, resume_vm: true,
 *                             vsock_override {uds_path}}                      on a fresh process only
 *
 * A snapshot is two files: the VM state at PATH and the guest memory at PATH.mem (snapshot_suffixes).  nexd
 * creates both first (O_EXCL, 0600) so that Firecracker writes into files only nexd's user can read.  A restore
 * loads them in a new Firecracker with the vsock socket moved to the new run dir (vsock_override: the snapshot
 * names the source's); the root drive's path is the image cache's, the same for the source and the restore.
 * The agent's vsock listener survives the restore (Firecracker resets only established connections), so the
 * connect op reaches it as after a boot, and its HELLO says `running`.  Checked against the API description with
 * the stand-in only (no Firecracker can run here). */
#include "server/drivers/firecracker-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"

#define FC_SNAPSHOT_TIMEOUT_MS (300 * 1000) /* writing or loading a guest's memory */
#define FC_STATE_TIMEOUT_MS 10000

const char *const nex_fc_snapshot_suffixes[] = { ".mem", NULL };

/* I's API socket (caller frees). */
static char *
api_of (const nex_instance_t *i)
{
  return nex_xasprintf ("%s/api.sock", i->run_dir);
}

int
nex_fc_pause (const nex_driver_t *d, const nex_instance_t *i, int paused, nex_error_t *err)
{
  cleanup_free char *api = api_of (i);
  json_t *body = json_pack ("{s:s}", "state", paused ? "Paused" : "Resumed");
  return nex_fc_call (api, "PATCH", "/vm", body, FC_STATE_TIMEOUT_MS, err) < 0 ? -1 : 1;
}

/* Creates PATH empty (mode 0600, not there before).  0 or -1. */
static int
create_private (const char *path, nex_error_t *err)
{
  cleanup_close int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return nex_error_sys (err, errno, "create the snapshot file `%s`", path);
  return 0;
}

int
nex_fc_snapshot (const nex_driver_t *d, const nex_instance_t *i, const char *path, int was_paused, nex_error_t *err)
{
  cleanup_free char *api = api_of (i);
  cleanup_free char *mem = nex_xasprintf ("%s%s", path, nex_fc_snapshot_suffixes[0]);
  if (create_private (path, err) < 0)
    return -1;
  int r = create_private (mem, err);
  int stopped = r == 0 && (was_paused || nex_fc_pause (d, i, 1, err) == 1);
  if (stopped)
    r = nex_fc_call (
        api, "PUT", "/snapshot/create",
        json_pack ("{s:s, s:s, s:s}", "snapshot_type", "Full", "snapshot_path", path, "mem_file_path", mem),
        FC_SNAPSHOT_TIMEOUT_MS, err);
  else
    r = -1;
  if (stopped && !was_paused)
    {
      /* The guest goes on whether the snapshot was written or not. */
      cleanup_error nex_error_t rerr = NULL;
      if (nex_fc_pause (d, i, 0, &rerr) < 0 && r == 0)
        r = nex_error_set (err, NEX_ERR_SYSTEM, "the snapshot was written, but the VM did not resume: %s", rerr->msg);
    }
  if (r < 0)
    nex_driver_snapshot_remove (d, path, NULL);
  return r;
}

int
nex_fc_restore (const char *path, const char *api, const char *vsock, nex_error_t *err)
{
  cleanup_free char *mem = nex_xasprintf ("%s%s", path, nex_fc_snapshot_suffixes[0]);
  json_t *body = json_pack ("{s:s, s:{s:s, s:s}, s:b, s:{s:s}}", "snapshot_path", path, "mem_backend", "backend_type",
                            "File", "backend_path", mem, "resume_vm", 1, "vsock_override", "uds_path", vsock);
  return nex_fc_call (api, "PUT", "/snapshot/load", body, FC_SNAPSHOT_TIMEOUT_MS, err);
}
