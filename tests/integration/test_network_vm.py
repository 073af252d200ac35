# SPDX-License-Identifier: Apache-2.0
"""test_network_vm.py — network `bridge` for a QEMU microVM, for real, in one VM (TCG boots are slow): the VM's
tap and address, egress to the outside namespace test_network.py makes (and not to nexd's API on the host), the
host's nats-server reached through NEX_NATS_URL ("nats": true), and a published port serving busybox httpd from
inside the guest to the host's loopback, during and after a kill -9 and restart of nexd; once the workload is
stopped, its tap and rules are gone.

Skipped, saying why, when the qemu driver is unavailable here, or without root, nft, busybox-static or
nats-server.  Traffic goes only to loopback and to the test's own namespace (see test_network.py).
"""

import re
import signal
import time

import pytest
import requests

from conftest import finish_test_nex, output_root, safe_name, start_test_nex
from test_network import BUSYBOX, nex_table, nx_links, outside, probes  # noqa: F401 (outside is a fixture)
from test_qemu import BOOT_TIMEOUT_S, qemu_unavailable

NATS_SCRIPT = ('u=${NEX_NATS_URL#nats://}; '
               'printf \'CONNECT {"verbose":false}\\r\\nPUB net.vm 9\\r\\nfrom-a-vm\\r\\nPING\\r\\n\' '
               '| nc -w 5 ${u%:*} ${u#*:} | grep -q PONG && echo published')


@pytest.fixture
def nats(request):
    import natsutil

    reason = natsutil.skip_reason()
    if reason:
        pytest.skip(reason)
    server = natsutil.NatsServer(output_root() / safe_name(f"test_network_vm.{request.node.name}")).start()
    yield server
    server.stop()


@pytest.fixture
def vm_node(request, outside, nats):  # noqa: F811 (the fixture imported above)
    nex = start_test_nex(request, args=("--nats", nats.url))
    why = qemu_unavailable(nex)
    if why:
        finish_test_nex(request, nex)
        pytest.skip(f"the qemu driver is unavailable: {why}")
    yield nex
    finish_test_nex(request, nex)


def get_text(url):
    try:
        r = requests.get(url, timeout=3)
        return r.text if r.status_code == 200 else None
    except requests.RequestException:
        return None


def test_a_vm_on_the_bridge(vm_node, outside, nats):  # noqa: F811
    import natsutil

    nex = vm_node
    api_port = int(nex.base.rsplit(":", 1)[1])
    sub = natsutil.NatsClient(nats.url).subscribe("net.vm")
    try:
        script = ("ip -4 addr show dev eth0 | grep inet; ip route; cat /etc/hosts; " + NATS_SCRIPT + " ; "
                  + probes((outside["addr"], 8000), ("$NEX_HOST_ADDR", api_port))
                  + " ; mkdir -p /tmp/w && echo vm-says-hi > /tmp/w/index.html && echo serving"
                  " && exec httpd -f -p 80 -h /tmp/w")
        w = nex.deploy_ok(name="vmweb", driver="qemu", artifact="file://" + BUSYBOX, argv=["sh", "-c", script],
                          network="bridge", nats=True, ports=[{"host": 0, "workload": 80, "host_ip": "127.0.0.1"}])
        addr = w["address"]
        port = w["ports"][0]["host"]
        assert port > 0 and w["network"] == "bridge", w
        nex.wait_log(w["id"], "serving", timeout=BOOT_TIMEOUT_S)
        texts = nex.log_texts(w["id"])
        # eth0 holds the leased address (a point-to-point /32 to the gateway), the default route goes through it
        assert any(f"inet {addr}" in t for t in texts), texts
        assert any(t.startswith("default via") and "eth0" in t for t in texts), texts
        assert any(re.match(rf"{re.escape(addr)}\s+vmweb$", t) for t in texts), texts
        assert any(t.endswith("nex-host") for t in texts), texts
        # egress: the outside reached, nexd's API on the host refused; NATS through the forwarder
        assert f"ok {outside['addr']}:8000 outside-ok" in texts, texts
        assert any(t.startswith("fail ") and t.endswith(f":{api_port}") for t in texts), texts
        assert "published" in texts, texts
        got = sub.take(1, timeout=10)
        assert got[0]["subject"] == "net.vm" and "from-a-vm" in str(got[0]), got
        # the host side: a tap named like a sandbox's veth, the workload's chain in table inet nex
        ifname = "nx" + w["id"].replace("-", "")[:12]
        assert ifname in nx_links()
        with open(f"/sys/class/net/{ifname}/tun_flags") as f:
            assert int(f.read(), 16) & 0x0002, "not a tap"  # IFF_TAP
        assert ifname in nex_table()
        # the published port serves from inside the VM
        deadline = time.monotonic() + 30
        body = None
        while body is None and time.monotonic() < deadline:
            body = get_text(f"http://127.0.0.1:{port}/")
            time.sleep(0.2) if body is None else None
        assert body == "vm-says-hi\n", body
        stats = nex.get(f"/v1/workloads/{w['id']}/stats").json()
        assert stats["network"]["rx_bytes"] > 0 and stats["network"]["tx_bytes"] > 0, stats
        # kill -9 of nexd: the VM, its tap and its port live on; the restarted nexd keeps them (same address)
        nex.daemon.proc.send_signal(signal.SIGKILL)
        nex.daemon.proc.wait()
        assert get_text(f"http://127.0.0.1:{port}/") == "vm-says-hi\n"
        nex.start()
        again = nex.workload(w["id"])
        assert again["state"] == "running" and again["address"] == addr, again
        assert ifname in nx_links() and ifname in nex_table()
        assert get_text(f"http://127.0.0.1:{port}/") == "vm-says-hi\n"
        # stopped: QEMU ends, and with it the tap; the rules go too
        assert nex.delete(f"/v1/workloads/{w['id']}", params={"grace_s": 2}).status_code == 202
        nex.wait_state(w["id"], "stopped", timeout=60)
        deadline = time.monotonic() + 15
        while ifname in nx_links() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ifname not in nx_links()
        assert ifname not in nex_table()
        assert get_text(f"http://127.0.0.1:{port}/") is None
    finally:
        sub.close()
