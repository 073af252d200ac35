/* SPDX-License-Identifier: Apache-2.0 */
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

/* Runs FN (with CTX) on the registry's connection inside one BEGIN IMMEDIATE transaction, under the registry's
 * lock: for modules that keep tables of their own (server/net/lease.c), so that their statements never
 * interleave with another thread's.  FN returns 0 to commit, -1 (ERR set) to roll back.  Any thread. */
int nex_registry_run (nex_registry_t *reg, int (*fn) (sqlite3 *db, void *ctx, nex_error_t *err), void *ctx,
                      nex_error_t *err);

/* Stores a new workload (state and timestamps as in W) and its first history entry. */
int nex_registry_workload_insert (nex_registry_t *reg, const nex_workload_t *w, nex_error_t *err);

/* As nex_registry_workload_insert, and stores EVENT (may be NULL; see nex_registry_event_append) in the same
 * transaction: a deploy's record and its `workload_deployed` are one commit. */
int nex_registry_workload_insert_event (nex_registry_t *reg, const nex_workload_t *w, const json_t *event,
                                        nex_error_t *err);

/* Loads workload ID into *OUT.  NEX_ERR_NOT_FOUND when there is none. */
int nex_registry_workload_get (nex_registry_t *reg, const char *id, nex_workload_t *out, nex_error_t *err);

#define NEX_WORKLOAD_FILTER_MAX_LABELS 8

/* One label condition: the workload has label KEY (a valid label key) with VALUE, or any value when NULL. */
typedef struct nex_label_match
{
  const char *key;
  const char *value;
} nex_label_match_t;

/* Filters for nex_registry_workload_list; NULL (or zero) members match everything. */
typedef struct nex_workload_filter
{
  const char *namespace_;
  const nex_state_t *state;
  const nex_label_match_t *labels; /* N_LABELS conditions, all of which must hold */
  size_t n_labels;                 /* at most NEX_WORKLOAD_FILTER_MAX_LABELS */
  const char *after_id;            /* cursor: only workloads after (after_created, after_id) in list order */
  int64_t after_created;
  int64_t limit;            /* at most this many; 0: all */
  const json_t *namespaces; /* an array: only workloads of these namespaces */
} nex_workload_filter_t;

/* Loads the workloads matching F, oldest first (by created_at, then id), into a new array *OUT of *N entries
 * (free each with nex_workload_release, then the array). */
int nex_registry_workload_list (nex_registry_t *reg, const nex_workload_filter_t *f, nex_workload_t **out, size_t *n,
                                nex_error_t *err);

/* A state transition and what comes with it.  Members left at their "unset" value are not changed. */
typedef struct nex_state_change
{
  nex_state_t state;
  const char *reason; /* NULL: unchanged; "": clear */
  int has_exit_code;  /* set exit_code */
  int exit_code;
  int exit_signal;      /* 0: unchanged */
  int64_t pid;          /* 0: unchanged; -1: clear */
  const char *endpoint; /* NULL: unchanged; "": clear */
  const char *digest;   /* NULL: unchanged */
  int restarted;        /* add one to the workload's restart count */
  int64_t agent_start;  /* 0: unchanged; -1: clear; else the root process's start time (see workload.h) */
  const char *note;     /* the new history entry's reason when it is not the workload's (the row's reason is
                           then left to REASON): a sandbox's `starting` says "warm sandbox" or "cold sandbox" */
} nex_state_change_t;

/* Applies C to workload ID in one transaction: updates the row (updated_at = now; started_at when entering
 * running; finished_at when entering a final state) and appends a history entry (state, time, reason) unless
 * C->state is the current state (then only the details change).  Refuses (NEX_ERR_CONFLICT) to leave a final
 * state. */
int nex_registry_workload_transition (nex_registry_t *reg, const char *id, const nex_state_change_t *c,
                                      nex_error_t *err);

/* Builds the event of a transition from the workload as the transition left it: a new reference, or NULL for
 * none.  Called inside the transaction, with the registry locked: it must not use the registry. */
typedef json_t *(*nex_registry_event_fn) (const nex_workload_t *w, void *ctx);

/* As nex_registry_workload_transition, and in the same transaction stores the event BUILD (with CTX) makes
 * from the row after the change: one commit instead of two per transition.  On success *OUT holds that
 * workload (the caller releases it) and *EVENT the stored event (new reference; NULL when BUILD made none), for
 * publishing; on failure nothing was written and both are empty. */
int nex_registry_workload_transition_event (nex_registry_t *reg, const char *id, const nex_state_change_t *c,
                                            nex_registry_event_fn build, void *ctx, nex_workload_t *out, json_t **event,
                                            nex_error_t *err);

/* The state history of ID as a JSON array of {state, at (RFC 3339), reason?}, oldest first.  New reference. */
json_t *nex_registry_workload_history (nex_registry_t *reg, const char *id, nex_error_t *err);

/* A number that changes whenever something is written to the registry (after the write is committed).  A
 * reader that caches what it reads keeps the number it read *before* reading, and trusts its copy only while
 * the number is the same.  Any thread. */
uint64_t nex_registry_generation (nex_registry_t *reg);

/* Counts workloads by state into COUNTS[NEX_STATE__COUNT] (kept while nothing is written). */
int nex_registry_count_by_state (nex_registry_t *reg, int64_t counts[NEX_STATE__COUNT], nex_error_t *err);

/* Output streams of a workload. */
typedef enum nex_stream
{
  NEX_STREAM_STDOUT = 1,
  NEX_STREAM_STDERR = 2,
  NEX_STREAM_CONSOLE = 3, /* a microVM's console: kernel and agent messages, for debugging boots */
} nex_stream_t;

const char *nex_stream_name (nex_stream_t s); /* "stdout" / "stderr" / "console" */

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
int nex_registry_log_append (nex_registry_t *reg, const char *id, const nex_log_line_t *lines, size_t n, int64_t bound,
                             nex_error_t *err);

/* As nex_registry_log_append, after SKIPPED lines that came first and were never stored (passed over before
 * storing because the bound could not have kept them: output.h): they are numbered and counted as dropped.
 * *FIRST_SEQ (may be NULL) receives the number given to LINES[0] (the others follow it), for publishing the lines
 * live with their numbers.  OFFSETS (may be NULL; an entry -1 leaves its own alone) records in the same
 * transaction how much of the workload's stdout and stderr these lines cover (nex_registry_output_stored). */
int nex_registry_log_append_seq (nex_registry_t *reg, const char *id, const nex_log_line_t *lines, size_t n,
                                 int64_t skipped, int64_t bound, const int64_t offsets[2], int64_t *first_seq,
                                 nex_error_t *err);

/* How much of ID's stdout (STORED[0]) and stderr (STORED[1]) its stored lines cover, as offsets in the streams
 * its agent numbers (common/wire.h); 0 when nothing was recorded since its agent started. */
int nex_registry_output_stored (nex_registry_t *reg, const char *id, int64_t stored[2], nex_error_t *err);

/* The last TAIL lines (all when TAIL <= 0) of ID as a JSON array of {seq, stream, ts (RFC 3339), text}, oldest
 * first.  New reference, or NULL on error. */
json_t *nex_registry_log_tail (nex_registry_t *reg, const char *id, int64_t tail, nex_error_t *err);

/* The lines of ID after line AFTER (seq > AFTER), oldest first, at most LIMIT of them (all when LIMIT <= 0), as
 * nex_registry_log_tail.  New reference, or NULL on error. */
json_t *nex_registry_log_after (nex_registry_t *reg, const char *id, int64_t after, int64_t limit, nex_error_t *err);

/* The output lines ever stored (*LINES) and deleted to keep the bounds (*DROPPED), over the workloads on record. */
int nex_registry_log_totals (nex_registry_t *reg, int64_t *lines, int64_t *dropped, nex_error_t *err);

/* Stores one CloudEvent (a JSON object with at least id, type, time; see event.h). */
int nex_registry_event_append (nex_registry_t *reg, const json_t *event, nex_error_t *err);

/* Filters for nex_registry_event_list; NULL members match everything. */
typedef struct nex_event_filter
{
  const char *namespace_;   /* data.namespace */
  const char *workload_id;  /* data.workload_id */
  const char *type;         /* the event type, exactly */
  int64_t after;            /* only events stored after position AFTER (0: from the first) */
  int64_t limit;            /* at most this many (>= 1) */
  const json_t *namespaces; /* an array: only events about workloads of these namespaces */
} nex_event_filter_t;

/* The stored events matching F, in the order they were stored, as a new JSON array in *OUT.  *POSITION
 * receives the position of the last one returned (F->after when none): pass it as the next F->after to read on.
 * *MORE says whether more matching events were stored after it. */
int nex_registry_event_list (nex_registry_t *reg, const nex_event_filter_t *f, json_t **out, int64_t *position,
                             int *more, nex_error_t *err);

/* ---- API tokens (server/auth.c decides; the registry only keeps them) ---- */

/* A stored token: never the secret, only its hash. */
typedef struct nex_token_record
{
  char id[17];          /* 16 hex digits: the public part of the token */
  char *name;           /* what it is for */
  char hash[65];        /* hex BLAKE2b-256 of the whole token */
  json_t *scopes;       /* array of "read", "deploy", "admin" */
  json_t *namespaces;   /* array of namespace names, or NULL for all */
  int64_t created_at;   /* Unix ms */
  int64_t last_used_at; /* 0: never */
  int64_t revoked_at;   /* 0: valid */
} nex_token_record_t;

void nex_token_record_release (nex_token_record_t *t);

/* Stores a new token (NEX_ERR_CONFLICT if its id exists). */
int nex_registry_token_insert (nex_registry_t *reg, const nex_token_record_t *t, nex_error_t *err);

/* Every token, revoked ones included, oldest first (then by id), into a new array *OUT of *N entries (release
 * each, then free the array). */
int nex_registry_token_list (nex_registry_t *reg, nex_token_record_t **out, size_t *n, nex_error_t *err);

/* Marks token ID revoked at AT (Unix ms) unless it is already; NEX_ERR_NOT_FOUND when there is no such token. */
int nex_registry_token_revoke (nex_registry_t *reg, const char *id, int64_t at, nex_error_t *err);

/* Records that token ID was used at AT. */
int nex_registry_token_touch (nex_registry_t *reg, const char *id, int64_t at, nex_error_t *err);

/* What a secure launch keeps beside its workload (schema/005_secure_launch.sql).  Strings owned; NULL when
 * absent. */
typedef struct nex_secure_row
{
  char *sealed_env;  /* base64 of the environment sealed to the node's xkey */
  char *sender_xkey; /* the sender's public xkey */
  char *jwt_issuer;  /* issuer of the verified deploy JWT */
  char *jwt_subject;
  char *jwt_hash; /* artifact SHA-256 (hex) the JWT vouches for */
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

/* --- images (schema 007; artifacts/image-store.h) ----------------------------------------------------------- */

/* An image in the cache. */
typedef struct nex_image_row
{
  char digest[72]; /* "sha256:<hex>" of the manifest */
  char *config;    /* the config JSON text */
  char *layers;    /* JSON array text of its blob digests: the config's, then the layers' */
  int64_t size;    /* config + layers, bytes as pulled */
} nex_image_row_t;

void nex_image_row_release (nex_image_row_t *r);

/* Stores image ROW (kept as it is when the digest is there already) and maps reference REF (canonical text; may
 * be NULL) to it. */
int nex_registry_image_put (nex_registry_t *reg, const nex_image_row_t *row, const char *ref, nex_error_t *err);

/* The digest REF was pulled as, into DIGEST: 1, 0 when REF was never pulled (or its image is gone), -1. */
int nex_registry_image_resolve (nex_registry_t *reg, const char *ref, char digest[72], nex_error_t *err);

/* Image DIGEST into *OUT (release it): 1, 0 when there is none, -1. */
int nex_registry_image_get (nex_registry_t *reg, const char *digest, nex_image_row_t *out, nex_error_t *err);

/* Sets image DIGEST's last_used_at to now. */
int nex_registry_image_touch (nex_registry_t *reg, const char *digest, nex_error_t *err);

/* Every cached image as a JSON array of {digest, size, created_at, last_used_at, references, workloads} (the
 * workloads not in a final state that run it), oldest first.  New reference, or NULL. */
json_t *nex_registry_image_list (nex_registry_t *reg, nex_error_t *err);

/* Removes image DIGEST and its references: NEX_ERR_CONFLICT when a workload not in a final state uses it,
 * NEX_ERR_NOT_FOUND when there is none. */
int nex_registry_image_delete (nex_registry_t *reg, const char *digest, nex_error_t *err);

/* Whether a cached image still names blob BLOB ("sha256:...") among its blobs: 1, 0, or -1. */
int nex_registry_blob_in_use (nex_registry_t *reg, const char *blob, nex_error_t *err);

/* Records the image digest workload ID runs and the process resolved from it (PROCESS, may be NULL: only the
 * digest; its argv also becomes the workload's argv). */
int nex_registry_workload_set_image (nex_registry_t *reg, const char *id, const char *image_digest,
                                     const json_t *process, nex_error_t *err);

/* --- snapshots (schema 011; snapshot.h) -------------------------------------------------------------------- */

/* A VM snapshot's record. */
typedef struct nex_snapshot_row
{
  char id[NEX_ID_LEN + 1];
  char workload_id[NEX_ID_LEN + 1]; /* the workload it was taken of */
  char *driver;                     /* the driver that wrote it (and alone can restore it) */
  char *path;                       /* the file holding the VM's state */
  int64_t created_at;               /* Unix ms */
  int64_t size_bytes;
  json_t *spec; /* object: what a restore repeats (snapshot.c) */
} nex_snapshot_row_t;

void nex_snapshot_row_release (nex_snapshot_row_t *r);

/* Stores snapshot ROW (a new id). */
int nex_registry_snapshot_put (nex_registry_t *reg, const nex_snapshot_row_t *row, nex_error_t *err);

/* Snapshot ID into *OUT (release it): 1, 0 when there is none, -1. */
int nex_registry_snapshot_get (nex_registry_t *reg, const char *id, nex_snapshot_row_t *out, nex_error_t *err);

/* The snapshots (of workload WORKLOAD_ID, or every one when NULL), oldest first, into *OUT (N of them; release
 * each and free the array).  0 or -1. */
int nex_registry_snapshot_list (nex_registry_t *reg, const char *workload_id, nex_snapshot_row_t **out, size_t *n,
                                nex_error_t *err);

/* Removes snapshot ID's record: 0, or -1 (NEX_ERR_NOT_FOUND when there is none). */
int nex_registry_snapshot_delete (nex_registry_t *reg, const char *id, nex_error_t *err);

#endif
