# SPDX-License-Identifier: Apache-2.0
"""test_nats_restarts.py — nats-server killed and started again 20 times while the node works: nothing is lost.

A workload prints a numbered line every 20 ms for the whole run, workloads are deployed while the server is down,
and a function workload serves requests.  After 20 kill -9 / restart rounds of nats-server (its JetStream store
kept, so a stream captures what the node publishes across the restarts), the capture holds every log line of the
ticker exactly once and in order, every event of the workloads deployed during outages once and in order, and the
function answers again (its subscription came back).  The node's queue is large enough for the outages
(--nats-buffer), so its documented bound (oldest dropped, counted) is never reached: dropped stays 0.

One loss is not the node's: nats-server answers the node's flush (PING/PONG) once it has read a publication,
and its JetStream stream stores it after that (the file store writes in batches); a kill -9 in between loses
it on the server (seen in two CI runs: one tick of 600 each time, with the registry holding all 600).  A line
read during an outage is published after the reconnect, so it can be lost by the next kill, up to an outage and
a bit later.  So a line missing from the capture is accepted only when the node read it within KILL_WINDOW_S
before a kill, at most MAX_SERVER_LOSSES in all, and never after the last kill (the server stays up from then
on); anything else missing, any duplicate and any reordering fails.
"""

import json
import time

from conftest import parse_time
from natsutil import NatsClient, nats_server, node_id, ok_data, start_node, wait_for  # noqa: F401

ROUNDS = 20
TICKS = 600
TICK_MS = 20
KILL_WINDOW_S = 1.5
MAX_SERVER_LOSSES = 3


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
    kills = []
    for i in range(ROUNDS):
        kills.append(time.time())
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
    stored = nex.logs(ticker["id"])["lines"]
    assert [l["text"] for l in stored] == [f"tick {i}" for i in range(TICKS)], "the registry lost or doubled lines"
    assert len(ticks) == len(set(ticks)), "a line was published twice to the capture"
    texts = [l["text"] for l in stored]
    assert ticks == [t for t in texts if t in set(ticks)], "lines reordered across the restarts"
    missing = [l for l in stored if l["text"] not in set(ticks)]
    for line in missing:
        read = parse_time(line["ts"]).timestamp()
        near = [k for k in kills if k - KILL_WINDOW_S <= read <= k + 0.05]
        assert near, f"{line['text']} (read at {line['ts']}) is missing from the capture, and no kill was near it"
    assert len(missing) <= MAX_SERVER_LOSSES, missing
    for wid in during:
        types = [json.loads(m["data"])["type"] for m in msgs
                 if m["subject"].startswith("$NEX.events.") and json.loads(m["data"]).get("subject") == wid]
        assert types == ["workload_deployed", "workload_started", "workload_exited"], (wid, types)
