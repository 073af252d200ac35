# SPDX-License-Identifier: Apache-2.0
"""test_disk_full.py — a node whose data dir fills up keeps answering, refuses new writes with 507, corrupts
nothing, and recovers once space returns.

The data dir is a small tmpfs the test mounts (so nothing else on the machine fills).  It is filled by uploads (a
static ELF padded to 1 MiB, each unique) and by a workload printing as fast as it can, then topped up by a
filler file until not a byte is left.  While full: GET /v1/node still answers 200, an upload and a deploy are
refused with 507 problem JSON naming the full disk, the registry passes PRAGMA integrity_check, and the records
made before are all still there.  Once the filler is removed, a deploy of hello runs to exit code 3 again.
"""

import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import Nex, output_root, program_path, skip_reason, wait_until

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

SIZE_MB = 24


@pytest.fixture
def small_disk(request):
    mnt = Path(tempfile.mkdtemp(prefix="nex-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0755", "nex-full-test", str(mnt)],
                   check=True)
    out = output_root() / f"test_disk_full.{request.node.name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    nex = Nex(out, mnt / "data")
    try:
        nex.start()
        yield nex, mnt
    finally:
        try:
            nex.close()
        finally:
            nex.abort()
            subprocess.run(["umount", "-l", str(mnt)], check=False)
            shutil.rmtree(mnt, ignore_errors=True)


def upload(nex, data):
    return nex.post("/v1/artifacts", data=data, headers={"Content-Type": "application/octet-stream"}, timeout=30)


def fill(path):
    """Writes zeros to PATH (appending) until the file system is full (it may be already: then even opening fails)."""
    try:
        f = open(path, "ab", buffering=0)
    except OSError:
        return
    with f:
        chunk = b"\0" * (1 << 16)
        try:
            while True:
                f.write(chunk)

        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")

        except OSError:
            pass


def integrity(nex):
    db = sqlite3.connect(f"file:{nex.data_dir}/registry.db?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def test_a_full_data_dir_is_refused_with_507_and_recovers(small_disk):
    nex, mnt = small_disk
    hello = program_path("hello").read_bytes()
    done = nex.deploy_ok(name="before", artifact=nex.program("hello"))
    nex.wait_state(done["id"], ("exited",), timeout=30)
    # Room held back, to be given back at the end: more than the 8 MiB of output the flood's agent may still hold
    # when it is stopped (delivered, and stored, once there is room again).
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * (12 << 20))
    # a workload printing 8 KiB lines as fast as it can: its log fills the disk too
    chatty = nex.deploy_ok(name="chatty", artifact=nex.program("hostile"), argv=["hostile", "flood"])
    chatty_pid = nex.wait_state(chatty["id"], "running", timeout=30)["pid"]

    # uploads until the disk refuses one
    statuses = []
    for i in range(2 * SIZE_MB):
        r = upload(nex, hello + os.urandom(1 << 20) + i.to_bytes(4, "big"))
        statuses.append(r.status_code)
        if r.status_code not in (200, 201):
            break
    assert statuses[-1] == 507, statuses
    problem = r.json()
    assert problem["status"] == 507 and "space" in problem["detail"].lower(), problem
    assert r.headers["Content-Type"].startswith("application/problem+json")

    fill(mnt / "filler")  # not one byte left
    time.sleep(1.0)

    assert nex.get("/v1/node").status_code == 200
    # A deploy is refused with 507 when its record cannot be stored; SQLite may still have room in its WAL for
    # the record, and then the workload itself must end with a clear reason (or run: hello needs no new space
    # when its artifact is already cached).
    r = nex.deploy(name="while-full", artifact=nex.program("hello"))
    if r.status_code == 202:
        w = nex.wait_state(r.json()["id"], ("exited", "failed"), timeout=30)
        print("deploy while full:", w["state"], w["reason"])
        assert w["state"] == "exited" or "space" in (w["reason"] or "").lower(), w
    else:
        assert r.status_code == 507, r.text
    token = nex.post("/v1/tokens", json={"name": "while-full", "scopes": ["read"]})
    print("token while full:", token.status_code)
    assert token.status_code in (201, 507), token.text
    assert nex.workload(done["id"])["exit_code"] == 3
    assert integrity(nex) == "ok"

    lost = [l for l in nex.get("/metrics").text.splitlines() if l.startswith("nex_log_lines_lost_total ")]
    assert lost and float(lost[0].split()[1]) > 0, lost  # output was dropped, and counted

    # The flood is stopped before room is given back (else its output, stored as fast as it comes, takes the room
    # at once).  While the disk is full its `stopped` cannot be recorded: it is kept and written once there is room.
    assert nex.delete(f"/v1/workloads/{chatty['id']}", params={"grace_s": 1}).status_code in (200, 202)
    wait_until(lambda: not os.path.exists(f"/proc/{chatty_pid}"), timeout=15, what="the flood's sandbox to end")
    (mnt / "filler").unlink()
    stopped = nex.wait_state(chatty["id"], ("stopped", "failed", "exited"), timeout=30)
    assert stopped["state"] == "stopped", stopped

    w = nex.deploy_ok(name="after", artifact=nex.program("hello"))
    assert nex.wait_state(w["id"], ("exited", "failed"), timeout=30)["exit_code"] == 3
    assert integrity(nex) == "ok"
