# SPDX-License-Identifier: Apache-2.0
"""test_notify.py — nexd as a systemd Type=notify service: what it tells $NOTIFY_SOCKET, and when.

The test plays the service manager: it binds a datagram socket (a path, or an abstract name, as systemd may
use either), starts nexd with NOTIFY_SOCKET naming it, and checks that READY=1 arrives only once the API answers
(GET /healthz, tried once, right when READY=1 is read), with a STATUS= line, and that SIGTERM brings STOPPING=1
before nexd exits 0.  A NOTIFY_SOCKET nexd cannot use is logged, and the node runs all the same.
"""

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from conftest import build_dir, free_port, output_root, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def start_nexd(tmp, notify_socket, log_name):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEX_")}
    env["NOTIFY_SOCKET"] = notify_socket
    out = output_root() / "test_notify"
    out.mkdir(parents=True, exist_ok=True)
    log = open(out / log_name, "wb")
    proc = subprocess.Popen([str(build_dir() / "nexd"), "--listen", f"127.0.0.1:{port}", "--data-dir",
                             str(Path(tmp) / "data")], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            cwd=tmp)
    log.close()
    return proc, port, out / log_name


def receive(sock, timeout):
    """The next datagram on SOCK as text, or None after TIMEOUT seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except socket.timeout:
        return None


def fields(datagram):
    return dict(line.split("=", 1) for line in datagram.splitlines() if "=" in line)


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_once_the_api_answers_and_stopping_on_sigterm(kind):
    with tempfile.TemporaryDirectory(prefix="nex-notify-") as tmp:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if kind == "path":
            name = str(Path(tmp) / "notify")
            sock.bind(name)
        else:
            name = f"@nex-test-notify-{os.getpid()}"
            sock.bind("\0" + name[1:])
        proc, port, log = start_nexd(tmp, name, f"nexd-{kind}.log")
        try:
            ready = receive(sock, 20)
            assert ready is not None, f"no notification within 20 s; log:\n{log.read_text()[-2000:]}"
            # The first datagram is READY=1, and the API answers right now: one try, no retry.
            assert fields(ready).get("READY") == "1", ready
            r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            assert r.status_code == 200, r.text
            assert "STATUS" in fields(ready) and str(port) in fields(ready)["STATUS"], ready

            proc.send_signal(signal.SIGTERM)
            stopping = receive(sock, 10)
            assert stopping is not None and fields(stopping).get("STOPPING") == "1", stopping
            assert proc.wait(10) == 0
            assert receive(sock, 0.2) is None, "more notifications after STOPPING=1"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()


def test_unusable_notify_socket_is_logged_and_the_node_runs():
    with tempfile.TemporaryDirectory(prefix="nex-notify-") as tmp:
        proc, port, log = start_nexd(tmp, "relative/notify", "nexd-unusable.log")
        try:
            deadline = time.monotonic() + 15
            answered = False
            while time.monotonic() < deadline and proc.poll() is None and not answered:
                try:
                    answered = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
                except requests.RequestException:
                    time.sleep(0.05)
            assert answered, f"nexd did not come up; log:\n{log.read_text()[-2000:]}"
            assert "the service manager will not be notified" in log.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
