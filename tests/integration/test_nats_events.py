# SPDX-License-Identifier: Apache-2.0
"""test_nats_events.py — events and log lines on NATS, heartbeats, and a NATS outage survived.

Events must arrive as the same CloudEvents on $NEX.events.<ns>.<type>, in the order they happened; log lines as
{text, stream, level, ts, seq} on $NEX.logs.<ns>.<node>.<name>.<id>, in order, matching what REST serves.  When
nats-server is killed, the node keeps serving REST and queues what it would publish; once the server is back it
reconnects by itself, its control API answers again, and what it queued arrives (checked through a JetStream
stream that outlives the restart).
"""

import json
import time

from conftest import parse_time
from natsutil import NatsClient, nats_server, node_id, ok_data, start_node, wait_for  # noqa: F401


def test_events_and_logs_on_their_subjects_in_order(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    events = c.subscribe("$NEX.events.>")
    logs = c.subscribe("$NEX.logs.>")
    w = nex.deploy_ok(name="hello", namespace="team-a", artifact=nex.program("hello"), argv=["hello", "x"])
    wid = w["id"]
    nex.wait_state(wid, "exited")

    got = events.take(3, predicate=lambda m: json.loads(m["data"]).get("subject") == wid)
    types = [json.loads(m["data"])["type"] for m in got]
    assert types == ["workload_deployed", "workload_started", "workload_exited"]
    for m in got:
        ev = json.loads(m["data"])
        assert m["subject"] == f"$NEX.events.team-a.{ev['type']}"
        assert ev["specversion"] == "1.0" and ev["source"] == f"/nex/nodes/{nid}"
        assert ev["data"]["workload_id"] == wid and ev["data"]["namespace"] == "team-a"
        parse_time(ev["time"])
    assert json.loads(got[2]["data"])["data"]["exit_code"] == 3

    stored = nex.logs(wid)["lines"]
    published = logs.take(len(stored))
    for m in published:
        assert m["subject"] == f"$NEX.logs.team-a.{nid}.hello.{wid}"
    lines = [json.loads(m["data"]) for m in published]
    assert [l["seq"] for l in lines] == [l["seq"] for l in stored] == list(range(1, len(stored) + 1))
    assert [(l["text"], l["stream"]) for l in lines] == [(l["text"], l["stream"]) for l in stored]
    assert {l["level"] for l in lines if l["stream"] == "stderr"} <= {"error"}
    assert {l["level"] for l in lines if l["stream"] == "stdout"} == {"info"}
    for l in lines:
        parse_time(l["ts"])
    events.close()
    logs.close()


def test_heartbeat_and_node_events(request, nats_server):
    c = NatsClient(nats_server.url)
    system = c.subscribe("$NEX.events.system.>")
    nex = start_node(request, nats_server, extra=["--heartbeat-s", "1"])
    nid = node_id(nex)
    started = system.take(1, predicate=lambda m: m["subject"] == "$NEX.events.system.node_started")[0]
    assert json.loads(started["data"])["source"] == f"/nex/nodes/{nid}"
    beats = system.take(2, timeout=10, predicate=lambda m: m["subject"] == "$NEX.events.system.heartbeat")
    d = json.loads(beats[0]["data"])["data"]
    assert d["node_id"] == nid and d["running_workloads"] == 0 and d["public_xkey"].startswith("X")
    nex.stop()
    system.take(1, predicate=lambda m: m["subject"] == "$NEX.events.system.node_stopped")
    system.close()


def test_nats_outage_is_survived(request, nats_server):
    nex = start_node(request, nats_server, extra=["--nats-buffer", "100000"])
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    c.run("stream-add", "CAPTURE", "$NEX.events.>,$NEX.logs.>")
    before = nex.deploy_ok(name="before", artifact=nex.program("hello"))
    nex.wait_state(before["id"], "exited")
    wait_for(lambda: nex.get("/v1/node").json()["nats"]["queued"] == 0, what="the queue to drain")

    nats_server.kill()
    wait_for(lambda: not nex.get("/v1/node").json()["nats"]["connected"], what="the node to notice")
    # REST keeps working; what the node would publish waits in its queue.
    during = nex.deploy_ok(name="during", artifact=nex.program("hello"))
    nex.wait_state(during["id"], "exited")
    status = nex.get("/v1/node").json()["nats"]
    assert status["queued"] >= 3 and status["dropped"] == 0, status

    nats_server.start()
    status = wait_for(lambda: (s := nex.get("/v1/node").json()["nats"])["connected"] and s["queued"] == 0 and s,
                      timeout=20, what="reconnect and flush")
    assert status["reconnects"] >= 1
    # The control API answers again (subscriptions came back).
    assert ok_data(c.request(f"$NEX.PING.{nid}"), "ping")["node_id"] == nid
    # Everything the node reported while disconnected arrived, in order, after the queue was flushed.
    msgs = json.loads(c.run("stream-msgs", "CAPTURE").stdout)
    during_events = [json.loads(m["data"])["type"] for m in msgs
                     if m["subject"].startswith("$NEX.events.") and json.loads(m["data"]).get("subject") == during["id"]]
    assert during_events == ["workload_deployed", "workload_started", "workload_exited"]
    during_logs = [json.loads(m["data"])["text"] for m in msgs if m["subject"].endswith("." + during["id"])]
    assert during_logs == nex.log_texts(during["id"])
    # Nothing stored was lost either.
    assert nex.workload(before["id"])["state"] == "exited"
    assert nex.workload(during["id"])["state"] == "exited"


def test_queue_bound_drops_oldest_and_counts(request, nats_server):
    nex = start_node(request, nats_server, extra=["--nats-buffer", "5"])
    nats_server.kill()
    wait_for(lambda: not nex.get("/v1/node").json()["nats"]["connected"], what="the node to notice")
    w = nex.deploy_ok(name="hello", artifact=nex.program("hello"))
    nex.wait_state(w["id"], "exited")
    status = nex.get("/v1/node").json()["nats"]
    assert status["queued"] == 5
    assert status["dropped"] >= 1
    # Still serving.
    assert nex.get("/v1/workloads").status_code == 200
