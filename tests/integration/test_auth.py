# SPDX-License-Identifier: Apache-2.0
"""test_auth.py — bearer tokens, scopes and namespaces, against a real nexd.

The matrix sends every route of the API with no token, a bad token, a token of the scope just below the one the
route needs, and one of the right scope, and checks 401 / 401 / 403 / neither.  Around it: the first admin token
(written to admin.token, mode 0600, printed once), tokens made, listed and revoked over the API and the CLI, a
configured admin_token, anonymous access by configuration, and tokens limited to namespaces.
"""

import json
import os
import stat

import pytest
import requests
import websocket

from conftest import file_sha256, make_nex, finish_nex, program_path
from test_contract import check

HELLO = program_path("hello")
BAD = "nex_0123456789abcdef_" + "A" * 43


def make_token(nexd, scopes, namespaces=None, name="t"):
    body = {"name": name, "scopes": scopes}
    if namespaces is not None:
        body["namespaces"] = namespaces
    r = nexd.post("/v1/tokens", json=body)
    t = check(r, "post", "/v1/tokens")
    assert r.status_code == 201, t
    return t


@pytest.fixture(scope="module")
def world(nexd_module):
    """One node with a workload, an artifact and tokens of each scope."""
    n = nexd_module
    w = n.deploy_ok(name="hello", artifact=n.program("hello"))
    n.wait_state(w["id"], "exited")
    sha = n.post("/v1/artifacts", data=HELLO.read_bytes()).json()["sha256"]
    tokens = {s: make_token(n, [s], name=f"{s} token")["token"] for s in ("read", "deploy", "admin")}
    victim = make_token(n, ["read"], name="to revoke")
    return {"nexd": n, "wid": w["id"], "sha": sha, "tokens": tokens, "victim": victim["id"]}


# (method, path template, template for the contract, needed scope, request kwargs)
ROUTES = [
    ("GET", "/v1/node", "/v1/node", "read", {}),
    ("GET", "/v1/workloads", "/v1/workloads", "read", {}),
    ("POST", "/v1/workloads", "/v1/workloads", "deploy", {"json": {"name": "m", "artifact": "file://" + str(HELLO)}}),
    ("GET", "/v1/workloads/{wid}", "/v1/workloads/{id}", "read", {}),
    ("DELETE", "/v1/workloads/{wid}", "/v1/workloads/{id}", "deploy", {}),
    ("GET", "/v1/workloads/{wid}/logs", "/v1/workloads/{id}/logs", "read", {}),
    ("GET", "/v1/workloads/{wid}/wait?timeout_s=0", "/v1/workloads/{id}/wait", "read", {}),
    ("POST", "/v1/artifacts", "/v1/artifacts", "deploy", {"data": HELLO.read_bytes()}),
    ("GET", "/v1/artifacts/{sha}", "/v1/artifacts/{sha256}", "read", {}),
    ("GET", "/v1/events", "/v1/events", "read", {}),
    ("GET", "/v1/tokens", "/v1/tokens", "admin", {}),
    ("POST", "/v1/tokens", "/v1/tokens", "admin", {"json": {"name": "m", "scopes": ["read"]}}),
    ("DELETE", "/v1/tokens/{victim}", "/v1/tokens/{id}", "admin", {}),
]
BELOW = {"read": None, "deploy": "read", "admin": "deploy"}


# every route with each kind of caller; "below" (a token of the scope under the one needed) where there is one
MATRIX = [(who,) + r for r in ROUTES for who in ("none", "bad", "below", "right")
          if not (who == "below" and BELOW[r[3]] is None)]


@pytest.mark.parametrize("who,method,path,template,scope,kw", MATRIX, ids=[f"{m[0]} {m[1]} {m[2]}" for m in MATRIX])
def test_matrix(world, who, method, path, template, scope, kw):
    n = world["nexd"]
    path = path.format(**world)
    if who == "none":
        r = n.request(method, path, auth=None, **kw)
        p = check(r, method.lower(), template)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), p
    elif who == "bad":
        r = n.request(method, path, auth=BAD, **kw)
        p = check(r, method.lower(), template)
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"], p
    elif who == "below":
        r = n.request(method, path, auth=world["tokens"][BELOW[scope]], **kw)
        p = check(r, method.lower(), template)
        assert r.status_code == 403 and f'scope="{scope}"' in r.headers["WWW-Authenticate"], p
        assert scope in p["detail"]
    else:
        r = n.request(method, path, auth=world["tokens"][scope], **kw)
        check(r, method.lower(), template)
        assert r.status_code not in (401, 403), r.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_public(world, path):
    r = world["nexd"].get(path, auth=None)
    assert r.status_code == 200


def test_malformed_authorization(world):
    n = world["nexd"]
    for value in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer " + "x" * 64, "Token abc"):
        r = n.get("/v1/node", auth=None, headers={"Authorization": value})
        assert r.status_code == 401, (value, r.text)


def test_websockets_need_a_token(world):
    n = world["nexd"]
    url = "ws" + n.base[4:] + "/v1/events?follow=1"
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(url, timeout=10)
    assert e.value.status_code == 401
    # browsers cannot set headers on a websocket: the token may come as ?access_token=
    ws = websocket.create_connection(url + "&access_token=" + world["tokens"]["read"], timeout=10)
    ws.close()
    # but only there
    r = n.get("/v1/node", auth=None, params={"access_token": world["tokens"]["read"]})
    assert r.status_code == 401


def test_first_admin_token(nexd):
    path = nexd.data_dir / "admin.token"
    token = path.read_text().strip()
    assert token == nexd.token and token.startswith("nex_") and len(token) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    log = nexd.daemon.log_path.read_text()
    assert log.count("created the first admin token") == 1 and token in log
    listed = check(nexd.get("/v1/tokens"), "get", "/v1/tokens")
    assert [t["scopes"] for t in listed["tokens"]] == [["admin"]]
    assert "token" not in listed["tokens"][0] and token not in json.dumps(listed)
    nexd.restart()
    assert nexd.token == token, "the admin token survives restarts"
    assert "created the first admin token" not in nexd.daemon.log_path.read_text()
    assert nexd.get("/v1/node").status_code == 200
    assert nexd.daemon.log_path.read_text().count(token) == 0, "the token leaked into the log"


def test_token_lifecycle(nexd):
    t = make_token(nexd, ["deploy"], name="ci pipeline")
    assert set(t) >= {"id", "name", "scopes", "namespaces", "created_at", "token"}
    assert t["scopes"] == ["deploy"] and t["namespaces"] is None and t["last_used_at"] is None
    secret = t["token"]
    assert nexd.get("/v1/node", auth=secret).status_code == 200
    assert nexd.deploy(name="x", artifact="file://" + str(HELLO)).status_code == 202
    listed = {x["id"]: x for x in nexd.get("/v1/tokens").json()["tokens"]}
    assert listed[t["id"]]["last_used_at"] is not None
    r = nexd.delete(f"/v1/tokens/{t['id']}")
    revoked = check(r, "delete", "/v1/tokens/{id}")
    assert r.status_code == 200 and revoked["revoked_at"] is not None
    assert nexd.get("/v1/node", auth=secret).status_code == 401
    assert nexd.delete(f"/v1/tokens/{t['id']}").json()["revoked_at"] == revoked["revoked_at"], "idempotent"
    assert check(nexd.delete("/v1/tokens/0000000000000000"), "delete", "/v1/tokens/{id}")["status"] == 404
    assert nexd.delete("/v1/tokens/nope").status_code == 404
    # paging
    for i in range(3):
        make_token(nexd, ["read"], name=f"p{i}")
    page = check(nexd.get("/v1/tokens", params={"limit": 2}), "get", "/v1/tokens")
    assert page["count"] == 2 and page["has_more"]
    rest = check(nexd.get("/v1/tokens", params={"cursor": page["next_cursor"]}), "get", "/v1/tokens")
    assert [x["id"] for x in page["tokens"] + rest["tokens"]] == [x["id"] for x in nexd.get("/v1/tokens").json()["tokens"]]


def test_bad_token_list_and_body(nexd):
    p = check(nexd.get("/v1/tokens", params={"cursor": "nope"}), "get", "/v1/tokens")
    assert p["status"] == 422 and p["field"] == "cursor"
    assert check(nexd.get("/v1/tokens", params={"limit": "0"}), "get", "/v1/tokens")["field"] == "limit"
    r = nexd.post("/v1/tokens", data=b"{not json", headers={"Content-Type": "application/json"})
    assert check(r, "post", "/v1/tokens")["status"] == 400


@pytest.mark.parametrize("body,field", [
    ({"scopes": ["read"]}, "name"),
    ({"name": "", "scopes": ["read"]}, "name"),
    ({"name": "x"}, "scopes"),
    ({"name": "x", "scopes": []}, "scopes"),
    ({"name": "x", "scopes": ["root"]}, "scopes[0]"),
    ({"name": "x", "scopes": "read"}, "scopes"),
    ({"name": "x", "scopes": ["read"], "namespaces": []}, "namespaces"),
    ({"name": "x", "scopes": ["read"], "namespaces": ["bad name"]}, "namespaces[0]"),
    ({"name": "x", "scopes": ["read"], "expires": 5}, "expires"),
])
def test_bad_token_requests(nexd, body, field):
    p = check(nexd.post("/v1/tokens", json=body), "post", "/v1/tokens")
    assert p["status"] == 422 and p["field"] == field, p


def test_namespace_limited_token(nexd):
    other = nexd.deploy_ok(name="other", namespace="other", artifact=nexd.program("hello"))
    t = make_token(nexd, ["deploy"], namespaces=["team-a"])["token"]
    mine = check(nexd.post("/v1/workloads", auth=t, json={"name": "mine", "namespace": "team-a",
                                                          "artifact": nexd.program("hello")}), "post", "/v1/workloads")
    nexd.wait_state(mine["id"], "exited")
    r = nexd.post("/v1/workloads", auth=t, json={"name": "x", "artifact": nexd.program("hello")})
    assert check(r, "post", "/v1/workloads")["status"] == 403  # the default namespace is not team-a's
    listed = check(nexd.get("/v1/workloads", auth=t), "get", "/v1/workloads")
    assert [w["id"] for w in listed["workloads"]] == [mine["id"]]
    assert nexd.get("/v1/workloads", auth=t, params={"namespace": "other"}).status_code == 403
    assert nexd.get(f"/v1/workloads/{other['id']}").status_code == 200  # fills the answer cache
    for path in (f"/v1/workloads/{other['id']}", f"/v1/workloads/{other['id']}/logs",
                 f"/v1/workloads/{other['id']}/wait"):
        assert nexd.get(path, auth=t).status_code == 403, path
    assert nexd.delete(f"/v1/workloads/{other['id']}", auth=t).status_code == 403
    assert nexd.get("/v1/events", auth=t, params={"namespace": "other"}).status_code == 403
    events = nexd.get("/v1/events", auth=t, params={"limit": 1000}).json()["events"]
    assert events and all(e["data"].get("namespace") == "team-a" for e in events)
    url = "ws" + nexd.base[4:] + "/v1/events?follow=1&access_token=" + t
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(url, timeout=10)
    assert e.value.status_code == 403
    websocket.create_connection(url + "&namespace=team-a", timeout=10).close()


def test_configured_admin_token_and_anonymous_read(request):
    nex = make_nex("test_auth.configured")
    secret = "s3cret-admin-token-of-the-operator-0123"
    try:
        nex.start(extra_args=["--admin-token", secret, "--anonymous", "read"])
        assert not (nex.data_dir / "admin.token").exists() and nex.token is None
        assert "created the first admin token" not in nex.daemon.log_path.read_text()
        # anonymous: reads yes, writes no
        assert nex.get("/v1/node", auth=None).status_code == 200
        r = nex.deploy(name="x", artifact=nex.program("hello"))
        assert r.status_code == 401
        # the configured token is an admin
        assert nex.post("/v1/tokens", auth=secret, json={"name": "a", "scopes": ["read"]}).status_code == 201
        assert nex.post("/v1/workloads", auth=secret, json={"name": "x", "artifact": nex.program("hello")}
                        ).status_code == 202
        assert nex.get("/v1/node", auth=secret[:-1] + "x").status_code == 401
        nex.daemon.token = secret  # for the teardown
    except Exception:
        nex.abort()
        raise
    finish_nex(nex, passed=True)


@pytest.mark.parametrize("args,needle", [
    (["--anonymous", "everything"], "anonymous"),
    (["--admin-token", "short"], "admin_token"),
])
def test_bad_auth_configuration(args, needle):
    nex = make_nex("test_auth.badconfig")
    try:
        with pytest.raises(Exception):
            nex.start(extra_args=args)
        assert needle in nex.daemon.log_tail()
    finally:
        nex.abort()


def test_cli_tokens(nexd):
    r = nexd.cli("token", "create", "--name", "from cli", "--scope", "read", "--namespace", "a")
    assert r.returncode == 0, r.stderr
    secret = r.stdout.strip()
    assert secret.startswith("nex_") and "shown only this once" in r.stderr
    ls = nexd.cli("token", "ls")
    assert ls.returncode == 0 and "from cli" in ls.stdout and "read" in ls.stdout
    tid = [t for t in json.loads(nexd.cli("token", "ls", "--json").stdout) if t["name"] == "from cli"][0]["id"]
    assert nexd.cli("node", "info", env={"NEX_TOKEN": secret}).returncode == 0
    denied = nexd.cli("token", "ls", env={"NEX_TOKEN": secret})
    assert denied.returncode == 1 and denied.stderr.strip() == "nex: this token lacks scope `admin`"
    assert nexd.cli("token", "revoke", tid).stdout.strip() == f"revoked {tid}"
    gone = nexd.cli("node", "info", "--token", secret)
    assert gone.returncode == 1 and "unknown or revoked" in gone.stderr
    none = nexd.cli("ls", env={"NEX_TOKEN": None})
    assert none.returncode == 1 and "bearer token" in none.stderr
    assert nexd.cli("token", "create", "--name", "x").returncode == 2
    assert nexd.cli("token").returncode == 2


def test_node_says_who_is_asking(nexd):
    """GET /v1/node names the caller's token and scopes (the dashboard shows them)."""
    admin = nexd.get("/v1/node").json()["caller"]
    assert admin["scopes"] == ["read", "deploy", "admin"] and admin["namespaces"] is None, admin
    assert nexd.token.startswith("nex_" + admin["token_id"]), admin
    t = make_token(nexd, ["read"], namespaces=["team-a"], name="viewer")
    me = nexd.request("GET", "/v1/node", auth=t["token"]).json()["caller"]
    assert me == {"token_id": t["id"], "scopes": ["read"], "namespaces": ["team-a"]}, me


def test_node_reports_the_host(nexd):
    """The host's CPUs and memory, as the dashboard's overview shows them, match what the kernel says."""
    import os
    host = nexd.get("/v1/node").json()["host"]
    assert host["cpus"] == os.cpu_count(), host
    total = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal:")).split()[1]) * 1024
    assert host["memory_total_bytes"] == total, host
    assert 0 < host["memory_available_bytes"] <= total, host
    assert len(host["load"]) == 3 and all(x >= 0 for x in host["load"]), host
