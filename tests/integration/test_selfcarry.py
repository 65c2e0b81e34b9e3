"""airgap carries itself across the gap: its own image packed, loaded and run by the webhook's manifests, and the
single-file CLI (``pack --with-cli``) run on a clean Python with no network.

One module-scoped kit on a real registry: ``team/app:1.0`` and airgap's "own image" ``tools/airgap:0.1.0`` (two
platforms each, signed with every child; a stand-in for the image scripts/build-image.sh builds: what matters
here is where it goes and what records it), a spec naming the latter as ``airgap.image``, and a signed bundle
packed with ``--with-cli``. The CLI's wheels come from PyPI through ``pip download`` the first time and from
airgap's cache (~/.cache/airgap/cli-wheels) after that, so CI pays once.

The offline run: a fresh venv WITHOUT airgap or any dependency (from the system python3 when it is 3.11), started
with ``-I`` inside ``unshare -n`` (a network namespace with only its own loopback; when root), proxies pointing
nowhere, HOME empty; there a docker-registry is started on the namespace's loopback, and the pyz runs ``--help``,
``verify-bundle``, ``load`` and ``verify``. The registry's storage is then served outside the namespace and the
images checked there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from support.images import Pusher, push_image
from support.registries import Registry, find_tool, start_registry
from support.schemas import check
from support.signing import KeyPair, write_keypair

from airgap.cli import cli
from airgap.errors import Error
from airgap.oci.registry import RegistryClient
from airgap.refs.translate import zarf_forward
from airgap.signing.sign import sign_image

CI = os.environ.get("CI", "").lower() == "true"
PLATFORMS = ("linux/amd64", "linux/arm64")


def run(args: list[str], **kwargs: Any) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


def spec_text(host: str, airgap_tag: str = "0.1.0") -> str:
    return f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: site-kit, version: 1.0.0}}
created: 1700000000
images:
  - {host}/team/app:1.0
keys:
  - {{name: release, path: release.pub}}
policies:
  - name: release
    images: [{{glob: "{host}/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
noMatchPolicy: deny
airgap:
  image: {host}/tools/airgap:{airgap_tag}
"""


@dataclass
class Kit:
    src: Registry
    key: KeyPair
    tmp: Path
    spec: Path
    media: Path  # what goes on the removable media: kit.tar, kit.tar.airgap.pyz(.sha256, .sig)
    summary: dict[str, Any]
    digests: dict[str, str]  # repo -> image digest
    wheelhouse: Path  # airgap's cache of the CLI's wheels
    registries: list[Registry] = field(default_factory=list)

    @property
    def bundle(self) -> Path:
        return self.media / "kit.tar"

    @property
    def pyz(self) -> Path:
        return self.media / "kit.tar.airgap.pyz"

    def new_registry(self) -> Registry:
        reg = start_registry(self.tmp / f"reg{len(self.registries)}")
        self.registries.append(reg)
        return reg


def _wheelhouse() -> Path:
    """The CLI's wheels as pack resolves them (PyPI the first time, then airgap's cache)."""
    from airgap.bundle.cli_archive import Target, requirements, wheels

    try:
        with wheels(Target(), requirements()) as found:
            return found[0].parent
    except Error as exc:
        if CI:
            pytest.fail(f"the CLI's wheels: {exc}")
        pytest.skip(f"the CLI's wheels cannot be fetched here: {exc}")


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    if find_tool("docker-registry") is None:
        if CI:
            pytest.fail("docker-registry is not installed (run scripts/install-peers.sh)")
        pytest.skip("docker-registry is not installed (run scripts/install-peers.sh)")
    wheelhouse = _wheelhouse()
    tmp = tmp_path_factory.mktemp("selfcarry")
    src = start_registry(tmp / "src")
    key = write_keypair(tmp / "keys", "release")
    (tmp / "release.pub").write_bytes(key.public_pem)
    try:
        pusher, client, digests = Pusher(src.url), RegistryClient(), {}
        for repo, tag in (("team/app", "1.0"), ("tools/airgap", "0.1.0")):
            digests[repo] = push_image(pusher, repo, tag, platforms=PLATFORMS, layer_sizes=(2000, 30000)).digest
            sign_image(f"{src.host}/{repo}:{tag}", key.signer, client=client, recursive=True)
        spec = tmp / "kit.yaml"
        spec.write_text(spec_text(src.host))
        media = tmp / "media"
        media.mkdir()
        out = run(["pack", str(spec), "-o", str(media / "kit.tar"), "--key", str(key.private_path), "--with-cli",
                   "--json"])
        assert out.exit_code == 0, out.output
        yield Kit(src, key, tmp, spec, media, json.loads(out.stdout), digests, wheelhouse, [src])
    finally:
        src.stop()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pack_marks_airgaps_image_and_writes_the_cli_beside_the_bundle(kit: Kit) -> None:
    s = kit.summary
    check("pack", s)
    assert s["airgap_image"] == f"{kit.src.host}/tools/airgap:0.1.0"
    assert sorted(i["ref"] for i in s["images"]) == [f"{kit.src.host}/team/app:1.0", s["airgap_image"]]
    assert {i["ref"]: len(i["platforms"]) for i in s["images"]}[s["airgap_image"]] == 2  # every platform
    pyz = kit.pyz
    assert s["cli"]["path"] == str(pyz) and s["cli"]["digest"] == f"sha256:{sha256(pyz)}"
    assert s["cli"]["files"] == [str(pyz), f"{pyz}.sha256", f"{pyz}.sig"]
    assert (s["cli"]["python"], s["cli"]["platform"]) == ("3.11", "manylinux_2_28_x86_64")
    assert 10 * 2**20 < pyz.stat().st_size < 40 * 2**20, pyz.stat().st_size
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n") and os.access(pyz, os.X_OK)
    # The signed bundle manifest says which image is airgap's, and pins the CLI.
    out = run(["inspect", str(kit.bundle), "--key", str(kit.key.public_path), "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    check("inspect", info)
    assert info["airgap"] == {"image": s["airgap_image"], "cli": {
        "name": "kit.tar.airgap.pyz", "digest": s["cli"]["digest"], "size": pyz.stat().st_size, "version": "0.1.0",
        "python": "3.11", "platform": "manylinux_2_28_x86_64"}}
    text = run(["inspect", str(kit.bundle)]).stdout
    assert f"airgap   image {s['airgap_image']}" in text and "airgap   CLI kit.tar.airgap.pyz sha256:" in text
    # Any machine checks it with sha256sum; the signature with openssl (no airgap needed) or cosign.
    done = subprocess.run(["sha256sum", "-c", "kit.tar.airgap.pyz.sha256"], cwd=kit.media, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0 and "kit.tar.airgap.pyz: OK" in done.stdout, done.stderr
    openssl = shutil.which("openssl")
    if openssl:
        der = kit.tmp / "pyz.sig.der"
        import base64

        der.write_bytes(base64.b64decode(Path(f"{pyz}.sig").read_bytes()))
        done = subprocess.run([openssl, "dgst", "-sha256", "-verify", str(kit.key.public_path), "-signature",
                               str(der), str(pyz)], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "Verified OK" in done.stdout, done.stdout + done.stderr


@pytest.mark.peer("cosign")
def test_cosign_verify_blob_checks_the_cli_signature(kit: Kit, tmp_path: Path) -> None:
    from conftest import require_tool

    cosign = require_tool("cosign")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TUF_ROOT": str(tmp_path / "tuf")}
    argv = [cosign, "verify-blob", "--key", str(kit.key.public_path), "--insecure-ignore-tlog", "--signature",
            f"{kit.pyz}.sig"]
    done = subprocess.run([*argv, str(kit.pyz)], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    other = tmp_path / "other.pyz"
    other.write_bytes(kit.pyz.read_bytes() + b"\0")
    done = subprocess.run([*argv, str(other)], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode != 0


def test_the_same_inputs_give_the_same_bundle_and_cli_from_a_wheelhouse(kit: Kit, tmp_path: Path) -> None:
    """--cli-wheels resolves offline from the directory given (here airgap's own cache): the same wheels, the same
    code and time give the same pyz, hence the same manifest, bundle and signatures."""
    out = run(["pack", str(kit.spec), "-o", str(tmp_path / "kit.tar"), "--key", str(kit.key.private_path),
               "--with-cli", "--cli-wheels", str(kit.wheelhouse), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["bundle_digest"] == kit.summary["bundle_digest"]
    for name in ("kit.tar", "kit.tar.airgap.pyz", "kit.tar.airgap.pyz.sha256", "kit.tar.airgap.pyz.sig"):
        assert sha256(tmp_path / name) == sha256(kit.media / name), name
    # Without the CLI the bundle pins no CLI: another bundle; unsigned, the stale .sig goes.
    out = run(["pack", str(kit.spec), "-o", str(tmp_path / "kit.tar"), "--with-cli", "--cli-wheels",
               str(kit.wheelhouse), "--json"])
    assert out.exit_code == 0, out.output
    assert not (tmp_path / "kit.tar.airgap.pyz.sig").exists() and sha256(tmp_path / "kit.tar.airgap.pyz") == \
        sha256(kit.pyz)
    plain = json.loads(run(["pack", str(kit.spec), "-o", str(tmp_path / "plain.tar"), "--json"]).stdout)
    assert plain["cli"] is None and plain["bundle_digest"] != kit.summary["bundle_digest"]


def test_split_media_carry_the_cli_beside_the_parts(kit: Kit, tmp_path: Path) -> None:
    out = run(["pack", str(kit.spec), "-o", str(tmp_path / "kit.tar"), "--key", str(kit.key.private_path),
               "--split-size", "64K", "--with-cli", "--cli-wheels", str(kit.wheelhouse)])
    assert out.exit_code == 0, out.output
    assert sha256(tmp_path / "kit.tar.airgap.pyz") == sha256(kit.pyz)
    assert b"".join(p.read_bytes() for p in sorted(tmp_path.glob("kit.tar.part-*"))) == kit.bundle.read_bytes()
    out = run(["verify-bundle", str(tmp_path), "--key", str(kit.key.public_path)])
    assert out.exit_code == 0, out.output
    assert f"airgap CLI {tmp_path / 'kit.tar.airgap.pyz'}: sha256 matches the bundle manifest" in out.stdout


def test_the_policy_applies_to_airgaps_image_and_a_failed_pack_leaves_nothing(kit: Kit, tmp_path: Path) -> None:
    push_image(Pusher(kit.src.url), "tools/airgap", "0.2.0-unsigned", platforms=PLATFORMS)
    spec = tmp_path / "kit.yaml"
    spec.write_text(spec_text(kit.src.host, "0.2.0-unsigned"))
    (tmp_path / "release.pub").write_bytes(kit.key.public_pem)
    out = run(["pack", str(spec), "-o", str(tmp_path / "kit.tar"), "--with-cli", "--cli-wheels",
               str(kit.wheelhouse)])
    assert out.exit_code == 1
    assert "1 of 2 image(s) failed verification" in out.stderr and "tools/airgap:0.2.0-unsigned" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kit.yaml", "release.pub"]  # no bundle, no pyz, no temp


def test_pack_with_cli_refusals(kit: Kit, tmp_path: Path) -> None:
    base = ["pack", str(kit.spec)]
    out = run([*base, "-o", "-", "--with-cli"])
    assert out.exit_code == 2 and "--with-cli writes OUT.airgap.pyz beside the bundle" in out.stderr
    out = run([*base, "-o", str(tmp_path / "k.tar"), "--cli-platform", "manylinux_2_17_x86_64"])
    assert out.exit_code == 2 and "add --with-cli" in out.stderr
    out = run([*base, "-o", str(tmp_path / "k.tar"), "--with-cli", "--cli-platform", "win_amd64"])
    assert out.exit_code == 2 and "--cli-platform: expected manylinux_2_<glibc minor>_<arch>" in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run([*base, "-o", str(tmp_path / "k.tar"), "--with-cli", "--cli-wheels", str(empty)])
    assert out.exit_code == 1 and f"from the wheelhouse {empty}: " in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_verify_bundle_checks_the_cli_beside_the_bundle(kit: Kit, tmp_path: Path) -> None:
    out = run(["verify-bundle", str(kit.bundle), "--key", str(kit.key.public_path)])
    assert out.exit_code == 0, out.output
    assert f"airgap CLI {kit.pyz}: sha256 matches the bundle manifest" in out.stdout
    alone = tmp_path / "kit.tar"
    shutil.copy(kit.bundle, alone)
    out = run(["verify-bundle", str(alone), "--key", str(kit.key.public_path), "--json"])
    assert out.exit_code == 0, out.output
    check("verify-bundle", json.loads(out.stdout))
    assert json.loads(out.stdout)["cli"]["status"] == "missing"
    (tmp_path / "kit.tar.airgap.pyz").write_bytes(kit.pyz.read_bytes()[:-1] + b"\1")
    out = run(["verify-bundle", str(alone), "--key", str(kit.key.public_path)])
    assert out.exit_code == 1 and "is not the sha256:" in out.stderr and "the bundle manifest pins" in out.stderr


def test_load_records_airgaps_image_and_the_webhook_runs_it(kit: Kit, tmp_path: Path) -> None:
    dst = kit.new_registry()
    trust, site, certs = tmp_path / "trust", tmp_path / "site", tmp_path / "certs"
    out = run(["load", str(kit.bundle), "--registry", dst.host, "--key", str(kit.key.public_path),
               "--trust-out", str(trust), "--site", str(site), "--json"])
    assert out.exit_code == 0, out.output
    pinned = f"{dst.host}/tools/airgap@{kit.digests['tools/airgap']}"
    assert json.loads(out.stdout)["airgap_image"] == pinned
    head = RegistryClient().head_manifest(dst.host, "tools/airgap", kit.digests["tools/airgap"])
    assert head is not None and head.digest == kit.digests["tools/airgap"]
    record = json.loads((trust / "airgap-image.json").read_text())
    assert (record["image"], record["upstream"]) == (pinned, kit.summary["airgap_image"])
    state = json.loads((site / "site.json").read_text())
    assert state["bundles"][0]["airgapImage"] == pinned
    assert "airgap-image.json" in state["bundles"][0]["files"]  # in the bundle's trust directory, pinned
    assert f"airgap  {pinned}" in run(["site", "show", "site-kit", "--site", str(site)]).stdout
    text = run(["load", str(kit.bundle), "--registry", dst.host, "--key", str(kit.key.public_path)]).stdout
    assert f"airgap image: {pinned}" in text and "already loaded" in text
    # The loaded image verifies offline like any other, against the bundle's policy.
    out = run(["verify", "--trust", str(trust), pinned])
    assert out.exit_code == 0 and out.stdout.startswith("OK  "), out.output

    assert run(["webhook", "certs", "--service", "airgap-webhook", "--namespace", "airgap-system", "-o",
                str(certs)]).exit_code == 0

    def image(*args: str) -> str:
        out = run(["webhook", "manifests", "--certs", str(certs), *args])
        assert out.exit_code == 0, out.output
        deployment = next(d for d in yaml.safe_load_all(out.stdout) if d["kind"] == "Deployment")
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    assert image("--trust", str(trust)) == pinned
    # (manifests ships a site only with a site-wide policy.yaml; an empty one adds nothing)
    (site / "policy.yaml").write_text("apiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\nmetadata: {name: site}\n"
                                      "spec: {}\n")
    assert image("--trust", str(site)) == pinned
    assert image("--trust", str(trust), "--image", "other/airgap:1") == "other/airgap:1"
    bare = tmp_path / "bare"
    out = run(["trust", "export", str(kit.bundle), "-o", str(bare), "--key", str(kit.key.public_path)])
    assert out.exit_code == 0, out.output
    out = run(["webhook", "manifests", "--certs", str(certs), "--trust", str(bare)])
    assert out.exit_code == 2 and "no --image given" in out.stderr and "records no airgap image" in out.stderr


# ---- the CLI on a disconnected host ------------------------------------------------------------------------

DRIVER = r'''
"""Runs inside the namespace, on the clean Python: a registry on loopback, then the pyz, every run timed."""
import json, os, socket, subprocess, sys, time, urllib.request

cfg = json.load(open(sys.argv[1]))
out = {"runs": {}}
if cfg["netns"]:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
try:  # no network: a public address cannot be reached
    socket.create_connection(("1.1.1.1", 443), timeout=3).close()
    out["network"] = "reachable"
except OSError as exc:
    out["network"] = f"unreachable: {exc}"
log = open(cfg["registry_log"], "wb")
registry = subprocess.Popen([cfg["registry"], "serve", cfg["registry_config"]], stdout=log, stderr=log,
                            env={"PATH": "/usr/bin:/bin", "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"})
try:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(400):
        try:
            opener.open(f"http://{cfg['host']}/v2/", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    for name, argv in cfg["runs"]:
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, "-I", cfg["pyz"], *argv], env=cfg["env"], capture_output=True,
                           text=True, timeout=600)
        out["runs"][name] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                             "seconds": round(time.monotonic() - t0, 2)}
finally:
    registry.terminate()
    registry.wait(timeout=30)
json.dump(out, open(cfg["out"], "w"))
'''


def _clean_python(tmp: Path) -> Path:
    """A fresh venv without pip, airgap or any dependency: the system python3 when it is 3.11."""
    base = Path("/usr/bin/python3")
    probe = subprocess.run([str(base), "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                           capture_output=True, text=True, check=False) if base.exists() else None
    if probe is None or probe.stdout.strip() != "True":
        base = Path(getattr(sys, "_base_executable", sys.executable))
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(tmp / "venv")], check=True, capture_output=True)
    python = tmp / "venv" / "bin" / "python"
    for module in ("airgap", "click", "cryptography", "yaml"):
        done = subprocess.run([str(python), "-I", "-c", f"import {module}"], capture_output=True, check=False)
        assert done.returncode != 0, f"the clean Python imports {module}"
    return python


def _netns() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False).returncode == 0


def test_the_cli_runs_on_a_clean_python_with_no_network(kit: Kit, tmp_path: Path) -> None:
    python = _clean_python(tmp_path)
    netns = _netns()
    if not netns and CI:
        pytest.fail("CI=true: `unshare -n` (root, util-linux, iproute2) is needed to take the network away")
    port = 5000
    host = f"127.0.0.1:{port}"
    root = tmp_path / "site-registry"
    root.mkdir()
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage:\n"
                      f"  filesystem: {{rootdirectory: {root / 'data'}}}\n  delete: {{enabled: true}}\n"
                      f"http: {{addr: '{host}'}}\n")
    home = tmp_path / "home"
    home.mkdir()
    app = zarf_forward(f"{kit.src.host}/team/app:1.0", host)
    own = f"{host}/tools/airgap@{kit.digests['tools/airgap']}"
    trust = tmp_path / "trust"
    nowhere = "http://127.0.0.1:9"
    cfg = {
        "netns": netns, "registry": find_tool("docker-registry"), "registry_config": str(config), "host": host,
        "registry_log": str(root / "registry.log"), "pyz": str(kit.pyz), "out": str(tmp_path / "out.json"),
        "env": {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HTTP_PROXY": nowhere,
                "HTTPS_PROXY": nowhere, "http_proxy": nowhere, "https_proxy": nowhere, "PIP_NO_INDEX": "1"},
        "runs": [
            ["help", ["--help"]],
            ["help-again", ["--help"]],
            ["verify-bundle", ["verify-bundle", str(kit.bundle), "--key", str(kit.key.public_path)]],
            ["load", ["load", str(kit.bundle), "--registry", host, "--key", str(kit.key.public_path),
                      "--trust-out", str(trust), "--json"]],
            ["verify", ["verify", "--trust", str(trust), str(app), own]],
        ],
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "driver.py").write_text(DRIVER)
    argv = [str(python), "-I", str(tmp_path / "driver.py"), str(tmp_path / "cfg.json")]
    t0 = time.monotonic()
    done = subprocess.run(["unshare", "-n", *argv] if netns else argv, capture_output=True, text=True, timeout=900,
                          env=cfg["env"], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "out.json").read_text())
    runs = result["runs"]
    print(f"\nclean-python runs ({'netns' if netns else 'proxies only'}, {time.monotonic() - t0:.1f} s in all): "
          + ", ".join(f"{n} {r['seconds']} s" for n, r in runs.items()))
    if netns:
        assert result["network"].startswith("unreachable"), result["network"]
    for name, r in runs.items():
        assert r["rc"] == 0, f"{name}: {r['stdout'][-2000:]}{r['stderr'][-3000:]}"
    assert "Usage: airgap" in runs["help"]["stdout"] and "verify-bundle" in runs["help"]["stdout"]
    extracted = home / ".cache" / "airgap" / "pyz" / sha256(kit.pyz)
    assert (extracted / "site" / "airgap" / "cli.py").is_file()  # once, under the file's own digest
    assert [p.name for p in extracted.parent.iterdir()] == [sha256(kit.pyz)]
    assert "every entry verified" in runs["verify-bundle"]["stdout"]
    assert "sha256 matches the bundle manifest" in runs["verify-bundle"]["stdout"]
    assert runs["verify-bundle"]["stdout"].count("OK  ") == 2
    loaded = json.loads(runs["load"]["stdout"])
    assert loaded["airgap_image"] == own and loaded["blobs_pushed"] > 0
    assert (trust / "airgap-image.json").is_file()
    assert runs["verify"]["stdout"].count("OK  ") == 2
    # What the disconnected load pushed is really in that registry's storage.
    served = start_registry(root)
    try:
        client = RegistryClient()
        for repo, ref in (("team/app", app.tag or ""), ("tools/airgap", kit.digests["tools/airgap"])):
            head = client.head_manifest(served.host, repo, ref)
            assert head is not None and head.digest == kit.digests[repo]
    finally:
        served.stop()
