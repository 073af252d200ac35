/* registry.h — the node's persistent state in one SQLite file: workloads, their state history, their logs,
 * events, and node metadata.
 *
 * The file is opened in WAL mode with foreign keys on; at open, the numbered migrations compiled in from
 * schema/ are applied in order inside transactions, and PRAGMA user_version records the version reached (a file
 * newer than this binary is refused).  Every function is safe to call from any thread: one connection in
 * SQLite's serialized mode, plus an internal mutex around multi-statement transactions.  Functions that fill
 * caller structs hand ownership of their contents to the caller. */
#ifndef NEX_REGISTRY_H
#define NEX_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "common/error.h"
#include "server/workload.h"

/* One migration: schema/NNN_name.sql.  The table nex_migrations ends with a {0, NULL, NULL} entry. */
typedef struct nex_migration
{
  int version;      /* NNN: 1, 2, ... strictly increasing */
  const char *name; /* file name without .sql */
  const char *sql;  /* the script */
} nex_migration_t;

extern const nex_migration_t nex_migrations[];

typedef struct nex_registry nex_registry_t;

/* Opens (creating if needed) the registry at PATH and migrates it to the newest compiled-in version.  NULL on
 * failure (unreadable file, not a database, newer schema than this binary, failed migration — in which case the
 * file is left as it was before that migration). */
nex_registry_t *nex_registry_open (const char *path, nex_error_t *err);

/* Closes the registry.  Safe on NULL. */
void nex_registry_close (nex_registry_t *reg);

/* Applies the migrations in MIGS (terminated by a NULL sql) that are newer than DB's user_version, each in its
 * own transaction.  Exposed for the unit tests; nex_registry_open calls it with nex_migrations. */
int nex_registry_migrate (sqlite3 *db, const nex_migration_t *migs, nex_error_t *err);

/* The schema version of the open file (PRAGMA user_version). */
int nex_registry_schema_version (nex_registry_t *reg);

/* Node metadata (key/value).  get: 1 and *OUT (caller frees) when present, 0 when absent, -1 on error. */
int nex_registry_meta_get (nex_registry_t *reg, const char *key, char **out, nex_error_t *err);
int nex_registry_meta_set (nex_registry_t *reg, const char *key, const char *value, nex_error_t *err);

/* Stores a new workload (state and timestamps as in W) and its first history entry. */
int nex_registry_workload_insert (nex_registry_t *reg, const nex_workload_t *w, nex_error_t *err);

/* Loads workload ID into *OUT.  NEX_ERR_NOT_FOUND when there is none. */
int nex_registry_workload_get (nex_registry_t *reg, const char *id, nex_workload_t *out, nex_error_t *err);

/* Filters for nex_registry_workload_list; NULL members match everything. */
typedef struct nex_workload_filter
{
  const char *namespace_;
  const nex_state_t *state;
} nex_workload_filter_t;

/* Loads the workloads matching F, oldest first, into a new array *OUT of *N entries (free each with
 * nex_workload_release, then the array). */
int nex_registry_workload_list (nex_registry_t *reg, const nex_workload_filter_t *f, nex_workload_t **out,
                                size_t *n, nex_error_t *err);

/* A state transition and what comes with it.  Members left at their "unset" value are not changed. */
typedef struct nex_state_change
{
  nex_state_t state;
  const char *reason;   /* NULL: unchanged */
  int has_exit_code;    /* set exit_code */
  int exit_code;
  int exit_signal;      /* 0: unchanged */
  int64_t pid;          /* 0: unchanged; -1: clear */
  const char *endpoint; /* NULL: unchanged; "": clear */
  const char *digest;   /* NULL: unchanged */
} nex_state_change_t;

/* Applies C to workload ID in one transaction: updates the row (updated_at = now; started_at when entering
 * running; finished_at when entering a final state) and appends a history entry (state, time, reason) unless
 * C->state is the current state (then only the details change).  Refuses (NEX_ERR_CONFLICT) to leave a final
 * state. */
int nex_registry_workload_transition (nex_registry_t *reg, const char *id, const nex_state_change_t *c,
                                      nex_error_t *err);

/* The state history of ID as a JSON array of {state, at (RFC 3339), reason?}, oldest first.  New reference. */
json_t *nex_registry_workload_history (nex_registry_t *reg, const char *id, nex_error_t *err);

/* Counts workloads by state into COUNTS[NEX_STATE__COUNT]. */
int nex_registry_count_by_state (nex_registry_t *reg, int64_t counts[NEX_STATE__COUNT], nex_error_t *err);

/* Output streams of a workload. */
typedef enum nex_stream
{
  NEX_STREAM_STDOUT = 1,
  NEX_STREAM_STDERR = 2,
} nex_stream_t;

const char *nex_stream_name (nex_stream_t s); /* "stdout" / "stderr" */

/* One log line to append (TEXT need not be NUL-terminated; it is stored as given, LEN bytes, as text). */
typedef struct nex_log_line
{
  nex_stream_t stream;
  int64_t ts; /* Unix milliseconds */
  const char *text;
  size_t len;
} nex_log_line_t;

/* Appends N lines to workload ID's log in one transaction, numbering them after the last stored line, then
 * deletes the oldest lines beyond BOUND (lines kept per workload), adding their number to log_dropped. */
int nex_registry_log_append (nex_registry_t *reg, const char *id, const nex_log_line_t *lines, size_t n,
                             int64_t bound, nex_error_t *err);

/* The last TAIL lines (all when TAIL <= 0) of ID as a JSON array of {seq, stream, ts (RFC 3339), text}, oldest
 * first.  New reference, or NULL on error. */
json_t *nex_registry_log_tail (nex_registry_t *reg, const char *id, int64_t tail, nex_error_t *err);

/* Stores one CloudEvent (a JSON object with at least id, type, time; see event.h). */
int nex_registry_event_append (nex_registry_t *reg, const json_t *event, nex_error_t *err);

/* What a secure launch keeps beside its workload (schema/005_secure_launch.sql).  Strings owned; NULL when
 * absent. */
typedef struct nex_secure_row
{
  char *sealed_env;  /* base64 of the environment sealed to the node's xkey */
  char *sender_xkey; /* the sender's public xkey */
  char *jwt_issuer;  /* issuer of the verified deploy JWT */
  char *jwt_subject;
  char *jwt_hash;    /* artifact SHA-256 (hex) the JWT vouches for */
} nex_secure_row_t;

void nex_secure_row_release (nex_secure_row_t *r);

/* Stores R for workload ID (replacing any). */
int nex_registry_secure_put (nex_registry_t *reg, const char *id, const nex_secure_row_t *r, nex_error_t *err);

/* Loads it: 1 and *OUT when present, 0 when the workload has none, -1 on error. */
int nex_registry_secure_get (nex_registry_t *reg, const char *id, nex_secure_row_t *out, nex_error_t *err);

/* Removes it (after a failed insert of the workload). */
int nex_registry_secure_delete (nex_registry_t *reg, const char *id, nex_error_t *err);

/* Records that JWT id JTI of ISSUER was used.  0 the first time; -1 with NEX_ERR_CONFLICT when it was seen
 * before (a replay). */
int nex_registry_jti_claim (nex_registry_t *reg, const char *issuer, const char *jti, nex_error_t *err);

#endif
