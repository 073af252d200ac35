-- SPDX-License-Identifier: Apache-2.0
-- 013_function_mode.sql — how a function's runs are made (README, "Function workloads").
--
-- Conventions of 001_initial.sql hold.  `function_mode`: 'per_call' (one process per message) or 'persistent' (a
-- program that stays running and answers the messages one after another, framed on its stdin and stdout); NULL
-- for a service, and for functions stored before this migration, which are per_call.
ALTER TABLE workloads ADD COLUMN function_mode TEXT CHECK (function_mode IN ('per_call', 'persistent'));
