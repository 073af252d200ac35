# SPDX-License-Identifier: Apache-2.0
"""test_hostile_workloads.py — a workload that attacks what it shares with the node hurts only itself.

Each case runs a neighbour (`probe sleep`) and one hostile workload: one that fills its /tmp, one that floods
stdout with nobody reading, one that opens 100,000 descriptors, one that forks up to its pids limit, and one
that writes garbage into its agent's descriptors through /proc/1/fd.  While the attack goes on, the API answers
(p99 of 100 reads printed and bounded), the neighbour keeps running and an exec into it works; afterwards the
hostile workload can be stopped and nexd's memory is still bounded.
"""

import os
import statistics
import subprocess
import time

import pytest

from conftest import sanitized_build, rss_kb
from sandboxlib import probe

BUSYBOX = "/bin/busybox"
API_P99_BOUND_S = 1.0  # generous: 2 shared cores; the figure itself is printed

pytestmark = pytest.mark.skipif(
    not os.path.exists(BUSYBOX) or b"statically" not in subprocess.run(["file", "-L", BUSYBOX],
                                                                       capture_output=True).stdout,
    reason="needs a static /bin/busybox (busybox-static)")


def hostile_fields(nexd, case):
    hostile = nexd.program("hostile")
    return {
        "fill-tmp": dict(artifact=f"file://{BUSYBOX}", resources={"disk_mb": 16},
                         argv=["sh", "-c", "cat /dev/zero > /tmp/fill; echo filled $?; exec sleep 600"]),
        "flood": dict(artifact=hostile, argv=["hostile", "flood"]),
        "fds": dict(artifact=hostile, argv=["hostile", "fds", "100000"]),
        "forks": dict(artifact=f"file://{BUSYBOX}", resources={"pids": 64},
                      argv=["sh", "-c", "echo forking; while true; do sleep 600 & done"]),
        "agent": dict(artifact=hostile, argv=["hostile", "agent"]),
    }[case]


SIGN = {"fill-tmp": "filled", "flood": "xxxx", "fds": "fds: opened", "forks": "forking", "agent": "agent: "}


def api_p99(nexd, wid, n=100):
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        r = nexd.get(f"/v1/workloads/{wid}")
        times.append(time.monotonic() - t0)
        assert r.status_code == 200
    times.sort()
    return times[int(len(times) * 0.99) - 1], statistics.median(times)


@pytest.mark.parametrize("case", ["fill-tmp", "flood", "fds", "forks", "agent"])
def test_a_hostile_workload_hurts_only_itself(nexd, case):
    neighbour = probe(nexd, "sleep", "600", name="neighbour")["id"]
    nexd.wait_log(neighbour, "sleep: started", timeout=20)
    rss_before = rss_kb(nexd.pid)

    bad = nexd.deploy_ok(name=f"hostile-{case}", **hostile_fields(nexd, case))["id"]
    nexd.wait_log(bad, SIGN[case], timeout=30)
    time.sleep(1.0)  # let the attack go on for a while

    p99, median = api_p99(nexd, neighbour)
    print(f"{case}: API median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms during the attack")
    assert p99 < API_P99_BOUND_S, f"API p99 {p99:.3f} s during the {case} attack"

    n = nexd.workload(neighbour)
    assert n["state"] == "running", n
    out = nexd.post(f"/v1/workloads/{neighbour}/exec", json={"argv": ["/workload", "echo", "still", "here"]},
                    timeout=30).json()
    assert out["exit_code"] == 0 and "still here" in out["stdout"], out

    if case == "fill-tmp":
        line = nexd.wait_log(bad, "filled")
        assert line["text"].strip() != "filled 0", "cat filled a 16 MiB /tmp without an error"
    elif case == "fds":
        line = nexd.wait_log(bad, "fds: opened")
        print(line["text"])
    elif case == "agent":
        line = nexd.wait_log(bad, "agent: wrote")["text"]
        print(line)
        # the agent is not dumpable: its descriptors cannot be opened through /proc/1/fd by the workload
        assert line.startswith("agent: wrote to 0 of "), line

    r = nexd.delete(f"/v1/workloads/{bad}", params={"grace_s": 1})
    assert r.status_code in (200, 202), r.text
    w = nexd.wait_state(bad, ("stopped", "failed", "exited"), timeout=30)
    assert w["state"] in ("stopped", "failed", "exited")

    if case == "flood":
        logs = nexd.get(f"/v1/workloads/{bad}/logs").json()
        assert len(logs["lines"]) <= 10000
    grown_mb = (rss_kb(nexd.pid) - rss_before) / 1024
    print(f"{case}: nexd RSS grew {grown_mb:.1f} MiB")
    # Bounded, not proportional to what the workload wrote: 2.5 to 6 MiB in most runs here; once 92 MiB under a
    # load average of 9 (SQLite's pages and malloc's arenas while the flood's 8 KiB lines are stored).
    if not sanitized_build():
        assert grown_mb < 192, f"nexd grew {grown_mb:.1f} MiB during the {case} attack"
    assert nexd.workload(neighbour)["state"] == "running"
