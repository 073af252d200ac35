# SPDX-License-Identifier: Apache-2.0
"""test_scale.py — a node with many stored workloads and many log tails (the figures are in tests/bench/scale-bench;
these tests check what must hold, not how fast).

Many workloads: tests/tools/registry-fill stores ended workloads through the registry's own insert code; a real
nexd serves the file, and GET /v1/workloads read a page at a time must give every workload once, in order, with and
without filters, and the list query must walk the keyset index (checked with EXPLAIN QUERY PLAN on the same file).
Many tails: 200 websocket tails of a chatty workload, a tenth of them never read; every reading tail gets lines,
the API answers throughout, and what the slow ones could not take is dropped and counted, not waited for.
"""

import base64
import os
import selectors
import socket
import sqlite3
import subprocess
import time

import pytest

from conftest import build_dir, make_nex, finish_nex, skip_reason, start_test_nex, finish_test_nex
from test_contract import check


def fill(db_path, n):
    tool = build_dir() / "tests" / "tools" / "registry-fill"
    r = subprocess.run([str(tool), str(db_path), str(n)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == str(n), r.stderr


def list_all(nexd, limit, **params):
    out, cursor, pages = [], None, 0
    while True:
        p = dict(params, limit=limit)
        if cursor:
            p["cursor"] = cursor
        page = check(nexd.get("/v1/workloads", params=p), "get", "/v1/workloads")
        pages += 1
        assert page["count"] == len(page["workloads"]) <= limit
        out += page["workloads"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return out, pages, cursor


@pytest.fixture
def filled(request):
    if skip_reason():
        pytest.skip(skip_reason())
    nex = make_nex(f"test_scale.{request.node.name}")
    fill(nex.data_dir / "registry.db", 5000)
    nex.start()
    yield nex
    rep = getattr(request.node, "rep_call", None)
    finish_nex(nex, passed=rep is not None and rep.passed)


def test_pages_of_many_workloads(filled):
    nex = filled
    everything, pages, end = list_all(nex, 100)
    assert len(everything) == 5000 and pages == 50
    assert len({w["id"] for w in everything}) == 5000
    keys = [(w["created_at"], w["id"]) for w in everything]
    assert keys == sorted(keys)
    assert all(w["state"] == "exited" and w["exit_code"] == 0 for w in everything)
    # The default page (1000) joins up the same way.
    assert [w["id"] for w in list_all(nex, 1000)[0]] == [w["id"] for w in everything]
    # Filters page on the namespace index, and labels on top of it.
    b, _, _ = list_all(nex, 100, namespace="fill-b")
    assert len(b) == 500 and all(w["namespace"] == "fill-b" for w in b)
    assert [w["id"] for w in b] == [w["id"] for w in everything if w["namespace"] == "fill-b"]
    batch, _, _ = list_all(nex, 64, label="batch=3", namespace="fill")
    assert len(batch) == 900 and all(w["labels"] == {"batch": "3"} for w in batch)
    # Every filter at once (the most parameters the query binds): a token limited to namespaces, a namespace, a
    # state, a cursor and 8 label conditions.
    t = check(nex.post("/v1/tokens", json={"name": "ns", "scopes": ["read"], "namespaces": ["fill", "x"]}), "post",
              "/v1/tokens")["token"]
    labels = ["batch=4"] + [f"k{i}" for i in range(7)]
    page = check(nex.get("/v1/workloads", auth=t, params={"namespace": "fill", "state": "exited", "label": labels,
                                                          "cursor": end, "limit": 10}), "get", "/v1/workloads")
    assert page["count"] == 0 and not page["has_more"]
    page = check(nex.get("/v1/workloads", auth=t, params={"namespace": "fill", "state": "exited",
                                                          "label": ["batch=4"] * 8, "limit": 1000}),
                 "get", "/v1/workloads")
    assert page["count"] == 900
    # A new workload is listed after the last page's cursor, alone.
    w = nex.deploy_ok(name="new", artifact=nex.program("hello"))
    page = check(nex.get("/v1/workloads", params={"cursor": end}), "get", "/v1/workloads")
    assert [x["id"] for x in page["workloads"]] == [w["id"]] and not page["has_more"]


def test_list_query_walks_the_index(filled):
    db = sqlite3.connect(f"file:{filled.data_dir / 'registry.db'}?mode=ro", uri=True)
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"workloads_created", "workloads_namespace_created", "workloads_finished", "events_time"} <= names
    # The registry's query forms (registry.c, nex_registry_workload_list): no sort of the whole table, a range
    # from the cursor.
    for sql, args in (("SELECT id FROM workloads WHERE 1 AND (created_at, id) > (?1, ?2) ORDER BY created_at, id "
                       "LIMIT ?3", (5, "x", 101)),
                      ("SELECT id FROM workloads WHERE 1 AND namespace = ?1 AND (created_at, id) > (?2, ?3) "
                       "ORDER BY created_at, id LIMIT ?4", ("fill", 5, "x", 101))):
        plan = " / ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "TEMP B-TREE" not in plan and "(created_at,id)>(?,?)" in plan, plan


def open_tail(port, token, wid, slow):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if slow:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # as a remote client's: see scale-bench
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/workloads/{wid}/logs?follow=1&tail=10 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    s.setblocking(False)
    return s, head.split(b"\r\n\r\n", 1)[1]


def metric(nex, name):
    for line in nex.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_many_tails_of_a_chatty_workload(request):
    nex = start_test_nex(request, ["--max-connections", "2000", "--max-connections-per-ip", "1000"])
    try:
        # Lines of 1000 bytes a millisecond: a slow client's buffers fill within a second.
        w = nex.deploy_ok(name="chatty", artifact=nex.program("chatter"), argv=["chatter", "0", "1", "1000"])
        nex.wait_state(w["id"], {"running"})
        dropped0 = metric(nex, "nex_websocket_messages_dropped_total")
        n = 200
        socks = [open_tail(nex.daemon.port, nex.token, w["id"], slow=i % 10 == 9) for i in range(n)]
        sel = selectors.DefaultSelector()
        got = {}
        for i, (s, rest) in enumerate(socks):
            if i % 10 != 9:
                sel.register(s, selectors.EVENT_READ, i)
                got[i] = rest.count(b'"seq":')
        end = time.monotonic() + 6
        probes = []
        next_probe = 0
        while time.monotonic() < end:
            if time.monotonic() >= next_probe:
                probes.append((nex.get("/healthz").status_code, nex.get("/v1/node").status_code))
                next_probe = time.monotonic() + 0.1
            for key, _ in sel.select(timeout=0.05):
                try:
                    data = key.fileobj.recv(1 << 16)
                except BlockingIOError:
                    continue
                assert data, f"tail {key.data} was closed by nexd"
                got[key.data] += data.count(b'"seq":')
        assert metric(nex, "nex_websocket_clients") == n
        assert len(probes) >= 10 and all(p == (200, 200) for p in probes), probes
        starved = [i for i, c in got.items() if c == 0]
        assert not starved, f"{len(starved)} of {len(got)} reading tails got no line"
        assert metric(nex, "nex_websocket_messages_dropped_total") > dropped0, "the slow tails' backlog was dropped"
        for s, _ in socks:
            s.close()
        nex.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 0})
    finally:
        finish_test_nex(request, nex)
