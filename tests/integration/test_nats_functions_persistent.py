# SPDX-License-Identifier: Apache-2.0
"""test_nats_functions_persistent.py — functions with `function_mode: "persistent"` over a real nats-server.

The test function is tests/programs/upcase-server: one process that answers calls one after another on its stdin
and stdout (`<length> <subject>\\n` + payload in, `<status> <length>\\n` + body out; the README's "Function
workloads").  nats.js (tests/integration/nats-client.mjs) is the independent client: 1,000 requests with 8 in
flight all answered correctly by the same few processes, the calls of one process counted (it is reused), calls
that overlap up to max_concurrency, every outcome (a failure status, a process that crashes, one that hangs past
its timeout, one that writes a malformed reply) answered with Nex-Error and followed by a call that works again,
its stderr in the workload's logs, and the field validated (REST).
"""

import json

from natsutil import NatsClient, nats_server, start_node, wait_for  # noqa: F401
from test_nats_functions import fcall


def deploy_persistent(nex, name="ps", subjects=("fn.ps",), **extra):
    fields = dict(name=name, artifact=nex.program("upcase-server"), type="function", trigger_subjects=list(subjects),
                  function_mode="persistent", **extra)
    w = nex.deploy_ok(**fields)
    return nex.wait_state(w["id"], "running")


def test_persistent_function_answers_1000_requests_with_few_processes(request, nats_server):
    nex = start_node(request, nats_server)
    w = deploy_persistent(nex, max_concurrency=4)
    assert w["function_mode"] == "persistent" and w["max_concurrency"] == 4
    c = NatsClient(nats_server.url)
    assert wait_for(lambda: fcall(c, "fn.ps", "first").get("text") == "FIRST", what="the function answering")
    # One call after another reaches the same process: its count of calls answered goes up by one each time.
    first = int(fcall(c, "fn.ps", "count")["text"])
    assert [int(fcall(c, "fn.ps", "count")["text"]) for _ in range(3)] == [first + 1, first + 2, first + 3]
    # 8 in flight against 4 slots: every reply correct (each payload its own, upper-cased: no reply crosses calls).
    out = json.loads(c.run("requests", "fn.ps", 1000, 8, "upcase", timeout=300).stdout)
    assert out["ok"] == 1000 and out["errors"] == 0 and out["wrong"] == [], out
    # At most max_concurrency processes served them: the calls counted by the busiest process after the burst
    # show that processes were reused, not one per call.
    assert int(fcall(c, "fn.ps", "count")["text"]) >= 1000 // 4, "processes were not reused"
    assert nex.workload(w["id"])["restarts"] == 0
    # A default function is per_call.
    d = nex.deploy_ok(name="pc", artifact=nex.program("upcase"), type="function", trigger_subjects=["fn.pc"])
    assert nex.workload(d["id"])["function_mode"] == "per_call"


def test_persistent_calls_overlap_up_to_max_concurrency(request, nats_server):
    nex = start_node(request, nats_server)
    deploy_persistent(nex, name="nap", subjects=["fn.psnap"], max_concurrency=4, argv=["upcase-server", "--nap"])
    c = NatsClient(nats_server.url)
    assert wait_for(lambda: fcall(c, "fn.psnap", "warm").get("text") == "WARM", what="the function answering")
    # 4 calls that each take 1 s, at once: 4 processes side by side, well under the 4 s of one after another.
    out = json.loads(c.run("requests", "fn.psnap", 4, 4, "upcase", timeout=120).stdout)
    assert out["ok"] == 4 and out["errors"] == 0, out
    assert out["elapsed_ms"] < 2500, out
    # Again, with the processes of the first round now idle and reused.
    out = json.loads(c.run("requests", "fn.psnap", 4, 4, "upcase", timeout=120).stdout)
    assert out["ok"] == 4 and out["elapsed_ms"] < 2500, out


def test_persistent_outcomes_and_recovery(request, nats_server):
    nex = start_node(request, nats_server)
    w = deploy_persistent(nex, subjects=["fn.ps", "fn.pswild.*"], function_timeout_s=1, max_concurrency=2)
    c = NatsClient(nats_server.url)
    assert wait_for(lambda: fcall(c, "fn.ps", "hello").get("text") == "HELLO", what="the function answering")
    # The subject reaches the program in each call's header, wildcards included.
    assert fcall(c, "fn.pswild.abc", "subject")["text"] == "fn.pswild.abc"
    # Binary payloads pass through unchanged.
    blob = bytes(range(256)) * 4
    assert fcall(c, "fn.ps", blob)["bytes"] == bytes(b - 32 if 97 <= b <= 122 else b for b in blob)
    # An empty payload is a call too.
    empty = fcall(c, "fn.ps", b"")
    assert empty.get("bytes") == b"" and "Nex-Error" not in empty.get("headers", {}), empty

    failed = fcall(c, "fn.ps", "fail")
    assert failed["headers"]["Nex-Error"] == "status 3", failed
    assert failed["text"] == "failing on request"
    assert fcall(c, "fn.ps", "after fail")["text"] == "AFTER FAIL"

    crashed = fcall(c, "fn.ps", "crash")
    assert crashed["headers"]["Nex-Error"] == "the function's process exited with code 7 before it replied", crashed
    assert fcall(c, "fn.ps", "after crash")["text"] == "AFTER CRASH"

    slow = fcall(c, "fn.ps", "sleep", timeout_ms=15000)
    assert slow["headers"]["Nex-Error"] == "timed out after 1 s", slow
    assert fcall(c, "fn.ps", "after timeout")["text"] == "AFTER TIMEOUT"

    broken = fcall(c, "fn.ps", "garbage")
    assert broken["headers"]["Nex-Error"].startswith("function protocol: its reply does not begin"), broken
    assert fcall(c, "fn.ps", "after garbage")["text"] == "AFTER GARBAGE"

    # What it writes on stderr is the workload's log.
    assert fcall(c, "fn.ps", "log")["text"] == "ok"
    nex.wait_log(w["id"], "logged on stderr")
    # Failures are stored events; the node is still serving.
    assert nex.workload(w["id"])["state"] == "running"
    kinds = [e["type"] for e in nex.get("/v1/events", params={"limit": 200}).json()["events"]]
    assert kinds.count("function_exec_failed") >= 4, kinds


def test_function_mode_is_validated(request, nats_server):
    nex = start_node(request, nats_server)
    base = dict(name="f", artifact=nex.program("upcase-server"), type="function", trigger_subjects=["fn.v"])
    for body in (dict(base, function_mode="daemon"), dict(base, function_mode=1), dict(base, function_mode="")):
        r = nex.deploy(**body)
        assert r.status_code == 422 and r.json()["field"] == "function_mode", (body, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
    r = nex.deploy(name="s", artifact=nex.program("upcase-server"), function_mode="persistent")
    assert r.status_code == 422 and r.json()["field"] == "function_mode", r.text
    assert "function" in r.json()["detail"]
    assert nex.workloads()["workloads"] == []
