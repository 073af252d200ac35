# SPDX-License-Identifier: Apache-2.0
"""test_metrics.py — GET /metrics (Prometheus text), /healthz, /readyz and the per-request log line.

The metrics page of a real nexd is parsed line by line (every sample must be `name{labels} value` with a number,
every name declared by # TYPE) and its numbers must move with what the test does: deploys, a failure, requests
by route and status, the start latency histogram, log lines, uploads, websocket clients.
"""

import json
import re
import time

import websocket

from conftest import program_path, wait_until

# name, optional {labels} (values are quoted and may hold braces), value
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def scrape(nexd):
    r = nexd.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples, types = {}, {}
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"{name} has no # TYPE"
        samples[name + labels] = float(value)
    return samples


def test_metrics_move(nexd):
    before = scrape(nexd)
    assert before["nex_build_info{version=\"0.1.0\"}"] == 1
    w = nexd.deploy_ok(name="hello", artifact=nexd.program("hello"))
    nexd.wait_state(w["id"], "exited")
    f = nexd.deploy_ok(name="bad", artifact=nexd.program("hello"), sha256="1" * 64)
    nexd.wait_state(f["id"], "failed")
    nexd.get("/v1/workloads/00000000-0000-4000-8000-000000000000")
    nexd.post("/v1/artifacts", data=program_path("hello").read_bytes())
    ws = websocket.create_connection("ws" + nexd.base[4:] + "/v1/events?follow=1", timeout=10,
                                     header=[f"Authorization: Bearer {nexd.token}"])
    try:
        # The 101 reaches the client before libmicrohttpd hands the socket to the websocket thread, which is when
        # the stream is counted: wait for that rather than race it.
        def counted():
            m = scrape(nexd)
            return m if m["nex_websocket_clients"] == 1 else None
        after = wait_until(counted, what="the websocket to be counted")
    finally:
        ws.close()
    assert after["nex_deploys_total"] == before["nex_deploys_total"] + 2
    assert after["nex_workload_failures_total"] == before["nex_workload_failures_total"] + 1
    assert after["nex_workload_exits_total"] == before["nex_workload_exits_total"] + 1
    assert after['nex_workloads{state="exited"}'] == 1 and after['nex_workloads{state="failed"}'] == 1
    assert after["nex_workload_start_seconds_count"] == before["nex_workload_start_seconds_count"] + 1
    assert after['nex_workload_start_seconds_bucket{le="+Inf"}'] == after["nex_workload_start_seconds_count"]
    assert after["nex_log_lines_total"] >= before["nex_log_lines_total"] + 3
    assert after["nex_log_bytes_total"] > before["nex_log_bytes_total"]
    assert after["nex_artifact_uploads_total"] == before["nex_artifact_uploads_total"] + 1
    assert after["nex_websocket_clients"] == 1
    assert after['nex_http_requests_total{route="/v1/workloads",method="POST",status="202"}'] >= 2
    assert after['nex_http_requests_total{route="/v1/workloads/{id}",method="GET",status="404"}'] == 1
    assert after["nex_http_request_duration_seconds_count"] > before["nex_http_request_duration_seconds_count"]
    buckets = [v for k, v in after.items() if k.startswith("nex_http_request_duration_seconds_bucket")]
    assert buckets == sorted(buckets), "histogram buckets must be cumulative"


def test_metrics_need_read(nexd):
    assert nexd.get("/metrics", auth=None).status_code == 401


def test_health(nexd):
    assert nexd.get("/healthz", auth=None).json() == {"status": "ok"}
    assert nexd.get("/readyz", auth=None).json() == {"status": "ready"}


def test_request_log_and_id(nexd):
    r = nexd.get("/v1/node", headers={"X-Request-Id": "trace-me.42"})
    assert r.headers["X-Request-Id"] == "trace-me.42"
    generated = nexd.get("/v1/node").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", generated)
    odd = nexd.get("/v1/node", headers={"X-Request-Id": "no spaces allowed"}).headers["X-Request-Id"]
    assert odd != "no spaces allowed"
    time.sleep(0.2)
    lines = [json.loads(l) for l in nexd.daemon.log_path.read_text().splitlines() if l.startswith("{")]
    mine = [l for l in lines if l.get("msg") == "request" and l.get("request_id") == "trace-me.42"]
    assert len(mine) == 1
    rec = mine[0]
    assert rec["method"] == "GET" and rec["path"] == "/v1/node" and rec["route"] == "/v1/node"
    assert rec["status"] == 200 and isinstance(rec["ms"], int) and rec["ms"] >= 0 and rec["client"] == "127.0.0.1"
