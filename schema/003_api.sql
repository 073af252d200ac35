-- SPDX-License-Identifier: Apache-2.0
-- 003_api.sql — what the full REST API needs in the registry: labels on workloads, API tokens, and indexes for
-- the event filters of GET /v1/events.
--
-- Conventions of 001_initial.sql hold (times in Unix ms, JSON columns as compact text).

-- Labels: a JSON object of string values, keys sorted (so that equal label sets store equal text); filtered
-- with json_extract (GET /v1/workloads?label=k=v).
ALTER TABLE workloads ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';

-- Bearer tokens of the API.  The secret itself is never stored: `hash` is the hex BLAKE2b-256 of the whole
-- token, compared in constant time after the row is found by its public id (which the token carries).
CREATE TABLE tokens (
  id           TEXT PRIMARY KEY,    -- public part of the token (16 hex digits); names it in lists and revocation
  name         TEXT NOT NULL,       -- what it is for, as its creator said
  hash         TEXT NOT NULL,       -- hex BLAKE2b-256 of the whole token
  scopes       TEXT NOT NULL,       -- JSON array of "read", "deploy", "admin"
  namespaces   TEXT,                -- JSON array of the namespaces it may touch; NULL: all
  created_at   INTEGER NOT NULL,
  last_used_at INTEGER,
  revoked_at   INTEGER              -- NULL while valid
);

-- GET /v1/events?namespace=&type= without a scan of every event.
CREATE INDEX events_namespace ON events (namespace, seq);
CREATE INDEX events_type ON events (type, seq);
