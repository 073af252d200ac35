# SPDX-License-Identifier: Apache-2.0
"""contract.py — openapi.yaml as the integration suite holds nexd to it.

Loaded once with PyYAML; schemas are checked with jsonschema's Draft 2020-12 validator (OpenAPI 3.1's dialect),
each inside a document carrying the spec's components so that `#/components/...` references resolve.

check(r, method, template) asserts that one response is what the spec documents for that operation: a documented
status, content type and headers, and (for JSON) a body valid against the schema with no undocumented field.
check_any(r) finds the operation from the request itself; conftest.py runs it on every response the Nex client
receives, so that every integration test is also a contract test.
"""

import copy
import urllib.parse
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
JSON_TYPES = ("application/json", "application/problem+json")


def pointer(ref):
    """The object a local reference ("#/a/b") names in the spec."""
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node = SPEC
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved reference {ref}"
        node = node[part]
    return node


def resolve(obj):
    """Follows OpenAPI-level references (responses, parameters, examples) to the object itself."""
    while isinstance(obj, dict) and "$ref" in obj:
        obj = pointer(obj["$ref"])
    return obj


def validator(schema):
    root = copy.deepcopy(schema)
    root["components"] = SPEC["components"]
    return Draft202012Validator(root, format_checker=FormatChecker())


def schema_errors(schema, instance):
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator(schema).iter_errors(instance)]


def declared_properties(schema):
    """Top-level property names a schema declares (through $ref and allOf; for oneOf/anyOf, any alternative's: the
    schema check has already required the body to match one)."""
    schema = resolve(schema)
    names = set(schema.get("properties", {}))
    for sub in schema.get("allOf", []) + schema.get("oneOf", []) + schema.get("anyOf", []):
        names |= declared_properties(sub)
    return names


def operations():
    for path, item in SPEC["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def walk(obj, where="#"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, f"{where}/{k}")
        yield where, obj
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk(v, f"{where}/{i}")


# --- nexd's answers ---------------------------------------------------------------------------------------------
SEEN = set()  # (method, template, status) of every answer checked in this run


def unseen():
    """The documented (method, path, status) that no answer of this run had."""
    documented = {(m, p, str(st)) for m, p, op in operations() for st in op["responses"]}
    return sorted(documented - SEEN)


def check(r, method, template):
    """Asserts that response R to METHOD on the path TEMPLATE is as openapi.yaml documents; returns its body."""
    op = SPEC["paths"][template][method]
    status = str(r.status_code)
    SEEN.add((method, template, status))
    assert status in op["responses"], (
        f"{method.upper()} {template} answered {status}, which is not documented "
        f"(documented: {sorted(op['responses'])}); body: {r.text[:300]}")
    documented = resolve(op["responses"][status])
    ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
    content = documented.get("content", {})
    assert ctype in content, f"{method.upper()} {template} {status}: content type {ctype!r} not in {list(content)}"
    for header, spec in documented.get("headers", {}).items():
        assert header in r.headers, f"{method.upper()} {template} {status}: no {header} header"
    if ctype not in JSON_TYPES:
        return r.text  # text/plain, application/yaml, text/html: the content type is what is documented
    body = r.json()
    schema = content[ctype]["schema"]
    errors = schema_errors(schema, body)
    assert not errors, f"{method.upper()} {template} {status} does not match its schema: {errors}; body: {body}"
    undocumented = set(body) - declared_properties(schema)
    assert not undocumented, f"{method.upper()} {template} {status}: undocumented fields {sorted(undocumented)}"
    return body


def match_template(path):
    """The spec's path template that PATH (a concrete path) matches, or None."""
    segs = path.strip("/").split("/")
    for template in SPEC["paths"]:
        tsegs = template.strip("/").split("/")
        if len(tsegs) == len(segs) and all(t.startswith("{") or t == s for t, s in zip(tsegs, segs)):
            return template
    return None


def check_any(r):
    """Asserts that response R is documented for the request that produced it (see the module comment)."""
    req = r.request
    method = req.method.lower()
    path = urllib.parse.urlsplit(req.url).path
    template = match_template(path)
    if template is not None and method in SPEC["paths"][template]:
        return check(r, method, template)
    # no such operation: only "no such resource" (404) or "not this method" (405, with Allow) are right
    assert r.status_code in (404, 405), f"{req.method} {path}: {r.status_code} for an undocumented operation"
    assert r.headers.get("Content-Type", "").startswith("application/problem+json")
    errors = schema_errors({"$ref": "#/components/schemas/ProblemDetails"}, r.json())
    assert not errors, f"{req.method} {path}: {errors}"
    if r.status_code == 405:
        assert "Allow" in r.headers
        if template is not None:
            # the spec documents "not this method" under each operation of the path
            SEEN.update((m, template, "405") for m in SPEC["paths"][template] if m in METHODS)
    return r.json()
