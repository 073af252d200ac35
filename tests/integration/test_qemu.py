# SPDX-License-Identifier: Apache-2.0
"""test_qemu.py — the QEMU microvm driver, for real: each test boots real VMs (under the accelerator nexd picks:
KVM where it works, else TCG, as here — test_kvm.py covers the choice and the fall back) with the kernel
scripts/setup fetched into the build dir, and drives them through a real nexd.

Covered: a workload's output, exit code and kernel console; the VM it runs in (its own kernel, host name and
memory size); stopping a long-running one; killing nexd with SIGKILL and re-adopting the VM; the memory limit
being the VM's size; a guest writing garbage to the agent's channel; a missing kernel refused at deploy with the
reason.  The whole module is skipped, with the reason nexd gives, when the driver is unavailable here.
"""

import os
import signal
import time

import pytest

from conftest import finish_nex, finish_test_nex, start_test_nex

BOOT_TIMEOUT_S = 90  # a TCG boot takes ~2-3 s alone; the suite may run beside an ASan build on 2 shared cores


def qemu_unavailable(nex):
    for d in nex.get("/v1/node").json()["drivers"]:
        if d["name"] == "qemu":
            return None if d["available"] else d["reason"]
    return "nexd has no qemu driver"




def vm_node(request, args=()):
    """A nexd of the test's own with more flags ARGS; skips when the qemu driver is unavailable (saying why)."""
    nex = start_test_nex(request, args)
    why = qemu_unavailable(nex)
    if why:
        finish_nex(nex, passed=True)
        pytest.skip(f"the qemu driver is unavailable: {why}")
    yield nex
    finish_test_nex(request, nex)


@pytest.fixture
def vmnexd(request):
    yield from vm_node(request)


@pytest.fixture
def small_vm_nexd(request):
    """As vmnexd, with VMs of 96 MiB by default."""
    yield from vm_node(request, ["--vm-memory-mib", "96"])


@pytest.fixture
def no_kernel_nexd(request):
    """A nexd whose VM kernel directory does not exist."""
    nex = start_test_nex(request, ["--vm-kernel-dir", "/nonexistent/kernel"])
    yield nex
    finish_test_nex(request, nex)


def texts(nex, wid, stream):
    return [l["text"] for l in nex.logs(wid)["lines"] if l["stream"] == stream]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_hello_in_a_vm(vmnexd):
    nex = vmnexd
    w = nex.deploy_ok(name="hello", driver="qemu", artifact=nex.program("hello"), argv=["hello", "in", "a", "vm"])
    assert w["driver"] == "qemu"
    done = nex.wait_state(w["id"], "exited", timeout=BOOT_TIMEOUT_S)
    assert done["exit_code"] == 3, done
    assert done["exit_signal"] is None
    assert texts(nex, w["id"], "stdout") == ["hello from nex", "argv: hello in a vm"]
    assert texts(nex, w["id"], "stderr") == ["hello on stderr"]
    console = texts(nex, w["id"], "console")
    assert any("nex-agent: started `/workload`" in t for t in console), console
    assert any("exited with code 3" in t for t in console), console
    # the VM goes (its agent powers it off once nexd acknowledged the exit) and its run dir is removed
    run_dir = nex.data_dir / "run" / w["id"]
    deadline = time.monotonic() + 30
    while run_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not run_dir.exists(), list(run_dir.iterdir())
    # a second deploy of the same workload reuses the cached image
    images = list((nex.data_dir / "images").glob("*.cpio"))
    assert len(images) == 1, images
    w2 = nex.deploy_ok(name="hello", driver="qemu", artifact=nex.program("hello"))
    assert nex.wait_state(w2["id"], "exited", timeout=BOOT_TIMEOUT_S)["exit_code"] == 3
    assert list((nex.data_dir / "images").glob("*.cpio")) == images


def test_the_workload_sees_its_own_machine(vmnexd):
    nex = vmnexd
    w = nex.deploy_ok(name="probe-vm", driver="qemu", artifact=nex.program("vm-probe"), argv=["vm-probe", "info"])
    nex.wait_state(w["id"], "exited", timeout=BOOT_TIMEOUT_S)
    out = dict(line.split(" ", 1) for line in texts(nex, w["id"], "stdout"))
    assert out["host"] == "probe-vm"
    assert out["kernel"] != os.uname().release, "the workload ran on the host's kernel"
    # 128 MiB by default: what the guest sees is that, less what its kernel reserved
    assert 64 * 1024 < int(out["memtotal_kib"]) <= 128 * 1024, out


def test_vm_size_comes_from_the_workloads_resources(vmnexd):
    """resources.memory_mb and resources.vcpus size the VM (a fraction of a CPU is a whole vCPU, held to the
    fraction by the cgroup's quota)."""
    nex = vmnexd
    w = nex.deploy_ok(name="sized", driver="qemu", artifact=nex.program("vm-probe"), argv=["vm-probe", "info"],
                      resources={"memory_mb": 256, "vcpus": 1.5})
    nex.wait_state(w["id"], "exited", timeout=BOOT_TIMEOUT_S)
    out = dict(line.split(" ", 1) for line in texts(nex, w["id"], "stdout"))
    assert 192 * 1024 < int(out["memtotal_kib"]) <= 256 * 1024, out
    assert out["cpus"] == "2", out


def test_exec_into_a_vm(vmnexd):
    """Exec runs inside the guest (its kernel, its processes), the plain form and on a terminal."""
    from test_sandbox_tty import Session, open_shell
    nex = vmnexd
    w = nex.deploy_ok(name="vm-shell", driver="qemu", artifact="file:///bin/busybox",
                      argv=["sh", "-c", "echo ready; exec sleep 600"])
    nex.wait_log(w["id"], "ready", timeout=BOOT_TIMEOUT_S)
    out = nex.post(f"/v1/workloads/{w['id']}/exec",
                   json={"argv": ["/workload", "-c", "uname -r; cat /proc/1/comm"], "argv0": "sh"}).json()
    assert out["exit_code"] == 0, out
    release, init = out["stdout"].split()
    assert release != os.uname().release and init == "init", out
    s = Session(open_shell(nex, w["id"], "cmd=/workload&argv0=sh&tty=1&rows=30&cols=100"))
    s.send("echo $((6*7)); stty size; tty\n")
    s.until_text("/dev/pts/", timeout=30)
    assert b"42" in s.out and b"30 100" in s.out, s.out
    s.send("exit 6\n")
    assert s.until_closed(timeout=30) == 1000
    assert s.messages[-1]["type"] == "exit" and s.messages[-1]["exit_code"] == 6, s.messages
    assert nex.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 2}).status_code == 202
    nex.wait_state(w["id"], "stopped", timeout=30)


def test_stop_a_running_vm(vmnexd):
    nex = vmnexd
    w = nex.deploy_ok(name="sleeper", driver="qemu", artifact=nex.program("sleeper"))
    running = nex.wait_state(w["id"], "running", timeout=BOOT_TIMEOUT_S)
    nex.wait_log(w["id"], "sleeper started", timeout=BOOT_TIMEOUT_S)
    qemu_pid = running["pid"]
    assert qemu_pid and pid_alive(qemu_pid)
    r = nex.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 5})
    assert r.status_code == 202, r.text
    stopped = nex.wait_state(w["id"], "stopped", timeout=30)
    assert "sleeper got SIGTERM" in texts(nex, w["id"], "stdout")
    assert stopped["exit_code"] == 0, stopped  # it handled SIGTERM and exited by itself
    deadline = time.monotonic() + 10
    while pid_alive(qemu_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(qemu_pid), "qemu still runs after the workload stopped"


def test_vm_survives_nexd_sigkill_and_is_readopted(vmnexd):
    nex = vmnexd
    w = nex.deploy_ok(name="ticker", driver="qemu", artifact=nex.program("vm-probe"), argv=["vm-probe", "tick", "60"])
    running = nex.wait_state(w["id"], "running", timeout=BOOT_TIMEOUT_S)
    nex.wait_log(w["id"], "tick 2", timeout=30)
    qemu_pid = running["pid"]

    nex.daemon.proc.send_signal(signal.SIGKILL)
    nex.daemon.proc.wait()
    time.sleep(1.0)  # ticks written meanwhile go nowhere: no one is attached
    assert pid_alive(qemu_pid), "the VM died with nexd"

    nex.start()
    again = nex.workload(w["id"])
    assert again["state"] == "running", again
    # attached again: new output arrives, and the console is read again too
    seen = len(texts(nex, w["id"], "stdout"))
    deadline = time.monotonic() + 30
    while len(texts(nex, w["id"], "stdout")) <= seen + 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(texts(nex, w["id"], "stdout")) > seen + 2, "no output after re-adoption"
    log = nex.daemon.log_path.read_text()
    assert "re-attached" in log and "the agent answered" in log, nex.daemon.log_tail()

    r = nex.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 5})
    assert r.status_code == 202
    nex.wait_state(w["id"], "stopped", timeout=30)


def test_memory_limit_is_the_vm_size(small_vm_nexd):
    nex = small_vm_nexd
    small = nex.deploy_ok(name="small", driver="qemu", artifact=nex.program("vm-probe"), argv=["vm-probe", "alloc", "16"])
    big = nex.deploy_ok(name="big", driver="qemu", artifact=nex.program("vm-probe"), argv=["vm-probe", "alloc", "400"])
    s = nex.wait_state(small["id"], "exited", timeout=BOOT_TIMEOUT_S)
    assert s["exit_code"] == 0 and "allocated 16 MiB" in texts(nex, small["id"], "stdout"), s
    b = nex.wait_state(big["id"], "exited", timeout=BOOT_TIMEOUT_S)
    # the guest's OOM killer ends it; the agent, PID 1, survives and reports it
    assert b["exit_signal"] == signal.SIGKILL, (b, texts(nex, big["id"], "console")[-10:])
    got = texts(nex, big["id"], "stdout")
    assert "allocated 400 MiB" not in got
    assert any("out of memory" in t.lower() for t in texts(nex, big["id"], "console")), texts(nex, big["id"], "console")


def test_guest_garbage_on_the_agent_channel_does_not_hurt_the_node(vmnexd):
    nex = vmnexd
    w = nex.deploy_ok(name="garbage", driver="qemu", artifact=nex.program("vm-probe"),
                      argv=["vm-probe", "garbage", "/dev/hvc0"])
    failed = nex.wait_state(w["id"], "failed", timeout=BOOT_TIMEOUT_S)
    assert "agent protocol error" in failed["reason"], failed
    assert nex.get("/v1/node").status_code == 200
    assert nex.daemon.proc.poll() is None
    # the node goes on running VMs
    ok = nex.deploy_ok(name="after", driver="qemu", artifact=nex.program("hello"))
    assert nex.wait_state(ok["id"], "exited", timeout=BOOT_TIMEOUT_S)["exit_code"] == 3


def test_missing_kernel_is_refused_at_deploy(no_kernel_nexd):
    nex = no_kernel_nexd
    drivers = {d["name"]: d for d in nex.get("/v1/node").json()["drivers"]}
    assert drivers["qemu"]["available"] is False
    assert "/nonexistent/kernel/vmlinuz" in drivers["qemu"]["reason"]
    r = nex.deploy(name="hello", driver="qemu", artifact=nex.program("hello"))
    assert r.status_code == 503, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "/nonexistent/kernel/vmlinuz" in r.json()["detail"]
    assert nex.workloads()["count"] == 0


def qemu_processes_of(nex):
    """Pids of the QEMU processes whose command line names NEX's data dir (its VMs, and no other node's)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and str(nex.data_dir).encode() in b" ".join(argv) \
                and pid_alive(int(d)):
            out.append(int(d))
    return sorted(out)


def test_vms_survive_nexd_killed_in_a_loop(vmnexd):
    """kill -9 of nexd, 10 times, while two VMs run: each round every VM is re-adopted (same QEMU pid, still
    printing), no QEMU is started twice, and both can be stopped at the end."""
    nex = vmnexd
    ids = [nex.deploy_ok(name=f"ticker-{i}", driver="qemu", artifact=nex.program("vm-probe"),
                         argv=["vm-probe", "tick", "600"])["id"] for i in range(2)]
    pids = {wid: nex.wait_state(wid, "running", timeout=BOOT_TIMEOUT_S)["pid"] for wid in ids}
    for wid in ids:
        nex.wait_log(wid, "tick 1", timeout=30)
    assert qemu_processes_of(nex) == sorted(pids.values())
    for round_ in range(10):
        nex.daemon.proc.send_signal(signal.SIGKILL)
        nex.daemon.proc.wait()
        nex.start()
        for wid in ids:
            w = nex.workload(wid)
            assert w["state"] == "running" and w["pid"] == pids[wid], (round_, w)
        assert qemu_processes_of(nex) == sorted(pids.values()), f"round {round_}: a VM was started twice or lost"
    for wid in ids:  # still attached: new output arrives
        seen = len(texts(nex, wid, "stdout"))
        deadline = time.monotonic() + 30
        while len(texts(nex, wid, "stdout")) <= seen + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(texts(nex, wid, "stdout")) > seen + 1, f"no output from {wid} after the last re-adoption"
    for wid in ids:
        assert nex.delete(f"/v1/workloads/{wid}", params={"grace_s": 5}).status_code == 202
    for wid in ids:
        nex.wait_state(wid, "stopped", timeout=60)
    deadline = time.monotonic() + 15
    while qemu_processes_of(nex) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert qemu_processes_of(nex) == [], "QEMU processes outlived their stopped VMs"
