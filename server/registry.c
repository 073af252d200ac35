/* SPDX-License-Identifier: Apache-2.0 */
/* registry.c — the node's persistent state in SQLite (see registry.h for the contracts, schema/ for the tables).
 *
 * One connection, opened in SQLite's serialized mode, serves every thread.  A mutex in nex_registry_t is held
 * for the whole of each public operation, so that the statements of one transaction never interleave with
 * another thread's statements on the same connection (which would silently join that transaction) and so that
 * sqlite3_errmsg() still describes our own failure when we read it.  Writes that span several statements run in
 * BEGIN IMMEDIATE ... COMMIT through db_transaction(), which rolls back on any error.
 *
 * Layers, bottom up: db_error() is the one mapper from SQLite failures to nex errors; db_prepare()/db_bind()
 * (with the DB_* value constructors) are the one way parameters get bound; col_*() and workload_from_row() are
 * the one way columns are read back; the public functions sit on top.  Conventions shared with the schema:
 * times, pids and signals of 0 mean "none" and are stored as NULL; argv and env are compact JSON text. */
#include "server/registry.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/jsontext.h"
#include "common/utf8.h"
#include "common/xalloc.h"
#include "server/clock.h"

struct nex_registry
{
  sqlite3 *db;          /* the one connection (SQLITE_OPEN_FULLMUTEX) */
  pthread_mutex_t lock; /* held for every public operation; see the file comment */
  int counts_valid;     /* counts (under lock) hold the answer of count_by_state at counts_generation */
  uint64_t counts_generation;
  int64_t counts[NEX_STATE__COUNT];
};

/* Counts writes, for readers that cache what they read (see nex_registry_generation).  Bumped after every
 * statement that changed rows and again after every transaction, so that a read that began before a commit is
 * never taken for one made after it. */
static uint64_t generation;

static void
bump_generation (void)
{
  __atomic_add_fetch (&generation, 1, __ATOMIC_RELEASE);
}

uint64_t
nex_registry_generation (nex_registry_t *reg)
{
  return __atomic_load_n (&generation, __ATOMIC_ACQUIRE);
}

/* Takes REG's lock; pair with `cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);`. */
static pthread_mutex_t *
reg_lock (nex_registry_t *reg)
{
  pthread_mutex_lock (&reg->lock);
  return &reg->lock;
}

/* ---- errors ---------------------------------------------------------------------------------------------- */

/* Records the connection's last failure as "CONTEXT: sqlite message".  A violated constraint (a duplicate id,
 * a refused value) is the caller's conflict; anything else is a system failure. */
static int __attribute__ ((format (printf, 3, 4))) db_error (sqlite3 *db, nex_error_t *err, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  cleanup_free char *context = nex_xvasprintf (fmt, ap);
  va_end (ap);
  int code = sqlite3_extended_errcode (db) & 0xff;
  nex_error_kind_t kind = code == SQLITE_CONSTRAINT ? NEX_ERR_CONFLICT
                          : code == SQLITE_FULL     ? NEX_ERR_NO_SPACE
                                                    : NEX_ERR_SYSTEM;
  return nex_error_set (err, kind, "%s: %s", context, sqlite3_errmsg (db));
}

/* ---- statements and parameters --------------------------------------------------------------------------- */

/* A value to bind to a statement parameter; build them with the DB_* macros below. */
typedef struct db_value
{
  enum
  {
    DB_V_NULL,
    DB_V_TEXT,
    DB_V_INT
  } type;
  const char *text; /* DB_V_TEXT */
  int64_t len;      /* DB_V_TEXT: bytes, or -1 for NUL-terminated */
  int64_t i;        /* DB_V_INT */
} db_value_t;

#define DB_TEXT(s) ((db_value_t){ .type = (s) ? DB_V_TEXT : DB_V_NULL, .text = (s), .len = -1 })
#define DB_TEXTN(s, n) ((db_value_t){ .type = DB_V_TEXT, .text = (s), .len = (int64_t)(n) })
#define DB_INT(v) ((db_value_t){ .type = DB_V_INT, .i = (int64_t)(v) })
#define DB_OPT_INT(present, v) ((db_value_t){ .type = (present) ? DB_V_INT : DB_V_NULL, .i = (int64_t)(v) })
/* Times, pids and signals: 0 means "none" and is stored as NULL. */
#define DB_NONZERO(v) DB_OPT_INT ((v) != 0, (v))

/* Expands to the (values, count) argument pair of db_prepare()/db_bind()/db_exec(). */
#define DB_ARGS(...)                                                                                                   \
  (const db_value_t[]){ __VA_ARGS__ }, sizeof ((const db_value_t[]){ __VA_ARGS__ }) / sizeof (db_value_t)

/* Resets STMT and binds VALS to its parameters ?1..?N. */
static int
db_bind (sqlite3 *db, sqlite3_stmt *stmt, const db_value_t *vals, size_t n, nex_error_t *err)
{
  sqlite3_reset (stmt);
  sqlite3_clear_bindings (stmt);
  for (size_t i = 0; i < n; i++)
    {
      int rc = SQLITE_OK;
      int index = (int)i + 1;
      switch (vals[i].type)
        {
        case DB_V_NULL:
          rc = sqlite3_bind_null (stmt, index);
          break;
        case DB_V_TEXT:
          rc = sqlite3_bind_text64 (stmt, index, vals[i].text,
                                    vals[i].len < 0 ? strlen (vals[i].text) : (sqlite3_uint64)vals[i].len,
                                    SQLITE_TRANSIENT, SQLITE_UTF8);
          break;
        case DB_V_INT:
          rc = sqlite3_bind_int64 (stmt, index, vals[i].i);
          break;
        }
      if (rc != SQLITE_OK)
        return db_error (db, err, "binding parameter %d", index);
    }
  return 0;
}

/* Compiles SQL and binds VALS (N of them; NULL and 0 for none).  NULL on failure. */
static sqlite3_stmt *
db_prepare (sqlite3 *db, const char *sql, const db_value_t *vals, size_t n, nex_error_t *err)
{
  cleanup_stmt sqlite3_stmt *stmt = NULL;
  if (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) != SQLITE_OK)
    {
      db_error (db, err, "preparing `%.60s`", sql);
      return NULL;
    }
  if (db_bind (db, stmt, vals, n, err) < 0)
    return NULL;
  return NEX_STEAL_PTR (stmt);
}

/* Steps STMT: 1 when a row is ready, 0 when done, -1 on failure. */
static int
db_step (sqlite3 *db, sqlite3_stmt *stmt, nex_error_t *err)
{
  int rc = sqlite3_step (stmt);
  if (rc == SQLITE_ROW)
    return 1;
  if (rc == SQLITE_DONE)
    return 0;
  return db_error (db, err, "executing `%.60s`", sqlite3_sql (stmt));
}

/* Runs one statement that returns no rows; the number of rows it changed, or -1. */
static int64_t
db_exec (sqlite3 *db, const char *sql, const db_value_t *vals, size_t n, nex_error_t *err)
{
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (db, sql, vals, n, err);
  if (stmt == NULL || db_step (db, stmt, err) < 0)
    return -1;
  int64_t changed = sqlite3_changes64 (db);
  if (changed > 0)
    bump_generation ();
  return changed;
}

/* Runs SQL, which may hold several statements and no parameters (scripts, pragmas, transaction control). */
static int
db_script (sqlite3 *db, const char *sql, nex_error_t *err)
{
  if (sqlite3_exec (db, sql, NULL, NULL, NULL) != SQLITE_OK)
    return db_error (db, err, "executing `%.60s`", sql);
  return 0;
}

/* Runs a query whose first row's first column is an integer: 1 with *OUT set, 0 when there is no row, -1. */
static int
db_query_int (sqlite3 *db, const char *sql, const db_value_t *vals, size_t n, int64_t *out, nex_error_t *err)
{
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (db, sql, vals, n, err);
  if (stmt == NULL)
    return -1;
  int row = db_step (db, stmt, err);
  if (row > 0)
    *out = sqlite3_column_int64 (stmt, 0);
  return row;
}

/* The body of a transaction: statements on DB; returns 0 or -1 with *ERR set. */
typedef int (*db_tx_fn) (sqlite3 *db, void *ctx, nex_error_t *err);

/* Runs FN inside BEGIN IMMEDIATE ... COMMIT (taking the write lock up front, so that the transaction cannot
 * fail half-way with SQLITE_BUSY on an upgrade); rolls back when FN or the commit fails. */
static int
db_transaction (sqlite3 *db, db_tx_fn fn, void *ctx, nex_error_t *err)
{
  if (db_script (db, "BEGIN IMMEDIATE", err) < 0)
    return -1;
  if (fn (db, ctx, err) < 0 || db_script (db, "COMMIT", err) < 0)
    {
      /* Fails harmlessly when SQLite already rolled back on its own (e.g. after SQLITE_FULL). */
      sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
      return -1;
    }
  return 0;
}

/* db_transaction under REG's lock.  The generation moves only when a row changed (or the transaction failed:
 * what a rollback left is not worth reasoning about), so that a transaction that found nothing to do (a retention
 * pass over a registry with nothing old) keeps the readers' caches. */
static int
reg_transaction (nex_registry_t *reg, db_tx_fn fn, void *ctx, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  sqlite3_int64 before = sqlite3_total_changes64 (reg->db);
  int r = db_transaction (reg->db, fn, ctx, err);
  if (r < 0 || sqlite3_total_changes64 (reg->db) != before)
    bump_generation ();
  return r;
}

int
nex_registry_run (nex_registry_t *reg, int (*fn) (sqlite3 *db, void *ctx, nex_error_t *err), void *ctx,
                  nex_error_t *err)
{
  return reg_transaction (reg, fn, ctx, err);
}

/* ---- columns --------------------------------------------------------------------------------------------- */

/* Column I as a new string, NULL when the column is NULL. */
static char *
col_text (sqlite3_stmt *stmt, int i)
{
  const unsigned char *s = sqlite3_column_text (stmt, i);
  return s ? nex_xstrdup ((const char *)s) : NULL;
}

/* Column I (JSON text) as a new array or object (TYPE); an empty one if the stored text is not of that type,
 * which only a hand-edited file can produce. */
static json_t *
col_json (sqlite3_stmt *stmt, int i, json_type type)
{
  const char *text = (const char *)sqlite3_column_text (stmt, i);
  /* Most stored env, labels and capabilities are empty: no parser for those (a page of 1000 rows reads 5000). */
  if (text && (strcmp (text, "{}") == 0 || strcmp (text, "[]") == 0))
    return type == JSON_OBJECT ? json_object () : json_array (); /* (of the other type: empty all the same) */
  json_t *v = text ? json_loads (text, JSON_DECODE_ANY, NULL) : NULL;
  if (v != NULL && json_typeof (v) == type)
    return v;
  json_decref (v);
  return type == JSON_OBJECT ? json_object () : json_array ();
}

/* Column I (Unix milliseconds) as an RFC 3339 string. */
static json_t *
col_time (sqlite3_stmt *stmt, int i)
{
  char buf[NEX_CLOCK_RFC3339_LEN];
  return json_string (nex_clock_format (sqlite3_column_int64 (stmt, i), buf, sizeof buf));
}

/* ---- opening and migrating ------------------------------------------------------------------------------- */

/* The marker line of a migration that rebuilds a table: foreign keys are off while it runs (see 008). */
#define MIGRATION_FK_OFF "\n-- nex: foreign keys off\n"

static int
migration_fk_off (const nex_migration_t *m)
{
  return strstr (m->sql, MIGRATION_FK_OFF) != NULL;
}

/* One migration, inside its transaction.  The version is re-read under the write lock so that two processes
 * opening a fresh file at once do not both apply it. */
static int
migration_apply (sqlite3 *db, void *ctx, nex_error_t *err)
{
  const nex_migration_t *m = ctx;
  int64_t current = 0;
  if (db_query_int (db, "PRAGMA user_version", NULL, 0, &current, err) < 0)
    return -1;
  if (current >= m->version)
    return 0;
  cleanup_free char *set_version = nex_xasprintf ("PRAGMA user_version = %d", m->version);
  if (db_script (db, m->sql, err) < 0 || db_script (db, set_version, err) < 0)
    return -1;
  /* A script that ran with foreign keys off (it rebuilt a table) must leave every reference valid. */
  int64_t broken = 0;
  if (migration_fk_off (m)
      && db_query_int (db, "SELECT count(*) FROM pragma_foreign_key_check", NULL, 0, &broken, err) < 0)
    return -1;
  if (broken > 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "%lld rows would lose what they refer to", (long long)broken);
  return 0;
}

/* Reads the file's schema version into *CURRENT: -1 when it cannot be read, or when it is newer than NEWEST (a
 * file of a newer nexd, which this one must not touch). */
static int
db_schema_version (sqlite3 *db, int newest, int64_t *current, nex_error_t *err)
{
  if (db_query_int (db, "PRAGMA user_version", NULL, 0, current, err) < 0)
    return nex_error_wrap (err, "reading the schema version");
  if (*current > newest)
    return nex_error_set (err, NEX_ERR_CONFLICT,
                          "schema version %lld is newer than this nexd understands (%d); "
                          "refusing to touch it: run a newer nexd",
                          (long long)*current, newest);
  return 0;
}

int
nex_registry_migrate (sqlite3 *db, const nex_migration_t *migs, nex_error_t *err)
{
  int newest = 0;
  for (const nex_migration_t *m = migs; m->sql != NULL; m++)
    {
      if (m->version <= newest)
        return nex_error_set (err, NEX_ERR_INVALID, "migration %s: version %d does not follow version %d", m->name,
                              m->version, newest);
      newest = m->version;
    }

  int64_t current = 0;
  if (db_schema_version (db, newest, &current, err) < 0)
    return -1;

  for (const nex_migration_t *m = migs; m->sql != NULL; m++)
    {
      if (m->version <= current)
        continue;
      /* The pragma is a no-op inside a transaction: it goes around it (and back on whatever happened). */
      int fk_off = migration_fk_off (m);
      if (fk_off && db_script (db, "PRAGMA foreign_keys = OFF", err) < 0)
        return nex_error_wrap (err, "migration %s", m->name);
      int r = db_transaction (db, migration_apply, (void *)m, err);
      if (fk_off)
        {
          cleanup_error nex_error_t ignored = NULL;
          db_script (db, "PRAGMA foreign_keys = ON", r < 0 ? &ignored : err);
        }
      if (r < 0)
        return nex_error_wrap (err, "migration %s", m->name);
    }
  return 0;
}

/* The checks made before nexd writes a byte to the file (the journal mode below rewrites its header): that it
 * is a database SQLite can read, and that its schema is not newer than MIGS know.  A refused file is left
 * exactly as it was, so that the operator can still hand it to the nexd that wrote it. */
static int
db_check_untouched (sqlite3 *db, const nex_migration_t *migs, nex_error_t *err)
{
  int newest = 0;
  for (const nex_migration_t *m = migs; m->sql != NULL; m++)
    newest = m->version > newest ? m->version : newest;
  int64_t current = 0;
  return db_schema_version (db, newest, &current, err);
}

/* The connection settings Nex relies on.  WAL lets readers (other tools, backups) run beside nexd; NORMAL sync
 * is durable across process crashes and only risks the last commits on power loss; foreign keys make a
 * workload's history and logs go with it.  The first statement that reads the file is the journal_mode pragma,
 * so a file that is not a database fails there with SQLite's "file is not a database". */
static int
db_configure (sqlite3 *db, nex_error_t *err)
{
  /* Incremental auto-vacuum lets the retention job (retain.h) hand freed pages back to the file system.  It takes
   * effect at once on a file without tables (a new registry), and only before the file is in WAL mode; an older
   * file is converted by db_vacuum_mode.  (db_check_untouched has read the file already, so a file that is not a
   * database fails there, untouched.) */
  if (db_script (db, "PRAGMA busy_timeout = 5000; PRAGMA auto_vacuum = INCREMENTAL", err) < 0)
    return -1;
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (db, "PRAGMA journal_mode = WAL", NULL, 0, err);
  if (stmt == NULL)
    return nex_error_wrap (err, "setting the journal mode");
  int row = db_step (db, stmt, err);
  if (row < 0)
    return nex_error_wrap (err, "setting the journal mode");
  const char *mode = row ? (const char *)sqlite3_column_text (stmt, 0) : NULL;
  if (mode == NULL || strcmp (mode, "wal") != 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "the journal mode stayed `%s` instead of wal", mode ? mode : "?");
  if (db_script (db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", err) < 0)
    return -1;
  return 0;
}

/* A registry made before auto_vacuum was set (mode 0, none) is rebuilt once with VACUUM so that the mode holds;
 * SQLite changes the mode only outside WAL, so the file leaves WAL for the VACUUM (nexd is its only user at
 * open).  Best effort: on a failure (a full disk: VACUUM needs room for a copy) the file stays as it was, its free
 * pages still reused by SQLite, and the next start tries again. */
static void
db_vacuum_mode (sqlite3 *db)
{
  cleanup_error nex_error_t ignored = NULL;
  int64_t mode = 2;
  if (db_query_int (db, "PRAGMA auto_vacuum", NULL, 0, &mode, &ignored) < 0 || mode != 0)
    return;
  sqlite3_exec (db, "PRAGMA journal_mode = DELETE; PRAGMA auto_vacuum = INCREMENTAL; VACUUM", NULL, NULL, NULL);
  sqlite3_exec (db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
}

nex_registry_t *
nex_registry_open (const char *path, nex_error_t *err)
{
  nex_registry_t *reg = nex_xzalloc (sizeof *reg);
  pthread_mutex_init (&reg->lock, NULL);
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2 (path, &reg->db, flags, NULL) != SQLITE_OK)
    {
      nex_error_set (err, NEX_ERR_SYSTEM, "opening registry `%s`: %s", path,
                     reg->db ? sqlite3_errmsg (reg->db) : "out of memory");
      nex_registry_close (reg);
      return NULL;
    }
  sqlite3_extended_result_codes (reg->db, 1);
  if (db_check_untouched (reg->db, nex_migrations, err) < 0 || db_configure (reg->db, err) < 0
      || nex_registry_migrate (reg->db, nex_migrations, err) < 0)
    {
      int code = sqlite3_errcode (reg->db) & 0xff;
      if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
        {
          cleanup_free char *why = nex_xstrdup (sqlite3_errmsg (reg->db));
          nex_error_free (err);
          nex_error_set (err, NEX_ERR_SYSTEM,
                         "registry `%s` is corrupt or not a SQLite database (%s); nexd leaves it as it is: restore "
                         "it from a backup, or move it away to start with an empty registry",
                         path, why);
        }
      else
        nex_error_wrap (err, "registry `%s`", path);
      nex_registry_close (reg);
      return NULL;
    }
  db_vacuum_mode (reg->db);
  return reg;
}

void
nex_registry_close (nex_registry_t *reg)
{
  if (reg == NULL)
    return;
  sqlite3_close (reg->db); /* every statement is finalized by now, so this closes for real */
  pthread_mutex_destroy (&reg->lock);
  free (reg);
}

int
nex_registry_schema_version (nex_registry_t *reg)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  int64_t version = -1;
  if (db_query_int (reg->db, "PRAGMA user_version", NULL, 0, &version, NULL) <= 0)
    return -1;
  return (int)version;
}

/* ---- metadata -------------------------------------------------------------------------------------------- */

int
nex_registry_meta_get (nex_registry_t *reg, const char *key, char **out, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db, "SELECT value FROM meta WHERE key = ?1", DB_ARGS (DB_TEXT (key)), err);
  int row = stmt ? db_step (reg->db, stmt, err) : -1;
  if (row < 0)
    return nex_error_wrap (err, "reading meta `%s`", key);
  *out = row ? col_text (stmt, 0) : NULL;
  return row;
}

int
nex_registry_meta_set (nex_registry_t *reg, const char *key, const char *value, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  if (db_exec (reg->db,
               "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
               DB_ARGS (DB_TEXT (key), DB_TEXT (value)), err)
      < 0)
    return nex_error_wrap (err, "writing meta `%s`", key);
  return 0;
}

/* ---- workloads ------------------------------------------------------------------------------------------- */

/* The workloads columns in the order workload_from_row() reads them and workload_insert() binds them. */
#define WORKLOAD_COLUMNS                                                                                               \
  "id, name, namespace, description, artifact, sha256, digest, argv, env, driver, state, reason, exit_code, "          \
  "exit_signal, pid, endpoint, created_at, updated_at, started_at, finished_at, log_lines, log_dropped, "              \
  "resources, restart_policy, max_restarts, restarts, capabilities, cwd, agent_start, network, labels, type, "         \
  "trigger_subjects, function_timeout_s, max_concurrency, image, image_digest, entrypoint, cmd, user, process, net, "  \
  "from_snapshot, function_mode"

/* The one row -> struct conversion, for a statement selecting WORKLOAD_COLUMNS.  Fills *OUT or fails. */
static int
workload_from_row (sqlite3_stmt *stmt, nex_workload_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  const char *id = (const char *)sqlite3_column_text (stmt, 0);
  const char *state = (const char *)sqlite3_column_text (stmt, 10);
  if (id == NULL || strlen (id) > NEX_ID_LEN || nex_state_parse (state, &out->state, NULL) < 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "corrupt workload row `%s` (state `%s`)", id ? id : "?",
                          state ? state : "?");
  memcpy (out->id, id, strlen (id) + 1);
  out->name = col_text (stmt, 1);
  out->namespace_ = col_text (stmt, 2);
  out->description = col_text (stmt, 3);
  out->artifact = col_text (stmt, 4);
  out->sha256 = col_text (stmt, 5);
  out->digest = col_text (stmt, 6);
  out->argv = col_json (stmt, 7, JSON_ARRAY);
  out->env = col_json (stmt, 8, JSON_OBJECT);
  out->driver = col_text (stmt, 9);
  out->reason = col_text (stmt, 11);
  out->has_exit_code = sqlite3_column_type (stmt, 12) != SQLITE_NULL;
  out->exit_code = sqlite3_column_int (stmt, 12);
  out->exit_signal = sqlite3_column_int (stmt, 13);
  out->pid = sqlite3_column_int64 (stmt, 14);
  out->endpoint = col_text (stmt, 15);
  out->created_at = sqlite3_column_int64 (stmt, 16);
  out->updated_at = sqlite3_column_int64 (stmt, 17);
  out->started_at = sqlite3_column_int64 (stmt, 18);
  out->finished_at = sqlite3_column_int64 (stmt, 19);
  out->log_lines = sqlite3_column_int64 (stmt, 20);
  out->log_dropped = sqlite3_column_int64 (stmt, 21);
  cleanup_json json_t *resources = col_json (stmt, 22, JSON_OBJECT);
  nex_resources_from_json (resources, &out->resources);
  const char *policy = (const char *)sqlite3_column_text (stmt, 23);
  for (int p = NEX_RESTART_NEVER; p <= NEX_RESTART_ALWAYS; p++)
    if (policy && strcmp (policy, nex_restart_policy_name ((nex_restart_policy_t)p)) == 0)
      out->restart_policy = (nex_restart_policy_t)p;
  out->max_restarts = sqlite3_column_int64 (stmt, 24);
  out->restarts = sqlite3_column_int64 (stmt, 25);
  out->capabilities = col_json (stmt, 26, JSON_ARRAY);
  out->cwd = col_text (stmt, 27);
  out->agent_start = sqlite3_column_int64 (stmt, 28);
  const char *network = (const char *)sqlite3_column_text (stmt, 29);
  out->host_network = network && strcmp (network, "host") == 0;
  /* Bridge is told by a net spec (schema 009); the network column says none for it (schema 002's CHECK knew only
   * none and host when bridge came). */
  out->net = sqlite3_column_type (stmt, 41) != SQLITE_NULL ? col_json (stmt, 41, JSON_OBJECT) : NULL;
  out->labels = col_json (stmt, 30, JSON_OBJECT);
  const char *type = (const char *)sqlite3_column_text (stmt, 31);
  out->type = type && strcmp (type, "function") == 0 ? NEX_WORKLOAD_FUNCTION : NEX_WORKLOAD_SERVICE;
  if (out->type == NEX_WORKLOAD_FUNCTION)
    {
      out->trigger_subjects = col_json (stmt, 32, JSON_ARRAY);
      out->function_timeout_s = sqlite3_column_int64 (stmt, 33);
      out->max_concurrency = sqlite3_column_int64 (stmt, 34);
      const char *mode = (const char *)sqlite3_column_text (stmt, 43);
      out->function_mode = mode && strcmp (mode, "persistent") == 0 ? NEX_FUNCTION_PERSISTENT : NEX_FUNCTION_PER_CALL;
    }
  out->image = col_text (stmt, 35);
  out->image_digest = col_text (stmt, 36);
  if (sqlite3_column_type (stmt, 37) != SQLITE_NULL)
    out->entrypoint = col_json (stmt, 37, JSON_ARRAY);
  if (sqlite3_column_type (stmt, 38) != SQLITE_NULL)
    out->cmd = col_json (stmt, 38, JSON_ARRAY);
  out->user = col_text (stmt, 39);
  if (sqlite3_column_type (stmt, 40) != SQLITE_NULL)
    out->process = col_json (stmt, 40, JSON_OBJECT);
  out->from_snapshot = col_text (stmt, 42);
  /* An image workload's artifact is stored empty (the column is NOT NULL): it has none. */
  if (out->image && out->artifact && out->artifact[0] == '\0')
    {
      free (out->artifact);
      out->artifact = NULL;
    }
  return 0;
}

/* V as compact JSON text (keys sorted, so that equal env objects store equal text); FALLBACK when V is NULL. */
static char *
json_text (const json_t *v, const char *fallback)
{
  char *s = v ? json_dumps (v, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  return s ? s : nex_xstrdup (fallback);
}

/* Appends the next entry (seq = last + 1) to workload ID's state history. */
static int
history_append (sqlite3 *db, const char *id, nex_state_t state, int64_t at, const char *reason, nex_error_t *err)
{
  if (db_exec (db,
               "INSERT INTO workload_states (workload_id, seq, state, at, reason) "
               "SELECT ?1, COALESCE (MAX (seq), 0) + 1, ?2, ?3, ?4 FROM workload_states WHERE workload_id = ?1",
               DB_ARGS (DB_TEXT (id), DB_TEXT (nex_state_name (state)), DB_INT (at), DB_TEXT (reason)), err)
      < 0)
    return nex_error_wrap (err, "recording the state history");
  return 0;
}

typedef struct insert_ctx
{
  const nex_workload_t *w;
  const json_t *event;
} insert_ctx_t;

static int event_insert (sqlite3 *db, const json_t *event, nex_error_t *err);

static int
workload_insert (sqlite3 *db, void *ctx, nex_error_t *err)
{
  const insert_ctx_t *ic = ctx;
  const nex_workload_t *w = ic->w;
  cleanup_free char *argv = json_text (w->argv, "[]");
  cleanup_free char *env = json_text (w->env, "{}");
  cleanup_json json_t *resources_json = nex_resources_to_json (&w->resources);
  cleanup_free char *resources = json_text (resources_json, "{}");
  cleanup_free char *capabilities = json_text (w->capabilities, "[]");
  cleanup_free char *labels = json_text (w->labels, "{}");
  int fn = w->type == NEX_WORKLOAD_FUNCTION;
  cleanup_free char *triggers = fn ? json_text (w->trigger_subjects, "[]") : NULL;
  cleanup_free char *entrypoint = w->entrypoint ? json_text (w->entrypoint, "[]") : NULL;
  cleanup_free char *cmd = w->cmd ? json_text (w->cmd, "[]") : NULL;
  cleanup_free char *process = w->process ? json_text (w->process, "{}") : NULL;
  cleanup_free char *net = w->net ? json_text (w->net, "{}") : NULL;
  if (db_exec (
          db,
          "INSERT INTO workloads (" WORKLOAD_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
          "?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, "
          "?33, ?34, ?35, ?36, ?37, ?38, ?39, ?40, ?41, ?42, ?43, ?44)",
          DB_ARGS (DB_TEXT (w->id), DB_TEXT (w->name), DB_TEXT (w->namespace_), DB_TEXT (w->description),
                   DB_TEXT (w->artifact ? w->artifact : ""), DB_TEXT (w->sha256), DB_TEXT (w->digest), DB_TEXT (argv),
                   DB_TEXT (env), DB_TEXT (w->driver), DB_TEXT (nex_state_name (w->state)), DB_TEXT (w->reason),
                   DB_OPT_INT (w->has_exit_code, w->exit_code), DB_NONZERO (w->exit_signal), DB_NONZERO (w->pid),
                   DB_TEXT (w->endpoint), DB_INT (w->created_at), DB_INT (w->updated_at), DB_NONZERO (w->started_at),
                   DB_NONZERO (w->finished_at), DB_INT (w->log_lines), DB_INT (w->log_dropped), DB_TEXT (resources),
                   DB_TEXT (nex_restart_policy_name (w->restart_policy)), DB_INT (w->max_restarts),
                   DB_INT (w->restarts), DB_TEXT (capabilities), DB_TEXT (w->cwd), DB_NONZERO (w->agent_start),
                   DB_TEXT (w->host_network ? "host" : "none"), DB_TEXT (labels),
                   DB_TEXT (nex_workload_type_name (w->type)), DB_TEXT (triggers),
                   DB_OPT_INT (fn, w->function_timeout_s), DB_OPT_INT (fn, w->max_concurrency), DB_TEXT (w->image),
                   DB_TEXT (w->image_digest), DB_TEXT (entrypoint), DB_TEXT (cmd), DB_TEXT (w->user), DB_TEXT (process),
                   DB_TEXT (net), DB_TEXT (w->from_snapshot),
                   DB_TEXT (fn ? nex_function_mode_name (w->function_mode) : NULL)),
          err)
      < 0)
    return -1;
  if (history_append (db, w->id, w->state, w->created_at, w->reason, err) < 0)
    return -1;
  return ic->event ? event_insert (db, ic->event, err) : 0;
}

int
nex_registry_workload_insert_event (nex_registry_t *reg, const nex_workload_t *w, const json_t *event, nex_error_t *err)
{
  insert_ctx_t ic = { w, event };
  if (reg_transaction (reg, workload_insert, &ic, err) < 0)
    return nex_error_wrap (err, "storing workload `%s`", w->id);
  return 0;
}

int
nex_registry_workload_insert (nex_registry_t *reg, const nex_workload_t *w, nex_error_t *err)
{
  return nex_registry_workload_insert_event (reg, w, NULL, err);
}

/* Loads workload ID's row on DB (the caller holds the lock) into *OUT, or fails (NEX_ERR_NOT_FOUND when absent). */
static int
workload_load (sqlite3 *db, const char *id, nex_workload_t *out, nex_error_t *err)
{
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (db, "SELECT " WORKLOAD_COLUMNS " FROM workloads WHERE id = ?1", DB_ARGS (DB_TEXT (id)), err);
  int row = stmt ? db_step (db, stmt, err) : -1;
  if (row < 0)
    return nex_error_wrap (err, "loading workload `%s`", id);
  if (row == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no workload `%s`", id);
  return workload_from_row (stmt, out, err);
}

int
nex_registry_workload_get (nex_registry_t *reg, const char *id, nex_workload_t *out, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  return workload_load (reg->db, id, out, err);
}

/* Appends FMT (a string literal) with its arguments to the string SQL (a char * variable) owns. */
#define SQL_APPEND(sql, fmt, ...)                                                                                      \
  do                                                                                                                   \
    {                                                                                                                  \
      char *next_ = nex_xasprintf ("%s" fmt, sql, __VA_ARGS__);                                                        \
      free (sql);                                                                                                      \
      sql = next_;                                                                                                     \
    }                                                                                                                  \
  while (0)

int
nex_registry_workload_list (nex_registry_t *reg, const nex_workload_filter_t *f, nex_workload_t **out, size_t *n,
                            nex_error_t *err)
{
  const char *ns = f ? f->namespace_ : NULL;
  const char *state = f && f->state ? nex_state_name (*f->state) : NULL;
  size_t n_labels = f ? f->n_labels : 0;
  nex_workload_t *items = NULL;
  size_t count = 0;
  int row = -1;

  *out = NULL;
  *n = 0;
  if (n_labels > NEX_WORKLOAD_FILTER_MAX_LABELS)
    return nex_error_field (err, "label", "at most %d label filters", NEX_WORKLOAD_FILTER_MAX_LABELS);
  /* created_at then id: a stable order even for workloads created in the same millisecond, and the order the
   * cursor (after_created, after_id) continues.  Each condition is written only when it is set, and the cursor
   * as a row-value comparison, so that SQLite walks workloads_created (or workloads_namespace_created) from the
   * cursor on and stops after LIMIT rows: a page costs the same at the end of 100,000 workloads as at the start
   * (an `?1 IS NULL OR ...` form would make it scan from the first row). */
  cleanup_free char *namespaces = f && f->namespaces ? json_dumps (f->namespaces, JSON_COMPACT) : NULL;
  db_value_t vals[6 + 2 * NEX_WORKLOAD_FILTER_MAX_LABELS]; /* 5 filters, 2 per label, the limit */
  size_t n_vals = 0;
  cleanup_free char *sql = nex_xstrdup ("SELECT " WORKLOAD_COLUMNS " FROM workloads WHERE 1");
  if (ns)
    {
      SQL_APPEND (sql, " AND namespace = ?%zu", n_vals + 1);
      vals[n_vals++] = DB_TEXT (ns);
    }
  if (state)
    {
      SQL_APPEND (sql, " AND state = ?%zu", n_vals + 1);
      vals[n_vals++] = DB_TEXT (state);
    }
  if (f && f->after_id)
    {
      SQL_APPEND (sql, " AND (created_at, id) > (?%zu, ?%zu)", n_vals + 1, n_vals + 2);
      vals[n_vals++] = DB_INT (f->after_created);
      vals[n_vals++] = DB_TEXT (f->after_id);
    }
  if (namespaces)
    {
      SQL_APPEND (sql, " AND namespace IN (SELECT value FROM json_each (?%zu))", n_vals + 1);
      vals[n_vals++] = DB_TEXT (namespaces);
    }
  /* Label keys are bound as JSON paths; the key rule (nex_label_key_valid) keeps quotes out of them. */
  char paths[NEX_WORKLOAD_FILTER_MAX_LABELS][80];
  for (size_t i = 0; i < n_labels; i++)
    {
      snprintf (paths[i], sizeof paths[i], "$.\"%s\"", f->labels[i].key);
      if (f->labels[i].value)
        SQL_APPEND (sql, " AND json_extract (labels, ?%zu) = ?%zu", n_vals + 1, n_vals + 2);
      else
        SQL_APPEND (sql, " AND json_type (labels, ?%zu) IS NOT NULL", n_vals + 1);
      vals[n_vals++] = DB_TEXT (paths[i]);
      if (f->labels[i].value)
        vals[n_vals++] = DB_TEXT (f->labels[i].value);
    }
  SQL_APPEND (sql, " ORDER BY created_at, id LIMIT ?%zu", n_vals + 1);
  vals[n_vals++] = DB_INT (f && f->limit > 0 ? f->limit : -1);

  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (reg->db, sql, vals, n_vals, err);
  size_t cap = 0;
  while (stmt && (row = db_step (reg->db, stmt, err)) > 0)
    {
      if (count == cap)
        {
          /* Doubling: a page of 1000 workloads copied once per growth, not once per row. */
          cap = cap ? cap * 2 : 16;
          items = nex_xrealloc (items, cap * sizeof *items);
        }
      if (workload_from_row (stmt, &items[count], err) < 0)
        {
          row = -1;
          break;
        }
      count++;
    }
  if (row < 0)
    {
      for (size_t i = 0; i < count; i++)
        nex_workload_release (&items[i]);
      free (items);
      return nex_error_wrap (err, "listing workloads");
    }
  *out = items;
  *n = count;
  return 0;
}

/* Loads workload ID's log_lines counter, failing with NEX_ERR_NOT_FOUND when there is no such workload. */
static int
workload_require (sqlite3 *db, const char *id, int64_t *log_lines, nex_error_t *err)
{
  int row = db_query_int (db, "SELECT log_lines FROM workloads WHERE id = ?1", DB_ARGS (DB_TEXT (id)), log_lines, err);
  if (row < 0)
    return -1;
  if (row == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no workload `%s`", id);
  return 0;
}

typedef struct transition_ctx
{
  const char *id;
  const nex_state_change_t *change;
} transition_ctx_t;

static int
workload_transition (sqlite3 *db, void *ctx, nex_error_t *err)
{
  const transition_ctx_t *t = ctx;
  const nex_state_change_t *c = t->change;
  nex_state_t from;
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (db, "SELECT state FROM workloads WHERE id = ?1", DB_ARGS (DB_TEXT (t->id)), err);
  int row = stmt ? db_step (db, stmt, err) : -1;
  if (row < 0)
    return -1;
  if (row == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no workload `%s`", t->id);
  if (nex_state_parse ((const char *)sqlite3_column_text (stmt, 0), &from, NULL) < 0)
    return nex_error_set (err, NEX_ERR_SYSTEM, "workload `%s` has a corrupt state", t->id);
  if (nex_state_is_final (from))
    return nex_error_set (err, NEX_ERR_CONFLICT, "workload `%s` is %s and cannot become %s", t->id,
                          nex_state_name (from), nex_state_name (c->state));

  int64_t now = nex_clock_now_ms ();
  int64_t started = c->state == NEX_STATE_RUNNING && from != NEX_STATE_RUNNING ? now : 0;
  int64_t finished = nex_state_is_final (c->state) ? now : 0;
  /* NULL parameters leave their column unchanged (COALESCE); pid -1 and endpoint "" clear theirs. */
  if (db_exec (db,
               "UPDATE workloads SET state = ?2, updated_at = ?3, "
               "reason = CASE WHEN ?4 IS NULL THEN reason ELSE NULLIF (?4, '') END, "
               "exit_code = COALESCE (?5, exit_code), exit_signal = COALESCE (?6, exit_signal), "
               "pid = CASE ?7 WHEN 0 THEN pid WHEN -1 THEN NULL ELSE ?7 END, "
               "endpoint = CASE WHEN ?8 IS NULL THEN endpoint ELSE NULLIF (?8, '') END, "
               "digest = COALESCE (?9, digest), started_at = COALESCE (?10, started_at), "
               "finished_at = COALESCE (?11, finished_at), restarts = restarts + ?12, "
               "agent_start = CASE ?13 WHEN 0 THEN agent_start WHEN -1 THEN NULL ELSE ?13 END, "
               "output_stdout = CASE ?13 WHEN 0 THEN output_stdout END, "
               "output_stderr = CASE ?13 WHEN 0 THEN output_stderr END WHERE id = ?1",
               DB_ARGS (DB_TEXT (t->id), DB_TEXT (nex_state_name (c->state)), DB_INT (now), DB_TEXT (c->reason),
                        DB_OPT_INT (c->has_exit_code, c->exit_code), DB_NONZERO (c->exit_signal), DB_INT (c->pid),
                        DB_TEXT (c->endpoint), DB_TEXT (c->digest), DB_NONZERO (started), DB_NONZERO (finished),
                        DB_INT (c->restarted ? 1 : 0), DB_INT (c->agent_start)),
               err)
      < 0)
    return -1;
  /* Staying in the same state only updates details (pid, endpoint, digest): not a new history entry. */
  if (c->state == from)
    return 0;
  const char *why = c->note ? c->note : c->reason;
  return history_append (db, t->id, c->state, now, why && why[0] ? why : NULL, err);
}

int
nex_registry_workload_transition (nex_registry_t *reg, const char *id, const nex_state_change_t *c, nex_error_t *err)
{
  if ((unsigned)c->state >= NEX_STATE__COUNT)
    return nex_error_field (err, "state", "unknown state %d", (int)c->state);
  transition_ctx_t t = { id, c };
  if (reg_transaction (reg, workload_transition, &t, err) < 0)
    return nex_error_wrap (err, "moving workload `%s` to %s", id, nex_state_name (c->state));
  return 0;
}

typedef struct transition_event_ctx
{
  transition_ctx_t t;
  nex_registry_event_fn build;
  void *build_ctx;
  nex_workload_t *out;
  json_t *event;
} transition_event_ctx_t;

static int
workload_transition_event (sqlite3 *db, void *ctx, nex_error_t *err)
{
  transition_event_ctx_t *te = ctx;
  if (workload_transition (db, &te->t, err) < 0)
    return -1;
  nex_workload_release (te->out);
  if (workload_load (db, te->t.id, te->out, err) < 0)
    return -1;
  json_decref (te->event);
  te->event = te->build ? te->build (te->out, te->build_ctx) : NULL;
  return te->event ? event_insert (db, te->event, err) : 0;
}

int
nex_registry_workload_transition_event (nex_registry_t *reg, const char *id, const nex_state_change_t *c,
                                        nex_registry_event_fn build, void *ctx, nex_workload_t *out, json_t **event,
                                        nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  *event = NULL;
  if ((unsigned)c->state >= NEX_STATE__COUNT)
    return nex_error_field (err, "state", "unknown state %d", (int)c->state);
  transition_event_ctx_t te = { { id, c }, build, ctx, out, NULL };
  if (reg_transaction (reg, workload_transition_event, &te, err) < 0)
    {
      nex_workload_release (out);
      memset (out, 0, sizeof *out);
      json_decref (te.event);
      return nex_error_wrap (err, "moving workload `%s` to %s", id, nex_state_name (c->state));
    }
  *event = te.event;
  return 0;
}

json_t *
nex_registry_workload_history (nex_registry_t *reg, const char *id, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  int64_t log_lines;
  if (workload_require (reg->db, id, &log_lines, err) < 0)
    return NULL;
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db, "SELECT state, at, reason FROM workload_states WHERE workload_id = ?1 ORDER BY seq",
                    DB_ARGS (DB_TEXT (id)), err);
  cleanup_json json_t *history = json_array ();
  int row = -1;
  while (stmt && (row = db_step (reg->db, stmt, err)) > 0)
    {
      json_t *entry
          = json_pack ("{s:s, s:o}", "state", (const char *)sqlite3_column_text (stmt, 0), "at", col_time (stmt, 1));
      json_object_set_new (entry, "reason",
                           sqlite3_column_type (stmt, 2) == SQLITE_NULL
                               ? json_null ()
                               : json_string ((const char *)sqlite3_column_text (stmt, 2)));
      json_array_append_new (history, entry);
    }
  if (row < 0)
    {
      nex_error_wrap (err, "reading the history of workload `%s`", id);
      return NULL;
    }
  return NEX_STEAL_PTR (history);
}

int
nex_registry_count_by_state (nex_registry_t *reg, int64_t counts[NEX_STATE__COUNT], nex_error_t *err)
{
  /* Read before the data: a write after this point makes the next call look again. */
  uint64_t gen = nex_registry_generation (reg);
  for (int i = 0; i < NEX_STATE__COUNT; i++)
    counts[i] = 0;
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  if (reg->counts_valid && reg->counts_generation == gen)
    {
      memcpy (counts, reg->counts, sizeof reg->counts);
      return 0;
    }
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db, "SELECT state, COUNT (*) FROM workloads GROUP BY state", NULL, 0, err);
  int row = -1;
  while (stmt && (row = db_step (reg->db, stmt, err)) > 0)
    {
      nex_state_t state;
      if (nex_state_parse ((const char *)sqlite3_column_text (stmt, 0), &state, NULL) == 0)
        counts[state] = sqlite3_column_int64 (stmt, 1);
    }
  if (row < 0)
    return nex_error_wrap (err, "counting workloads");
  memcpy (reg->counts, counts, sizeof reg->counts);
  reg->counts_generation = gen;
  reg->counts_valid = 1;
  return 0;
}

/* ---- logs ------------------------------------------------------------------------------------------------ */

const char *
nex_stream_name (nex_stream_t s)
{
  return s == NEX_STREAM_CONSOLE ? "console" : s == NEX_STREAM_STDERR ? "stderr" : "stdout";
}

typedef struct log_append_ctx
{
  const char *id;
  const nex_log_line_t *lines;
  size_t n;
  int64_t skipped;
  int64_t bound;
  const int64_t *offsets; /* stdout and stderr stored up to here (NULL, or -1: unchanged) */
  int64_t first_seq;      /* out: the number given to lines[0] */
} log_append_ctx_t;

static int
log_append (sqlite3 *db, void *ctx, nex_error_t *err)
{
  log_append_ctx_t *a = ctx;
  int64_t last;
  if (workload_require (db, a->id, &last, err) < 0)
    return -1;
  last += a->skipped;
  a->first_seq = last + 1;

  cleanup_stmt sqlite3_stmt *insert = db_prepare (
      db, "INSERT INTO logs (workload_id, seq, stream, ts, text) VALUES (?1, ?2, ?3, ?4, ?5)", NULL, 0, err);
  if (insert == NULL)
    return -1;
  /* Thousands of rows a batch from a chatty workload: the id is bound once, a line's text as it is (no copy)
   * unless it must be made UTF-8 first. */
  if (db_bind (db, insert, DB_ARGS (DB_TEXT (a->id)), err) < 0)
    return -1;
  for (size_t i = 0; i < a->n; i++)
    {
      const nex_log_line_t *l = &a->lines[i];
      size_t len = l->len;
      cleanup_free char *sanitized
          = nex_utf8_valid (l->text, l->len) ? NULL : nex_utf8_sanitize (l->text, l->len, &len);
      sqlite3_reset (insert);
      if (sqlite3_bind_int64 (insert, 2, ++last) != SQLITE_OK
          || sqlite3_bind_int (insert, 3, (int)l->stream) != SQLITE_OK
          || sqlite3_bind_int64 (insert, 4, l->ts) != SQLITE_OK
          || sqlite3_bind_text64 (insert, 5, sanitized ? sanitized : (l->len ? l->text : ""), len, SQLITE_STATIC,
                                  SQLITE_UTF8)
                 != SQLITE_OK)
        return db_error (db, err, "binding a log line");
      if (db_step (db, insert, err) < 0)
        return -1;
    }

  int64_t dropped = a->skipped;
  if (a->bound > 0 && last > a->bound)
    {
      int64_t deleted = db_exec (db, "DELETE FROM logs WHERE workload_id = ?1 AND seq <= ?2",
                                 DB_ARGS (DB_TEXT (a->id), DB_INT (last - a->bound)), err);
      if (deleted < 0)
        return -1;
      dropped += deleted;
    }
  int64_t out = a->offsets ? a->offsets[0] : -1, errs = a->offsets ? a->offsets[1] : -1;
  if (db_exec (db,
               "UPDATE workloads SET log_lines = ?2, log_dropped = log_dropped + ?3, "
               "output_stdout = CASE WHEN ?4 < 0 THEN output_stdout ELSE ?4 END, "
               "output_stderr = CASE WHEN ?5 < 0 THEN output_stderr ELSE ?5 END WHERE id = ?1",
               DB_ARGS (DB_TEXT (a->id), DB_INT (last), DB_INT (dropped), DB_INT (out), DB_INT (errs)), err)
      < 0)
    return -1;
  return 0;
}

int
nex_registry_log_append_seq (nex_registry_t *reg, const char *id, const nex_log_line_t *lines, size_t n,
                             int64_t skipped, int64_t bound, const int64_t offsets[2], int64_t *first_seq,
                             nex_error_t *err)
{
  for (size_t i = 0; i < n; i++)
    if (lines[i].stream != NEX_STREAM_STDOUT && lines[i].stream != NEX_STREAM_STDERR
        && lines[i].stream != NEX_STREAM_CONSOLE)
      return nex_error_field (err, "stream", "unknown stream %d", (int)lines[i].stream);
  log_append_ctx_t a = { id, lines, n, skipped < 0 ? 0 : skipped, bound, offsets, 0 };
  if (reg_transaction (reg, log_append, &a, err) < 0)
    return nex_error_wrap (err, "appending to the log of workload `%s`", id);
  if (first_seq)
    *first_seq = a.first_seq;
  return 0;
}

int
nex_registry_log_append (nex_registry_t *reg, const char *id, const nex_log_line_t *lines, size_t n, int64_t bound,
                         nex_error_t *err)
{
  return nex_registry_log_append_seq (reg, id, lines, n, 0, bound, NULL, NULL, err);
}

/* Reads the log lines STMT selects (seq, stream, ts, text) into a JSON array; NULL on error. */
static json_t *
log_lines_json (sqlite3 *db, sqlite3_stmt *stmt, const char *id, nex_error_t *err)
{
  cleanup_json json_t *lines = json_array ();
  int row = -1;
  while (stmt && (row = db_step (db, stmt, err)) > 0)
    {
      const char *text = (const char *)sqlite3_column_text (stmt, 3);
      size_t len = (size_t)sqlite3_column_bytes (stmt, 3);
      json_t *jtext = json_stringn (text ? text : "", len);
      if (jtext == NULL)
        {
          /* Only rows written by something other than nexd can hold invalid UTF-8; show them anyway. */
          cleanup_free char *safe = nex_utf8_sanitize (text, len, &len);
          jtext = json_stringn (safe, len);
        }
      json_array_append_new (
          lines, json_pack ("{s:I, s:s, s:o, s:o}", "seq", (json_int_t)sqlite3_column_int64 (stmt, 0), "stream",
                            nex_stream_name (sqlite3_column_int (stmt, 1)), "ts", col_time (stmt, 2), "text", jtext));
    }
  if (row < 0)
    {
      nex_error_wrap (err, "reading the log of workload `%s`", id);
      return NULL;
    }
  return NEX_STEAL_PTR (lines);
}

int
nex_registry_output_stored (nex_registry_t *reg, const char *id, int64_t stored[2], nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (
      reg->db, "SELECT COALESCE (output_stdout, 0), COALESCE (output_stderr, 0) FROM workloads WHERE id = ?1",
      DB_ARGS (DB_TEXT (id)), err);
  if (stmt == NULL)
    return -1;
  int row = db_step (reg->db, stmt, err);
  if (row < 0)
    return -1;
  if (row == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "workload `%s` not found", id);
  stored[0] = sqlite3_column_int64 (stmt, 0);
  stored[1] = sqlite3_column_int64 (stmt, 1);
  return 0;
}

json_t *
nex_registry_log_tail (nex_registry_t *reg, const char *id, int64_t tail, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  int64_t last;
  if (workload_require (reg->db, id, &last, err) < 0)
    return NULL;
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db, "SELECT seq, stream, ts, text FROM logs WHERE workload_id = ?1 AND seq > ?2 ORDER BY seq",
                    DB_ARGS (DB_TEXT (id), DB_INT (tail > 0 ? last - tail : 0)), err);
  return stmt ? log_lines_json (reg->db, stmt, id, err) : NULL;
}

json_t *
nex_registry_log_after (nex_registry_t *reg, const char *id, int64_t after, int64_t limit, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  int64_t last;
  if (workload_require (reg->db, id, &last, err) < 0)
    return NULL;
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (
      reg->db, "SELECT seq, stream, ts, text FROM logs WHERE workload_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
      DB_ARGS (DB_TEXT (id), DB_INT (after), DB_INT (limit > 0 ? limit : -1)), err);
  return stmt ? log_lines_json (reg->db, stmt, id, err) : NULL;
}

int
nex_registry_log_totals (nex_registry_t *reg, int64_t *lines, int64_t *dropped, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (
      reg->db, "SELECT COALESCE (SUM (log_lines), 0), COALESCE (SUM (log_dropped), 0) FROM workloads", NULL, 0, err);
  int row = stmt ? db_step (reg->db, stmt, err) : -1;
  if (row < 0)
    return nex_error_wrap (err, "summing the logs");
  *lines = row ? sqlite3_column_int64 (stmt, 0) : 0;
  *dropped = row ? sqlite3_column_int64 (stmt, 1) : 0;
  return 0;
}

/* ---- events ---------------------------------------------------------------------------------------------- */

/* Parses an RFC 3339 time ("2026-11-23T08:39:00.123Z", "...+01:00"; fractions beyond milliseconds are
 * truncated) into Unix milliseconds.  0 or -1. */
static int
parse_rfc3339_ms (const char *s, int64_t *out)
{
  struct tm tm = { 0 };
  int end = 0;
  if (sscanf (s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec,
              &end)
          != 6
      || end != 19)
    return -1;
  const char *p = s + end;
  int64_t ms = 0;
  if (*p == '.')
    {
      int digits = 0;
      for (p++; isdigit ((unsigned char)*p); p++, digits++)
        if (digits < 3)
          ms = ms * 10 + (*p - '0');
      if (digits == 0)
        return -1;
      for (; digits < 3; digits++)
        ms *= 10;
    }
  int64_t offset = 0; /* seconds east of UTC */
  int oh, om, n = 0;
  if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
    offset = 0;
  else if ((*p == '+' || *p == '-') && sscanf (p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5 && p[6] == '\0')
    offset = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
  else
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  *out = ((int64_t)timegm (&tm) - offset) * 1000 + ms;
  return 0;
}

/* Inserts EVENT (see nex_registry_event_append) on DB, whose lock the caller holds. */
static int
event_insert (sqlite3 *db, const json_t *event, nex_error_t *err)
{
  const char *id = json_string_value (json_object_get (event, "id"));
  const char *type = json_string_value (json_object_get (event, "type"));
  const char *time_text = json_string_value (json_object_get (event, "time"));
  const json_t *data = json_object_get (event, "data");
  int64_t time_ms;

  if (!json_is_object (event))
    return nex_error_field (err, "", "an event must be a JSON object");
  if (id == NULL || type == NULL)
    return nex_error_field (err, id == NULL ? "id" : "type", "is required and must be a string");
  /* The stored time orders and filters events; an event without a readable one is filed under "now". */
  if (time_text == NULL || parse_rfc3339_ms (time_text, &time_ms) < 0)
    time_ms = nex_clock_now_ms ();
  size_t len;
  cleanup_free char *text = nex_jsontext_dumps (event, &len);
  if (db_exec (db,
               "INSERT INTO events (id, type, source, subject, namespace, workload_id, time, data) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
               DB_ARGS (DB_TEXT (id), DB_TEXT (type), DB_TEXT (json_string_value (json_object_get (event, "source"))),
                        DB_TEXT (json_string_value (json_object_get (event, "subject"))),
                        DB_TEXT (json_string_value (json_object_get (data, "namespace"))),
                        DB_TEXT (json_string_value (json_object_get (data, "workload_id"))), DB_INT (time_ms),
                        DB_TEXTN (text, len)),
               err)
      < 0)
    return nex_error_wrap (err, "storing event `%s`", id);
  return 0;
}

int
nex_registry_event_append (nex_registry_t *reg, const json_t *event, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  return event_insert (reg->db, event, err);
}

int
nex_registry_event_list (nex_registry_t *reg, const nex_event_filter_t *f, json_t **out, int64_t *position, int *more,
                         nex_error_t *err)
{
  *out = NULL;
  *position = f->after;
  *more = 0;
  cleanup_free char *namespaces = f->namespaces ? json_dumps (f->namespaces, JSON_COMPACT) : NULL;
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  /* One more row than asked for tells whether there are more. */
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db,
                    "SELECT seq, data FROM events WHERE seq > ?1 AND (?2 IS NULL OR namespace = ?2) "
                    "AND (?3 IS NULL OR workload_id = ?3) AND (?4 IS NULL OR type = ?4) "
                    "AND (?6 IS NULL OR namespace IN (SELECT value FROM json_each (?6))) ORDER BY seq LIMIT ?5",
                    DB_ARGS (DB_INT (f->after), DB_TEXT (f->namespace_), DB_TEXT (f->workload_id), DB_TEXT (f->type),
                             DB_INT (f->limit + 1), DB_TEXT (namespaces)),
                    err);
  cleanup_json json_t *events = json_array ();
  int row = -1;
  int64_t n = 0;
  while (stmt && (row = db_step (reg->db, stmt, err)) > 0)
    {
      if (n == f->limit)
        {
          *more = 1;
          break;
        }
      json_t *ev = col_json (stmt, 1, JSON_OBJECT);
      json_array_append_new (events, ev);
      *position = sqlite3_column_int64 (stmt, 0);
      n++;
    }
  if (row < 0)
    return nex_error_wrap (err, "listing events");
  *out = NEX_STEAL_PTR (events);
  return 0;
}

/* ---- tokens ---------------------------------------------------------------------------------------------- */

void
nex_token_record_release (nex_token_record_t *t)
{
  if (t == NULL)
    return;
  free (t->name);
  json_decref (t->scopes);
  json_decref (t->namespaces);
  memset (t, 0, sizeof *t);
}

int
nex_registry_token_insert (nex_registry_t *reg, const nex_token_record_t *t, nex_error_t *err)
{
  cleanup_free char *scopes = json_text (t->scopes, "[]");
  cleanup_free char *namespaces = t->namespaces ? json_text (t->namespaces, "[]") : NULL;
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  if (db_exec (reg->db,
               "INSERT INTO tokens (id, name, hash, scopes, namespaces, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
               DB_ARGS (DB_TEXT (t->id), DB_TEXT (t->name), DB_TEXT (t->hash), DB_TEXT (scopes), DB_TEXT (namespaces),
                        DB_INT (t->created_at)),
               err)
      < 0)
    return nex_error_wrap (err, "storing token `%s`", t->id);
  return 0;
}

int
nex_registry_token_list (nex_registry_t *reg, nex_token_record_t **out, size_t *n, nex_error_t *err)
{
  nex_token_record_t *items = NULL;
  size_t count = 0;
  int row = -1;
  *out = NULL;
  *n = 0;
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db,
                    "SELECT id, name, hash, scopes, namespaces, created_at, last_used_at, revoked_at FROM tokens "
                    "ORDER BY created_at, id",
                    NULL, 0, err);
  while (stmt && (row = db_step (reg->db, stmt, err)) > 0)
    {
      items = nex_xrealloc (items, (count + 1) * sizeof *items);
      nex_token_record_t *t = &items[count++];
      memset (t, 0, sizeof *t);
      snprintf (t->id, sizeof t->id, "%s", (const char *)sqlite3_column_text (stmt, 0));
      t->name = col_text (stmt, 1);
      snprintf (t->hash, sizeof t->hash, "%s", (const char *)sqlite3_column_text (stmt, 2));
      t->scopes = col_json (stmt, 3, JSON_ARRAY);
      t->namespaces = sqlite3_column_type (stmt, 4) == SQLITE_NULL ? NULL : col_json (stmt, 4, JSON_ARRAY);
      t->created_at = sqlite3_column_int64 (stmt, 5);
      t->last_used_at = sqlite3_column_int64 (stmt, 6);
      t->revoked_at = sqlite3_column_int64 (stmt, 7);
    }
  if (row < 0)
    {
      for (size_t i = 0; i < count; i++)
        nex_token_record_release (&items[i]);
      free (items);
      return nex_error_wrap (err, "listing tokens");
    }
  *out = items;
  *n = count;
  return 0;
}

int
nex_registry_token_revoke (nex_registry_t *reg, const char *id, int64_t at, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  int64_t exists = 0;
  int row = db_query_int (reg->db, "SELECT COUNT (*) FROM tokens WHERE id = ?1", DB_ARGS (DB_TEXT (id)), &exists, err);
  if (row < 0)
    return nex_error_wrap (err, "revoking token `%s`", id);
  if (exists == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no token `%s`", id);
  if (db_exec (reg->db, "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
               DB_ARGS (DB_TEXT (id), DB_INT (at)), err)
      < 0)
    return nex_error_wrap (err, "revoking token `%s`", id);
  return 0;
}

int
nex_registry_token_touch (nex_registry_t *reg, const char *id, int64_t at, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  if (db_exec (reg->db, "UPDATE tokens SET last_used_at = ?2 WHERE id = ?1", DB_ARGS (DB_TEXT (id), DB_INT (at)), err)
      < 0)
    return nex_error_wrap (err, "recording the use of token `%s`", id);
  return 0;
}

/* ---- secure launches (005_secure_launch.sql) ------------------------------------------------------------- */

void
nex_secure_row_release (nex_secure_row_t *r)
{
  free (r->sealed_env);
  free (r->sender_xkey);
  free (r->jwt_issuer);
  free (r->jwt_subject);
  free (r->jwt_hash);
  memset (r, 0, sizeof *r);
}

int
nex_registry_secure_put (nex_registry_t *reg, const char *id, const nex_secure_row_t *r, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  if (db_exec (reg->db,
               "INSERT OR REPLACE INTO workload_secure (workload_id, sealed_env, sender_xkey, jwt_issuer, jwt_subject, "
               "jwt_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
               DB_ARGS (DB_TEXT (id), DB_TEXT (r->sealed_env), DB_TEXT (r->sender_xkey), DB_TEXT (r->jwt_issuer),
                        DB_TEXT (r->jwt_subject), DB_TEXT (r->jwt_hash)),
               err)
      < 0)
    return nex_error_wrap (err, "storing the secure launch of `%s`", id);
  return 0;
}

int
nex_registry_secure_get (nex_registry_t *reg, const char *id, nex_secure_row_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (
      reg->db,
      "SELECT sealed_env, sender_xkey, jwt_issuer, jwt_subject, jwt_hash FROM workload_secure WHERE workload_id = ?1",
      DB_ARGS (DB_TEXT (id)), err);
  int row = stmt ? db_step (reg->db, stmt, err) : -1;
  if (row < 0)
    return nex_error_wrap (err, "reading the secure launch of `%s`", id);
  if (row > 0)
    {
      out->sealed_env = col_text (stmt, 0);
      out->sender_xkey = col_text (stmt, 1);
      out->jwt_issuer = col_text (stmt, 2);
      out->jwt_subject = col_text (stmt, 3);
      out->jwt_hash = col_text (stmt, 4);
    }
  return row;
}

int
nex_registry_secure_delete (nex_registry_t *reg, const char *id, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  if (db_exec (reg->db, "DELETE FROM workload_secure WHERE workload_id = ?1", DB_ARGS (DB_TEXT (id)), err) < 0)
    return nex_error_wrap (err, "removing the secure launch of `%s`", id);
  return 0;
}

int
nex_registry_jti_claim (nex_registry_t *reg, const char *issuer, const char *jti, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  int64_t changed = db_exec (reg->db, "INSERT OR IGNORE INTO jwt_seen (jti, issuer, at) VALUES (?1, ?2, ?3)",
                             DB_ARGS (DB_TEXT (jti), DB_TEXT (issuer), DB_INT (nex_clock_now_ms ())), err);
  if (changed < 0)
    return nex_error_wrap (err, "recording JWT id `%s`", jti);
  if (changed == 0)
    return nex_error_set (err, NEX_ERR_CONFLICT, "workload_jwt was used before (jti `%s`): replay refused", jti);
  return 0;
}

/* ---- images (schema 007) --------------------------------------------------------------------------------- */

typedef struct image_put
{
  const nex_image_row_t *row;
  const char *ref;
} image_put_t;

static int
image_put (sqlite3 *db, void *ctx, nex_error_t *err)
{
  const image_put_t *p = ctx;
  if (db_exec (db,
               "INSERT INTO images (digest, config, layers, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5) "
               "ON CONFLICT (digest) DO NOTHING",
               DB_ARGS (DB_TEXT (p->row->digest), DB_TEXT (p->row->config), DB_TEXT (p->row->layers),
                        DB_INT (p->row->size), DB_INT (nex_clock_now_ms ())),
               err)
      < 0)
    return -1;
  if (p->ref
      && db_exec (db,
                  "INSERT INTO image_refs (ref, digest) VALUES (?1, ?2) "
                  "ON CONFLICT (ref) DO UPDATE SET digest = excluded.digest",
                  DB_ARGS (DB_TEXT (p->ref), DB_TEXT (p->row->digest)), err)
             < 0)
    return -1;
  return 0;
}

int
nex_registry_image_put (nex_registry_t *reg, const nex_image_row_t *row, const char *ref, nex_error_t *err)
{
  image_put_t p = { .row = row, .ref = ref };
  if (reg_transaction (reg, image_put, &p, err) < 0)
    return nex_error_wrap (err, "storing image `%s`", row->digest);
  return 0;
}

int
nex_registry_image_resolve (nex_registry_t *reg, const char *ref, char digest[72], nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db, "SELECT r.digest FROM image_refs r JOIN images i ON i.digest = r.digest WHERE r.ref = ?1",
                    DB_ARGS (DB_TEXT (ref)), err);
  int row = stmt ? db_step (reg->db, stmt, err) : -1;
  if (row > 0)
    snprintf (digest, 72, "%s", (const char *)sqlite3_column_text (stmt, 0));
  return row;
}

int
nex_registry_image_get (nex_registry_t *reg, const char *digest, nex_image_row_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt = db_prepare (
      reg->db, "SELECT digest, config, layers, size FROM images WHERE digest = ?1", DB_ARGS (DB_TEXT (digest)), err);
  int row = stmt ? db_step (reg->db, stmt, err) : -1;
  if (row <= 0)
    return row;
  snprintf (out->digest, sizeof out->digest, "%s", (const char *)sqlite3_column_text (stmt, 0));
  out->config = col_text (stmt, 1);
  out->layers = col_text (stmt, 2);
  out->size = sqlite3_column_int64 (stmt, 3);
  return 1;
}

void
nex_image_row_release (nex_image_row_t *r)
{
  free (r->config);
  free (r->layers);
  memset (r, 0, sizeof *r);
}

int
nex_registry_image_touch (nex_registry_t *reg, const char *digest, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  if (db_exec (reg->db, "UPDATE images SET last_used_at = ?2 WHERE digest = ?1",
               DB_ARGS (DB_TEXT (digest), DB_INT (nex_clock_now_ms ())), err)
      < 0)
    return nex_error_wrap (err, "marking image `%s` used", digest);
  return 0;
}

json_t *
nex_registry_image_list (nex_registry_t *reg, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db,
                    "SELECT i.digest, i.size, i.created_at, i.last_used_at, "
                    "(SELECT json_group_array (r.ref) FROM image_refs r WHERE r.digest = i.digest), "
                    "(SELECT json_group_array (w.id) FROM workloads w WHERE w.image_digest = i.digest "
                    " AND w.state IN ('pending', 'starting', 'running', 'paused')) "
                    "FROM images i ORDER BY i.created_at, i.digest",
                    NULL, 0, err);
  if (stmt == NULL)
    return NULL;
  json_t *out = json_array ();
  int row;
  while ((row = db_step (reg->db, stmt, err)) > 0)
    json_array_append_new (
        out, json_pack ("{s:s, s:I, s:o, s:o, s:o, s:o}", "digest", (const char *)sqlite3_column_text (stmt, 0), "size",
                        (json_int_t)sqlite3_column_int64 (stmt, 1), "created_at", col_time (stmt, 2), "last_used_at",
                        col_time (stmt, 3), "references", col_json (stmt, 4, JSON_ARRAY), "workloads",
                        col_json (stmt, 5, JSON_ARRAY)));
  if (row < 0)
    {
      json_decref (out);
      return NULL;
    }
  return out;
}

static int
image_delete (sqlite3 *db, void *ctx, nex_error_t *err)
{
  const char *digest = ctx;
  int64_t users = 0;
  if (db_query_int (db,
                    "SELECT count (*) FROM workloads WHERE image_digest = ?1 AND state IN ('pending', 'starting', "
                    "'running', 'paused')",
                    DB_ARGS (DB_TEXT (digest)), &users, err)
      < 0)
    return -1;
  if (users > 0)
    return nex_error_set (err, NEX_ERR_CONFLICT, "image %s is used by %lld workload(s)", digest, (long long)users);
  int64_t gone = db_exec (db, "DELETE FROM images WHERE digest = ?1", DB_ARGS (DB_TEXT (digest)), err);
  if (gone < 0 || db_exec (db, "DELETE FROM image_refs WHERE digest = ?1", DB_ARGS (DB_TEXT (digest)), err) < 0)
    return -1;
  if (gone == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no image %s", digest);
  return 0;
}

int
nex_registry_image_delete (nex_registry_t *reg, const char *digest, nex_error_t *err)
{
  return reg_transaction (reg, image_delete, (void *)digest, err);
}

int
nex_registry_blob_in_use (nex_registry_t *reg, const char *blob, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  int64_t n = 0;
  if (db_query_int (reg->db,
                    "SELECT count (*) FROM images WHERE EXISTS (SELECT 1 FROM json_each (layers) WHERE value = ?1)",
                    DB_ARGS (DB_TEXT (blob)), &n, err)
      < 0)
    return -1;
  return n > 0;
}

int
nex_registry_workload_set_image (nex_registry_t *reg, const char *id, const char *image_digest, const json_t *process,
                                 nex_error_t *err)
{
  cleanup_free char *text = process ? json_text (process, "{}") : NULL;
  cleanup_free char *argv = process ? json_text (json_object_get (process, "argv"), "[]") : NULL;
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  if (db_exec (reg->db,
               "UPDATE workloads SET image_digest = ?2, process = COALESCE (?3, process), argv = COALESCE (?4, argv) "
               "WHERE id = ?1",
               DB_ARGS (DB_TEXT (id), DB_TEXT (image_digest), DB_TEXT (text), DB_TEXT (argv)), err)
      < 0)
    return nex_error_wrap (err, "recording the image of workload `%s`", id);
  return 0;
}

/* ---- snapshots ------------------------------------------------------------------------------------------- */

#define SNAPSHOT_COLUMNS "id, workload_id, driver, path, created_at, size_bytes, spec"

static void
snapshot_from_row (sqlite3_stmt *stmt, nex_snapshot_row_t *out)
{
  memset (out, 0, sizeof *out);
  snprintf (out->id, sizeof out->id, "%s", (const char *)sqlite3_column_text (stmt, 0));
  snprintf (out->workload_id, sizeof out->workload_id, "%s", (const char *)sqlite3_column_text (stmt, 1));
  out->driver = col_text (stmt, 2);
  out->path = col_text (stmt, 3);
  out->created_at = sqlite3_column_int64 (stmt, 4);
  out->size_bytes = sqlite3_column_int64 (stmt, 5);
  out->spec = col_json (stmt, 6, JSON_OBJECT);
}

void
nex_snapshot_row_release (nex_snapshot_row_t *r)
{
  free (r->driver);
  free (r->path);
  json_decref (r->spec);
  memset (r, 0, sizeof *r);
}

int
nex_registry_snapshot_put (nex_registry_t *reg, const nex_snapshot_row_t *row, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_free char *spec = json_text (row->spec, "{}");
  if (db_exec (reg->db, "INSERT INTO snapshots (" SNAPSHOT_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
               DB_ARGS (DB_TEXT (row->id), DB_TEXT (row->workload_id), DB_TEXT (row->driver), DB_TEXT (row->path),
                        DB_INT (row->created_at), DB_INT (row->size_bytes), DB_TEXT (spec)),
               err)
      < 0)
    return nex_error_wrap (err, "storing snapshot `%s`", row->id);
  return 0;
}

int
nex_registry_snapshot_get (nex_registry_t *reg, const char *id, nex_snapshot_row_t *out, nex_error_t *err)
{
  memset (out, 0, sizeof *out);
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db, "SELECT " SNAPSHOT_COLUMNS " FROM snapshots WHERE id = ?1", DB_ARGS (DB_TEXT (id)), err);
  int row = stmt ? db_step (reg->db, stmt, err) : -1;
  if (row > 0)
    snapshot_from_row (stmt, out);
  return row;
}

int
nex_registry_snapshot_list (nex_registry_t *reg, const char *workload_id, nex_snapshot_row_t **out, size_t *n,
                            nex_error_t *err)
{
  *out = NULL;
  *n = 0;
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  cleanup_stmt sqlite3_stmt *stmt
      = db_prepare (reg->db,
                    "SELECT " SNAPSHOT_COLUMNS " FROM snapshots WHERE ?1 IS NULL OR workload_id = ?1 "
                    "ORDER BY created_at, id",
                    DB_ARGS (DB_TEXT (workload_id)), err);
  if (stmt == NULL)
    return -1;
  int row;
  while ((row = db_step (reg->db, stmt, err)) > 0)
    {
      *out = nex_xrealloc (*out, (*n + 1) * sizeof **out);
      snapshot_from_row (stmt, &(*out)[(*n)++]);
    }
  return row < 0 ? -1 : 0;
}

int
nex_registry_snapshot_delete (nex_registry_t *reg, const char *id, nex_error_t *err)
{
  cleanup_unlock pthread_mutex_t *locked = reg_lock (reg);
  int64_t gone = db_exec (reg->db, "DELETE FROM snapshots WHERE id = ?1", DB_ARGS (DB_TEXT (id)), err);
  if (gone < 0)
    return nex_error_wrap (err, "deleting snapshot `%s`", id);
  if (gone == 0)
    return nex_error_set (err, NEX_ERR_NOT_FOUND, "no snapshot %s", id);
  return 0;
}
