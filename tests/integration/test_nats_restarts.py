# SPDX-License-Identifier: Apache-2.0
"""test_nats_restarts.py — nats-server killed and started again 20 times while the node works: nothing is lost.

A workload prints a numbered line every 20 ms for the whole run, workloads are deployed while the server is down,
and a function workload serves requests.  After 20 kill -9 / restart rounds of nats-server (its JetStream store
kept, so a stream captures what the node publishes across the restarts), the capture holds every log line of the
ticker exactly once and in order, every event of the workloads deployed during outages once and in order, and the
function answers again (its subscription came back).  The node's queue is large enough for the outages
(--nats-buffer), so its documented bound (oldest dropped, counted) is never reached: dropped stays 0.
"""

import json
import time

from natsutil import NatsClient, nats_server, node_id, ok_data, start_node, wait_for  # noqa: F401

ROUNDS = 20
TICKS = 600
TICK_MS = 20


def connected(nex):
    return nex.get("/v1/node").json()["nats"]["connected"]


def test_twenty_nats_restarts_lose_nothing(request, nats_server):
    nex = start_node(request, nats_server, extra=["--nats-buffer", "100000"])
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    c.run("stream-add", "CAPTURE", "$NEX.events.>,$NEX.logs.>")
    fn = nex.deploy_ok(name="up", artifact=nex.program("upcase"), type="function", trigger_subjects=["fn.up"])
    nex.wait_state(fn["id"], "running")
    ticker = nex.deploy_ok(name="ticker", artifact=nex.program("probe"), argv=["probe", "tick", str(TICKS),
                                                                               str(TICK_MS)])
    during = []
    for i in range(ROUNDS):
        nats_server.kill()
        wait_for(lambda: not connected(nex), timeout=10, what="the node to notice the outage")
        if i % 4 == 0:
            w = nex.deploy_ok(name=f"during-{i}", artifact=nex.program("hello"))
            nex.wait_state(w["id"], "exited")
            during.append(w["id"])
        time.sleep(0.1)
        nats_server.start()
        wait_for(lambda: connected(nex), timeout=20, what=f"reconnect after restart {i + 1}")
    nex.wait_state(ticker["id"], "exited", timeout=60)
    status = wait_for(lambda: (s := nex.get("/v1/node").json()["nats"])["connected"] and s["queued"] == 0 and s,
                      timeout=20, what="the queue to drain")
    assert status["dropped"] == 0, status
    assert status["reconnects"] >= ROUNDS, status

    # the function's subscription came back
    assert ok_data(c.request(f"$NEX.PING.{nid}"), "ping")["node_id"] == nid
    reply = c.run("request", "fn.up", "hello again").stdout
    assert "HELLO AGAIN" in reply, reply

    msgs = json.loads(c.run("stream-msgs", "CAPTURE").stdout)
    ticks = [json.loads(m["data"])["text"] for m in msgs if m["subject"].endswith("." + ticker["id"])]
    assert ticks == nex.log_texts(ticker["id"]), "log lines lost, duplicated or reordered across the restarts"
    assert len(ticks) == TICKS
    for wid in during:
        types = [json.loads(m["data"])["type"] for m in msgs
                 if m["subject"].startswith("$NEX.events.") and json.loads(m["data"]).get("subject") == wid]
        assert types == ["workload_deployed", "workload_started", "workload_exited"], (wid, types)
