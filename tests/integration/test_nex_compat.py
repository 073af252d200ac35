# SPDX-License-Identifier: Apache-2.0
"""test_nex_compat.py — nex's own clients work unchanged: nats.js sends exactly what nex's CLI (v0.3) sends.

tests/integration/nex-cli.mjs rebuilds `nex run`, `nex stop` and `nex devrun` step by step from nex's Go code
(info for the node's xkey, the object's digest, the sealed environment, the workload JWT, the DeployRequest as
encoding/json writes it, with `location` as Go's url.URL fields) and reads the replies as nex's client does.
The workload must receive nex's argv (the arguments after an argv[0] the node supplies) and the sealed
environment with nex's upper-cased names; the record shows what ran.  The raw-request tests cover the field
rules of ARCHITECTURE.md's "nex compatibility" table that the CLI does not reach.
"""

import json
import subprocess

from conftest import REPO, file_sha256, program_path
from natsutil import NatsClient, error_text, keypair, nats_server, node_id, ok_data, start_node  # noqa: F401

NEX_CLI = REPO / "tests" / "integration" / "nex-cli.mjs"


def nex_cli(server, command, **options):
    r = subprocess.run(["node", str(NEX_CLI), server.url, command, json.dumps(options)], capture_output=True,
                       text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def keys(c):
    return keypair(c, "account"), keypair(c, "curve")


def test_nex_run_arguments_environment_and_replies(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    c.run("obj-put", "apps", "hello", program_path("hello"))
    issuer, publisher = keys(c)
    logs = c.subscribe("$NEX.logs.>")
    out = nex_cli(nats_server, "run", node=nid, url="nats://apps/hello", name="web", argv="--port 80",
                  env={"greeting": "hi there"}, issuer_seed=issuer["seed"], publisher_seed=publisher["seed"])
    assert "error" not in out, out
    # What went over the wire is nex's request, not ours: nex's names, url.URL fields, a sealed environment.
    info_req, deploy = out["sent"]
    assert info_req == {"subject": f"$NEX.INFO.default.{nid}", "body": None}
    body = deploy["body"]
    assert deploy["subject"] == f"$NEX.DEPLOY.default.{nid}"
    assert body["argv"] == ["--port", "80"]
    assert body["location"]["Scheme"] == "nats" and body["location"]["Host"] == "apps"
    assert body["location"]["Path"] == "/hello" and body["location"]["User"] is None
    assert body["hash"] == file_sha256(program_path("hello")) and body["essential"] is False
    assert "env" not in body and "name" not in body and "namespace" not in body
    # The reply, as nex's client decodes it (RunResponse), and its envelope.
    assert out["reply"]["type"] == "io.nats.nex.v1.run_response" and out["reply"].get("error") is None
    run = out["response"]
    assert run["started"] is True and run["name"] == "web" and run["issuer"] == issuer["public"]
    w = nex.wait_state(run["id"], "exited")
    stdout = nex.log_texts(run["id"], "stdout")
    # nex's argv are the arguments; the node supplies argv[0] (the name) and the record shows the vector.
    assert "argv: web --port 80" in stdout, stdout
    assert w["argv"] == ["web", "--port", "80"]
    # nex's agent upper-cases the environment's names: `greeting` arrives as GREETING.
    assert "greeting: hi there" in stdout, stdout
    assert w["env"] == {} and w["digest"] == file_sha256(program_path("hello"))
    assert w["artifact"] == "nats://apps/hello" and w["exit_code"] == 3
    # `nex logs` (Client.MonitorLogs) takes only 6-token subjects and decodes {text, level (a slog.Level name,
    # read case-insensitively), id}.
    line = logs.take(1, predicate=lambda m: "argv:" in m["data"])[0]
    logs.close()
    tokens = line["subject"].split(".")
    assert len(tokens) == 6 and tokens[2:4] == ["default", nid] and tokens[5] == run["id"], line
    entry = json.loads(line["data"])
    assert entry["text"] == "argv: web --port 80" and entry["level"].upper() in ("DEBUG", "INFO", "WARN", "ERROR")


def test_nex_stop_and_essential(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    c.run("obj-put", "apps", "sleeper", program_path("sleeper"))
    issuer, publisher = keys(c)
    out = nex_cli(nats_server, "run", node=nid, url="nats://apps/sleeper", name="svc", essential=True,
                  issuer_seed=issuer["seed"], publisher_seed=publisher["seed"])
    assert "error" not in out, out
    assert "argv" not in out["sent"][1]["body"]  # no --argv: nex sends none (omitempty)
    wid = out["response"]["id"]
    w = nex.wait_state(wid, "running")
    # essential is nex's on-failure restart policy; nex's info summary says so.
    assert w["restart_policy"] == "on-failure" and w["argv"] == ["svc"]
    machine = ok_data(c.request(f"$NEX.INFO.default.{nid}"), "info")["machines"][0]
    assert machine["id"] == wid and machine["workload"]["essential"] is True
    # Another issuer may not stop it; nex's stop (node_id, a JWT whose subject is the workload id) may.
    stranger = keypair(c, "account")
    out = nex_cli(nats_server, "stop", node=nid, workload_id=wid, issuer_seed=stranger["seed"])
    assert "issuer" in out["error"], out
    assert nex.workload(wid)["state"] == "running"
    out = nex_cli(nats_server, "stop", node=nid, workload_id=wid, issuer_seed=issuer["seed"])
    assert out["sent"][0]["body"]["node_id"] == nid
    assert out["response"] == {"id": wid, "issuer": issuer["public"], "stopped": True}, out
    assert out["reply"]["type"] == "io.nats.nex.v1.stop_response"
    nex.wait_state(wid, "stopped", timeout=15)


def test_nex_devrun_is_refused_for_its_placeholder_hash(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    issuer, publisher = keys(c)
    out = nex_cli(nats_server, "devrun", file=str(program_path("hello")), argv="a b",
                  issuer_seed=issuer["seed"], publisher_seed=publisher["seed"])
    # The auction found this node (nex's arch/os/type names match) and info answered...
    auction, info_req, deploy = out["sent"]
    assert auction["body"] == {"arch": "amd64", "os": "linux", "workload_types": ["native"]}
    assert info_req["subject"] == f"$NEX.INFO.default.{nid}"
    # ...but devrun's hash is a placeholder ("abc12345TODOmakethisreal"), which this node checks and refuses.
    assert deploy["body"]["hash"] == "abc12345TODOmakethisreal"
    assert out["reply"]["type"] == "io.nats.nex.v1.run_response"
    assert "hash" in out["error"] and "64 hex" in out["error"], out
    assert nex.workloads()["workloads"] == []


def test_nex_field_rules_on_raw_requests(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    subject = f"$NEX.DEPLOY.default.{nid}"
    hello = nex.program("hello")
    url = {"Scheme": "file", "Opaque": "", "User": None, "Host": "", "Path": hello[len("file://"):], "RawPath": "",
           "OmitHost": False, "ForceQuery": False, "RawQuery": "", "Fragment": "", "RawFragment": ""}
    # A file:// location as url.URL fields; retry_count/retried_at (nex's re-deploy bookkeeping) are accepted.
    d = ok_data(c.request(subject, {"workload_name": "fields", "location": url, "argv": ["x"], "retry_count": 2,
                                    "retried_at": "2024-10-16T20:14:51Z", "id": "client-id", "jsdomain": None}),
                "run")
    w = nex.wait_state(d["id"], "exited")
    assert w["artifact"] == hello and w["argv"] == ["fields", "x"]
    cases = [
        ({"location": dict(url, User={})}, "user information"),
        ({"location": dict(url, Bogus="")}, "Bogus"),
        ({"location": dict(url, Scheme=7)}, "Scheme"),
        ({"location": url, "jsdomain": "hub"}, "jsdomain"),
        ({"location": url, "host_services_config": {"nats_url": "nats://x"}}, "host_services_config"),
        ({"location": url, "argv": ["a"], "args": ["b"]}, "not both"),
        ({"location": url, "argv": "a"}, "args"),
    ]
    for extra, expect in cases:
        msg = error_text(c.request(subject, dict({"workload_name": "bad"}, **extra)), "run")
        assert expect in msg, (extra, msg)
    # Sealed names equal but for case would be one variable once upper-cased: refused.
    sender = keypair(c, "curve")
    xkey = nex.get("/v1/node").json()["public_xkey"]
    sealed = c.run("seal", sender["seed"], xkey, json.dumps({"path": "a", "PATH": "b"})).stdout.strip()
    msg = error_text(c.request(subject, {"workload_name": "bad", "location": url, "environment": sealed,
                                         "sender_public_key": sender["public"]}), "run")
    assert "PATH" in msg and "upper-cased" in msg, msg
    # Stop names its node as node_id (nex 0.3) or target_node (0.2); another node is refused either way.
    for key in ("node_id", "target_node"):
        assert "not this node" in error_text(c.request(f"$NEX.STOP.default.{nid}", {"workload_id": d["id"],
                                                                                   key: "NOTME"}), "stop")
    assert [x["id"] for x in nex.workloads()["workloads"]] == [d["id"]]
