# SPDX-License-Identifier: Apache-2.0
"""sandboxlib.py — helpers shared by the test_sandbox_*.py modules: deploying tests/programs/probe and looking at
a workload's cgroup on the host, whatever the host's cgroup layout (v1 per-controller mounts, or v2).

The cgroup of a workload is found the way an operator would: from /proc/<agent pid>/cgroup and
/proc/self/mountinfo, not by assuming where nexd puts it.
"""

import json
import os
import sqlite3

from conftest import wait_until  # noqa: F401 (re-exported for the sandbox tests)


def probe(nexd, *args, name="probe", **fields):
    """Deploys `probe ARGS...` (tests/programs/probe.c) with extra deploy FIELDS; returns the accepted workload."""
    return nexd.deploy_ok(name=name, artifact=nexd.program("probe"), argv=["probe", *args], **fields)


def _mounts():
    """{controller or '' (v2): mount point} for the cgroup hierarchies mounted on this host."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, options = right.split()[:3]
            point = left.split()[4]
            if fstype == "cgroup2":
                out.setdefault("", point)
            elif fstype == "cgroup":
                for opt in options.split(","):
                    out.setdefault(opt, point)
    return out


def cgroup_dir(pid, controller):
    """The host directory of process PID's cgroup for CONTROLLER (v1), or its v2 cgroup when the controller has no
    v1 hierarchy.  None when PID is gone."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    mounts = _mounts()
    for line in lines:
        _hid, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") and controller in mounts:
            return mounts[controller] + path
    for line in lines:
        hid, controllers, path = line.split(":", 2)
        if hid == "0" and controllers == "" and "" in mounts:
            return mounts[""] + path
    return None


def cpu_usage_ns(pid):
    """CPU time used by process PID's cgroup, in ns (cpuacct.usage on v1, cpu.stat usage_usec on v2)."""
    d = cgroup_dir(pid, "cpuacct")
    if d and os.path.exists(f"{d}/cpuacct.usage"):
        with open(f"{d}/cpuacct.usage") as f:
            return int(f.read())
    with open(f"{d}/cpu.stat") as f:
        for line in f:
            k, v = line.split()
            if k == "usage_usec":
                return int(v) * 1000
    raise AssertionError(f"no CPU accounting for pid {pid} in {d}")


def nex_cgroup_dirs(pid):
    """Every cgroup directory (one per v1 hierarchy, or the v2 one) of process PID that lies under a `nex`
    parent."""
    dirs = set()
    for c in ("memory", "pids", "cpu", "cpuacct"):
        d = cgroup_dir(pid, c)
        if d and "/nex/" in d:
            dirs.add(d)
    return dirs



def events_of(nexd, wid, type_):
    """The stored CloudEvents of TYPE about workload WID, read from the registry file."""
    db = sqlite3.connect(f"file:{nexd.data_dir}/registry.db?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT data FROM events WHERE workload_id = ? AND type = ? ORDER BY seq", (wid, type_))
        return [json.loads(r[0]) for r in rows]
    finally:
        db.close()
