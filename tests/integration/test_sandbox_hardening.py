# SPDX-License-Identifier: Apache-2.0
"""test_sandbox_hardening.py — what a workload may do inside its sandbox: the default seccomp profile, dropped
capabilities, no_new_privs, closed descriptors, and a working directory inside the root.

tests/programs/probe `syscalls` tries the calls the profile refuses (mount, unshare, clone with CLONE_NEWPID,
keyctl, ptrace, bpf, setns) and ordinary ones (fork, writing /tmp), then prints its capability sets and the
NoNewPrivs / Seccomp lines of /proc/self/status and how many descriptors beyond 0-2 it inherited.
"""

from sandboxlib import probe

REFUSED = ("mount", "unshare-user", "unshare-ns", "unshare-net", "clone-newpid", "keyctl", "ptrace", "bpf", "setns")


def report(nexd, **fields):
    w = probe(nexd, "syscalls", name="syscalls", **fields)
    w = nexd.wait_state(w["id"], "exited")
    assert w["exit_code"] == 0, w
    out = {}
    for text in nexd.log_texts(w["id"], "stdout"):
        key, sep, value = text.partition(": ")
        if sep:
            out[key] = value
    return out


def test_default_profile_refuses_with_eperm(nexd):
    seen = report(nexd)
    for call in REFUSED:
        assert seen.get(call) == "EPERM", f"{call}: {seen.get(call)} (report {seen})"
    assert seen["fork"] == "ok"
    assert seen["thread"] == "ok"
    assert seen["write-tmp"] == "ok"
    assert int(seen["CapEff"], 16) == 0
    assert int(seen["CapPrm"], 16) == 0
    assert int(seen["CapBnd"], 16) == 0, "the bounding set still holds capabilities"
    assert int(seen["CapAmb"], 16) == 0
    assert seen["NoNewPrivs"] == "1"
    assert seen["Seccomp"] == "2", "no seccomp filter on the workload"
    assert seen["extra-fds"] == "0", "the workload inherited descriptors beyond stdin/stdout/stderr"


def test_kept_capabilities_do_not_lift_the_profile(nexd):
    w_caps = ["CAP_SYS_ADMIN", "cap_chown"]
    seen = report(nexd, capabilities=w_caps)
    eff = int(seen["CapEff"], 16)
    assert eff == (1 << 21) | (1 << 0), hex(eff)
    assert int(seen["CapBnd"], 16) == eff
    # CAP_SYS_ADMIN would allow mount and unshare in the sandbox's own namespaces: seccomp still refuses them
    assert seen["mount"] == "EPERM"
    assert seen["unshare-ns"] == "EPERM"
    assert seen["clone-newpid"] == "EPERM"


def test_capability_names_are_checked(nexd):
    r = nexd.deploy(name="x", artifact=nexd.program("probe"), capabilities=["CAP_MAKE_COFFEE"])
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "capabilities[0]"


def test_network_modes(nexd):
    w = probe(nexd, "net", name="isolated")
    assert w["network"] == "none"
    nexd.wait_state(w["id"], "exited")
    assert nexd.log_texts(w["id"]) == ["net: lo"], nexd.log_texts(w["id"])
    with open("/proc/self/net/dev") as f:
        host = sorted(line.split(":")[0].strip() for line in f.readlines()[2:])
    w = probe(nexd, "net", name="hostnet", network="host")
    assert w["network"] == "host"
    nexd.wait_state(w["id"], "exited")
    seen = nexd.log_texts(w["id"])[0].split()[1:]
    assert sorted(seen) == host, (seen, host)
    r = nexd.deploy(name="x", artifact=nexd.program("probe"), network="bridged")
    assert r.status_code == 422 and r.json()["field"] == "network", r.text


def test_working_directory(nexd):
    w = probe(nexd, "pwd", name="pwd", cwd="/tmp")
    assert w["cwd"] == "/tmp"
    nexd.wait_state(w["id"], "exited")
    assert "pwd: /tmp" in nexd.log_texts(w["id"])
    missing = probe(nexd, "pwd", name="pwd", cwd="/no/such/dir")
    failed = nexd.wait_state(missing["id"], "failed")
    assert "chdir" in failed["reason"] and "/no/such/dir" in failed["reason"], failed["reason"]
    r = nexd.deploy(name="x", artifact=nexd.program("probe"), cwd="/tmp/../etc")
    assert r.status_code == 422 and r.json()["field"] == "cwd", r.text
