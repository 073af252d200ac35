# SPDX-License-Identifier: Apache-2.0
"""test_dashboard.py — the web dashboard in a real browser (Debian's Chromium driven by playwright-core) against a
real nexd: page load, deploy through the form, live table and log updates, the exec terminal, stop, events,
themes and a phone-sized screen, the Cluster page (on a second nexd in a one-node cluster on its own nats-server),
accessibility (axe-core on every view) and no console errors.

The browser script is tests/browser/dashboard.mjs; it prints one JSON line per check, and each check here is one
pytest test reading that line.  Screenshots land in test-output/test_dashboard/screenshots/.  Skipped, with the
reason, when Chromium or the npm packages are missing (scripts/setup installs both).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import imagelib
import natsutil
from conftest import REPO, finish_nex, make_nex, output_root

CHECKS = [
    "asks for a token, refuses a wrong one, accepts a good one",
    "overview loads with node id",
    "live indicator connects",
    "accessibility: overview",
    "bad deploy shows the API error next to the field",
    "client-side validation refuses a bad name before sending",
    "accessibility: deploy form",
    "deploy through the form and see it in the table turn running without reloading",
    "accessibility: workloads table",
    "detail shows log lines arriving live",
    "exec terminal runs echo hi",
    "accessibility: workload detail",
    "stop with confirmation and see the state change",
    "detail shows a bridge workload's address, ports as links and egress; redeploy keeps them",
    "events feed shows what happened",
    "accessibility: events",
    "dark theme and a phone-sized screen",
    "accessibility: dark theme",
    "deploy an image and see its pull progress",
    "keyboard navigation reaches the sections",
    "cluster page without NATS says how to join",
    "cluster page lists the nodes and every node's workloads",
    "accessibility: cluster",
    "no console errors",
]

BUSYBOX = "/bin/busybox"  # Debian's busybox-static: a static workload with a shell, for the log and exec checks


def missing():
    if not Path("/usr/bin/chromium").exists():
        return "Chromium is not installed (scripts/setup installs Debian's chromium)"
    if not (REPO / "node_modules" / "playwright-core").is_dir():
        return "npm packages are not installed (scripts/setup runs npm ci)"
    if shutil.which("node") is None:
        return "Node.js is not installed"
    if not Path(BUSYBOX).exists():
        return "busybox-static is not installed"
    return None


@pytest.fixture(scope="module")
def held_image(tmp_path_factory):
    """A busybox image behind a proxy that holds its blobs until the browser script asks for /release: the
    image's pull stays under way while the page shows it.  (REF, RELEASE_URL)."""
    reason = missing() or imagelib.tools_missing()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("dashboard-image")
    layout = imagelib.busybox_layout(work, "bb")
    reg = imagelib.Registry(work)
    reg.push(layout, "bb", "ui/bb", "v1")
    proxy = imagelib.BearerProxy(reg.host, bearer=False, hold=True)
    yield f"{proxy.host}/ui/bb:v1", f"http://{proxy.host}/release"
    proxy.close()
    reg.close()


@pytest.fixture(scope="module")
def cluster_node():
    """A nexd in a (one-node) cluster on its own nats-server, running one workload, for the Cluster page; None
    when nats-server is missing."""
    if natsutil.skip_reason():
        yield None
        return
    server = natsutil.NatsServer(output_root() / "test_dashboard.cluster").start()
    nex = make_nex("test_dashboard.cluster.nexd", extra_args=["--nats", server.url, "--tags", "zone=web", "--node-timeout", "5"])
    try:
        nex.start()
        natsutil.wait_for(lambda: nex.get("/v1/cluster/nodes").json()["desired"]["ready"], what="the bucket")
        r = nex.post("/v1/workloads", json={"name": "clustered", "artifact": nex.program("sleeper"), "node": "auto"})
        assert r.status_code == 202, r.text
        yield nex
        finish_nex(nex, passed=True)
    except Exception:
        nex.abort()
        raise
    finally:
        server.stop()


@pytest.fixture(scope="module")
def results(nexd_module, held_image, cluster_node):
    reason = missing()
    if reason:
        pytest.skip(reason)
    shots = output_root() / "test_dashboard" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    extra = [cluster_node.base, cluster_node.token] if cluster_node else []
    proc = subprocess.run(["node", str(REPO / "tests" / "browser" / "dashboard.mjs"), nexd_module.base, BUSYBOX,
                           str(shots), nexd_module.token, *held_image, *extra], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    (shots.parent / "browser.log").write_text(proc.stdout + "\n--- stderr\n" + proc.stderr)
    out = {}
    for line in proc.stdout.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        out[r["check"]] = r
    if not out:
        pytest.fail(f"the browser script reported nothing (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return out


@pytest.mark.parametrize("check", CHECKS)
def test_dashboard(results, cluster_node, check):
    if "lists the nodes" in check or check == "accessibility: cluster":
        if cluster_node is None:
            pytest.skip(natsutil.skip_reason())
    r = results.get(check)
    assert r is not None, f"the browser script did not reach this check (it stopped earlier)"
    assert r["ok"], r["detail"]
