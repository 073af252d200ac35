# SPDX-License-Identifier: Apache-2.0
"""test_events.py — GET /v1/events: the stored CloudEvents, filtered and read a page at a time with a cursor.

A real nexd emits real events (node_started, workload_deployed, workload_started, workload_exited, ...); the
tests read them back whole, page by page, filtered, and by polling with next_cursor, and check that every way
gives the same events in the same order, each once.
"""

import pytest

from test_contract import check


def all_events(nexd, **params):
    """Every event matching PARAMS, read a page of 2 at a time."""
    out, cursor = [], None
    while True:
        p = dict(params, limit=2)
        if cursor is not None:
            p["cursor"] = cursor
        page = check(nexd.get("/v1/events", params=p), "get", "/v1/events")
        assert len(page["events"]) <= 2
        out += page["events"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return out, cursor


def test_events_of_workloads(nexd):
    a = nexd.deploy_ok(name="a", artifact=nexd.program("hello"))
    nexd.wait_state(a["id"], "exited")
    b = nexd.deploy_ok(name="b", namespace="other", artifact=nexd.program("hello"))
    nexd.wait_state(b["id"], "exited")

    whole = check(nexd.get("/v1/events", params={"limit": 1000}), "get", "/v1/events")
    assert whole["has_more"] is False
    events = whole["events"]
    types = [e["type"] for e in events]
    assert types[0] == "node_started"
    for wid in (a["id"], b["id"]):
        mine = [e["type"] for e in events if e.get("subject") == wid]
        assert mine[0] == "workload_deployed" and mine[-1] == "workload_exited", mine
    assert len({e["id"] for e in events}) == len(events)

    paged, cursor = all_events(nexd)
    assert [e["id"] for e in paged] == [e["id"] for e in events]
    assert cursor == whole["next_cursor"]

    # filters
    only_b, _ = all_events(nexd, workload=b["id"])
    assert only_b and all(e["subject"] == b["id"] for e in only_b)
    assert [e["id"] for e in only_b] == [e["id"] for e in events if e.get("subject") == b["id"]]
    other, _ = all_events(nexd, namespace="other")
    assert [e["id"] for e in other] == [e["id"] for e in only_b]
    exited, _ = all_events(nexd, type="workload_exited")
    assert [e["subject"] for e in exited] == [a["id"], b["id"]]
    assert exited[0]["data"]["exit_code"] == 3
    none, _ = all_events(nexd, type="no_such_type")
    assert none == []

    # polling with the cursor: only what happened since, once
    c = nexd.deploy_ok(name="c", artifact=nexd.program("hello"))
    nexd.wait_state(c["id"], "exited")
    page = check(nexd.get("/v1/events", params={"cursor": cursor}), "get", "/v1/events")
    assert page["events"] and all(e["subject"] == c["id"] for e in page["events"])
    assert page["events"][-1]["type"] == "workload_exited"
    again = check(nexd.get("/v1/events", params={"cursor": page["next_cursor"]}), "get", "/v1/events")
    assert again["events"] == [] and again["next_cursor"] == page["next_cursor"] and again["has_more"] is False


@pytest.mark.parametrize("params,field", [
    ({"cursor": "x"}, "cursor"),
    ({"cursor": "-1"}, "cursor"),
    ({"cursor": ""}, "cursor"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"limit": "many"}, "limit"),
    ({"workload": "not-an-id"}, "workload"),
])
def test_bad_parameters(nexd, params, field):
    p = check(nexd.get("/v1/events", params=params), "get", "/v1/events")
    assert p["status"] == 422 and p["field"] == field, p


def test_logs_after(nexd):
    w = nexd.deploy_ok(name="chatter", artifact=nexd.program("chatter"), argv=["chatter", "30", "0"])
    nexd.wait_state(w["id"], "exited")
    path = f"/v1/workloads/{w['id']}/logs"
    whole = check(nexd.get(path), "get", "/v1/workloads/{id}/logs")["lines"]
    # (stdout and stderr are separate pipes: their lines need not interleave in the order they were written)
    assert len(whole) == 31 and [l["text"] for l in whole if l["stream"] == "stdout"][-1] == "chatter done"
    after = check(nexd.get(path, params={"after": 25}), "get", "/v1/workloads/{id}/logs")["lines"]
    assert [l["seq"] for l in after] == [26, 27, 28, 29, 30, 31]
    capped = nexd.get(path, params={"after": 25, "tail": 2}).json()["lines"]
    assert [l["seq"] for l in capped] == [26, 27]
    assert nexd.get(path, params={"after": 31}).json()["lines"] == []
    p = check(nexd.get(path, params={"after": "-1"}), "get", "/v1/workloads/{id}/logs")
    assert p["status"] == 422 and p["field"] == "after"
