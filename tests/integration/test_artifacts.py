# SPDX-License-Identifier: Apache-2.0
"""test_artifacts.py — uploading executables (POST /v1/artifacts) and deploying them as artifact://<sha256>.

Uploads go to a real nexd over HTTP; what lands in its artifact cache (data/artifacts) is checked on disk: only
complete, checked entries named by their digest, and no temporary file left behind by a refused upload.
"""

import http.client
import socket

import pytest

from conftest import file_sha256, program_path
from test_contract import check

HELLO = program_path("hello")


def cache_files(nexd):
    return sorted(p.name for p in (nexd.data_dir / "artifacts").iterdir())


def upload(nexd, data, **params):
    return nexd.post("/v1/artifacts", data=data, params=params,
                     headers={"Content-Type": "application/octet-stream"})


def test_upload_then_deploy(nexd):
    data = HELLO.read_bytes()
    sha = file_sha256(HELLO)
    r = upload(nexd, data)
    a = check(r, "post", "/v1/artifacts")
    assert r.status_code == 201
    assert a == {"sha256": sha, "size": len(data), "url": f"artifact://{sha}"}
    assert cache_files(nexd) == [sha]
    entry = nexd.data_dir / "artifacts" / sha
    assert entry.read_bytes() == data
    assert entry.stat().st_mode & 0o777 == 0o555

    # the same bytes again: nothing new, 200; with the right expected digest too
    r = upload(nexd, data, sha256=sha.upper())
    assert check(r, "post", "/v1/artifacts") == a and r.status_code == 200
    # asking for it, in either case
    assert check(nexd.get(f"/v1/artifacts/{sha}"), "get", "/v1/artifacts/{sha256}") == a
    assert nexd.get(f"/v1/artifacts/{sha.upper()}").json() == a

    w = nexd.deploy_ok(name="uploaded", artifact=a["url"], argv=["uploaded", "x"])
    assert w["artifact"] == a["url"]
    w = nexd.wait_state(w["id"], "exited")
    assert w["exit_code"] == 3 and w["digest"] == sha
    assert "argv: uploaded x" in nexd.log_texts(w["id"])
    # and with the digest pinned
    w2 = nexd.deploy_ok(name="pinned", artifact=a["url"], sha256=sha)
    assert nexd.wait_state(w2["id"], "exited")["digest"] == sha
    assert cache_files(nexd) == [sha]


def test_digest_pinned_to_another_fails(nexd):
    sha = upload(nexd, HELLO.read_bytes()).json()["sha256"]
    w = nexd.deploy_ok(name="mismatch", artifact=f"artifact://{sha}", sha256="1" * 64)
    w = nexd.wait_state(w["id"], "failed")
    assert "sha256 mismatch" in w["reason"]


@pytest.mark.parametrize("data,params,field,detail", [
    (b"#!/bin/sh\necho hi\n", {}, "artifact", "not an ELF"),
    (b"", {}, "artifact", "empty"),
    (None, {"sha256": "1" * 64}, "sha256", "mismatch"),
    (None, {"sha256": "xyz"}, "sha256", "64 hexadecimal"),
    ("dynamic", {}, "artifact", "dynamically linked"),
])
def test_upload_refused(nexd, data, params, field, detail):
    if data is None:
        data = HELLO.read_bytes()
    elif data == "dynamic":
        data = program_path("hello-dynamic").read_bytes()
    r = upload(nexd, data, **params)
    p = check(r, "post", "/v1/artifacts")
    assert r.status_code == 422 and p["field"] == field and detail in p["detail"], p
    assert cache_files(nexd) == [], "a refused upload left something in the cache"


def test_get_unknown_artifact(nexd):
    for name in ["0" * 64, "abc", "g" * 64]:
        r = nexd.get(f"/v1/artifacts/{name}")
        assert check(r, "get", "/v1/artifacts/{sha256}")["status"] == 404


@pytest.mark.parametrize("artifact,detail", [
    ("artifact://" + "2" * 64, "no uploaded artifact"),
    ("artifact://abc", "SHA-256"),
    ("artifact:" + "2" * 64, "SHA-256"),
    ("artifact://" + "2" * 64 + "/x", "SHA-256"),
])
def test_deploy_unknown_artifact_refused(nexd, artifact, detail):
    p = check(nexd.deploy(name="x", artifact=artifact), "post", "/v1/workloads")
    assert p["status"] == 422 and p["field"] == "artifact" and detail in p["detail"], p
    assert nexd.workloads()["count"] == 0


def raw_request(port, head, body=b"", chunks=()):
    """Sends HEAD (the request line and headers), BODY, then CHUNKS in chunked encoding; returns (status, body).
    Stops sending once the server has answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(head + body)
        try:
            for c in chunks:
                sock.sendall(b"%x\r\n" % len(c) + c + b"\r\n")
            if chunks:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.read()
    finally:
        sock.close()


def test_upload_too_large(nexd):
    nexd.restart(["--max-artifact-bytes", "100000"])
    port = nexd.daemon.port
    # declared: refused before the body is read
    auth = f"Authorization: Bearer {nexd.token}\r\n"
    head = (f"POST /v1/artifacts HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n{auth}"
            f"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n").encode()
    status, body = raw_request(port, head)
    assert status == 413, body
    # not declared (chunked): read, counted, refused at the end
    head = (f"POST /v1/artifacts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{auth}"
            f"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n").encode()
    status, body = raw_request(port, head, chunks=[b"\x7fELF" + b"x" * 65532] * 4)
    assert status == 413, body
    assert b"larger than 100000 bytes" in body
    assert cache_files(nexd) == []
    # the node still takes an upload that fits
    small = program_path("hello").read_bytes()
    assert len(small) > 100000  # hello is too big for this node...
    nexd.restart()
    assert upload(nexd, small).status_code == 201  # ...and fits the default bound
