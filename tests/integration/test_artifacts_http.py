# SPDX-License-Identifier: Apache-2.0
"""test_artifacts_http.py — deploying from http:// URLs (libcurl), against a real HTTP server the test runs.

The server is Python's http.server on a loopback port, in a thread of the test: it serves the static hello, a
redirect to it, a redirect to a file:// URL (which libcurl must not follow), a 404, and a body that is not an
ELF file.  What lands in nexd's artifact cache is checked on disk.
"""

import http.server
import threading

import pytest

from conftest import file_sha256, program_path

HELLO = program_path("hello")


class Handler(http.server.BaseHTTPRequestHandler):
    hits = []

    def do_GET(self):
        Handler.hits.append(self.path)
        if self.path == "/hello":
            body = HELLO.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/hello")
            self.end_headers()
        elif self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
        elif self.path == "/text":
            body = b"#!/bin/sh\necho not an ELF\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_deploy_from_http(nexd, web):
    sha = file_sha256(HELLO)
    w = nexd.deploy_ok(name="web-hello", artifact=f"{web}/hello", sha256=sha)
    w = nexd.wait_state(w["id"], "exited")
    assert w["exit_code"] == 3 and w["digest"] == sha, w
    assert nexd.log_texts(w["id"], "stdout")[0] == "hello from nex"
    assert (nexd.data_dir / "artifacts" / sha).read_bytes() == HELLO.read_bytes()


def test_redirect_is_followed(nexd, web):
    Handler.hits.clear()
    w = nexd.deploy_ok(name="moved", artifact=f"{web}/moved")
    assert nexd.wait_state(w["id"], "exited")["exit_code"] == 3
    assert Handler.hits == ["/moved", "/hello"], Handler.hits


@pytest.mark.parametrize("path, needle", [
    ("/missing", "the server answered HTTP 404"),
    ("/to-file", "fetch `"),                       # a redirect to file:// is not followed
    ("/text", "not an ELF file"),
])
def test_bad_sources_fail_the_workload(nexd, web, path, needle):
    w = nexd.deploy_ok(name="bad", artifact=f"{web}{path}")
    w = nexd.wait_state(w["id"], "failed")
    assert needle in w["reason"], w["reason"]
    leftovers = [p.name for p in (nexd.data_dir / "artifacts").iterdir()]
    assert leftovers == [], leftovers


def test_wrong_digest_fails(nexd, web):
    w = nexd.deploy_ok(name="wrong", artifact=f"{web}/hello", sha256="0" * 64)
    w = nexd.wait_state(w["id"], "failed")
    assert "sha256 mismatch" in w["reason"], w["reason"]


def test_nobody_listening_fails_with_the_reason(nexd):
    w = nexd.deploy_ok(name="nobody", artifact="http://127.0.0.1:9/x")
    w = nexd.wait_state(w["id"], "failed")
    assert "Couldn't connect" in w["reason"] or "Failed to connect" in w["reason"], w["reason"]


@pytest.mark.parametrize("url", ["http:///x", "http:x", "https://[::1/x", "http://"])
def test_malformed_urls_are_refused(nexd, url):
    r = nexd.deploy(name="m", artifact=url)
    assert r.status_code == 422 and r.json()["field"] == "artifact", r.text
    assert nexd.workloads()["count"] == 0
