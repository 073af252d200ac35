/* SPDX-License-Identifier: Apache-2.0 */
/* drivers/qemu-snapshot.c — pausing, continuing and snapshotting a QEMU microVM through its QMP monitor.
 *
 * Pause is QMP `stop` (the vCPUs halt; QEMU keeps the guest's memory and uses no CPU), resume is `cont`: unlike
 * the cgroup freezer, the guest's clock and devices stop in step, and QEMU stays able to answer (a snapshot of a
 * paused VM needs that).  A snapshot is QEMU's migration stream written to a file: `stop`, `getfd` with the
 * file's descriptor, `migrate fd:<name>`, then `query-migrate` until it says completed (or failed), then `cont`
 * unless the VM was paused before.  No shell and no path reaches QEMU: it is handed an open descriptor.  The
 * stream holds RAM, device and vCPU state; a restore (qemu.c) starts a QEMU with the same machine options and
 * `-incoming fd:N` on the file, and the guest goes on where it stopped. */
#include "server/drivers/qemu-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/clock.h"
#include "server/drivers/qemu-qmp.h"

#define SNAPSHOT_FD_NAME "nex-snapshot" /* the descriptor's name in QEMU (getfd) */
#define SNAPSHOT_MAX_MS (300 * 1000)    /* a migration to a local file that takes longer has failed */
#define SNAPSHOT_POLL_MS 5              /* between two query-migrate */

int
nex_qemu_pause (const nex_driver_t *d, const nex_instance_t *i, int paused, nex_error_t *err)
{
  cleanup_free char *path = nex_xasprintf ("%s/" NEX_QEMU_QMP_SOCK, i->run_dir);
  if (access (path, F_OK) < 0 && errno == ENOENT)
    return 0; /* a VM from before QMP: its VMM's cgroup is frozen instead */
  return nex_qmp_run (path, paused ? "stop" : "cont", NULL, err) < 0 ? -1 : 1;
}

/* Waits for the migration Q started to end: 0 when QEMU says completed, else -1 with its reason. */
static int
wait_migration (nex_qmp_t *q, nex_error_t *err)
{
  int64_t until = nex_clock_mono_ms () + SNAPSHOT_MAX_MS;
  struct timespec pause = { 0, SNAPSHOT_POLL_MS * 1000 * 1000 };
  for (;;)
    {
      cleanup_json json_t *info = nex_qmp_execute (q, "query-migrate", NULL, err);
      if (info == NULL)
        return -1;
      const char *status = json_string_value (json_object_get (info, "status"));
      if (status && strcmp (status, "completed") == 0)
        return 0;
      if (status && (strcmp (status, "failed") == 0 || strcmp (status, "cancelled") == 0))
        {
          const char *why = json_string_value (json_object_get (info, "error-desc"));
          return nex_error_set (err, NEX_ERR_SYSTEM, "QEMU's migration to the snapshot file %s%s%.300s", status,
                                why ? ": " : "", why ? why : "");
        }
      if (nex_clock_mono_ms () > until)
        return nex_error_set (err, NEX_ERR_TIMEOUT, "QEMU's migration to the snapshot file took over %d s",
                              SNAPSHOT_MAX_MS / 1000);
      nanosleep (&pause, NULL);
    }
}

/* With the VM stopped: QEMU writes its state to FD.  0 or -1. */
static int
write_state (nex_qmp_t *q, int fd, nex_error_t *err)
{
  cleanup_json json_t *got = nex_qmp_execute_fd (q, "getfd", json_pack ("{s:s}", "fdname", SNAPSHOT_FD_NAME), fd, err);
  if (got == NULL)
    return -1;
  cleanup_json json_t *started
      = nex_qmp_execute (q, "migrate", json_pack ("{s:s}", "uri", "fd:" SNAPSHOT_FD_NAME), err);
  if (started == NULL || wait_migration (q, err) < 0)
    return -1;
  if (fsync (fd) < 0)
    return nex_error_sys (err, errno, "fsync the snapshot file");
  return 0;
}

int
nex_qemu_snapshot (const nex_driver_t *d, const nex_instance_t *i, const char *path, int was_paused, nex_error_t *err)
{
  cleanup_free char *qmp_path = nex_xasprintf ("%s/" NEX_QEMU_QMP_SOCK, i->run_dir);
  if (access (qmp_path, F_OK) < 0 && errno == ENOENT)
    return nex_error_set (err, NEX_ERR_CONFLICT,
                          "this VM was started by an older nexd, without the QMP monitor a "
                          "snapshot needs");
  cleanup_with (nex_qmp_closep) nex_qmp_t *q = nex_qmp_open (qmp_path, err);
  if (q == NULL)
    return -1;
  cleanup_close int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return nex_error_sys (err, errno, "create the snapshot file `%s`", path);
  cleanup_json json_t *stopped = was_paused ? json_object () : nex_qmp_execute (q, "stop", NULL, err);
  int r = stopped ? write_state (q, fd, err) : -1;
  if (stopped && !was_paused)
    {
      /* The guest goes on whether the snapshot was written or not. */
      cleanup_error nex_error_t cerr = NULL;
      cleanup_json json_t *cont = nex_qmp_execute (q, "cont", NULL, &cerr);
      if (cont == NULL && r == 0)
        {
          nex_error_set (err, NEX_ERR_SYSTEM, "the snapshot was written, but the VM did not continue: %s", cerr->msg);
          r = -1;
        }
    }
  if (r < 0)
    unlink (path);
  return r;
}
