/* SPDX-License-Identifier: Apache-2.0 */
/* qemu-qmp.h — a small client of the QEMU Machine Protocol, over the unix socket a microVM's QEMU listens on.
 *
 * QMP is line-delimited JSON: QEMU greets ({"QMP": ...}), the client leaves capability negotiation with
 * qmp_capabilities, then each {"execute": CMD, "arguments": {...}} is answered by {"return": ...} or {"error":
 * {class, desc}}, with asynchronous {"event": ...} lines in between (skipped here).  A session is short: open,
 * a few commands, close; QEMU takes one QMP client at a time, so a second caller waits in the socket's backlog.
 *
 * QEMU runs the guest, and the guest cannot write to this socket: what arrives is QEMU's, still each line is
 * bounded (NEX_QMP_MAX_LINE) and every wait has a deadline. */
#ifndef NEX_QEMU_QMP_H
#define NEX_QEMU_QMP_H

#include <jansson.h>

#include "common/error.h"

#define NEX_QMP_MAX_LINE 65536  /* a longer line from QEMU is a protocol error */
#define NEX_QMP_TIMEOUT_MS 5000 /* for one answer */

typedef struct nex_qmp
{
  int fd;
  char buf[NEX_QMP_MAX_LINE];
  size_t len; /* bytes of buf not yet consumed */
} nex_qmp_t;

/* Connects to the QMP socket PATH, reads the greeting and negotiates capabilities.  Returns a session the
 * caller ends with nex_qmp_close, or NULL (NEX_ERR_UNAVAILABLE when nothing listens there). */
nex_qmp_t *nex_qmp_open (const char *path, nex_error_t *err);

/* Runs CMD with ARGS (stolen; NULL: none) and returns its "return" member (new reference; an empty object when
 * QEMU answered none), or NULL with *ERR: QEMU's error class and description (NEX_ERR_CONFLICT), a timeout
 * (NEX_ERR_TIMEOUT), or a broken session. */
json_t *nex_qmp_execute (nex_qmp_t *q, const char *cmd, json_t *args, nex_error_t *err);

/* As nex_qmp_execute, with descriptor FD passed along (SCM_RIGHTS; QEMU's getfd takes it). */
json_t *nex_qmp_execute_fd (nex_qmp_t *q, const char *cmd, json_t *args, int fd, nex_error_t *err);

/* Runs CMD on a session of its own at PATH and discards the answer: open, execute, close.  0 or -1. */
int nex_qmp_run (const char *path, const char *cmd, json_t *args, nex_error_t *err);

/* Ends the session; NULL is fine. */
void nex_qmp_close (nex_qmp_t *q);

/* For cleanup_with. */
void nex_qmp_closep (nex_qmp_t **q);

#endif
