# SPDX-License-Identifier: Apache-2.0
"""test_faults_start.py — nexd refuses a data dir it must not use, and its workloads ignore signals meant for it.

A registry file that is corrupt or not a database, one written by a newer nexd (schema version beyond ours), and
a data dir on a read-only mount: nexd exits non-zero at once, its last stderr line is one plain sentence naming
the problem, and the files are left byte for byte as they were (no -wal/-shm beside them either).

Signals: sandboxes run in sessions of their own, so a SIGINT or SIGTERM sent to nexd's process group (a Ctrl-C on
the terminal of `scripts/run-node`) stops nexd but no workload; the next nexd re-adopts them.
"""

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import build_dir, free_port, skip_reason
from sandboxlib import probe

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


def run_nexd(data_dir, timeout=15):
    """Runs nexd on DATA_DIR until it exits (it must: every case here is refused); returns (status, stderr lines)."""
    argv = [str(build_dir() / "nexd"), "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir)]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return r.returncode, r.stderr.decode(errors="replace").splitlines()


def snapshot(d):
    """{relative path: sha256} of every file under D."""
    out = {}
    for p in sorted(Path(d).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def fresh_data_dir(tmp_path):
    """A data dir that a nexd made and left (started, then stopped with SIGTERM)."""
    d = tmp_path / "data"
    port = free_port()
    p = subprocess.Popen([str(build_dir() / "nexd"), "--listen", f"127.0.0.1:{port}", "--data-dir", str(d)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not (d / "registry.db").exists() or not (d / "identity.json").exists():
        assert time.monotonic() < deadline, "nexd did not create its data dir"
        time.sleep(0.05)
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == 0
    return d


def assert_refused(d, *words):
    before = snapshot(d)
    rc, lines = run_nexd(d)
    assert rc != 0, lines
    assert lines, "nexd said nothing"
    last = lines[-1]
    assert last.startswith("nexd: ") and "\n" not in last, lines
    for w in words:
        assert w in last, (w, last)
    assert snapshot(d) == before, "nexd changed the files of a data dir it refused"
    return last


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "registry.db").write_bytes(os.urandom(16384))
    assert_refused(d, "registry.db", "not a SQLite database", "leaves it as it is")


def test_a_corrupt_database_is_refused_untouched(tmp_path):
    d = fresh_data_dir(tmp_path)
    db = d / "registry.db"
    for extra in ("registry.db-wal", "registry.db-shm"):
        (d / extra).unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    data[0:16] = b"not sqlite 3!!\0\0"[:16]  # the header's magic string is gone
    db.write_bytes(bytes(data))
    assert_refused(d, "corrupt or not a SQLite database")


def test_a_registry_of_a_newer_nexd_is_refused_untouched(tmp_path):
    d = fresh_data_dir(tmp_path)
    subprocess.run(["sqlite3", str(d / "registry.db"), "PRAGMA journal_mode=DELETE; PRAGMA user_version=999"],
                   check=True, capture_output=True)
    for extra in ("registry.db-wal", "registry.db-shm"):
        assert not (d / extra).exists()
    last = assert_refused(d, "schema version 999 is newer")
    assert "run a newer nexd" in last
    assert not (d / "registry.db-wal").exists()


def test_a_read_only_data_dir_is_refused(tmp_path):
    mnt = Path(tempfile.mkdtemp(prefix="nex-ro-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "nex-ro-test", str(mnt)], check=True)
    try:
        d = fresh_data_dir(mnt)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        last = assert_refused(d, "is not writable", "Read-only file system")
        assert str(d) in last
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        mnt.rmdir()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_nexds_process_group_spares_the_workloads(nexd, sig):
    wid = probe(nexd, "sleep", "600", name="sleeper")["id"]
    nexd.wait_log(wid, "sleep: started", timeout=20)
    pid = nexd.workload(wid)["pid"]
    assert os.getpgid(pid) != os.getpgid(nexd.pid), "the workload is in nexd's process group"

    os.killpg(os.getpgid(nexd.pid), sig)  # what a Ctrl-C (or a kill of the group) does
    assert nexd.daemon.proc.wait(10) == 0
    nexd.daemon.returncode = 0
    time.sleep(0.5)
    assert alive(pid), "the workload died with nexd's process group"

    nexd.start()
    w = nexd.workload(wid)
    assert w["state"] == "running" and w["pid"] == pid, w
