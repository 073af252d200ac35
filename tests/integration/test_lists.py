# SPDX-License-Identifier: Apache-2.0
"""test_lists.py — labels on workloads and cursor pagination of GET /v1/workloads.

Workloads are deployed with labels to a real nexd, listed back whole, a page at a time and filtered by labels;
the pages must join up into the whole list in order, each workload once, and bad labels or cursors are refused
with 422 naming the field.
"""

import pytest

from test_contract import check


def list_all(nexd, page_size, **params):
    out, cursor = [], None
    while True:
        p = dict(params, limit=page_size)
        if cursor:
            p["cursor"] = cursor
        page = check(nexd.get("/v1/workloads", params=p), "get", "/v1/workloads")
        assert page["count"] == len(page["workloads"]) <= page_size
        out += page["workloads"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return out, cursor


def test_labels_and_pages(nexd):
    hello = nexd.program("hello")
    specs = [("web-1", {"app": "web", "tier": "front"}), ("web-2", {"app": "web", "tier": "back"}),
             ("db", {"app": "db", "example.com/owner": "team-a"}), ("plain", None)]
    ids = {}
    for name, labels in specs:
        body = {"name": name, "artifact": hello}
        if labels is not None:
            body["labels"] = labels
        w = check(nexd.post("/v1/workloads", json=body), "post", "/v1/workloads")
        assert w["labels"] == (labels or {})
        ids[name] = w["id"]
    for wid in ids.values():
        nexd.wait_state(wid, "exited")
    assert check(nexd.get(f"/v1/workloads/{ids['db']}"), "get", "/v1/workloads/{id}")["labels"] == specs[2][1]

    whole = nexd.workloads()
    assert [w["id"] for w in whole["workloads"]] == list(ids.values())
    for size in (1, 2, 3, 4, 5):
        paged, cursor = list_all(nexd, size)
        assert [w["id"] for w in paged] == list(ids.values()), size
        assert cursor == whole["next_cursor"]

    def names(*labels):
        r = check(nexd.get("/v1/workloads", params=[("label", l) for l in labels]), "get", "/v1/workloads")
        return [w["name"] for w in r["workloads"]]

    assert names("app=web") == ["web-1", "web-2"]
    assert names("app=web", "tier=back") == ["web-2"]
    assert names("app=db", "example.com/owner=team-a") == ["db"]
    assert names("tier") == ["web-1", "web-2"]
    assert names("app=nope") == []
    assert names("app=") == []
    paged, _ = list_all(nexd, 1, label="app=web")
    assert [w["name"] for w in paged] == ["web-1", "web-2"]

    # a cursor polls for what is new
    late = nexd.deploy_ok(name="late", artifact=hello, labels={"app": "web"})
    page = check(nexd.get("/v1/workloads", params={"cursor": whole["next_cursor"]}), "get", "/v1/workloads")
    assert [w["id"] for w in page["workloads"]] == [late["id"]]
    # the CLI filters by labels too
    out = nexd.cli("ls", "--label", "app=web", "--label", "tier=front")
    assert out.returncode == 0 and [l.split()[1] for l in out.stdout.splitlines()[1:]] == ["web-1"], out


@pytest.mark.parametrize("labels,field", [
    ("web", "labels"),
    (["a"], "labels"),
    ({"": "x"}, "labels."),
    ({"bad key": "x"}, "labels.bad key"),
    ({"-x": "x"}, "labels.-x"),
    ({"k": 1}, "labels.k"),
    ({"k": None}, "labels.k"),
    ({"k": "x" * 256}, "labels.k"),
    ({"k": "a\nb"}, "labels.k"),
    ({f"k{i}": "v" for i in range(65)}, "labels"),
])
def test_bad_labels(nexd, labels, field):
    p = check(nexd.deploy(name="x", artifact=nexd.program("hello"), labels=labels), "post", "/v1/workloads")
    assert p["status"] == 422 and p["field"] == field, p
    assert nexd.workloads()["count"] == 0


@pytest.mark.parametrize("params,field", [
    ({"cursor": "nope"}, "cursor"),
    ({"cursor": "12_not-an-id"}, "cursor"),
    ({"cursor": "_00000000-0000-0000-0000-000000000000"}, "cursor"),
    ({"limit": "0"}, "limit"),
    ({"limit": "1001"}, "limit"),
    ({"label": "bad key=x"}, "label"),
    ({"label": "=x"}, "label"),
    ([("label", f"k{i}=v") for i in range(9)], "label"),
])
def test_bad_list_parameters(nexd, params, field):
    p = check(nexd.get("/v1/workloads", params=params), "get", "/v1/workloads")
    assert p["status"] == 422 and p["field"] == field, p


def test_labels_survive_restart(nexd):
    w = nexd.deploy_ok(name="keep", artifact=nexd.program("hello"), labels={"a": "1"})
    nexd.wait_state(w["id"], "exited")
    nexd.restart()
    assert nexd.workload(w["id"])["labels"] == {"a": "1"}


def test_answers_stay_fresh(nexd):
    """GET /v1/workloads/{id} answers from a cache while the registry is unchanged: never older than it."""
    w = nexd.deploy_ok(name="chatter", artifact=nexd.program("chatter"), argv=["chatter", "60", "20"])
    seen_state = "pending"
    order = ["pending", "starting", "running", "exited"]
    while True:
        n = len(nexd.logs(w["id"])["lines"])
        got = nexd.workload(w["id"])
        again = nexd.workload(w["id"])  # the second may come from the cache
        assert again["logs"]["lines"] >= got["logs"]["lines"] >= n
        assert order.index(got["state"]) >= order.index(seen_state)
        seen_state = got["state"]
        if got["state"] == "exited":
            break
    assert nexd.workload(w["id"])["logs"]["lines"] == 61
