# SPDX-License-Identifier: Apache-2.0
"""test_images_vm.py — OCI images in QEMU microVMs, for real: a real nexd, the busybox images of imagelib.py pushed
to Debian's docker-registry on loopback, and real VMs (TCG here: no usable KVM) booting the kernel scripts/setup
fetched.

Covered: the same image in a sandbox and in a VM runs the image's process (Cmd, Env, User from its /etc/passwd,
WorkingDir) with the same output; the VM sees the image's files with the image's own owners (the ext4 disk is
built in a user namespace that maps the tree's host ids back); exec and TTY exec into an image VM; a write in one
VM is not seen by another workload of the same image nor in the shared tree; the ext4 disk is built once per image
(one build for two deploys, the same file) and removed when the image is deleted.  Skipped, with nexd's reason,
where the qemu driver is unavailable.
"""

import os
import re
import tempfile
from pathlib import Path

import pytest

import imagelib
from conftest import TERMINAL_STATES, finish_nex, started_nex
from test_qemu import BOOT_TIMEOUT_S, qemu_unavailable


@pytest.fixture(scope="module")
def images():
    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="nex-images-vm-"))
    layout = imagelib.busybox_layout(work, "bb")
    imagelib.busybox_layout(work, "sleeper", cmd=("sleep", "600"), user="0")
    reg = imagelib.Registry(work)
    refs = {
        "bb": reg.push(layout, "bb", "test/bb", "v1"),
        "sleeper": reg.push(layout, "sleeper", "test/sleeper", "v1"),
        "bb_digest": imagelib.layout_manifest_digest(layout, "bb"),
    }
    yield refs
    reg.close()


@pytest.fixture(scope="module")
def vmnex(request):
    """One nexd for the module's VMs; skips when the qemu driver is unavailable (saying why)."""
    nex = started_nex("test_images_vm")
    why = qemu_unavailable(nex)
    if why:
        finish_nex(nex, passed=True)
        pytest.skip(f"the qemu driver is unavailable: {why}")
    yield nex
    failed = any(getattr(i, "rep_call", None) is not None and i.rep_call.failed
                 for i in request.session.items if i.module is request.module)
    finish_nex(nex, passed=not failed)


def disks(nex):
    """The image disks in the node's VM image cache."""
    return sorted((nex.data_dir / "images").glob("oci-*.ext4"))


def disk_builds(nex, digest):
    """How many times nexd's log says it built the VM disk of DIGEST."""
    text = nex.daemon.log_path.read_text(errors="replace")
    return len(re.findall(re.escape(f"image {digest}: built its VM disk"), text))


def stdout_of(nex, wid):
    return nex.log_texts(wid, "stdout")


def test_same_image_in_a_sandbox_and_a_vm(vmnex, images):
    """The image's own process (Cmd, Env, User, WorkingDir) in both, with the same output; the VM is a VM."""
    ids = {}
    for driver in ("sandbox", "qemu"):
        ids[driver] = vmnex.deploy_ok(name=f"bb-{driver}", image=images["bb"], driver=driver, network="none")["id"]
    out = {}
    for driver, wid in ids.items():
        w = vmnex.wait_state(wid, TERMINAL_STATES, timeout=BOOT_TIMEOUT_S)
        assert w["state"] == "exited" and w["exit_code"] == 0, (driver, w, vmnex.log_texts(wid))
        assert w["image_digest"] == images["bb_digest"] and w["process"]["uid"] == 1000, w
        out[driver] = stdout_of(vmnex, wid)
    assert out["sandbox"] == ["hello from image", "uid=1000(app) gid=1000(app) groups=2000(extra)", "/work"], out
    assert out["qemu"] == out["sandbox"], out
    # the VM's kernel wrote its console: it booted a kernel of its own
    assert vmnex.log_texts(ids["qemu"], "console"), vmnex.log_texts(ids["qemu"])


def test_vm_sees_the_images_files_and_owners(vmnex, images):
    w = vmnex.deploy_ok(name="bb-files", image=images["bb"], driver="qemu", network="none", user="0",
                        cmd=["sh", "-c", "head -1 /etc/passwd; ls -lnd /home/app; ls /bin | wc -l; ls -l /sbin; "
                                         "cat /proc/1/comm"])
    w = vmnex.wait_state(w["id"], TERMINAL_STATES, timeout=BOOT_TIMEOUT_S)
    assert w["state"] == "exited" and w["exit_code"] == 0, (w, vmnex.log_texts(w["id"]))
    lines = stdout_of(vmnex, w["id"])
    assert lines[0] == "root:x:0:0:root:/root:/bin/sh", lines
    # the image's uid 1000, not the host's 101000 of the shared tree
    assert lines[1].split()[2:4] == ["1000", "1000"], lines
    assert int(lines[2]) == len(imagelib.APPLETS) + 1, lines  # busybox and its applets
    assert lines[3].endswith("/sbin -> /bin"), lines
    assert lines[4] == "init", lines  # the agent is PID 1 in the image's root


def test_exec_tty_and_private_writes_in_vms(vmnex, images):
    """Exec (plain and on a terminal) into image VMs; one VM's writes are its own; the disk is built once."""
    from test_sandbox_tty import Session, open_shell
    before = {d.name: d.stat() for d in disks(vmnex)}
    a = vmnex.deploy_ok(name="vm-a", image=images["sleeper"], driver="qemu", network="none")
    b = vmnex.deploy_ok(name="vm-b", image=images["sleeper"], driver="qemu", network="none")
    for w in (a, b):
        vmnex.wait_state(w["id"], "running", timeout=BOOT_TIMEOUT_S)
    r = vmnex.post(f"/v1/workloads/{a['id']}/exec",
                   json={"argv": ["sh", "-c", "echo mine > /work/f; echo x > /etc/passwd; rm /bin/ls; cat /work/f; "
                                              "cat /proc/sys/kernel/osrelease"]})
    out = r.json()
    assert r.status_code == 200 and out["exit_code"] == 0, r.text
    mine, release = out["stdout"].split()
    assert mine == "mine" and release != os.uname().release, out
    r = vmnex.post(f"/v1/workloads/{b['id']}/exec", json={"argv": ["sh", "-c", "ls /work; head -1 /etc/passwd; ls /bin/ls"]})
    assert r.json()["stdout"] == "root:x:0:0:root:/root:/bin/sh\n/bin/ls\n", r.text
    # a program the image does not hold
    r = vmnex.post(f"/v1/workloads/{a['id']}/exec", json={"argv": ["no-such-program"]})
    assert r.status_code == 422 and r.json()["field"] == "argv[0]", r.text
    # a terminal in the VM, with the image's shell from its PATH
    s = Session(open_shell(vmnex, b["id"], "cmd=sh&tty=1&rows=30&cols=100"))
    s.send("echo $((6*7)); stty size; cat /etc/group | head -1\n")
    s.until_text("root:x:0:", timeout=60)
    assert b"42" in s.out and b"30 100" in s.out, s.out
    s.send("exit 6\n")
    assert s.until_closed(timeout=30) == 1000
    assert s.messages[-1]["type"] == "exit" and s.messages[-1]["exit_code"] == 6, s.messages
    # one disk for the image, built once for both VMs (or before them, by an earlier test's VM)
    digest = vmnex.workload(a["id"])["image_digest"]
    disk = vmnex.data_dir / "images" / f"oci-{digest[7:]}.ext4"
    assert disk.exists() and disk_builds(vmnex, digest) == 1, disks(vmnex)
    if disk.name in before:
        assert disk.stat().st_ino == before[disk.name].st_ino
    # the shared tree is untouched
    t = vmnex.data_dir / "oci" / "trees" / digest[7:]
    assert (t / "bin" / "ls").is_symlink() and (t / "etc" / "passwd").read_text().startswith("root:")
    for w in (a, b):
        assert vmnex.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 1}).status_code == 202
    for w in (a, b):
        vmnex.wait_state(w["id"], TERMINAL_STATES, timeout=30)
    # deleting the image removes its disk
    r = vmnex.delete(f"/v1/images/{digest}")
    assert r.status_code == 200 and r.json()["deleted"] is True, r.text
    assert not disk.exists(), disks(vmnex)


def test_image_vm_on_the_default_network(vmnex, images):
    """An image's default network is bridge where the node has one: the agent configures eth0 and writes /etc/hosts
    into the image's overlay, after moving into it."""
    w = vmnex.deploy_ok(name="bb-net", image=images["bb"], driver="qemu", user="0",
                        cmd=["sh", "-c", "cat /etc/hosts; cat /proc/sys/kernel/hostname"])
    w = vmnex.wait_state(w["id"], TERMINAL_STATES, timeout=BOOT_TIMEOUT_S)
    if w.get("network") != "bridge":
        pytest.skip(f"the node gives images no bridge network here (network {w.get('network')})")
    assert w["state"] == "exited" and w["exit_code"] == 0, (w, vmnex.log_texts(w["id"]))
    lines = stdout_of(vmnex, w["id"])
    assert any(l.startswith(w["address"]) and "bb-net" in l for l in lines), lines
    assert lines[-1] == "bb-net", lines


def test_interrupted_disk_builds_are_swept_at_start(request):
    """A disk build that a crash interrupted leaves a temporary file; the next nexd removes it, keeping disks."""
    from conftest import finish_test_nex, start_test_nex
    nex = start_test_nex(request)
    images_dir = nex.data_dir / "images"
    images_dir.mkdir(exist_ok=True)
    left = images_dir / ("oci-" + "a" * 64 + ".ext4.tmp-Xy12Ab")
    kept = images_dir / ("oci-" + "b" * 64 + ".ext4")
    left.write_bytes(b"half a disk")
    kept.write_bytes(b"a disk")
    nex.restart()
    assert not left.exists() and kept.exists(), sorted(p.name for p in images_dir.iterdir())
    finish_test_nex(request, nex)
