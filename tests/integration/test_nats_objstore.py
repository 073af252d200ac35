# SPDX-License-Identifier: Apache-2.0
"""test_nats_objstore.py — workloads from JetStream object stores, in the format the official clients write.

nats.js puts an executable into an object store and the node runs it from nats://bucket/key (deployed over REST
and over NATS), with the digest the node computed equal to the file's.  An object whose bytes do not match its
metadata's digest fails the workload with the reason.  nexd's own writer (tests/tools/nats-objput, the code a
`nex run` upload uses) puts an object that nats.js reads back identical, and its reader gets what nats.js put.
"""

import hashlib
import json
import subprocess

from conftest import build_dir, file_sha256, program_path
from natsutil import NatsClient, nats_server, node_id, ok_data, start_node  # noqa: F401


def objput(*args):
    return subprocess.run([str(build_dir() / "tests" / "tools" / "nats-objput"), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_node_runs_an_object_nats_js_put(request, nats_server):
    nex = start_node(request, nats_server)
    nid = node_id(nex)
    c = NatsClient(nats_server.url)
    info = json.loads(c.run("obj-put", "apps", "bin/hello", program_path("hello")).stdout)
    assert info["chunks"] > 1  # several chunks: the ordering and the digest over them matter

    w = nex.deploy_ok(name="hello", artifact="nats://apps/bin/hello", argv=["hello", "from", "nats"])
    w = nex.wait_state(w["id"], "exited")
    assert w["exit_code"] == 3
    assert w["digest"] == file_sha256(program_path("hello"))
    assert "argv: hello from nats" in nex.log_texts(w["id"])

    # The same over the control API, with a sha256 the fetched bytes must match.
    d = ok_data(c.request(f"$NEX.DEPLOY.default.{nid}", {"workload_name": "hello2", "location": "nats://apps/bin/hello",
                                                        "hash": file_sha256(program_path("hello"))}), "run")
    assert nex.wait_state(d["id"], "exited")["exit_code"] == 3


def test_missing_and_corrupt_objects_fail_with_reasons(request, nats_server):
    nex = start_node(request, nats_server)
    c = NatsClient(nats_server.url)
    c.run("obj-put", "apps", "hello", program_path("hello"))
    w = nex.deploy_ok(name="missing", artifact="nats://apps/nothere")
    w = nex.wait_state(w["id"], "failed")
    assert "no object" in w["reason"]
    w = nex.deploy_ok(name="nobucket", artifact="nats://nobucket/x")
    assert "no object" in nex.wait_state(w["id"], "failed")["reason"]

    # Metadata that claims another digest (a tampered or corrupt object): the bytes are refused.
    meta = json.loads(c.run("obj-get", "apps", "hello", nex.data_dir / "copy").stdout)
    forged = dict(meta, digest="SHA-256=" + "A" * 43 + "=")
    enc = "aGVsbG8="  # base64url("hello"), padded
    c.run("request", f"$O.apps.M.{enc}", json.dumps(forged), 2000, check=False)  # a JetStream publish
    w = nex.deploy_ok(name="forged", artifact="nats://apps/hello")
    assert "digest" in nex.wait_state(w["id"], "failed")["reason"]

    # Bad URLs are refused at once.
    for url, word in [("nats://bad.bucket/x", "bucket"), ("nats://apps", "bucket and a key"),
                      ("nats://apps/x?y", "`?`"), ("nats:apps/x", "form")]:
        r = nex.deploy(name="bad", artifact=url)
        assert r.status_code == 422 and word in r.json()["detail"], (url, r.text)


def test_nats_urls_need_a_nats_node(nexd):
    r = nexd.deploy(name="x", artifact="nats://apps/hello")
    assert r.status_code == 422
    assert "--nats" in r.json()["detail"]


def test_nexd_writer_and_reader_agree_with_nats_js(request, nats_server, tmp_path):
    c = NatsClient(nats_server.url)
    data = bytes(range(256)) * 2000 + b"tail"  # ~500 KiB: several chunks and a short last one
    src = tmp_path / "blob"
    src.write_bytes(data)
    r = objput(nats_server.url, "put", "uploads", "dir/blob.bin", src)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == hashlib.sha256(data).hexdigest()
    out = tmp_path / "back"
    info = json.loads(c.run("obj-get", "uploads", "dir/blob.bin", out).stdout)
    assert out.read_bytes() == data
    assert info["size"] == len(data)
    # Replacing it keeps one live copy.
    src.write_bytes(b"second version")
    assert objput(nats_server.url, "put", "uploads", "dir/blob.bin", src).returncode == 0
    c.run("obj-get", "uploads", "dir/blob.bin", out)
    assert out.read_bytes() == b"second version"

    # And nexd's reader gets what nats.js put, byte for byte.
    c.run("obj-put", "uploads", "from-js", program_path("lister"))
    r = objput(nats_server.url, "get", "uploads", "from-js", tmp_path / "got")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "got").read_bytes() == program_path("lister").read_bytes()
    r = objput(nats_server.url, "get", "uploads", "absent", tmp_path / "none")
    assert r.returncode == 1 and "no object" in r.stderr
