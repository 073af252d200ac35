# SPDX-License-Identifier: Apache-2.0
"""test_wait.py — GET /v1/workloads/{id}/wait: answered when the workload reaches a state, 408 at the timeout.

Waiters are parked, not served by a blocked thread: with a nexd of 2 API threads, more waiters than threads
must leave the API answering other requests at once, and every waiter must be answered when the state comes.
"""

import concurrent.futures
import time

import pytest
import requests

from test_contract import check

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def wait(nexd, wid, timeout=30, **params):
    return nexd.get(f"/v1/workloads/{wid}/wait", params=params, timeout=timeout)


def test_wait_states(nexd):
    w = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    r = wait(nexd, w["id"], state="running", timeout_s=20)
    running = check(r, "get", "/v1/workloads/{id}/wait")
    assert r.status_code == 200 and running["state"] == "running"
    # already there: at once
    assert wait(nexd, w["id"], state="starting,running").json()["state"] == "running"
    # not reached in time
    t0 = time.monotonic()
    r = wait(nexd, w["id"], state="exited", timeout_s=1)
    assert check(r, "get", "/v1/workloads/{id}/wait")["status"] == 408
    assert 0.9 <= time.monotonic() - t0 < 10
    assert wait(nexd, w["id"], state="exited", timeout_s=0).status_code == 408
    nexd.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 1})
    r = wait(nexd, w["id"], timeout_s=20)  # default: any final state
    assert r.status_code == 200 and r.json()["state"] == "stopped"
    # ended otherwise: it will never be running again
    r = wait(nexd, w["id"], state="running", timeout_s=5)
    assert check(r, "get", "/v1/workloads/{id}/wait")["status"] == 409


def test_waiters_do_not_hold_threads(nexd):
    nexd.restart(["--api-threads", "2"])
    w = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    nexd.wait_log(w["id"], "sleeper started")
    n = 8
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(wait, nexd, w["id"], 60, state="stopped", timeout_s=60) for _ in range(n)]
        time.sleep(0.5)
        assert not any(f.done() for f in futures)
        # the API answers while 8 requests wait on 2 threads
        t0 = time.monotonic()
        assert nexd.get("/v1/node", timeout=5).status_code == 200
        assert nexd.get(f"/v1/workloads/{w['id']}", timeout=5).json()["state"] == "running"
        assert time.monotonic() - t0 < 5
        nexd.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 1})
        results = [f.result(timeout=30) for f in futures]
    assert [r.status_code for r in results] == [200] * n
    assert all(r.json()["state"] == "stopped" for r in results)


def test_exited_quickly(nexd):
    # the state may change between deploy and wait, or while the request is being parked: never missed
    for i in range(10):
        w = nexd.deploy_ok(name=f"quick-{i}", artifact=nexd.program("hello"))
        r = wait(nexd, w["id"], state="exited", timeout_s=20)
        assert r.status_code == 200 and r.json()["exit_code"] == 3, r.text


@pytest.mark.parametrize("path,params,status,field", [
    (UNKNOWN, {}, 404, None),
    ("not-an-id", {}, 404, None),
    (None, {"state": "bogus"}, 422, "state"),
    (None, {"state": ","}, 422, "state"),
    (None, {"timeout_s": "-1"}, 422, "timeout_s"),
    (None, {"timeout_s": "3601"}, 422, "timeout_s"),
])
def test_wait_refused(nexd, path, params, status, field):
    if path is None:
        path = nexd.deploy_ok(name="x", artifact=nexd.program("hello"))["id"]
    p = check(wait(nexd, path, **params), "get", "/v1/workloads/{id}/wait")
    assert p["status"] == status and p.get("field") == field, p


def test_shutdown_answers_waiters(nexd):
    w = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    nexd.wait_state(w["id"], "running")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        f = pool.submit(wait, nexd, w["id"], 30, state="exited", timeout_s=60)
        time.sleep(0.5)
        t0 = time.monotonic()
        assert nexd.daemon.stop() == 0
        assert time.monotonic() - t0 < 8
        try:
            r = f.result(timeout=10)
            assert r.status_code == 503, r.text
        except requests.ConnectionError:
            pytest.fail("the waiter was cut off instead of answered")
    nexd.start()  # the teardown stops the sleeper
