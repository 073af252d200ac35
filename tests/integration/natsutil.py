# SPDX-License-Identifier: Apache-2.0
"""natsutil.py — a real nats-server for the NATS tests, and nats.js (tests/integration/nats-client.mjs) as the
independent client that talks to nexd over it.

NatsServer starts Debian's `nats-server -js` on a free loopback port with its own JetStream store directory, and
can be killed and started again on the same port and store (to test reconnects).  NatsClient runs the Node.js
client for one request, a collection of replies, or a background subscription (Subscriber) whose messages are
read as JSON lines.  `skip_reason()` says why the NATS tests cannot run here (no nats-server, no node, npm
packages not installed by scripts/setup), so that they skip instead of failing.
"""

import json
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from conftest import REPO, free_port, wait_until

CLIENT = REPO / "tests" / "integration" / "nats-client.mjs"
NODE_MODULES = REPO / "node_modules"


def skip_reason():
    if shutil.which("nats-server") is None:
        return "nats-server is not installed (scripts/setup installs Debian's)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_MODULES / "nats").is_dir() or not (NODE_MODULES / "nkeys.js").is_dir():
        return "npm packages nats and nkeys.js are not installed (scripts/setup runs npm ci)"
    return None


class NatsServer:
    def __init__(self, out_dir, port=None, args=()):
        self.args = list(args)
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = Path(tempfile.mkdtemp(prefix="nex-nats-js-"))
        self.log_path = Path(out_dir) / f"nats-server-{self.port}.log"
        self.proc = None

    def start(self, timeout=10):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), *self.args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nats-server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nats-server did not listen on {self.port} within {timeout} s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        self.kill()
        shutil.rmtree(self.store, ignore_errors=True)


class Subscriber:
    """A background nats.js subscription; messages arrive as dicts {subject, data} on a queue."""

    def __init__(self, proc):
        self.proc = proc
        self.messages = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                self.messages.put(json.loads(line))

    def take(self, count, timeout=15, predicate=None):
        """Waits for COUNT messages (that match PREDICATE); returns them in arrival order."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {len(got)} of {count} messages in {timeout} s: {got}")
            try:
                m = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if predicate is None or predicate(m):
                got.append(m)
        return got

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class NatsClient:
    def __init__(self, url):
        self.url = url

    def run(self, *args, timeout=30, check=True):
        r = subprocess.run(["node", str(CLIENT), self.url, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout, cwd=REPO)
        if check and r.returncode != 0:
            raise AssertionError(f"nats-client {args[0]} failed: {r.stderr.strip()}")
        return r

    def request(self, subject, payload="", timeout_ms=5000, headers=None):
        """One request (with HEADERS, a dict, when given); returns the parsed reply envelope."""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        extra = [json.dumps(headers)] if headers else []
        return json.loads(self.run("request", subject, body, timeout_ms, *extra).stdout)

    def collect(self, subject, payload="", wait_ms=700):
        """Publishes with a reply inbox and returns every reply that came within WAIT_MS."""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        return json.loads(self.run("collect", subject, body, wait_ms).stdout)

    def subscribe(self, subject, timeout_s=120):
        proc = subprocess.Popen(["node", str(CLIENT), self.url, "sub", subject, "0", str(timeout_s * 1000)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, cwd=REPO)
        line = proc.stdout.readline()
        if line.strip() != "READY":
            proc.kill()
            raise AssertionError(f"subscriber did not start: {line!r}")
        return Subscriber(proc)


def ok_data(envelope, op):
    """Asserts ENVELOPE is a successful nex reply of OP; returns its data."""
    assert envelope["type"] == f"io.nats.nex.v1.{op}_response", envelope
    assert envelope.get("error") is None, envelope
    return envelope["data"]


def error_text(envelope, op):
    """Asserts ENVELOPE is an error reply of OP; returns the error."""
    assert envelope["type"] == f"io.nats.nex.v1.{op}_response", envelope
    assert isinstance(envelope.get("error"), str) and envelope["error"], envelope
    assert envelope.get("data") is None, envelope
    return envelope["error"]


# --- fixtures (imported by the test_nats_* modules) ------------------------------------------------------------
import pytest  # noqa: E402

import conftest  # noqa: E402


@pytest.fixture
def nats_server(request):
    """A fresh nats-server with JetStream for this test."""
    reason = skip_reason() or conftest.skip_reason()
    if reason:
        pytest.skip(reason)
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    out = conftest.output_root() / conftest.safe_name(f"{module}.{request.node.name}")
    server = NatsServer(out).start()
    yield server
    server.stop()


def start_node(request, server, name="nexd", extra=()):
    """A nexd joined to SERVER, with its own data dir; stopped (and checked) at teardown."""
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    nex = conftest.make_nex(f"{module}.{request.node.name}.{name}")
    nex.extra_args = ["--nats", server.url, *extra]
    try:
        nex.start()
    except Exception:
        nex.abort()
        raise
    request.addfinalizer(lambda: conftest.finish_nex(nex, passed=conftest._test_passed(request.node)))
    return nex


def node_id(nex):
    return nex.get("/v1/node").json()["id"]


def wait_for(predicate, timeout=15, interval=0.1, what="condition"):
    """conftest.wait_until with the longer defaults NATS round trips want."""
    return wait_until(predicate, timeout, interval, what)


def keypair(c, kind):
    """A new key of KIND (curve, account, user) made by nkeys.js: {seed, public}."""
    return json.loads(c.run(kind).stdout)
