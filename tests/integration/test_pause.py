# SPDX-License-Identifier: Apache-2.0
"""test_pause.py — pausing and resuming a workload (POST .../pause, .../resume; nex pause|resume).

A chatter workload prints a line every 20 ms.  Paused, it prints nothing (its stored line count stays put for a
second), its processes are frozen in the kernel's eyes (state `T`/frozen in /proc, the cgroup says frozen), exec
and signal are refused with 409, and a second pause is 409 too; resumed, it prints again.  It stays paused
across a kill -9 of nexd and resumes afterwards; a stop of a paused workload ends it `stopped` within the grace;
the wrong states and unknown ids get 409 / 404 problem JSON.
"""

import time

import pytest

from conftest import skip_reason, wait_until

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def lines(nex, wid):
    return nex.workload(wid)["logs"]["lines"]


def chatty(nex):
    w = nex.deploy_ok(name="chatty", artifact=nex.program("chatter"), argv=["chatter", "0", "20"])
    nex.wait_state(w["id"], "running", timeout=30)
    wait_until(lambda: lines(nex, w["id"]) > 3, timeout=10, what="the first lines")
    return w["id"]


def frozen(pid):
    """Whether process PID is frozen: the freezer shows it as stopped (`T` or `D` in /proc/PID/stat; on cgroup v2
    the task is in the `frozen` cgroup's do_freezer_trap, state `S` but the cgroup says so), so the check reads
    the process's cgroup files."""
    with open(f"/proc/{pid}/cgroup") as f:
        entries = [line.strip().split(":", 2) for line in f]
    for _, controllers, path in entries:
        if "freezer" in controllers.split(","):
            with open(f"/sys/fs/cgroup/freezer{path}/freezer.state") as s:
                return s.read().strip() == "FROZEN"
    for _, controllers, path in entries:
        if controllers == "":
            try:
                with open(f"/sys/fs/cgroup{path}/cgroup.events") as s:
                    return "frozen 1" in s.read()
            except FileNotFoundError:
                pass
    raise AssertionError(f"process {pid} is in no freezer cgroup: {entries}")


def test_pause_freezes_and_resume_thaws(nexd):
    wid = chatty(nexd)
    pid = nexd.workload(wid)["pid"]
    r = nexd.post(f"/v1/workloads/{wid}/pause")
    assert r.status_code == 202, r.text
    w = nexd.wait_state(wid, "paused", timeout=5)
    assert w["history"][-1]["state"] == "paused", w["history"]
    assert frozen(pid)
    before = lines(nexd, wid)
    time.sleep(1.0)
    assert lines(nexd, wid) == before, "a paused workload went on printing"

    # what a paused workload refuses
    again = nexd.post(f"/v1/workloads/{wid}/pause")
    assert again.status_code == 409 and "paused" in again.json()["detail"], again.text
    assert again.headers["Content-Type"].startswith("application/problem+json")
    ex = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "1", "0"]})
    assert ex.status_code == 409, ex.text
    sig = nexd.post(f"/v1/workloads/{wid}/signal", json={"signal": "SIGUSR1"})
    assert sig.status_code == 409, sig.text
    assert nexd.get("/v1/workloads", params={"state": "paused"}).json()["workloads"][0]["id"] == wid

    r = nexd.post(f"/v1/workloads/{wid}/resume")
    assert r.status_code == 202, r.text
    nexd.wait_state(wid, "running", timeout=5)
    assert not frozen(pid)
    wait_until(lambda: lines(nexd, wid) > before + 5, timeout=5, what="lines after the resume")
    assert nexd.post(f"/v1/workloads/{wid}/resume").status_code == 409

    events = [e["type"] for e in nexd.get("/v1/events", params={"workload_id": wid}).json()["events"]]
    assert "workload_paused" in events and "workload_resumed" in events, events


def test_cli_pause_resume_and_stop_while_paused(nexd):
    wid = chatty(nexd)
    r = nexd.cli("pause", wid)
    assert r.returncode == 0 and "paused" in r.stdout, (r.stdout, r.stderr)
    r = nexd.cli("pause", wid)
    assert r.returncode != 0 and "paused" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = nexd.cli("resume", wid)
    assert r.returncode == 0 and "running" in r.stdout, (r.stdout, r.stderr)

    nexd.cli("pause", wid)
    nexd.wait_state(wid, "paused", timeout=5)
    t0 = time.monotonic()
    assert nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 5}).status_code == 202
    w = nexd.wait_state(wid, "stopped", timeout=15)
    assert time.monotonic() - t0 < 5, "a paused workload was not thawed to hear its SIGTERM"
    assert w["exit_code"] == 0 or w["exit_signal"] in (None, 15), w  # chatter ends on SIGTERM with 0


def test_paused_across_a_nexd_restart(nexd):
    wid = chatty(nexd)
    pid = nexd.workload(wid)["pid"]
    nexd.post(f"/v1/workloads/{wid}/pause")
    nexd.wait_state(wid, "paused", timeout=5)
    nexd.daemon.kill()
    nexd.start()
    w = nexd.workload(wid)
    assert w["state"] == "paused" and w["pid"] == pid and frozen(pid), w
    before = lines(nexd, wid)
    time.sleep(0.5)
    assert lines(nexd, wid) == before
    assert nexd.post(f"/v1/workloads/{wid}/resume").status_code == 202
    nexd.wait_state(wid, "running", timeout=5)
    wait_until(lambda: lines(nexd, wid) > before + 5, timeout=10, what="lines after the resume")


def test_wrong_states_and_unknown_ids(nexd):
    done = nexd.deploy_ok(name="hello", artifact=nexd.program("hello"))
    nexd.wait_state(done["id"], "exited", timeout=30)
    r = nexd.post(f"/v1/workloads/{done['id']}/pause")
    assert r.status_code == 409 and "exited" in r.json()["detail"], r.text
    r = nexd.post("/v1/workloads/7d2c4b8a-1f3e-4a5b-8c6d-9e0f1a2b3c4d/resume")
    assert r.status_code == 404, r.text
    assert nexd.get(f"/v1/workloads/{done['id']}/pause").status_code == 405
