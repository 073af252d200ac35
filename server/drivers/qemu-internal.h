/* SPDX-License-Identifier: Apache-2.0 */
/* qemu-internal.h — what the QEMU driver's files share: qemu.c (start, the table) and qemu-snapshot.c (pause,
 * continue and snapshot over QMP).  Not for callers outside server/drivers/qemu*.c. */
#ifndef NEX_QEMU_INTERNAL_H
#define NEX_QEMU_INTERNAL_H

#include "server/drivers/driver.h"

/* In the run dir: QEMU's QMP monitor, a socket nexd listens on and hands to QEMU (`-chardev socket,fd=N` +
 * `-mon mode=control`), as it does the agent's.  A VM started before QMP was used has none. */
#define NEX_QEMU_QMP_SOCK "qmp.sock"

/* The pause op: QMP `stop` / `cont`; 0 (the cgroup freezer, then) for a VM without a QMP socket. */
int nex_qemu_pause (const nex_driver_t *d, const nex_instance_t *i, int paused, nex_error_t *err);

/* The snapshot op: QMP `stop`, then `migrate` to PATH (a descriptor passed with `getfd`), waiting for the
 * migration to complete, then `cont` unless WAS_PAUSED.  A restore is `-incoming fd:N` on that file. */
int nex_qemu_snapshot (const nex_driver_t *d, const nex_instance_t *i, const char *path, int was_paused,
                       nex_error_t *err);

#endif
