# SPDX-License-Identifier: Apache-2.0
"""test_retain.py — the registry's growth bounded in time: --retain-ended (server/retain.c).

A real nexd with a short retention deletes ended workloads with their history, logs and events, keeps workloads
that have not ended, and gives the freed pages back to the file system (the SQLite file is read beside nexd, as a
backup tool would).  The retention comes from nexd.json here (`retain_ended`), so the config-file path is
covered too; a bad duration stops nexd with one line.  Rows made by tests/tools/registry-fill (the registry's own
insert code) stand for many old workloads; a file made before auto_vacuum is converted at start.
"""

import json
import sqlite3
import subprocess

from conftest import build_dir, make_nex, finish_nex, wait_until, skip_reason
from test_contract import check

import pytest


def db_figures(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        q = lambda sql: db.execute(sql).fetchone()[0]
        return {"workloads": q("SELECT count(*) FROM workloads"), "states": q("SELECT count(*) FROM workload_states"),
                "logs": q("SELECT count(*) FROM logs"), "pages": q("PRAGMA page_count"),
                "free": q("PRAGMA freelist_count"), "auto_vacuum": q("PRAGMA auto_vacuum")}
    finally:
        db.close()


def fill(db_path, n, ago_ms):
    tool = build_dir() / "tests" / "tools" / "registry-fill"
    r = subprocess.run([str(tool), str(db_path), str(n), str(ago_ms)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip() == str(n), r.stderr


@pytest.fixture
def nex_factory(request):
    if skip_reason():
        pytest.skip(skip_reason())
    made = []

    def make(args=()):
        nex = make_nex(f"test_retain.{request.node.name}", extra_args=args)
        made.append(nex)
        return nex

    yield make
    rep = getattr(request.node, "rep_call", None)
    for nex in made:
        finish_nex(nex, passed=rep is not None and rep.passed)


def test_ended_workloads_go_with_logs_and_events(nex_factory):
    nex = nex_factory()
    cfg = nex.data_dir / "nexd.json"
    cfg.write_text(json.dumps({"retain_ended": "2s"}))
    nex.extra_args = ["--config", str(cfg)]
    nex.start()
    ended = nex.deploy_ok(name="short", artifact=nex.program("hello"))
    live = nex.deploy_ok(name="long", artifact=nex.program("sleeper"))
    nex.wait_state(ended["id"], {"exited"})
    nex.wait_state(live["id"], {"running"})
    assert nex.log_texts(ended["id"]), "hello's output was stored"
    events = lambda wid: nex.get("/v1/events", params={"workload": wid}).json()["events"]
    assert events(ended["id"]), "its events were stored"

    # Ended 2 s ago at the latest by the next pass (a pass every second): the workload and what it had go.
    wait_until(lambda: nex.get(f"/v1/workloads/{ended['id']}").status_code == 404, timeout=15,
               what="the ended workload deleted")
    assert check(nex.get(f"/v1/workloads/{ended['id']}/logs"), "get", "/v1/workloads/{id}/logs")["status"] == 404
    assert events(ended["id"]) == []
    # The running one stays, whatever its age, with its history.
    w = check(nex.get(f"/v1/workloads/{live['id']}"), "get", "/v1/workloads/{id}")
    assert w["state"] == "running" and [h["state"] for h in w["history"]][:1] == ["pending"]
    figures = db_figures(nex.data_dir / "registry.db")
    assert figures["workloads"] == 1 and figures["auto_vacuum"] == 2
    assert "retention: deleted 1 ended workloads" in nex.daemon.log_path.read_text()


def test_old_rows_deleted_and_pages_given_back(nex_factory):
    nex = nex_factory(["--retain-ended", "30m"])
    db = nex.data_dir / "registry.db"
    fill(db, 3000, 3600 * 1000)  # ended an hour ago: older than the retention
    before = db_figures(db)
    assert before["workloads"] == 3000 and before["states"] == 3000
    nex.start()
    wait_until(lambda: nex.get("/v1/workloads", params={"limit": 1}).json()["count"] == 0, timeout=30,
               what="the old workloads deleted")
    after = wait_until(lambda: (lambda f: f if f["free"] == 0 else None)(db_figures(db)), timeout=10,
                       what="the free pages given back")
    assert after["workloads"] == 0 and after["states"] == 0
    assert after["pages"] < before["pages"] / 2, (before, after)


def test_recent_rows_kept_and_old_file_converted(nex_factory):
    nex = nex_factory(["--retain-ended", "1h"])
    db = nex.data_dir / "registry.db"
    fill(db, 200, 60 * 1000)  # ended a minute ago: kept
    # A registry as an older nexd made it: no auto_vacuum.
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode = DELETE")
    c.execute("PRAGMA auto_vacuum = NONE")
    c.execute("VACUUM")
    c.execute("PRAGMA journal_mode = WAL")
    c.close()
    assert db_figures(db)["auto_vacuum"] == 0
    nex.start()
    page = nex.get("/v1/workloads", params={"limit": 1000, "namespace": "fill"}).json()
    assert page["count"] == 180  # every 10th is in fill-b
    f = db_figures(db)
    assert f["auto_vacuum"] == 2 and f["workloads"] == 200


@pytest.mark.parametrize("value", ["5x", "-1s", "10", "s", "99999d"])
def test_bad_retention_refused(tmp_path, value):
    r = subprocess.run([str(build_dir() / "nexd"), "--data-dir", str(tmp_path), "--retain-ended", value],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "retain_ended" in lines[0], r.stderr
