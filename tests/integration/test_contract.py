# SPDX-License-Identifier: Apache-2.0
"""test_contract.py — holds nexd's answers to openapi.yaml, and openapi.yaml to itself.

openapi.yaml is loaded with PyYAML.  Schemas are checked with jsonschema's Draft 2020-12 validator (OpenAPI 3.1's
dialect); `#/components/...` references resolve because each schema is validated inside a document that carries
the spec's components.

Without nexd: the document is OpenAPI 3.1, documents every route of the API, its schemas are valid, every
reference resolves, and every example matches its schema.

With a real nexd: the responses to a deploy, a GET, a list, logs, the node, a stop, and the 400, 404, 405 and 422
problems have a status documented for their operation, a documented content type, documented headers, and a
body valid against the documented schema with no undocumented top-level field.
"""

import os
import subprocess

import pytest
import yaml
from jsonschema import Draft202012Validator

from contract import (SPEC, SPEC_PATH, check, declared_properties, operations, pointer,  # noqa: F401 (re-exported)
                      resolve, schema_errors, walk)
from conftest import REPO

# Every operation of the API as the brief of the REST API lists it.
EXPECTED_OPERATIONS = {
    ("get", "/v1/node"),
    ("get", "/v1/workloads"),
    ("post", "/v1/workloads"),
    ("get", "/v1/workloads/{id}"),
    ("delete", "/v1/workloads/{id}"),
    ("get", "/v1/workloads/{id}/logs"),
    # the sandbox in depth
    ("get", "/v1/workloads/{id}/stats"),
    ("post", "/v1/workloads/{id}/signal"),
    ("post", "/v1/workloads/{id}/exec"),
    ("get", "/v1/workloads/{id}/exec"),
    ("post", "/v1/workloads/{id}/pause"),
    ("post", "/v1/workloads/{id}/resume"),
    ("post", "/v1/artifacts"),
    ("get", "/v1/artifacts/{sha256}"),
    ("get", "/v1/events"),
    ("get", "/v1/workloads/{id}/wait"),
    ("get", "/v1/tokens"),
    ("post", "/v1/tokens"),
    ("delete", "/v1/tokens/{id}"),
    # OCI images
    ("get", "/v1/images"),
    ("post", "/v1/images"),
    ("post", "/v1/images/pull"),
    ("delete", "/v1/images/{digest}"),
    # VM snapshots
    ("post", "/v1/workloads/{id}/snapshot"),
    ("get", "/v1/snapshots"),
    ("get", "/v1/snapshots/{id}"),
    ("delete", "/v1/snapshots/{id}"),
    # the cluster (NATS)
    ("get", "/v1/cluster/nodes"),
    ("get", "/v1/cluster/workloads"),
    ("delete", "/v1/cluster/workloads/{key}"),
    ("post", "/v1/cluster/nodes/{id}/drain"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.yaml"),
    ("get", "/docs"),
}


# --- the document itself ----------------------------------------------------------------------------------------
def test_is_openapi_31_with_every_operation():
    assert str(SPEC["openapi"]).startswith("3.1.")
    assert SPEC["info"]["title"] and SPEC["info"]["version"]
    assert {(m, p) for m, p, _ in operations()} == EXPECTED_OPERATIONS
    ids = [op.get("operationId") for _, _, op in operations()]
    assert all(ids) and len(set(ids)) == len(ids), ids
    for method, path, op in operations():
        assert op.get("responses"), f"{method} {path} documents no response"


def test_every_reference_resolves():
    for where, obj in walk(SPEC):
        if "$ref" in obj and isinstance(obj["$ref"], str):
            pointer(obj["$ref"])  # asserts


def test_schemas_are_valid_2020_12():
    for name, schema in SPEC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)


def test_problems_on_every_error_response():
    for method, path, op in operations():
        for status, response in op["responses"].items():
            response = resolve(response)
            if int(status) >= 400:
                content = response.get("content", {})
                assert list(content) == ["application/problem+json"], f"{method} {path} {status}"
                assert content["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/ProblemDetails"}
            if status == "405":
                assert "Allow" in response.get("headers", {}), f"{method} {path} 405 has no Allow header"


def test_examples_match_their_schemas():
    checked = 0
    for method, path, op in operations():
        media = []
        body = resolve(op.get("requestBody", {}))
        media += [(f"{method} {path} request", m) for m in body.get("content", {}).values()]
        for status, response in op["responses"].items():
            media += [(f"{method} {path} {status}", m) for m in resolve(response).get("content", {}).values()]
        for where, m in media:
            for name, example in m.get("examples", {}).items():
                value = resolve(example)["value"]
                errors = schema_errors(m["schema"], value)
                assert not errors, f"example {name} of {where}: {errors}"
                checked += 1
    assert checked >= 10


def test_success_responses_match(nexd):
    r = nexd.deploy(name="hello", artifact=nexd.program("hello"), argv=["hello", "x"], env={"A": "b"},
                    description="contract")
    w = check(r, "post", "/v1/workloads")
    wid = w["id"]
    nexd.wait_state(wid, "exited")
    check(nexd.get(f"/v1/workloads/{wid}"), "get", "/v1/workloads/{id}")
    check(nexd.get("/v1/workloads"), "get", "/v1/workloads")
    check(nexd.get("/v1/workloads", params={"namespace": "default", "state": "exited"}), "get", "/v1/workloads")
    logs = check(nexd.get(f"/v1/workloads/{wid}/logs"), "get", "/v1/workloads/{id}/logs")
    assert logs["lines"]
    check(nexd.get(f"/v1/workloads/{wid}/logs", params={"tail": 1}), "get", "/v1/workloads/{id}/logs")
    node = check(nexd.get("/v1/node"), "get", "/v1/node")
    assert node["default_driver"] == "sandbox"
    assert any(d["name"] == "sandbox" for d in node["drivers"])

    # a stop of an ended workload (200), and of a running one (202), then the stopped record
    check(nexd.delete(f"/v1/workloads/{wid}"), "delete", "/v1/workloads/{id}")
    s = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    running = nexd.wait_state(s["id"], "running")
    check(nexd.get(f"/v1/workloads/{s['id']}"), "get", "/v1/workloads/{id}")
    assert running["pid"] is not None
    r = nexd.delete(f"/v1/workloads/{s['id']}", params={"grace_s": 1})
    assert r.status_code == 202
    check(r, "delete", "/v1/workloads/{id}")
    nexd.wait_state(s["id"], "stopped", timeout=5)
    check(nexd.get(f"/v1/workloads/{s['id']}"), "get", "/v1/workloads/{id}")
    check(nexd.get("/v1/workloads", params={"state": "stopped"}), "get", "/v1/workloads")

    # a failed one
    f = nexd.deploy_ok(name="mismatch", artifact=nexd.program("hello"), sha256="1" * 64)
    nexd.wait_state(f["id"], "failed")
    check(nexd.get(f"/v1/workloads/{f['id']}"), "get", "/v1/workloads/{id}")


def test_problem_responses_match(nexd):
    p = check(nexd.deploy(artifact=nexd.program("hello")), "post", "/v1/workloads")
    assert p["status"] == 422 and p["field"] == "name"
    p = check(nexd.deploy(name="x", artifact="gopher://127.0.0.1:9/x"), "post", "/v1/workloads")
    assert p["status"] == 422 and p["field"] == "artifact"
    r = nexd.post("/v1/workloads", data=b"{", headers={"Content-Type": "application/json"})
    assert check(r, "post", "/v1/workloads")["status"] == 400
    unknown = "00000000-0000-4000-8000-000000000000"
    assert check(nexd.get(f"/v1/workloads/{unknown}"), "get", "/v1/workloads/{id}")["status"] == 404
    assert check(nexd.delete(f"/v1/workloads/{unknown}"), "delete", "/v1/workloads/{id}")["status"] == 404
    assert check(nexd.get(f"/v1/workloads/{unknown}/logs"), "get", "/v1/workloads/{id}/logs")["status"] == 404
    assert check(nexd.get("/v1/workloads", params={"state": "nope"}), "get", "/v1/workloads")["status"] == 422
    assert check(nexd.request("PUT", "/v1/workloads"), "post", "/v1/workloads")["status"] == 405

    # an unknown route has no operation: its problem must still be a documented ProblemDetails
    r = nexd.get("/v1/nope")
    assert r.status_code == 404
    errors = schema_errors({"$ref": "#/components/schemas/ProblemDetails"}, r.json())
    assert not errors, errors


def test_redocly_lint():
    """@redocly/cli (installed by scripts/setup with npm ci) finds neither errors nor warnings (rules in
    redocly.yaml); it runs offline: no telemetry, no update check."""
    redocly = REPO / "node_modules" / ".bin" / "redocly"
    if not redocly.exists():
        pytest.skip("node_modules/.bin/redocly is missing: run scripts/setup (npm ci)")
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true")
    r = subprocess.run([str(redocly), "lint", "openapi.yaml"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "is valid" in out and "warning" not in out.split("validating openapi.yaml")[-1].lower(), out


def test_served_spec_and_docs(nexd):
    r = nexd.get("/openapi.yaml", auth=None)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/yaml")
    assert yaml.safe_load(r.text) == SPEC, "nexd serves another openapi.yaml than the one in the tree"
    d = nexd.get("/docs", auth=None)
    assert d.status_code == 200 and d.headers["Content-Type"].startswith("text/html")
    for method, path, op in operations():
        assert f'id="op-{op["operationId"]}"' in d.text, f"/docs lacks {method} {path}"
    # offline: nothing is loaded from elsewhere
    assert "<script" not in d.text and "http://" not in d.text.replace('href="/openapi.yaml"', "") \
        and "https://" not in d.text


def test_hook_refuses_what_is_not_documented(nexd):
    """conftest.py holds every answer to the spec with contract.check_any: it must notice an extra field, a
    nested one, an undocumented status and a wrong content type."""
    import json as _json
    from contract import check_any
    r = nexd.get("/v1/node")
    original = r._content
    for change in ({"extra": 1}, {"workloads": dict(r.json()["workloads"], extra=1)}):
        r._content = _json.dumps(dict(r.json(), **change)).encode()
        with pytest.raises(AssertionError):
            check_any(r)
    r._content = original
    r.status_code = 418
    with pytest.raises(AssertionError):
        check_any(r)
    r.status_code = 200
    r.headers["Content-Type"] = "text/plain"
    with pytest.raises(AssertionError):
        check_any(r)


def test_every_path_refuses_other_methods(nexd):
    """A method a path does not have is 405 with an Allow header listing exactly the documented ones."""
    filler = {"id": "00000000-0000-4000-8000-000000000000", "sha256": "0" * 64}
    for template, item in SPEC["paths"].items():
        path = template
        for name, value in filler.items():
            path = path.replace("{" + name + "}", value)
        if template == "/v1/tokens/{id}":
            path = "/v1/tokens/0123456789abcdef"
        if template == "/v1/images/{digest}":
            path = "/v1/images/sha256:" + "0" * 64
        r = nexd.request("PATCH", path, json={})
        assert r.status_code == 405, (template, r.status_code, r.text)
        allowed = {m.strip().lower() for m in r.headers["Allow"].split(",")}
        assert allowed == {m for m in item if m in ("get", "put", "post", "delete", "patch")}, (template, allowed)


def test_every_schema_is_used():
    text = SPEC_PATH.read_text()
    unused = [n for n in SPEC["components"]["schemas"] if f"#/components/schemas/{n}\"" not in text]
    assert not unused, f"schemas defined but never referenced: {unused}"
