-- SPDX-License-Identifier: Apache-2.0
-- 008_paused_state.sql — a workload may be `paused` (its processes frozen), and the network modes the
-- networking work adds (`bridge`, `user`) are allowed.  SQLite cannot change a CHECK constraint in place, so the
-- workloads table is rebuilt with the same columns, contents and indexes (the 12 steps of SQLite's ALTER TABLE
-- page).  The marker below makes the migrator turn foreign keys off around this script — else dropping the old
-- table would delete every workload's history and logs with it — and check them before it commits.
-- nex: foreign keys off
CREATE TABLE workloads_new (
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
              CHECK (state IN ('pending', 'starting', 'running', 'paused', 'exited', 'failed', 'stopped')),
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
  log_dropped INTEGER NOT NULL DEFAULT 0, -- lines deleted to keep the per-workload bound
  resources   TEXT NOT NULL DEFAULT '{}',
  restart_policy TEXT NOT NULL DEFAULT 'never' CHECK (restart_policy IN ('never', 'on-failure', 'always')),
  max_restarts INTEGER NOT NULL DEFAULT 5,
  restarts    INTEGER NOT NULL DEFAULT 0,
  capabilities TEXT NOT NULL DEFAULT '[]',
  cwd         TEXT,
  network     TEXT NOT NULL DEFAULT 'none' CHECK (network IN ('none', 'host', 'bridge', 'user')),
  agent_start INTEGER,
  labels      TEXT NOT NULL DEFAULT '{}',
  type        TEXT NOT NULL DEFAULT 'service', -- 'service' or 'function'
  trigger_subjects TEXT,                       -- JSON array of NATS subjects, functions only
  function_timeout_s INTEGER,                  -- an invocation's time limit, functions only
  max_concurrency INTEGER,                     -- invocations at once, functions only
  image       TEXT,                            -- the reference as the client gave it, image workloads only
  image_digest TEXT,                           -- the manifest digest that ran
  entrypoint  TEXT,                            -- JSON array: the request's entrypoint override, or NULL
  cmd         TEXT,                            -- JSON array: the request's cmd override, or NULL
  user        TEXT,                            -- the request's user override, or NULL
  process     TEXT                             -- JSON: the process resolved from image and request
);
INSERT INTO workloads_new (id, name, namespace, description, artifact, sha256, digest, argv, env, driver, state,
                           reason, exit_code, exit_signal, pid, endpoint, created_at, updated_at, started_at,
                           finished_at, log_lines, log_dropped, resources, restart_policy, max_restarts, restarts,
                           capabilities, cwd, network, agent_start, labels, type, trigger_subjects,
                           function_timeout_s, max_concurrency, image, image_digest, entrypoint, cmd, user,
                           process)
  SELECT id, name, namespace, description, artifact, sha256, digest, argv, env, driver, state, reason, exit_code,
         exit_signal, pid, endpoint, created_at, updated_at, started_at, finished_at, log_lines, log_dropped,
         resources, restart_policy, max_restarts, restarts, capabilities, cwd, network, agent_start, labels, type,
         trigger_subjects, function_timeout_s, max_concurrency, image, image_digest, entrypoint, cmd, user, process
  FROM workloads;
DROP TABLE workloads;
ALTER TABLE workloads_new RENAME TO workloads;
CREATE INDEX workloads_namespace_created ON workloads (namespace, created_at);
CREATE INDEX workloads_state ON workloads (state);
