# SPDX-License-Identifier: Apache-2.0
"""test_firecracker.py — the Firecracker driver.

Firecracker cannot run on these machines (no package; and KVM, where present, may not work), so:
  - where it is unavailable, GET /v1/node says why (the KVM probe's verdict among it) and a deploy to it is
    refused at once (503) with that reason;
  - the requests the driver sends are checked against Firecracker's published API description
    (../shared/firecracker/firecracker-api.yaml beside the repository) by tests/integration/standins/firecracker,
    a STAND-IN for the firecracker binary that serves the API on its unix socket, validates and records each
    request body, and runs no VM.  The KVM device the driver requires is a STAND-IN too: an ordinary file named
    as such, given with --kvm-device and trusted because it opens (--kvm-probe off; the probe would see it is
    not KVM, as test_unprobed_device_is_refused_by_the_probe checks).  The kernel is a stand-in file as well;
  - where KVM and a real firecracker binary exist, a real workload runs end to end (skipped elsewhere).
"""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, build_dir, finish_nex, finish_test_nex, start_test_nex

API_YAML = REPO.parent / "shared" / "firecracker" / "firecracker-api.yaml"
STANDIN = REPO / "tests" / "integration" / "standins" / "firecracker"




def firecracker_driver(nex):
    return {d["name"]: d for d in nex.get("/v1/node").json()["drivers"]}["firecracker"]


@pytest.fixture
def plain_nexd(request):
    nex = start_test_nex(request)
    yield nex
    finish_test_nex(request, nex)


def test_unavailable_driver_is_reported_and_refused(plain_nexd):
    nex = plain_nexd
    d = firecracker_driver(nex)
    assert d["accel"] == "kvm", d
    if d["available"]:
        pytest.skip("Firecracker is available on this host")
    reason = d["reason"]
    if d["kvm_reason"] is not None:
        assert f"KVM is not usable: {d['kvm_reason']}" in reason, d
    if shutil.which("firecracker") is None:
        assert "firecracker binary" in reason, reason
    r = nex.deploy(name="hello", driver="firecracker", artifact=nex.program("hello"))
    assert r.status_code == 503, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert reason in r.json()["detail"]
    assert nex.workloads()["count"] == 0, "a refused deploy left a workload behind"


@pytest.fixture
def standin_env(tmp_path, monkeypatch):
    """Stand-ins for what this host lacks: a kernel dir, a KVM device (an ordinary file) and the API schema path
    for the firecracker stand-in, whose request record is returned."""
    if not API_YAML.exists():
        pytest.skip(f"Firecracker's API description is not at {API_YAML}")
    kernel = tmp_path / "kernel"
    (kernel / "modules" / "firecracker").mkdir(parents=True)
    (kernel / "vmlinux").write_bytes(b"\x7fELF stand-in kernel, never booted")
    (kernel / "modules" / "firecracker" / "10-standin.ko").write_bytes(b"stand-in module")
    kvm = tmp_path / "standin-kvm-device"
    kvm.write_bytes(b"")
    record = tmp_path / "standin-requests.jsonl"
    monkeypatch.setenv("STANDIN_FIRECRACKER_API", str(API_YAML))
    monkeypatch.setenv("STANDIN_FIRECRACKER_RECORD", str(record))
    return {"kernel": kernel, "kvm": kvm, "record": record}


@pytest.fixture
def standin_nexd(request, standin_env):
    nex = start_test_nex(request, ["--firecracker-path", str(STANDIN), "--kvm-device", str(standin_env["kvm"]),
                                   "--kvm-probe", "off", "--vm-kernel-dir", str(standin_env["kernel"])])
    yield nex, standin_env
    finish_test_nex(request, nex)


@pytest.fixture
def probed_standin_nexd(request, standin_env):
    nex = start_test_nex(request, ["--firecracker-path", str(STANDIN), "--kvm-device", str(standin_env["kvm"]),
                                   "--vm-kernel-dir", str(standin_env["kernel"])])
    yield nex, standin_env
    finish_test_nex(request, nex)


def test_unprobed_device_is_refused_by_the_probe(probed_standin_nexd):
    """The same stand-ins with the KVM probe on (the default): an ordinary file opens but is no KVM, so the driver
    is unavailable, saying so, and nothing is sent to Firecracker."""
    nex, env = probed_standin_nexd
    d = firecracker_driver(nex)
    assert d["available"] is False, d
    want = f"cannot open {env['kvm']} as KVM: not a KVM device (KVM_GET_API_VERSION: Inappropriate ioctl for device)"
    assert d["kvm_reason"] == want, d
    assert d["reason"] == f"KVM is not usable: {want}", d
    r = nex.deploy(name="fc-hello", driver="firecracker", artifact=nex.program("hello"))
    assert r.status_code == 503 and want in r.json()["detail"], r.text
    assert read_record(env["record"]) == []


def read_record(path):
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def test_requests_match_the_published_api(standin_nexd):
    nex, env = standin_nexd
    d = firecracker_driver(nex)
    assert d["available"], d
    w = nex.deploy_ok(name="fc-hello", driver="firecracker", artifact=nex.program("hello"))
    # the stand-in boots nothing, so the agent never answers on vsock: the workload fails, saying so
    failed = nex.wait_state(w["id"], "failed", timeout=60)
    assert "vsock port 1024" in failed["reason"], failed

    reqs = read_record(env["record"])
    puts = [r for r in reqs if r["method"] == "PUT"]
    bad = [r for r in puts if not r["valid"]]
    assert not bad, f"requests that do not match Firecracker's API description: {bad}"
    paths = [r["path"] for r in puts]
    assert paths[:5] == ["/machine-config", "/boot-source", "/drives/rootfs", "/vsock", "/actions"], paths
    body = {r["path"]: r["body"] for r in puts[:5]}
    assert body["/machine-config"] == {"vcpu_count": 1, "mem_size_mib": 128, "smt": False}
    boot = body["/boot-source"]
    assert boot["kernel_image_path"] == str(env["kernel"] / "vmlinux")
    assert "nex.agent=vsock:1024" in boot["boot_args"] and "nex.hostname=fc-hello" in boot["boot_args"]
    # the kernel dir has modules, so the initramfs comes along (a modular kernel cannot reach its root disk)
    assert Path(boot["initrd_path"]).read_bytes()[:6] == b"070701"
    drive = body["/drives/rootfs"]
    assert drive["is_root_device"] is True and drive["is_read_only"] is True
    image = Path(drive["path_on_host"])
    assert image.suffix == ".ext4" and image.parent == nex.data_dir / "images"
    if shutil.which("debugfs"):
        listing = subprocess.run(["debugfs", "-R", "ls /", str(image)], capture_output=True, text=True).stdout
        assert "init" in listing and "workload" in listing, listing
    assert body["/vsock"]["guest_cid"] == 3
    assert body["/vsock"]["uds_path"].startswith(str(nex.data_dir / "run"))
    assert body["/actions"] == {"action_type": "InstanceStart"}
    # ending the VM asks the guest first
    assert {"action_type": "SendCtrlAltDel"} in [r["body"] for r in puts[5:]], paths
    # and nothing is left of it
    run_dir = nex.data_dir / "run" / w["id"]
    assert not run_dir.exists(), list(run_dir.iterdir())


def test_bridge_network_requests(standin_nexd):
    """Network bridge: a persistent tap nexd made, named in PUT /network-interfaces/eth0 (checked against the API
    description), nex.net= in boot_args for the agent; once the workload has ended the tap and its rules are gone."""
    nex, env = standin_nexd
    w = nex.deploy_ok(name="fc-net", driver="firecracker", artifact=nex.program("hello"), network="bridge",
                      ports=[{"host": 0, "workload": 80}])
    ifname = "nx" + w["id"].replace("-", "")[:12]
    # while the driver waits for the (never booting) guest, the tap is there, a tap, with nobody attached
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/sys/class/net/{ifname}/tun_flags") and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(f"/sys/class/net/{ifname}/tun_flags") as f:
        assert int(f.read(), 16) & 0x0002, "not a tap"  # IFF_TAP
    nex.wait_state(w["id"], "failed", timeout=60)
    puts = [r for r in read_record(env["record"]) if r["method"] == "PUT"]
    assert all(r["valid"] for r in puts), [r for r in puts if not r["valid"]]
    body = {r["path"]: r["body"] for r in puts}
    assert body["/network-interfaces/eth0"] == {"iface_id": "eth0", "host_dev_name": ifname}, body
    assert f"nex.net={w['address']},10." in body["/boot-source"]["boot_args"], body["/boot-source"]
    paths = [r["path"] for r in puts]
    assert paths.index("/network-interfaces/eth0") < paths.index("/actions"), paths
    deadline = time.monotonic() + 10
    while os.path.exists(f"/sys/class/net/{ifname}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/sys/class/net/{ifname}"), "the persistent tap outlived its workload"
    table = subprocess.run(["nft", "list", "table", "inet", "nex"], capture_output=True, text=True).stdout
    assert ifname not in table, table


def cpio_names(data):
    """The entry names of a newc cpio archive."""
    names, at = [], 0
    while data[at:at + 6] == b"070701":
        size, namesize = int(data[at + 54:at + 62], 16), int(data[at + 94:at + 102], 16)
        name = data[at + 110:at + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            break
        names.append(name)
        at = (at + 110 + namesize + 3) & ~3
        at = (at + size + 3) & ~3
    return names


def test_image_drive_requests(standin_nexd, tmp_path):
    """An OCI image workload: its ext4 disk (the image's tree, with the image's own owners) as a second, read-only
    drive in PUT /drives/image (checked against the API description), nex.image=/dev/vdb and the writable layer's
    size in boot_args, and no /workload in the initramfs."""
    import imagelib
    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    nex, env = standin_nexd
    layout = imagelib.busybox_layout(tmp_path, "bb")
    w = nex.deploy_ok(name="fc-image", driver="firecracker", image=f"oci-layout://{layout}:bb", network="none",
                      resources={"disk_mb": 32})
    nex.wait_state(w["id"], "failed", timeout=60)
    digest = nex.workload(w["id"])["image_digest"]
    puts = [r for r in read_record(env["record"]) if r["method"] == "PUT"]
    assert all(r["valid"] for r in puts), [r for r in puts if not r["valid"]]
    body = {r["path"]: r["body"] for r in puts}
    disk = nex.data_dir / "images" / f"oci-{digest[7:]}.ext4"
    assert body["/drives/image"] == {"drive_id": "image", "path_on_host": str(disk), "is_root_device": False,
                                     "is_read_only": True}, body
    paths = [r["path"] for r in puts]
    assert paths.index("/drives/rootfs") < paths.index("/drives/image") < paths.index("/actions"), paths
    assert "nex.image=/dev/vdb nex.disk_mb=32" in body["/boot-source"]["boot_args"], body["/boot-source"]
    names = cpio_names(Path(body["/boot-source"]["initrd_path"]).read_bytes())
    assert "init" in names and "workload" not in names, names
    assert disk.exists() and disk.stat().st_mode & 0o777 == 0o444
    if shutil.which("debugfs"):
        listing = subprocess.run(["debugfs", "-R", "ls /", str(disk)], capture_output=True, text=True).stdout
        assert "bin" in listing and "etc" in listing, listing
        stat = subprocess.run(["debugfs", "-R", "stat /home/app", str(disk)], capture_output=True, text=True).stdout
        assert "User:  1000" in stat and "Group:  1000" in stat, stat


def test_the_standin_refuses_what_firecracker_would(tmp_path, monkeypatch):
    """The check above can fail: the stand-in answers a body that breaks the API description with 400."""
    if not API_YAML.exists():
        pytest.skip(f"Firecracker's API description is not at {API_YAML}")
    record = tmp_path / "record.jsonl"
    sock = tmp_path / "api.sock"
    env = dict(os.environ, STANDIN_FIRECRACKER_API=str(API_YAML), STANDIN_FIRECRACKER_RECORD=str(record))
    proc = subprocess.Popen([str(STANDIN), "--api-sock", str(sock)], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

        def put(path, body):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(sock))
            data = json.dumps(body).encode()
            s.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n"
                      f"Connection: close\r\n\r\n".encode() + data)
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            s.close()
            return int(reply.split()[1])

        assert put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64}) == 204
        assert put("/machine-config", {"vcpu_count": "two", "mem_size_mib": 64}) == 400
        assert put("/machine-config", {"vcpu_count": 1, "mem_size_mib": 64, "no_such_field": 1}) == 400
        assert put("/drives/rootfs", {"drive_id": "rootfs"}) == 400  # is_root_device is required
        assert put("/no/such/path", {}) == 400
        assert [r["valid"] for r in read_record(record)] == [True, False, False, False, False]
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def real_firecracker_nexd(request):
    fc = shutil.which("firecracker")
    if fc is None:
        pytest.skip("needs a firecracker binary in PATH (there is none on this host)")
    kernel = build_dir() / "kernel" / "vmlinux"
    if not kernel.exists():
        pytest.skip(f"no VM kernel at {kernel} (scripts/setup fetches it)")
    nex = start_test_nex(request, ["--firecracker-path", fc])
    d = firecracker_driver(nex)
    if d["kvm_reason"] is not None:
        finish_nex(nex, passed=True)
        pytest.skip(f"needs a usable KVM: {d['kvm_reason']}")
    yield nex
    finish_test_nex(request, nex)


def test_real_firecracker_runs_hello(real_firecracker_nexd):
    nex = real_firecracker_nexd
    w = nex.deploy_ok(name="hello", driver="firecracker", artifact=nex.program("hello"))
    done = nex.wait_state(w["id"], "exited", timeout=60)
    assert done["exit_code"] == 3
    assert "hello from nex" in [l["text"] for l in nex.logs(w["id"])["lines"]]
