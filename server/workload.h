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

#define NEX_ID_LEN 36 /* textual UUID */

typedef enum nex_state
{
  NEX_STATE_PENDING = 0,
  NEX_STATE_STARTING,
  NEX_STATE_RUNNING,
  NEX_STATE_EXITED,
  NEX_STATE_FAILED,
  NEX_STATE_STOPPED,
  NEX_STATE__COUNT
} nex_state_t;

/* "pending", "starting", ... for STATE; static storage. */
const char *nex_state_name (nex_state_t state);

/* Parses a state name; 0 with *OUT set, or -1 (NEX_ERR_INVALID) for an unknown name. */
int nex_state_parse (const char *name, nex_state_t *out, nex_error_t *err);

/* True for exited, failed and stopped: states a workload never leaves. */
int nex_state_is_final (nex_state_t state);

/* A workload as stored in the registry.  Strings are owned by the struct (free with nex_workload_release);
 * optional strings are NULL when absent; times are Unix milliseconds, 0 when not reached yet. */
typedef struct nex_workload
{
  char id[NEX_ID_LEN + 1];
  char *name;            /* [A-Za-z0-9._-]{1,63} */
  char *namespace_;      /* same rule; "default" when the client gave none */
  char *description;     /* free text, optional */
  char *artifact;        /* URL of the executable: file:///abs/path for now */
  char *sha256;          /* digest the client expects (lower-case hex), optional */
  char *digest;          /* digest of the artifact as fetched, once known */
  json_t *argv;          /* array of strings (never NULL; may be empty) */
  json_t *env;           /* object of string values (never NULL; may be empty) */
  char *driver;          /* driver name, e.g. "sandbox" */
  nex_state_t state;
  char *reason;          /* why it failed/stopped, optional */
  int has_exit_code;     /* exit_code is meaningful */
  int exit_code;         /* exit status when it exited normally */
  int exit_signal;       /* signal number that ended it, 0 if none */
  int64_t pid;           /* host pid of the sandbox's init (nex-agent), 0 if none */
  char *endpoint;        /* where nexd dials the agent (a unix socket path), optional */
  int64_t created_at, updated_at, started_at, finished_at;
  int64_t log_lines;     /* lines stored so far (including dropped ones) */
  int64_t log_dropped;   /* lines discarded because of the per-workload log bound */
  json_t *labels;        /* object of string values, for grouping and filtering (never NULL once loaded) */
} nex_workload_t;

/* Frees what W owns and zeroes it.  Safe on a zeroed struct. */
void nex_workload_release (nex_workload_t *w);

/* Builds a new pending workload from a client's JSON request body (the REST/NATS deploy fields: name,
 * namespace, artifact, sha256, argv, env, description, driver, labels).  Validates every field: missing, wrong-typed or
 * out-of-range fields fail with NEX_ERR_INVALID naming the field; unknown fields are refused too (strict
 * parsing keeps typos from being silently ignored).  Does not touch the artifact itself.  Fills OUT (id and
 * timestamps included; DEFAULT_DRIVER when the body names none) or returns -1. */
int nex_workload_from_request (const json_t *body, const char *default_driver, nex_workload_t *out,
                               nex_error_t *err);

/* Whether KEY (LEN bytes) is a valid label key: 1 to 63 characters from A-Z a-z 0-9 . _ / - starting with a
 * letter or digit.  Shared with the label filter of GET /v1/workloads. */
int nex_label_key_valid (const char *key, size_t len);

/* The workload's public JSON form (as the REST API returns it).  New reference. */
json_t *nex_workload_to_json (const nex_workload_t *w);

#endif
