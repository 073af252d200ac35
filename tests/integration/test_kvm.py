# SPDX-License-Identifier: Apache-2.0
"""test_kvm.py — which accelerator VMs get, and the fall back from a KVM that does not work to TCG.

nexd probes KVM at start (server/drivers/kvm.c: a real-mode guest must run to its HLT) and shows the verdict in
GET /v1/node's drivers[] (`accel`, `kvm_reason`).  Covered, with real VMs (QEMU, TCG here) and a real nexd:
  - a KVM device that opens but is no KVM (--kvm-device /dev/null): VMs run under TCG and the node says why;
  - vm_accel auto with a QEMU that aborts under KVM (the stand-in standins/qemu-kvm-aborts, which does what QEMU
    does on a host with broken nested virtualisation, and runs the real QEMU otherwise; --kvm-probe off, so that
    /dev/null passes as KVM): the first boot dies, KVM is marked unusable with QEMU's error line, the event
    node_kvm_unusable says so, the workload starts once more under TCG and runs; later VMs go to TCG at once;
  - the same with a guest that hangs under KVM: after --kvm-boot-s the VM is killed and retried under TCG;
  - vm_accel kvm: no KVM means 503 up front; a VM failing under KVM fails its workload (no fall back);
  - vm_accel tcg: KVM is never tried;
  - where KVM works, the KVM path runs (skipped with the probe's, or QEMU's, reason elsewhere);
  - bad vm_accel / kvm_probe values stop nexd with a one-line message.
"""

import subprocess

import pytest

from conftest import REPO, build_dir, finish_nex, finish_test_nex, start_test_nex, wait_until
from sandboxlib import events_of

STANDIN = REPO / "tests" / "integration" / "standins" / "qemu-kvm-aborts"
BOOT_TIMEOUT_S = 90
NOT_KVM = "cannot open /dev/null as KVM: not a KVM device (KVM_GET_API_VERSION: Inappropriate ioctl for device)"
MSR_LINE = "qemu-system-x86_64: error: failed to set MSR 0x10a"


def drivers(nex):
    return {d["name"]: d for d in nex.get("/v1/node").json()["drivers"]}


def qemu_cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


def accel_of(pid):
    argv = qemu_cmdline(pid)
    return argv[argv.index(b"-accel") + 1].decode()


@pytest.fixture
def record(tmp_path, monkeypatch):
    """The stand-in QEMU's record of the accelerators it was started with (nexd passes its environment on)."""
    path = tmp_path / "qemu-accels"
    monkeypatch.setenv("STANDIN_QEMU_RECORD", str(path))
    return lambda: path.read_text().split() if path.exists() else []


@pytest.fixture
def node(request):
    """node(args): a nexd of the test's own with more flags ARGS; skips when its qemu driver is unavailable for a
    reason other than KVM (no QEMU, no kernel)."""
    started = []

    def start(args, need_qemu=True):
        nex = start_test_nex(request, args)
        started.append(nex)
        q = drivers(nex)["qemu"]
        if need_qemu and not q["available"]:
            pytest.skip(f"the qemu driver is unavailable: {q['reason']}")
        return nex

    yield start
    for nex in started:
        finish_test_nex(request, nex)


def test_a_device_that_is_not_kvm_means_tcg(node):
    nex = node(["--kvm-device", "/dev/null"])
    d = drivers(nex)
    assert d["qemu"]["accel"] == "tcg" and d["qemu"]["kvm_reason"] == NOT_KVM, d["qemu"]
    assert d["firecracker"]["available"] is False and f"KVM is not usable: {NOT_KVM}" in d["firecracker"]["reason"]
    assert d["firecracker"]["kvm_reason"] == NOT_KVM
    assert "accel" not in d["sandbox"] and "kvm_reason" not in d["sandbox"]
    cli = nex.cli("node", "info")
    assert cli.returncode == 0 and f"driver:         qemu (available)\n  accel:        tcg (KVM: {NOT_KVM})\n" in cli.stdout, cli
    w = nex.deploy_ok(name="tcg", driver="qemu", artifact=nex.program("sleeper"))
    running = nex.wait_state(w["id"], "running", timeout=BOOT_TIMEOUT_S)
    assert accel_of(running["pid"]) == "tcg"
    assert events_of(nex, w["id"], "node_kvm_unusable") == []
    assert "KVM: not usable: " + NOT_KVM in nex.daemon.log_path.read_text()


def test_auto_falls_back_to_tcg_when_qemu_dies_under_kvm(node, record):
    nex = node(["--kvm-probe", "off", "--kvm-device", "/dev/null", "--qemu-path", str(STANDIN)])
    assert drivers(nex)["qemu"]["accel"] == "kvm", "a device that opens is trusted with --kvm-probe off"
    w = nex.deploy_ok(name="fallback", driver="qemu", artifact=nex.program("sleeper"))
    running = nex.wait_state(w["id"], "running", timeout=BOOT_TIMEOUT_S)
    nex.wait_log(w["id"], "sleeper started", timeout=BOOT_TIMEOUT_S)
    assert record() == ["kvm", "tcg"]
    assert accel_of(running["pid"]) == "tcg"
    # the event names the workload whose VM failed, and why
    ev = events_of(nex, w["id"], "node_kvm_unusable")
    assert len(ev) == 1 and ev[0]["data"]["reason"] == MSR_LINE and ev[0]["data"]["workload_id"] == w["id"], ev
    assert events_of(nex, w["id"], "workload_failed") == []
    # its history shows the second start, and why; it ended running, not failed
    states = [(h["state"], h["reason"]) for h in nex.workload(w["id"])["history"]]
    assert ("pending", f"KVM is unusable on this node ({MSR_LINE}): starting again under TCG") in states, states
    assert states[-1][0] == "running" and "failed" not in [s for s, _ in states], states
    # the node says so from then on, and Firecracker (which needs KVM) is unavailable for the same reason
    q = wait_until(lambda: (lambda d: d if d["qemu"]["accel"] == "tcg" else None)(drivers(nex)), timeout=5,
                   what="the node to report tcg")
    assert q["qemu"]["kvm_reason"] == MSR_LINE and q["qemu"]["available"] is True, q["qemu"]
    assert q["firecracker"]["kvm_reason"] == MSR_LINE, q["firecracker"]
    # a later VM goes to TCG at once
    w2 = nex.deploy_ok(name="after", driver="qemu", artifact=nex.program("hello"))
    assert nex.wait_state(w2["id"], "exited", timeout=BOOT_TIMEOUT_S)["exit_code"] == 3
    assert record() == ["kvm", "tcg", "tcg"]
    assert events_of(nex, w2["id"], "node_kvm_unusable") == []


def test_auto_falls_back_when_the_guest_hangs_under_kvm(node, record, monkeypatch):
    monkeypatch.setenv("STANDIN_QEMU_KVM", "hang")
    nex = node(["--kvm-probe", "off", "--kvm-device", "/dev/null", "--qemu-path", str(STANDIN), "--kvm-boot-s", "2"])
    w = nex.deploy_ok(name="hang", driver="qemu", artifact=nex.program("hello"))
    done = nex.wait_state(w["id"], "exited", timeout=BOOT_TIMEOUT_S)
    assert done["exit_code"] == 3
    assert record() == ["kvm", "tcg"]
    ev = events_of(nex, w["id"], "node_kvm_unusable")
    assert [e["data"]["reason"] for e in ev] == ["guest did not boot under KVM in 2 s"], ev


def test_vm_accel_kvm_without_kvm_is_refused_up_front(node):
    nex = node(["--vm-accel", "kvm", "--kvm-device", "/dev/null"], need_qemu=False)
    q = drivers(nex)["qemu"]
    if q["reason"] and "vm_accel" not in q["reason"]:
        pytest.skip(f"the qemu driver is unavailable: {q['reason']}")
    assert q["available"] is False and q["accel"] == "kvm" and q["kvm_reason"] == NOT_KVM, q
    assert q["reason"] == f"vm_accel is kvm, and KVM is not usable: {NOT_KVM}"
    r = nex.deploy(name="hello", driver="qemu", artifact=nex.program("hello"))
    assert r.status_code == 503, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert NOT_KVM in r.json()["detail"]
    assert nex.workloads()["count"] == 0


def test_vm_accel_kvm_has_no_fall_back(node, record):
    nex = node(["--vm-accel", "kvm", "--kvm-probe", "off", "--kvm-device", "/dev/null", "--qemu-path", str(STANDIN)])
    w = nex.deploy_ok(name="kvm-only", driver="qemu", artifact=nex.program("hello"))
    failed = nex.wait_state(w["id"], "failed", timeout=BOOT_TIMEOUT_S)
    # (the VM may die before or after nexd dialled its agent: the reason starts with what nexd saw)
    assert failed["reason"].endswith(f"(the VM's qemu was killed by signal 6: {MSR_LINE})"), failed["reason"]
    assert record() == ["kvm"]
    assert events_of(nex, w["id"], "node_kvm_unusable") == []
    q = drivers(nex)["qemu"]
    assert q["accel"] == "kvm" and q["kvm_reason"] is None and q["available"], q


def test_vm_accel_tcg_never_tries_kvm(node, record):
    nex = node(["--vm-accel", "tcg", "--kvm-probe", "off", "--kvm-device", "/dev/null", "--qemu-path", str(STANDIN)])
    q = drivers(nex)["qemu"]
    assert q["accel"] == "tcg" and q["kvm_reason"] == "vm_accel is tcg", q
    w = nex.deploy_ok(name="tcg-only", driver="qemu", artifact=nex.program("hello"))
    assert nex.wait_state(w["id"], "exited", timeout=BOOT_TIMEOUT_S)["exit_code"] == 3
    assert record() == ["tcg"]


def test_the_kvm_path_runs_where_kvm_works(node):
    nex = node([])
    q = drivers(nex)["qemu"]
    if q["accel"] != "kvm":
        pytest.skip(f"KVM is not usable here: {q['kvm_reason']}")
    w = nex.deploy_ok(name="kvm", driver="qemu", artifact=nex.program("sleeper"))
    running = nex.wait_state(w["id"], "running", timeout=BOOT_TIMEOUT_S)
    if events_of(nex, w["id"], "node_kvm_unusable"):
        reason = events_of(nex, w["id"], "node_kvm_unusable")[0]["data"]["reason"]
        pytest.skip(f"KVM passed the probe, but QEMU failed under it: {reason}")
    assert accel_of(running["pid"]) == "kvm"
    nex.wait_log(w["id"], "sleeper started", timeout=BOOT_TIMEOUT_S)


@pytest.mark.parametrize("flag,value", [("--vm-accel", "fast"), ("--kvm-probe", "maybe"), ("--kvm-boot-s", "0")])
def test_bad_values_are_refused(flag, value):
    r = subprocess.run([str(build_dir() / "nexd"), flag, value], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag.lstrip("-").replace("-", "_") in lines[0], r.stderr
