# SPDX-License-Identifier: Apache-2.0
"""test_images_auth.py — pulling from registries that ask for credentials, against a real nexd.

Basic: Debian's docker-registry with `auth: htpasswd:` (a bcrypt file made by `htpasswd -B`), the credentials
given to nexd by `--registry-auth` (a docker config.json with `auths`).  Bearer: imagelib.BearerProxy, a token
endpoint and a forwarding proxy on loopback in front of a plain docker-registry (docker-registry's own token auth
wants JWTs signed by a certificate chain: the proxy speaks the same challenge with far less machinery).  Covered:
a pull through each; no or wrong credentials refused with the reason; the Bearer token kept per scope across
pulls until its expires_in, asked afresh when the registry refuses it, and the token endpoint asked with the
operator's Basic credentials.
"""

import base64
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

import imagelib
from conftest import TERMINAL_STATES, start_test_nex, finish_test_nex

USER, PASSWORD = "puller", "s3cret-pw"


@pytest.fixture(scope="module")
def work():
    why = imagelib.tools_missing()
    if why:
        pytest.skip(why)
    work = Path(tempfile.mkdtemp(prefix="nex-images-auth-"))
    layout = imagelib.busybox_layout(work, "bb")
    yield {"dir": work, "layout": layout, "digest": imagelib.layout_manifest_digest(layout, "bb")}
    shutil.rmtree(work, ignore_errors=True)


def auth_file(work, host, user, password):
    path = Path(work["dir"]) / f"auth-{host.replace(':', '_')}-{user}.json"
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    return str(path)


def pull(nexd, ref):
    return nexd.post("/v1/images/pull", json={"image": ref})


def test_basic_auth_with_htpasswd(request, work):
    (work["dir"] / "basic").mkdir()
    reg = imagelib.Registry(work["dir"] / "basic", htpasswd=(USER, PASSWORD))
    try:
        ref = reg.push(work["layout"], "bb", "private/bb", "v1")
        nexd = start_test_nex(request)
        try:
            r = pull(nexd, ref)
            assert r.status_code == 503 and "--registry-auth has none" in r.json()["detail"], r.text
        finally:
            finish_test_nex(request, nexd)
        nexd = start_test_nex(request, args=["--registry-auth", auth_file(work, reg.host, USER, "wrong")])
        try:
            r = pull(nexd, ref)
            assert r.status_code == 503 and "refused" in r.json()["detail"], r.text
        finally:
            finish_test_nex(request, nexd)
        nexd = start_test_nex(request, args=["--registry-auth", auth_file(work, reg.host, USER, PASSWORD)])
        try:
            r = pull(nexd, ref)
            assert r.status_code == 200 and r.json()["digest"] == work["digest"], r.text
            w = nexd.deploy_ok(name="basic", image=ref, cmd=["echo", "basic"])
            w = nexd.wait_state(w["id"], TERMINAL_STATES, timeout=30)
            assert w["state"] == "exited" and nexd.log_texts(w["id"]) == ["basic"], w
        finally:
            finish_test_nex(request, nexd)
    finally:
        reg.close()


def test_bearer_token_kept_per_scope_until_it_expires(request, work):
    (work["dir"] / "bearer").mkdir()
    reg = imagelib.Registry(work["dir"] / "bearer")
    proxy = imagelib.BearerProxy(reg.host)
    try:
        reg.push(work["layout"], "bb", "test/bb", "v1")
        reg.push(work["layout"], "bb", "test/other", "v1")
        ref, other = f"{proxy.host}/test/bb:v1", f"{proxy.host}/test/other:v1"
        nexd = start_test_nex(request)
        try:
            r = pull(nexd, ref)
            assert r.status_code == 200 and r.json()["digest"] == work["digest"], r.text
            assert proxy.issued == ["repository:test/bb:pull"]
            # the same scope again: the kept token, no new one; another repository: a token of its own
            assert pull(nexd, ref).status_code == 200 and len(proxy.issued) == 1, proxy.issued
            assert pull(nexd, other).status_code == 200
            assert proxy.issued == ["repository:test/bb:pull", "repository:test/other:pull"]
            # the registry no longer takes the kept token: asked afresh, once
            proxy.revoke()
            assert pull(nexd, ref).status_code == 200 and len(proxy.issued) == 3, proxy.issued
            # a short-lived token: used while it lives, replaced after
            proxy.expires_in = 3
            proxy.revoke()
            assert pull(nexd, ref).status_code == 200 and len(proxy.issued) == 4
            assert pull(nexd, ref).status_code == 200 and len(proxy.issued) == 4, proxy.issued
            time.sleep(3.2)
            assert pull(nexd, ref).status_code == 200 and len(proxy.issued) == 5, proxy.issued
            w = nexd.deploy_ok(name="bearer", image=ref, cmd=["echo", "bearer"])
            w = nexd.wait_state(w["id"], TERMINAL_STATES, timeout=30)
            assert w["state"] == "exited" and nexd.log_texts(w["id"]) == ["bearer"], w
        finally:
            finish_test_nex(request, nexd)
    finally:
        proxy.close()
        reg.close()


def test_bearer_token_endpoint_asked_with_basic_credentials(request, work):
    (work["dir"] / "bearer-basic").mkdir()
    reg = imagelib.Registry(work["dir"] / "bearer-basic")
    proxy = imagelib.BearerProxy(reg.host, basic=(USER, PASSWORD))
    try:
        reg.push(work["layout"], "bb", "test/bb", "v1")
        ref = f"{proxy.host}/test/bb:v1"
        nexd = start_test_nex(request)
        try:
            r = pull(nexd, ref)
            assert r.status_code == 503 and "token endpoint" in r.json()["detail"] and "401" in r.json()["detail"], \
                r.text
            assert proxy.issued == []
        finally:
            finish_test_nex(request, nexd)
        nexd = start_test_nex(request, args=["--registry-auth", auth_file(work, proxy.host, USER, PASSWORD)])
        try:
            r = pull(nexd, ref)
            assert r.status_code == 200 and r.json()["digest"] == work["digest"], r.text
            assert proxy.issued == ["repository:test/bb:pull"]
        finally:
            finish_test_nex(request, nexd)
    finally:
        proxy.close()
        reg.close()
