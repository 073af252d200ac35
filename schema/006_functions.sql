-- SPDX-License-Identifier: Apache-2.0
-- 006_functions.sql — function workloads: a workload's type and, for functions, what triggers them.
--
-- Conventions of 001_initial.sql hold (JSON columns as compact text).  A service keeps type 'service' and NULL in
-- the three function columns; existing rows become services.
ALTER TABLE workloads ADD COLUMN type TEXT NOT NULL DEFAULT 'service'; -- 'service' or 'function'
ALTER TABLE workloads ADD COLUMN trigger_subjects TEXT;                -- JSON array of NATS subjects, functions only
ALTER TABLE workloads ADD COLUMN function_timeout_s INTEGER;           -- an invocation's time limit, functions only
ALTER TABLE workloads ADD COLUMN max_concurrency INTEGER;              -- invocations at once, functions only
