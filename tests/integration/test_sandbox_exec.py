# SPDX-License-Identifier: Apache-2.0
"""test_sandbox_exec.py — reaching into a running workload: exec, signals and stats, against a real nexd.

A `probe sleep` workload runs; `POST .../exec` runs tests/programs/probe again inside its sandbox (as /workload)
with stdin, env and timeouts; a program the sandbox does not hold is refused with 422 naming argv[0]; an ended
workload answers 409.  `POST .../signal` delivers a signal to the main process.  `GET .../stats` reads the
workload's cgroup.  Every answer is also held to openapi.yaml.
"""

import threading
import time

import requests

from sandboxlib import probe
from test_contract import check

EXEC = "/v1/workloads/{id}/exec"


def running_probe(nexd, **fields):
    w = probe(nexd, "sleep", "600", name="host", **fields)
    nexd.wait_log(w["id"], "sleep: started")
    return w["id"]


def test_exec_round_trip(nexd):
    wid = running_probe(nexd, env={"FROM_WORKLOAD": "yes"})
    r = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "cat"], "stdin": "hello exec\nline 2\n"})
    assert r.status_code == 200, r.text
    out = check(r, "post", EXEC)
    assert out["stdout"] == "hello exec\nline 2\n"
    assert out["stderr"] == ""
    assert out["exit_code"] == 0 and out["signal"] is None and out["timed_out"] is False
    assert isinstance(out["pid"], int) and 1 < out["pid"] < 100, out  # a pid of the sandbox's namespace

    out = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "exit", "7"]}).json()
    assert out["exit_code"] == 7 and out["stdout"] == "exit: 7\n", out
    out = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "echo-err", "to", "stderr"]}).json()
    assert out["stderr"] == "to stderr\n" and out["stdout"] == "", out

    # same sandbox: what the exec writes to /tmp, the workload's sandbox holds (and vice versa)
    syscalls = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "syscalls"]}).json()
    assert "mount: EPERM" in syscalls["stdout"], syscalls  # the same seccomp profile
    assert "Seccomp: 2" in syscalls["stdout"] and "CapEff: 0000000000000000" in syscalls["stdout"]
    assert "write-tmp: ok" in syscalls["stdout"]

    # the workload's state is untouched by all this
    assert nexd.workload(wid)["state"] == "running"


def test_exec_missing_program_and_bad_requests(nexd):
    wid = running_probe(nexd)
    r = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/bin/sh", "-c", "echo hi"]})
    p = check(r, "post", EXEC)
    assert r.status_code == 422 and p["field"] == "argv[0]", p
    assert "/bin/sh" in p["detail"] and "does not exist in the sandbox" in p["detail"], p
    for body, field in (({"argv": []}, "argv"), ({"argv": "ls"}, "argv"), ({"argv": ["/workload"], "tty": True}, "tty"),
                        ({"argv": ["/workload"], "timeout_s": 0}, "timeout_s"),
                        ({"argv": ["/workload"], "env": {"A=B": "c"}}, "env.A=B"),
                        ({"argv": ["/workload"], "stdin": 5}, "stdin")):
        r = nexd.post(f"/v1/workloads/{wid}/exec", json=body)
        p = check(r, "post", EXEC)
        assert r.status_code == 422 and p["field"] == field, (body, p)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert check(nexd.post(f"/v1/workloads/{unknown}/exec", json={"argv": ["/workload"]}), "post", EXEC)["status"] == 404


def test_exec_env_and_timeout(nexd):
    wid = running_probe(nexd, env={"A": "from-workload", "B": "kept"})
    out = nexd.post(f"/v1/workloads/{wid}/exec",
                    json={"argv": ["/workload", "env", "A", "B", "C"], "env": {"A": "from-exec", "C": "new"}}).json()
    assert out["stdout"].splitlines() == ["A=from-exec", "B=kept", "C=new"], out
    start = time.monotonic()
    out = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "spin"], "timeout_s": 0.5}).json()
    took = time.monotonic() - start
    assert out["timed_out"] is True and out["signal"] == 9 and out["exit_code"] is None, out
    assert out["stdout"] == "spin: started\n"
    assert took < 5, took
    # the spinning process is gone: only the agent and the workload remain
    stats = nexd.get(f"/v1/workloads/{wid}/stats").json()
    assert stats["pids"]["current"] == 2, stats


def test_exec_needs_a_running_workload(nexd):
    w = nexd.deploy_ok(name="hello", artifact=nexd.program("hello"))
    nexd.wait_state(w["id"], "exited")
    r = nexd.post(f"/v1/workloads/{w['id']}/exec", json={"argv": ["/workload"]})
    p = check(r, "post", EXEC)
    assert r.status_code == 409 and "exited" in p["detail"], p
    r = nexd.get(f"/v1/workloads/{w['id']}/stats")
    assert check(r, "get", "/v1/workloads/{id}/stats")["status"] == 409
    r = nexd.post(f"/v1/workloads/{w['id']}/signal", json={"signal": "TERM"})
    assert check(r, "post", "/v1/workloads/{id}/signal")["status"] == 409


def test_signal(nexd):
    wid = running_probe(nexd)
    for bad in ({"signal": 0}, {"signal": "SIGNOPE"}, {"signal": 1.5}, {}, {"signal": 15, "x": 1}):
        r = nexd.post(f"/v1/workloads/{wid}/signal", json=bad)
        p = check(r, "post", "/v1/workloads/{id}/signal")
        assert r.status_code == 422, (bad, p)
    r = nexd.post(f"/v1/workloads/{wid}/signal", json={"signal": "sigterm"})
    assert r.status_code == 202, r.text
    body = check(r, "post", "/v1/workloads/{id}/signal")
    assert body["signal"] == 15 and body["name"] == "TERM"
    # probe sleep exits 0 on SIGTERM: the workload ends on its own, not stopped
    w = nexd.wait_state(wid, "exited", timeout=10)
    assert w["exit_code"] == 0 and w["reason"] is None, w

    wid = running_probe(nexd)
    assert nexd.post(f"/v1/workloads/{wid}/signal", json={"signal": 9}).status_code == 202
    w = nexd.wait_state(wid, "exited", timeout=10)
    assert w["exit_signal"] == 9, w


def test_stats(nexd):
    wid = running_probe(nexd, resources={"memory_mb": 100, "pids": 30, "vcpus": 0.5})
    r = nexd.get(f"/v1/workloads/{wid}/stats")
    assert r.status_code == 200, r.text
    st = check(r, "get", "/v1/workloads/{id}/stats")
    assert st["workload_id"] == wid and st["state"] == "running"
    assert st["memory"]["limit_bytes"] == 100 << 20
    assert 0 < st["memory"]["current_bytes"] <= st["memory"]["limit_bytes"]
    assert st["memory"]["peak_bytes"] >= st["memory"]["current_bytes"]
    assert st["memory"]["oom_kills"] == 0
    assert st["pids"] == {"current": 2, "limit": 30, "limit_hits": 0}, st["pids"]
    assert st["cpu"]["vcpus"] == 0.5 and st["cpu"]["usage_ns"] > 0
    assert st["restarts"] == 0 and st["logs"]["lines"] >= 1
    # CPU time grows with work done inside the sandbox (an exec counts: same cgroup)
    before = st["cpu"]["usage_ns"]
    nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "spin", "2"], "timeout_s": 5})
    after = nexd.get(f"/v1/workloads/{wid}/stats").json()["cpu"]["usage_ns"]
    assert after - before > 200_000_000, (before, after)  # at least 1 s of spinning at 0.5 vCPU


def test_shutdown_does_not_wait_for_exec(nexd):
    wid = running_probe(nexd)
    result = {}

    def long_exec():
        try:
            r = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "spin"], "timeout_s": 60},
                          timeout=90)
            result["status"], result["body"] = r.status_code, r.json()
        except requests.ConnectionError as e:
            result["closed"] = str(e)

    t = threading.Thread(target=long_exec)
    t.start()
    time.sleep(0.5)
    start = time.monotonic()
    assert nexd.daemon.stop(timeout=10) == 0  # SIGTERM: nexd exits at once, not after the exec's 60 s
    t.join(10)
    assert not t.is_alive()
    assert time.monotonic() - start < 5
    # the waiting request is answered 503 at once; the HTTP server stopping right after may close the connection
    # before that answer is written, which the client sees as promptly, as a closed connection
    assert "closed" in result or (result["status"] == 503 and "shutting down" in result["body"]["detail"]), result
    # the workload outlived nexd; the next nexd adopts it (and the test's teardown stops it)
    nexd.start()
    assert nexd.workload(wid)["state"] == "running"
    out = nexd.post(f"/v1/workloads/{wid}/exec", json={"argv": ["/workload", "echo", "back"]}).json()
    assert out["stdout"] == "back\n", out
