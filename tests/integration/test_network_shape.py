# SPDX-License-Identifier: Apache-2.0
"""resources.net_mbps: a bridge sandbox's bandwidth each way (tc tbf on both ends of its veth).  Real transfers,
host <-> workload over loopback and the workload's veth only, measured against the limit."""

import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import finish_test_nex, free_port, start_test_nex, wait_until

BUSYBOX = "/bin/busybox"
LIMIT_MBPS = 16
SIZE = 4 << 20  # 4 MiB: about 2.1 s at 16 Mbit/s


@pytest.fixture
def node(request):
    if os.geteuid() != 0 or not os.path.exists(BUSYBOX) or not shutil.which("tc") or not shutil.which("curl"):
        pytest.skip("needs root, busybox-static, tc and curl")
    nex = start_test_nex(request)
    yield nex
    finish_test_nex(request, nex)


def mbps(nbytes, seconds):
    return nbytes * 8 / seconds / 1e6


def qdiscs(ifname):
    return subprocess.run(["tc", "qdisc", "show", "dev", ifname], capture_output=True, text=True).stdout


def test_net_mbps_limits_what_the_workload_sends(node):
    script = (f"mkdir -p /tmp/s && dd if=/dev/zero of=/tmp/s/f bs=1M count={SIZE >> 20} 2>/dev/null && "
              "echo ok > /tmp/s/index.html && exec httpd -f -p 80 -h /tmp/s")
    w = node.deploy_ok(name="slow", artifact="file://" + BUSYBOX, argv=["sh", "-c", script], network="bridge",
                       resources={"net_mbps": LIMIT_MBPS, "disk_mb": 16}, ports=[{"host": 0, "workload": 80}])
    try:
        w = node.wait_state(w["id"], "running")
        assert w["resources"]["net_mbps"] == LIMIT_MBPS
        ifname = "nx" + w["id"].replace("-", "")[:12]
        assert "tbf" in qdiscs(ifname) and f"rate {LIMIT_MBPS}Mbit" in qdiscs(ifname), qdiscs(ifname)
        base = f"http://127.0.0.1:{w['ports'][0]['host']}"
        wait_until(lambda: subprocess.run(["curl", "-s", "-m", "5", "-o", "/dev/null", "--fail", base + "/"]).returncode
                   == 0, what="the published port")
        t0 = time.monotonic()
        r = subprocess.run(["curl", "-s", "-m", "50", "--fail", "-o", "/dev/null", "-w", "%{size_download}",
                            base + "/f"], capture_output=True, text=True, timeout=60)
        dt = time.monotonic() - t0
        assert r.returncode == 0 and int(r.stdout) == SIZE, r
        rate = mbps(SIZE, dt)
        print(f"workload -> host through a {LIMIT_MBPS} Mbit/s limit: {rate:.1f} Mbit/s ({dt:.2f} s for 4 MiB)")
        # Below the limit (a tenth of slack for the bucket's first burst), and not absurdly far below it.
        assert rate <= LIMIT_MBPS * 1.1, rate
        assert rate >= LIMIT_MBPS * 0.3, rate
    finally:  # workloads outlive nexd: a failed check must not leave this one running
        node.delete(f"/v1/workloads/{w['id']}")
        node.wait_state(w["id"], "stopped")


def test_net_mbps_limits_what_the_workload_receives(node):
    """The host sends 4 MiB to the workload (nex-host:PORT allowed); the workload times the transfer itself."""
    port = free_port()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(4)

    def serve():
        try:
            c, _ = srv.accept()
            with c:
                c.sendall(b"\0" * SIZE)
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    script = ("a=$(cut -d' ' -f1 /proc/uptime); nc nex-host %d > /tmp/got; b=$(cut -d' ' -f1 /proc/uptime); "
              "echo \"got $(wc -c < /tmp/got) in $a $b\"" % port)
    try:
        w = node.deploy_ok(name="sink", artifact="file://" + BUSYBOX, argv=["sh", "-c", script], network="bridge",
                           resources={"net_mbps": LIMIT_MBPS, "disk_mb": 16}, egress={"allow": [f"nex-host:{port}"]})
        node.wait_state(w["id"], "exited", timeout=60)
    finally:
        srv.close()
    texts = node.log_texts(w["id"])
    m = next((re.match(r"got (\d+) in ([\d.]+) ([\d.]+)", x) for x in texts if x.startswith("got ")), None)
    assert m and int(m.group(1)) == SIZE, texts
    dt = float(m.group(3)) - float(m.group(2))
    rate = mbps(SIZE, dt)
    print(f"host -> workload through a {LIMIT_MBPS} Mbit/s limit: {rate:.1f} Mbit/s ({dt:.2f} s for 4 MiB)")
    assert rate <= LIMIT_MBPS * 1.1, rate
    assert rate >= LIMIT_MBPS * 0.3, rate


def test_net_mbps_bad_input(node):
    for resources, network in (({"net_mbps": 0}, "bridge"), ({"net_mbps": "x"}, "bridge"),
                               ({"net_mbps": 100001}, "bridge"), ({"net_mbps": 10}, "none")):
        r = node.deploy(name="bad", artifact="file://" + BUSYBOX, network=network, resources=resources)
        assert r.status_code == 422 and r.json()["field"] == "resources.net_mbps", r.text
        assert r.headers["Content-Type"].startswith("application/problem+json")
    # Without a limit the record shows none.
    w = node.deploy_ok(name="free", artifact="file://" + BUSYBOX, argv=["true"], network="bridge")
    assert "net_mbps" not in w["resources"]
