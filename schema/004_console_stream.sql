-- SPDX-License-Identifier: Apache-2.0
-- 004_console_stream.sql — log lines may also come from a microVM's console (the kernel's and the agent's boot
-- messages): stream 3.  SQLite cannot change a CHECK constraint in place, so the logs table is rebuilt with the
-- same columns, key and contents.
CREATE TABLE logs_new (
  workload_id TEXT NOT NULL REFERENCES workloads (id) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  stream      INTEGER NOT NULL CHECK (stream IN (1, 2, 3)),
  ts          INTEGER NOT NULL,
  text        TEXT NOT NULL,
  PRIMARY KEY (workload_id, seq)
) WITHOUT ROWID;
INSERT INTO logs_new (workload_id, seq, stream, ts, text) SELECT workload_id, seq, stream, ts, text FROM logs;
DROP TABLE logs;
ALTER TABLE logs_new RENAME TO logs;
