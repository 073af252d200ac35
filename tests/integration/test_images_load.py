# SPDX-License-Identifier: Apache-2.0
"""test_images_load.py — image tars: `docker-archive:///path.tar` references, and POST /v1/images (`nex image
load`) uploading an OCI layout tar or a docker-archive as the body, against a real nexd.

The images are the busybox image imagelib.py builds with umoci; the docker-archive is written by skopeo (as
`docker save` would), the OCI layout tar by Python's tarfile.  Covered: a deploy of a docker-archive; an upload of
each form (201, the digests, the references it carried: RepoTags of a docker-archive, whole references in
ref.name annotations), then deploys by bare digest and by those references without any registry; the upload's
refusals (not a tar, a JSON body, a `..` name, neither layout nor archive, links out of the tar, past the
bound and a gzip bomb: 413) leaving nothing behind; links between the tar's own files (the legacy
`<id>/layer.tar`); the CLI.
"""

import gzip
import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

import imagelib
from conftest import TERMINAL_STATES, start_test_nex, finish_test_nex

TAR = {"Content-Type": "application/x-tar"}


@pytest.fixture(scope="module")
def tars():
    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="nex-images-load-"))
    layout = imagelib.busybox_layout(work, "bb")
    archive = work / "bb-archive.tar"
    imagelib.run("skopeo", "copy", f"oci:{layout}:bb", f"docker-archive:{archive}:test/bb:v1")
    # An OCI layout as one tar, its one manifest named by a whole reference.
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "example.test/load/bb:v2"
    layout_tar = work / "bb-layout.tar"
    with tarfile.open(layout_tar, "w") as t:
        t.add(layout / "oci-layout", "oci-layout")
        t.add(layout / "blobs", "blobs")
        data = json.dumps(index).encode()
        info = tarfile.TarInfo("index.json")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    yield {"work": work, "archive": archive, "layout_tar": layout_tar,
           "digest": imagelib.layout_manifest_digest(layout, "bb")}
    shutil.rmtree(work, ignore_errors=True)


def ended(nexd, wid, timeout=30):
    return nexd.wait_state(wid, TERMINAL_STATES, timeout=timeout)


def leftovers(nexd):
    return sorted(p.name for p in (Path(nexd.data_dir) / "oci" / "blobs").iterdir() if p.name.startswith("."))


def test_docker_archive_reference(nexd_module, tars):
    w = nexd_module.deploy_ok(name="arch", image=f"docker-archive://{tars['archive']}")
    w = ended(nexd_module, w["id"])
    assert w["state"] == "exited" and w["exit_code"] == 0, w
    assert nexd_module.log_texts(w["id"])[0] == "hello from image"
    assert w["image_digest"].startswith("sha256:") and w["process"]["cwd"] == "/work"
    # the same archive again: the same digest (the manifest made of it is deterministic), from the cache
    w2 = ended(nexd_module, nexd_module.deploy_ok(name="arch2", image=f"docker-archive://{tars['archive']}",
                                                  cmd=["echo", "again"])["id"])
    assert w2["image_digest"] == w["image_digest"] and nexd_module.log_texts(w2["id"]) == ["again"], w2
    missing = nexd_module.deploy_ok(name="arch3", image=f"docker-archive://{tars['work']}/none.tar")
    missing = ended(nexd_module, missing["id"])
    assert missing["state"] == "failed" and "none.tar" in missing["reason"], missing
    assert leftovers(nexd_module) == []


def test_upload_docker_archive_then_deploy_by_tag_and_digest(request, tars):
    nexd = start_test_nex(request)
    try:
        r = nexd.post("/v1/images", data=tars["archive"].read_bytes(), headers=TAR)
        assert r.status_code == 201, r.text
        body = r.json()
        (img,) = body["images"]
        assert body["digest"] == img["digest"] and img["references"] == ["docker.io/test/bb:v1"], body
        listed = nexd.get("/v1/images").json()["images"]
        assert [i["digest"] for i in listed] == [img["digest"]] and listed[0]["references"] == img["references"]
        # by the reference it carried (docker.io is never asked: the tag resolves in the cache) and by digest
        for ref in ("test/bb:v1", img["digest"]):
            w = ended(nexd, nexd.deploy_ok(name="up", image=ref, cmd=["echo", ref])["id"])
            assert w["state"] == "exited" and w["image_digest"] == img["digest"], w
            assert nexd.log_texts(w["id"]) == [ref]
        assert leftovers(nexd) == []
        # a bare digest the store does not have fails the deploy with the reason
        w = ended(nexd, nexd.deploy_ok(name="nope", image="sha256:" + "0" * 64)["id"])
        assert w["state"] == "failed" and "not in this node's store" in w["reason"], w
    finally:
        finish_test_nex(request, nexd)


def test_upload_oci_layout_tar_and_cli(request, tars):
    nexd = start_test_nex(request)
    try:
        cli = nexd.cli("image", "load", str(tars["layout_tar"]))
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout.split() == [tars["digest"], "example.test/load/bb:v2"], cli.stdout
        w = ended(nexd, nexd.deploy_ok(name="lay", image="example.test/load/bb:v2", cmd=["echo", "layout"])["id"])
        assert w["state"] == "exited" and w["image_digest"] == tars["digest"], w
        assert nexd.log_texts(w["id"]) == ["layout"]
        cli = nexd.cli("image", "load", str(tars["work"] / "none.tar"))
        assert cli.returncode != 0 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    finally:
        finish_test_nex(request, nexd)


def _tar_infos(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def test_upload_resolves_links_between_its_own_files(nexd_module, tars):
    """The layer named through the legacy `<id>/layer.tar` symlink skopeo writes (`../<digest>.tar`), as older
    `docker save` names layers: the link is resolved between the tar's own names, never on disk."""
    src = tarfile.open(tars["archive"])
    manifest = json.loads(src.extractfile("manifest.json").read())
    link = next(m for m in src.getmembers() if m.issym())
    manifest[0]["Layers"] = [link.name]
    manifest[0]["RepoTags"] = ["links/bb:v1"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as out:
        for m in src.getmembers():
            if m.name == "manifest.json":
                data = json.dumps(manifest).encode()
                m.size = len(data)
                out.addfile(m, io.BytesIO(data))
            else:
                out.addfile(m, src.extractfile(m) if m.isfile() else None)
    r = nexd_module.post("/v1/images", data=buf.getvalue(), headers=TAR)
    assert r.status_code == 201 and r.json()["images"][0]["references"] == ["docker.io/links/bb:v1"], r.text
    w = ended(nexd_module, nexd_module.deploy_ok(name="links", image="links/bb:v1", cmd=["echo", "linked"])["id"])
    assert w["state"] == "exited" and nexd_module.log_texts(w["id"]) == ["linked"], w


def test_upload_refusals(nexd_module, tars):
    cases = [
        (b"this is no tar at all" * 100, TAR, 422, "body"),
        (b'{"image": "busybox"}', {"Content-Type": "application/json"}, 422, "Content-Type"),
        (_tar([("../escape", b"x")]), TAR, 422, "body"),
        (_tar([("hello.txt", b"x")]), TAR, 422, "body"),
        (_tar([("manifest.json", b'[{"Config": "missing.json", "Layers": ["l.tar"]}]')]), TAR, 422, "body"),
        (b"", TAR, 422, "body"),
        # a manifest.json that is a link out of the tar names nothing in it
        (_tar_infos([(_symlink("manifest.json", "/etc/passwd"), None)]), TAR, 422, "body"),
        (_tar_infos([(_symlink("manifest.json", "../../etc/passwd"), None)]), TAR, 422, "body"),
    ]
    for data, headers, status, field in cases:
        r = nexd_module.post("/v1/images", data=data, headers=headers)
        assert r.status_code == status, (data[:40], r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json") and r.json()["field"] == field, r.text
    assert leftovers(nexd_module) == []
    assert not (Path("/") / "escape").exists()


def test_upload_past_the_bound_is_413(request, tars):
    nexd = start_test_nex(request, args=["--image-max-unpacked-mb", "1"])
    try:
        r = nexd.post("/v1/images", data=tars["archive"].read_bytes(), headers=TAR)
        assert r.status_code == 413, r.text

        def chunks():  # no Content-Length: refused as the bytes pass the bound
            data = tars["archive"].read_bytes()
            for i in range(0, len(data), 65536):
                yield data[i:i + 65536]

        r = nexd.post("/v1/images", data=chunks(), headers=TAR)
        assert r.status_code == 413, r.text
        # a gzip bomb: 64 KiB on the wire, 64 MiB once decompressed
        bomb = gzip.compress(_tar([("manifest.json", b"[]"), ("zeros", bytes(64 * 1024 * 1024))]), 9)
        assert len(bomb) < 200_000
        r = nexd.post("/v1/images", data=bomb, headers=TAR)
        assert r.status_code == 413 and "more than" in r.json()["detail"], r.text
        assert leftovers(nexd) == [] and nexd.get("/v1/images").json()["images"] == []
    finally:
        finish_test_nex(request, nexd)
