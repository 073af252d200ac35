# SPDX-License-Identifier: Apache-2.0
"""clusterlib.py — a cluster on loopback for the cluster tests: NATS_SERVERS nats-server processes joined by routes
(JetStream on, each with its own store, server names n0.., cluster name nexc) and NODES nexd processes with their
own data dirs and ports, each given every server's URL and the tags zone=z<i>.

Also what the tests need to see the whole cluster: every node's live workloads, the sandboxes running on this
host by their workload names (a workload's argv[0] is its name), and a node's "death" (nexd and its sandboxes
killed with SIGKILL, as a host that loses power) beside a crash of nexd alone (its sandboxes live on).
"""

import os
import signal
import time
from pathlib import Path

from conftest import TERMINAL_STATES, free_port, make_nex, output_root, wait_until
from natsutil import NatsServer

NODE_TIMEOUT_S = 5


class Cluster:
    def __init__(self, out_name, n_servers=3, n_nodes=3, node_args=()):
        self.out_name = out_name
        self.servers = []
        self.nodes = []
        cports = [free_port() for _ in range(n_servers)]
        for i in range(n_servers):
            routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(cports) if j != i)
            args = ["-n", f"n{i}", "--cluster_name", "nexc", "--cluster", f"nats://127.0.0.1:{cports[i]}"]
            if routes:
                args += ["--routes", routes]
            self.servers.append(NatsServer(output_root() / out_name, args=args))
        self.urls = ",".join(s.url for s in self.servers)
        for i in range(n_nodes):
            self.nodes.append(make_nex(f"{out_name}.node{i}", extra_args=[
                "--nats", self.urls, "--tags", f"zone=z{i}", "--node-timeout", str(NODE_TIMEOUT_S), *node_args]))

    def start(self):
        for s in self.servers:
            s.start()
        for n in self.nodes:
            n.start()
        self.ids = [n.get("/v1/node").json()["id"] for n in self.nodes]
        self.wait_formed()
        return self

    def wait_formed(self, timeout=60):
        """Until every node hears every node and follows the desired-state bucket."""
        want = len(self.nodes)

        def formed():
            for n in self.nodes:
                if n.daemon.proc.poll() is not None:
                    continue
                c = n.get("/v1/cluster/nodes").json()
                if not c["desired"]["ready"] or sum(1 for x in c["nodes"] if x["alive"]) < want:
                    return False
            return True
        wait_until(formed, timeout=timeout, interval=0.25, what="the cluster to form")

    def node_of(self, node_id):
        return self.nodes[self.ids.index(node_id)]

    def processes_named(self, name):
        """processes_named for this cluster's nodes only."""
        return processes_named(name, [str(n.data_dir) for n in self.nodes])

    def alive_nodes(self):
        return [n for n in self.nodes if n.daemon.proc.poll() is None]

    def live_everywhere(self):
        """{workload name: [(node id, workload id)]} of every live workload on every node that answers."""
        out = {}
        for n, nid in zip(self.nodes, self.ids):
            if n.daemon.proc.poll() is not None:
                continue
            for w in n.workloads()["workloads"]:
                if w["state"] not in TERMINAL_STATES:
                    out.setdefault(w["name"], []).append((nid, w["id"]))
        return out

    def kill_node(self, i, sandboxes=True):
        """SIGKILL node I's nexd; with SANDBOXES, its sandboxes too (a node that dies whole).  Returns the pids."""
        n = self.nodes[i]
        pids = [w["pid"] for w in n.workloads()["workloads"] if w["state"] not in TERMINAL_STATES and w["pid"]]
        n.daemon.kill()
        if sandboxes:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)  # the agent is PID 1 of the sandbox: the kernel kills the rest
                except ProcessLookupError:
                    pass
        return pids

    def close(self, passed):
        from conftest import finish_nex
        try:
            for n in self.nodes:
                if n.daemon is not None and n.daemon.proc.poll() is None:
                    # leave nothing running: stop (not move) every workload before the node goes
                    n.stop_all_workloads()
            for n in self.nodes:
                if n.daemon is not None and n.daemon.proc.poll() is None:
                    finish_nex(n, passed)
                else:
                    n.abort()
        finally:
            for s in self.servers:
                s.stop()


def processes_named(name, data_dirs=None):
    """Pids of processes on this host whose argv[0] is NAME (how a workload shows in ps); with DATA_DIRS, only those
    of the nexd with one of those data dirs (a sandbox's mounts come from its node's data dir): other engineers'
    test runs on the same host deploy workloads of the same names."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv0 = (p / "cmdline").read_bytes().split(b"\0")[0]
            if argv0 != name.encode():
                continue
            if data_dirs and not any(d.rstrip("/") + "/" in (p / "mountinfo").read_text() for d in data_dirs):
                continue
        except OSError:
            continue
        pids.append(int(p.name))
    return pids


def deploy_auto(nex, name, **fields):
    body = {"name": name, "artifact": nex.program("sleeper"), "node": "auto", **fields}
    r = nex.post("/v1/workloads", json=body)
    assert r.status_code == 202, f"deploy {name}: {r.status_code} {r.text}"
    return r.json()


def wait_for_single_copies(cluster, names, timeout, exclude=None):
    """Until each of NAMES runs exactly once in the cluster (by the nodes' lists and by the host's processes), not on
    node EXCLUDE; returns {name: node id}."""
    def check():
        live = cluster.live_everywhere()
        placed = {}
        for name in names:
            copies = live.get(name, [])
            if len(copies) != 1 or copies[0][0] == exclude or len(cluster.processes_named(name)) != 1:
                return None
            placed[name] = copies[0][0]
        return placed
    return wait_until(check, timeout=timeout, interval=0.2, what=f"one running copy of each of {names}")
