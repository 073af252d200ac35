# SPDX-License-Identifier: Apache-2.0
"""test_vm_snapshot.py — pausing a QEMU microVM over QMP, snapshotting it to a file and restoring it.

A chatter workload in a VM prints "line N" every 100 ms.  Paused (QMP `stop`), its stored line count stays put
and its VMM's cgroup is not frozen (the pause is QEMU's own); resumed (`cont`), it prints again.  A snapshot
(POST .../snapshot) writes the VM's migration stream to a file in the data dir and records it (id, size,
artifact, kernel); the source goes on printing.  A deploy with `from_snapshot` runs a new workload whose VM
starts from that file: it becomes running without booting, and its first line continues the counter from where
the snapshot caught it (not line 1).  Bad input gets problem JSON and leaves the node answering: an unknown
snapshot, a field a restore cannot change, a snapshot of a sandbox workload or of an unknown one, a corrupted
or truncated snapshot file (the restored workload fails with QEMU's reason).  Skipped where the qemu driver is
unavailable.  A restarted nexd re-adopts a restored VM as it does a booted one.
"""

import os
import re
import time
from pathlib import Path

import pytest

from conftest import finish_nex, finish_test_nex, start_test_nex, wait_until

BOOT_TIMEOUT_S = 90  # TCG on 2 shared cores


def qemu_unavailable(nex):
    for d in nex.get("/v1/node").json()["drivers"]:
        if d["name"] == "qemu":
            return None if d["available"] else d["reason"]
    return "nexd has no qemu driver"


@pytest.fixture
def vmnexd(request):
    nex = start_test_nex(request, ["--vm-memory-mib", "96"])
    why = qemu_unavailable(nex)
    if why:
        finish_nex(nex, passed=True)
        pytest.skip(f"the qemu driver is unavailable: {why}")
    yield nex
    finish_test_nex(request, nex)


def counter_lines(nex, wid):
    """The N of every `line N` the workload printed, in order."""
    out = []
    for line in nex.logs(wid)["lines"]:
        m = re.match(r"line (\d+)\b", line["text"])
        if m and line["stream"] in ("stdout", "stderr"):
            out.append(int(m.group(1)))
    return out


def chatter_vm(nex, interval_ms=100):
    w = nex.deploy_ok(name="counter", driver="qemu", artifact=nex.program("chatter"),
                      argv=["chatter", "0", str(interval_ms)])
    nex.wait_state(w["id"], "running", timeout=BOOT_TIMEOUT_S)
    wait_until(lambda: len(counter_lines(nex, w["id"])) >= 5, timeout=30, what="the counter's first lines")
    return w["id"]


def cgroup_frozen(pid):
    with open(f"/proc/{pid}/cgroup") as f:
        for _, controllers, path in (line.strip().split(":", 2) for line in f):
            if "freezer" in controllers.split(","):
                return Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip() == "FROZEN"
            if controllers == "" and Path(f"/sys/fs/cgroup{path}/cgroup.events").exists():
                return "frozen 1" in Path(f"/sys/fs/cgroup{path}/cgroup.events").read_text()
    return False


def is_problem(r, status):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json"), r.headers
    return r.json()


def test_vm_pause_stops_the_guest_and_resume_continues(vmnexd):
    nex = vmnexd
    wid = chatter_vm(nex)
    pid = nex.workload(wid)["pid"]
    assert nex.post(f"/v1/workloads/{wid}/pause").status_code == 202
    nex.wait_state(wid, "paused", timeout=10)
    time.sleep(0.5)  # a line on its way when the vCPUs stopped
    before = len(counter_lines(nex, wid))
    time.sleep(1.5)
    assert len(counter_lines(nex, wid)) == before, "a paused VM's workload went on printing"
    assert not cgroup_frozen(pid), "the VMM was frozen with the cgroup, not stopped over QMP"
    assert os.path.exists(f"{nex.data_dir}/run/{wid}/qmp.sock")

    assert nex.post(f"/v1/workloads/{wid}/resume").status_code == 202
    nex.wait_state(wid, "running", timeout=10)
    wait_until(lambda: len(counter_lines(nex, wid)) >= before + 5, timeout=20, what="lines after the resume")
    n = counter_lines(nex, wid)
    assert n == sorted(n) and len(set(n)) == len(n), f"the counter went back or repeated: {n}"
    types = [e["type"] for e in nex.get("/v1/events", params={"workload": wid}).json()["events"]]
    assert "workload_paused" in types and "workload_resumed" in types, types


def test_snapshot_and_restore_continues_the_counter(vmnexd):
    nex = vmnexd
    src = chatter_vm(nex)
    r = nex.post(f"/v1/workloads/{src}/snapshot")
    assert r.status_code == 201, r.text
    snap = r.json()
    taken_at = max(counter_lines(nex, src))
    assert snap["workload_id"] == src and snap["driver"] == "qemu"
    assert snap["size_bytes"] > 1 << 20, snap
    assert snap["artifact"] == nex.program("chatter") and len(snap["digest"]) == 64, snap
    assert snap["kernel"] and snap["accel"] in ("tcg", "kvm"), snap
    path = Path(nex.data_dir) / "snapshots" / f"{snap['id']}.vmstate"
    assert path.stat().st_size == snap["size_bytes"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # the source went on (it was running: it continues after the snapshot)
    assert nex.workload(src)["state"] == "running"
    wait_until(lambda: max(counter_lines(nex, src)) > taken_at + 3, timeout=20, what="the source after its snapshot")

    listed = nex.get("/v1/snapshots").json()
    assert [s["id"] for s in listed["snapshots"]] == [snap["id"]] and listed["count"] == 1
    assert nex.get("/v1/snapshots", params={"workload": src}).json()["count"] == 1
    assert nex.get(f"/v1/snapshots/{snap['id']}").json()["size_bytes"] == snap["size_bytes"]

    assert nex.delete(f"/v1/workloads/{src}").status_code in (200, 202)
    nex.wait_state(src, "stopped", timeout=30)

    t0 = time.monotonic()
    restored = nex.deploy_ok(from_snapshot=snap["id"], name="restored", labels={"from": "snap"})
    rid = restored["id"]
    assert restored["from_snapshot"] == snap["id"] and restored["driver"] == "qemu"
    nex.wait_state(rid, "running", timeout=60)
    took = time.monotonic() - t0
    wait_until(lambda: len(counter_lines(nex, rid)) >= 3, timeout=20, what="the restored workload's lines")
    n = counter_lines(nex, rid)
    # the counter continues from the snapshot, close to where it was taken: not from 0 or 1
    assert n[0] >= 4, f"the restored counter started over: {n[:10]}"
    assert n[0] <= taken_at + 3, f"the restored counter is ahead of its snapshot ({taken_at}): {n[:10]}"
    assert n == sorted(n), n
    w = nex.workload(rid)
    assert w["labels"] == {"from": "snap"} and w["name"] == "restored"
    assert w["history"][-1]["state"] == "running"
    print(f"restore -> running: {took * 1000:.0f} ms")

    # exec reaches the restored agent
    ex = nex.post(f"/v1/workloads/{rid}/exec", json={"argv": ["/workload", "1", "0"]})
    assert ex.status_code == 200 and "line 1" in ex.json()["stdout"] + ex.json()["stderr"], ex.text

    # a restarted nexd re-adopts the restored VM, whose counter goes on
    last = max(counter_lines(nex, rid))
    nex.restart()
    assert nex.workload(rid)["state"] == "running"
    wait_until(lambda: max(counter_lines(nex, rid)) > last + 3, timeout=30, what="the counter after a nexd restart")

    # pause / resume of the restored VM; stop ends it
    assert nex.post(f"/v1/workloads/{rid}/pause").status_code == 202
    nex.wait_state(rid, "paused", timeout=10)
    assert nex.post(f"/v1/workloads/{rid}/resume").status_code == 202
    nex.wait_state(rid, "running", timeout=10)
    assert nex.delete(f"/v1/workloads/{rid}").status_code in (200, 202)
    nex.wait_state(rid, "stopped", timeout=30)

    # delete removes the record and the file
    d = nex.delete(f"/v1/snapshots/{snap['id']}")
    assert d.status_code == 200 and d.json()["deleted"] is True, d.text
    assert not path.exists()
    is_problem(nex.get(f"/v1/snapshots/{snap['id']}"), 404)
    is_problem(nex.delete(f"/v1/snapshots/{snap['id']}"), 404)


def test_snapshot_of_a_paused_vm_leaves_it_paused(vmnexd):
    nex = vmnexd
    wid = chatter_vm(nex)
    assert nex.post(f"/v1/workloads/{wid}/pause").status_code == 202
    nex.wait_state(wid, "paused", timeout=10)
    time.sleep(0.3)
    before = len(counter_lines(nex, wid))
    # with the CLI: nex snapshot ID prints the snapshot's id
    r = nex.cli("snapshot", wid)
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    assert nex.get(f"/v1/snapshots/{sid}").json()["workload_id"] == wid
    time.sleep(1.0)
    assert nex.workload(wid)["state"] == "paused"
    assert len(counter_lines(nex, wid)) == before, "the snapshot continued a paused VM"
    assert nex.post(f"/v1/workloads/{wid}/resume").status_code == 202
    wait_until(lambda: len(counter_lines(nex, wid)) >= before + 3, timeout=20, what="lines after the resume")

    ls = nex.cli("snapshot", "ls", "--workload", wid)
    assert ls.returncode == 0 and sid in ls.stdout, ls
    # a snapshot of a paused VM restores running
    r = nex.cli("snapshot", "restore", sid, "--name", "again")
    assert r.returncode == 0, r.stderr
    rid = r.stdout.strip()
    nex.wait_state(rid, "running", timeout=60)
    wait_until(lambda: len(counter_lines(nex, rid)) >= 2, timeout=20, what="the restored counter")
    assert counter_lines(nex, rid)[0] >= 4
    bad = nex.cli("snapshot", "restore", "00000000-0000-4000-8000-000000000000")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad
    r = nex.cli("snapshot", "rm", sid)
    assert r.returncode == 0 and r.stdout.strip() == sid, r
    assert nex.cli("snapshot", "rm", sid).returncode == 1


def test_snapshot_bad_input(vmnexd):
    nex = vmnexd
    # an unknown snapshot
    p = is_problem(nex.deploy(from_snapshot="00000000-0000-4000-8000-000000000000"), 422)
    assert "from_snapshot" in p["detail"] or p.get("field") == "from_snapshot", p
    is_problem(nex.deploy(from_snapshot=12), 422)
    is_problem(nex.deploy(from_snapshot="x" * 5000), 422)
    is_problem(nex.get("/v1/snapshots/00000000-0000-4000-8000-000000000000"), 404)
    is_problem(nex.get("/v1/snapshots/not-an-id"), 404)
    # a snapshot of an unknown workload, of a sandbox workload
    is_problem(nex.post("/v1/workloads/00000000-0000-4000-8000-000000000000/snapshot"), 404)
    sb = nex.deploy_ok(name="sb", artifact=nex.program("chatter"), argv=["chatter", "0", "100"])
    nex.wait_state(sb["id"], "running", timeout=30)
    p = is_problem(nex.post(f"/v1/workloads/{sb['id']}/snapshot"), 422)
    assert "sandbox" in p["detail"], p

    wid = chatter_vm(nex)
    snap = nex.post(f"/v1/workloads/{wid}/snapshot").json()
    # a field a restore repeats from the snapshot
    p = is_problem(nex.deploy(from_snapshot=snap["id"], artifact=nex.program("hello")), 422)
    assert "artifact" in p["detail"] or p.get("field") == "artifact", p
    is_problem(nex.deploy(from_snapshot=snap["id"], driver="sandbox"), 422)
    nex.delete(f"/v1/workloads/{wid}")
    nex.wait_state(wid, "stopped", timeout=30)
    # an ended workload cannot be snapshotted
    is_problem(nex.post(f"/v1/workloads/{wid}/snapshot"), 409)

    path = Path(nex.data_dir) / "snapshots" / f"{snap['id']}.vmstate"
    good = path.read_bytes()
    for name, content in (("garbage", os.urandom(1 << 16)), ("truncated", good[: len(good) // 3])):
        path.write_bytes(content)
        w = nex.deploy_ok(from_snapshot=snap["id"], name=f"from-{name}")
        end = nex.wait_state(w["id"], ("failed", "running"), timeout=60)
        assert end["state"] == "failed", f"a {name} snapshot ran: {end}"
        assert end["reason"], end
        assert nex.get("/v1/node").status_code == 200
    # a snapshot whose file is gone
    path.unlink()
    p = is_problem(nex.deploy(from_snapshot=snap["id"]), 422)
    assert "file" in p["detail"], p
    assert nex.delete(f"/v1/snapshots/{snap['id']}").status_code == 200
    assert nex.get("/v1/node").status_code == 200
