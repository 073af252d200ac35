#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""render-api-docs.py — renders openapi.yaml into one self-contained HTML page (no scripts, no fonts, no CDN),
which nexd embeds and serves at /docs.

Usage: render-api-docs.py openapi.yaml > api-docs.html

The page lists every operation by tag (method, path, summary, description, parameters, request body, responses
with their schemas), then every schema with its properties.  References become links inside the page.  All text
from the spec is HTML-escaped.
"""

import html
import json
import sys

import yaml

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def esc(v):
    return html.escape(str(v), quote=True)


def ref_name(ref):
    return ref.rsplit("/", 1)[-1]


def resolve(spec, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = spec
        for part in obj["$ref"][2:].split("/"):
            node = node[part]
        obj = node
    return obj


def schema_text(s):
    """A short description of schema S, with links for references."""
    if not isinstance(s, dict):
        return esc(s)
    if "$ref" in s:
        n = ref_name(s["$ref"])
        return f'<a href="#schema-{esc(n)}">{esc(n)}</a>'
    for k in ("oneOf", "anyOf", "allOf"):
        if k in s:
            return (" | " if k != "allOf" else " & ").join(schema_text(x) for x in s[k])
    t = s.get("type")
    if t == "array":
        return "array of " + schema_text(s.get("items", {}))
    if isinstance(t, list):
        t = " | ".join(map(str, t))
    if "enum" in s:
        return "one of " + ", ".join(f"<code>{esc(json.dumps(v))}</code>" for v in s["enum"])
    if "const" in s:
        return f"<code>{esc(json.dumps(s['const']))}</code>"
    out = esc(t or "any")
    if "format" in s:
        out += f" ({esc(s['format'])})"
    if "pattern" in s:
        out += f" matching <code>{esc(s['pattern'])}</code>"
    return out


def para(text):
    return "".join(f"<p>{esc(p)}</p>" for p in str(text or "").split("\n\n") if p.strip())


def render(spec):
    info = spec["info"]
    out = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
           f"<title>{esc(info['title'])} {esc(info['version'])}</title><style>",
           "body{font:15px/1.45 system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}",
           "code,pre{font-family:ui-monospace,monospace;font-size:90%} pre{background:#f5f5f5;padding:.6em;"
           "overflow:auto} .op{border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.5em 1em}",
           ".m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}",
           ".get{color:#06c}.post{color:#080}.delete{color:#c00}.put,.patch{color:#a60}",
           "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;"
           "text-align:left;vertical-align:top} nav a{margin-right:1em}</style></head><body>",
           f"<h1>{esc(info['title'])} <small>{esc(info['version'])}</small></h1>",
           f"<p><em>{esc(info.get('summary', ''))}</em></p>", para(info.get("description")),
           '<nav><a href="/openapi.yaml">openapi.yaml</a>']
    tags = [t["name"] for t in spec.get("tags", [])]
    out += [f'<a href="#tag-{esc(t)}">{esc(t)}</a>' for t in tags] + ['<a href="#schemas">schemas</a></nav>']
    for tag in tags:
        desc = next((t.get("description", "") for t in spec["tags"] if t["name"] == tag), "")
        out.append(f'<h2 id="tag-{esc(tag)}">{esc(tag)}</h2><p>{esc(desc)}</p>')
        for path, item in spec["paths"].items():
            shared = item.get("parameters", [])
            for m in METHODS:
                op = item.get(m)
                if not op or tag not in op.get("tags", []):
                    continue
                out.append(f'<div class=op id="op-{esc(op.get("operationId", ""))}">'
                           f'<h3><span class="m {m}">{m}</span> <code>{esc(path)}</code></h3>'
                           f'<p><strong>{esc(op.get("summary", ""))}</strong></p>{para(op.get("description"))}')
                if op.get("security") == []:
                    out.append("<p>No token needed.</p>")
                params = [resolve(spec, p) for p in shared + op.get("parameters", [])]
                if params:
                    out.append("<table><tr><th>parameter</th><th>in</th><th>schema</th><th>description</th></tr>")
                    for p in params:
                        req = " (required)" if p.get("required") else ""
                        out.append(f"<tr><td><code>{esc(p['name'])}</code>{req}</td><td>{esc(p['in'])}</td>"
                                   f"<td>{schema_text(p.get('schema', {}))}</td><td>{esc(p.get('description', ''))}</td></tr>")
                    out.append("</table>")
                body = resolve(spec, op.get("requestBody", {}))
                for ctype, media in body.get("content", {}).items():
                    out.append(f"<p>Request body <code>{esc(ctype)}</code>: {schema_text(media.get('schema', {}))}</p>")
                out.append("<table><tr><th>status</th><th>description</th><th>body</th></tr>")
                for status, resp in sorted(op.get("responses", {}).items()):
                    r = resolve(spec, resp)
                    bodies = ", ".join(f"<code>{esc(c)}</code> {schema_text(mm.get('schema', {}))}"
                                       for c, mm in r.get("content", {}).items())
                    out.append(f"<tr><td>{esc(status)}</td><td>{esc(r.get('description', ''))}</td><td>{bodies}</td></tr>")
                out.append("</table></div>")
    out.append('<h2 id="schemas">Schemas</h2>')
    for name, s in spec["components"]["schemas"].items():
        out.append(f'<div class=op id="schema-{esc(name)}"><h3>{esc(name)}</h3>{para(s.get("description"))}')
        props = s.get("properties")
        if props:
            required = set(s.get("required", []))
            out.append("<table><tr><th>property</th><th>schema</th><th>description</th></tr>")
            for p, ps in props.items():
                mark = " (required)" if p in required else ""
                out.append(f"<tr><td><code>{esc(p)}</code>{mark}</td><td>{schema_text(ps)}</td>"
                           f"<td>{esc(ps.get('description', '') if isinstance(ps, dict) else '')}</td></tr>")
            out.append("</table>")
        else:
            out.append(f"<p>{schema_text(s)}</p>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def main():
    with open(sys.argv[1]) as f:
        spec = yaml.safe_load(f)
    sys.stdout.write(render(spec))


if __name__ == "__main__":
    main()
