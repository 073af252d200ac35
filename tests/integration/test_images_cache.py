# SPDX-License-Identifier: Apache-2.0
"""test_images_cache.py — the image cache's bound (--image-cache-bytes: least recently used images no live
workload runs are evicted after each pull, event image_evicted), against a real nexd and Debian's docker-registry
on loopback with busybox images built by imagelib.py.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import imagelib
from conftest import TERMINAL_STATES, build_dir, start_test_nex, finish_test_nex


@pytest.fixture(scope="module")
def registry_images():
    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="nex-images-cache-"))
    layout = imagelib.busybox_layout(work, "bb")
    imagelib.busybox_layout(work, "sleeper", cmd=("sleep", "600"), user="0")
    reg = imagelib.Registry(work)
    refs = {"bb": reg.push(layout, "bb", "test/bb", "v1"), "sleeper": reg.push(layout, "sleeper", "test/sleeper", "v1"),
            "bb_digest": imagelib.layout_manifest_digest(layout, "bb"),
            "sleeper_digest": imagelib.layout_manifest_digest(layout, "sleeper"), "registry": reg, "work": work}
    yield refs
    reg.close()
    shutil.rmtree(work, ignore_errors=True)


def cached(nexd):
    return {i["digest"]: i for i in nexd.get("/v1/images").json()["images"]}


def evicted(nexd):
    events = nexd.get("/v1/events", params={"limit": 1000}).json()["events"]
    return [e["data"] for e in events if e["type"] == "image_evicted"]


def test_lru_eviction_spares_images_in_use(request, registry_images):
    imgs = registry_images
    # measure one image, then bound the cache to one and a half of it
    probe = start_test_nex(request)
    try:
        assert probe.post("/v1/images/pull", json={"image": imgs["bb"]}).status_code == 200
        size = cached(probe)[imgs["bb_digest"]]["size"]
    finally:
        finish_test_nex(request, probe)
    nexd = start_test_nex(request, args=["--image-cache-bytes", str(size * 3 // 2)])
    try:
        assert nexd.post("/v1/images/pull", json={"image": imgs["bb"]}).status_code == 200
        assert list(cached(nexd)) == [imgs["bb_digest"]] and evicted(nexd) == []
        # a second image: the first, unused and least recently used, goes
        w = nexd.deploy_ok(name="hold", image=imgs["sleeper"])
        nexd.wait_state(w["id"], "running", timeout=30)
        assert list(cached(nexd)) == [imgs["sleeper_digest"]]
        (ev,) = evicted(nexd)
        assert ev["digest"] == imgs["bb_digest"] and ev["references"] == [imgs["bb"]] and ev["size"] == size, ev
        assert ev["cache_bound"] == size * 3 // 2 and ev["cache_bytes"] <= ev["cache_bound"], ev
        assert not (Path(nexd.data_dir) / "oci" / "trees" / imgs["bb_digest"][7:]).exists()
        # the first again: the second is in use, so nothing goes, and the cache stays over its bound
        assert nexd.post("/v1/images/pull", json={"image": imgs["bb"]}).status_code == 200
        assert set(cached(nexd)) == {imgs["bb_digest"], imgs["sleeper_digest"]} and len(evicted(nexd)) == 1
        # once its workload is gone, the next pull evicts the second
        nexd.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 1})
        nexd.wait_state(w["id"], TERMINAL_STATES, timeout=15)
        assert nexd.post("/v1/images/pull", json={"image": imgs["bb"]}).status_code == 200
        assert list(cached(nexd)) == [imgs["bb_digest"]]
        assert [e["digest"] for e in evicted(nexd)] == [imgs["bb_digest"], imgs["sleeper_digest"]]
        # what remains still deploys
        w = nexd.wait_state(nexd.deploy_ok(name="after", image=imgs["bb"], cmd=["echo", "ok"])["id"],
                            TERMINAL_STATES, timeout=30)
        assert w["state"] == "exited" and nexd.log_texts(w["id"]) == ["ok"], w
    finally:
        finish_test_nex(request, nexd)


def test_negative_bound_is_refused():
    r = subprocess.run([build_dir() / "nexd", "--image-cache-bytes", "-1"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "image_cache_bytes" in r.stderr, r.stderr
