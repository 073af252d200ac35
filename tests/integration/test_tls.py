# SPDX-License-Identifier: Apache-2.0
"""test_tls.py — nexd serving HTTPS (libmicrohttpd with GnuTLS) when given a certificate and a key.

A self-signed certificate for 127.0.0.1 is made with the openssl command; nexd is started with --tls-cert and
--tls-key; REST (requests, verifying against that certificate), a websocket (wss://) and the CLI (--cacert) must
work over TLS, and plain HTTP on the same port must not.
"""

import json
import shutil
import subprocess
import time

import pytest
import requests
import websocket

from conftest import build_dir, free_port, nexd_environment, skip_reason

# nexd runs a workload here: it needs what the nexd fixture needs
pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return cert, key


def test_https(tls_files, tmp_path):
    cert, key = tls_files
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    data = tmp_path / "data"
    log = open(tmp_path / "nexd.log", "wb")
    proc = subprocess.Popen([str(build_dir() / "nexd"), "--listen", f"127.0.0.1:{port}", "--data-dir", str(data),
                             "--tls-cert", str(cert), "--tls-key", str(key)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=nexd_environment())
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, (tmp_path / "nexd.log").read_text()
            try:
                if requests.get(base + "/readyz", verify=str(cert), timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "nexd did not answer over HTTPS"
            time.sleep(0.1)
        token = (data / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        node = requests.get(base + "/v1/node", headers=auth, verify=str(cert), timeout=5)
        assert node.status_code == 200 and node.json()["default_driver"] == "sandbox"
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/v1/node", headers=auth, timeout=3)

        ws = websocket.create_connection(f"wss://127.0.0.1:{port}/v1/events?follow=1", timeout=10,
                                         header=[f"Authorization: Bearer {token}"], sslopt={"ca_certs": str(cert)})
        hello = str(build_dir() / "tests" / "programs" / "hello")
        env = {"NEX_SERVER": base, "NEX_TOKEN": token, "NEX_CACERT": str(cert), "PATH": "/usr/bin:/bin"}
        r = subprocess.run([str(build_dir() / "nex"), "run", hello], env=env, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        wid = r.stdout.strip()
        first = json.loads(ws.recv())
        assert first["type"] == "workload_deployed" and first["subject"] == wid
        ws.close()
        # without the CA the CLI refuses the server, in one line
        r = subprocess.run([str(build_dir() / "nex"), "ls"], env=dict(env, NEX_CACERT=""), capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "cannot reach" in r.stderr
        w = requests.get(f"{base}/v1/workloads/{wid}/wait", headers=auth, verify=str(cert), timeout=30).json()
        assert w["state"] == "exited"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        log.close()


def test_bad_tls_configuration(tls_files, tmp_path):
    cert, key = tls_files
    binary = str(build_dir() / "nexd")
    r = subprocess.run([binary, "--tls-cert", str(cert)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "tls_key" in r.stderr
    r = subprocess.run([binary, "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"), "--tls-cert",
                        str(cert), "--tls-key", str(tmp_path / "missing.pem")], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0 and "tls_key" in r.stderr
