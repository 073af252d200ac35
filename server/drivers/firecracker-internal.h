/* SPDX-License-Identifier: Apache-2.0 */
/* firecracker-internal.h — what the Firecracker driver's files share: firecracker.c (start, connect, the table)
 * and firecracker-snapshot.c (pause, resume, snapshot create and load).  Not for other callers. */
#ifndef NEX_FIRECRACKER_INTERNAL_H
#define NEX_FIRECRACKER_INTERNAL_H

#include <jansson.h>

#include "server/drivers/driver.h"

/* METHOD (PUT or PATCH) PATH with BODY (stolen) on the API socket SOCK (libcurl).  0 on a 2xx answer; otherwise
 * -1 with Firecracker's fault_message when it gave one. */
int nex_fc_call (const char *sock, const char *method, const char *path, json_t *body, long timeout_ms,
                 nex_error_t *err);

/* The pause op: PATCH /vm {state: Paused | Resumed}. */
int nex_fc_pause (const nex_driver_t *d, const nex_instance_t *i, int paused, nex_error_t *err);

/* The snapshot op: Paused (unless WAS_PAUSED), PUT /snapshot/create {Full, snapshot_path PATH, mem_file_path
 * PATH.mem}, Resumed. */
int nex_fc_snapshot (const nex_driver_t *d, const nex_instance_t *i, const char *path, int was_paused,
                     nex_error_t *err);

/* The snapshot's second file: the guest's memory. */
extern const char *const nex_fc_snapshot_suffixes[];

/* A restore, on a fresh Firecracker whose API is API: PUT /snapshot/load {snapshot_path PATH, mem_backend {File,
 * PATH.mem}, resume_vm, vsock_override {uds_path VSOCK}} (the vsock socket in the new run dir, not the source's). */
int nex_fc_restore (const char *path, const char *api, const char *vsock, nex_error_t *err);

#endif
