-- SPDX-License-Identifier: Apache-2.0
-- 001_initial.sql — the first registry schema: node metadata, workloads, their state history, their logs and
-- the events the node emitted.
--
-- Conventions that every later migration keeps:
--   * times are INTEGER Unix milliseconds, NULL when the moment has not happened yet;
--   * JSON-valued columns (argv, env, events.data) hold compact JSON text;
--   * rows that belong to a workload go away with it (ON DELETE CASCADE; nexd turns foreign_keys on).
-- The migrator runs this script inside one transaction and sets PRAGMA user_version itself, so the script
-- holds neither BEGIN/COMMIT nor a user_version pragma.

-- Node-wide key/value settings (node id, first start time, ...).
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

-- One row per workload: its spec as the client sent it plus its current lifecycle state.
CREATE TABLE workloads (
  id          TEXT PRIMARY KEY,           -- textual UUID
  name        TEXT NOT NULL,
  namespace   TEXT NOT NULL,
  description TEXT,
  artifact    TEXT NOT NULL,              -- URL of the executable
  sha256      TEXT,                       -- digest the client expects (lower-case hex)
  digest      TEXT,                       -- digest of the artifact as fetched
  argv        TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
  env         TEXT NOT NULL DEFAULT '{}', -- JSON object of strings, keys sorted
  driver      TEXT NOT NULL,
  state       TEXT NOT NULL
              CHECK (state IN ('pending', 'starting', 'running', 'exited', 'failed', 'stopped')),
  reason      TEXT,                       -- why it failed or stopped
  exit_code   INTEGER,                    -- NULL unless it exited normally
  exit_signal INTEGER,                    -- NULL unless a signal ended it
  pid         INTEGER,                    -- host pid of the sandbox's init, NULL when none
  endpoint    TEXT,                       -- where nexd dials the agent; internal, never shown to clients
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  started_at  INTEGER,
  finished_at INTEGER,
  log_lines   INTEGER NOT NULL DEFAULT 0, -- lines ever appended (the seq of the last one)
  log_dropped INTEGER NOT NULL DEFAULT 0  -- lines deleted to keep the per-workload bound
);

-- Listing is per namespace, oldest first; the supervisor looks workloads up by state at start.
CREATE INDEX workloads_namespace_created ON workloads (namespace, created_at);
CREATE INDEX workloads_state ON workloads (state);

-- Every state a workload went through, numbered from 1 per workload.
CREATE TABLE workload_states (
  workload_id TEXT NOT NULL REFERENCES workloads (id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  state       TEXT NOT NULL,
  at          INTEGER NOT NULL,
  reason      TEXT,
  PRIMARY KEY (workload_id, seq)
);

-- The most recent log lines of each workload (older ones are deleted to keep a bound).  seq continues
-- workloads.log_lines; stream is 1 for stdout and 2 for stderr.  Clustered on the key: tails read a range.
CREATE TABLE logs (
  workload_id TEXT NOT NULL REFERENCES workloads (id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  stream      INTEGER NOT NULL CHECK (stream IN (1, 2)),
  ts          INTEGER NOT NULL,
  text        TEXT NOT NULL,
  PRIMARY KEY (workload_id, seq)
) WITHOUT ROWID;

-- CloudEvents the node emitted, in order.  data holds the whole event as JSON; the other columns are copies
-- of its attributes for querying.  Events outlive their workload, so workload_id is not a foreign key.
CREATE TABLE events (
  seq         INTEGER PRIMARY KEY AUTOINCREMENT,
  id          TEXT NOT NULL UNIQUE,
  type        TEXT NOT NULL,
  source      TEXT,
  subject     TEXT,
  namespace   TEXT,
  workload_id TEXT,
  time        INTEGER NOT NULL,
  data        TEXT NOT NULL
);

CREATE INDEX events_workload ON events (workload_id);
