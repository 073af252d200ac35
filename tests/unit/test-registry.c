/* SPDX-License-Identifier: Apache-2.0 */
/* test-registry.c — unit tests for the registry (server/registry.c); the workload model it stores is
 * test-workload.c's.
 *
 * Every test works on real SQLite files in the program's scratch directory (testutil.h): migrations (the
 * compiled-in ones and made-up tables, including one that fails half-way), refusal of files that are newer or
 * not databases, workloads (insert, get, list with filters, transitions and their history), bounded logs with
 * invalid UTF-8, events, counts, and a few threads writing at once.  Prints TAP. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/xalloc.h"
#include "server/registry.h"
#include "tests/unit/tap.h"
#include "tests/unit/testutil.h"

/* The newest compiled-in migration. */
static int
newest_migration (void)
{
  int v = 0;
  for (const nex_migration_t *m = nex_migrations; m->sql; m++)
    v = m->version;
  return v;
}

static void
db_closep (sqlite3 **db)
{
  sqlite3_close (*db);
}

/* Runs one query on a separate connection to PATH and returns its first column as a new string (NULL if none). */
static char *
raw_query (const char *path, const char *sql)
{
  cleanup_with (db_closep) sqlite3 *db = NULL;
  cleanup_stmt sqlite3_stmt *stmt = NULL;
  if (sqlite3_open (path, &db) == SQLITE_OK && sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) == SQLITE_OK
      && sqlite3_step (stmt) == SQLITE_ROW && sqlite3_column_text (stmt, 0))
    return nex_xstrdup ((const char *)sqlite3_column_text (stmt, 0));
  return NULL;
}

/* Builds a workload from a request body given as JSON text; aborts the test run on failure. */
static void
make_workload (const char *body_text, nex_workload_t *w)
{
  cleanup_json json_t *body = json_loads (body_text, 0, NULL);
  nex_error_t err = NULL;
  if (body == NULL || nex_workload_from_request (body, "sandbox", w, &err) < 0)
    {
      printf ("Bail out! cannot build workload from %s: %s\n", body_text, err ? err->msg : "bad JSON");
      exit (1);
    }
}

/* make_workload, then stored in REG; a failure ends the run. */
static void
insert_workload (nex_registry_t *reg, const char *body_text, nex_workload_t *w)
{
  nex_error_t err = NULL;
  make_workload (body_text, w);
  if (nex_registry_workload_insert (reg, w, &err) < 0)
    {
      printf ("Bail out! cannot insert %s: %s\n", body_text, err->msg);
      exit (1);
    }
}

static void
test_migrations_fresh (void)
{
  cleanup_free char *path = test_path ("fresh.db");
  nex_error_t err = NULL;
  nex_registry_t *reg = nex_registry_open (path, &err);
  TAP_OK (reg != NULL && err == NULL, "open creates and migrates a new file");
  TAP_OK (nex_registry_schema_version (reg) == newest_migration () && newest_migration () >= 1,
          "schema version is the newest migration (%d)", newest_migration ());
  TAP_OK (nex_registry_meta_set (reg, "node_id", "n1", &err) == 0, "meta set");
  TAP_OK (nex_registry_meta_set (reg, "node_id", "n2", &err) == 0, "meta set replaces");
  nex_registry_close (reg);

  cleanup_free char *mode = raw_query (path, "PRAGMA journal_mode");
  TAP_OK (mode && strcmp (mode, "wal") == 0, "journal mode is wal (%s)", mode ? mode : "?");
  cleanup_free char *tables = raw_query (path, "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master "
                                               "WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name)");
  /* The tables of 001_initial.sql; later migrations add more. */
  int all_there = tables != NULL;
  static const char *const initial[] = { "events", "logs", "meta", "workload_states", "workloads" };
  for (size_t i = 0; all_there && i < sizeof initial / sizeof initial[0]; i++)
    {
      cleanup_free char *needle = nex_xasprintf (",%s,", initial[i]);
      cleanup_free char *hay = nex_xasprintf (",%s,", tables);
      all_there = strstr (hay, needle) != NULL;
    }
  TAP_OK (all_there, "tables created (%s)", tables ? tables : "?");

  reg = nex_registry_open (path, &err);
  TAP_OK (reg != NULL && nex_registry_schema_version (reg) == newest_migration (), "re-open is idempotent");
  cleanup_free char *value = NULL;
  TAP_OK (nex_registry_meta_get (reg, "node_id", &value, &err) == 1 && value && strcmp (value, "n2") == 0,
          "meta survives re-open");
  char *missing = (char *)"x";
  TAP_OK (nex_registry_meta_get (reg, "nope", &missing, &err) == 0 && missing == NULL, "absent meta key gives 0");
  nex_registry_close (reg);
  nex_error_free (&err);
}

static void
test_migrations_custom (void)
{
  static const nex_migration_t good[] = {
    { 1, "001_a", "CREATE TABLE a (x INTEGER);" },
    { 2, "002_b", "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (1);" },
    { 0, NULL, NULL },
  };
  static const nex_migration_t failing[] = {
    { 1, "001_a", "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (7);" },
    { 2, "002_bad", "CREATE TABLE c (z INTEGER); INSERT INTO no_such_table VALUES (1);" },
    { 0, NULL, NULL },
  };
  static const nex_migration_t unordered[] = {
    { 2, "002_b", "CREATE TABLE b (y INTEGER);" },
    { 1, "001_a", "CREATE TABLE a (x INTEGER);" },
    { 0, NULL, NULL },
  };
  nex_error_t err = NULL;
  sqlite3 *db = NULL;

  cleanup_free char *path = test_path ("custom.db");
  sqlite3_open (path, &db);
  TAP_OK (nex_registry_migrate (db, good, &err) == 0, "custom migrations apply");
  nex_registry_migrate (db, good, &err);
  sqlite3_close (db);
  cleanup_free char *version = raw_query (path, "PRAGMA user_version");
  cleanup_free char *rows = raw_query (path, "SELECT count(*) FROM a");
  cleanup_free char *b = raw_query (path, "SELECT count(*) FROM b");
  TAP_OK (version && strcmp (version, "2") == 0 && rows && strcmp (rows, "1") == 0 && b,
          "both steps ran once, in order (version %s)", version ? version : "?");

  cleanup_free char *path2 = test_path ("failing.db");
  sqlite3_open (path2, &db);
  int rc = nex_registry_migrate (db, failing, &err);
  TAP_OK (rc < 0 && err && strstr (err->msg, "002_bad") != NULL, "a failing step fails naming it (%s)",
          err ? err->msg : "no error");
  nex_error_free (&err);
  sqlite3_close (db);
  cleanup_free char *version2 = raw_query (path2, "PRAGMA user_version");
  cleanup_free char *a_rows = raw_query (path2, "SELECT count(*) FROM a");
  cleanup_free char *c_table = raw_query (path2, "SELECT name FROM sqlite_master WHERE name = 'c'");
  TAP_OK (version2 && strcmp (version2, "1") == 0, "failed step leaves version 1 (%s)", version2 ? version2 : "?");
  TAP_OK (a_rows && strcmp (a_rows, "1") == 0 && c_table == NULL, "version 1 intact, step 2 rolled back");

  cleanup_free char *path3 = test_path ("unordered.db");
  sqlite3_open (path3, &db);
  TAP_OK (nex_registry_migrate (db, unordered, &err) < 0 && err, "versions out of order are refused");
  nex_error_free (&err);
  sqlite3_close (db);
}

/* 008 rebuilds the workloads table: with foreign keys on (as nexd opens the file), a workload's history and logs
 * must survive it, and the new state must be accepted. */
static void
test_rebuild_keeps_children (void)
{
  size_t n = 0;
  while (nex_migrations[n].sql && nex_migrations[n].version < 8)
    n++;
  nex_migration_t *before = nex_xzalloc ((n + 1) * sizeof *before);
  memcpy (before, nex_migrations, n * sizeof *before);
  cleanup_free char *path = test_path ("rebuild.db");
  sqlite3 *db = NULL;
  nex_error_t err = NULL;
  sqlite3_open (path, &db);
  sqlite3_exec (db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
  int ok
      = nex_registry_migrate (db, before, &err) == 0
        && sqlite3_exec (db,
                         "INSERT INTO workloads (id, name, namespace, artifact, driver, state, created_at, updated_at)"
                         " VALUES ('w1', 'a', 'default', 'file:///x', 'sandbox', 'running', 1, 1);"
                         "INSERT INTO workload_states VALUES ('w1', 1, 'pending', 1, NULL);"
                         "INSERT INTO workload_states VALUES ('w1', 2, 'running', 2, NULL);"
                         "INSERT INTO logs VALUES ('w1', 1, 1, 3, 'hello');",
                         NULL, NULL, NULL)
               == SQLITE_OK;
  TAP_OK (ok, "a registry at version 7 with a workload, its history and a log line");
  TAP_OK (nex_registry_migrate (db, nex_migrations, &err) == 0, "migrated to the newest with foreign keys on (%s)",
          err ? err->msg : "ok");
  nex_error_free (&err);
  sqlite3_close (db);
  cleanup_free char *states = raw_query (path, "SELECT count(*) FROM workload_states WHERE workload_id = 'w1'");
  cleanup_free char *logs = raw_query (path, "SELECT text FROM logs WHERE workload_id = 'w1'");
  TAP_OK (states && strcmp (states, "2") == 0 && logs && strcmp (logs, "hello") == 0,
          "the rebuild kept the workload's history (%s rows) and logs", states ? states : "no");
  cleanup_free char *paused = raw_query (path, "UPDATE workloads SET state = 'paused' WHERE id = 'w1' RETURNING state");
  TAP_OK (paused && strcmp (paused, "paused") == 0, "state `paused` is accepted after 008");
  cleanup_free char *bad = raw_query (path, "UPDATE workloads SET state = 'bogus' WHERE id = 'w1' RETURNING state");
  TAP_OK (bad == NULL, "an unknown state is still refused by the CHECK constraint");
  free (before);
}

static void
test_refusals (void)
{
  nex_error_t err = NULL;
  sqlite3 *db = NULL;

  cleanup_free char *newer = test_path ("newer.db");
  cleanup_free char *pragma = nex_xasprintf ("PRAGMA user_version = %d", newest_migration () + 1);
  sqlite3_open (newer, &db);
  sqlite3_exec (db, pragma, NULL, NULL, NULL);
  sqlite3_close (db);
  nex_registry_t *reg = nex_registry_open (newer, &err);
  TAP_OK (reg == NULL && err && err->kind == NEX_ERR_CONFLICT && strstr (err->msg, "newer"),
          "a newer schema is refused (%s)", err ? err->msg : "opened");
  nex_error_free (&err);
  nex_registry_close (reg);

  cleanup_free char *junk = test_path ("junk.db");
  FILE *f = fopen (junk, "w");
  for (int i = 0; i < 200; i++)
    fputs ("this is not a database at all\n", f);
  fclose (f);
  reg = nex_registry_open (junk, &err);
  TAP_OK (reg == NULL && err && err->kind == NEX_ERR_SYSTEM && strstr (err->msg, "not a database"),
          "a non-database file is refused (%s)", err ? err->msg : "opened");
  nex_error_free (&err);
  nex_registry_close (reg);

  cleanup_free char *dir = test_path ("no/such/dir/x.db");
  reg = nex_registry_open (dir, &err);
  TAP_OK (reg == NULL && err && err->kind == NEX_ERR_SYSTEM, "an unopenable path is refused (%s)",
          err ? err->msg : "opened");
  nex_error_free (&err);
  nex_registry_close (reg);
}

static void
test_workloads (nex_registry_t *reg, const char *path)
{
  nex_error_t err = NULL;
  nex_workload_t a, b, c, got;

  make_workload ("{\"name\":\"a\",\"namespace\":\"ns1\",\"artifact\":\"file:///bin/a\",\"argv\":[\"-x\",\"y\"],"
                 "\"env\":{\"Z\":\"1\",\"A\":\"2\"},\"description\":\"first\"}",
                 &a);
  make_workload ("{\"name\":\"b\",\"namespace\":\"ns2\",\"artifact\":\"file:///bin/b\",\"resources\":{\"vcpus\":1.5,"
                 "\"memory_mb\":128,\"pids\":64,\"disk_mb\":8},\"restart_policy\":\"always\",\"max_restarts\":2,"
                 "\"capabilities\":[\"CAP_KILL\"],\"cwd\":\"/tmp\"}",
                 &b);
  make_workload ("{\"name\":\"c\",\"namespace\":\"ns1\",\"artifact\":\"file:///bin/c\"}", &c);
  /* Same millisecond for all three: the list order must fall back to the id. */
  a.created_at = b.created_at = c.created_at = 1000000;
  TAP_OK (nex_registry_workload_insert (reg, &a, &err) == 0 && nex_registry_workload_insert (reg, &b, &err) == 0
              && nex_registry_workload_insert (reg, &c, &err) == 0,
          "insert three workloads");
  TAP_OK (nex_registry_workload_insert (reg, &a, &err) < 0 && err && err->kind == NEX_ERR_CONFLICT,
          "a duplicate id is a conflict");
  nex_error_free (&err);

  TAP_OK (nex_registry_workload_get (reg, a.id, &got, &err) == 0, "get");
  TAP_OK (strcmp (got.id, a.id) == 0 && strcmp (got.name, "a") == 0 && strcmp (got.namespace_, "ns1") == 0
              && strcmp (got.description, "first") == 0 && strcmp (got.driver, "sandbox") == 0
              && got.state == NEX_STATE_PENDING && got.sha256 == NULL && got.started_at == 0 && !got.has_exit_code
              && json_equal (got.argv, a.argv) && json_equal (got.env, a.env) && got.created_at == 1000000,
          "get returns what was stored");
  nex_workload_release (&got);
  TAP_OK (nex_registry_workload_get (reg, b.id, &got, &err) == 0 && got.resources.vcpus == 1.5
              && got.resources.memory_mb == 128 && got.resources.pids == 64 && got.resources.disk_mb == 8
              && got.restart_policy == NEX_RESTART_ALWAYS && got.max_restarts == 2 && got.restarts == 0
              && json_equal (got.capabilities, b.capabilities) && strcmp (got.cwd, "/tmp") == 0 && got.agent_start == 0,
          "sandbox options survive the round trip");
  nex_workload_release (&got);
  nex_state_change_t restarted = { .state = NEX_STATE_PENDING, .restarted = 1, .agent_start = 4242 };
  TAP_OK (nex_registry_workload_transition (reg, b.id, &restarted, &err) == 0
              && nex_registry_workload_get (reg, b.id, &got, &err) == 0 && got.restarts == 1 && got.agent_start == 4242,
          "a transition counts a restart and records the agent's start time");
  nex_workload_release (&got);
  cleanup_free char *sql = nex_xasprintf ("SELECT argv || env FROM workloads WHERE id = '%s'", a.id);
  cleanup_free char *stored = raw_query (path, sql);
  TAP_OK (stored && strcmp (stored, "[\"-x\",\"y\"]{\"A\":\"2\",\"Z\":\"1\"}") == 0,
          "argv and env stored as compact JSON, keys sorted (%s)", stored ? stored : "?");

  TAP_OK (nex_registry_workload_get (reg, "00000000-0000-4000-8000-000000000000", &got, &err) < 0 && err
              && err->kind == NEX_ERR_NOT_FOUND,
          "get of an unknown id is not found");
  nex_error_free (&err);

  nex_workload_t *list = NULL;
  size_t n = 0;
  TAP_OK (nex_registry_workload_list (reg, NULL, &list, &n, &err) == 0 && n == 3, "list all gives 3");
  int ordered = n == 3;
  for (size_t i = 1; i < n; i++)
    ordered = ordered && strcmp (list[i - 1].id, list[i].id) < 0;
  TAP_OK (ordered, "same created_at: ordered by id");
  for (size_t i = 0; i < n; i++)
    nex_workload_release (&list[i]);
  free (list);

  nex_workload_filter_t f = { .namespace_ = "ns1" };
  TAP_OK (nex_registry_workload_list (reg, &f, &list, &n, &err) == 0 && n == 2
              && strcmp (list[0].namespace_, "ns1") == 0 && strcmp (list[1].namespace_, "ns1") == 0,
          "list filtered by namespace");
  for (size_t i = 0; i < n; i++)
    nex_workload_release (&list[i]);
  free (list);

  /* pending -> starting -> running -> exited, with what comes along. */
  nex_state_change_t ch = { .state = NEX_STATE_STARTING, .endpoint = "/run/nex/a.sock" };
  TAP_OK (nex_registry_workload_transition (reg, a.id, &ch, &err) == 0, "pending -> starting");
  ch = (nex_state_change_t){ .state = NEX_STATE_RUNNING, .pid = 4242, .digest = "abcd" };
  TAP_OK (nex_registry_workload_transition (reg, a.id, &ch, &err) == 0, "starting -> running");
  nex_registry_workload_get (reg, a.id, &got, &err);
  TAP_OK (got.state == NEX_STATE_RUNNING && got.pid == 4242 && got.started_at > 0 && got.finished_at == 0
              && strcmp (got.endpoint, "/run/nex/a.sock") == 0 && strcmp (got.digest, "abcd") == 0,
          "running: pid, endpoint, digest and started_at set");
  nex_workload_release (&got);
  ch = (nex_state_change_t){ .state = NEX_STATE_EXITED, .has_exit_code = 1, .exit_code = 3, .pid = -1, .endpoint = "" };
  TAP_OK (nex_registry_workload_transition (reg, a.id, &ch, &err) == 0, "running -> exited");
  nex_registry_workload_get (reg, a.id, &got, &err);
  TAP_OK (got.state == NEX_STATE_EXITED && got.has_exit_code && got.exit_code == 3 && got.pid == 0
              && got.endpoint == NULL && got.finished_at >= got.started_at && got.updated_at == got.finished_at,
          "exited: exit code, pid and endpoint cleared, finished_at set");

  cleanup_json json_t *wj = nex_workload_to_json (&got);
  TAP_OK (json_integer_value (json_object_get (wj, "exit_code")) == 3 && json_is_null (json_object_get (wj, "pid"))
              && json_is_null (json_object_get (wj, "exit_signal")) && json_is_null (json_object_get (wj, "sha256"))
              && json_object_get (wj, "endpoint") == NULL
              && strcmp (json_string_value (json_object_get (wj, "state")), "exited") == 0
              && json_is_string (json_object_get (wj, "finished_at"))
              && json_integer_value (json_object_get (json_object_get (wj, "logs"), "lines")) == 0,
          "to_json shows the public fields");
  cleanup_free char *created = json_dumps (json_object_get (wj, "created_at"), JSON_ENCODE_ANY);
  TAP_OK (created && strcmp (created, "\"1970-01-01T00:16:40.000Z\"") == 0, "created_at is RFC 3339 (%s)",
          created ? created : "?");
  nex_workload_release (&got);

  cleanup_json json_t *history = nex_registry_workload_history (reg, a.id, &err);
  TAP_OK (history && json_array_size (history) == 4, "history has 4 entries");
  static const char *const expect[] = { "pending", "starting", "running", "exited" };
  int history_ok = history != NULL;
  for (size_t i = 0; history_ok && i < 4; i++)
    {
      json_t *e = json_array_get (history, i);
      history_ok = json_is_string (json_object_get (e, "at"))
                   && strcmp (json_string_value (json_object_get (e, "state")), expect[i]) == 0;
    }
  TAP_OK (history_ok, "history states in order, each with a time");

  ch = (nex_state_change_t){ .state = NEX_STATE_RUNNING };
  TAP_OK (nex_registry_workload_transition (reg, a.id, &ch, &err) < 0 && err && err->kind == NEX_ERR_CONFLICT,
          "leaving exited is refused");
  nex_error_free (&err);
  TAP_OK (nex_registry_workload_transition (reg, "nope", &ch, &err) < 0 && err && err->kind == NEX_ERR_NOT_FOUND,
          "transition of an unknown id is not found");
  nex_error_free (&err);
  TAP_OK (nex_registry_workload_history (reg, "nope", &err) == NULL && err && err->kind == NEX_ERR_NOT_FOUND,
          "history of an unknown id is not found");
  nex_error_free (&err);

  ch = (nex_state_change_t){ .state = NEX_STATE_FAILED, .reason = "digest mismatch" };
  nex_registry_workload_transition (reg, b.id, &ch, &err);
  nex_state_t exited = NEX_STATE_EXITED;
  f = (nex_workload_filter_t){ .state = &exited };
  TAP_OK (nex_registry_workload_list (reg, &f, &list, &n, &err) == 0 && n == 1 && strcmp (list[0].id, a.id) == 0,
          "list filtered by state");
  for (size_t i = 0; i < n; i++)
    nex_workload_release (&list[i]);
  free (list);
  f = (nex_workload_filter_t){ .namespace_ = "ns2", .state = &exited };
  TAP_OK (nex_registry_workload_list (reg, &f, &list, &n, &err) == 0 && n == 0, "both filters combine");
  free (list);

  int64_t counts[NEX_STATE__COUNT];
  TAP_OK (nex_registry_count_by_state (reg, counts, &err) == 0 && counts[NEX_STATE_PENDING] == 1
              && counts[NEX_STATE_EXITED] == 1 && counts[NEX_STATE_FAILED] == 1 && counts[NEX_STATE_RUNNING] == 0,
          "counts by state");

  nex_workload_release (&a);
  nex_workload_release (&b);
  nex_workload_release (&c);
}

static void
test_logs (nex_registry_t *reg)
{
  nex_error_t err = NULL;
  nex_workload_t w;
  insert_workload (reg, "{\"name\":\"logger\",\"artifact\":\"file:///bin/l\"}", &w);

  char texts[10][16];
  nex_log_line_t lines[10];
  for (int i = 0; i < 10; i++)
    {
      snprintf (texts[i], sizeof texts[i], "line %d", i + 1);
      lines[i] = (nex_log_line_t){ .stream = i % 2 ? NEX_STREAM_STDERR : NEX_STREAM_STDOUT,
                                   .ts = 1700000000000 + i,
                                   .text = texts[i],
                                   .len = strlen (texts[i]) };
    }
  /* Two batches: numbering continues after the first. */
  TAP_OK (nex_registry_log_append (reg, w.id, lines, 6, 4, &err) == 0
              && nex_registry_log_append (reg, w.id, lines + 6, 4, 4, &err) == 0,
          "append 10 lines with bound 4");
  cleanup_json json_t *all = nex_registry_log_tail (reg, w.id, 0, &err);
  int kept = all && json_array_size (all) == 4;
  for (size_t i = 0; kept && i < 4; i++)
    kept = json_integer_value (json_object_get (json_array_get (all, i), "seq")) == (json_int_t)(7 + i);
  TAP_OK (kept, "the last 4 lines are kept (seq 7..10)");
  json_t *first = json_array_get (all, 0);
  TAP_OK (first && strcmp (json_string_value (json_object_get (first, "text")), "line 7") == 0
              && strcmp (json_string_value (json_object_get (first, "stream")), "stdout") == 0
              && strcmp (json_string_value (json_object_get (first, "ts")), "2023-11-14T22:13:20.006Z") == 0,
          "a line has its text, stream and RFC 3339 ts");
  nex_workload_t got;
  nex_registry_workload_get (reg, w.id, &got, &err);
  TAP_OK (got.log_lines == 10 && got.log_dropped == 6, "log_lines 10, log_dropped 6 (%lld, %lld)",
          (long long)got.log_lines, (long long)got.log_dropped);
  nex_workload_release (&got);

  cleanup_json json_t *tail = nex_registry_log_tail (reg, w.id, 2, &err);
  TAP_OK (tail && json_array_size (tail) == 2
              && json_integer_value (json_object_get (json_array_get (tail, 0), "seq")) == 9
              && json_integer_value (json_object_get (json_array_get (tail, 1), "seq")) == 10,
          "tail 2 gives seq 9 and 10");

  /* Lines passed over before storing (output.h) are numbered and counted as dropped, never stored. */
  int64_t first_seq = 0;
  TAP_OK (nex_registry_log_append_seq (reg, w.id, lines, 2, 5, 4, NULL, &first_seq, &err) == 0 && first_seq == 16,
          "append 2 lines after 5 passed over: the first is numbered 16 (%lld)", (long long)first_seq);
  cleanup_json json_t *after_skip = nex_registry_log_tail (reg, w.id, 0, &err);
  nex_registry_workload_get (reg, w.id, &got, &err);
  /* The bound keeps numbers 14..17: 14 and 15 were passed over, 7..10 are deleted. */
  TAP_OK (after_skip && json_array_size (after_skip) == 2
              && json_integer_value (json_object_get (json_array_get (after_skip, 0), "seq")) == 16
              && json_integer_value (json_object_get (json_array_get (after_skip, 1), "seq")) == 17
              && got.log_lines == 17 && got.log_dropped == 6 + 5 + 4,
          "kept: 16, 17; log_lines 17, log_dropped 15 (%lld, %lld)", (long long)got.log_lines,
          (long long)got.log_dropped);
  nex_workload_release (&got);

  static const char bad[] = "ok \xff\xfe \xc3( \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82 end\0nul";
  nex_log_line_t l = { .stream = NEX_STREAM_STDERR, .ts = 1, .text = bad, .len = sizeof bad - 1 };
  TAP_OK (nex_registry_log_append (reg, w.id, &l, 1, 0, &err) == 0, "append invalid UTF-8");
  cleanup_json json_t *last = nex_registry_log_tail (reg, w.id, 1, &err);
  cleanup_free char *dumped = last ? json_dumps (last, JSON_COMPACT) : NULL;
  json_t *text = json_object_get (json_array_get (last, 0), "text");
  TAP_OK (dumped != NULL && text
              && strncmp (json_string_value (text), "ok \xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd(", 11) == 0
              && strstr (json_string_value (text), " end") != NULL,
          "invalid UTF-8 becomes U+FFFD and dumps as JSON");
  TAP_OK (text && json_string_length (text) > strlen (json_string_value (text)), "an embedded NUL survives");

  TAP_OK (nex_registry_log_append (reg, "nope", lines, 1, 4, &err) < 0 && err && err->kind == NEX_ERR_NOT_FOUND,
          "append to an unknown id is not found");
  nex_error_free (&err);
  TAP_OK (nex_registry_log_tail (reg, "nope", 0, &err) == NULL && err && err->kind == NEX_ERR_NOT_FOUND,
          "tail of an unknown id is not found");
  nex_error_free (&err);
  nex_workload_release (&w);
}

static void
test_events (nex_registry_t *reg, const char *path)
{
  nex_error_t err = NULL;
  cleanup_json json_t *ev = json_pack (
      "{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s}}", "specversion", "1.0", "id", "e1", "type", "workload_started", "source",
      "nex/node1", "time", "2026-11-23T09:39:00.123+01:00", "data", "namespace", "ns1", "workload_id", "w1");
  TAP_OK (nex_registry_event_append (reg, ev, &err) == 0, "event append");
  TAP_OK (nex_registry_event_append (reg, ev, &err) < 0 && err && err->kind == NEX_ERR_CONFLICT,
          "a duplicate event id is a conflict");
  nex_error_free (&err);
  cleanup_json json_t *no_type = json_pack ("{s:s}", "id", "e2");
  TAP_OK (nex_registry_event_append (reg, no_type, &err) < 0 && err && err->field && strcmp (err->field, "type") == 0,
          "an event without type is invalid");
  nex_error_free (&err);
  cleanup_free char *row
      = raw_query (path, "SELECT time || ' ' || namespace || ' ' || workload_id FROM events WHERE id = 'e1'");
  TAP_OK (row && strcmp (row, "1795423140123 ns1 w1") == 0, "event time parsed, data fields copied (%s)",
          row ? row : "?");
}

/* A transition and its event in one transaction: the event is built from the row as the change left it and
 * stored with it; a refused transition stores neither. */
static json_t *
transition_event_of (const nex_workload_t *w, void *ctx)
{
  int *calls = ctx;
  (*calls)++;
  char id[64];
  snprintf (id, sizeof id, "te-%d-%s", *calls, nex_state_name (w->state));
  return json_pack ("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}}", "specversion", "1.0", "id", id, "type",
                    "workload_started", "time", "2026-12-04T10:00:00.000Z", "data", "workload_id", w->id, "namespace",
                    w->namespace_, "state", nex_state_name (w->state));
}

static void
test_transition_event (nex_registry_t *reg, const char *path)
{
  cleanup_with (nex_workload_release) nex_workload_t w = { 0 };
  insert_workload (reg, "{\"name\": \"te\", \"artifact\": \"file:///bin/true\"}", &w);
  nex_error_t err = NULL;
  int calls = 0;
  nex_state_change_t running = { .state = NEX_STATE_RUNNING, .pid = 42 };
  cleanup_with (nex_workload_release) nex_workload_t after = { 0 };
  json_t *ev = NULL;
  int r = nex_registry_workload_transition_event (reg, w.id, &running, transition_event_of, &calls, &after, &ev, &err);
  cleanup_free char *q
      = nex_xasprintf ("SELECT data FROM events WHERE id = 'te-1-running' AND workload_id = '%s'", w.id);
  cleanup_free char *stored = raw_query (path, q);
  TAP_OK (r == 0 && calls == 1 && after.state == NEX_STATE_RUNNING && after.pid == 42 && after.started_at > 0 && ev
              && stored && strstr (stored, "\"state\":\"running\""),
          "transition_event: the event is built from the changed row and stored with it (%s)", stored ? stored : "-");
  json_decref (ev);
  ev = NULL;
  nex_state_change_t done = { .state = NEX_STATE_EXITED, .exit_code = 0, .has_exit_code = 1 };
  cleanup_with (nex_workload_release) nex_workload_t ended = { 0 };
  r = nex_registry_workload_transition_event (reg, w.id, &done, NULL, NULL, &ended, &ev, &err);
  TAP_OK (r == 0 && ev == NULL && ended.state == NEX_STATE_EXITED, "transition_event: no builder, no event");
  nex_state_change_t again = { .state = NEX_STATE_RUNNING };
  cleanup_with (nex_workload_release) nex_workload_t refused = { 0 };
  r = nex_registry_workload_transition_event (reg, w.id, &again, transition_event_of, &calls, &refused, &ev, &err);
  cleanup_free char *none = raw_query (path, "SELECT COUNT (*) FROM events WHERE id LIKE 'te-2-%'");
  TAP_OK (r < 0 && err && err->kind == NEX_ERR_CONFLICT && ev == NULL && refused.id[0] == '\0' && none
              && strcmp (none, "0") == 0,
          "transition_event: leaving a final state is refused and no event is stored (%s)", none ? none : "?");
  nex_error_free (&err);
}

/* Several threads appending to one workload's log at once: every append lands, numbering has no gaps. */
typedef struct writer
{
  nex_registry_t *reg;
  const char *id;
  int failures;
} writer_t;

static void *
writer_main (void *arg)
{
  writer_t *wr = arg;
  nex_log_line_t l = { .stream = NEX_STREAM_STDOUT, .ts = 1, .text = "x", .len = 1 };
  for (int i = 0; i < 50; i++)
    {
      nex_error_t err = NULL;
      if (nex_registry_log_append (wr->reg, wr->id, &l, 1, 1000, &err) < 0)
        wr->failures++;
      nex_error_free (&err);
    }
  return NULL;
}

static void
test_threads (nex_registry_t *reg)
{
  nex_error_t err = NULL;
  nex_workload_t w;
  insert_workload (reg, "{\"name\":\"busy\",\"artifact\":\"file:///bin/b\"}", &w);
  pthread_t threads[4];
  writer_t writers[4];
  for (int i = 0; i < 4; i++)
    {
      writers[i] = (writer_t){ reg, w.id, 0 };
      pthread_create (&threads[i], NULL, writer_main, &writers[i]);
    }
  int failures = 0;
  for (int i = 0; i < 4; i++)
    {
      pthread_join (threads[i], NULL);
      failures += writers[i].failures;
    }
  nex_workload_t got;
  nex_registry_workload_get (reg, w.id, &got, &err);
  cleanup_json json_t *all = nex_registry_log_tail (reg, w.id, 0, &err);
  TAP_OK (failures == 0 && got.log_lines == 200 && all && json_array_size (all) == 200,
          "4 threads x 50 appends: 200 lines, no failures");
  nex_workload_release (&got);
  nex_workload_release (&w);
}

/* Snapshots (schema 010): stored, read back, listed per workload, deleted once; a workload's from_snapshot kept. */
static void
test_snapshots (nex_registry_t *reg)
{
  nex_error_t err = NULL;
  nex_snapshot_row_t row = {
    .driver = (char *)"qemu", .path = (char *)"/data/snapshots/a.vmstate", .created_at = 1000, .size_bytes = 4096
  };
  snprintf (row.id, sizeof row.id, "%s", "11111111-1111-4111-8111-111111111111");
  snprintf (row.workload_id, sizeof row.workload_id, "%s", "22222222-2222-4222-8222-222222222222");
  row.spec = json_pack ("{s:s, s:s}", "artifact", "file:///bin/x", "accel", "tcg");
  TAP_OK (nex_registry_snapshot_put (reg, &row, &err) == 0, "a snapshot is stored");
  TAP_OK (nex_registry_snapshot_put (reg, &row, NULL) < 0, "its id is unique");
  json_decref (row.spec);

  nex_snapshot_row_t got = { 0 };
  TAP_OK (nex_registry_snapshot_get (reg, row.id, &got, &err) == 1 && strcmp (got.path, row.path) == 0
              && got.size_bytes == 4096 && strcmp (got.workload_id, row.workload_id) == 0
              && strcmp (json_string_value (json_object_get (got.spec, "accel")), "tcg") == 0,
          "it reads back with its spec");
  nex_snapshot_row_release (&got);
  TAP_OK (nex_registry_snapshot_get (reg, "33333333-3333-4333-8333-333333333333", &got, &err) == 0,
          "an unknown snapshot is none");

  nex_snapshot_row_t *rows = NULL;
  size_t n = 0;
  TAP_OK (nex_registry_snapshot_list (reg, row.workload_id, &rows, &n, &err) == 0 && n == 1, "listed for its workload");
  for (size_t i = 0; i < n; i++)
    nex_snapshot_row_release (&rows[i]);
  free (rows);
  TAP_OK (nex_registry_snapshot_list (reg, "44444444-4444-4444-8444-444444444444", &rows, &n, &err) == 0 && n == 0,
          "not for another");
  free (rows);

  TAP_OK (nex_registry_snapshot_delete (reg, row.id, &err) == 0, "deleted");
  nex_error_t gone = NULL;
  TAP_OK (nex_registry_snapshot_delete (reg, row.id, &gone) < 0 && gone->kind == NEX_ERR_NOT_FOUND,
          "a second delete is not found");
  nex_error_free (&gone);

  nex_workload_t w = { 0 };
  make_workload ("{\"name\": \"restored\", \"artifact\": \"file:///bin/x\", \"driver\": \"qemu\"}", &w);
  w.from_snapshot = nex_xstrdup (row.id);
  TAP_OK (nex_registry_workload_insert (reg, &w, &err) == 0, "a restored workload is stored");
  nex_workload_t back = { 0 };
  TAP_OK (nex_registry_workload_get (reg, w.id, &back, &err) == 0 && back.from_snapshot
              && strcmp (back.from_snapshot, row.id) == 0,
          "with its from_snapshot");
  nex_workload_release (&back);
  nex_workload_release (&w);
  nex_error_free (&err);
}

int
main (void)
{
  test_migrations_fresh ();
  test_migrations_custom ();
  test_refusals ();
  test_rebuild_keeps_children ();

  cleanup_free char *path = test_path ("nex.db");
  nex_error_t err = NULL;
  nex_registry_t *reg = nex_registry_open (path, &err);
  if (reg == NULL)
    {
      printf ("Bail out! %s\n", err->msg);
      return 1;
    }
  test_workloads (reg, path);
  test_logs (reg);
  test_events (reg, path);
  test_transition_event (reg, path);
  test_threads (reg);
  test_snapshots (reg);
  nex_registry_close (reg);
  return tap_done ();
}
