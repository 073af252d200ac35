# SPDX-License-Identifier: Apache-2.0
"""test_sandbox_tty.py — interactive exec on a terminal inside the sandbox, over a websocket, against a real nexd.

A static busybox runs as the workload (`sh -c 'ln -s /workload /tmp/sh; exec sleep 600'`: busybox picks its applet
from argv[0], and the link in the sandbox's /tmp gives it a shell's name).  `GET /v1/workloads/{id}/exec?cmd=/tmp/sh`
upgraded to a websocket gives a shell on a pseudo-terminal the agent allocated in the sandbox's own devpts: input
as binary frames, output back as binary frames, resizes and signals as JSON text messages, the exit status as the
last message.  Refusals come before the upgrade, as problem JSON held to openapi.yaml: a program the sandbox does
not hold (422), no or a weak token (401/403), an unknown (404) or ended (409) workload.  Hostile clients (oversized
frames, garbage control messages, many sessions, a client that vanishes mid-session) must not hurt nexd, and the
session of a client that vanished must be killed.  Last, `nex exec -it` is driven under a pseudo-terminal.
"""

import json
import os
import pty
import select
import socket
import subprocess
import time

import pytest
import requests
import websocket

from conftest import build_dir
from test_contract import check

BUSYBOX = "/bin/busybox"
EXEC = "/v1/workloads/{id}/exec"
HANDSHAKE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}

pytestmark = pytest.mark.skipif(
    not os.path.exists(BUSYBOX) or b"statically" not in subprocess.run(["file", "-L", BUSYBOX],
                                                                       capture_output=True).stdout,
    reason="needs a static /bin/busybox (busybox-static)")


def shell_workload(nexd, **fields):
    """A running busybox whose sandbox holds /tmp/sh (a link to busybox, so argv[0] names the shell)."""
    w = nexd.deploy_ok(name="busybox", artifact="file://" + BUSYBOX,
                       argv=["sh", "-c", "ln -s /workload /tmp/sh && echo ready && exec sleep 600"], **fields)
    nexd.wait_log(w["id"], "ready")
    return w["id"]


def ws_url(nexd, wid, query="cmd=/tmp/sh&tty=1"):
    return "ws" + nexd.base[len("http"):] + f"/v1/workloads/{wid}/exec?{query}"


def open_shell(nexd, wid, query="cmd=/tmp/sh&tty=1", token=None):
    return websocket.create_connection(ws_url(nexd, wid, query), timeout=20,
                                       header=[f"Authorization: Bearer {token or nexd.token}"])


class Session:
    """A websocket exec session: output accumulated from binary frames, text messages kept apart."""

    def __init__(self, ws):
        self.ws = ws
        self.out = b""
        self.messages = []
        self.close_code = None

    def send(self, text):
        self.ws.send_binary(text.encode())

    def control(self, **msg):
        self.ws.send(json.dumps(msg))

    def read_once(self):
        op, data = self.ws.recv_data()
        if op == websocket.ABNF.OPCODE_BINARY:
            self.out += data
        elif op == websocket.ABNF.OPCODE_TEXT:
            self.messages.append(json.loads(data))
        elif op == websocket.ABNF.OPCODE_CLOSE:
            self.close_code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
            return False
        return True

    def until(self, predicate, timeout=15):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; output so far: {self.out!r} {self.messages}"
            if not self.read_once():
                break
        return predicate()

    def until_text(self, text, timeout=15):
        start = len(self.out)
        assert self.until(lambda: text.encode() in self.out[start:], timeout), (text, self.out)

    def until_closed(self, timeout=15):
        self.until(lambda: self.close_code is not None, timeout)
        return self.close_code


def test_shell_on_a_terminal(nexd):
    wid = shell_workload(nexd)
    s = Session(open_shell(nexd, wid, "cmd=/tmp/sh&tty=1&cols=100&rows=30"))
    s.send("echo $((6*7))\n")
    s.until_text("42")
    s.send("stty size\n")
    s.until_text("30 100")
    s.control(type="resize", rows=50, cols=132)
    s.send("stty size\n")
    s.until_text("50 132")
    s.send("tty; echo \"term=$TERM\"\n")
    s.until_text("term=xterm")
    assert b"/dev/pts/" in s.out, s.out
    # the same sandbox: the workload's /tmp, its pid namespace (the agent is PID 1)
    s.send("ls /tmp; cat /proc/1/comm\n")
    s.until_text("nex-agent")
    # ^C through the terminal interrupts the foreground job, and the shell goes on
    s.send("sleep 30\n")
    time.sleep(0.5)
    s.send("\x03")
    s.send("echo after-$((1+1))\n")
    s.until_text("after-2", timeout=10)
    s.send("exit 3\n")
    assert s.until_closed() == 1000
    assert s.messages[-1] == {"type": "exit", "exit_code": 3, "signal": None, "lost_bytes": 0}, s.messages
    assert nexd.workload(wid)["state"] == "running"


def test_signal_message_and_bad_control(nexd):
    wid = shell_workload(nexd)
    s = Session(open_shell(nexd, wid))
    s.send("echo up\n")
    s.until_text("up")
    # garbage control messages are answered with an error message; the session goes on
    for bad in ("not json", "[1,2]", json.dumps({"type": "dance"}), json.dumps({"type": "resize", "rows": 0}),
                json.dumps({"type": "resize", "rows": "x", "cols": 10}), json.dumps({"type": "signal", "signal": "NOPE"}),
                json.dumps({"no": "type"})):
        s.ws.send(bad)
    s.until(lambda: len(s.messages) >= 7)
    assert all(m["type"] == "error" and m["message"] for m in s.messages), s.messages
    s.send("echo still-$((2+3))\n")
    s.until_text("still-5")
    # a signal message reaches the terminal's foreground process (here the shell itself)
    s.control(type="signal", signal="SIGKILL")
    assert s.until_closed() == 1000
    assert s.messages[-1]["type"] == "exit" and s.messages[-1]["signal"] == 9, s.messages


def handshake(nexd, wid, query, token="admin", headers=HANDSHAKE):
    hdrs = dict(headers)
    return nexd.get(f"/v1/workloads/{wid}/exec?{query}", headers=hdrs, auth=token)


def test_argv0_names_the_program_without_a_link(nexd):
    """cmd=/workload&argv0=sh: busybox, run under the name `sh`, is a shell, with no link in the sandbox."""
    w = nexd.deploy_ok(name="plain-busybox", artifact="file:///bin/busybox",
                       argv=["sh", "-c", "echo ready; exec sleep 600"])
    nexd.wait_log(w["id"], "ready", timeout=20)
    s = Session(open_shell(nexd, w["id"], "cmd=/workload&argv0=sh&tty=1"))
    s.send("echo $((6*7)); ls /tmp | wc -l\n")
    s.until_text("42")
    s.send("exit 4\n")
    assert s.until_closed() == 1000
    assert s.messages[-1]["type"] == "exit" and s.messages[-1]["exit_code"] == 4, s.messages
    # the same for the plain form
    out = nexd.post(f"/v1/workloads/{w['id']}/exec", json={"argv": ["/workload", "-c", "echo $0"], "argv0": "sh"}).json()
    assert out["stdout"] == "sh\n" and out["exit_code"] == 0, out
    for bad in ("", "x" * 256):
        r = nexd.post(f"/v1/workloads/{w['id']}/exec", json={"argv": ["/workload"], "argv0": bad})
        assert r.status_code == 422 and r.json()["field"] == "argv0", r.text
    r = handshake(nexd, w["id"], "cmd=/workload&argv0=&tty=1")
    assert r.status_code == 422 and check(r, "get", EXEC)["field"] == "argv0", r.text


def test_refusals_before_the_upgrade(nexd):
    wid = shell_workload(nexd)
    # a program the sandbox does not hold: 422 naming it, before any upgrade
    r = handshake(nexd, wid, "cmd=/bin/bash&tty=1")
    p = check(r, "get", EXEC)
    assert r.status_code == 422 and p["field"] == "argv[0]" and "/bin/bash" in p["detail"], p
    for query, field in (("tty=1", "cmd"), ("cmd=/tmp/sh&tty=0", "tty"), ("cmd=/tmp/sh&tty=yes", "tty"),
                         ("cmd=/tmp/sh&cols=0", "cols"), ("cmd=/tmp/sh&rows=100000", "rows"),
                         ("cmd=/tmp/sh&env=NOEQUALS", "env"), ("cmd=", "cmd")):
        r = handshake(nexd, wid, query)
        p = check(r, "get", EXEC)
        assert r.status_code == 422 and p["field"] == field, (query, p)
    # auth: none, a bad one, a read-only one (exec changes things: deploy is needed)
    assert check(handshake(nexd, wid, "cmd=/tmp/sh", token=None), "get", EXEC)["status"] == 401
    assert check(handshake(nexd, wid, "cmd=/tmp/sh", token="nex_bogus"), "get", EXEC)["status"] == 401
    reader = nexd.post("/v1/tokens", json={"name": "reader", "scopes": ["read"]}).json()["token"]
    assert check(handshake(nexd, wid, "cmd=/tmp/sh", token=reader), "get", EXEC)["status"] == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        open_shell(nexd, wid, token=reader)
    assert e.value.status_code == 403
    # ?access_token= works like the header (browsers cannot set headers on a websocket)
    ws = websocket.create_connection(ws_url(nexd, wid) + f"&access_token={nexd.token}", timeout=20)
    s = Session(ws)
    s.send("exit 0\n")
    assert s.until_closed() == 1000 and s.messages[-1]["exit_code"] == 0
    # a token limited to another namespace
    other = nexd.post("/v1/tokens", json={"name": "other", "scopes": ["deploy"], "namespaces": ["elsewhere"]})
    other = other.json()["token"]
    assert check(handshake(nexd, wid, "cmd=/tmp/sh", token=other), "get", EXEC)["status"] == 403
    # unknown workload; without a handshake (426)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert check(handshake(nexd, unknown, "cmd=/tmp/sh"), "get", EXEC)["status"] == 404
    r = nexd.get(f"/v1/workloads/{wid}/exec?cmd=/tmp/sh")
    assert check(r, "get", EXEC)["status"] == 426 and r.headers["Upgrade"] == "websocket"
    # an ended workload
    nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 1})
    nexd.wait_state(wid, "stopped")
    r = handshake(nexd, wid, "cmd=/tmp/sh")
    assert check(r, "get", EXEC)["status"] == 409


def test_static_workload_without_a_shell(nexd):
    w = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    nexd.wait_log(w["id"], "sleeper started")
    r = handshake(nexd, w["id"], "cmd=/bin/sh")
    p = check(r, "get", EXEC)
    assert r.status_code == 422 and "/bin/sh" in p["detail"] and "does not exist" in p["detail"], p


def agent_children(nexd, wid):
    """The processes of the workload's sandbox other than the agent and the workload (from the host's /proc)."""
    agent = nexd.workload(wid)["pid"]
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == agent:
            kids.append(int(d))
    return kids


def wait_children(nexd, wid, n, timeout=10):
    deadline = time.monotonic() + timeout
    while len(agent_children(nexd, wid)) != n:
        assert time.monotonic() < deadline, agent_children(nexd, wid)
        time.sleep(0.05)


def test_hostile_clients(nexd):
    wid = shell_workload(nexd)
    wait_children(nexd, wid, 1)  # the workload
    # a client that vanishes mid-session: its shell (and what the shell runs) is killed
    s = Session(open_shell(nexd, wid))
    s.send("sleep 1000\n")
    time.sleep(0.3)
    wait_children(nexd, wid, 2)
    s.ws.sock.close()
    wait_children(nexd, wid, 1)
    # an oversized frame: closed with 1009, the session killed
    s = Session(open_shell(nexd, wid))
    s.send("echo big\n")
    s.until_text("big")
    s.ws.send_binary(b"x" * (200 * 1024))
    assert s.until_closed() == 1009
    wait_children(nexd, wid, 1)
    # a flood of input to a process that never reads it: bounded, and the node answers meanwhile
    s = Session(open_shell(nexd, wid))
    s.send("sleep 1000\n")
    s.ws.sock.settimeout(0.2)
    sent = 0
    try:
        while sent < 64 << 20:
            s.ws.send_binary(b"y" * 65536)
            sent += 65536
    except (socket.timeout, websocket.WebSocketTimeoutException):
        pass
    assert nexd.get("/v1/node").status_code == 200
    s.ws.sock.close()
    wait_children(nexd, wid, 1)
    # many sessions at once: the agent's bound (16 per workload) is a 503, never a crash
    sessions, refused = [], 0
    for _ in range(20):
        try:
            sessions.append(open_shell(nexd, wid))
        except websocket.WebSocketBadStatusException as e:
            assert e.status_code == 503
            refused += 1
    assert len(sessions) == 16 and refused == 4, (len(sessions), refused)
    for ws in sessions:
        ws.close()
    wait_children(nexd, wid, 1)
    assert nexd.get("/v1/node").status_code == 200
    assert nexd.workload(wid)["state"] == "running"


def test_workload_ends_during_a_session(nexd):
    wid = shell_workload(nexd)
    s = Session(open_shell(nexd, wid))
    s.send("echo here\n")
    s.until_text("here")
    nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 1})
    assert s.until_closed(timeout=20) == 1000
    assert s.messages and s.messages[-1]["type"] in ("exit", "error"), s.messages


def test_cli_exec_it(nexd):
    """`nex exec -it` under a pseudo-terminal: raw mode, the remote shell, SIGWINCH, the remote exit status."""
    wid = shell_workload(nexd)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEX_")}
    env.update(NEX_SERVER=nexd.base, NEX_TOKEN=nexd.token, TERM="xterm")
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(str(build_dir() / "nex"), ["nex", "exec", "-it", wid, "/tmp/sh"], env)
    out = b""

    def read_until(text, timeout=15):
        nonlocal out
        deadline = time.monotonic() + timeout
        while text.encode() not in out:
            assert time.monotonic() < deadline, out
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
        return out

    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
    os.write(fd, b"echo $((6*7))\n")
    read_until("42")
    os.write(fd, b"stty size\n")
    read_until("33 111")
    # a new window size on the local terminal reaches the remote one (SIGWINCH in the CLI)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 44, 122, 0, 0))
    time.sleep(0.5)
    os.write(fd, b"stty size\n")
    read_until("44 122")
    os.write(fd, b"exit 5\n")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 5, (status, out)


def test_cli_exec_errors(nexd):
    wid = shell_workload(nexd)
    r = nexd.cli("exec", "-it", wid, "/bin/bash")
    assert r.returncode == 1 and "/bin/bash" in r.stderr and "does not exist" in r.stderr, r.stderr
    assert nexd.cli("exec", wid).returncode == 2
    assert nexd.cli("exec", "-ix", wid, "/tmp/sh").returncode == 2
    # without -t: the plain request; the remote command's options stay its own, its status is the CLI's
    r = nexd.cli("exec", wid, "/tmp/sh", "-c", "echo out; echo err >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, "out\n", "err\n"), r
    r = nexd.cli("exec", "-i", "-e", "X=from-cli", wid, "--", "/tmp/sh", "-c", "read l; echo \"$X:$l\"",
                 input="typed\n")
    assert (r.returncode, r.stdout) == (0, "from-cli:typed\n"), r
