# SPDX-License-Identifier: Apache-2.0
"""test_network.py — `network: "bridge"`: an address of its own, egress to the outside, the host refused, published
ports, isolation between workloads, kill -9 of nexd, and nothing left behind.

Traffic goes only to loopback and to a network namespace this module makes: the "outside" is a namespace behind
a veth (198.51.100.0/24, TEST-NET-2) running busybox httpd, and the cloud metadata address 169.254.169.254 is
routed into that namespace too, so that a workload's attempt to reach it would arrive there (and must not): not
one packet leaves the machine.  Workloads are Debian's static busybox (/bin/busybox): `wget` probes and
`httpd` serves.
"""

import os
import re
import shutil
import socket
import subprocess
import threading
import time
import http.server

import pytest
import requests

from conftest import finish_test_nex, free_port, start_test_nex, wait_until

BUSYBOX = "/bin/busybox"
OUT_NS = f"nexnet-out-{os.getpid()}"
OUT_HOST_IF = f"ntout{os.getpid() % 100000}"  # not nx*: nexd sweeps those; per run: runs side by side do not clash
OUT_HOST_ADDR = "198.51.100.1"
OUT_ADDR = "198.51.100.2"
METADATA = "169.254.169.254"


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def have_tools():
    return os.path.exists(BUSYBOX) and shutil.which("ip") and shutil.which("nft")


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    """A namespace behind a veth with an HTTP server on port 8000 (also answering at 169.254.169.254)."""
    if not have_tools() or os.geteuid() != 0:
        pytest.skip("needs root, ip, nft and busybox-static")
    www = tmp_path_factory.mktemp("outside")
    (www / "index.html").write_text("outside-ok\n")
    sh("ip", "netns", "add", OUT_NS)
    server = None
    try:
        sh("ip", "link", "add", OUT_HOST_IF, "type", "veth", "peer", "name", "eth0", "netns", OUT_NS)
        sh("ip", "addr", "add", f"{OUT_HOST_ADDR}/24", "dev", OUT_HOST_IF)
        sh("ip", "link", "set", OUT_HOST_IF, "up")
        sh("ip", "-n", OUT_NS, "addr", "add", f"{OUT_ADDR}/24", "dev", "eth0")
        sh("ip", "-n", OUT_NS, "addr", "add", f"{METADATA}/32", "dev", "eth0")
        sh("ip", "-n", OUT_NS, "link", "set", "eth0", "up")
        sh("ip", "-n", OUT_NS, "link", "set", "lo", "up")
        sh("ip", "-n", OUT_NS, "route", "add", "default", "via", OUT_HOST_ADDR)
        sh("ip", "route", "add", f"{METADATA}/32", "via", OUT_ADDR)
        server = subprocess.Popen(["ip", "netns", "exec", OUT_NS, BUSYBOX, "httpd", "-f", "-p", "8000", "-h", str(www)])
        wait_until(lambda: requests_ok(f"http://{OUT_ADDR}:8000/"), what="the outside server")
        yield {"addr": OUT_ADDR, "url": f"http://{OUT_ADDR}:8000/"}
    finally:
        if server:
            server.kill()
            server.wait()
        sh("ip", "route", "del", f"{METADATA}/32", check=False)
        sh("ip", "link", "del", OUT_HOST_IF, check=False)
        sh("ip", "netns", "del", OUT_NS, check=False)


def requests_ok(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def node(request, outside):
    nex = start_test_nex(request)
    yield nex
    finish_test_nex(request, nex)


@pytest.fixture
def host_server():
    """A TCP service of the host's on every address (the kind a workload must not reach): an HTTP server."""

    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host-service\n")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("0.0.0.0", free_port()), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def probes(*targets):
    """A shell script printing `ok HOST:PORT LAST-LINE` or `fail HOST:PORT` for each (HOST, PORT): an HTTP GET with
    busybox nc (3 s timeout).  (Debian's static busybox wget crashes in glibc's static resolver.)"""
    lines = []
    for host, port in targets:
        t = f"{host}:{port}"
        lines.append(f"if r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} 2>&1) && "
                     f"echo \"$r\" | grep -q ' 200 '; then echo \"ok {t} $(echo \"$r\" | tail -1)\"; "
                     f"else echo \"fail {t}\"; fi")
    return " ; ".join(lines)


def run_probes(nex, *targets, **fields):
    w = nex.deploy_ok(name=fields.pop("name", "probe"), artifact="file://" + BUSYBOX, network="bridge",
                      argv=["sh", "-c", "cat /etc/hosts; env | grep ^NEX_; " + probes(*targets)], **fields)
    nex.wait_state(w["id"], "exited", timeout=60)
    texts = nex.log_texts(w["id"])
    result = {}
    for t in texts:
        m = re.match(r"(ok|fail) (\S+)", t)
        if m:
            result[m.group(2)] = m.group(1)
    return nex.workload(w["id"]), texts, result


def nx_links():
    return [l for l in os.listdir("/sys/class/net") if l.startswith("nx")]


def nex_table():
    r = sh("nft", "list", "table", "inet", "nex", check=False)
    return r.stdout if r.returncode == 0 else ""


def httpd_workload(nex, name="web", ports=None, **fields):
    script = f"mkdir -p /tmp/w && echo {name}-says-hi > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w"
    return nex.deploy_ok(name=name, artifact="file://" + BUSYBOX, argv=["sh", "-c", script], network="bridge",
                         ports=ports or [], **fields)


def test_bridge_reaches_outside_not_the_host(node, outside, host_server):
    api_port = int(node.base.rsplit(":", 1)[1])
    gw = "$NEX_HOST_ADDR"
    out, meta, eth0 = (OUT_ADDR, 8000), (METADATA, 8000), ("192.0.2.2", host_server)
    w, texts, result = run_probes(node, out, meta, eth0, (gw, host_server), (gw, api_port))
    assert re.fullmatch(r"10\.\d+\.\d+\.\d+", w["address"]), w
    assert w["network"] == "bridge" and w["egress"]["default"] == "allow"
    assert f"{w['address']}\tprobe" in texts and any(t.endswith("\tnex-host") for t in texts), texts
    gateway = next(t.split("\t")[0] for t in texts if t.endswith("\tnex-host"))
    assert f"NEX_HOST_ADDR={gateway}" in texts
    assert result[f"{OUT_ADDR}:8000"] == "ok", texts
    assert any("outside-ok" in t for t in texts)
    # The host's own services, on any of its addresses, and the metadata address are refused.
    assert result[f"{METADATA}:8000"] == "fail", texts
    assert result[f"192.0.2.2:{host_server}"] == "fail", texts
    assert result[f"{gateway}:{host_server}"] == "fail", texts
    assert result[f"{gateway}:{api_port}"] == "fail", texts
    # The host itself reaches the metadata address in the test's namespace: the workload was stopped by policy.
    assert requests_ok(f"http://{METADATA}:8000/")
    # Allowed by its policy, the host's service is reachable; the deny entry refuses the outside.
    w2, texts2, result2 = run_probes(node, (gw, host_server), meta, out, name="allowed",
                                     egress={"allow": [f"nex-host:{host_server}"], "deny": [f"{OUT_ADDR}/32"]})
    assert result2[f"{gateway}:{host_server}"] == "ok", texts2
    assert any("host-service" in t for t in texts2)
    assert result2[f"{METADATA}:8000"] == "fail" and result2[f"{OUT_ADDR}:8000"] == "fail", texts2
    assert w2["address"] != w["address"]
    # --egress-default deny is the node's; here an allow list over the default allow: a port-scoped deny.
    _, texts3, result3 = run_probes(node, out, name="denied", egress={"deny": [f"{OUT_ADDR}:8000"]})
    assert result3[f"{OUT_ADDR}:8000"] == "fail", texts3


def test_published_port_serves_http(node):
    w = httpd_workload(node, ports=[{"host": 0, "workload": 80, "host_ip": "127.0.0.1"}])
    node.wait_state(w["id"], "running")
    port = node.workload(w["id"])["ports"][0]["host"]
    assert port > 0 and w["ports"][0]["host"] == port and w["ports"][0]["protocol"] == "tcp"
    wait_until(lambda: requests_ok(f"http://127.0.0.1:{port}/"), what="the published port")
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "web-says-hi\n"
    curl = sh("curl", "-s", "-m", "5", f"http://127.0.0.1:{port}/")
    assert curl.stdout == "web-says-hi\n"
    # The same host port again, and nexd's own port: 409 naming the port.
    r = node.deploy(name="again", artifact="file://" + BUSYBOX, network="bridge", argv=["true"],
                    ports=[{"host": port, "workload": 80}])
    assert r.status_code == 409 and str(port) in r.json()["detail"], r.text
    api_port = int(node.base.rsplit(":", 1)[1])
    r = node.deploy(name="api", artifact="file://" + BUSYBOX, network="bridge", argv=["true"],
                    ports=[{"host": api_port, "workload": 80}])
    assert r.status_code == 409 and str(api_port) in r.json()["detail"], r.text
    # Bad input.
    for ports, field in (([{"workload": 0}], "ports[0].workload"), ([{"workload": 80, "protocol": "sctp"}],
                                                                      "ports[0].protocol"),
                         ([{"workload": 80, "host_ip": "nowhere"}], "ports[0].host_ip"), ("x", "ports")):
        r = node.deploy(name="bad", artifact="file://" + BUSYBOX, network="bridge", ports=ports)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = node.deploy(name="bad", artifact="file://" + BUSYBOX, ports=[{"workload": 80}])
    assert r.status_code == 422 and r.json()["field"] == "ports", r.text
    r = node.deploy(name="bad", artifact="file://" + BUSYBOX, network="bridge", egress={"allow": ["300.1.1.1"]})
    assert r.status_code == 422 and r.json()["field"] == "egress.allow[0]", r.text
    r = node.deploy(name="bad", artifact="file://" + BUSYBOX, network="bridge", nats=True)  # a node without NATS
    assert r.status_code == 422 and r.json()["field"] == "nats", r.text
    # Stats count the traffic.
    st = node.get(f"/v1/workloads/{w['id']}/stats").json()
    assert st["network"]["rx_bytes"] > 0 and st["network"]["tx_packets"] > 0, st
    metrics = node.get("/metrics").text
    assert re.search(rf'nex_network_bytes_total{{workload="{w["id"]}",direction="out"}} [1-9]', metrics)
    # Stopped: the port is released (nothing answers) and can be published again.
    node.delete(f"/v1/workloads/{w['id']}")
    node.wait_state(w["id"], "stopped")
    assert not requests_ok(f"http://127.0.0.1:{port}/")
    w2 = httpd_workload(node, name="web2", ports=[{"host": port, "workload": 80, "host_ip": "127.0.0.1"}])
    node.wait_state(w2["id"], "running")
    wait_until(lambda: requests_ok(f"http://127.0.0.1:{port}/"), what="the port published again")
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "web2-says-hi\n"


def test_workloads_cannot_reach_each_other(node):
    a = httpd_workload(node, name="a")
    node.wait_state(a["id"], "running")
    addr = node.workload(a["id"])["address"]
    wait_until(lambda: requests_ok(f"http://{addr}/"), what="a's server from the host")
    b, texts, result = run_probes(node, (addr, 80), name="b")
    assert b["address"] != addr
    assert result[f"{addr}:80"] == "fail", texts
    c, texts, result = run_probes(node, (addr, 80), name="c", egress={"allow": [f"{addr}:80"]})
    assert result[f"{addr}:80"] == "ok" and any("a-says-hi" in t for t in texts), texts
    assert len({addr, b["address"], c["address"]}) == 3


def nft_helpers(nex):
    """Pids of NEX's nftables helper processes (children of nexd named nexd-nft)."""
    out = sh("ps", "-o", "pid=,comm=", "--ppid", str(nex.daemon.proc.pid), check=False).stdout
    return [int(line.split()[0]) for line in out.splitlines() if line.split()[1:] == ["nexd-nft"]]


def test_nftables_helper_gone_then_in_process(node):
    """nexd runs its nftables transactions in one helper process; killed, nexd runs them itself and the policy
    still holds."""
    helpers = nft_helpers(node)
    assert len(helpers) == 1, helpers
    os.kill(helpers[0], 9)
    wait_until(lambda: not os.path.exists(f"/proc/{helpers[0]}/comm") or
               open(f"/proc/{helpers[0]}/stat").read().split()[2] == "Z", what="the helper to die")
    a = httpd_workload(node, name="a2")
    node.wait_state(a["id"], "running")
    addr = node.workload(a["id"])["address"]
    wait_until(lambda: requests_ok(f"http://{addr}/"), what="a2's server from the host")
    _, texts, result = run_probes(node, (addr, 80), name="b2")
    assert result[f"{addr}:80"] == "fail", texts
    assert "w_" + a["id"].replace("-", "")[:12] in nex_table()


def test_kill9_restart_keeps_ports_and_cleans_up(node):
    keep = httpd_workload(node, name="keep", ports=[{"host": 0, "workload": 80}])
    gone = httpd_workload(node, name="gone", ports=[{"host": 0, "workload": 80}])
    keep = node.wait_state(keep["id"], "running")
    gone = node.wait_state(gone["id"], "running")
    kport, gport = keep["ports"][0]["host"], gone["ports"][0]["host"]
    wait_until(lambda: requests_ok(f"http://127.0.0.1:{kport}/"), what="keep's port")
    gone_if = "nx" + gone["id"].replace("-", "")[:12]
    assert gone_if in nx_links()
    helpers = nft_helpers(node)
    node.daemon.kill()  # SIGKILL
    # The nftables helper dies with nexd.
    wait_until(lambda: not any(os.path.exists(f"/proc/{p}") for p in helpers), what="the nftables helper to end")
    # While nexd is down: `keep` still serves; `gone` ends (its sandbox killed).
    assert requests.get(f"http://127.0.0.1:{kport}/", timeout=5).text == "keep-says-hi\n"
    os.kill(gone["pid"], 9)
    wait_until(lambda: gone_if not in nx_links(), what="gone's link to vanish with its namespace")
    node.start()
    node.wait_state(gone["id"], "failed")
    again = node.workload(keep["id"])
    assert again["state"] == "running" and again["address"] == keep["address"] and again["ports"] == keep["ports"]
    assert requests.get(f"http://127.0.0.1:{kport}/", timeout=5).text == "keep-says-hi\n"
    table = nex_table()
    assert "w_" + gone["id"].replace("-", "")[:12] not in table and str(gport) not in table
    assert "w_" + keep["id"].replace("-", "")[:12] in table
    # Its address and port are free again: another workload may take the port.
    w = httpd_workload(node, name="taker", ports=[{"host": gport, "workload": 80}])
    node.wait_state(w["id"], "running")


def leases_left(node):
    """Rows left in the network lease tables (addresses, ports) of NODE's registry."""
    import sqlite3
    db = sqlite3.connect(f"file:{node.data_dir}/registry.db", uri=True, timeout=5)
    try:
        return [db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("network_leases", "network_ports")]
    finally:
        db.close()


def test_many_bridge_workloads_leave_nothing(node):
    """200 bridge workloads, each with a published port, started and stopped: no interface, rule, lease or process
    is left behind (teardowns run on nexd's network thread, after the final state: waited for here)."""
    n = 200
    t0 = time.monotonic()
    ids = [httpd_workload(node, name=f"m{i}", ports=[{"host": 0, "workload": 80}])["id"] for i in range(n)]
    addrs, ports = set(), set()
    for wid in ids:
        w = node.wait_state(wid, "running", timeout=120)
        addrs.add(w["address"])
        ports.add(w["ports"][0]["host"])
    t_up = time.monotonic() - t0
    assert len(addrs) == n and len(ports) == n
    assert len(nx_links()) >= n
    for wid in ids:
        node.delete(f"/v1/workloads/{wid}")
    for wid in ids:
        node.wait_state(wid, "stopped", timeout=120)
    wait_until(lambda: not nx_links(), timeout=60, what="every nx link gone")
    wait_until(lambda: leases_left(node) == [0, 0], timeout=60, what="every lease dropped")
    table = nex_table()
    assert "w_" not in table and "p_" not in table, table
    assert not sh("pgrep", "-f", "httpd -f -p 80 -h /tmp/w", check=False).stdout
    print(f"{n} bridge workloads running in {t_up:.1f} s, all gone {time.monotonic() - t0:.1f} s after the first")


def test_nats_through_the_forwarder(request, outside):
    """A bridge workload with "nats": true publishes to the host's nats-server (on loopback) via NEX_NATS_URL."""
    import natsutil

    reason = natsutil.skip_reason()
    if reason:
        pytest.skip(reason)
    from conftest import output_root, safe_name
    server = natsutil.NatsServer(output_root() / safe_name(f"test_network.{request.node.name}")).start()
    request.addfinalizer(server.stop)
    nex = start_test_nex(request, args=("--nats", server.url))
    request.addfinalizer(lambda: finish_test_nex(request, nex))
    sub = natsutil.NatsClient(server.url).subscribe("net.hello")
    request.addfinalizer(sub.close)
    script = ('u=${NEX_NATS_URL#nats://}; echo "url $NEX_NATS_URL"; '
              'printf \'CONNECT {"verbose":false}\\r\\nPUB net.hello 11\\r\\nfrom-bridge\\r\\nPING\\r\\n\' '
              '| nc -w 3 ${u%:*} ${u#*:} | grep -q PONG && echo published')
    w = nex.deploy_ok(name="natsy", artifact="file://" + BUSYBOX, network="bridge", nats=True,
                      argv=["sh", "-c", script])
    nex.wait_state(w["id"], "exited", timeout=30)
    texts = nex.log_texts(w["id"])
    assert "published" in texts, texts
    got = sub.take(1, timeout=10)
    assert got[0]["subject"] == "net.hello" and "from-bridge" in str(got[0]), got
    # Without "nats": true the same script cannot reach it (no NEX_NATS_URL, and the gateway's port is refused).
    gw = nex.workload(w["id"])["env"].get("NEX_HOST_ADDR")
    assert gw is None  # the environment the node adds is not stored in the record
    port = server.url.rsplit(":", 1)[1]
    w2, texts2, result2 = run_probes(nex, ("$NEX_HOST_ADDR", port), name="nonats")
    assert all(v == "fail" for v in result2.values()) and result2, texts2


def test_images_default_to_bridge(node, tmp_path):
    """An image workload that names no network gets bridge on a node that can give it; `none` when asked; an
    executable keeps none."""
    import imagelib

    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    layout = imagelib.busybox_layout(tmp_path, "net", cmd=("sh", "-c", "cat /etc/hosts; echo host $NEX_HOST_ADDR"),
                                     user="0")
    ref = f"oci-layout://{layout}:net"
    w = node.deploy_ok(name="img", image=ref)
    assert w["network"] == "bridge" and w["address"], w
    node.wait_state(w["id"], "exited", timeout=60)
    texts = node.log_texts(w["id"])
    assert any(re.match(rf"{re.escape(w['address'])}\s+img$", t) for t in texts), texts
    assert any(re.match(r"host \d+\.\d+\.\d+\.\d+$", t) for t in texts), texts
    w2 = node.deploy_ok(name="img-none", image=ref, network="none")
    assert w2["network"] == "none" and w2["address"] is None, w2
    node.wait_state(w2["id"], "exited", timeout=60)
    assert "host" in node.log_texts(w2["id"]), node.log_texts(w2["id"])  # no NEX_HOST_ADDR without a network
    w3 = node.deploy_ok(name="elf", artifact="file://" + BUSYBOX, argv=["true"])
    assert w3["network"] == "none" and w3["address"] is None, w3


def test_nex_run_publish(node):
    """`nex run -p HOST_IP:0:PORT` publishes a port (and implies bridge); `--nats` on a node without NATS is the
    API's 422, one line."""
    # argv[0] is the workload's name: `sh` makes busybox a shell
    r = node.cli("run", BUSYBOX, "--name", "sh", "-p", "127.0.0.1:0:80", "--arg", "-c",
                 "--arg", "mkdir -p /tmp/w && echo cli-hi > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w")
    assert r.returncode == 0, r.stderr
    wid = r.stdout.strip().splitlines()[-1]
    w = node.wait_state(wid, "running")
    port = w["ports"][0]["host"]
    assert w["network"] == "bridge" and w["ports"][0]["workload"] == 80 and port > 0, w
    wait_until(lambda: requests_ok(f"http://127.0.0.1:{port}/"), what="the port nex run published")
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "cli-hi\n"
    r = node.cli("run", BUSYBOX, "--name", "clinats", "--nats")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "nats" in r.stderr, r.stderr
