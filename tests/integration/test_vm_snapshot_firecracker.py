# SPDX-License-Identifier: Apache-2.0
"""test_vm_snapshot_firecracker.py — pause, snapshot and restore in the Firecracker driver, against the stand-in.

Firecracker cannot run here, so (as in test_firecracker.py) tests/integration/standins/firecracker serves its API
and checks every request body against Firecracker's published API description; with STANDIN_FIRECRACKER_AGENT=1 a
fake guest agent answers on vsock and prints `tick N` every 200 ms while the VM is not paused, so that the workload
becomes running.  Checked: pause is PATCH /vm {state: Paused} and stops the ticks, resume is {state: Resumed};
a snapshot is Paused, PUT /snapshot/create {Full, snapshot_path, mem_file_path} into two files of the data dir
(mode 0600), Resumed; a deploy with from_snapshot starts a fresh stand-in that gets PUT /snapshot/load (memory
file backend, resume_vm, the vsock socket moved to the new run dir) and no boot configuration, becomes running,
and its counter continues; deleting the snapshot removes both files.  Every request matches the description.
"""

import json
import os
import time

import pytest

from conftest import finish_test_nex, start_test_nex, wait_until
from test_firecracker import API_YAML, STANDIN


@pytest.fixture
def fc(request, tmp_path, monkeypatch):
    if not API_YAML.exists():
        pytest.skip(f"Firecracker's API description is not at {API_YAML}")
    kernel = tmp_path / "kernel"
    (kernel / "modules" / "firecracker").mkdir(parents=True)
    (kernel / "vmlinux").write_bytes(b"\x7fELF stand-in kernel, never booted")
    kvm = tmp_path / "standin-kvm-device"
    kvm.write_bytes(b"")
    record = tmp_path / "standin-requests.jsonl"
    monkeypatch.setenv("STANDIN_FIRECRACKER_API", str(API_YAML))
    monkeypatch.setenv("STANDIN_FIRECRACKER_RECORD", str(record))
    monkeypatch.setenv("STANDIN_FIRECRACKER_AGENT", "1")
    nex = start_test_nex(request, ["--firecracker-path", str(STANDIN), "--kvm-device", str(kvm), "--kvm-probe",
                                   "off", "--vm-kernel-dir", str(kernel)])
    yield nex, record
    finish_test_nex(request, nex)


def requests_of(record):
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


def ticks(nex, wid):
    return [int(l["text"].split()[1]) for l in nex.logs(wid)["lines"] if l["text"].startswith("tick ")]


def test_firecracker_pause_snapshot_restore(fc):
    nex, record = fc
    w = nex.deploy_ok(name="fc-counter", driver="firecracker", artifact=nex.program("hello"))
    wid = w["id"]
    nex.wait_state(wid, "running", timeout=60)
    wait_until(lambda: len(ticks(nex, wid)) >= 3, timeout=10, what="the stand-in agent's ticks")

    # pause and resume: PATCH /vm
    assert nex.post(f"/v1/workloads/{wid}/pause").status_code == 202
    nex.wait_state(wid, "paused", timeout=10)
    n = len(ticks(nex, wid))
    time.sleep(0.8)
    assert len(ticks(nex, wid)) == n, "a paused VM went on ticking"
    assert nex.post(f"/v1/workloads/{wid}/resume").status_code == 202
    nex.wait_state(wid, "running", timeout=10)
    wait_until(lambda: len(ticks(nex, wid)) > n + 1, timeout=10, what="ticks after the resume")
    patches = [r["body"] for r in requests_of(record) if r["method"] == "PATCH" and r["path"] == "/vm"]
    assert patches == [{"state": "Paused"}, {"state": "Resumed"}], patches

    # snapshot: Paused, create, Resumed
    before = len(requests_of(record))
    r = nex.post(f"/v1/workloads/{wid}/snapshot")
    assert r.status_code == 201, r.text
    snap = r.json()
    assert snap["driver"] == "firecracker" and snap["accel"] == "kvm"
    taken = [(x["method"], x["path"], x["body"]) for x in requests_of(record)[before:]]
    assert [t[:2] for t in taken] == [("PATCH", "/vm"), ("PUT", "/snapshot/create"), ("PATCH", "/vm")], taken
    create = taken[1][2]
    state = nex.data_dir / "snapshots" / f"{snap['id']}.vmstate"
    assert create == {"snapshot_type": "Full", "snapshot_path": str(state), "mem_file_path": f"{state}.mem"}
    for f in (state, state.with_name(state.name + ".mem")):
        assert oct(f.stat().st_mode & 0o777) == "0o600", f
    assert snap["size_bytes"] == state.stat().st_size + os.stat(f"{state}.mem").st_size
    at_snapshot = json.loads(state.read_text())["tick"]
    wait_until(lambda: max(ticks(nex, wid)) > at_snapshot + 1, timeout=10, what="the source after its snapshot")
    nex.delete(f"/v1/workloads/{wid}")
    nex.wait_state(wid, "stopped", timeout=30)

    # restore: a fresh stand-in, PUT /snapshot/load and nothing of a boot
    before = len(requests_of(record))
    rid = nex.deploy_ok(from_snapshot=snap["id"], name="fc-restored")["id"]
    nex.wait_state(rid, "running", timeout=60)
    wait_until(lambda: len(ticks(nex, rid)) >= 2, timeout=10, what="the restored ticks")
    assert ticks(nex, rid)[0] == at_snapshot + 1, (at_snapshot, ticks(nex, rid)[:5])
    restored = requests_of(record)[before:]
    puts = [(x["path"], x["body"]) for x in restored if x["method"] == "PUT"]
    assert puts[0] == ("/snapshot/load", {"snapshot_path": str(state),
                                          "mem_backend": {"backend_type": "File", "backend_path": f"{state}.mem"},
                                          "resume_vm": True,
                                          "vsock_override": {"uds_path": str(nex.data_dir / "run" / rid / "vsock.sock")}}), puts
    assert not any(p in ("/boot-source", "/machine-config", "/drives/rootfs") for p, _ in puts), puts
    bad = [x for x in requests_of(record) if not x["valid"]]
    assert not bad, f"requests that do not match Firecracker's API description: {bad}"
    nex.delete(f"/v1/workloads/{rid}")
    nex.wait_state(rid, "stopped", timeout=30)

    assert nex.delete(f"/v1/snapshots/{snap['id']}").status_code == 200
    assert not state.exists() and not os.path.exists(f"{state}.mem")
