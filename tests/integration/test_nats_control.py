# SPDX-License-Identifier: Apache-2.0
"""test_nats_control.py — nex's control API over a real nats-server, driven by nats.js (an independent client).

Identity (the node id is a server nkey that nkeys.js derives from the stored seed), ping/info/deploy/stop/
workload-ping/auction/lame-duck round trips, error replies for bad requests (and nothing stored), and two nodes
on one NATS system answering as themselves.
"""

import json
import re
import subprocess
import time

from conftest import program_path
from natsutil import (NatsClient, NatsServer, error_text, nats_server, node_id, ok_data, start_node,  # noqa: F401
                      wait_for)

NKEY_SERVER = re.compile(r"^N[A-Z2-7]{55}$")
NKEY_CURVE = re.compile(r"^X[A-Z2-7]{55}$")


def test_identity_is_an_nkey_nkeys_js_agrees_with(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    assert NKEY_SERVER.match(nid), nid
    ident = json.loads((nex.data_dir / "identity.json").read_text())
    assert (nex.data_dir / "identity.json").stat().st_mode & 0o077 == 0
    c = NatsClient(nats_server.url)
    # nkeys.js decodes our seeds (base32 + CRC16) and derives the same public keys.
    assert c.run("nkey-public", ident["node_seed"]).stdout.strip() == nid
    xkey = nex.get("/v1/node").json()["public_xkey"]
    assert NKEY_CURVE.match(xkey)
    # The id survives a restart of nexd.
    nex.restart()
    assert node_id(nex) == nid


def test_ping_and_info(request, nats_server):
    nex = start_node(request, nats_server, extra=["--tags", "zone=west,tier=gold"])
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    replies = c.collect("$NEX.PING")
    assert len(replies) == 1
    d = ok_data(replies[0], "ping")
    assert d["node_id"] == nid
    assert d["version"] == nex.get("/v1/node").json()["version"]
    assert re.match(r"^\d+[smhdy]", d["uptime"])
    assert d["running_machines"] == 0
    assert d["tags"]["zone"] == "west" and d["tags"]["tier"] == "gold" and d["tags"]["nex.os"] == "linux"
    assert NKEY_CURVE.match(d["target_xkey"])

    d = ok_data(c.request(f"$NEX.PING.{nid}"), "ping")
    assert d["node_id"] == nid

    info = ok_data(c.request(f"$NEX.INFO.default.{nid}"), "info")
    assert info["public_xkey"] == d["target_xkey"]
    assert info["machines"] == []
    assert info["memory"]["total"] > 0
    assert "native" in info["supported_workload_types"]
    assert info["tags"]["zone"] == "west"


def test_deploy_info_wping_stop(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    # nex's field names (workload_name, location) are accepted beside the REST ones.
    env = c.request(f"$NEX.DEPLOY.blue.{nid}", {"workload_name": "sleepy", "location": nex.program("sleeper"),
                                               "argv": ["60"], "target_node": nid})
    d = ok_data(env, "run")
    assert d["started"] is True and d["name"] == "sleepy" and d["namespace"] == "blue"
    wid = d["id"]
    w = nex.wait_state(wid, "running")
    assert w["namespace"] == "blue" and w["artifact"] == nex.program("sleeper")

    info = ok_data(c.request(f"$NEX.INFO.blue.{nid}"), "info")
    assert [m["id"] for m in info["machines"]] == [wid]
    assert info["machines"][0]["workload"]["name"] == "sleepy"
    assert info["machines"][0]["healthy"] is True
    assert ok_data(c.request(f"$NEX.INFO.default.{nid}"), "info")["machines"] == []
    assert ok_data(c.collect("$NEX.PING")[0], "ping")["running_machines"] == 1

    # Workload ping: only nodes running a match answer.
    hits = c.collect("$NEX.WPING.blue")
    assert len(hits) == 1
    assert ok_data(hits[0], "ping")["running_machines"] == [
        {"id": wid, "namespace": "blue", "name": "sleepy", "type": "native"}]
    assert len(c.collect(f"$NEX.WPING.blue.{wid}")) == 1
    assert len(c.collect("$NEX.WPING.blue.sleepy")) == 1
    assert c.collect("$NEX.WPING.green") == []
    assert c.collect("$NEX.WPING.blue.nothere") == []

    # Stop: another namespace is told "no such workload" (ids cannot be probed across namespaces).
    assert "no such workload" in error_text(c.request(f"$NEX.STOP.green.{nid}", {"workload_id": wid}), "stop")
    assert nex.workload(wid)["state"] == "running"
    d = ok_data(c.request(f"$NEX.STOP.blue.{nid}", {"workload_id": wid, "grace_s": 1}), "stop")
    assert d["stopped"] is True and d["id"] == wid
    nex.wait_state(wid, "stopped", timeout=15)
    assert "already ended" in error_text(c.request(f"$NEX.STOP.blue.{nid}", {"workload_id": wid}), "stop")
    assert c.collect("$NEX.WPING.blue") == []


def test_bad_requests_get_error_replies_and_store_nothing(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    subject = f"$NEX.DEPLOY.default.{nid}"
    hello = nex.program("hello")
    cases = [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("", "not valid JSON"),
        (json.dumps({"artifact": hello}), "name"),
        (json.dumps({"name": "x", "artifact": hello, "bogus": 1}), "bogus"),
        (json.dumps({"name": "x", "artifact": hello, "target_node": "NOTME"}), "target_node"),
        (json.dumps({"name": "x", "artifact": hello, "namespace": "other"}), "namespace"),
        (json.dumps({"name": "x", "artifact": hello, "type": "v8"}), "type"),
        (json.dumps({"name": "x", "location": hello, "artifact": hello}), "not both"),
        (json.dumps({"name": "x", "artifact": "file:///nonexistent/prog"}), "artifact"),
        (json.dumps({"name": "x", "artifact": "gopher://x/y"}), "scheme"),
        (json.dumps({"name": "x" * 200, "artifact": hello}), "name"),
    ]
    for body, expect in cases:
        msg = error_text(c.request(subject, body), "run")
        assert expect in msg, (body, msg)
    for body in ["{bad", "[]", json.dumps({"nope": 1}), json.dumps({"workload_id": 5})]:
        error_text(c.request(f"$NEX.STOP.default.{nid}", body), "stop")
    # The node is fine and stored nothing.
    assert ok_data(c.request(f"$NEX.PING.{nid}"), "ping")["node_id"] == nid
    assert nex.workloads()["workloads"] == []


def test_auction_answers_only_when_matching(request, nats_server):
    nex = start_node(request, nats_server, extra=["--tags", "zone=west"])
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    bids = c.collect("$NEX.AUCTION", {"os": "linux", "tags": {"zone": "west"}, "workload_types": ["native"]})
    assert [ok_data(b, "auction")["node_id"] for b in bids] == [nid]
    assert len(c.collect("$NEX.AUCTION", "")) == 1
    assert c.collect("$NEX.AUCTION", {"tags": {"zone": "east"}}) == []
    assert c.collect("$NEX.AUCTION", {"arch": "sparc64"}) == []
    assert c.collect("$NEX.AUCTION", {"os": "windows"}) == []
    assert c.collect("$NEX.AUCTION", {"workload_types": ["wasm"]}) == []


def test_two_nodes_one_nats(request, nats_server):
    a = start_node(request, nats_server, name="a")
    b = start_node(request, nats_server, name="b")
    ida, idb = node_id(a), node_id(b)
    assert ida != idb
    c = NatsClient(nats_server.url)
    ids = sorted(ok_data(r, "ping")["node_id"] for r in c.collect("$NEX.PING"))
    assert ids == sorted([ida, idb])
    d = ok_data(c.request(f"$NEX.DEPLOY.default.{idb}", {"name": "hello", "artifact": b.program("hello")}), "run")
    b.wait_state(d["id"], "exited")
    assert [w["id"] for w in b.workloads()["workloads"]] == [d["id"]]
    assert a.workloads()["workloads"] == []
    assert ok_data(c.request(f"$NEX.PING.{ida}"), "ping")["node_id"] == ida


def test_lameduck_drains_and_exits(request, nats_server):
    # A workload that ignores SIGTERM keeps the drain going for the 3 s grace, long enough to try deploys.
    nex = start_node(request, nats_server, extra=["--stop-grace-s", "3"])
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    events = c.subscribe("$NEX.events.system.>")
    s = nex.deploy_ok(name="sleeper", artifact=nex.program("sleeper"), argv=["sleeper", "--ignore-term"])
    nex.wait_state(s["id"], "running")
    d = ok_data(c.request(f"$NEX.LAMEDUCK.{nid}"), "lameduck")
    assert d == {"node_id": nid, "success": True}
    ev = events.take(1, predicate=lambda m: m["subject"].endswith(".node_entered_lameduck"))[0]
    assert json.loads(ev["data"])["source"] == f"/nex/nodes/{nid}"
    # No more deploys, through either door, while it drains.
    r = nex.deploy(name="late", artifact=nex.program("hello"))
    assert r.status_code == 503, r.text
    assert "lame duck" in r.json()["detail"]
    assert "lame duck" in error_text(c.request(f"$NEX.DEPLOY.default.{nid}", {"name": "late",
                                                                              "artifact": nex.program("hello")}),
                                     "run")
    # It stops its workloads and exits 0 on its own.
    rc = nex.daemon.proc.wait(timeout=30)
    assert rc == 0
    nex.daemon.returncode = rc
    stopped = events.take(1, predicate=lambda m: m["subject"].endswith(".node_stopped"))[0]
    assert json.loads(stopped["data"])["type"] == "node_stopped"
    events.close()
    # The sleeper was stopped (not abandoned): the registry says so after a restart.
    nex.extra_args = []
    nex.start()
    assert nex.workload(s["id"])["state"] == "stopped"


def test_password_auth_and_no_credentials_shown(request, tmp_path):
    import conftest
    import natsutil
    reason = natsutil.skip_reason() or conftest.skip_reason()
    if reason:
        import pytest
        pytest.skip(reason)
    server = NatsServer(tmp_path, args=["--user", "nexnode", "--pass", "pw-s3cret"]).start()
    request.addfinalizer(server.stop)
    # A server that refuses the credentials is a configuration error: nexd says so and does not start.
    r = subprocess.run([str(conftest.build_dir() / "nexd"), "--listen", f"127.0.0.1:{conftest.free_port()}",
                        "--data-dir", str(tmp_path / "bad"), "--nats", server.url, "--nats-user", "nexnode",
                        "--nats-password", "wrong"], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "cannot connect to NATS" in r.stderr and "uthorization" in r.stderr, r.stderr
    assert "wrong" not in r.stderr
    # Right ones, as flags or inside the URL.
    good = start_node(request, server, name="good", extra=["--nats-user", "nexnode", "--nats-password", "pw-s3cret"])
    secret_url = f"nats://nexnode:pw-s3cret@127.0.0.1:{server.port}"
    in_url = start_node(request, server, name="url", extra=["--nats", secret_url])  # the last --nats wins
    c = NatsClient(secret_url)
    ids = {ok_data(r, "ping")["node_id"] for r in c.collect("$NEX.PING")}
    assert ids == {node_id(good), node_id(in_url)}
    assert in_url.get("/v1/node").json()["nats"]["url"] == f"nats://127.0.0.1:{server.port}"
    for n in (good, in_url):
        text = n.get("/v1/node").text
        assert "pw-s3cret" not in text and "wrong" not in text


def test_nkey_auth(request, tmp_path):
    import conftest
    import natsutil
    reason = natsutil.skip_reason() or conftest.skip_reason()
    if reason:
        import pytest
        pytest.skip(reason)
    c = NatsClient("-")
    user = json.loads(c.run("user").stdout)
    conf = tmp_path / "nats.conf"
    conf.write_text("authorization { users = [ { nkey: %s } ] }\n" % user["public"])
    server = NatsServer(tmp_path, args=["-c", str(conf)]).start()
    request.addfinalizer(server.stop)
    seed = tmp_path / "user.nk"
    seed.write_text(user["seed"] + "\n")
    seed.chmod(0o600)
    # nexd derives the public key from the seed (server/nats/nkeys.c) and signs the server's nonce with it (nats.c).
    nex = start_node(request, server, extra=["--nats-nkey", str(seed)])
    status = nex.get("/v1/node").json()["nats"]
    assert status["connected"] is True
    assert user["seed"] not in nex.daemon.log_path.read_text()
