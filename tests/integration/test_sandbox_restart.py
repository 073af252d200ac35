# SPDX-License-Identifier: Apache-2.0
"""test_sandbox_restart.py — restart policies: never, on-failure (also nex's `essential: true`), always, with
max_restarts and exponential backoff, each restart an event `workload_restarted` and counted on the workload.

Restarts happen inside the same sandbox (the agent starts the process again), so the agent's pid stays the same
and what a run left in /tmp is still there for the next.
"""

import time

from conftest import parse_time
from sandboxlib import events_of as events, probe


def test_on_failure_counts_and_backs_off(nexd):
    w = probe(nexd, "exit", "3", name="crasher", restart_policy="on-failure", max_restarts=3)
    assert w["restart_policy"] == "on-failure" and w["max_restarts"] == 3 and w["restarts"] == 0
    w = nexd.wait_state(w["id"], "exited", timeout=20)
    assert w["exit_code"] == 3 and w["restarts"] == 3 and w["reason"] is None, w
    states = [h["state"] for h in w["history"]]
    assert states == ["pending", "starting", "running"] + ["starting", "running"] * 3 + ["exited"], states
    # four runs, each printed its line
    assert nexd.log_texts(w["id"]).count("exit: 3") == 4
    restarted = events(nexd, w["id"], "workload_restarted")
    assert [e["data"]["restarts"] for e in restarted] == [1, 2, 3]
    assert all(e["data"]["exit_code"] == 3 and e["data"]["max_restarts"] == 3 for e in restarted)
    delays = [e["data"]["delay_ms"] for e in restarted]
    assert delays == [200, 400, 800], delays
    # the gaps between an exit and the next start follow the delays
    hist = w["history"]
    starts = [i for i, h in enumerate(hist) if h["state"] == "starting" and (h["reason"] or "").startswith("restart")]
    for i, delay in zip(starts, delays):
        gap = (parse_time(hist[i + 1]["at"]) - parse_time(hist[i]["at"])).total_seconds() * 1000
        assert delay * 0.9 <= gap <= delay + 1500, (i, delay, gap)


def test_on_failure_does_not_restart_success_and_never_is_default(nexd):
    ok = probe(nexd, "exit", "0", name="fine", restart_policy="on-failure")
    w = nexd.wait_state(ok["id"], "exited")
    assert w["restarts"] == 0 and w["exit_code"] == 0
    plain = probe(nexd, "exit", "1", name="plain")
    w = nexd.wait_state(plain["id"], "exited")
    assert w["restart_policy"] == "never" and w["restarts"] == 0 and w["exit_code"] == 1


def test_essential_is_on_failure(nexd):
    w = probe(nexd, "exit", "2", name="essential", essential=True, max_restarts=1)
    assert w["restart_policy"] == "on-failure"
    w = nexd.wait_state(w["id"], "exited", timeout=10)
    assert w["restarts"] == 1 and w["exit_code"] == 2


def test_always_restarts_in_the_same_sandbox_until_stopped(nexd):
    w = probe(nexd, "exit", "0", name="always", restart_policy="always", max_restarts=1000)
    wid = w["id"]
    # several runs happen (each a few ms long); the sandbox (its agent, pid) stays the same
    pids = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        cur = nexd.workload(wid)
        if cur["pid"]:
            pids.add(cur["pid"])
        if cur["restarts"] >= 3:
            break
        time.sleep(0.05)
    assert cur["restarts"] >= 3, cur
    assert len(pids) == 1, f"a restart made a new sandbox: pids {pids}"
    r = nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 1})
    assert r.status_code == 202
    w = nexd.wait_state(wid, "stopped", timeout=10)
    n = w["restarts"]
    assert "stopped on request" in w["reason"], w
    time.sleep(1.0)
    assert nexd.workload(wid)["restarts"] == n, "restarted after the stop"


def test_oom_kill_counts_as_failure(nexd):
    w = probe(nexd, "hog", name="hog", resources={"memory_mb": 32}, restart_policy="on-failure", max_restarts=1)
    w = nexd.wait_state(w["id"], "failed", timeout=30)
    assert w["reason"] == "oom_killed" and w["restarts"] == 1, w
    assert len(events(nexd, w["id"], "workload_oom")) == 2
