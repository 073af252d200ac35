# SPDX-License-Identifier: Apache-2.0
"""test_sandbox_limits.py — resource limits enforced with real cgroups on this host (v1, hybrid or v2).

Deploys tests/programs/probe in its hostile modes and checks the limits from the outside: a memory hog ends
`failed` with reason `oom_killed` (and an event `workload_oom`) while the node keeps answering; a fork bomb stays
at its pids limit while other workloads and API calls work; a busy loop with vcpus 0.2 gets about a fifth of one
CPU, measured from the cgroup's own CPU accounting; /tmp has the size disk_mb asks for; every cgroup is gone once
its workload is.
"""

import os
import time

from sandboxlib import cgroup_dir, cpu_usage_ns, events_of, nex_cgroup_dirs, probe, wait_until


def test_memory_hog_is_oom_killed(nexd):
    w = probe(nexd, "hog", name="hog", resources={"memory_mb": 64})
    assert w["resources"]["memory_mb"] == 64
    start = time.monotonic()
    w = nexd.wait_state(w["id"], "failed", timeout=20)
    took = time.monotonic() - start
    assert w["reason"] == "oom_killed", w
    assert w["exit_signal"] == 9, w
    assert took < 15, f"the hog took {took:.1f} s to be stopped"
    # it did allocate up to near the limit, never far past it
    texts = nexd.log_texts(w["id"])
    mib = [int(t.split()[1]) for t in texts if t.startswith("hog: ") and t.endswith("MiB")]
    assert mib and max(mib) <= 64, texts
    oom = events_of(nexd, w["id"], "workload_oom")
    assert len(oom) == 1, oom
    assert oom[0]["data"]["memory_limit_bytes"] == 64 << 20
    assert oom[0]["data"]["main_process"] is True
    # the node is fine: it answers and runs the next workload normally
    assert nexd.get("/v1/node").status_code == 200
    h = nexd.deploy_ok(name="hello", artifact=nexd.program("hello"))
    assert nexd.wait_state(h["id"], "exited")["exit_code"] == 3


def test_fork_bomb_stays_bounded(nexd):
    w = probe(nexd, "forkbomb", name="bomb", resources={"pids": 64})
    wid = w["id"]
    line = nexd.wait_log(wid, "forkbomb: ok=", timeout=20)["text"]
    ok = int(line.split("ok=")[1].split()[0])
    assert 0 < ok < 64, line  # the agent and the bomb itself count too
    pid = nexd.workload(wid)["pid"]
    pids_dir = cgroup_dir(pid, "pids")
    with open(f"{pids_dir}/pids.current") as f:
        current = int(f.read())
    assert current <= 64, current
    # other workloads and API calls keep working meanwhile
    for _ in range(3):
        assert nexd.get("/v1/node").status_code == 200
        assert nexd.get(f"/v1/workloads/{wid}").json()["state"] == "running"
    h = nexd.deploy_ok(name="hello", artifact=nexd.program("hello"))
    assert nexd.wait_state(h["id"], "exited")["exit_code"] == 3
    stats = nexd.get(f"/v1/workloads/{wid}/stats").json()
    assert stats["pids"]["limit"] == 64 and stats["pids"]["limit_hits"] >= 100, stats["pids"]
    r = nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 1})
    assert r.status_code == 202
    nexd.wait_state(wid, "stopped", timeout=10)
    # the end's event reports the limit hits too
    usage = events_of(nexd, wid, "workload_stopped")[0]["data"]["usage"]
    assert usage["pids_limit_hits"] >= 100, usage


def test_cpu_quota_holds_a_busy_loop(nexd):
    w = probe(nexd, "spin", name="spin", resources={"vcpus": 0.2})
    wid = w["id"]
    nexd.wait_log(wid, "spin: started")
    pid = nexd.workload(wid)["pid"]
    t0, u0 = time.monotonic(), cpu_usage_ns(pid)
    time.sleep(3)
    t1, u1 = time.monotonic(), cpu_usage_ns(pid)
    share = (u1 - u0) / ((t1 - t0) * 1e9)
    print(f"vcpus 0.2: busy loop got {share:.3f} of one CPU")
    # the quota is an upper bound; the lower bound only guards against measuring nothing at all
    assert 0.02 <= share <= 0.27, share
    stats = nexd.get(f"/v1/workloads/{wid}/stats").json()
    assert stats["cpu"]["throttled_periods"] > 0, stats["cpu"]  # throttling is detected and reported
    nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 0})
    nexd.wait_state(wid, "stopped", timeout=10)
    usage = events_of(nexd, wid, "workload_stopped")[0]["data"]["usage"]
    assert usage["cpu_throttled_periods"] > 0 and usage["cpu_usage_ns"] > 0, usage


def test_cgroups_are_removed_and_limits_set(nexd):
    w = probe(nexd, "sleep", "600", name="sleepy",
              resources={"memory_mb": 96, "pids": 50, "vcpus": 1.5, "disk_mb": 3})
    wid = w["id"]
    nexd.wait_log(wid, "sleep: started")
    pid = nexd.workload(wid)["pid"]
    dirs = nex_cgroup_dirs(pid)
    assert dirs and all(d.endswith("/nex/" + wid) for d in dirs), dirs
    mem = cgroup_dir(pid, "memory")
    limit_file = f"{mem}/memory.limit_in_bytes"
    if not os.path.exists(limit_file):
        limit_file = f"{mem}/memory.max"  # v2
    assert int(open(limit_file).read()) == 96 << 20
    pids = cgroup_dir(pid, "pids")
    assert open(f"{pids}/pids.max").read().strip() == "50"
    # /tmp has the size asked for: its statfs as seen from the host through the agent's root
    st = os.statvfs(f"/proc/{pid}/root/tmp")
    assert st.f_blocks * st.f_frsize == 3 << 20, st
    r = nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 1})
    assert r.status_code == 202
    nexd.wait_state(wid, "stopped", timeout=10)
    wait_until(lambda: not any(os.path.exists(d) for d in dirs), timeout=5, what="the cgroups to be removed")
