/* SPDX-License-Identifier: Apache-2.0 */
/* notify.h — telling the service manager how nexd is doing (systemd's Type=notify, sd_notify(3)'s protocol).
 *
 * The protocol is one datagram of newline-separated VARIABLE=VALUE lines sent to the AF_UNIX socket that
 * $NOTIFY_SOCKET names: a path, or an abstract socket name when it starts with '@'.  nexd sends READY=1 once its
 * API listens (so a unit ordered After=nexd.service can use it at once) and STOPPING=1 when a signal starts its
 * shutdown, each with a STATUS= line for `systemctl status`.  Without $NOTIFY_SOCKET (nexd was not started by a
 * service manager that asked for this) nothing is sent.  Implemented here rather than with libsystemd: it is one
 * sendto(2), not worth a dependency.
 *
 * State: the socket's address, kept by nex_notify_init for the later sends; read-only after it. */
#ifndef NEX_NOTIFY_H
#define NEX_NOTIFY_H

#include "common/error.h"

/* Takes $NOTIFY_SOCKET out of the environment, so that nothing nexd starts (a VMM, a helper) inherits it and could
 * speak for the node, and keeps its address for nex_notify_send.  Call once, from main, before any thread exists.
 * 0 (also without the variable), or -1 with ERR when it names no socket this protocol can reach (not absolute nor
 * '@', too long for a socket address); sends are then no-ops. */
int nex_notify_init (nex_error_t *err);

/* Sends STATE ("READY=1\nSTATUS=...") to the service manager.  0 (also when there is none to tell), or -1 with
 * ERR when the datagram could not be sent.  Any thread, after nex_notify_init. */
int nex_notify_send (const char *state, nex_error_t *err);

#endif
