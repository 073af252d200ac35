/* SPDX-License-Identifier: Apache-2.0 */
/* workload.h — what a workload is: its spec as a client sends it, its lifecycle state, and its JSON form.
 *
 * A workload moves through  pending -> starting -> running -> exited | failed | stopped.
 *   pending   accepted and stored, waiting for the supervisor;
 *   starting  the artifact is being fetched/verified and the sandbox built;
 *   running   the agent reported the workload's process started;
 *   exited    the process ended on its own (exit_code or exit_signal says how);
 *   failed    Nex could not run it (reason says why: digest mismatch, exec failure, agent lost, ...);
 *   stopped   it was stopped on request.
 * Only the supervisor thread changes state after creation (see supervisor.h). */
#ifndef NEX_WORKLOAD_H
#define NEX_WORKLOAD_H

#include <stdint.h>

#include <jansson.h>

#include "common/error.h"
#include "common/jsontext.h"

#define NEX_ID_LEN 36 /* textual UUID */

typedef enum nex_state
{
  NEX_STATE_PENDING = 0,
  NEX_STATE_STARTING,
  NEX_STATE_RUNNING,
  NEX_STATE_EXITED,
  NEX_STATE_FAILED,
  NEX_STATE_STOPPED,
  NEX_STATE_PAUSED, /* running, its processes frozen (POST .../pause); not final */
  NEX_STATE__COUNT
} nex_state_t;

/* "pending", "starting", ... for STATE; static storage. */
const char *nex_state_name (nex_state_t state);

/* Parses a state name; 0 with *OUT set, or -1 (NEX_ERR_INVALID) for an unknown name. */
int nex_state_parse (const char *name, nex_state_t *out, nex_error_t *err);

/* True for exited, failed and stopped: states a workload never leaves. */
int nex_state_is_final (nex_state_t state);

/* What a workload may use (the deploy field `resources`).  0 means "no limit" (disk_mb: the default size). */
typedef struct nex_resources
{
  double vcpus;      /* CPU time as a number of CPUs, fractional (0.2 = a fifth of one CPU); cgroup CPU quota */
  int64_t memory_mb; /* memory (anonymous, page cache, tmpfs) the sandbox may charge; over it the OOM killer acts */
  int64_t pids;      /* processes and threads alive at once in the sandbox */
  int64_t disk_mb;   /* size of the writable /tmp (a tmpfs, charged to the memory limit too) */
  int64_t net_mbps;  /* a bridge sandbox's bandwidth each way in Mbit/s (tc tbf, server/net/shape.c); 0: none */
} nex_resources_t;

#define NEX_RESOURCES_DEFAULT_PIDS 1024  /* a fork bomb must not take the node down by default */
#define NEX_RESOURCES_DEFAULT_DISK_MB 64 /* /tmp when the spec names no size */

/* When the supervisor starts a workload's process again after it ended on its own. */
typedef enum nex_restart_policy
{
  NEX_RESTART_NEVER = 0,  /* the default */
  NEX_RESTART_ON_FAILURE, /* after a non-zero exit code, a signal, or an OOM kill (nex's `essential: true`) */
  NEX_RESTART_ALWAYS,     /* after any end that was not a stop request */
} nex_restart_policy_t;

#define NEX_MAX_RESTARTS_DEFAULT 5

/* What kind of workload it is.  A service's process is started and supervised; a function's sandbox is made and
 * kept idle (warm), and its executable runs once per trigger message (nats/functions.c). */
typedef enum nex_workload_type
{
  NEX_WORKLOAD_SERVICE = 0, /* the default */
  NEX_WORKLOAD_FUNCTION,
} nex_workload_type_t;

#define NEX_FUNCTION_MAX_TRIGGERS 16      /* trigger subjects per function */
#define NEX_FUNCTION_SUBJECT_MAX_LEN 255  /* bytes in one trigger subject */
#define NEX_FUNCTION_DEFAULT_TIMEOUT_S 10 /* an invocation is killed after this long unless the spec says */
#define NEX_FUNCTION_MAX_TIMEOUT_S 600
#define NEX_FUNCTION_DEFAULT_CONCURRENCY 8 /* invocations of one function running at once */
#define NEX_FUNCTION_MAX_CONCURRENCY 16    /* the agent runs at most 16 exec sessions at once */

/* How a function's runs are made (function_mode). */
typedef enum nex_function_mode
{
  NEX_FUNCTION_PER_CALL = 0, /* the default: one process per message, its stdin the payload, its stdout the reply */
  NEX_FUNCTION_PERSISTENT,   /* a program that stays running and answers messages one after another, framed
                                (agent/function.c) */
} nex_function_mode_t;

/* "per_call", "persistent"; static storage. */
const char *nex_function_mode_name (nex_function_mode_t m);

/* "service", "function"; static storage. */
const char *nex_workload_type_name (nex_workload_type_t t);

/* Whether SUBJECT is a NATS subject a function may be triggered by: non-empty '.'-separated tokens of printable
 * characters without spaces, `*` and `>` allowed only as whole tokens (`>` last), and no overlap with the
 * reserved spaces $SYS.>, $JS.> and $NEX.> (compared without regard to case).  0, or -1 with NEX_ERR_INVALID
 * naming FIELD and saying why. */
int nex_trigger_subject_check (const char *subject, const char *field, nex_error_t *err);

/* "never", "on-failure", "always"; static storage. */
const char *nex_restart_policy_name (nex_restart_policy_t p);

/* A workload as stored in the registry.  Strings are owned by the struct (free with nex_workload_release);
 * optional strings are NULL when absent; times are Unix milliseconds, 0 when not reached yet. */
typedef struct nex_workload
{
  char id[NEX_ID_LEN + 1];
  char *name;        /* [A-Za-z0-9._-]{1,63} */
  char *namespace_;  /* same rule; "default" when the client gave none */
  char *description; /* free text, optional */
  char *artifact;    /* URL of the executable: file:///abs/path for now */
  char *sha256;      /* digest the client expects (lower-case hex), optional */
  char *digest;      /* digest of the artifact as fetched, once known */
  json_t *argv;      /* array of strings: the vector the program receives (never NULL; [] in old records) */
  json_t *env;       /* object of string values (never NULL; may be empty) */
  char *driver;      /* driver name, e.g. "sandbox" */
  nex_state_t state;
  char *reason;      /* why it failed/stopped, optional */
  int has_exit_code; /* exit_code is meaningful */
  int exit_code;     /* exit status when it exited normally */
  int exit_signal;   /* signal number that ended it, 0 if none */
  int64_t pid;       /* host pid of the sandbox's init (nex-agent), 0 if none */
  char *endpoint;    /* where nexd dials the agent (a unix socket path), optional */
  int64_t created_at, updated_at, started_at, finished_at;
  int64_t log_lines;   /* lines stored so far (including dropped ones) */
  int64_t log_dropped; /* lines discarded because of the per-workload log bound */
  /* Sandbox options and runtime record (schema 002). */
  nex_resources_t resources;
  nex_restart_policy_t restart_policy;
  int64_t max_restarts; /* restarts allowed by the policy */
  int64_t restarts;     /* restarts done so far */
  json_t *capabilities; /* array of capability names ("CAP_NET_BIND_SERVICE") kept for the workload; never NULL */
  char *cwd;            /* working directory inside the sandbox, optional ("/" when NULL) */
  int host_network;     /* network "host": the host's network namespace instead of loopback only ("none") */
  int64_t agent_start;  /* start time of the agent process (clock ticks since boot, /proc/<pid>/stat field 22);
                           with pid, identifies the sandbox across nexd restarts despite pid reuse; 0 if unknown */
  json_t *labels;       /* object of string values, for grouping and filtering (never NULL once loaded) */
  /* Function workloads (schema 006); for a service: trigger_subjects NULL, the numbers 0. */
  nex_workload_type_t type;
  json_t *trigger_subjects;          /* array of subjects (NEX_FUNCTION_MAX_TRIGGERS at most), NULL for a service */
  int64_t function_timeout_s;        /* an invocation's time limit */
  int64_t max_concurrency;           /* invocations running at once */
  nex_function_mode_t function_mode; /* schema 013 */
  /* Image workloads (schema 007): `image` instead of `artifact` (which is then NULL). */
  char *image;        /* the OCI image reference as given, or NULL */
  char *image_digest; /* "sha256:..." of the image manifest that ran, once known */
  json_t *entrypoint; /* array of strings replacing the image's Entrypoint (and dropping its Cmd), or NULL */
  json_t *cmd;        /* array of strings replacing the image's Cmd, or NULL */
  char *user;         /* "uid[:gid]" or "name[:group]" replacing the image's User, or NULL */
  json_t *process;    /* what was resolved from image and request: {path, argv, env, cwd, uid, gid}, or NULL */
  /* Network "bridge" (schema 009): the validated spec with what the node assigned (server/net/spec.h:
   * {address, ports, egress, nats}); NULL for none and host. */
  json_t *net;
  char *from_snapshot; /* the snapshot (schema 011, snapshot.h) this workload's VM was restored from, or NULL */
} nex_workload_t;

/* Frees what W owns and zeroes it.  Safe on a zeroed struct. */
void nex_workload_release (nex_workload_t *w);

/* Builds a new pending workload from a client's JSON request body (the REST/NATS deploy fields: name,
 * namespace, artifact, sha256, argv or args, env, description, driver, labels, and the sandbox options resources,
 * restart_policy, max_restarts, essential, capabilities, cwd, network (and for bridge: ports, egress, nats), the
 * function fields type, trigger_subjects, function_timeout_s, max_concurrency, function_mode, and the image fields
 * image, entrypoint, cmd, user).  Exactly one of artifact and image is required (422 naming `image` when both or
 * neither). Validates every field: missing, wrong-typed or out-of-range fields fail with NEX_ERR_INVALID naming the
 * field; unknown fields are refused too (strict parsing keeps typos from being silently ignored).  Does not touch the
 * artifact itself.  Fills OUT (id and
 * timestamps included; DEFAULT_DRIVER when the body names none) or returns -1. */
int nex_workload_from_request (const json_t *body, const char *default_driver, nex_workload_t *out, nex_error_t *err);

/* Whether KEY (LEN bytes) is a valid label key: 1 to 63 characters from A-Z a-z 0-9 . _ / - starting with a
 * letter or digit.  Shared with the label filter of GET /v1/workloads. */
int nex_label_key_valid (const char *key, size_t len);

/* Writes the workload's public JSON form (as the REST API returns it) into T as one object: the one place that
 * says which fields a workload shows.  A page of 1000 workloads is written this way without a json_t each. */
void nex_workload_write_json (nex_jsontext_t *t, const nex_workload_t *w);

/* The same form as a json_t (read back from nex_workload_write_json's text).  New reference. */
json_t *nex_workload_to_json (const nex_workload_t *w);

/* Writes R into T as the object nex_resources_to_json returns. */
void nex_resources_write_json (nex_jsontext_t *t, const nex_resources_t *r);

/* R as the JSON object the API shows ({vcpus, memory_mb, pids, disk_mb}, null for "no limit"; net_mbps only when
 * set) and stores.
 * New reference. */
json_t *nex_resources_to_json (const nex_resources_t *r);

/* Reads a stored resources object back (the inverse of nex_resources_to_json; unknown or invalid members are
 * ignored, as only nexd writes these). */
void nex_resources_from_json (const json_t *o, nex_resources_t *out);

/* The capability number of NAME ("CAP_SYS_ADMIN" or "sys_admin", any case), or -1 when there is none. */
int nex_capability_parse (const char *name);

/* The signal V names: a number from 1 to NSIG - 1 or a name ("SIGTERM", "TERM", any case); -1 when it names
 * none. */
int nex_signal_parse (const json_t *v);

#endif
