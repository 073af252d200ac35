# SPDX-License-Identifier: Apache-2.0
"""test_warm.py — the warm pool of sandboxes (--warm-sandboxes N, server/drivers/sandbox-pool.h), with a real nexd
and real namespaces and cgroups.

A deploy that fits (an executable, network none, the default disk_mb) starts in a pooled sandbox: its history's
`starting` entry says `warm sandbox`, it runs correctly (output, exit code, environment, host name) with its own
limits applied (memory, pids, vcpus in a cgroup named after it), and the pool refills to N.  A deploy that does
not fit starts cold and leaves the pool alone.  Pooled sandboxes are never listed as workloads; nexd's shutdown
destroys them, and after a kill -9 of nexd the next start sweeps them (no process, cgroup or run dir left).
"""

import os
import subprocess
import time

import pytest

from conftest import build_dir, finish_test_nex, start_test_nex
from sandboxlib import cgroup_dir, nex_cgroup_dirs, probe, wait_until

POOL = 2


@pytest.fixture
def warm(request):
    nex = start_test_nex(request, ["--warm-sandboxes", str(POOL)])
    yield nex
    finish_test_nex(request, nex)


def pool_ready(nexd):
    return nexd.get("/v1/node").json()["warm_sandboxes"]["ready"]


def wait_pool_full(nexd, n=POOL):
    wait_until(lambda: pool_ready(nexd) == n, timeout=15, what=f"{n} warm sandboxes ready")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pooled(nexd):
    """{pooled sandbox name: [pids in its cgroup]} for the sandboxes data/run/warm names, found from /proc."""
    warm_dir = nexd.data_dir / "run" / "warm"
    names = [p.name for p in warm_dir.iterdir()] if warm_dir.exists() else []
    out = {n: [] for n in names}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                text = f.read()
        except OSError:
            continue
        for n in names:
            if f"/nex/{n}\n" in text:
                out[n].append(int(entry))
                break
    return out


def history_source(w):
    starting = [h for h in w["history"] if h["state"] == "starting"]
    assert len(starting) == 1, w["history"]
    return starting[0]["reason"]


def test_warm_deploy_runs_and_the_pool_refills(warm):
    wait_pool_full(warm)
    before = pooled(warm)
    assert len(before) == POOL and all(len(p) == 1 for p in before.values()), before
    w = warm.deploy_ok(name="greeter", artifact=warm.program("hello"), env={"GREETING": "warm"})
    w = warm.wait_state(w["id"], "exited")
    assert history_source(w) == "warm sandbox", w["history"]
    assert w["exit_code"] == 3, w
    assert warm.log_texts(w["id"], "stdout") == ["hello from nex", "argv: greeter", "greeting: warm"]
    assert warm.log_texts(w["id"], "stderr") == ["hello on stderr"]
    # the taken sandbox became the workload's (and went with it); the pool made another
    wait_pool_full(warm)
    after = pooled(warm)
    assert len(after) == POOL and len(set(after) & set(before)) == POOL - 1, (before, after)
    assert not (warm.data_dir / "run" / w["id"]).exists()
    # pooled sandboxes are not workloads
    listed = warm.get("/v1/workloads").json()
    assert [x["id"] for x in listed["workloads"]] == [w["id"]], listed
    # many in a row: each warm while the pool keeps up, each correct
    for i in range(6):
        wait_pool_full(warm)
        x = warm.deploy_ok(name=f"again-{i}", artifact=warm.program("hello"))
        x = warm.wait_state(x["id"], "exited")
        assert history_source(x) == "warm sandbox" and x["exit_code"] == 3, x
        assert warm.log_texts(x["id"], "stdout")[1] == f"argv: again-{i}"


def test_warm_sandbox_gets_the_workloads_limits_and_name(warm):
    wait_pool_full(warm)
    w = probe(warm, "sleep", "60", name="limited", resources={"memory_mb": 48, "pids": 32, "vcpus": 0.5})
    w = warm.wait_state(w["id"], "running")
    assert history_source(w) == "warm sandbox", w["history"]
    pid = w["pid"]
    # its cgroup is named after it, in every hierarchy, and holds its limits
    dirs = nex_cgroup_dirs(pid)
    assert dirs and all(d.endswith("/nex/" + w["id"]) for d in dirs), dirs
    stats = warm.get(f"/v1/workloads/{w['id']}/stats").json()
    assert stats["memory"]["limit_bytes"] == 48 << 20, stats["memory"]
    assert stats["pids"]["limit"] == 32, stats["pids"]
    cpu = cgroup_dir(pid, "cpu")
    if os.path.exists(f"{cpu}/cpu.cfs_quota_us"):
        with open(f"{cpu}/cpu.cfs_quota_us") as f:
            assert int(f.read()) == 50000
    else:
        with open(f"{cpu}/cpu.max") as f:
            assert f.read().split()[0] == "50000"
    # its host name is the workload's, its /workload the executable, read-only
    host = subprocess.run(["nsenter", "--uts", "--target", str(pid), "hostname"], capture_output=True, text=True)
    assert host.stdout.strip() == "limited", host
    r = warm.post(f"/v1/workloads/{w['id']}/exec", json={"argv": ["/workload", "echo", "from", "exec"]})
    assert r.status_code == 200 and r.json()["stdout"] == "from exec\n", r.text
    with open(f"/proc/{pid}/mountinfo") as f:
        lines = [line for line in f if line.split()[4] == "/workload"]
    assert len(lines) == 1 and "ro" in lines[0].split()[5].split(","), lines
    assert warm.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 1}).status_code == 202
    warm.wait_state(w["id"], "stopped")
    # a memory limit that is really enforced: a hog in a warm sandbox is OOM-killed at its own limit
    wait_pool_full(warm)
    hog = probe(warm, "hog", name="hog", resources={"memory_mb": 32})
    hog = warm.wait_state(hog["id"], "failed", timeout=20)
    assert history_source(hog) == "warm sandbox"
    assert hog["reason"] == "oom_killed", hog


def test_deploys_that_do_not_fit_go_cold(warm):
    wait_pool_full(warm)
    names = set(pooled(warm))
    for fields in ({"resources": {"disk_mb": 16}}, {"network": "host"}, {"driver": "sandbox", "resources": {"disk_mb": 8}}):
        w = warm.deploy_ok(name="cold", artifact=warm.program("hello"), **fields)
        w = warm.wait_state(w["id"], "exited")
        assert history_source(w) == "cold sandbox", (fields, w["history"])
        assert w["exit_code"] == 3
    # the pool was not touched
    assert set(pooled(warm)) == names and pool_ready(warm) == POOL


def test_a_pooled_sandbox_that_died_is_replaced(warm):
    wait_pool_full(warm)
    victim, pids = next(iter(pooled(warm).items()))
    os.kill(pids[0], 9)  # from outside, while pooled
    # the pool notices (within a second or so), removes it and makes another
    wait_until(lambda: victim not in pooled(warm) and pool_ready(warm) == POOL, timeout=15,
               what="the dead pooled sandbox to be replaced")
    for i in range(POOL):
        w = warm.deploy_ok(name=f"after-{i}", artifact=warm.program("hello"))
        w = warm.wait_state(w["id"], "exited")
        assert w["exit_code"] == 3 and warm.log_texts(w["id"], "stdout")[0] == "hello from nex", w
    assert not alive(pids[0])


def test_a_deploy_that_fails_before_its_sandbox_gives_it_back(warm):
    wait_pool_full(warm)
    names = set(pooled(warm))
    w = warm.deploy_ok(name="bad-sum", artifact=warm.program("hello"), sha256="0" * 64)
    w = warm.wait_state(w["id"], "failed")
    assert "sha256" in w["reason"].lower() or "digest" in w["reason"].lower(), w["reason"]
    # the sandbox it took went back, untouched
    assert set(pooled(warm)) == names and pool_ready(warm) == POOL


def test_shutdown_frees_pooled_sandboxes(warm):
    wait_pool_full(warm)
    before = pooled(warm)
    pids = [p for ps in before.values() for p in ps]
    dirs = set()
    for p in pids:
        dirs |= nex_cgroup_dirs(p)
    assert len(pids) == POOL and dirs
    warm.stop()
    assert not any(alive(p) for p in pids), pids
    assert not any(os.path.exists(d) for d in dirs), dirs
    assert not (warm.data_dir / "run" / "warm").exists()
    warm.start()  # for the fixture's teardown


def test_kill9_leaves_no_pooled_sandbox(warm):
    running = probe(warm, "sleep", "60", name="survivor")  # takes a pooled sandbox, which is refilled
    running = warm.wait_state(running["id"], "running")
    wait_pool_full(warm)
    before = pooled(warm)
    pids = [p for ps in before.values() for p in ps]
    assert len(pids) == POOL and running["pid"] not in pids
    dirs = set()
    for p in pids:
        dirs |= nex_cgroup_dirs(p)
    warm.daemon.kill()  # SIGKILL: nothing of nexd's shutdown runs
    time.sleep(0.3)
    assert all(alive(p) for p in pids), "pooled agents outlive a kill -9 (until the next start sweeps them)"
    warm.start(["--warm-sandboxes", "0"])
    wait_until(lambda: not any(alive(p) for p in pids), timeout=5, what="the old pool's agents to go")
    assert not any(os.path.exists(d) for d in dirs), dirs
    assert not any((warm.data_dir / "run" / "warm").iterdir())
    assert warm.get("/v1/node").json()["warm_sandboxes"] is None
    # the workload that ran is re-adopted as usual
    assert warm.workload(running["id"])["state"] == "running"
    assert warm.delete(f"/v1/workloads/{running['id']}", params={"grace_s": 1}).status_code == 202
    warm.wait_state(running["id"], "stopped")


def test_warm_sandboxes_flag_is_checked(tmp_path):
    for bad in ("-1", "257", "many"):
        r = subprocess.run([str(build_dir() / "nexd"), "--data-dir", str(tmp_path), "--warm-sandboxes", bad],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "warm_sandboxes" in r.stderr.replace("-", "_"), (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run([str(build_dir() / "nexd"), "--help"], capture_output=True, text=True, timeout=10)
    assert "--warm-sandboxes" in r.stdout


def test_node_says_no_pool_without_the_flag(nexd):
    assert nexd.get("/v1/node").json()["warm_sandboxes"] is None
    w = nexd.deploy_ok(name="plain", artifact=nexd.program("hello"))
    assert history_source(nexd.wait_state(w["id"], "exited")) == "cold sandbox"
