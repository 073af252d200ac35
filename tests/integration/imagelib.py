# SPDX-License-Identifier: Apache-2.0
"""imagelib.py — OCI test images built at test time, and a real registry on loopback, for test_images*.py.

`busybox_layout` builds an OCI image layout with umoci from Debian's busybox-static (/bin/busybox, its applets as
symlinks, an /etc/passwd and /etc/group with a user `app`), with a config (Cmd, Env, WorkingDir, User) set by
`umoci config`.  `Registry` runs Debian's docker-registry with a config of its own on a free loopback port, and
`push` copies a layout into it with skopeo (with `htpasswd=(user, password)` the registry asks for Basic auth,
from a bcrypt file made by `htpasswd -B`).  `BearerProxy` puts a Bearer token challenge in front of a registry
(a token endpoint and a forwarding proxy on one loopback port, counting the tokens it issues).  `hostile_layout` writes an OCI layout by hand (Python's tarfile,
gzip, hashlib), so that a layer can hold what no tool would write: `..` names, symlink escapes, device nodes,
hardlinks outside, and descriptors or diff_ids that lie.
"""

import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from conftest import free_port

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "ls", "cat", "echo", "id", "pwd", "env", "sleep", "touch", "head", "wc", "rm", "mkdir"]


def tools_missing():
    """Why the image tests cannot run here, or None."""
    for tool in ("umoci", "skopeo", "docker-registry"):
        if shutil.which(tool) is None and not Path(f"/usr/bin/{tool}").exists():
            return f"{tool} is not installed (scripts/setup installs it)"
    if not Path(BUSYBOX).exists():
        return "busybox-static is not installed"
    return None


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed ({r.returncode}): {r.stderr}"
    return r.stdout


def busybox_layout(workdir, tag="bb", cmd=("sh", "-c", "echo hello from $GREETING; id; pwd"), user="app"):
    """An OCI layout WORKDIR/oci with image TAG: busybox, passwd/group, config Cmd/Env/WorkingDir/User."""
    workdir = Path(workdir)
    layout, bundle = workdir / "oci", workdir / f"bundle-{tag}"
    if not layout.exists():
        run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:{tag}")
    run("umoci", "unpack", "--image", f"{layout}:{tag}", bundle)
    root = bundle / "rootfs"
    for d in ("bin", "etc", "work", "home/app"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    for a in APPLETS:
        os.symlink("busybox", root / "bin" / a)
    os.symlink("/bin", root / "sbin")  # an absolute symlink, resolved inside the root
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    os.chown(root / "home" / "app", 1000, 1000)
    run("umoci", "repack", "--image", f"{layout}:{tag}", bundle)
    args = ["umoci", "config", "--image", f"{layout}:{tag}", "--config.env", "GREETING=image",
            "--config.workingdir", "/work", "--config.user", user]
    for c in cmd:
        args += ["--config.cmd", c]
    run(*args)
    shutil.rmtree(bundle)
    return layout


def layout_manifest_digest(layout, tag):
    index = json.loads((Path(layout) / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m["digest"]
    raise AssertionError(f"no tag {tag} in {layout}")


class Registry:
    """Debian's docker-registry on a free loopback port, storing under DIR."""

    def __init__(self, workdir, htpasswd=None):
        self.dir = Path(workdir)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.creds = htpasswd
        self.config = self.dir / f"registry-{self.port}.yml"
        auth = ""
        if htpasswd:
            users = self.dir / f"htpasswd-{self.port}"
            run("htpasswd", "-Bbc", users, htpasswd[0], htpasswd[1])
            auth = f"auth:\n  htpasswd:\n    realm: nex-test\n    path: {users}\n"
        self.config.write_text(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.dir / 'storage'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n" + auth)
        self.log = open(self.dir / "registry.log", "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                if requests.get(f"http://{self.host}/v2/", timeout=1).status_code in (200, 401):
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "docker-registry did not come up"
            time.sleep(0.1)

    def push(self, layout, tag, repo, dest_tag):
        creds = ["--dest-creds", f"{self.creds[0]}:{self.creds[1]}"] if self.creds else []
        run("skopeo", "copy", "--dest-tls-verify=false", *creds, f"oci:{layout}:{tag}",
            f"docker://{self.host}/{repo}:{dest_tag}")
        return f"{self.host}/{repo}:{dest_tag}"

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class BearerProxy:
    """Bearer token auth in front of the registry at UPSTREAM (host:port), on one loopback port: GET /token
    issues tokens for a scope (asking for Basic BASIC=(user, password) first when given), valid EXPIRES_IN
    seconds; /v2/... answers 401 with a `WWW-Authenticate: Bearer realm,service,scope` challenge unless it carries
    a live token for the repository's pull scope, and is forwarded to UPSTREAM otherwise.  `issued` lists the
    scopes tokens were issued for; `revoke()` forgets every token (a registry refusing a kept one).  With
    BEARER false it asks for nothing; with HOLD, blob GETs wait until GET /release (a pull that stays under way
    as long as a test needs)."""

    def __init__(self, upstream, expires_in=300, basic=None, bearer=True, hold=False):
        self.upstream, self.expires_in, self.basic, self.bearer = upstream, expires_in, basic, bearer
        self.tokens, self.issued, self.lock = {}, [], threading.Lock()
        self.released = threading.Event()
        if not hold:
            self.released.set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/token":
                    return proxy._token(self, urllib.parse.parse_qs(url.query))
                if url.path == "/release":
                    proxy.released.set()
                    self.send_response(204)
                    self.send_header("Access-Control-Allow-Origin", "*")
                    self.end_headers()
                    return
                m = re.match(r"^/v2/(.+)/(manifests|blobs)/", url.path)
                scope = f"repository:{m.group(1)}:pull" if m else None
                if proxy.bearer and not proxy._allowed(self.headers.get("Authorization", ""), scope):
                    extra = f',scope="{scope}"' if scope else ""
                    self.send_response(401)
                    self.send_header("WWW-Authenticate",
                                     f'Bearer realm="http://{proxy.host}/token",service="nex-test"{extra}')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "/blobs/" in url.path:
                    proxy.released.wait(120)
                up = requests.request(self.command, f"http://{proxy.upstream}{self.path}", stream=True,
                                      allow_redirects=False, headers={"Accept": self.headers.get("Accept", "*/*")})
                self.send_response(up.status_code)
                for h in ("Content-Type", "Content-Length", "Docker-Content-Digest", "Location"):
                    if h in up.headers:
                        self.send_header(h, up.headers[h])
                self.end_headers()
                if self.command != "HEAD":
                    for chunk in up.iter_content(65536):
                        self.wfile.write(chunk)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _allowed(self, header, scope):
        if not header.startswith("Bearer "):
            return False
        with self.lock:
            t = self.tokens.get(header[7:])
        return t is not None and t[1] > time.monotonic() and (scope is None or t[0] == scope)

    def _token(self, h, query):
        import base64
        if self.basic:
            want = "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if h.headers.get("Authorization") != want:
                h.send_response(401)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
        scope = query.get("scope", [""])[0]
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = (scope, time.monotonic() + self.expires_in)
            self.issued.append(scope)
        body = json.dumps({"token": token, "expires_in": self.expires_in}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def revoke(self):
        with self.lock:
            self.tokens.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- hand-made layouts ---------------------------------------------------------------------------------------------

def _sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(entries):
    """A tar archive (bytes) of ENTRIES: (TarInfo fields dict, data bytes or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for fields, data in entries:
            info = tarfile.TarInfo(fields["name"])
            for k, v in fields.items():
                if k != "name":
                    setattr(info, k, v)
            if data is not None:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return buf.getvalue()


def hostile_layout(workdir, name, layers, lie=None):
    """An OCI layout WORKDIR/NAME holding one image (tag `t`) of LAYERS (tar bytes each, gzipped here).  LIE:
    "layer-digest" (a descriptor whose digest is not its blob's) or "diff-id" (a config diff_id that is wrong)."""
    root = Path(workdir) / name
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data, digest=None):
        digest = digest or _sha(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    descs, diff_ids = [], []
    for tar in layers:
        gz = gzip.compress(tar, mtime=0)
        digest = _sha(gz)
        if lie == "layer-digest":
            digest = _sha(b"something else")
        put(gz, digest)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": len(gz)})
        diff_ids.append(_sha(tar) if lie != "diff-id" else _sha(tar + b"x"))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cdigest = put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest,
                                      "size": len(config)},
                           "layers": descs}).encode()
    mdigest = put(manifest)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "t"}}]}))
    return f"oci-layout://{root}:t"
