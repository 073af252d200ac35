# SPDX-License-Identifier: Apache-2.0
"""test_images_copy.py — an image sandbox's root as a private copy of the image's tree, the fall back for kernels
that refuse overlayfs in a user namespace.

This kernel allows the overlay, so the node's probe finds it usable (checked, with GET /v1/node saying so); the
fall back is driven with `--image-root copy`, which takes the same path as a refusal: GET /v1/node says `copy`
with the reason, each workload gets its own copy of the tree in its run dir (gone when it ends), sees the image's
files and process, and its writes are its own, the shared tree untouched.
"""

import subprocess
import tempfile
from pathlib import Path

import pytest

import imagelib
from conftest import TERMINAL_STATES, build_dir, finish_test_nex, start_test_nex


@pytest.fixture(scope="module")
def images():
    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="nex-images-copy-"))
    layout = imagelib.busybox_layout(work, "bb")
    imagelib.busybox_layout(work, "sleeper", cmd=("sleep", "600"), user="0")
    return {"bb": f"oci-layout://{layout}:bb", "sleeper": f"oci-layout://{layout}:sleeper"}


def sandbox_driver(nex):
    return {d["name"]: d for d in nex.get("/v1/node").json()["drivers"]}["sandbox"]


@pytest.fixture
def copy_nexd(request):
    nex = start_test_nex(request, ["--image-root", "copy"])
    yield nex
    finish_test_nex(request, nex)


@pytest.fixture
def plain_nexd(request):
    nex = start_test_nex(request)
    yield nex
    finish_test_nex(request, nex)


def test_the_probe_finds_the_overlay_usable(plain_nexd, images):
    d = sandbox_driver(plain_nexd)
    assert d["image_root"] == "overlay" and d["image_root_reason"] is None, d
    assert not (plain_nexd.data_dir / "run" / ".overlay-probe").exists(), "the probe left its sandbox's dir"
    w = plain_nexd.deploy_ok(name="bb", image=images["bb"])
    w = plain_nexd.wait_state(w["id"], TERMINAL_STATES, timeout=30)
    assert w["state"] == "exited" and w["exit_code"] == 0, w


def test_private_copies_instead_of_the_overlay(copy_nexd, images):
    nex = copy_nexd
    d = sandbox_driver(nex)
    assert d["image_root"] == "copy" and d["image_root_reason"] == "image_root is copy", d
    w = nex.deploy_ok(name="bb", image=images["bb"])
    w = nex.wait_state(w["id"], TERMINAL_STATES, timeout=30)
    assert w["state"] == "exited" and w["exit_code"] == 0, w
    assert nex.log_texts(w["id"]) == ["hello from image", "uid=1000(app) gid=1000(app) groups=2000(extra)", "/work"]
    assert not (nex.data_dir / "run" / w["id"]).exists(), "the ended workload's copy is left"

    a = nex.deploy_ok(name="sl-a", image=images["sleeper"])
    b = nex.deploy_ok(name="sl-b", image=images["sleeper"])
    for x in (a, b):
        nex.wait_state(x["id"], "running", timeout=30)
    copy = nex.data_dir / "run" / a["id"] / "copy"
    assert (copy / "bin" / "busybox").is_file() and (copy / "bin" / "ls").is_symlink(), list(copy.iterdir())
    assert (copy / "home" / "app").stat().st_uid == 101000  # the tree's shifted owner, kept
    r = nex.post(f"/v1/workloads/{a['id']}/exec",
                 json={"argv": ["sh", "-c", "echo mine > /work/f; echo x > /etc/passwd; rm /bin/ls; cat /work/f"]})
    assert r.status_code == 200 and r.json()["stdout"] == "mine\n" and r.json()["exit_code"] == 0, r.text
    r = nex.post(f"/v1/workloads/{b['id']}/exec", json={"argv": ["sh", "-c", "ls /work; head -1 /etc/passwd; ls /bin/ls"]})
    assert r.json()["stdout"] == "root:x:0:0:root:/root:/bin/sh\n/bin/ls\n", r.text
    digest = nex.workload(a["id"])["image_digest"]
    t = nex.data_dir / "oci" / "trees" / digest[7:]
    assert (t / "bin" / "ls").is_symlink() and (t / "etc" / "passwd").read_text().startswith("root:")
    for x in (a, b):
        nex.delete(f"/v1/workloads/{x['id']}", params={"grace_s": 1})
    for x in (a, b):
        nex.wait_state(x["id"], TERMINAL_STATES, timeout=30)
    assert not copy.exists(), "a stopped workload's copy is left"


def test_image_root_is_checked():
    r = subprocess.run([str(build_dir() / "nexd"), "--image-root", "sometimes"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "image_root must be auto or copy, got `sometimes`" in r.stderr, r.stderr
