# SPDX-License-Identifier: Apache-2.0
"""test_cli.py — the real `nex` CLI (build/nex) end to end against a real nexd.

Each test runs the binary as a user would (NEX_SERVER pointing at the test's nexd, see Nex.cli in conftest.py)
and checks its stdout, its stderr (errors are exactly one line starting "nex: ") and its exit status (0 success,
1 the request failed, 2 wrong usage), and what the node recorded.
"""

import json
import re
import subprocess
import time

import pytest

from conftest import build_dir, file_sha256, program_path

HELLO = program_path("hello")


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}; stdout {r.stdout!r}; stderr {r.stderr!r}"
    return r


def one_line_error(r, status, *needles):
    assert r.returncode == status, f"exit {r.returncode} (wanted {status}); stdout {r.stdout!r}; stderr {r.stderr!r}"
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nex: "), r.stderr
    for n in needles:
        assert n in lines[0], r.stderr
    return lines[0]


def uploads_seen(nexd):
    """How many POST /v1/artifacts requests nexd logged."""
    n = 0
    for line in nexd.daemon.log_path.read_text().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            n += rec.get("msg") == "request" and rec.get("method") == "POST" and rec.get("route") == "/v1/artifacts"
    return n


def test_node_info(nexd):
    node = nexd.get("/v1/node").json()
    text = ok(nexd.cli("node", "info")).stdout
    assert re.search(r"^id:\s+" + re.escape(node["id"]) + "$", text, re.M), text
    assert "sandbox (available)" in text
    as_json = json.loads(ok(nexd.cli("node", "info", "--json")).stdout)
    assert as_json["id"] == node["id"] and as_json["version"] == node["version"]
    # global options before the command too
    assert json.loads(ok(nexd.cli("--json", "node", "info")).stdout)["id"] == node["id"]


def test_run_local_file_uploads_once(nexd):
    r = ok(nexd.cli("run", HELLO, "--arg", "a b", "--arg", "-c", "-e", "GREETING=hi there"))
    wid = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", wid), r.stdout
    w = nexd.wait_state(wid, "exited")
    sha = file_sha256(HELLO)
    assert w["artifact"] == f"artifact://{sha}" and w["digest"] == sha and w["sha256"] == sha
    assert w["name"] == "hello" and w["argv"] == ["hello", "a b", "-c"]
    texts = nexd.log_texts(wid)
    assert "argv: hello a b -c" in texts and "greeting: hi there" in texts
    assert uploads_seen(nexd) == 1

    # the node has it now: a second run does not upload again
    wid2 = ok(nexd.cli("run", HELLO, "--name", "again", "--json")).stdout
    w2 = json.loads(wid2)
    assert w2["name"] == "again" and w2["state"] == "pending"
    nexd.wait_state(w2["id"], "exited")
    assert uploads_seen(nexd) == 1


def test_run_url_and_namespace(nexd):
    wid = ok(nexd.cli("run", "file://" + str(HELLO), "--namespace", "team-a", "--description", "by url")).stdout.strip()
    w = nexd.wait_state(wid, "exited")
    assert w["namespace"] == "team-a" and w["artifact"] == "file://" + str(HELLO) and w["description"] == "by url"
    assert uploads_seen(nexd) == 0


def test_run_with_resources_and_policy(nexd):
    """--memory, --vcpus, --pids, --disk, --restart, --max-restarts and --network reach the workload's spec."""
    wid = ok(nexd.cli("run", str(HELLO), "--memory", "64", "--vcpus", "0.5", "--pids", "32", "--disk", "8",
                      "--restart", "on-failure", "--max-restarts", "2", "--network", "none")).stdout.strip()
    w = nexd.get(f"/v1/workloads/{wid}").json()
    assert w["resources"] == {"vcpus": 0.5, "memory_mb": 64, "pids": 32, "disk_mb": 8}, w["resources"]
    assert w["restart_policy"] == "on-failure" and w["max_restarts"] == 2 and w["network"] == "none", w
    # hello exits 3: on-failure restarts it twice, then it ends exited with that code
    w = nexd.wait_state(wid, "exited", timeout=30)
    assert w["restarts"] == 2, w


def test_ls_info_logs(nexd):
    wid = ok(nexd.cli("run", HELLO, "-n", "listed")).stdout.strip()
    nexd.wait_state(wid, "exited")
    ls = ok(nexd.cli("ls")).stdout.splitlines()
    assert ls[0].split() == ["ID", "NAME", "NAMESPACE", "STATE", "CREATED"]
    row = [l for l in ls if l.startswith(wid)]
    assert row and row[0].split()[1:4] == ["listed", "default", "exited"], ls
    listed = json.loads(ok(nexd.cli("ls", "--json")).stdout)
    assert [w["id"] for w in listed] == [wid]
    assert json.loads(ok(nexd.cli("ls", "--state", "running", "--json")).stdout) == []
    one_line_error(nexd.cli("ls", "--state", "bogus"), 1, "state")

    info = ok(nexd.cli("info", wid)).stdout
    assert re.search(r"^state\s+exited$", info, re.M) and re.search(r"^exit_code\s+3$", info, re.M), info
    assert "history" in info and "running" in info
    assert json.loads(ok(nexd.cli("info", wid, "--json")).stdout)["exit_code"] == 3

    logs = ok(nexd.cli("logs", wid))
    assert logs.stdout.splitlines() == ["hello from nex", "argv: listed"]
    assert logs.stderr.splitlines() == ["hello on stderr"]
    tail = ok(nexd.cli("logs", "--tail", "1", wid))
    assert tail.stdout == "" and tail.stderr == "hello on stderr\n"
    lines = [json.loads(l) for l in ok(nexd.cli("logs", wid, "--json")).stdout.splitlines()]
    assert [l["seq"] for l in lines] == [1, 2, 3] and lines[2]["stream"] == "stderr"


def test_logs_follow(nexd):
    wid = ok(nexd.cli("run", program_path("chatter"), "--arg", "20", "--arg", "50")).stdout.strip()
    nexd.wait_state(wid, ("running", "exited"))
    r = ok(nexd.cli("logs", "-f", wid, timeout=30))
    out = r.stdout.splitlines()
    err = r.stderr.splitlines()
    # every line, in order, ending with the last one the workload wrote before it exited
    assert out == [f"line {i} " for i in range(1, 21) if i % 10] + ["chatter done"], out
    assert err == ["line 10 ", "line 20 "], err
    assert nexd.workload(wid)["state"] == "exited"


def test_events_and_follow(nexd):
    follower = subprocess.Popen([str(build_dir() / "nex"), "events", "-f", "--json", "--type", "workload_exited"],
                                env={"NEX_SERVER": nexd.base, "NEX_TOKEN": nexd.token, "PATH": "/usr/bin:/bin"},
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        wid = ok(nexd.cli("run", HELLO)).stdout.strip()
        nexd.wait_state(wid, "exited")
        line = follower.stdout.readline()  # blocks until the follower printed the event
        ev = json.loads(line)
        assert ev["type"] == "workload_exited" and ev["subject"] == wid and ev["data"]["exit_code"] == 3
    finally:
        follower.terminate()
        follower.wait(5)
    text = ok(nexd.cli("events", "--workload", wid)).stdout.splitlines()
    assert [l.split()[1] for l in text][0] == "workload_deployed" and "workload_exited" in text[-1], text
    assert "exit_code=3" in text[-1]
    lines = ok(nexd.cli("events", "--json")).stdout.splitlines()
    assert json.loads(lines[0])["type"] == "node_started"


def test_stop_and_wait(nexd):
    wid = ok(nexd.cli("run", program_path("sleeper"))).stdout.strip()
    assert ok(nexd.cli("wait", wid, "--state", "running", "--timeout", "20")).stdout == "running\n"
    one_line_error(nexd.cli("wait", wid, "--state", "exited", "--timeout", "1"), 1, "still running after 1 s")
    nexd.wait_log(wid, "sleeper started")
    assert ok(nexd.cli("stop", wid, "--grace", "5")).stdout.strip() == f"stopping {wid}"
    nexd.wait_state(wid, "stopped")
    assert "already ended (stopped)" in ok(nexd.cli("stop", wid)).stdout
    assert ok(nexd.cli("wait", wid)).stdout == "stopped\n"
    assert json.loads(ok(nexd.cli("wait", wid, "--json")).stdout)["state"] == "stopped"


@pytest.mark.parametrize("args,status,needle", [
    ([], 2, "which command"),
    (["bogus"], 2, "unknown command `bogus`"),
    (["node"], 2, "needs a subcommand: info"),
    (["run"], 2, "which program"),
    (["run", "x", "y"], 2, "unexpected argument `y`"),
    (["run", str(HELLO), "--bogus"], 2, "unknown option `--bogus`"),
    (["run", str(HELLO), "--env", "NOEQUALS"], 2, "KEY=VALUE"),
    (["run", str(HELLO), "--name"], 2, "needs a value"),
    (["logs", "not-an-id"], 2, "not a workload id"),
    (["logs", "--tail", "0", "00000000-0000-4000-8000-000000000000"], 2, "--tail"),
    (["--server", "ftp://x", "ls"], 2, "--server must be"),
    (["info", "00000000-0000-4000-8000-000000000000"], 1, "no workload"),
    (["stop", "00000000-0000-4000-8000-000000000000"], 1, "no workload"),
    (["run", "/etc/passwd"], 1, "not an ELF file"),
    (["run", "/nonexistent/prog"], 1, "cannot read `/nonexistent/prog`"),
    (["run", str(HELLO), "--name", "bad name"], 1, "name: must be"),
    (["run", str(HELLO), "--sha256", "1" * 64], 1, "sha256 mismatch"),
    (["run", "gopher://127.0.0.1/x"], 1, "artifact: scheme `gopher` is not supported"),
    (["run", str(HELLO), "--memory", "lots"], 2, "--memory takes a whole number"),
    (["run", str(HELLO), "--vcpus", "-1"], 2, "--vcpus takes a positive number"),
    (["run", str(HELLO), "--memory", "1"], 1, "resources.memory_mb"),
    (["run", str(HELLO), "--restart", "sometimes"], 1, "restart_policy"),
])
def test_errors(nexd, args, status, needle):
    one_line_error(nexd.cli(*args), status, needle)
    assert nexd.workloads()["count"] == 0


def test_server_selection(nexd):
    # nothing listens there: a request failure, exit 1, one line naming the server
    one_line_error(nexd.cli("ls", env={"NEX_SERVER": "http://127.0.0.1:9"}), 1, "cannot reach http://127.0.0.1:9")
    # the flag wins over the environment
    ok(nexd.cli("ls", "--server", nexd.base, env={"NEX_SERVER": "http://127.0.0.1:9"}))
    ok(nexd.cli("--server=" + nexd.base, "ls", env={"NEX_SERVER": "http://127.0.0.1:9"}))


def test_help(nexd):
    r = ok(nexd.cli("--help"))
    assert "Exit status: 0 success, 1" in r.stdout
    for cmd in ("node info", "run", "ls", "info", "logs", "events", "stop", "wait"):
        assert cmd in r.stdout
        h = ok(nexd.cli(*cmd.split(), "--help"))
        assert h.stdout.startswith(f"Usage: nex {cmd}")
