# SPDX-License-Identifier: Apache-2.0
"""test_nats_secure.py — secure launches: environments sealed to the node's xkey, workload JWTs, fresh-JWT stops.

Keys, sealed boxes and JWTs are made by nkeys.js (an independent implementation): a curve key seals the
environment to the node's public xkey (nkeys' xkv1 format); an account key signs JWTs whose claims carry the
artifact's SHA-256.  The secret must reach the workload (it prints a hash of it) and appear nowhere the node
writes: not in the SQLite files, not in nexd's log, not in any reply.
"""

import json
import time
import uuid

from conftest import file_sha256, program_path
from natsutil import NatsClient, error_text, keypair, nats_server, node_id, ok_data, start_node  # noqa: F401


def fnv1a(text):
    h = 2166136261
    for b in text.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return f"{h:08x}"


def make_jwt(c, issuer, sub="app", hash_=None, jti=None, **extra):
    claims = {"jti": jti or uuid.uuid4().hex, "iat": int(time.time()), "sub": sub, "nats": {}}
    if hash_:
        claims["nats"]["hash"] = hash_
    claims.update(extra)
    return c.run("jwt", issuer["seed"], json.dumps(claims)).stdout.strip()


def all_bytes_under(path):
    data = b""
    for p in path.rglob("*"):
        if p.is_file():
            data += p.read_bytes()
    return data


def test_sealed_environment_reaches_the_workload_and_nothing_else(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    xkey = nex.get("/v1/node").json()["public_xkey"]
    sender = keypair(c, "curve")
    secret = "s3cret-" + uuid.uuid4().hex
    sealed = c.run("seal", sender["seed"], xkey, json.dumps({"SECRET": secret})).stdout.strip()

    d = ok_data(c.request(f"$NEX.DEPLOY.default.{nid}", {
        "name": "envcheck", "artifact": nex.program("envcheck"), "env": {"PLAIN": "visible"},
        "environment": sealed, "sender_public_key": sender["public"]}), "run")
    w = nex.wait_state(d["id"], "exited")
    assert w["exit_code"] == 0
    texts = nex.log_texts(d["id"])
    assert f"SECRET length: {len(secret)}" in texts
    assert f"SECRET fnv1a: {fnv1a(secret)}" in texts
    assert w["env"] == {"PLAIN": "visible"}  # the stored env holds no secret

    # The same over REST.
    w2 = nex.deploy_ok(name="envcheck2", artifact=nex.program("envcheck"), environment=sealed,
                       sender_public_key=sender["public"])
    nex.wait_state(w2["id"], "exited")
    assert f"SECRET fnv1a: {fnv1a(secret)}" in nex.log_texts(w2["id"])

    nex.stop()
    assert secret.encode() not in all_bytes_under(nex.data_dir)
    assert secret not in nex.daemon.log_path.read_text()


def test_bad_sealed_environments_are_refused(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    sender, other = keypair(c, "curve"), keypair(c, "curve")
    # Sealed to another recipient: the node cannot open it.
    wrong = c.run("seal", sender["seed"], other["public"], json.dumps({"A": "b"})).stdout.strip()
    good_xkey = nex.get("/v1/node").json()["public_xkey"]
    not_object = c.run("seal", sender["seed"], good_xkey, "[1]").stdout.strip()
    subject = f"$NEX.DEPLOY.default.{nid}"
    base = {"name": "e", "artifact": nex.program("envcheck")}
    assert "environment" in error_text(c.request(subject, dict(base, environment=wrong,
                                                               sender_public_key=sender["public"])), "run")
    assert "sender_public_key" in error_text(c.request(subject, dict(base, environment=wrong)), "run")
    assert "environment" in error_text(c.request(subject, dict(base, environment="%%%",
                                                               sender_public_key=sender["public"])), "run")
    assert "JSON object" in error_text(c.request(subject, dict(base, environment=not_object,
                                                               sender_public_key=sender["public"])), "run")
    assert "curve" in error_text(c.request(subject, dict(base, environment=wrong, sender_public_key=nid)), "run")
    assert nex.workloads()["workloads"] == []


def test_workload_jwt_checks(request, nats_server):
    c = NatsClient(nats_server.url)
    issuer, stranger = keypair(c, "account"), keypair(c, "account")
    nex = start_node(request, nats_server, extra=["--valid-issuers", issuer["public"]])
    nid = node_id(nex)
    subject = f"$NEX.DEPLOY.default.{nid}"
    hello_hash = file_sha256(program_path("hello"))
    base = {"name": "hello", "artifact": nex.program("hello")}

    # Good: signature, issuer and hash all check out.
    d = ok_data(c.request(subject, dict(base, workload_jwt=make_jwt(c, issuer, hash_=hello_hash))), "run")
    assert d["issuer"] == issuer["public"]
    assert nex.wait_state(d["id"], "exited")["exit_code"] == 3

    # Without a JWT, on a node with valid issuers.
    assert "workload_jwt" in error_text(c.request(subject, base), "run")
    # Bad signature: claims altered after signing.
    good = make_jwt(c, issuer, hash_=hello_hash)
    h, claims, sig = good.split(".")
    forged_claims = make_jwt(c, issuer, hash_=file_sha256(program_path("sleeper"))).split(".")[1]
    assert "signature" in error_text(c.request(subject, dict(base, workload_jwt=f"{h}.{forged_claims}.{sig}")),
                                     "run")
    # Signed by a stranger claiming to be the issuer.
    impostor = make_jwt(c, stranger, hash_=hello_hash, iss=issuer["public"])
    assert "signature" in error_text(c.request(subject, dict(base, workload_jwt=impostor)), "run")
    # A well-signed JWT from an issuer the node does not accept.
    assert "valid issuers" in error_text(c.request(subject, dict(base, workload_jwt=make_jwt(c, stranger,
                                                                                             hash_=hello_hash))),
                                         "run")
    # Expired; no hash; garbage.
    assert "expired" in error_text(c.request(subject, dict(base, workload_jwt=make_jwt(
        c, issuer, hash_=hello_hash, exp=int(time.time()) - 10))), "run")
    assert "hash" in error_text(c.request(subject, dict(base, workload_jwt=make_jwt(c, issuer))), "run")
    assert "JWT" in error_text(c.request(subject, dict(base, workload_jwt="not-a-jwt")), "run")
    # The same JWT twice: the second use is a replay.
    once = make_jwt(c, issuer, hash_=hello_hash)
    ok_data(c.request(subject, dict(base, workload_jwt=once)), "run")
    assert "replay" in error_text(c.request(subject, dict(base, workload_jwt=once)), "run")

    # Hash mismatch: the JWT vouches for the sleeper, the artifact is hello.  The node compares what it fetched.
    d = ok_data(c.request(subject, dict(base, workload_jwt=make_jwt(
        c, issuer, hash_=file_sha256(program_path("sleeper"))))), "run")
    w = nex.wait_state(d["id"], "failed")
    assert "hash mismatch" in w["reason"]
    assert nex.logs(d["id"])["lines"] == []  # it never ran
    # ... and a request naming another sha256 than its JWT is refused at once.
    assert "hash" in error_text(c.request(subject, dict(base, sha256=file_sha256(program_path("sleeper")),
                                                        workload_jwt=make_jwt(c, issuer, hash_=hello_hash))), "run")


def test_stop_needs_a_fresh_jwt_from_the_same_issuer(request, nats_server):
    c = NatsClient(nats_server.url)
    issuer, stranger = keypair(c, "account"), keypair(c, "account")
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    start_jwt = make_jwt(c, issuer, sub="sleepy", hash_=file_sha256(program_path("sleeper")))
    d = ok_data(c.request(f"$NEX.DEPLOY.default.{nid}", {"name": "sleepy", "artifact": nex.program("sleeper"),
                                                        "workload_jwt": start_jwt}), "run")
    wid = d["id"]
    nex.wait_state(wid, "running")
    stop = f"$NEX.STOP.default.{nid}"
    assert "fresh" in error_text(c.request(stop, {"workload_id": wid}), "stop")
    assert "replay" in error_text(c.request(stop, {"workload_id": wid, "workload_jwt": start_jwt}), "stop")
    assert "issuer" in error_text(c.request(stop, {"workload_id": wid, "workload_jwt": make_jwt(c, stranger,
                                                                                                 sub="sleepy")}),
                                  "stop")
    # REST is held to the same rule.
    r = nex.delete(f"/v1/workloads/{wid}")
    assert r.status_code == 422 and "fresh" in r.json()["detail"]
    r = nex.delete(f"/v1/workloads/{wid}", headers={"Nex-Workload-Jwt": start_jwt})
    assert r.status_code == 409 and "replay" in r.json()["detail"]
    assert nex.workload(wid)["state"] == "running"

    fresh = make_jwt(c, issuer, sub="sleepy")
    assert ok_data(c.request(stop, {"workload_id": wid, "workload_jwt": fresh, "grace_s": 1}),
                   "stop")["issuer"] == issuer["public"]
    nex.wait_state(wid, "stopped")


def test_reserved_trigger_subjects_are_refused(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    subject = f"$NEX.DEPLOY.default.{nid}"
    base = {"name": "f", "artifact": nex.program("hello")}
    for trig in ["$SYS.REQ.SERVER.PING", "$JS.API.>", "$NEX.PING", "$nex.x", ">", "*.x"]:
        assert "reserved" in error_text(c.request(subject, dict(base, trigger_subjects=[trig])), "run"), trig
    assert "trigger_subjects" in error_text(c.request(subject, dict(base, trigger_subjects="x")), "run")
    assert nex.workloads()["workloads"] == []
