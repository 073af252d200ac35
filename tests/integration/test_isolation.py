# SPDX-License-Identifier: Apache-2.0
"""test_isolation.py — what a workload can see from inside its sandbox.

Deploys tests/programs/lister, which prints its pid, hostname, uid, the pids in its /proc, the entries of its /,
its network interfaces and whether some host files exist, and checks that it sees its own pid namespace (it is
PID 2 under nex-agent, no host pid is visible), a private root holding only what the sandbox provides, no host
files, only a loopback interface, and a hostname of its own; and that a running workload is not root on the
host.
"""

import os
import socket

import pytest

SANDBOX_ROOT = {"workload", "sbin", "proc", "dev", "tmp"}
HOST_DIRS = {"etc", "home", "usr", "root", "var", "bin", "lib", "boot", "work", "srv", "opt"}


@pytest.fixture(scope="module")
def seen(nexd_module):
    """Deploys lister and returns its report as {key: value} (and the workload under "_workload")."""
    nexd = nexd_module
    w = nexd.deploy_ok(name="lister", artifact=nexd.program("lister"))
    w = nexd.wait_state(w["id"], "exited")
    assert w["exit_code"] == 0, w
    report = {"_workload": w}
    for text in nexd.log_texts(w["id"], "stdout"):
        key, sep, value = text.partition(": ")
        if sep:
            report[key] = value
    for key in ("pid", "hostname", "uid", "proc", "root", "net"):
        assert key in report, f"lister printed no {key!r} line: {report}"
    return report


def test_own_pid_namespace(nexd_module, seen):
    pid = int(seen["pid"])
    assert 1 < pid < 10, f"the workload is pid {pid}: not in a fresh pid namespace"
    pids = [int(p) for p in seen["proc"].split()]
    assert 1 in pids and pid in pids, pids
    assert len(pids) < 5, f"the workload sees {len(pids)} processes: {pids}"
    host_pids = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    assert len(host_pids) > len(pids)  # the check below means something only then
    assert nexd_module.pid not in pids, "nexd's pid is visible inside the sandbox"
    assert os.getpid() not in pids, "the test's own pid is visible inside the sandbox"


def test_private_root(seen):
    entries = set(seen["root"].split())
    assert "workload" in entries, entries
    assert entries <= SANDBOX_ROOT, f"unexpected entries in the sandbox's /: {sorted(entries - SANDBOX_ROOT)}"
    assert not entries & HOST_DIRS, f"host directories visible: {sorted(entries & HOST_DIRS)}"


def test_host_files_absent(seen):
    for path in ("/etc/passwd", "/home", "/root", "/usr"):
        assert seen.get(f"host-file {path}") == "absent", f"{path}: {seen.get(f'host-file {path}')}"


def test_loopback_only(seen):
    assert seen["net"].split() == ["lo"], f"network interfaces in the sandbox: {seen['net']}"


def test_own_hostname(seen):
    assert seen["hostname"], "empty hostname"
    assert seen["hostname"] != socket.gethostname()


def test_not_root_on_the_host(nexd_module):
    nexd = nexd_module
    """A running workload's process, seen from the host, is in a pid namespace of its own and is not uid 0."""
    w = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    w = nexd.wait_state(w["id"], "running")
    nexd.wait_log(w["id"], "sleeper started")
    pid = w["pid"]
    assert isinstance(pid, int) and pid > 0, w
    try:
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError as e:
        pytest.fail(f"the workload's pid {pid} is not a host process: {e}")
    nspids = status.get("NSpid", "").split()
    assert len(nspids) >= 2, f"pid {pid} is not in a child pid namespace (NSpid {nspids}); is it the host pid?"
    uids = [int(u) for u in status["Uid"].split()]
    assert 0 not in uids, f"the workload runs as host uid {uids}"
