# SPDX-License-Identifier: Apache-2.0
"""test_nats_functions.py — function workloads (`type: function`) triggered over a real nats-server.

The test function is tests/programs/upcase (stdin upper-cased on stdout; "fail" exits 3, "sleep" outlives its
timeout, "subject" prints NEX_TRIGGER_SUBJECT).  nats.js (tests/integration/nats-client.mjs) is the independent
client: 1,000 requests with correct replies, Nex-Error headers on a non-zero exit and on a timeout, binary and
oversized payloads, the events of each run, reserved and malformed trigger subjects refused (REST and NATS), a
function refused on a node without NATS, a stop that unsubscribes (no responders), and a function that keeps
answering across a restart of nexd.
"""

import base64
import json
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

from conftest import build_dir, nexd_environment
from natsutil import (NatsClient, error_text, keypair, nats_server, node_id, ok_data, start_node,  # noqa: F401
                      wait_for)


def deploy_function(nex, name="up", subjects=("fn.up",), **extra):
    fields = dict(name=name, artifact=nex.program("upcase"), type="function", trigger_subjects=list(subjects),
                  **extra)
    w = nex.deploy_ok(**fields)
    return nex.wait_state(w["id"], "running")


def fcall(c, subject, payload=b"", timeout_ms=5000):
    if isinstance(payload, str):
        payload = payload.encode()
    with tempfile.NamedTemporaryFile() as f:  # an argument holds at most 128 KiB
        f.write(payload)
        f.flush()
        out = json.loads(c.run("fcall", subject, "@" + f.name, timeout_ms, timeout=timeout_ms / 1000 + 30).stdout)
    if "data" in out:
        out["bytes"] = base64.b64decode(out["data"])
    return out


def test_function_answers_1000_requests_from_nats_js(request, nats_server):
    nex = start_node(request, nats_server)
    w = deploy_function(nex, max_concurrency=8)
    assert w["type"] == "function" and w["trigger_subjects"] == ["fn.up"]
    assert w["function_timeout_s"] == 10 and w["max_concurrency"] == 8
    c = NatsClient(nats_server.url)
    # 16 in flight against 8 slots: the excess waits (bounded) instead of being refused.
    out = json.loads(c.run("requests", "fn.up", 1000, 16, "upcase", timeout=300).stdout)
    assert out["ok"] == 1000 and out["errors"] == 0 and out["wrong"] == [], out
    # Its sandbox stayed the same one throughout: one agent, never restarted.
    assert nex.workload(w["id"])["restarts"] == 0


def test_invocations_run_at_once(request, nats_server):
    """The runs of one function overlap in its sandbox: 4 invocations that each sleep 1 s, sent at once to a
    function of max_concurrency 4, all end in well under the 4 s they would take one after the other; a fifth
    and sixth beyond the limit wait for a slot (bounded) instead of being refused, and still answer."""
    nex = start_node(request, nats_server)
    deploy_function(nex, name="nap", subjects=["fn.nap"], max_concurrency=4, argv=["upcase", "--nap"])
    c = NatsClient(nats_server.url)
    assert fcall(c, "fn.nap", "warm")["text"] == "WARM"
    out = json.loads(c.run("requests", "fn.nap", 4, 4, "upcase", timeout=120).stdout)
    assert out["ok"] == 4 and out["errors"] == 0, out
    assert out["elapsed_ms"] < 2500, out
    # 6 at once against 4 slots: two wait for the first to end, so the whole takes about two naps, not six.
    out = json.loads(c.run("requests", "fn.nap", 6, 6, "upcase", timeout=120).stdout)
    assert out["ok"] == 6 and out["errors"] == 0, out
    assert 1900 <= out["elapsed_ms"] < 4500, out


def test_cold_runs_and_function_warm_bounds(request, nats_server, tmp_path):
    """With --function-warm 0 every run forks and executes the program, with the same answers; a value beyond 16
    keeps nexd from starting, with one line naming the option."""
    nex = start_node(request, nats_server, extra=["--function-warm", "0"])
    deploy_function(nex, name="cold", subjects=["fn.cold"], max_concurrency=4)
    c = NatsClient(nats_server.url)
    assert wait_for(lambda: fcall(c, "fn.cold", "cold").get("text") == "COLD", what="the cold function answering")
    out = json.loads(c.run("requests", "fn.cold", 50, 4, "upcase", timeout=120).stdout)
    assert out["ok"] == 50 and out["errors"] == 0, out
    r = subprocess.run([str(build_dir() / "nexd"), "--function-warm", "17", "--data-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=30, env=nexd_environment())
    assert r.returncode != 0 and "function_warm must be from 0 to 16" in r.stderr, (r.returncode, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_outcomes_headers_and_events(request, nats_server):
    nex = start_node(request, nats_server)
    c = NatsClient(nats_server.url)
    events = c.subscribe("$NEX.events.default.>")
    w = deploy_function(nex, subjects=["fn.x", "fn.wild.*"], function_timeout_s=1, argv=["upcase", "one"])
    wid = w["id"]

    ok = fcall(c, "fn.x", "hello")
    assert ok["text"] == "HELLO" and "Nex-Error" not in ok["headers"], ok
    # Binary payloads pass through unchanged (NUL and bytes that are not UTF-8 included).
    blob = bytes(range(256)) * 4
    got = fcall(c, "fn.x", blob)
    assert got["bytes"] == bytes(b - 32 if 97 <= b <= 122 else b for b in blob)
    # The trigger subject reaches the function; wildcards are allowed.
    assert fcall(c, "fn.wild.abc", "subject")["text"] == "fn.wild.abc"
    assert fcall(c, "fn.x", "argv")["text"] == "upcase\none\n"

    failed = fcall(c, "fn.x", "fail")
    assert failed["headers"]["Nex-Error"] == "exit code 3", failed
    assert failed["text"] == "failing on request\n"

    slow = fcall(c, "fn.x", "sleep", timeout_ms=15000)
    assert slow["headers"]["Nex-Error"] == "timed out after 1 s", slow

    # Larger than an exec's stdin may be: refused without running.
    big = fcall(c, "fn.x", b"a" * (300 << 10))
    assert "larger than" in big["headers"]["Nex-Error"], big

    def of(kind):
        return lambda m: m["subject"] == f"$NEX.events.default.{kind}" and json.loads(m["data"])["subject"] == wid

    done = [json.loads(m["data"])["data"] for m in events.take(4, predicate=of("function_exec_succeeded"))]
    assert [d["subject"] for d in done] == ["fn.x", "fn.x", "fn.wild.abc", "fn.x"]
    assert all(d["exit_code"] == 0 and d["elapsed_ms"] >= 0 and d["workload_id"] == wid for d in done)
    bad = [json.loads(m["data"])["data"] for m in events.take(2, predicate=of("function_exec_failed"))]
    assert bad[0]["exit_code"] == 3 and bad[0]["reason"] == "exit code 3" and bad[0]["timed_out"] is False
    assert bad[1]["timed_out"] is True and bad[1]["elapsed_ms"] >= 1000
    events.close()
    # Failures are stored and served over REST; successes only announced (no registry write per call) and counted.
    stored = nex.get("/v1/events", params={"type": "function_exec_failed"}).json()["events"]
    assert len(stored) == 2
    assert nex.get("/v1/events", params={"type": "function_exec_succeeded"}).json()["events"] == []
    metrics = nex.get("/metrics").text
    runs = re.search(r"^nex_function_runs_total (\d+)$", metrics, re.M)
    failures = re.search(r"^nex_function_failures_total (\d+)$", metrics, re.M)
    timed = re.search(r"^nex_function_seconds_count (\d+)$", metrics, re.M)
    assert runs and failures and timed, metrics
    assert int(failures.group(1)) == 2 and int(runs.group(1)) >= 6 and int(timed.group(1)) == int(runs.group(1))
    # A message without a reply subject still runs the function; only the reply is skipped.
    events = c.subscribe("$NEX.events.default.function_exec_succeeded")
    c.run("pub", "fn.x", "no reply")
    assert json.loads(events.take(1)[0]["data"])["data"]["subject"] == "fn.x"
    events.close()
    assert nex.workload(wid)["state"] == "running"


def test_subjects_are_validated(request, nats_server):
    nex = start_node(request, nats_server)
    base = dict(name="f", artifact=nex.program("upcase"), type="function")
    cases = {
        "$SYS.REQ.SERVER.PING": "reserved", "$JS.API.>": "reserved", "$NEX.PING": "reserved", "$nex.x": "reserved",
        ">": "reserved", "*.x": "reserved", "a..b": "empty", "a.b>": "whole tokens", "a.>.b": "last",
        "a b": "printable", "": "1 to 255",
    }
    for subject, why in cases.items():
        r = nex.deploy(**base, trigger_subjects=[subject])
        assert r.status_code == 422, (subject, r.text)
        assert r.json()["field"] == "trigger_subjects[0]" and why in r.json()["detail"], (subject, r.json())
    for body, field in [(dict(base), "trigger_subjects"), (dict(base, trigger_subjects=[]), "trigger_subjects"),
                        (dict(base, trigger_subjects=["a", "a"]), "trigger_subjects[1]"),
                        (dict(base, trigger_subjects=["a"], max_concurrency=0), "max_concurrency"),
                        (dict(base, trigger_subjects=["a"], max_concurrency=17), "max_concurrency"),
                        (dict(base, trigger_subjects=["a"], function_timeout_s=0), "function_timeout_s"),
                        (dict(base, type="lambda", trigger_subjects=["a"]), "type"),
                        (dict(name="s", artifact=nex.program("upcase"), trigger_subjects=["a"]), "trigger_subjects"),
                        (dict(name="s", artifact=nex.program("upcase"), max_concurrency=2), "max_concurrency")]:
        r = nex.deploy(**body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    # Over NATS: nex's `type: native` with trigger subjects is a function; reserved subjects are refused too.
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    subject = f"$NEX.DEPLOY.default.{nid}"
    nb = {"workload_name": "g", "location": nex.program("upcase"), "type": "native"}
    assert "reserved" in error_text(c.request(subject, dict(nb, trigger_subjects=["$JS.API.>"])), "run")
    assert nex.workloads()["workloads"] == []
    d = ok_data(c.request(subject, dict(nb, trigger_subjects=["fn.g"])), "run")
    w = nex.wait_state(d["id"], "running")
    assert w["type"] == "function" and w["trigger_subjects"] == ["fn.g"]
    assert wait_for(lambda: fcall(c, "fn.g", "nats").get("text") == "NATS", what="function g answering")
    # A service deployed without type is still a service.
    d = ok_data(c.request(subject, {"workload_name": "s", "location": nex.program("sleeper"),
                                    "argv": ["30"], "trigger_subjects": []}), "run")
    s = nex.workload(d["id"])
    assert s["type"] == "service" and s["trigger_subjects"] is None and s["max_concurrency"] is None


def test_function_needs_nats(nexd):
    nex = nexd
    r = nex.deploy(name="f", artifact=nex.program("upcase"), type="function", trigger_subjects=["fn.x"])
    assert r.status_code == 422 and r.json()["field"] == "trigger_subjects", r.text
    assert "NATS" in r.json()["detail"]
    assert nex.workloads()["workloads"] == []


def test_stop_unsubscribes_and_restart_resubscribes(request, nats_server):
    nex = start_node(request, nats_server)
    c = NatsClient(nats_server.url)
    keep = deploy_function(nex, name="keep", subjects=["fn.keep"])
    gone = deploy_function(nex, name="gone", subjects=["fn.gone"])
    assert fcall(c, "fn.gone", "a")["text"] == "A"
    r = nex.delete(f"/v1/workloads/{gone['id']}")
    assert r.status_code in (200, 202), r.text
    nex.wait_state(gone["id"], "stopped")
    assert wait_for(lambda: fcall(c, "fn.gone", "a", timeout_ms=1000).get("error") == "503",
                    what="no responders on a stopped function's subject")

    # nexd restarts; the function's sandbox outlives it and is subscribed again.
    nex.restart()
    assert nex.workload(keep["id"])["state"] == "running"
    assert wait_for(lambda: fcall(c, "fn.keep", "still here").get("text") == "STILL HERE",
                    what="the function answering after a restart")
    out = json.loads(c.run("requests", "fn.keep", 100, 8, "upcase", timeout=120).stdout)
    assert out["ok"] == 100, out
    assert fcall(c, "fn.gone", "a", timeout_ms=1000).get("error") == "503"


def test_saturation_is_refused_not_blocking(request, nats_server):
    nex = start_node(request, nats_server)
    c = NatsClient(nats_server.url)
    deploy_function(nex, name="one", subjects=["fn.one"], max_concurrency=1, function_timeout_s=4)
    # One slot and four waiting places: of 10 sleeping requests at once, the excess is refused as busy at once;
    # the others end, one after the other, at their timeout.
    with ThreadPoolExecutor(10) as pool:
        outs = list(pool.map(lambda _: fcall(c, "fn.one", "sleep", timeout_ms=40000), range(10)))
    errors = [o.get("headers", {}).get("Nex-Error", o.get("error")) for o in outs]
    busy = [e for e in errors if e and e.startswith("busy")]
    timed_out = [e for e in errors if e == "timed out after 4 s"]
    assert busy and timed_out and len(busy) + len(timed_out) == 10, errors
    assert len(timed_out) <= 5, errors
    # Meanwhile the node answers its control API, and afterwards the function answers again.
    assert ok_data(c.request(f"$NEX.PING.{node_id(nex)}"), "ping")
    assert wait_for(lambda: fcall(c, "fn.one", "back").get("text") == "BACK", timeout=30, what="recovery")


def test_sealed_environment_reaches_each_run_and_exec(request, nats_server):
    """A function deployed with an environment sealed to the node's xkey sees it in every run, as the workload
    itself would; so does an exec into it.  The clear value is in no file nexd keeps, nor in its log."""
    import uuid
    nex = start_node(request, nats_server)
    c = NatsClient(nats_server.url)
    xkey = nex.get("/v1/node").json()["public_xkey"]
    sender = keypair(c, "curve")
    secret = "s3cret-" + uuid.uuid4().hex
    sealed = c.run("seal", sender["seed"], xkey, json.dumps({"SECRET": secret})).stdout.strip()
    w = nex.deploy_ok(name="sealed-fn", artifact="file:///bin/busybox", type="function",
                      trigger_subjects=["fn.sealed"], argv=["sh", "-c", 'echo "len=${#SECRET}"'],
                      environment=sealed, sender_public_key=sender["public"])
    nex.wait_state(w["id"], "running")
    assert wait_for(lambda: fcall(c, "fn.sealed").get("text") == f"len={len(secret)}\n", what="a run with SECRET")
    out = nex.post(f"/v1/workloads/{w['id']}/exec",
                   json={"argv": ["/workload", "-c", 'echo "len=${#SECRET}"'], "argv0": "sh"}).json()
    assert out["stdout"] == f"len={len(secret)}\n", out
    nex.stop()
    for p in nex.data_dir.rglob("*"):
        if p.is_file():
            assert secret.encode() not in p.read_bytes(), p
    assert secret not in nex.daemon.log_path.read_text()
