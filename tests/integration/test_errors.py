# SPDX-License-Identifier: Apache-2.0
"""test_errors.py — every way a request can be wrong, and the RFC 9457 problem nexd must answer with.

Each case sends one bad request to a shared nexd and checks the status, the content type
(application/problem+json), the problem's shape (type, title, status equal to the HTTP status, detail, instance
equal to the request path) and, for 422, the offending `field`.  The module ends by checking that none of the
refused requests left a workload behind and that the node still deploys and runs a workload.
"""

import http.client
import json
import select
import socket
import uuid
from pathlib import Path

import pytest

from conftest import program_path

HELLO = "file://" + str(program_path("hello"))
TEXT_FILE = Path(__file__).resolve()  # any absolute path of a text file
REPO_DIR = Path(__file__).resolve().parents[2]
UNKNOWN_ID = str(uuid.UUID(int=0x5EED))

# ids of the workloads this module deployed on purpose: the only ones the node may list at the end
ACCEPTED = []


def body(**fields):
    b = {"name": "bad", "artifact": HELLO}
    b.update(fields)
    return {k: v for k, v in b.items() if v is not DROP}


DROP = object()  # body(x=DROP) leaves x out


def check_problem(r, status, path, field=None, detail=None):
    """Asserts that R is an application/problem+json answer with STATUS for PATH; returns the problem."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:500]}"
    ctype = r.headers.get("Content-Type", "")
    assert ctype.split(";")[0].strip() == "application/problem+json", ctype
    p = r.json()
    assert isinstance(p, dict), p
    assert isinstance(p.get("type"), str) and p["type"], p
    assert isinstance(p.get("title"), str) and p["title"], p
    assert p.get("status") == status, p
    assert isinstance(p.get("detail"), str) and p["detail"], p
    assert isinstance(p.get("instance"), str) and p["instance"].split("?")[0] == path, p
    if status == 422:
        if field is not None:
            if field.endswith("*"):
                assert isinstance(p.get("field"), str) and p["field"].startswith(field[:-1]), p
            else:
                assert p.get("field") == field, p
    else:
        assert "field" not in p, p
    if detail is not None:
        assert detail.lower() in p["detail"].lower(), p
    return p


# (id, request kwargs, status, field, detail substring)
DEPLOY_CASES = [
    ("malformed_json", {"data": b'{"name": "x",', "headers": {"Content-Type": "application/json"}}, 400, None, None),
    ("empty_body", {"data": b"", "headers": {"Content-Type": "application/json"}}, 400, None, None),
    ("trailing_garbage", {"data": b'{"name": "x"} x', "headers": {"Content-Type": "application/json"}}, 400, None,
     None),
    ("body_array", {"json": [HELLO]}, 422, None, None),
    ("body_string", {"json": "hello"}, 422, None, None),
    ("body_null", {"data": b"null", "headers": {"Content-Type": "application/json"}}, 422, None, None),
    ("missing_name", {"json": body(name=DROP)}, 422, "name", None),
    ("missing_artifact", {"json": body(artifact=DROP)}, 422, "artifact", None),
    ("name_number", {"json": body(name=5)}, 422, "name", None),
    ("name_null", {"json": body(name=None)}, 422, "name", None),
    ("name_empty", {"json": body(name="")}, 422, "name", None),
    ("name_space", {"json": body(name="bad name")}, 422, "name", None),
    ("name_slash", {"json": body(name="a/b")}, 422, "name", None),
    ("name_leading_dash", {"json": body(name="-x")}, 422, "name", None),
    ("name_leading_dot", {"json": body(name=".x")}, 422, "name", None),
    ("name_too_long", {"json": body(name="a" * 64)}, 422, "name", None),
    ("namespace_bad", {"json": body(namespace="no such")}, 422, "namespace", None),
    ("namespace_number", {"json": body(namespace=1)}, 422, "namespace", None),
    ("unknown_field", {"json": body(bogus=1)}, 422, "bogus", None),
    ("env_value_number", {"json": body(env={"FOO": 1})}, 422, "env*", None),
    ("env_value_null", {"json": body(env={"FOO": None})}, 422, "env*", None),
    ("env_not_object", {"json": body(env=["FOO=1"])}, 422, "env", None),
    ("argv_string", {"json": body(argv="hello")}, 422, "argv", None),
    ("argv_number_element", {"json": body(argv=["hello", 2])}, 422, "argv*", None),
    ("artifact_number", {"json": body(artifact=5)}, 422, "artifact", None),
    ("artifact_missing_file", {"json": body(artifact="file:///nonexistent/nex-test/missing")}, 422, "artifact", None),
    ("artifact_relative_path", {"json": body(artifact="build/tests/programs/hello")}, 422, "artifact", None),
    ("artifact_file_relative", {"json": body(artifact="file://build/tests/programs/hello")}, 422, "artifact",
     None),
    ("artifact_http", {"json": body(artifact="http:///hello")}, 422, "artifact", "need a host"),
    ("artifact_https", {"json": body(artifact="https:hello")}, 422, "artifact", "need a host"),
    ("artifact_nats_without_nats", {"json": body(artifact="nats://bucket/hello")}, 422, "artifact", "--nats"),
    ("artifact_unknown_scheme", {"json": body(artifact="gopher://127.0.0.1/hello")}, 422, "artifact", None),
    ("artifact_dynamic", {"json": body(artifact="file://" + str(program_path("hello-dynamic")))}, 422, "artifact",
     "dynamically linked"),
    ("artifact_text_file", {"json": body(artifact="file://" + str(TEXT_FILE))}, 422, "artifact", "not an ELF"),
    ("artifact_directory", {"json": body(artifact="file://" + str(REPO_DIR))}, 422, "artifact", None),
    ("sha256_short", {"json": body(sha256="abc")}, 422, "sha256", None),
    ("sha256_not_hex", {"json": body(sha256="g" * 64)}, 422, "sha256", None),
    ("sha256_number", {"json": body(sha256=12)}, 422, "sha256", None),
    ("driver_unknown", {"json": body(driver="nope")}, 422, "driver", None),
    ("description_number", {"json": body(description=5)}, 422, "description", None),
]


@pytest.mark.parametrize("kwargs,status,field,detail", [c[1:] for c in DEPLOY_CASES],
                         ids=[c[0] for c in DEPLOY_CASES])
def test_deploy_refused(nexd_module, kwargs, status, field, detail):
    if "hello-dynamic" in str(kwargs):
        nexd_module.program("hello-dynamic")  # fails clearly when it was not built
    r = nexd_module.post("/v1/workloads", **kwargs)
    check_problem(r, status, "/v1/workloads", field, detail)
    assert "Location" not in r.headers


ROUTE_CASES = [
    ("get_unknown_id", "GET", f"/v1/workloads/{UNKNOWN_ID}", 404),
    ("get_not_an_id", "GET", "/v1/workloads/not-an-id", 404),
    ("delete_unknown_id", "DELETE", f"/v1/workloads/{UNKNOWN_ID}", 404),
    ("logs_unknown_id", "GET", f"/v1/workloads/{UNKNOWN_ID}/logs", 404),
    ("unknown_route", "GET", "/v1/nope", 404),
    ("unknown_version", "GET", "/v2/workloads", 404),
    ("unknown_below_workload", "GET", f"/v1/workloads/{UNKNOWN_ID}/nope", 404),
]


@pytest.mark.parametrize("method,path,status", [c[1:] for c in ROUTE_CASES], ids=[c[0] for c in ROUTE_CASES])
def test_not_found(nexd_module, method, path, status):
    check_problem(nexd_module.request(method, path), status, path)


METHOD_CASES = [
    ("put_workloads", "PUT", "/v1/workloads", {"GET", "POST"}),
    ("delete_workloads", "DELETE", "/v1/workloads", {"GET", "POST"}),
    ("delete_node", "DELETE", "/v1/node", {"GET"}),
    ("post_node", "POST", "/v1/node", {"GET"}),
]


@pytest.mark.parametrize("method,path,allowed", [c[1:] for c in METHOD_CASES], ids=[c[0] for c in METHOD_CASES])
def test_method_not_allowed(nexd_module, method, path, allowed):
    r = nexd_module.request(method, path, json={})
    check_problem(r, 405, path)
    assert "Allow" in r.headers, dict(r.headers)
    methods = {m.strip().upper() for m in r.headers["Allow"].split(",") if m.strip()}
    assert allowed <= methods, r.headers["Allow"]
    assert method not in methods


def raw_post(port, path, payload, content_type="application/json", token=None):
    """POSTs PAYLOAD over a plain socket, stopping the upload as soon as the server answers (a server may refuse
    a large body before reading it, and close); returns (status, headers, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n{auth}"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
        pending = memoryview(head + payload)
        sock.setblocking(False)
        while pending:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                break  # the answer is there: stop sending
            if not writable:
                raise AssertionError("the server neither read the body nor answered for 10 s")
            try:
                n = sock.send(pending[:65536])
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[n:]
        sock.setblocking(True)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), data
    finally:
        sock.close()


def test_body_too_large(nexd_module):
    payload = json.dumps({"name": "big", "artifact": HELLO, "description": "x" * (2 << 20)}).encode()
    status, headers, data = raw_post(nexd_module.daemon.port, "/v1/workloads", payload, token=nexd_module.token)
    assert status == 413, data[:500]
    ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ctype.split(";")[0].strip() == "application/problem+json", ctype
    problem = json.loads(data)
    assert problem["status"] == 413
    assert problem["instance"] == "/v1/workloads"
    assert nexd_module.get("/v1/node").status_code == 200


@pytest.mark.parametrize("state", ["bogus", "RUNNING", ""])
def test_bad_state_filter(nexd_module, state):
    r = nexd_module.get("/v1/workloads", params={"state": state})
    check_problem(r, 422, "/v1/workloads", "state")


@pytest.fixture(scope="module")
def exited_hello(nexd_module):
    w = nexd_module.deploy_ok(name="tail-target", artifact=HELLO)
    ACCEPTED.append(w["id"])
    return nexd_module.wait_state(w["id"], "exited")


@pytest.mark.parametrize("tail", ["0", "-1", "abc", "1.5", "", "1x"])
def test_bad_tail(nexd_module, exited_hello, tail):
    path = f"/v1/workloads/{exited_hello['id']}/logs"
    check_problem(nexd_module.get(path, params={"tail": tail}), 422, path, "tail")


def test_longest_name_accepted(nexd_module):
    w = nexd_module.deploy_ok(name="a" * 63, namespace="Z-9._", artifact=HELLO)
    ACCEPTED.append(w["id"])
    assert nexd_module.wait_state(w["id"], "exited")["name"] == "a" * 63


def test_nothing_refused_was_stored(nexd_module):
    """Runs last: only the deliberate deploys are listed, and a valid deploy still works."""
    listed = nexd_module.workloads()
    assert sorted(w["id"] for w in listed["workloads"]) == sorted(ACCEPTED)
    assert listed["count"] == len(ACCEPTED)
    assert not any(w["name"] == "bad" for w in listed["workloads"])

    w = nexd_module.deploy_ok(name="still-fine", artifact=HELLO, argv=["hello", "ok"])
    w = nexd_module.wait_state(w["id"], "exited")
    assert w["exit_code"] == 3
    assert "argv: hello ok" in nexd_module.log_texts(w["id"], "stdout")
    node = nexd_module.get("/v1/node")
    assert node.status_code == 200
    assert node.json()["workloads"]["total"] == len(ACCEPTED) + 1
