-- SPDX-License-Identifier: Apache-2.0
-- 002_sandbox.sql — the sandbox driver in depth: per-workload resources, restart policy, kept capabilities,
-- working directory, and what nexd needs to re-adopt a sandbox safely after a crash.
--
-- Conventions of 001 hold: JSON-valued columns are compact JSON text; NULL means "not set".

-- {vcpus, memory_mb, pids, disk_mb} as validated by workload.c (null members: no limit / the default).
ALTER TABLE workloads ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
-- never | on-failure | always, how many restarts the policy allows, and how many were done.
ALTER TABLE workloads ADD COLUMN restart_policy TEXT NOT NULL DEFAULT 'never'
  CHECK (restart_policy IN ('never', 'on-failure', 'always'));
ALTER TABLE workloads ADD COLUMN max_restarts INTEGER NOT NULL DEFAULT 5;
ALTER TABLE workloads ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
-- JSON array of capability names (CAP_...) the workload keeps; every other one is dropped.
ALTER TABLE workloads ADD COLUMN capabilities TEXT NOT NULL DEFAULT '[]';
-- working directory inside the sandbox; NULL: /
ALTER TABLE workloads ADD COLUMN cwd TEXT;
-- none: a network namespace of its own with loopback only; host: the host's network namespace.
ALTER TABLE workloads ADD COLUMN network TEXT NOT NULL DEFAULT 'none' CHECK (network IN ('none', 'host'));
-- start time of the sandbox's root process (clock ticks since boot, /proc/<pid>/stat field 22), recorded with
-- pid: a restarted nexd re-adopts pid only if its start time still matches (pids are reused).  Internal.
ALTER TABLE workloads ADD COLUMN agent_start INTEGER;
