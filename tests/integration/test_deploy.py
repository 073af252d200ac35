# SPDX-License-Identifier: Apache-2.0
"""test_deploy.py — a workload's life through the REST API, end to end, against a real nexd.

Deploys the static test programs (tests/programs/) and follows them: states and their history, exit codes,
logs (streams, order, timestamps, tail), argv and env, the artifact digest and a sha256 check, the node's
counters, list filters, stopping (SIGTERM, then SIGKILL after the grace period), and records and running
workloads surviving a restart of nexd.
"""

import time
import uuid

from conftest import file_sha256, parse_time, program_path, url_path


def hello_fields(nex, **extra):
    fields = {"name": "hello", "artifact": nex.program("hello")}
    fields.update(extra)
    return fields


def test_hello_end_to_end(nexd):
    r = nexd.deploy(**hello_fields(nexd, argv=["hello", "a b", "c"], env={"GREETING": "hi there"}))
    assert r.status_code == 202, r.text
    w = r.json()
    wid = w["id"]
    assert uuid.UUID(wid)
    assert url_path(r.headers.get("Location", "")) == f"/v1/workloads/{wid}"
    assert w["state"] == "pending"
    assert w["name"] == "hello"
    assert w["namespace"] == "default"
    assert w["artifact"] == nexd.program("hello")
    assert w["argv"] == ["hello", "a b", "c"]
    assert w["env"] == {"GREETING": "hi there"}
    assert w["driver"] == "sandbox"
    assert w["sha256"] is None
    assert w["exit_code"] is None and w["exit_signal"] is None
    assert w["finished_at"] is None
    parse_time(w["created_at"])

    w = nexd.wait_state(wid, "exited", timeout=15)
    assert w["exit_code"] == 3
    assert w["exit_signal"] is None
    assert w["reason"] is None
    assert w["digest"] == file_sha256(program_path("hello"))
    created, started, finished = (parse_time(w[k]) for k in ("created_at", "started_at", "finished_at"))
    assert created <= started <= finished
    assert parse_time(w["updated_at"]) >= created

    assert [h["state"] for h in w["history"]] == ["pending", "starting", "running", "exited"]
    times = [parse_time(h["at"]) for h in w["history"]]
    assert times == sorted(times)

    logs = nexd.logs(wid)
    assert logs["workload_id"] == wid
    assert logs["dropped"] == 0
    lines = logs["lines"]
    by_text = {l["text"]: l for l in lines}
    assert by_text["hello from nex"]["stream"] == "stdout"
    assert by_text["argv: hello a b c"]["stream"] == "stdout"
    assert by_text["greeting: hi there"]["stream"] == "stdout"
    assert by_text["hello on stderr"]["stream"] == "stderr"
    assert len(lines) == 4, lines
    seqs = [l["seq"] for l in lines]
    assert all(isinstance(s, int) for s in seqs)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    for l in lines:
        parse_time(l["ts"])
    # stdout keeps its own order
    stdout = [l["text"] for l in lines if l["stream"] == "stdout"]
    assert stdout == ["hello from nex", "argv: hello a b c", "greeting: hi there"]
    assert w["logs"] == {"lines": 4, "dropped": 0}

    tail = nexd.logs(wid, tail=1)
    assert len(tail["lines"]) == 1
    assert tail["lines"][0]["seq"] == max(seqs)
    assert len(nexd.logs(wid, tail=100)["lines"]) == 4

    node = nexd.get("/v1/node").json()
    assert node["workloads"]["exited"] == 1
    assert node["workloads"]["total"] == 1
    assert node["workloads"]["running"] == 0


def test_default_argv_and_no_env(nexd):
    w = nexd.deploy_ok(name="plain", artifact=nexd.program("hello"))
    w = nexd.wait_state(w["id"], "exited")
    stdout = nexd.log_texts(w["id"], "stdout")
    assert stdout[0] == "hello from nex"
    # Without argv the node supplies argv[0], the workload's name, and the record says so (what ran).
    assert stdout[1] == "argv: plain"
    assert w["argv"] == ["plain"]
    assert not any(t.startswith("greeting:") for t in stdout), stdout


def test_args_are_the_arguments_after_the_nodes_argv0(nexd):
    # `args` (nex's meaning of argv): the node puts the workload's name in front; the record shows the vector.
    w = nexd.deploy_ok(name="greeter", artifact=nexd.program("hello"), args=["--port", "80"])
    assert w["argv"] == ["greeter", "--port", "80"]
    w = nexd.wait_state(w["id"], "exited")
    assert nexd.log_texts(w["id"], "stdout")[1] == "argv: greeter --port 80"
    assert nexd.deploy_ok(name="none", artifact=nexd.program("hello"), args=[])["argv"] == ["none"]
    # One or the other, never both; each is checked as argv is.
    for body, field in [(dict(argv=["hello"], args=["x"]), "args"), (dict(args="x"), "args"),
                        (dict(args=["ok", 7]), "args[1]"), (dict(args=[[]]), "args[0]")]:
        r = nexd.deploy(name="bad", artifact=nexd.program("hello"), **body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    assert "not both" in nexd.deploy(name="bad", artifact=nexd.program("hello"), argv=["a"], args=["b"]).json()["detail"]


def test_list_filters(nexd):
    a = nexd.deploy_ok(name="first", artifact=nexd.program("hello"))
    b = nexd.deploy_ok(name="second", namespace="other", artifact=nexd.program("hello"))
    nexd.wait_state(a["id"], "exited")
    nexd.wait_state(b["id"], "exited")
    s = nexd.deploy_ok(name="sleepy", namespace="other", artifact=nexd.program("sleeper"))
    nexd.wait_state(s["id"], "running")

    everything = nexd.workloads()
    assert everything["count"] == 3
    assert [w["id"] for w in everything["workloads"]] == [a["id"], b["id"], s["id"]]  # oldest first

    other = nexd.workloads(namespace="other")
    assert other["count"] == 2
    assert [w["id"] for w in other["workloads"]] == [b["id"], s["id"]]
    assert all(w["namespace"] == "other" for w in other["workloads"])

    exited = nexd.workloads(state="exited")
    assert [w["id"] for w in exited["workloads"]] == [a["id"], b["id"]]

    running = nexd.workloads(state="running", namespace="other")
    assert [w["id"] for w in running["workloads"]] == [s["id"]]

    none = nexd.workloads(namespace="default", state="running")
    assert none["workloads"] == [] and none["count"] == 0 and none["has_more"] is False

    assert nexd.workloads(namespace="nowhere")["count"] == 0

    node = nexd.get("/v1/node").json()["workloads"]
    assert node["exited"] == 2 and node["running"] == 1 and node["total"] == 3


def test_sha256_right(nexd):
    digest = file_sha256(program_path("hello"))
    w = nexd.deploy_ok(**hello_fields(nexd, sha256=digest))
    assert w["sha256"] == digest
    w = nexd.wait_state(w["id"], "exited")
    assert w["exit_code"] == 3
    assert w["digest"] == digest


def test_sha256_wrong(nexd):
    wrong = "0" * 64
    r = nexd.deploy(**hello_fields(nexd, sha256=wrong))
    assert r.status_code == 202, r.text
    w = nexd.wait_state(r.json()["id"], "failed")
    assert "sha256 mismatch" in (w["reason"] or ""), w
    assert w["exit_code"] is None
    assert w["history"][-1]["state"] == "failed"
    assert "running" not in [h["state"] for h in w["history"]]
    assert nexd.logs(w["id"])["lines"] == []
    assert nexd.get("/v1/node").json()["workloads"]["failed"] == 1


def test_stop_sleeper(nexd):
    w = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    wid = w["id"]
    w = nexd.wait_state(wid, "running")
    assert isinstance(w["pid"], int) and w["pid"] > 0
    nexd.wait_log(wid, "sleeper started")  # its SIGTERM handler is in place from here on
    assert nexd.get("/v1/node").json()["workloads"]["running"] == 1

    r = nexd.delete(f"/v1/workloads/{wid}")
    assert r.status_code == 202, r.text
    assert r.json()["id"] == wid

    w = nexd.wait_state(wid, "stopped", timeout=5)
    assert w["finished_at"] is not None
    assert w["exit_code"] in (0, None)
    assert "sleeper got SIGTERM" in nexd.log_texts(wid, "stdout")
    assert [h["state"] for h in w["history"]][-1] == "stopped"

    # The record is kept and a second stop has nothing to do.
    r = nexd.delete(f"/v1/workloads/{wid}")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "stopped"
    assert nexd.workload(wid)["state"] == "stopped"


def test_stop_escalates_to_sigkill(nexd):
    w = nexd.deploy_ok(name="stubborn", artifact=nexd.program("sleeper"), argv=["sleeper", "--ignore-term"])
    wid = w["id"]
    nexd.wait_state(wid, "running")
    nexd.wait_log(wid, "sleeper started")

    t0 = time.monotonic()
    r = nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 1})
    assert r.status_code == 202, r.text
    w = nexd.wait_state(wid, "stopped", timeout=5)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.8, f"stopped after {elapsed:.2f} s: the grace period was not given"
    assert w["exit_signal"] in (9, None), w
    assert "sleeper got SIGTERM" not in nexd.log_texts(wid)

    r = nexd.delete(f"/v1/workloads/{wid}")
    assert r.status_code == 200, r.text


def test_delete_exited_is_a_no_op(nexd):
    w = nexd.deploy_ok(**hello_fields(nexd))
    nexd.wait_state(w["id"], "exited")
    r = nexd.delete(f"/v1/workloads/{w['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "exited"
    assert nexd.workload(w["id"])["exit_code"] == 3


def test_records_survive_restart(nexd):
    w = nexd.deploy_ok(**hello_fields(nexd, argv=["hello", "x"], env={"GREETING": "again"}))
    before = nexd.wait_state(w["id"], "exited")
    logs_before = nexd.logs(w["id"])
    stopped = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    nexd.wait_state(stopped["id"], "running")
    assert nexd.delete(f"/v1/workloads/{stopped['id']}").status_code == 202
    stopped_before = nexd.wait_state(stopped["id"], "stopped", timeout=5)

    nexd.restart()

    after = nexd.workload(w["id"])
    for key in ("id", "name", "namespace", "artifact", "argv", "env", "digest", "state", "exit_code",
                "created_at", "started_at", "finished_at", "history", "logs"):
        assert after[key] == before[key], key
    assert nexd.logs(w["id"]) == logs_before
    assert nexd.workload(stopped["id"])["state"] == stopped_before["state"] == "stopped"
    listed = nexd.workloads()
    assert [x["id"] for x in listed["workloads"]] == [w["id"], stopped["id"]]
    node = nexd.get("/v1/node").json()["workloads"]
    assert node["exited"] == 1 and node["stopped"] == 1 and node["total"] == 2

    # The new nexd runs workloads too.
    again = nexd.deploy_ok(**hello_fields(nexd))
    assert nexd.wait_state(again["id"], "exited")["exit_code"] == 3


def test_running_workload_survives_restart(nexd):
    """The design keeps running workloads across a restart of nexd: the new nexd re-adopts them (same process),
    still receives their output and can stop them."""
    w = nexd.deploy_ok(name="sleeper", artifact=nexd.program("sleeper"))
    wid = w["id"]
    before = nexd.wait_state(wid, "running")
    nexd.wait_log(wid, "sleeper started")

    nexd.restart()

    after = nexd.workload(wid)
    assert after["state"] == "running", after
    assert after["pid"] == before["pid"]
    assert nexd.get("/v1/node").json()["workloads"]["running"] == 1
    r = nexd.delete(f"/v1/workloads/{wid}", params={"grace_s": 5})
    assert r.status_code == 202, r.text
    w = nexd.wait_state(wid, "stopped", timeout=5)
    assert [h["state"] for h in w["history"]] == ["pending", "starting", "running", "stopped"]
    nexd.wait_log(wid, "sleeper got SIGTERM", timeout=5)


def test_a_changed_file_is_fetched_again(nexd, tmp_path):
    """nexd remembers the digest of a file:// artifact it copied (by device, inode, size, mtime and ctime) and
    reuses the cache entry while the file is unchanged; a file changed in place is copied and hashed again."""
    import hashlib
    import shutil
    prog = tmp_path / "prog"
    shutil.copyfile(program_path("hello"), prog)
    tmp_path.chmod(0o755)
    first = nexd.wait_state(nexd.deploy_ok(name="a", artifact=f"file://{prog}")["id"], "exited")
    again = nexd.wait_state(nexd.deploy_ok(name="b", artifact=f"file://{prog}")["id"], "exited")
    assert first["digest"] == again["digest"] == hashlib.sha256(prog.read_bytes()).hexdigest()
    with open(prog, "ab") as f:  # same inode, new bytes
        f.write(b"\0" * 16)
    changed = nexd.wait_state(nexd.deploy_ok(name="c", artifact=f"file://{prog}")["id"], "exited")
    assert changed["digest"] == hashlib.sha256(prog.read_bytes()).hexdigest() != first["digest"], changed
    assert changed["exit_code"] == 3
    # and the expected digest is still checked on a remembered file
    r = nexd.wait_state(nexd.deploy_ok(name="d", artifact=f"file://{prog}", sha256=first["digest"])["id"], "failed")
    assert "sha256 mismatch" in r["reason"], r


def test_a_flood_keeps_the_last_lines_in_order_and_counts_the_rest(nexd):
    """300,000 numbered lines, far past the bound (10,000 lines kept): the stored log is exactly the last 10,000,
    in order, without a gap, and the record counts every line and the ones dropped."""
    w = nexd.deploy_ok(name="flood", artifact="file:///bin/busybox", argv=["sh", "-c", "seq 1 300000"])
    w = nexd.wait_state(w["id"], "exited", timeout=60)
    assert w["exit_code"] == 0, w
    assert w["logs"] == {"lines": 300000, "dropped": 290000}, w["logs"]
    logs = nexd.logs(w["id"], tail=20000)
    texts = [l["text"] for l in logs["lines"]]
    assert texts == [str(i) for i in range(290001, 300001)], (texts[:3], texts[-3:], len(texts))
    assert [l["seq"] for l in logs["lines"]] == list(range(290001, 300001))


def test_lines_after_a_flood_are_stored_while_the_workload_runs(nexd):
    """A flood defers its stores (the bound would delete most of what each stored) but not for long: the last
    line of a burst is stored within a second while the workload goes on running, and a quiet line after it
    too."""
    script = "seq 1 200000; echo burst-done; sleep 2; echo quiet-line; sleep 30"
    w = nexd.deploy_ok(name="burst", artifact="file:///bin/busybox", argv=["sh", "-c", script])
    nexd.wait_state(w["id"], "running", timeout=15)
    deadline = time.monotonic() + 10
    seen_at = None
    while time.monotonic() < deadline:
        texts = [l["text"] for l in nexd.logs(w["id"], tail=5)["lines"]]
        if "burst-done" in texts:
            seen_at = time.monotonic()
            break
        time.sleep(0.05)
    assert seen_at is not None, "the burst's last line was not stored within 10 s"
    assert nexd.workload(w["id"])["state"] == "running"
    while time.monotonic() < seen_at + 8:
        texts = [l["text"] for l in nexd.logs(w["id"], tail=5)["lines"]]
        if "quiet-line" in texts:
            break
        time.sleep(0.05)
    assert "quiet-line" in texts, texts
    assert time.monotonic() - seen_at < 4, "the quiet line after the burst waited"
    assert nexd.delete(f"/v1/workloads/{w['id']}").status_code in (200, 202)
