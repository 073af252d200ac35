/* SPDX-License-Identifier: Apache-2.0 */
/* supervisor.h — the one owner of every workload's lifecycle after it is accepted.
 *
 * One thread runs an epoll loop over: a wake-up eventfd for commands (deploy, stop) queued by other threads,
 * each live sandbox's agent connection, and each agent's pidfd.  It alone moves workloads between states
 * (persisting each change before acting on it), fetches artifacts, starts drivers, speaks the wire protocol,
 * splits output into log lines and stores them.  Other threads only queue commands (cheap, never blocking on a
 * workload).
 *
 * Workloads outlive nexd: shutting the supervisor down closes its connections but leaves sandboxes running;
 * nex_supervisor_start re-attaches to them (dialing each recorded endpoint; the agent answers with its state),
 * fails those whose agent is gone, and re-queues workloads still pending.
 *
 * The code: supervisor.c (the thread, commands, the agent channel), supervisor-exec.c (exec sessions),
 * supervisor-lease.c (leases of cluster workloads), recover.c (node start), sharing supervisor-internal.h. */
#ifndef NEX_SUPERVISOR_H
#define NEX_SUPERVISOR_H

#include <stdint.h>

#include "common/error.h"
#include "server/exec.h"
#include "server/node.h"

/* The reason recorded for a workload whose agent ended it because its lease ran out (supervisor-lease.c): the
 * cluster keeps such a workload's desired state, to run it again once the node holds its lease. */
#define NEX_LEASE_EXPIRED_REASON "lease expired: nexd did not renew it"

/* Recovers the registry's live workloads and starts the supervisor thread.  NULL on failure. */
nex_supervisor_t *nex_supervisor_start (nex_node_t *node, nex_error_t *err);

/* Stops the thread and frees the supervisor; workloads keep running.  Safe on NULL.  Not from the
 * supervisor thread. */
void nex_supervisor_shutdown (nex_supervisor_t *sup);

/* Queues the start of pending workload ID.  Any thread. */
void nex_supervisor_deploy (nex_supervisor_t *sup, const char *id);

/* Queues a stop of workload ID: SIGTERM, then SIGKILL after GRACE_MS.  Any thread. */
void nex_supervisor_stop (nex_supervisor_t *sup, const char *id, int64_t grace_ms);

/* Queues pausing (PAUSED true: its processes frozen with the cgroup freezer, state `paused`, event
 * workload_paused) or resuming (thawed, state `running`, event workload_resumed) of workload ID.  Nothing happens
 * if it is not running (or paused, to resume) by then; a failure is logged and reported as the event
 * workload_pause_failed.  Any thread. */
void nex_supervisor_pause (nex_supervisor_t *sup, const char *id, int paused);

/* Queues delivery of signal SIG to workload ID's main process (nothing happens if it has ended meanwhile).  Any
 * thread. */
void nex_supervisor_signal (nex_supervisor_t *sup, const char *id, int sig);

/* Fails the exec requests that API threads are waiting for and refuses new ones, so that stopping the API does
 * not wait for commands still running in sandboxes.  Any thread; called once at shutdown, before the API stops. */
void nex_supervisor_quiesce (nex_supervisor_t *sup);

/* Runs SPEC inside running workload ID's sandbox (an exec session through its agent) and waits for it: fills *OUT
 * (release with nex_exec_result_release) or fails with NEX_ERR_CONFLICT (the workload is not running or ended
 * meanwhile), NEX_ERR_INVALID naming argv[0] (the program does not exist or cannot run in the sandbox) or
 * NEX_ERR_UNAVAILABLE (too many execs at once, no answer).  Blocks the calling thread for up to the spec's
 * timeout plus a few seconds; at most api_threads - 1 callers wait at once.  Not from the supervisor thread. */
int nex_supervisor_exec (nex_supervisor_t *sup, const char *id, const nex_exec_spec_t *spec, nex_exec_result_t *out,
                         nex_error_t *err);

/* Starts interactive SPEC (spec->interactive) inside running workload ID's sandbox and waits until the process
 * runs: *OUT is the session (the caller's reference, given back with nex_supervisor_exec_close).  Fails as
 * nex_supervisor_exec does, and with NEX_ERR_UNAVAILABLE beyond NEX_SUPERVISOR_MAX_SESSIONS open sessions.  Blocks
 * the calling thread for at most a few seconds, counted among the waiting execs.  Not from the supervisor
 * thread. */
#define NEX_SUPERVISOR_MAX_SESSIONS 64
int nex_supervisor_exec_open (nex_supervisor_t *sup, const char *id, const nex_exec_spec_t *spec, nex_exec_t **out,
                              nex_error_t *err);

/* Queues a frame for session X's process: TYPE is NEX_WIRE_STDIN (raw bytes; an empty one closes stdin),
 * NEX_WIRE_RESIZE or NEX_WIRE_SIGNAL (a JSON object as text).  Counted with nex_exec_input_add until sent.  Any
 * thread. */
void nex_supervisor_exec_input (nex_supervisor_t *sup, nex_exec_t *x, int type, const void *data, size_t len);

/* Ends session X (its process is killed if it still runs) and drops the caller's reference.  Any thread; once per
 * successful nex_supervisor_exec_open. */
void nex_supervisor_exec_close (nex_supervisor_t *sup, nex_exec_t *x);
/* Queues exec request X (its spec as nex_supervisor_exec's) without waiting: the supervisor takes a reference
 * and completes X later (nex_exec_finish / nex_exec_fail, which run X's completion callback), whatever happens —
 * the workload ends, the agent does not answer (after the timeout and some slack), nexd shuts down.  Not bounded
 * here: the caller bounds how many it has in flight.  -1 (NEX_ERR_UNAVAILABLE) when nexd is shutting down; X is
 * then not completed.  Any thread. */
int nex_supervisor_exec_submit (nex_supervisor_t *sup, nex_exec_t *x, nex_error_t *err);

/* The warm pool's sandboxes ready now, with *SIZE set to how many it keeps (0, and 0 returned, when the node
 * keeps none: --warm-sandboxes 0).  Any thread. */
int nex_supervisor_warm (nex_supervisor_t *sup, int *size);

#endif
