/* SPDX-License-Identifier: Apache-2.0 */
/* supervisor-internal.h — what the supervisor's files share; nothing outside them includes it (others use
 * supervisor.h).
 *
 *   supervisor.c        the thread and its epoll loop, the command queue, the agent channel (frames, output,
 *                       exits, restarts), deploy and stop, the end of an environment
 *   supervisor-exec.c   exec sessions: the API side (slots, waiting) and the supervisor side (channels, frames,
 *                       input, deadlines)
 *   supervisor-record.c state transitions written to the registry and reported as events; those a full disk
 *                       refused kept in order and written again
 *   supervisor-lease.c  the leases of restartable cluster workloads, renewed on their agents while the node holds
 *                       its own (common/wire.h, "Leases")
 *   recover.c           node start: re-attaching to the sandboxes recorded as live, sweeping what crashed deploys
 *                       left behind
 *
 * Everything here belongs to the supervisor thread, except what is marked "under queue_lock".  Functions shared
 * between the files are named nex_sup_* (supervisor.h's public ones are nex_supervisor_*); unless a contract says
 * otherwise they run on the supervisor thread (recovery runs before it starts, which is the same for them). */
#ifndef NEX_SUPERVISOR_INTERNAL_H
#define NEX_SUPERVISOR_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "common/wire.h"
#include "server/drivers/driver.h"
#include "server/drivers/resync.h"
#include "server/drivers/sandbox-pool.h"
#include "server/exec.h"
#include "server/id.h"
#include "server/output.h"
#include "server/supervisor.h"

#define NEX_SUP_MAX_LINE 16384 /* longer output lines are split */

/* What other threads ask of the supervisor thread. */
typedef enum
{
  NEX_SUP_CMD_DEPLOY,
  NEX_SUP_CMD_STOP,
  NEX_SUP_CMD_SIGNAL,
  NEX_SUP_CMD_PAUSE,
  NEX_SUP_CMD_EXEC,
  NEX_SUP_CMD_EXEC_INPUT, /* a frame for an interactive session */
  NEX_SUP_CMD_EXEC_CLOSE, /* its client is gone */
  NEX_SUP_CMD_IMAGE,      /* an image workload's pull ended (data: digest, or the reason when signal is 0) */
} nex_sup_cmd_kind_t;

typedef struct nex_sup_cmd
{
  nex_sup_cmd_kind_t kind;
  char id[NEX_ID_LEN + 1];
  int64_t grace_ms;   /* CMD_STOP */
  int signal;         /* CMD_SIGNAL */
  int paused;         /* CMD_PAUSE: 1 pause, 0 resume */
  nex_exec_t *exec;   /* CMD_EXEC: a reference */
  nex_exec_t *target; /* CMD_EXEC_INPUT, CMD_EXEC_CLOSE: a reference */
  int frame_type;     /* CMD_EXEC_INPUT */
  uint8_t *data;      /* CMD_EXEC_INPUT: the payload, owned */
  size_t len;
  struct nex_sup_cmd *next;
} nex_sup_cmd_t;

typedef struct nex_sup_entry nex_sup_entry_t;
typedef struct nex_sup_unrecorded nex_sup_unrecorded_t; /* supervisor-record.c */

/* What an epoll event refers to. */
typedef struct nex_sup_ref
{
  nex_sup_entry_t *e; /* NULL: the wake-up eventfd */
  int is_pidfd;
  int is_console; /* the environment's console output (drivers with connect_console) */
} nex_sup_ref_t;

/* A partial output line.  BUF (NEX_SUP_MAX_LINE bytes) is made the first time a line has to wait for its end, so
 * that an idle workload, or one that writes whole lines, costs no buffer (three were 48 KiB per workload). */
typedef struct nex_sup_linebuf
{
  char *buf; /* NULL until needed; freed with the entry */
  size_t len;
} nex_sup_linebuf_t;

/* One live sandbox (or VM). */
struct nex_sup_entry
{
  char id[NEX_ID_LEN + 1];
  const nex_driver_t *driver;
  nex_instance_t inst;
  int conn;  /* agent connection, -1 when closed */
  int pidfd; /* watches inst.pid, -1 if unavailable */
  nex_wire_reader_t reader;
  nex_sup_linebuf_t lines[3]; /* partial stdout / stderr / console line */
  nex_output_t *output;       /* complete lines waiting to be stored (made at the first), or NULL */
  int64_t output_due;         /* monotonic ms by which they are stored; 0: none wait */
  int64_t output_stored_at;   /* monotonic ms of the last store */
  /* The workload's stdout [0] and stderr [1] by offset (common/wire.h, "Output that survives a nexd crash"): */
  int64_t out_next[2];     /* of the next byte the connection brings; -1: the agent did not say (no numbering) */
  int64_t out_have[2];     /* after the last byte taken in (bytes before it that come again are skipped) */
  int64_t out_line_end[2]; /* after the last complete line handed to `output`: what a store covers */
  nex_sup_ref_t conn_ref, pid_ref, console_ref;
  int console;   /* console output connection, -1 when none */
  int resyncing; /* re-attached to a stream endpoint: waiting for the agent's answer to our greeting */
  nex_resync_t resync;
  int64_t greet_at;    /* monotonic ms of the next greeting while resyncing; 0: none */
  int64_t greet_until; /* monotonic ms after which an unanswered greeting means the agent is lost */
  int64_t hello_by;    /* monotonic ms by which a new environment's agent must have greeted; 0: it did */
  int boot_timed_out;  /* it did not, and the environment was killed for it */
  int start_sent;      /* START was sent (or the agent said it had started) */
  int final;           /* the workload reached a final state; waiting for the agent to go */
  int stop_requested;
  int paused;            /* its cgroup is frozen (state `paused`) */
  int greet_deferred;    /* re-attached paused to a stream endpoint: greeted once it is resumed */
  int64_t kill_at;       /* monotonic ms after which the driver kills the sandbox; 0: none */
  char *agent_error;     /* last ERROR message from the agent */
  char *lost_reason;     /* why the channel was given up, when it was */
  int64_t oom_seen;      /* the cgroup's OOM-kill count already accounted for (restarts share the cgroup) */
  int64_t restart_at;    /* monotonic ms at which the ended workload is started again; 0: no restart pending */
  nex_exec_t *execs;     /* exec sessions in flight on this agent connection */
  json_t *exec_base;     /* what every exec starts from, read once (supervisor-exec.c), or NULL */
  uint16_t last_channel; /* the last exec channel handed out */
  int from_pool;         /* started in a warm sandbox: the pool is told to make another once it runs */
  int leased;            /* a restartable cluster workload: its agent holds a lease (supervisor-lease.c) */
  int64_t lease_at;      /* monotonic ms of the next renewal; 0: none */
  nex_sup_entry_t *next;
};

struct nex_supervisor
{
  nex_node_t *node;
  pthread_t thread;
  int epfd;
  int wakefd;
  nex_sup_ref_t wake_ref;
  nex_sup_entry_t *entries;
  pthread_mutex_t queue_lock;
  nex_sup_cmd_t *queue_head, *queue_tail;
  int shutting_down;                /* under queue_lock */
  json_t *seccomp;                  /* the default seccomp profile (seccomp.h), sent with every START and EXEC */
  int64_t execs_waiting;            /* API threads inside nex_supervisor_exec (under queue_lock) */
  nex_exec_t **waiting;             /* their requests (under queue_lock), so that shutdown can release them at once */
  int refusing_execs;               /* set by nex_supervisor_quiesce (under queue_lock) */
  int sessions;                     /* interactive sessions open (under queue_lock) */
  nex_sup_unrecorded_t *unrecorded; /* transitions the registry refused, oldest first (supervisor-record.c) */
  int64_t unrecorded_retry_at;      /* when to write them again (monotonic ms); 0: nothing kept */
  int64_t output_delay_ms;          /* how long lines wait before they are stored (grows with the cost of storing) */
  nex_sandbox_pool_t *pool;         /* warm sandboxes (--warm-sandboxes), NULL when none are kept */
};

/* Stores the output lines of E that wait (its deadline passed, it changes state, or it goes), and publishes them.
 * Does nothing when none wait.  supervisor.c. */
void nex_sup_output_flush (nex_supervisor_t *sup, nex_sup_entry_t *e);

/* --- supervisor-record.c -------------------------------------------------------------------------------------- */

/* Writes transition C of workload ID to the registry and reports it as event TYPE (NULL: none) with EXTRA (taken
 * over, may be NULL) merged into the event's data.  When the registry refuses for a reason that may pass (a
 * full disk), the transition and its event are kept and written later, in order (so are the workload's later
 * transitions, behind it); a refusal for good (leaving a final state) is logged and dropped. */
void nex_sup_transition (nex_supervisor_t *sup, const char *id, const nex_state_change_t *c, const char *type,
                         json_t *extra);

/* When the kept transitions are to be written again (monotonic ms), or 0 when none is kept. */
int64_t nex_sup_unrecorded_deadline (const nex_supervisor_t *sup);

/* Writes the kept transitions again if their time has come (NOW, monotonic ms), reporting those written. */
void nex_sup_unrecorded_retry (nex_supervisor_t *sup, int64_t now);

/* Drops the kept transitions (at shutdown), logging each. */
void nex_sup_unrecorded_free (nex_supervisor_t *sup);

/* --- supervisor.c --------------------------------------------------------------------------------------------- */

/* A new command of KIND for workload ID (zeroed otherwise); the caller fills the rest and queues it.  Any
 * thread. */
nex_sup_cmd_t *nex_sup_cmd_new (nex_sup_cmd_kind_t kind, const char *id);

/* Appends C (taken over) to the command queue and wakes the thread.  Any thread, without queue_lock. */
void nex_sup_enqueue (nex_supervisor_t *sup, nex_sup_cmd_t *c);

/* Appends C (taken over) to the command queue; the caller holds queue_lock and calls nex_sup_wake after
 * releasing it.  Any thread. */
void nex_sup_enqueue_locked (nex_supervisor_t *sup, nex_sup_cmd_t *c);

/* Wakes the supervisor thread to drain its queue.  Any thread. */
void nex_sup_wake (nex_supervisor_t *sup);

/* The live entry of workload ID, or NULL. */
nex_sup_entry_t *nex_sup_entry_find (nex_supervisor_t *sup, const char *id);

/* Watches the live environment INST (taken over, even on failure: INST is zeroed) of workload ID, run by D: opens
 * its pidfd, dials its agent (non-blocking from then on) and adds both to the loop.  The new entry, or NULL with
 * *ERR set (nothing is watched then; the environment itself is left as it is). */
nex_sup_entry_t *nex_sup_entry_attach (nex_supervisor_t *sup, const char *id, const nex_driver_t *d,
                                       nex_instance_t *inst, nex_error_t *err);

/* Connects E's console output into its `console` log stream, for drivers that have one; a failure is logged,
 * not returned (the workload runs without it). */
void nex_sup_attach_console (nex_supervisor_t *sup, nex_sup_entry_t *e);

/* Reads whether E's workload is leased (a cluster key label, a restart policy other than never) and, if so,
 * plans its first renewal now.  Called once per entry, when it is attached (supervisor-lease.c). */
void nex_sup_lease_init (nex_supervisor_t *sup, nex_sup_entry_t *e);

/* Sends LEASE to every leased entry whose renewal is due by NOW (paused ones excepted), with the time left of
 * node->lease_until (none when that has passed).  The deadline of the next renewal is each entry's lease_at. */
void nex_sup_lease_renew (nex_supervisor_t *sup, int64_t now);

/* Sends E's agent LEASE now if E is leased and the node holds its lease (as nex_sup_lease_renew does for one
 * entry).  Called before a paused workload is thawed, so that the renewal is waiting when its agent runs again. */
void nex_sup_lease_send (nex_supervisor_t *sup, nex_sup_entry_t *e, int64_t now);

/* Greets E's agent (again) with a nonce after a re-attach to a stream endpoint (driver.h: stream_endpoint), and
 * schedules the next greeting; the loop gives up on the agent when none is answered in time. */
void nex_sup_greet (nex_supervisor_t *sup, nex_sup_entry_t *e);

/* Gives up E's agent channel for REASON (copied): closes it, fails its exec sessions and, unless the workload
 * ended already, kills the environment (its pidfd then finalises the entry, with REASON as the failure). */
void nex_sup_close_conn (nex_supervisor_t *sup, nex_sup_entry_t *e, const char *reason);

/* Records workload ID as failed for REASON, with the event workload_failed. */
void nex_sup_fail_workload (nex_supervisor_t *sup, const char *id, const char *reason);

/* Adds to the START or EXEC request REQ what every process the agent starts for workload W gets: the seccomp
 * profile, the capabilities it keeps (as numbers; all others are dropped) and its working directory. */
void nex_sup_add_hardening (nex_supervisor_t *sup, json_t *req, const nex_workload_t *w);

/* --- supervisor-exec.c ---------------------------------------------------------------------------------------- */

/* Starts exec request X (the command's reference, taken over) on its workload's agent: a fresh channel, the EXEC
 * frame and, for a non-interactive one, its stdin.  X is failed (CONFLICT when the workload is not running) when
 * it cannot be started. */
void nex_sup_exec_run (nex_supervisor_t *sup, nex_exec_t *x);

/* Sends a frame of TYPE with DATA (LEN bytes) to interactive session X's process, when X still runs; counts the
 * bytes as sent (nex_exec_input_done) either way. */
void nex_sup_exec_input (nex_supervisor_t *sup, nex_exec_t *x, int type, const uint8_t *data, size_t len);

/* Session X's client is gone: its process is killed, and the agent has the usual slack to report the end. */
void nex_sup_exec_close (nex_supervisor_t *sup, nex_exec_t *x);

/* Handles frame F of E's agent on a channel other than 0: it belongs to an exec session (a frame of a session
 * given up already is ignored).  A malformed one closes the channel (nex_sup_close_conn). */
void nex_sup_exec_frame (nex_supervisor_t *sup, nex_sup_entry_t *e, const nex_wire_frame_t *f);

/* Ends every exec session of E with an error of KIND saying WHY (the workload or its channel is gone). */
void nex_sup_execs_fail_all (nex_sup_entry_t *e, nex_error_kind_t kind, const char *why);

/* The earliest deadline (monotonic ms) of E's exec sessions, or 0 when none has one. */
int64_t nex_sup_execs_deadline (const nex_sup_entry_t *e);

/* Fails E's exec sessions whose deadline is at or before NOW (their agent did not report an end in time). */
void nex_sup_execs_expire (nex_sup_entry_t *e, int64_t now);

/* --- recover.c ------------------------------------------------------------------------------------------------ */

/* At node start, before the thread runs: re-attaches to the environments recorded as live, fails those that are
 * gone or cannot be proven to be theirs, re-queues pending workloads, and removes what crashed deploys left
 * (run dirs and cgroups no live entry owns). */
void nex_sup_recover (nex_supervisor_t *sup);

#endif
