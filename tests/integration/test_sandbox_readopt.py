# SPDX-License-Identifier: Apache-2.0
"""test_sandbox_readopt.py — workloads outlive nexd: kill -9 nexd while 10 workloads run, start it again, 20 times.

Every running workload is re-adopted (same pid, and exactly one sandbox each: its cgroup holds the agent and the
workload, no more), workloads that ended while nexd was down are recorded with their exit status, the registry
passes PRAGMA integrity_check, and once everything is stopped no cgroup, run dir or mount of these workloads is
left.  Records that do not match the live process (a reused pid, simulated by a wrong start time) or that were
never completed (a crash between starting a sandbox and recording it, simulated by clearing the pid) are not
adopted: the workload fails with the reason and its sandbox is removed, processes and all.
"""

import os
import sqlite3
import time

from sandboxlib import cgroup_dir, nex_cgroup_dirs, probe, wait_until

KILLS = 20      # kill -9 / restart rounds
LONG = 8        # workloads that run throughout
SHORT = 2       # workloads that end while nexd is down


def kill9_and_restart(nexd, down_s=0.0):
    nexd.daemon.kill()  # SIGKILL
    time.sleep(down_s)
    nexd.start()


def registry(nexd):
    return sqlite3.connect(f"file:{nexd.data_dir}/registry.db", uri=True, timeout=5)


def alive(pid):
    """Whether PID is a live process (a zombie awaiting its parent's wait is not: it is dead, only unreaped;
    sandboxes re-adopted after a crash are no longer nexd's children, so nexd cannot reap them)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def procs_in_sandbox(pid):
    with open(f"{cgroup_dir(pid, 'pids')}/cgroup.procs") as f:
        return [int(p) for p in f.read().split()]


def test_kill9_readopts_everything(nexd):
    long_ids = [probe(nexd, "sleep", "600", name=f"long-{i}")["id"] for i in range(LONG)]
    short_ids = [probe(nexd, "sleep", "2", name=f"short-{i}")["id"] for i in range(SHORT)]
    for wid in long_ids + short_ids:
        nexd.wait_log(wid, "sleep: started", timeout=20)
    pids = {wid: nexd.workload(wid)["pid"] for wid in long_ids + short_ids}
    cgroups = {wid: nex_cgroup_dirs(pids[wid]) for wid in long_ids + short_ids}

    for round_ in range(KILLS):
        # the first round stays down long enough for the short sleepers to end meanwhile
        kill9_and_restart(nexd, down_s=3.0 if round_ == 0 else 0.2)
        for wid in long_ids:
            w = nexd.workload(wid)
            assert w["state"] == "running", (round_, w)
            assert w["pid"] == pids[wid], f"round {round_}: {wid} has pid {w['pid']}, was {pids[wid]}"
            # one sandbox: the agent and the sleeper, nothing duplicated
            assert len(procs_in_sandbox(w["pid"])) == 2, (round_, procs_in_sandbox(w["pid"]))
        # exec still reaches a re-adopted workload, and its logs continue
        out = nexd.post(f"/v1/workloads/{long_ids[round_ % LONG]}/exec",
                        json={"argv": ["/workload", "echo", "alive"]}).json()
        assert out.get("stdout") == "alive\n", out

    for wid in short_ids:
        w = nexd.wait_state(wid, "exited", timeout=10)
        assert w["exit_code"] == 0, w
        assert "sleep: started" in nexd.log_texts(wid)
    listed = nexd.workloads()["workloads"]
    assert len(listed) == LONG + SHORT, "a workload was duplicated or lost"
    assert sum(1 for w in listed if w["state"] == "running") == LONG

    db = registry(nexd)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()

    for wid in long_ids:
        assert nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 1}).status_code == 202
    for wid in long_ids:
        nexd.wait_state(wid, "stopped", timeout=15)
    leftovers = lambda: [d for dirs in cgroups.values() for d in dirs if os.path.exists(d)]  # noqa: E731
    wait_until(lambda: not leftovers(), timeout=5, what="the workloads' cgroups to go")
    wait_until(lambda: not [p for p in pids.values() if alive(p)], timeout=5, what="the sandbox processes to end")
    assert os.listdir(nexd.data_dir / "run") == [], "run dirs left behind"
    with open("/proc/self/mountinfo") as f:
        assert str(nexd.data_dir) not in f.read(), "mounts left behind"


def test_records_that_do_not_match_are_not_adopted(nexd):
    reused = probe(nexd, "sleep", "600", name="reused")["id"]
    unrecorded = probe(nexd, "sleep", "600", name="unrecorded")["id"]
    kept = probe(nexd, "sleep", "600", name="kept")["id"]
    for wid in (reused, unrecorded, kept):
        nexd.wait_log(wid, "sleep: started")
    pids = {wid: nexd.workload(wid)["pid"] for wid in (reused, unrecorded, kept)}
    dirs = {wid: nex_cgroup_dirs(pids[wid]) for wid in pids}

    nexd.daemon.kill()
    db = registry(nexd)
    try:
        # as if the pid now belonged to a process started at another time
        db.execute("UPDATE workloads SET agent_start = agent_start + 12345 WHERE id = ?", (reused,))
        # as if nexd had died after starting the sandbox but before recording it
        db.execute("UPDATE workloads SET pid = NULL, endpoint = NULL, state = 'starting' WHERE id = ?", (unrecorded,))
        db.commit()
    finally:
        db.close()
    nexd.start()

    w = nexd.workload(reused)
    assert w["state"] == "failed" and "belongs to another process" in w["reason"], w
    w = nexd.workload(unrecorded)
    assert w["state"] == "failed" and "before the sandbox was recorded" in w["reason"], w
    assert nexd.workload(kept)["state"] == "running"
    # the sandboxes nexd would not adopt are gone: processes (killed through their cgroups), cgroups, run dirs
    for wid in (reused, unrecorded):
        wait_until(lambda: not alive(pids[wid]), timeout=5, what=f"pid {pids[wid]} to go")
        assert not any(os.path.exists(d) for d in dirs[wid]), dirs[wid]
        assert not (nexd.data_dir / "run" / wid).exists()
    assert alive(pids[kept])


def test_output_written_while_nexd_is_down_is_delivered_once(nexd):
    w = probe(nexd, "tick", "30", "100", name="ticker")
    nexd.wait_log(w["id"], "tick 3")
    nexd.daemon.kill()
    time.sleep(1.5)  # the agent keeps what the workload writes meanwhile
    nexd.start()
    nexd.wait_log(w["id"], "tick 14")
    nexd.daemon.kill()
    time.sleep(0.3)
    nexd.start()
    w = nexd.wait_state(w["id"], "exited", timeout=15)
    assert w["exit_code"] == 0
    ticks = [t for t in nexd.log_texts(w["id"]) if t.startswith("tick ")]
    assert ticks == [f"tick {i}" for i in range(30)], " ".join(ticks)


def test_chatty_output_survives_kills_exactly_once(nexd):
    """A workload printing 4000 lines about 1 ms apart (a chatty one: nexd batches its lines before storing them)
    while nexd is killed -9 five times: lines nexd had read but not stored when it died come again from the agent
    (it keeps written output until nexd says STORED), and lines it had stored are not stored twice."""
    w = probe(nexd, "tick", "4000", "1", name="chatty")
    for _ in range(5):
        nexd.wait_log(w["id"], "tick", timeout=15)
        time.sleep(0.35)
        kill9_and_restart(nexd, down_s=0.05)
    w = nexd.wait_state(w["id"], "exited", timeout=60)
    assert w["exit_code"] == 0
    ticks = [t for t in nexd.log_texts(w["id"]) if t.startswith("tick ")]
    want = [f"tick {i}" for i in range(4000)]
    missing = sorted(set(want) - set(ticks), key=lambda t: int(t.split()[1]))
    assert len(ticks) == len(set(ticks)), f"{len(ticks) - len(set(ticks))} lines stored twice"
    assert ticks == want, f"{len(missing)} lines missing, first {missing[:5]}"
