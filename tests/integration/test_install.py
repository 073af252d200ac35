# SPDX-License-Identifier: Apache-2.0
"""test_install.py — `make install` as an operator runs it, and the installed nexd running from where it went.

The build directory is installed with `make install DESTDIR=<tmp>` (its configured --prefix and friends, read
back from its Makefile).  Checked: every file is where the README says (programs, nex-agent, the dashboard and its
/vendor/ libraries, the default config, the data dir, the man pages, the systemd unit, the VM kernel when the
build has one); the installed nexd, started from DESTDIR with nothing telling it where its files are (it is
R$(sbindir)/nexd, so it takes them below R: server/paths.h), serves the installed dashboard and runs tests/programs
hello to its exit code 3, and keeps a running workload across its own restart (what `systemctl restart` does
with the unit's KillMode=process); the man pages render with `man -l` without a warning and list every option
and command --help does; the unit passes `systemd-analyze verify`; a second install keeps an edited config, and
uninstall leaves the config and the data dir.
"""

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import REPO, build_dir, finish_nex, make_nex, skip_reason

DIRS = ("bindir", "sbindir", "pkglibexecdir", "pkglibdir", "pkgdatadir", "sysconfdir", "localstatedir", "mandir",
        "systemdsystemunitdir", "VENDOR_FILES")


def make_vars(names):
    """{NAME: value} of the build directory's Makefile (with its configured directories expanded)."""
    rule = "nex-test-print: ; @printf '%s\\n' " + " ".join(f"'{n}=$({n})'" for n in names)
    r = subprocess.run(["make", "-C", str(build_dir()), "-s", "--no-print-directory", f"--eval={rule}",
                        "nex-test-print"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return dict(line.split("=", 1) for line in r.stdout.splitlines())


def make_install(destdir, target="install"):
    r = subprocess.run(["make", "-C", str(build_dir()), "-s", target, f"DESTDIR={destdir}"], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"make {target} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


class Installed:
    """One `make install DESTDIR=root`: where each kind of file went (below root)."""

    def __init__(self, root):
        self.root = Path(root)
        self.dirs = make_vars(DIRS)
        self.vendor_files = self.dirs["VENDOR_FILES"].split()

    def path(self, dirname, *rest):
        return Path(str(self.root) + self.dirs[dirname]).joinpath(*rest)

    @property
    def nexd(self):
        return self.path("sbindir", "nexd")

    @property
    def config(self):
        return self.path("sysconfdir", "nex", "nexd.json")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    make_install(root)
    return Installed(root)


@pytest.fixture
def installed_nexd(request, installed):
    """A running nexd started from the installed tree (with the installed config; port and data dir its own)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    nex = make_nex(f"test_install.{request.node.name}", extra_args=["--config", str(installed.config)],
                   binary=installed.nexd)
    try:
        nex.start()
    except Exception:
        nex.abort()
        raise
    yield nex
    rep = getattr(request.node, "rep_call", None)
    finish_nex(nex, passed=rep is not None and rep.passed)


def vendor_table():
    """{URL: file} of the /vendor/ table in server/api/static.c, which Makefile.am's VENDOR_FILES must match."""
    text = (REPO / "server" / "api" / "static.c").read_text()
    return dict(re.findall(r'\{ "(/vendor/[^"]+)", "([^"]+)" \}', text))


def executable(path):
    return path.is_file() and os.access(path, os.X_OK)


def test_install_puts_every_file_in_place(installed):
    for where, name in (("sbindir", "nexd"), ("bindir", "nex"), ("bindir", "nex-rootfs"),
                        ("pkglibexecdir", "nex-agent")):
        assert executable(installed.path(where, name)), f"{name} is not installed in {where}"
    assert not installed.path("bindir", "nexd").exists(), "nexd belongs in sbindir only"
    assert not installed.path("bindir", "nex-agent").exists(), "nex-agent is no command: libexecdir only"

    web = sorted(p.name for p in (REPO / "web").iterdir() if p.is_file())
    assert web and sorted(p.name for p in installed.path("pkgdatadir", "web").iterdir()) == web, \
        "the installed web/ differs from the source tree's"
    assert sorted(vendor_table().values()) == sorted(installed.vendor_files), "VENDOR_FILES and static.c differ"
    for f in installed.vendor_files:
        got = installed.path("pkgdatadir", "vendor", f)
        assert got.is_file() and got.read_bytes() == (REPO / "node_modules" / f).read_bytes(), f

    config = json.loads(installed.config.read_text())
    assert config["data_dir"] == installed.dirs["localstatedir"] + "/lib/nex", config
    state = installed.path("localstatedir", "lib", "nex")
    assert state.is_dir() and stat.S_IMODE(state.stat().st_mode) == 0o700, "the data dir is not made 0700"

    assert installed.path("mandir", "man8", "nexd.8").is_file() and installed.path("mandir", "man1", "nex.1").is_file()
    assert installed.path("systemdsystemunitdir", "nexd.service").is_file()
    if (build_dir() / "kernel" / "PACKAGE").exists():
        for f in ("vmlinuz", "vmlinux", "PACKAGE"):
            assert installed.path("pkglibdir", "kernel", f).is_file(), f"kernel/{f} is not installed"
        assert list(installed.path("pkglibdir", "kernel", "modules", "qemu").glob("*.ko"))


def test_installed_nexd_runs_a_workload_from_its_own_files(installed, installed_nexd):
    nex = installed_nexd
    # It found everything below DESTDIR, by itself: the paths it uses are in its log.
    files = next(json.loads(line)["msg"] for line in nex.daemon.log_path.read_text().splitlines()
                 if line.startswith("{") and json.loads(line)["msg"].startswith("files: "))
    for dirname, rest in (("pkglibexecdir", "nex-agent"), ("pkglibdir", "kernel"), ("pkgdatadir", "web"),
                          ("pkgdatadir", "vendor")):
        assert str(installed.path(dirname, rest)) in files, files

    w = nex.deploy_ok(name="hello", artifact=nex.program("hello"))
    done = nex.wait_state(w["id"], "exited", timeout=20)
    assert done["exit_code"] == 3, done

    # The dashboard's files are no API operation (openapi.yaml): fetched as a browser does.
    r = requests.get(nex.url("/"), timeout=10)
    assert r.status_code == 200 and r.content == installed.path("pkgdatadir", "web", "index.html").read_bytes()
    for url, f in vendor_table().items():
        r = requests.get(nex.url(url), timeout=10)
        assert r.status_code == 200 and r.content == installed.path("pkgdatadir", "vendor", f).read_bytes(), url

    node = nex.get("/v1/node").json()
    qemu = next(d for d in node["drivers"] if d["name"] == "qemu")
    if (build_dir() / "kernel" / "PACKAGE").exists():
        assert "no VM kernel" not in (qemu.get("reason") or ""), qemu

    # The installed CLI talks to it too.
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEX_")}
    r = subprocess.run([str(installed.path("bindir", "nex")), "--server", nex.base, "--token", nex.token, "--json",
                        "node", "info"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == node["id"], r.stderr


def test_restart_of_the_installed_nexd_keeps_workloads(installed_nexd):
    """systemctl restart with KillMode=process: SIGTERM to nexd alone, a new nexd; the workload never stops."""
    nex = installed_nexd
    w = nex.deploy_ok(name="sleeper", artifact=nex.program("probe"), argv=["probe", "sleep", "600"])
    nex.wait_log(w["id"], "sleep: started", timeout=20)
    pid = nex.workload(w["id"])["pid"]
    nex.restart()
    after = nex.workload(w["id"])
    assert after["state"] == "running" and after["pid"] == pid, after
    out = nex.post(f"/v1/workloads/{w['id']}/exec", json={"argv": ["/workload", "echo", "adopted"]}).json()
    assert out.get("stdout") == "adopted\n", out


def man_text(page):
    """PAGE rendered by `man -l` in the C locale (ASCII), and what man and groff said on stderr."""
    env = dict(os.environ, MANWIDTH="200", LC_ALL="C", MAN_KEEP_FORMATTING="")
    r = subprocess.run(["man", "--warnings", "-P", "cat", "-l", str(page)], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, f"man -l {page}: status {r.returncode}: {r.stderr}"
    return r.stdout, r.stderr


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed (scripts/setup installs man-db)")
def test_man_pages_render_and_list_every_option(installed):
    text, warnings = man_text(installed.path("mandir", "man8", "nexd.8"))
    assert warnings == "", f"nexd.8: {warnings}"
    assert "NEXD(8)" in text and "SYNOPSIS" in text and installed.dirs["sysconfdir"] + "/nex/nexd.json" in text
    help_text = subprocess.run([str(installed.nexd), "--help"], capture_output=True, text=True, timeout=10).stdout
    flags = re.findall(r"^  (--[a-z0-9-]+)", help_text, re.M)
    assert len(flags) > 40, flags
    missing = [f for f in flags if not re.search(rf"^\s+{re.escape(f)}\b", text, re.M)]
    assert not missing, f"nexd.8 lacks {missing}"

    text, warnings = man_text(installed.path("mandir", "man1", "nex.1"))
    assert warnings == "", f"nex.1: {warnings}"
    nex_help = subprocess.run([str(installed.path("bindir", "nex")), "--help"], capture_output=True, text=True,
                              timeout=10).stdout
    commands = re.findall(r"^  ([a-z]+(?: [a-z]+)?)  ", nex_help, re.M)
    assert "run" in commands and "token create" in commands, commands
    missing = [c for c in commands if f"nex {c}" not in text]
    assert not missing, f"nex.1 lacks the commands {missing}"
    assert "--max-restarts" in text and "--server" in text


def test_unit_file(installed, tmp_path):
    unit = installed.path("systemdsystemunitdir", "nexd.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if re.match(r"^[A-Za-z]+=", line))
    assert settings["Type"] == "notify"
    assert settings["KillMode"] == "process" and settings["Delegate"] == "yes", "workloads must outlive a restart"
    assert settings["ExecStart"] == f"{installed.dirs['sbindir']}/nexd --config {installed.dirs['sysconfdir']}/nex/nexd.json"
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's syntax was not verified")
    # verify checks that ExecStart's program exists: point it at the one in DESTDIR, nothing else changes.  The
    # man pages it would look up are not installed on this host (checked above with man -l instead).
    staged = tmp_path / "nexd.service"
    staged.write_text(unit.replace(f"ExecStart={installed.dirs['sbindir']}", f"ExecStart={installed.path('sbindir')}"))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(staged)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), \
        f"systemd-analyze verify: status {r.returncode}\n{r.stdout}{r.stderr}"


def test_reinstall_keeps_the_config_and_uninstall_keeps_config_and_data(tmp_path):
    root = tmp_path / "root"
    make_install(root)
    inst = Installed(root)
    edited = '{"listen": "127.0.0.1:9999"}\n'
    inst.config.write_text(edited)
    r = make_install(root)
    assert inst.config.read_text() == edited, "make install overwrote an operator's config"
    assert "is kept" in r.stdout
    (inst.path("localstatedir", "lib", "nex") / "registry.db").write_text("data")
    make_install(root, "uninstall")
    for where, name in (("sbindir", "nexd"), ("bindir", "nex"), ("pkglibexecdir", "nex-agent"),
                        ("pkgdatadir", "web/index.html"), ("pkgdatadir", "vendor"), ("pkglibdir", "kernel"),
                        ("mandir", "man8/nexd.8"), ("systemdsystemunitdir", "nexd.service")):
        assert not inst.path(where, name).exists(), f"uninstall left {where}/{name}"
    assert inst.config.read_text() == edited, "uninstall removed an edited config"
    assert (inst.path("localstatedir", "lib", "nex") / "registry.db").exists(), "uninstall touched the data"
