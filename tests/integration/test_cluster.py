# SPDX-License-Identifier: Apache-2.0
"""test_cluster.py — a cluster on NATS (server/cluster/): 3 nats-server processes joined by routes with JetStream
(the desired-state bucket replicated on all three) and 3 nexd nodes, all real processes on loopback.

In order, on one cluster (the tests of this module share it and leave it whole): the peer table; node: auto
spreading workloads by the rule; placement requirements honoured or refused with the reason; a node that dies
whole (kill -9 of nexd and its sandboxes): its restartable workloads run elsewhere within 10 s, the others are
reported lost, nothing runs twice; a nexd that crashes alone: its sandboxes outlive it, but those of its
restartable cluster workloads end with their lease before the others take over (its own workloads run on); a stop removes the desired state; a drained node hands
its work over and exits.
"""

import json
import os
import signal
import time

import pytest

from clusterlib import Cluster, NODE_TIMEOUT_S, deploy_auto, processes_named, wait_for_single_copies
from conftest import TERMINAL_STATES, finish_nex, make_nex, output_root, skip_reason, wait_until
import natsutil


@pytest.fixture(scope="module")
def cluster(request):
    reason = skip_reason() or natsutil.skip_reason()
    if reason:
        pytest.skip(reason)
    c = Cluster("test_cluster")
    try:
        c.start()
    except Exception:
        c.close(passed=False)
        raise
    yield c
    failed = any(getattr(i, "rep_call", None) is not None and i.rep_call.failed
                 for i in request.session.items if i.module is request.module)
    c.close(passed=not failed)


def stop_all(cluster):
    for n in cluster.alive_nodes():
        n.stop_all_workloads()
    wait_until(lambda: cluster.nodes[0].get("/v1/cluster/nodes").json()["desired"]["entries"] == 0, timeout=10,
               what="the desired state to empty")


def test_every_node_hears_every_node(cluster):
    for n, nid in zip(cluster.nodes, cluster.ids):
        c = n.get("/v1/cluster/nodes").json()
        assert c["self"] == nid
        assert c["desired"]["replicas"] == 3, c["desired"]
        by_id = {x["id"]: x for x in c["nodes"]}
        assert set(by_id) == set(cluster.ids)
        for i, other in enumerate(cluster.ids):
            x = by_id[other]
            assert x["alive"] and not x["lame_duck"] and x["age_ms"] < 3000, x
            assert x["tags"]["zone"] == f"z{i}"
            assert "sandbox" in x["drivers"]
            assert x["free"]["memory_mb"] > 0 and x["free"]["vcpus"] > 0
            assert x["self"] == (other == nid)
    r = cluster.nodes[1].cli("cluster", "nodes")
    assert r.returncode == 0, r.stderr
    assert all(i in r.stdout for i in cluster.ids) and r.stdout.count("alive") == 3, r.stdout


def test_auto_spreads_by_the_rule(cluster):
    # Every node sees the same host (same free memory and CPU): fewest workloads decides, ties by node id.  So
    # the first goes to the smallest id, and 30 deploys from one node end 10/10/10.
    first = deploy_auto(cluster.nodes[0], "spread-0")
    assert first["node"] == min(cluster.ids)
    assert first["labels"]["nex.cluster/key"]
    placed = [first] + [deploy_auto(cluster.nodes[i % 3], f"spread-{i}") for i in range(1, 30)]
    counts = {nid: sum(1 for w in placed if w["node"] == nid) for nid in cluster.ids}
    assert sorted(counts.values()) == [10, 10, 10], counts
    # The answer is the workload as its node shows it, and that node has it.
    for w in placed[:6]:
        got = cluster.node_of(w["node"]).workload(w["id"])
        assert got["name"] == w["name"]
    wait_until(lambda: len(cluster.nodes[2].get("/v1/cluster/workloads", params={"state": "running"}).json()
                           ["workloads"]) == 30, timeout=15, what="30 running")
    ps = cluster.nodes[2].get("/v1/cluster/workloads", params={"node": cluster.ids[1]}).json()
    assert ps["nodes_answered"] == 3 and len(ps["workloads"]) == 10
    assert {w["node"] for w in ps["workloads"]} == {cluster.ids[1]}
    r = cluster.nodes[0].cli("cluster", "ps")
    assert r.returncode == 0 and r.stdout.count("spread-") == 30, r.stdout
    # More free memory wins over fewer workloads: a reservation of 1 GiB on the smallest id sends the next away.
    big = cluster.nodes[0].post("/v1/workloads", json={"name": "big", "artifact": cluster.nodes[0].program("sleeper"),
                                                       "node": min(cluster.ids), "resources": {"memory_mb": 1024}})
    assert big.status_code == 202 and big.json()["node"] == min(cluster.ids), big.text
    nxt = deploy_auto(cluster.nodes[0], "after-big")
    assert nxt["node"] != min(cluster.ids)
    stop_all(cluster)


def test_requirements_honoured_or_refused_with_the_reason(cluster):
    n = cluster.nodes[0]
    w = deploy_auto(n, "zoned", placement={"tags": {"zone": "z2"}})
    assert w["node"] == cluster.ids[2]
    w = deploy_auto(n, "zoned-sandbox", placement={"tags": {"zone": "Z1"}, "driver": "sandbox"})
    assert w["node"] == cluster.ids[1] and w["driver"] == "sandbox"
    r = n.post("/v1/workloads", json={"name": "mars", "artifact": n.program("sleeper"), "node": "auto",
                                      "placement": {"tags": {"zone": "mars"}}})
    assert r.status_code == 422, r.text
    assert "no node meets the requirements" in r.json()["detail"] and "zone=z0" in r.json()["detail"]
    r = n.post("/v1/workloads", json={"name": "fc", "artifact": n.program("sleeper"), "node": "auto",
                                      "placement": {"driver": "firecracker"}})
    assert r.status_code == 422 and "cannot run driver `firecracker`" in r.json()["detail"], r.text
    r = n.post("/v1/workloads", json={"name": "huge", "artifact": n.program("sleeper"), "node": "auto",
                                      "resources": {"memory_mb": 16000000}})
    assert r.status_code == 422 and "of memory free" in r.json()["detail"], r.text
    # Bad requests are refused before any auction, naming the field.
    for body, field in [({"node": 3}, "node"), ({"placement": {"zone": "x"}}, "placement"),
                        ({"placement": {"driver": "qemu"}, "driver": "sandbox"}, "placement.driver"),
                        ({"node": "auto", "labels": {"nex.cluster/key": "x"}}, "labels"),
                        ({"node": "auto", "bogus": 1}, "bogus")]:
        r = n.post("/v1/workloads", json={"name": "bad", "artifact": n.program("sleeper"), **body})
        assert r.status_code == 422 and r.json().get("field") == field, (body, r.text)
    r = n.post("/v1/workloads", json={"name": "nobody", "artifact": n.program("sleeper"), "node": "N" + "A" * 55})
    assert r.status_code == 404, r.text
    # A node named explicitly: that one (the REST fields, argv as the whole vector, reach it unchanged).
    r = n.post("/v1/workloads", json={"name": "there", "artifact": n.program("sleeper"), "node": cluster.ids[2],
                                      "argv": ["there", "x y"]})
    assert r.status_code == 202 and r.json()["node"] == cluster.ids[2] and r.json()["argv"] == ["there", "x y"]
    assert r.headers["Location"].endswith(f"/v1/workloads/{r.json()['id']}")
    stop_all(cluster)


def test_a_dead_nodes_work_moves_and_nothing_runs_twice(cluster):
    n0 = cluster.nodes[0]
    victim = 1
    vid = cluster.ids[victim]
    restartable, fragile = [], []
    for i in range(9):
        w = deploy_auto(n0, f"fo-r{i}", restart_policy="always")
        if w["node"] == vid:
            restartable.append(w["name"])
    for i in range(3):
        w = deploy_auto(n0, f"fo-n{i}")
        if w["node"] == vid:
            fragile.append(w)
    assert len(restartable) == 3 and len(fragile) == 1, (restartable, fragile)
    names = [f"fo-r{i}" for i in range(9)]
    wait_for_single_copies(cluster, names, timeout=15)
    killed = time.monotonic()
    cluster.kill_node(victim, sandboxes=True)
    wait_until(lambda: all(not cluster.processes_named(n) for n in restartable), timeout=5, what="the victim's sandboxes")
    placed = wait_for_single_copies(cluster, names, timeout=10, exclude=vid)
    took = time.monotonic() - killed
    assert took < 10, took
    assert all(placed[n] != vid for n in restartable)
    # Which survivor claims which entry is a race (each claims by compare-and-set as soon as it judges the owner
    # dead), so the moves need not be spread; each runs once, on a survivor (checked above).
    # The non-restartable one is reported lost, with its node.
    wait_until(lambda: [w for w in n0.get("/v1/cluster/workloads", params={"state": "lost"}).json()["workloads"]],
               timeout=5, what="the lost workload")
    lost = n0.get("/v1/cluster/workloads", params={"state": "lost"}).json()["workloads"]
    assert [(w["name"], w["node"]) for w in lost] == [(fragile[0]["name"], vid)]
    # A lost entry can be forgotten (its node may never come back); once only.
    r = cluster.nodes[2].delete(f"/v1/cluster/workloads/{lost[0]['key']}")
    assert r.status_code == 200 and r.json()["state"] == "lost" and r.json()["owner"] == vid, r.text
    wait_until(lambda: not n0.get("/v1/cluster/workloads", params={"state": "lost"}).json()["workloads"], timeout=5,
               what="the lost entry to go")
    r = n0.delete(f"/v1/cluster/workloads/{lost[0]['key']}")
    assert r.status_code == 404, r.text
    r = n0.cli("cluster", "forget", lost[0]["key"])
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "no desired-state entry" in r.stderr, r
    r = n0.cli("cluster", "forget", "../tokens")
    assert r.returncode == 2 and "not a desired-state key" in r.stderr, r
    events = n0.get("/v1/events", params={"type": "workload_rescheduled"}).json()["events"]
    events += cluster.nodes[2].get("/v1/events", params={"type": "workload_rescheduled"}).json()["events"]
    assert sorted(e["data"]["name"] for e in events) == sorted(restartable)
    assert all(e["data"]["from"] == vid and e["data"]["to"] != vid for e in events)
    print(f"failover: {took:.1f} s after kill -9 (node timeout {NODE_TIMEOUT_S} s)")
    # It comes back: nothing runs twice, its dead copies are recorded as ended, the lost entry is dropped.
    cluster.nodes[victim].start()
    cluster.wait_formed()
    time.sleep(1.5)
    wait_for_single_copies(cluster, names, timeout=5)
    assert not n0.get("/v1/cluster/workloads", params={"state": "lost"}).json()["workloads"]
    stop_all(cluster)


def test_a_crashed_nexd_s_copies_end_with_their_lease(cluster):
    # nexd alone is killed: its sandboxes outlive it, but the agents of its restartable cluster workloads hold a
    # lease that only nexd renews (node timeout 5 s: the lease is 3 s past the node's last heartbeat), so they end
    # those copies before the others declare the node dead and run them: never two copies at once.  A workload
    # deployed on the node itself (no cluster) runs on, as sandboxes always did.
    n0 = cluster.nodes[0]
    victim = 2
    vid = cluster.ids[victim]
    mine = []
    for i in range(6):
        w = deploy_auto(n0, f"fe-{i}", restart_policy="on-failure")
        if w["node"] == vid:
            mine.append(w["name"])
    assert len(mine) == 2
    plain = cluster.nodes[victim].post("/v1/workloads", json={
        "name": "fe-plain", "artifact": n0.program("sleeper"), "restart_policy": "always"})
    assert plain.status_code == 202, plain.text
    names = [f"fe-{i}" for i in range(6)]
    wait_for_single_copies(cluster, names + ["fe-plain"], timeout=15)
    killed = time.monotonic()
    cluster.kill_node(victim, sandboxes=False)  # nexd alone
    gone_after = None
    most = 0
    while time.monotonic() - killed < NODE_TIMEOUT_S + 6:
        counts = [len(cluster.processes_named(n)) for n in mine]
        most = max(most, *counts)
        if gone_after is None and not any(counts):
            gone_after = time.monotonic() - killed
        if all(c == 1 for c in counts) and gone_after is not None:
            break
        time.sleep(0.05)
    assert gone_after is not None and gone_after <= NODE_TIMEOUT_S + 2, gone_after
    assert most == 1, "a workload ran twice"
    placed = wait_for_single_copies(cluster, names, timeout=10, exclude=vid)
    assert all(placed[n] != vid for n in mine), placed
    assert len(cluster.processes_named("fe-plain")) == 1, "the node's own workload must outlive nexd"
    print(f"lease: the crashed nexd's copies ended {gone_after:.1f} s after kill -9 (node timeout {NODE_TIMEOUT_S} s)")
    # Back: its own workload is re-adopted; the cluster's stay where they moved, once each.
    cluster.nodes[victim].start()
    cluster.wait_formed()
    placed = wait_for_single_copies(cluster, names + ["fe-plain"], timeout=10)
    assert placed["fe-plain"] == vid and all(placed[n] != vid for n in mine), placed
    cluster.wait_formed()
    stop_all(cluster)


def test_a_stop_anywhere_removes_the_desired_state(cluster):
    n0 = cluster.nodes[0]
    w = deploy_auto(n0, "short", restart_policy="always")
    owner = cluster.node_of(w["node"])
    wait_until(lambda: n0.get("/v1/cluster/nodes").json()["desired"]["entries"] == 1, timeout=15, what="the entry")
    r = owner.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 1})
    assert r.status_code == 202
    wait_until(lambda: all(n.get("/v1/cluster/nodes").json()["desired"]["entries"] == 0 for n in cluster.nodes),
               timeout=10, what="the entry to go")


def test_auto_over_nats_and_a_stop_from_any_node(cluster):
    # nex's deploy on $NEX.DEPLOY.<ns>.<node> with our header Nex-Placement: the cluster places it by the rule.
    n0, nid0 = cluster.nodes[0], cluster.ids[0]
    c = natsutil.NatsClient(cluster.servers[1].url)
    subject = f"$NEX.DEPLOY.default.{nid0}"

    def nats_deploy(name, placement="auto"):
        env = c.request(subject, {"workload_name": name, "location": n0.program("sleeper"), "target_node": nid0},
                        headers={"Nex-Placement": placement})
        return env

    placed = [natsutil.ok_data(nats_deploy(f"na-{i}"), "run") for i in range(3)]
    assert sorted(d["node"] for d in placed) == sorted(cluster.ids), placed  # 3 on 3 empty nodes: one each
    zoned = natsutil.ok_data(nats_deploy("na-zoned", json.dumps({"tags": {"zone": "z2"}})), "run")
    assert zoned["node"] == cluster.ids[2]
    assert "Nex-Placement" in natsutil.error_text(nats_deploy("na-bad", "somewhere"), "run")
    assert "no node meets" in natsutil.error_text(nats_deploy("na-mars", json.dumps({"tags": {"zone": "mars"}})),
                                                  "run")
    wait_until(lambda: n0.get("/v1/cluster/nodes").json()["desired"]["entries"] == 4, timeout=5, what="4 entries")
    for d in placed:
        assert cluster.node_of(d["node"]).wait_state(d["id"], "running")["labels"]["nex.cluster/key"]
    # DELETE on a node that does not run it: forwarded to the owner over NATS.
    far = next(d for d in placed if d["node"] != nid0)
    r = n0.delete(f"/v1/workloads/{far['id']}", params={"grace_s": 1})
    assert r.status_code == 202, r.text
    assert r.json()["node"] == far["node"] and r.json()["id"] == far["id"]
    owner = cluster.node_of(far["node"])
    wait_until(lambda: owner.workload(far["id"])["state"] in TERMINAL_STATES, timeout=10, what="the remote stop")
    wait_until(lambda: n0.get("/v1/cluster/nodes").json()["desired"]["entries"] == 3, timeout=10,
               what="its entry to go")
    r = n0.delete(f"/v1/workloads/{far['id']}")
    assert r.status_code == 200 and r.json()["node"] == far["node"], r.text  # ended: idempotent
    r = n0.delete("/v1/workloads/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404, r.text
    stop_all(cluster)


def test_drain_moves_work_off_then_the_node_stops(cluster):
    n0 = cluster.nodes[0]
    victim = 0
    vid = cluster.ids[victim]
    mine = []
    for i in range(6):
        w = deploy_auto(cluster.nodes[1], f"dr-{i}", restart_policy="always")
        if w["node"] == vid:
            mine.append(w["name"])
    assert mine
    names = [f"dr-{i}" for i in range(6)]
    wait_for_single_copies(cluster, names, timeout=15)
    r = cluster.nodes[1].cli("node", "drain", vid)
    assert r.returncode == 0 and vid in r.stdout, r.stderr
    rc = n0.daemon.proc.wait(timeout=30)
    assert rc == 0
    placed = wait_for_single_copies(cluster, names, timeout=10, exclude=vid)
    assert all(placed[n] != vid for n in mine)
    events = cluster.nodes[1].get("/v1/events", params={"type": "workload_rescheduled"}).json()["events"]
    events += cluster.nodes[2].get("/v1/events", params={"type": "workload_rescheduled"}).json()["events"]
    assert not [e for e in events if e["data"].get("name", "").startswith("dr-")]  # the drainer reports the moves
    n0.start()
    drained = n0.get("/v1/events", params={"type": "workload_rescheduled"}).json()["events"]
    assert sorted(e["data"]["name"] for e in drained if e["data"]["name"].startswith("dr-")) == sorted(mine)
    cluster.wait_formed()
    stop_all(cluster)


def test_without_nats_the_cluster_routes_say_so(nexd):
    r = nexd.get("/v1/cluster/nodes")
    assert r.status_code == 503 and "--nats" in r.json()["detail"]
    r = nexd.post("/v1/workloads", json={"name": "x", "artifact": nexd.program("sleeper"), "node": "auto"})
    assert r.status_code == 422 and r.json()["field"] == "node"
    r = nexd.delete("/v1/cluster/workloads/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 503 and "--nats" in r.json()["detail"]


def test_a_node_cut_off_from_nats_ends_its_copies_and_runs_them_again():
    # nexd alive but cut off (its only nats-server killed): it stops renewing, so the agent of its restartable
    # cluster workload ends it when the lease runs out (failed, "lease expired"), its own workload runs on, and the
    # entry stays; once the server is back and the node hears itself, the entry (still its own) runs again here.
    reason = skip_reason() or natsutil.skip_reason()
    if reason:
        pytest.skip(reason)
    server = natsutil.NatsServer(output_root() / "test_cluster.cutoff").start()
    nex = make_nex("test_cluster.cutoff.nexd", extra_args=["--nats", server.url, "--node-timeout", str(NODE_TIMEOUT_S)])
    passed = False
    try:
        nex.start()
        mine = [str(nex.data_dir)]
        wait_until(lambda: nex.get("/v1/cluster/nodes").json()["desired"]["ready"], timeout=20, what="the bucket")
        w = deploy_auto(nex, "co-r", restart_policy="always")
        plain = nex.post("/v1/workloads", json={"name": "co-plain", "artifact": nex.program("sleeper")})
        assert plain.status_code == 202, plain.text
        nex.wait_state(w["id"], "running")
        nex.wait_state(plain.json()["id"], "running")
        # Paused longer than the lease (a frozen agent neither renews nor expires it): resumed, it runs on.
        assert nex.post(f"/v1/workloads/{w['id']}/pause").status_code == 202
        nex.wait_state(w["id"], "paused")
        time.sleep(NODE_TIMEOUT_S - 1)
        assert nex.post(f"/v1/workloads/{w['id']}/resume").status_code == 202
        nex.wait_state(w["id"], "running")
        time.sleep(1)
        assert nex.workload(w["id"])["state"] == "running" and len(processes_named("co-r", mine)) == 1
        cut = time.monotonic()
        server.kill()
        wait_until(lambda: nex.workload(w["id"])["state"] in TERMINAL_STATES, timeout=NODE_TIMEOUT_S + 3,
                   what="the lease to run out")
        took = time.monotonic() - cut
        got = nex.workload(w["id"])
        assert got["state"] == "failed" and "lease expired" in got["reason"], got
        assert not processes_named("co-r", mine) and len(processes_named("co-plain", mine)) == 1
        print(f"lease: cut off from NATS, the copy ended {took:.1f} s later")
        server.start()

        def again():
            live = [x for x in nex.workloads()["workloads"] if x["name"] == "co-r" and x["state"] == "running"]
            return live if len(live) == 1 and len(processes_named("co-r", mine)) == 1 else None
        wait_until(again, timeout=30, interval=0.25, what="the entry to run again")
        passed = True
    finally:
        if nex.daemon is not None and nex.daemon.proc.poll() is None:
            nex.stop_all_workloads()
            finish_nex(nex, passed)
        else:
            nex.abort()
        server.stop()


def test_a_lost_entry_is_forgotten_after_lost_ttl():
    # Two nodes, --lost-ttl 2: a non-restartable workload of a node that dies whole is reported lost, and 2 s later
    # the surviving node removes the entry (event workload_forgotten).
    reason = skip_reason() or natsutil.skip_reason()
    if reason:
        pytest.skip(reason)
    server = natsutil.NatsServer(output_root() / "test_cluster.lostttl").start()
    nodes = [make_nex(f"test_cluster.lostttl.node{i}", extra_args=[
        "--nats", server.url, "--tags", f"zone=l{i}", "--node-timeout", str(NODE_TIMEOUT_S), "--lost-ttl", "2"])
        for i in range(2)]
    passed = False
    try:
        for n in nodes:
            n.start()
        wait_until(lambda: all(n.get("/v1/cluster/nodes").json()["desired"]["ready"]
                               and sum(x["alive"] for x in n.get("/v1/cluster/nodes").json()["nodes"]) == 2
                               for n in nodes), timeout=30, what="the two nodes to form a cluster")
        w = deploy_auto(nodes[0], "lt-fragile", placement={"tags": {"zone": "l1"}})
        victim_id = nodes[1].get("/v1/node").json()["id"]
        assert w["node"] == victim_id
        nodes[1].wait_state(w["id"], "running")
        pid = nodes[1].workload(w["id"])["pid"]
        nodes[1].daemon.kill()
        os.kill(pid, signal.SIGKILL)  # the node dies whole
        lost = lambda: nodes[0].get("/v1/cluster/workloads", params={"state": "lost"}).json()["workloads"]
        wait_until(lost, timeout=NODE_TIMEOUT_S + 5, what="the workload to be reported lost")
        seen = time.monotonic()
        wait_until(lambda: not lost(), timeout=10, what="the lost entry to be forgotten")
        assert time.monotonic() - seen >= 1, "forgotten before --lost-ttl"
        ev = nodes[0].get("/v1/events", params={"type": "workload_forgotten"}).json()["events"]
        assert [(e["data"]["name"], e["data"]["node"]) for e in ev] == [("lt-fragile", victim_id)], ev
        assert nodes[0].get("/v1/cluster/nodes").json()["desired"]["entries"] == 0
        passed = True
    finally:
        for n in nodes:
            if n.daemon is not None and n.daemon.proc.poll() is None:
                n.stop_all_workloads()
                finish_nex(n, passed)
            else:
                n.abort()
        server.stop()


def test_one_nats_server_down_deploys_and_failover_go_on(cluster):
    # Last in the module: it leaves a nats-server and a node dead.
    n1 = cluster.nodes[1]
    names = [f"ns-{i}" for i in range(6)]
    placed = {deploy_auto(n1, name, restart_policy="always")["name"]: None for name in names}
    wait_for_single_copies(cluster, names, timeout=15)
    entries = n1.get("/v1/cluster/nodes").json()["desired"]["entries"]
    assert entries == len(placed)
    cluster.servers[0].kill()
    # Nothing in the bucket is lost (two of three replicas remain) and node: auto still places.
    w = deploy_auto(n1, "ns-after", restart_policy="always")
    names.append("ns-after")
    # JetStream elects new leaders for the bucket (4-9 s in nats-server 2.9) and each node whose watcher lived on the
    # dead server replaces it (desired.c's check): on a loaded machine that takes more than 15 s.
    wait_until(lambda: all(n.get("/v1/cluster/nodes").json()["desired"]["entries"] == entries + 1
                           for n in cluster.alive_nodes()), timeout=30, what="every node to see every entry")
    victim = 2 if w["node"] != cluster.ids[2] else 0
    cluster.kill_node(victim, sandboxes=True)
    placed = wait_for_single_copies(cluster, names, timeout=30, exclude=cluster.ids[victim])
    assert cluster.ids[victim] not in placed.values()
