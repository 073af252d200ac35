# SPDX-License-Identifier: Apache-2.0
"""test_images.py — OCI images in the sandbox driver, against a real nexd and a real registry on loopback.

The images are built here from Debian's busybox-static with umoci (imagelib.py) and pushed with skopeo to Debian's
docker-registry, started with a config of its own on a free loopback port.  Covered: pulls by tag, by digest and
from an OCI layout; what runs (Entrypoint/Cmd, Env, WorkingDir, User resolved from the image's /etc/passwd) from
the image and overridden by the request; exec into an image workload; two workloads of one image that do not see
each other's writes; an unknown user; concurrent deploys pulling once, with the pull's events; the cache's list,
delete and 409; `nex run --image` and `nex image ls|pull|rm`; and the request's checks (422 naming the field).
Hostile images are test_images_hostile.py's.
"""

import tempfile
import threading
from pathlib import Path

import pytest

import imagelib
from conftest import TERMINAL_STATES, start_test_nex, finish_test_nex


@pytest.fixture(scope="module")
def images():
    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="nex-images-"))
    layout = imagelib.busybox_layout(work, "bb")
    imagelib.busybox_layout(work, "sleeper", cmd=("sleep", "600"), user="0")
    reg = imagelib.Registry(work)
    refs = {
        "bb": reg.push(layout, "bb", "test/bb", "v1"),
        "sleeper": reg.push(layout, "sleeper", "test/sleeper", "v1"),
        "layout": f"oci-layout://{layout}:bb",
        "bb_digest": imagelib.layout_manifest_digest(layout, "bb"),
        "registry": reg,
        "layout_dir": layout,
    }
    yield refs
    reg.close()


def ended(nexd, wid, timeout=30):
    return nexd.wait_state(wid, TERMINAL_STATES, timeout=timeout)


def test_tag_pull_runs_the_image_config(nexd_module, images):
    w = nexd_module.deploy_ok(name="bb", image=images["bb"], env={"EXTRA": "1"})
    assert w["image"] == images["bb"] and w["artifact"] is None
    w = ended(nexd_module, w["id"])
    assert w["state"] == "exited" and w["exit_code"] == 0, w
    assert nexd_module.log_texts(w["id"]) == ["hello from image", "uid=1000(app) gid=1000(app) groups=2000(extra)",
                                              "/work"]
    assert w["image_digest"] == images["bb_digest"]
    p = w["process"]
    assert p["argv"] == ["sh", "-c", "echo hello from $GREETING; id; pwd"] and w["argv"] == p["argv"]
    assert p["uid"] == 1000 and p["gid"] == 1000 and p["groups"] == [2000] and p["cwd"] == "/work"
    assert p["env"]["GREETING"] == "image" and p["env"]["EXTRA"] == "1" and p["env"]["HOME"] == "/home/app"


def test_overrides_replace_entrypoint_cmd_env_user_cwd(nexd_module, images):
    w = nexd_module.deploy_ok(name="bb-over", image=images["bb"], entrypoint=["/bin/sh", "-c"],
                              cmd=["echo $GREETING; id -u; id -g; pwd"], env={"GREETING": "request"}, user="0:2000",
                              cwd="/tmp")
    w = ended(nexd_module, w["id"])
    assert w["state"] == "exited", w
    assert nexd_module.log_texts(w["id"]) == ["request", "0", "2000", "/tmp"]
    # cmd alone keeps the image's (empty) Entrypoint and replaces its Cmd; a user by name
    w = nexd_module.deploy_ok(name="bb-cmd", image=images["bb"], cmd=["id", "-un"], user="app")
    w = ended(nexd_module, w["id"])
    assert nexd_module.log_texts(w["id"]) == ["app"], w


def test_digest_and_layout_pulls(nexd_module, images):
    by_digest = images["bb"].rsplit(":", 1)[0] + "@" + images["bb_digest"]
    for ref in (by_digest, images["layout"]):
        w = ended(nexd_module, nexd_module.deploy_ok(name="bb-ref", image=ref, cmd=["echo", "ok"])["id"])
        assert w["state"] == "exited" and w["image_digest"] == images["bb_digest"], w
        assert nexd_module.log_texts(w["id"]) == ["ok"]
    wrong = images["bb"].rsplit(":", 1)[0] + "@sha256:" + "0" * 64
    w = ended(nexd_module, nexd_module.deploy_ok(name="bb-wrong", image=wrong)["id"])
    assert w["state"] == "failed" and "not found" in w["reason"], w


def test_exec_and_private_writes(nexd_module, images):
    a = nexd_module.deploy_ok(name="sl-a", image=images["sleeper"])
    b = nexd_module.deploy_ok(name="sl-b", image=images["sleeper"])
    for w in (a, b):
        nexd_module.wait_state(w["id"], "running", timeout=30)
    r = nexd_module.post(f"/v1/workloads/{a['id']}/exec",
                         json={"argv": ["sh", "-c", "echo mine > /work/f; echo x > /etc/passwd; rm /bin/ls; cat /work/f"]})
    assert r.status_code == 200 and r.json()["stdout"] == "mine\n" and r.json()["exit_code"] == 0, r.text
    r = nexd_module.post(f"/v1/workloads/{b['id']}/exec",
                         json={"argv": ["sh", "-c", "ls /work; head -1 /etc/passwd; ls /bin/ls"]})
    out = r.json()
    assert out["stdout"] == "root:x:0:0:root:/root:/bin/sh\n/bin/ls\n", out
    # the shared tree is untouched
    digest = nexd_module.workload(a["id"])["image_digest"]
    t = Path(nexd_module.data_dir) / "oci" / "trees" / digest[7:]
    assert (t / "bin" / "ls").is_symlink() and (t / "etc" / "passwd").read_text().startswith("root:")
    # a program the image does not hold
    r = nexd_module.post(f"/v1/workloads/{a['id']}/exec", json={"argv": ["no-such-program"]})
    assert r.status_code == 422 and r.json()["field"] == "argv[0]", r.text
    for w in (a, b):
        nexd_module.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 1})


def test_unknown_user_fails_with_the_reason(nexd_module, images):
    w = ended(nexd_module, nexd_module.deploy_ok(name="bb-nouser", image=images["bb"], user="nobody-here")["id"])
    assert w["state"] == "failed" and "user `nobody-here` is not in the image's /etc/passwd" in w["reason"], w


def test_request_checks(nexd_module, images):
    r = nexd_module.deploy(name="x", image=images["bb"], artifact="file:///bin/true")
    assert r.status_code == 422 and r.json()["field"] == "image", r.text
    r = nexd_module.deploy(name="x")
    assert r.status_code == 422 and r.json()["field"] == "artifact", r.text
    r = nexd_module.deploy(name="x", image="Not A Ref")
    assert r.status_code == 422 and r.json()["field"] == "image", r.text
    r = nexd_module.deploy(name="x", image=images["bb"], argv=["sh"])
    assert r.status_code == 422 and r.json()["field"] == "argv", r.text
    r = nexd_module.deploy(name="x", image=images["bb"], cmd="sh")
    assert r.status_code == 422 and r.json()["field"] == "cmd", r.text
    r = nexd_module.deploy(name="x", artifact=nexd_module.program("hello"), user="0")
    assert r.status_code == 422 and r.json()["field"] == "user", r.text


def test_concurrent_deploys_pull_once_with_events(request, images):
    nexd = start_test_nex(request)
    try:
        ids = [None] * 4

        def go(i):
            ids[i] = nexd.deploy_ok(name=f"c{i}", image=images["bb"], cmd=["echo", str(i)])["id"]

        threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, wid in enumerate(ids):
            w = ended(nexd, wid)
            assert w["state"] == "exited" and nexd.log_texts(wid) == [str(i)], w
        events = nexd.get("/v1/events", params={"limit": 1000}).json()["events"]
        types = [e["type"] for e in events]
        assert types.count("image_pull_started") == 1, types
        done = [e for e in events if e["type"] == "image_pull_completed"]
        assert len(done) == 1 and done[0]["data"]["digest"] == images["bb_digest"], done
        assert done[0]["data"]["bytes_total"] > 500_000 and done[0]["data"]["bytes_done"] == done[0]["data"][
            "bytes_total"]
        assert "image_pull_progress" in types
    finally:
        finish_test_nex(request, nexd)


def test_cache_list_delete_and_409(request, images):
    nexd = start_test_nex(request)
    try:
        w = nexd.deploy_ok(name="hold", image=images["sleeper"])
        nexd.wait_state(w["id"], "running", timeout=30)
        listed = nexd.get("/v1/images").json()
        (img,) = listed["images"]
        assert img["references"] == [images["sleeper"]] and img["workloads"] == [w["id"]] and img["size"] > 0
        assert img["last_used_at"] is not None
        r = nexd.delete(f"/v1/images/{img['digest']}")
        assert r.status_code == 409, r.text
        nexd.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 1})
        ended(nexd, w["id"])
        r = nexd.delete(f"/v1/images/{img['digest']}")
        assert r.status_code == 200 and r.json()["deleted"] is True, r.text
        assert nexd.get("/v1/images").json()["images"] == []
        assert not (Path(nexd.data_dir) / "oci" / "trees" / img["digest"][7:]).exists()
        assert nexd.delete(f"/v1/images/{img['digest']}").status_code == 404
        # pulled ahead, then by the CLI
        r = nexd.post("/v1/images/pull", json={"image": images["bb"]})
        assert r.status_code == 200 and r.json()["digest"] == images["bb_digest"], r.text
        r = nexd.post("/v1/images/pull", json={"image": images["registry"].host + "/test/missing:v1"})
        assert r.status_code == 422 and r.json()["field"] == "image", r.text
        cli = nexd.cli("image", "ls")
        assert cli.returncode == 0 and images["bb_digest"] in cli.stdout, cli.stderr
        cli = nexd.cli("run", "--image", images["bb"], "-u", "0", "--", "sh", "-c", "echo from cli")
        assert cli.returncode == 0, cli.stderr
        wid = cli.stdout.strip()
        ended(nexd, wid)
        assert nexd.log_texts(wid) == ["from cli"]
        cli = nexd.cli("image", "rm", images["bb_digest"])
        assert cli.returncode == 0 and cli.stdout.strip() == images["bb_digest"], cli.stderr
        cli = nexd.cli("image", "rm", images["bb_digest"])
        assert cli.returncode == 1 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    finally:
        finish_test_nex(request, nexd)


def test_image_workload_survives_a_nexd_restart(request, images):
    nexd = start_test_nex(request)
    try:
        w = nexd.deploy_ok(name="keep", image=images["sleeper"])
        before = nexd.wait_state(w["id"], "running", timeout=30)
        nexd.restart()
        after = nexd.wait_state(w["id"], "running", timeout=15)
        assert after["pid"] == before["pid"] and after["process"] == before["process"]
        r = nexd.post(f"/v1/workloads/{w['id']}/exec", json={"argv": ["sh", "-c", "id -u; ls /bin/busybox"]})
        assert r.status_code == 200 and r.json()["stdout"] == "0\n/bin/busybox\n", r.text
    finally:
        finish_test_nex(request, nexd)
