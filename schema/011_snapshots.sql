-- SPDX-License-Identifier: Apache-2.0
-- 011_snapshots.sql — VM snapshots (server/snapshot.c): a microVM's whole state written to a file in the data
-- dir, and workloads restored from one.
--
-- Conventions of 001_initial.sql hold (JSON columns as compact text, times in Unix ms).  A snapshot outlives the
-- workload it was taken of (a restore repeats what `spec` recorded); deleting it removes its file too.
-- `from_snapshot` is the snapshot a workload was restored from (NULL: it booted).
ALTER TABLE workloads ADD COLUMN from_snapshot TEXT;

CREATE TABLE snapshots (
  id          TEXT PRIMARY KEY, -- UUID
  workload_id TEXT NOT NULL,    -- the workload it was taken of
  driver      TEXT NOT NULL,    -- 'qemu' (a snapshot restores only in the driver that wrote it)
  created_at  INTEGER NOT NULL,
  size_bytes  INTEGER NOT NULL, -- of the file
  path        TEXT NOT NULL,    -- the file: data_dir/snapshots/<id>.vmstate
  spec        TEXT NOT NULL     -- JSON object: what a restore repeats (name, artifact, digest, kernel, memory_mb, ...)
);
CREATE INDEX snapshots_workload ON snapshots (workload_id);
