# SPDX-License-Identifier: Apache-2.0
"""conftest.py — fixtures of Nex's integration suite: a real nexd, started and stopped for each test.

The suite drives the real daemon over HTTP, as a client would.  Each test that takes the `nexd` fixture gets a
nexd of its own, listening on a free loopback port with a fresh data directory, and a small client (`Nex`) for it.
On teardown every workload still running is stopped, nexd gets SIGTERM and must exit 0 within 10 s: a daemon
that does not shut down cleanly (or that a sanitizer stopped) fails the test.

Auth: a fresh nexd makes an admin token at its first start (DATA_DIR/admin.token); the client sends it with every
request unless a test says otherwise (`auth=None`, or another token), and passes it to the CLI as NEX_TOKEN.
Contract: every answer the client receives is checked against openapi.yaml (contract.check_any).

Where things are:
  - the build directory: $NEX_BUILD_DIR (relative to the repository root), default `build`; the repository root
    itself when it holds an in-tree build and build/ does not exist;
  - per test, test-output/<test>/ ($NEX_TEST_OUTPUT overrides test-output) keeps nexd's stderr (nexd.log, then
    nexd-2.log... after restarts) and `data`, a link to the data directory.  The data directory itself lives
    under /tmp because nexd puts unix sockets inside it and their paths must stay short; it is removed after a
    test that passed unless NEX_KEEP_DATA=1.

The whole suite is skipped, with the reason, when not run as root or when user namespaces are unavailable: nexd
needs both to make sandboxes.

NexdProcess and Nex do not depend on pytest, so tests/bench/deploy-latency uses them too.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

import pytest
import requests

import contract

REPO = Path(__file__).resolve().parents[2]
TERMINAL_STATES = ("exited", "failed", "stopped")
REQUEST_TIMEOUT_S = 10


def build_dir():
    """The build directory holding nexd and the test programs."""
    env = os.environ.get("NEX_BUILD_DIR")
    if env:
        return (REPO / env).resolve()
    if not (REPO / "build").is_dir() and (REPO / "nexd").exists():
        return REPO
    return REPO / "build"


def sanitized_build():
    """True for a build with --enable-sanitizers: its memory figures (ASan's shadow and quarantine) say nothing about
    nexd's own, so tests that bound memory relax there."""
    try:
        return "#define NEX_SANITIZERS 1" in (build_dir() / "autoconfig.h").read_text()
    except OSError:
        return False


def program_path(name):
    """Absolute path of a test workload built from tests/programs/NAME.c."""
    return build_dir() / "tests" / "programs" / name


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def free_port():
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_time(text):
    """Parses an RFC 3339 timestamp (with Z or an offset) into an aware datetime; raises ValueError otherwise."""
    if not isinstance(text, str) or not re.fullmatch(
        r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", text
    ):
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    text = re.sub(r"[Zz]$", "+00:00", text)
    # fromisoformat of Python 3.10 accepts only 3 or 6 fraction digits.
    m = re.match(r"(.*\.)(\d+)(.*)", text)
    if m:
        text = m.group(1) + (m.group(2) + "000000")[:6] + m.group(3)
    return datetime.fromisoformat(text.replace("t", "T"))


def userns_problem():
    """None when this process can make user namespaces (as nexd will), else why not."""
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read().strip() or 0) == 0:
                return "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)"
    except OSError:
        pass
    unshare = shutil.which("unshare")
    if unshare is None:
        return None  # cannot check more closely; nexd will tell
    r = subprocess.run([unshare, "--user", "--map-root-user", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a user namespace: {r.stderr.strip() or 'unshare exit ' + str(r.returncode)}"
    return None


def skip_reason():
    if os.geteuid() != 0:
        return "the integration suite needs root (nexd makes namespaces and mounts)"
    return userns_problem()


def nexd_environment():
    """This process's environment without NEX_* variables: nexd reads its options from those, and a test's nexd
    must be configured by its flags alone (the suite's own NEX_BUILD_DIR etc. are no options of nexd)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NEX_")}


class NexdError(AssertionError):
    pass


class NexdProcess:
    """One nexd process: started on a port with a data dir, its stderr going to a log file.  BINARY is the nexd to
    run (default: the build directory's; test_install.py runs an installed one)."""

    def __init__(self, data_dir, log_path, port=None, extra_args=(), binary=None):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.binary = Path(binary) if binary else build_dir() / "nexd"
        self.extra_args = list(extra_args)
        self.proc = None
        self.returncode = None
        self.token = None  # the admin token nexd made at its first start (DATA_DIR/admin.token)

    def read_token(self):
        """The admin token nexd wrote at its first start (None when it has none: e.g. --admin-token given)."""
        try:
            self.token = (self.data_dir / "admin.token").read_text().strip() or None
        except OSError:
            self.token = None
        return self.token

    def auth_headers(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def log_tail(self, n=40):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def start(self, timeout=15):
        """Starts nexd and waits until GET /readyz answers 200; then reads its admin token."""
        if not self.binary.exists():
            raise NexdError(f"nexd is not built at {self.binary} (run scripts/setup)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "--listen", f"127.0.0.1:{self.port}",
            "--data-dir", str(self.data_dir),
            "--log-level", "debug",
        ] + self.extra_args
        with open(self.log_path, "ab") as log:
            log.write(("# " + " ".join(argv) + "\n").encode())
            log.flush()
            # a process group of its own, as a shell gives a command it starts: a test can signal nexd's group
            # (as a Ctrl-C on its terminal would) without signalling pytest
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.data_dir,
                                         env=nexd_environment(), process_group=0)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise NexdError(f"nexd exited with status {rc} while starting; log:\n{self.log_tail()}")
            try:
                r = requests.get(self.base + "/readyz", timeout=1)
                if r.status_code == 200:
                    self.read_token()
                    return self
                last = f"GET /readyz answered {r.status_code}"
            except requests.RequestException as e:
                last = str(e)
            time.sleep(0.05)
        self.kill()
        raise NexdError(f"nexd did not answer GET /readyz within {timeout} s ({last}); log:\n{self.log_tail()}")

    def stop(self, timeout=10):
        """Sends SIGTERM and waits; returns the exit status, or raises when nexd does not exit in time."""
        if self.proc is None or self.returncode is not None:
            return self.returncode
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise NexdError(f"nexd did not exit within {timeout} s of SIGTERM; log:\n{self.log_tail()}")
        self.returncode = rc
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def sanitizer_reports(self):
        """Lines of the log where AddressSanitizer, LeakSanitizer or UBSan reported something."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        pattern = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer")
        return [line for line in text.splitlines() if pattern.search(line)]


class Nex:
    """A client of one nexd (and its process, so a test can restart it)."""

    def __init__(self, out_dir, data_dir, extra_args=(), binary=None):
        self.out_dir = Path(out_dir)
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)  # more nexd flags, for every start
        self.binary = binary  # the nexd to run (None: the build directory's)
        self.processes = []
        self.daemon = None

    # --- the daemon -------------------------------------------------------------------------------------------
    def start(self, extra_args=()):
        """Starts nexd (EXTRA_ARGS are more nexd flags, e.g. ["--max-artifact-bytes", "4096"])."""
        n = len(self.processes) + 1
        log = self.out_dir / ("nexd.log" if n == 1 else f"nexd-{n}.log")
        self.daemon = NexdProcess(self.data_dir, log, extra_args=[*self.extra_args, *extra_args], binary=self.binary)
        self.processes.append(self.daemon)
        self.daemon.start()
        return self

    def stop(self):
        """Stops nexd (SIGTERM) and asserts it exited 0 within 10 s without sanitizer reports."""
        d = self.daemon
        rc = d.stop()
        assert rc == 0, f"nexd exited with status {rc} after SIGTERM; log:\n{d.log_tail()}"
        reports = d.sanitizer_reports()
        assert not reports, "sanitizer reports in nexd's log:\n" + "\n".join(reports[:20])

    def restart(self, extra_args=()):
        """Stops nexd (which must exit 0) and starts a new one on the same data dir."""
        self.stop()
        return self.start(extra_args)

    @property
    def base(self):
        return self.daemon.base

    @property
    def pid(self):
        return self.daemon.proc.pid

    # --- HTTP -------------------------------------------------------------------------------------------------
    def url(self, path):
        return self.base + path

    @property
    def token(self):
        """The node's admin token; requests carry it unless a test passes its own Authorization (or auth=None)."""
        return self.daemon.token

    def request(self, method, path, auth="admin", **kw):
        """One request; AUTH "admin" sends the node's admin token, None nothing, any other string that token.
        Every answer is held to openapi.yaml (contract.check_any): an undocumented status, content type, header
        or field fails the test that received it."""
        kw.setdefault("timeout", REQUEST_TIMEOUT_S)
        kw.setdefault("allow_redirects", False)
        headers = dict(kw.pop("headers", None) or {})
        token = self.token if auth == "admin" else auth
        if token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {token}"
        r = requests.request(method, self.url(path), headers=headers, **kw)
        contract.check_any(r)
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # --- the CLI ----------------------------------------------------------------------------------------------
    def cli(self, *args, env=None, timeout=30, **kw):
        """Runs the real `nex` CLI against this nexd (NEX_SERVER points at it); returns the CompletedProcess with
        text stdout and stderr.  ENV adds to (or, with None values, removes from) the environment."""
        full = {k: v for k, v in os.environ.items() if not k.startswith("NEX_")}
        full["NEX_SERVER"] = self.base
        if self.token:
            full["NEX_TOKEN"] = self.token
        for k, v in (env or {}).items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        if "input" not in kw:
            kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run([str(build_dir() / "nex")] + [str(a) for a in args], env=full, capture_output=True,
                              text=True, timeout=timeout, **kw)

    # --- workloads --------------------------------------------------------------------------------------------
    @staticmethod
    def program(name):
        """The file:// artifact URL of a test workload (which must have been built)."""
        path = program_path(name)
        assert path.exists(), f"{path} is not built (scripts/setup builds it, or `make check TESTS=` in the build dir)"
        return "file://" + str(path)

    def deploy(self, **fields):
        """POST /v1/workloads with FIELDS as the JSON body; returns the response."""
        return self.post("/v1/workloads", json=fields)

    def deploy_ok(self, **fields):
        """Deploys and asserts 202; returns the workload."""
        r = self.deploy(**fields)
        assert r.status_code == 202, f"deploy answered {r.status_code}: {r.text}"
        return r.json()

    def workload(self, wid):
        r = self.get(f"/v1/workloads/{wid}")
        assert r.status_code == 200, f"GET /v1/workloads/{wid} answered {r.status_code}: {r.text}"
        return r.json()

    def workloads(self, **params):
        r = self.get("/v1/workloads", params=params)
        assert r.status_code == 200, f"GET /v1/workloads answered {r.status_code}: {r.text}"
        return r.json()

    def logs(self, wid, tail=None):
        params = {} if tail is None else {"tail": tail}
        r = self.get(f"/v1/workloads/{wid}/logs", params=params)
        assert r.status_code == 200, f"GET logs answered {r.status_code}: {r.text}"
        return r.json()

    def log_texts(self, wid, stream=None):
        return [l["text"] for l in self.logs(wid)["lines"] if stream is None or l["stream"] == stream]

    def wait_state(self, wid, states, timeout=15, interval=0.05):
        """Polls GET every 50 ms until the workload is in one of STATES; returns it.  Fails the test on timeout
        or when the workload reaches a terminal state that is not wanted."""
        if isinstance(states, str):
            states = (states,)
        deadline = time.monotonic() + timeout
        while True:
            w = self.workload(wid)
            if w["state"] in states:
                return w
            if w["state"] in TERMINAL_STATES:
                raise AssertionError(
                    f"workload {wid} ended {w['state']} (reason {w.get('reason')!r}) while waiting for {states}; "
                    f"workload: {json.dumps(w)}; logs: {self._logs_for_message(wid)}"
                )
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"workload {wid} still {w['state']} after {timeout} s, waiting for {states}; "
                    f"logs: {self._logs_for_message(wid)}"
                )
            time.sleep(interval)

    def wait_log(self, wid, text, timeout=10):
        """Waits until a log line of the workload contains TEXT; returns that line."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.logs(wid)["lines"]:
                if text in line["text"]:
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(f"no log line with {text!r} after {timeout} s; logs: {self._logs_for_message(wid)}")
            time.sleep(0.05)

    def _logs_for_message(self, wid):
        try:
            return json.dumps(self.logs(wid)["lines"])[:4000]
        except Exception as e:  # the message is for a failure already happening: never hide it
            return f"(logs unavailable: {e})"

    def stop_all_workloads(self, timeout=10):
        """Stops every workload not yet ended (so that a test leaves nothing running) and waits for them."""
        try:
            listed = self.workloads()["workloads"]
        except Exception:
            return
        live = [w["id"] for w in listed if w.get("state") not in TERMINAL_STATES]
        for wid in live:
            self.delete(f"/v1/workloads/{wid}", params={"grace_s": 1})
        deadline = time.monotonic() + timeout
        for wid in live:
            while time.monotonic() < deadline:
                try:
                    if self.workload(wid)["state"] in TERMINAL_STATES:
                        break
                except Exception:
                    break
                time.sleep(0.05)

    def abort(self):
        """Kills every nexd this client started, asserting nothing (for a start that already failed)."""
        for p in self.processes:
            p.kill()

    def close(self):
        """Teardown: stop the workloads, then nexd (asserting a clean exit)."""
        if self.daemon is None or self.daemon.proc is None:
            return
        if self.daemon.proc is not None and self.daemon.proc.poll() is None:
            self.stop_all_workloads()
        self.stop()


def safe_name(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:100]


def output_root():
    return Path(os.environ.get("NEX_TEST_OUTPUT") or (REPO / "test-output"))


def make_nex(out_name, extra_args=(), binary=None):
    """A Nex with a fresh output dir test-output/OUT_NAME and a fresh data dir (linked there as `data`); nexd gets
    EXTRA_ARGS as more flags; BINARY is the nexd to run (default: the build directory's)."""
    out_dir = output_root() / safe_name(out_name)
    if out_dir.exists():
        shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="nex-test-"))
    data_dir.chmod(0o755)  # as a data dir nexd made itself would be, not mkdtemp's 0700
    (out_dir / "data").symlink_to(data_dir)
    return Nex(out_dir, data_dir, extra_args, binary)


def finish_nex(nex, passed):
    """Teardown shared by the fixtures: stop nexd (its failure raises), then drop the data dir of a passed test."""
    try:
        nex.close()
    finally:
        nex.abort()
        if passed and os.environ.get("NEX_KEEP_DATA") != "1":
            shutil.rmtree(nex.data_dir, ignore_errors=True)
            try:
                (nex.out_dir / "data").unlink()
            except OSError:
                pass


def wait_until(predicate, timeout=10, interval=0.05, what="condition"):
    """Calls PREDICATE every INTERVAL seconds until it returns something true, and returns that; fails the test
    (naming WHAT) after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def start_test_nex(request, args=()):
    """A started nexd of the calling test's own (output under test-output/<module>.<test>), with more flags ARGS;
    skips the test when nexd cannot run here.  Pair with finish_test_nex."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    return started_nex(f"{module}.{request.node.name}", args)


def started_nex(out_name, args=()):
    """make_nex (OUT_NAME, ARGS), started; one that fails to start is cleaned up before the error goes on."""
    nex = make_nex(out_name, extra_args=args)
    try:
        nex.start()
    except Exception:
        nex.abort()
        raise
    return nex


def rss_kb(pid):
    """The resident set of process PID in KiB (0 when /proc does not say)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def finish_test_nex(request, nex):
    """Tears down what start_test_nex started; keeps the data dir when the test failed."""
    rep = getattr(request.node, "rep_call", None)
    finish_nex(nex, passed=rep is not None and rep.passed)


# --- pytest wiring -----------------------------------------------------------------------------------------------
NEXD_FIXTURES = {"nexd", "nexd_module"}


def pytest_collection_modifyitems(config, items):
    reason = skip_reason()
    if reason is None:
        return
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if NEXD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter):
    """Says which documented statuses no test received (the contract hook records what it checked)."""
    if not contract.SEEN:
        return
    missing = contract.unseen()
    terminalreporter.write_line(f"contract: {len(contract.SEEN)} documented (operation, status) pairs were "
                                f"answered; {len(missing)} were not: "
                                + ", ".join(f"{m.upper()} {p} {s}" for m, p, s in missing))


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures know whether the test itself passed (to keep the data of failed ones).
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _test_passed(node):
    rep = getattr(node, "rep_call", None)
    return rep is not None and rep.passed


@pytest.fixture
def nexd(request):
    """A running nexd of this test's own; yields its client (Nex)."""
    module = request.node.module.__name__.rsplit(".", 1)[-1]
    nex = started_nex(f"{module}.{request.node.name}")
    yield nex
    finish_nex(nex, passed=_test_passed(request.node))


@pytest.fixture(scope="module")
def nexd_module(request):
    """One nexd shared by the tests of a module (for many small checks against one daemon)."""
    nex = started_nex(request.module.__name__.rsplit(".", 1)[-1])
    yield nex
    failed = any(getattr(i, "rep_call", None) is not None and i.rep_call.failed
                 for i in request.session.items if i.module is request.module)
    finish_nex(nex, passed=not failed)


def url_path(location):
    """The path of a Location header value, whether given as a path or as an absolute URL."""
    return urllib.parse.urlsplit(location).path
