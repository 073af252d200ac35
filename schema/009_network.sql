-- SPDX-License-Identifier: Apache-2.0
-- 009_network.sql — workload networking (server/net/): a bridge workload's network spec and the node's leases.
--
-- Conventions of 001_initial.sql hold (JSON columns as compact text).  `net` is NULL for network none and host;
-- for bridge (the network column stays 'none': its CHECK predates bridge) it holds the validated spec with what the node assigned: {address, ports (host ports resolved),
-- egress, nats}.  A lease lives from the deploy until the workload ends; the UNIQUE constraints are what makes
-- two workloads never share an address or a published host port.
ALTER TABLE workloads ADD COLUMN net TEXT;

CREATE TABLE network_leases (
  workload_id TEXT PRIMARY KEY,     -- the workload holding the address
  address     TEXT NOT NULL UNIQUE, -- dotted IPv4 address from the node's pool
  created_at  INTEGER NOT NULL      -- Unix ms
);

CREATE TABLE network_ports (
  protocol      TEXT NOT NULL,    -- 'tcp' or 'udp'
  host_port     INTEGER NOT NULL, -- 1..65535
  host_ip       TEXT NOT NULL,    -- dotted IPv4 address the port is published on ('0.0.0.0': every local one)
  workload_port INTEGER NOT NULL,
  workload_id   TEXT NOT NULL REFERENCES network_leases (workload_id) ON DELETE CASCADE,
  PRIMARY KEY (protocol, host_port, host_ip)
);
CREATE INDEX network_ports_workload ON network_ports (workload_id);
