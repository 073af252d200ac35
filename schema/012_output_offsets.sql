-- SPDX-License-Identifier: Apache-2.0
-- 012_output_offsets.sql — how much of a workload's stdout and stderr is stored (common/wire.h, "Output that
-- survives a nexd crash").
--
-- Conventions of 001_initial.sql hold.  `output_stdout` / `output_stderr` are offsets in the byte streams the
-- workload's agent numbers: every byte before them is in `logs` (or was dropped by the bound).  They are written
-- in the transaction that stores the lines, cleared when a new agent is recorded (its streams start at 0 again),
-- and read when a restarted nexd re-attaches, so that output its agent sends again is not stored twice.  NULL: 0.
ALTER TABLE workloads ADD COLUMN output_stdout INTEGER;
ALTER TABLE workloads ADD COLUMN output_stderr INTEGER;
