# SPDX-License-Identifier: Apache-2.0
"""test_images_hostile.py — hostile OCI images: every one fails its deploy with a clear reason, and nothing outside
the image's tree changes.  Last, whiteouts (not hostile) are checked to be applied.

Each image is an OCI layout written by hand (imagelib.hostile_layout: Python's tarfile, gzip, hashlib), deployed
as oci-layout://.  A canary directory outside the data dir holds a file whose SHA-256 is checked after each
deploy, and must gain no entry; the node's trees directory must hold no temporary tree afterwards.
"""

import hashlib
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

import imagelib
from conftest import TERMINAL_STATES

REG, DIR, SYM, LNK, CHR = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE


@pytest.fixture(scope="module")
def work():
    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    d = Path(tempfile.mkdtemp(prefix="nex-hostile-"))
    canary = d / "canary"
    canary.mkdir()
    (canary / "file").write_text("precious\n")
    return d


def snapshot(canary):
    return sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
                  for p in canary.iterdir())


def deploy_fails(nexd, work, name, entries, expect, lie=None, layers=None):
    canary = work / "canary"
    before = snapshot(canary)
    ref = imagelib.hostile_layout(work, name, layers or [imagelib.tar_of(entries)], lie=lie)
    w = nexd.deploy_ok(name="hostile", image=ref)
    w = nexd.wait_state(w["id"], TERMINAL_STATES, timeout=30)
    assert w["state"] == "failed", w
    assert expect in w["reason"], w["reason"]
    assert snapshot(canary) == before, "the canary directory changed"
    trees = Path(nexd.data_dir) / "oci" / "trees"
    assert [p.name for p in trees.iterdir() if p.name.startswith(".")] == [], "a temporary tree was left"
    return w


def test_dotdot_name(nexd_module, work):
    rel = "../" * 20 + str(work / "canary" / "evil")[1:]
    deploy_fails(nexd_module, work, "dotdot", [({"name": rel, "type": REG}, b"pwned")], "reaches out of the image")


def test_symlink_escape(nexd_module, work):
    deploy_fails(nexd_module, work, "symlink",
                 [({"name": "esc", "type": SYM, "linkname": str(work / "canary")}, None),
                  ({"name": "esc/evil", "type": REG}, b"pwned")], "writes through a symlink")


def test_symlink_escape_across_layers(nexd_module, work):
    l1 = imagelib.tar_of([({"name": "esc", "type": SYM, "linkname": str(work / "canary")}, None)])
    l2 = imagelib.tar_of([({"name": "esc/file", "type": REG}, b"overwritten")])
    deploy_fails(nexd_module, work, "symlink2", None, "writes through a symlink", layers=[l1, l2])


def test_device_node(nexd_module, work):
    deploy_fails(nexd_module, work, "device", [({"name": "dev/kmsg", "type": CHR, "devmajor": 1, "devminor": 11}, None)],
                 "is a device node")


def test_hardlink_outside(nexd_module, work):
    deploy_fails(nexd_module, work, "hardlink",
                 [({"name": "hl", "type": LNK, "linkname": str(work / "canary" / "file")}, None)],
                 "which is not in the image")
    deploy_fails(nexd_module, work, "hardlink2",
                 [({"name": "hl", "type": LNK, "linkname": "../../../../" + str(work / "canary" / "file")}, None)],
                 "points outside the image")


def test_hardlink_to_directory_and_root_symlink(nexd_module, work):
    deploy_fails(nexd_module, work, "hldir",
                 [({"name": "d", "type": DIR}, None), ({"name": "hl", "type": LNK, "linkname": "d"}, None)],
                 "not a regular file")
    deploy_fails(nexd_module, work, "rootsym", [({"name": "./", "type": SYM, "linkname": str(work / "canary")}, None)],
                 "would replace the image root")


def test_proc_symlink_and_huge_uid(nexd_module, work):
    deploy_fails(nexd_module, work, "procsym", [({"name": "proc", "type": SYM, "linkname": "/"}, None)],
                 "`/proc` in the image is not a directory")
    deploy_fails(nexd_module, work, "uid", [({"name": "f", "type": REG, "uid": 2**31}, b"x")], "beyond 2^31-1")


def test_too_deep_a_tree(nexd_module, work):
    # 300 levels: a tree removal holding a descriptor per level could fail on it; refused before anything is made.
    deep = "/".join(["d"] * 300) + "/f"
    deploy_fails(nexd_module, work, "deep", [({"name": deep, "type": REG}, b"x")], "directories deep (at most 256)")


def test_wrong_digest_and_diff_id(nexd_module, work):
    entries = [({"name": "f", "type": REG}, b"fine")]
    deploy_fails(nexd_module, work, "digest", entries, "layer digest mismatch", lie="layer-digest")
    deploy_fails(nexd_module, work, "diffid", entries, "layer diff_id mismatch", lie="diff-id")


def test_whiteouts_are_applied(nexd_module, work):
    """Not hostile: a layer's whiteouts remove what the layers below made, and are never created."""
    l1 = imagelib.tar_of([({"name": "bin", "type": DIR, "mode": 0o755}, None),
                          ({"name": "bin/busybox", "type": REG, "mode": 0o755}, Path(imagelib.BUSYBOX).read_bytes()),
                          ({"name": "bin/sh", "type": SYM, "linkname": "busybox"}, None),
                          ({"name": "bin/ls", "type": SYM, "linkname": "busybox"}, None),
                          ({"name": "gone", "type": REG}, b"x"),
                          ({"name": "opq", "type": DIR, "mode": 0o755}, None), ({"name": "opq/old", "type": REG}, b"x")])
    l2 = imagelib.tar_of([({"name": ".wh.gone", "type": REG}, b""),
                          ({"name": "opq/new", "type": REG}, b"y"),
                          ({"name": "opq/.wh..wh..opq", "type": REG}, b"")])
    ref = imagelib.hostile_layout(work, "whiteouts", [l1, l2])
    w = nexd_module.deploy_ok(name="wh", image=ref, cmd=["/bin/sh", "-c", "ls -a / /opq"])
    w = nexd_module.wait_state(w["id"], TERMINAL_STATES, timeout=30)
    assert w["state"] == "exited", w
    out = nexd_module.log_texts(w["id"])
    assert "gone" not in out and ".wh.gone" not in out and "new" in out and "old" not in out, out


def test_sparse_file_past_the_budget_hits_the_unpack_childs_file_size_limit(nexd_module, work, tmp_path):
    """A sparse entry whose one data block sits 5 GiB in: a few bytes read (under the byte budget), a file past
    the image's whole budget (4 GiB) if it were written.  The unpack child's RLIMIT_FSIZE stops the write."""
    src = tmp_path / "sparse"
    src.mkdir()
    with open(src / "big", "wb") as f:
        f.seek(5 << 30)
        f.write(b"x")
    tar = subprocess.run(["tar", "--sparse", "--format=gnu", "-cf", "-", "-C", str(src), "big"], capture_output=True,
                         check=True).stdout
    assert len(tar) < 1 << 20, len(tar)
    deploy_fails(nexd_module, work, "sparse", None, "File too large", layers=[tar])
