-- SPDX-License-Identifier: Apache-2.0
-- 010_scale.sql — indexes for a registry of many workloads: GET /v1/workloads pages by keyset (created_at, id),
-- with or without a namespace, and the retention job (server/retain.c) finds ended workloads by finished_at and
-- node-level events by time, each without a scan of the whole table.
--
-- Conventions of 001_initial.sql hold.  The list order is (created_at, id); an index of (created_at) alone
-- leaves ties to a sort, so the namespace index is rebuilt with id as its last column.
CREATE INDEX workloads_created ON workloads (created_at, id);
DROP INDEX workloads_namespace_created;
CREATE INDEX workloads_namespace_created ON workloads (namespace, created_at, id);
CREATE INDEX workloads_finished ON workloads (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX events_time ON events (time);
