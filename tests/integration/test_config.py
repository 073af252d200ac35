# SPDX-License-Identifier: Apache-2.0
"""test_config.py — nexd's command line and configuration sources, driven as an operator would.

Checks that --help lists the options, that a bad flag or config file stops nexd with a non-zero status and a
one-line message, and the precedence the design promises: flags override NEX_* environment variables, which
override the JSON config file (observed through the port nexd actually listens on and the data dir it uses).
"""

import json
import os
import signal
import subprocess
import time

import requests

from conftest import build_dir, free_port


def nexd_binary():
    return str(build_dir() / "nexd")


def run_nexd(args, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEX_")}
    env.update(env_extra or {})
    return subprocess.Popen([nexd_binary()] + args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def answers_on(port, proc, timeout=10):
    """True once GET /healthz answers on PORT; False if nexd exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.05)
    return False


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_help_lists_options():
    r = subprocess.run([nexd_binary(), "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0
    for flag in ("--listen", "--data-dir", "--log-level", "--config", "--agent", "NEX_LISTEN", "NEX_DATA_DIR"):
        assert flag in r.stdout, f"{flag} missing from --help"


def test_unknown_flag_is_one_line_error():
    r = subprocess.run([nexd_binary(), "--no-such-flag"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--no-such-flag" in lines[0], r.stderr


def test_bad_config_file_refused(tmp_path):
    cfg = tmp_path / "nexd.json"
    cfg.write_text('{"listen": 8080, "log_level": "loud"}')  # listen has the wrong type
    r = subprocess.run([nexd_binary(), "--config", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert str(cfg) in r.stderr and "listen" in r.stderr, r.stderr
    cfg.write_text("{not json")
    r = subprocess.run([nexd_binary(), "--config", str(cfg)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and str(cfg) in r.stderr


def test_bad_log_level_refused():
    r = subprocess.run([nexd_binary(), "--log-level", "loud"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "loud" in r.stderr


def test_precedence_file_env_flag(tmp_path):
    p_file, p_env, p_flag = free_port(), free_port(), free_port()
    data_file = tmp_path / "from-file"
    cfg = tmp_path / "nexd.json"
    cfg.write_text(json.dumps({"listen": f"127.0.0.1:{p_file}", "data_dir": str(data_file),
                               "log_level": "warn"}))

    # The file alone decides.
    proc = run_nexd(["--config", str(cfg)])
    try:
        assert answers_on(p_file, proc), proc.stderr.read().decode() if proc.poll() is not None else "no answer"
        assert (data_file / "registry.db").exists()
    finally:
        stop(proc)

    # The environment overrides the file (also NEX_CONFIG names the file).
    proc = run_nexd([], {"NEX_CONFIG": str(cfg), "NEX_LISTEN": f"127.0.0.1:{p_env}"})
    try:
        assert answers_on(p_env, proc)
        assert not answers_on(p_file, proc, timeout=0.5)
    finally:
        stop(proc)

    # A flag overrides both.
    proc = run_nexd(["--config", str(cfg), f"--listen=127.0.0.1:{p_flag}"], {"NEX_LISTEN": f"127.0.0.1:{p_env}"})
    try:
        assert answers_on(p_flag, proc)
        assert not answers_on(p_env, proc, timeout=0.5)
    finally:
        stop(proc)


def test_default_data_dir_is_relative_to_cwd(tmp_path):
    port = free_port()
    proc = run_nexd(["--listen", f"127.0.0.1:{port}"], cwd=str(tmp_path))
    try:
        assert answers_on(port, proc)
        assert (tmp_path / "nex-data" / "registry.db").exists()
        token = (tmp_path / "nex-data" / "admin.token").read_text().strip()
        node = requests.get(f"http://127.0.0.1:{port}/v1/node", timeout=5,
                            headers={"Authorization": f"Bearer {token}"}).json()
        assert node["default_driver"] == "sandbox"
    finally:
        stop(proc)
