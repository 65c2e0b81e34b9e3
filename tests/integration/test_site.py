"""A disconnected site over time (issue 15): three bundles from three signers in one site, an upgrade, a removal;
each image judged by its own bundle's keys and policy, by the CLI, the Python API and the webhook alike; the state
mirrored into the registry signed and rebuilt only when the signature checks; two loads at once; a load killed
mid-way; a state changed behind the site's back refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.images import OCI_MANIFEST, Image, Pusher, push_image
from support.registries import Registry

from airgap import Trust, verify_image
from airgap.admission.service import AdmissionService, WebhookConfig
from airgap.checks import cosign
from airgap.cli import cli
from airgap.errors import ConfigError
from airgap.keys.private import KeySigner
from airgap.keys.public import key_id, public_pem
from airgap.oci.manifest import Manifest
from airgap.oci.registry import RegistryClient
from airgap.refs.translate import zarf_forward
from airgap.signing.attach import push_bytes, signature_manifest
from airgap.signing.sign import sign_image

KEYS = {name: KeySigner(ec.generate_private_key(ec.SECP256R1())) for name in ("a", "b", "c", "site")}


def run(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def keyfiles(tmp: Path, name: str) -> tuple[Path, Path]:
    signer = KEYS[name]
    key, pub = tmp / f"{name}.key", tmp / f"{name}.pub"
    if not key.exists():
        key.write_bytes(signer._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        pub.write_bytes(public_pem(signer.public_key))
    return key, pub


def publish(src: Registry, repo: str, tag: str, signer: str, seed: str) -> Image:
    image = push_image(Pusher(src.url), repo, tag, seed=seed)
    sign_image(f"{src.host}/{repo}@{image.digest}", KEYS[signer], client=RegistryClient())
    return image


def pack(tmp: Path, name: str, version: str, signer: str, images: list[str]) -> Path:
    """A bundle signed by ``signer`` whose policy (glob ``**``: every image, scoped to this bundle) wants
    ``signer``'s key on every image it ships."""
    key, pub = keyfiles(tmp, signer)
    spec = tmp / f"{name}-{version}.yaml"
    spec.write_text(f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: {name}, version: "{version}"}}
created: 1700000000
images: [{", ".join(images)}]
keys: [{{name: vendor, path: {pub.name}}}]
policies:
  - name: vendor-signed
    images: [{{glob: "**"}}]
    authorities: [{{key: {{name: vendor}}, ctlog: {{disabled: true}}}}]
noMatchPolicy: deny
""")
    out = tmp / f"{name}-{version}.tar"
    result = run(["pack", str(spec), "-o", str(out), "--key", str(key)])
    assert result.exit_code == 0, result.output
    return out


def local(src: Registry, dst: Registry, ref: str) -> str:
    return str(zarf_forward(f"{src.host}/{ref}", dst.host))


def verdicts(site: Path, refs: dict[str, str]) -> dict[str, bool]:
    trust = Trust.load(site)
    return {name: bool(verify_image(ref, trust)) for name, ref in refs.items()}


def review(image: str) -> bytes:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": image}]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
        "namespace": "default", "name": "p", "object": pod}}).encode()


def webhook_allows(site: Path, image: str) -> bool:
    service = AdmissionService(WebhookConfig(trust_dir=str(site), mode="enforce"))
    try:
        _, _, body = service.handle("POST", "/validate", review(image))
        return bool(json.loads(body)["response"]["allowed"])
    finally:
        service.close()


def test_three_signers_upgrade_and_removal(registry_factory: Any, tmp_path: Path) -> None:
    src, dst = registry_factory(), registry_factory()
    site = tmp_path / "site"
    publish(src, "a/app", "1", "a", "a1")
    publish(src, "b/app", "1", "b", "b1")
    publish(src, "c/app", "1", "c", "c1")
    bundles = {n: pack(tmp_path, f"vendor-{n}", "1", n, [f"{src.host}/{n}/app:1"]) for n in "abc"}
    for n, path in bundles.items():
        out = run(["load", str(path), "--registry", dst.host, "--key", str(keyfiles(tmp_path, n)[1]),
                   "--site", str(site)])
        assert out.exit_code == 0, out.output
    refs = {n: local(src, dst, f"{n}/app:1") for n in "abc"}
    assert verdicts(site, refs) == {"a": True, "b": True, "c": True}
    listed = json.loads(run(["site", "list", "--site", str(site), "--json"]).stdout)
    assert [b["name"] for b in listed["bundles"]] == ["vendor-a", "vendor-b", "vendor-c"]
    assert {b["signer"] for b in listed["bundles"]} == {key_id(KEYS[n].public_key) for n in "abc"}

    # each bundle's key counts only for its own images: vendor a's key on vendor b's image is not enough
    client = RegistryClient()
    b_digest = client.head_manifest(dst.host, "b/app", "1").digest  # type: ignore[union-attr]
    sig_tag = cosign.signature_tag(b_digest)
    sign_image(f"{dst.host}/b/app@{b_digest}", KEYS["a"], client=client)
    sig = client.get_manifest(dst.host, "b/app", sig_tag)
    kept, config = signature_manifest(list(sig.blobs[2:]))  # only vendor a's layer
    push_bytes(client, dst.host, "b/app", "application/vnd.oci.image.config.v1+json", config)
    client.put_manifest(dst.host, "b/app", sig_tag, Manifest.from_bytes(kept, OCI_MANIFEST))
    result = verify_image(refs["b"], Trust.load(site))
    assert not result and any(r.startswith("bundle vendor-b: policy vendor-signed") for r in result.reasons)
    assert not webhook_allows(site, refs["b"])
    assert webhook_allows(site, refs["a"])

    # an image no bundle loaded is not admitted, whoever signed it
    stray = push_image(Pusher(dst.url), "stray/app", "1", seed="stray")
    sign_image(f"{dst.host}/stray/app@{stray.digest}", KEYS["a"], client=client)
    result = verify_image(f"{dst.host}/stray/app:1", Trust.load(site))
    assert not result and "not loaded by any bundle" in result.reasons[0]

    # upgrade vendor-a: v2 ships a/app:2 instead of a/app:1; the old tag is retired
    publish(src, "a/app", "2", "a", "a2")
    v2 = pack(tmp_path, "vendor-a", "2", "a", [f"{src.host}/a/app:2"])
    out = run(["load", str(v2), "--registry", dst.host, "--key", str(keyfiles(tmp_path, "a")[1]), "--site", str(site)])
    assert out.exit_code == 0, out.output
    refs["a2"] = local(src, dst, "a/app:2")
    state = json.loads((site / "site.json").read_text())
    assert [(b["name"], b["version"]) for b in state["bundles"]] == [("vendor-b", "1"), ("vendor-c", "1"),
                                                                     ("vendor-a", "2")]
    assert len(list((site / "bundles").iterdir())) == 3  # v1's trust is gone
    got = verdicts(site, refs)
    assert got == {"a": False, "b": False, "c": True, "a2": True}, got
    assert client.head_manifest(dst.host, "a/app", "1") is None  # retired from the registry

    # remove vendor-c: its tags go, nothing else changes
    out = run(["site", "remove", "vendor-c", "--site", str(site), "--json"])
    assert out.exit_code == 0, out.output
    removed = json.loads(out.stdout)
    assert removed["deleted"] and removed["map_deleted"]
    assert verdicts(site, refs) == {"a": False, "b": False, "c": False, "a2": True}
    assert client.head_manifest(dst.host, "c/app", "1") is None
    assert webhook_allows(site, refs["a2"]) and not webhook_allows(site, refs["c"])
    assert "vendor-c" not in run(["site", "list", "--site", str(site)]).stdout


def test_state_mirrored_signed_and_never_trusted_unsigned(registry_factory: Any, tmp_path: Path) -> None:
    src, dst = registry_factory(), registry_factory()
    site = tmp_path / "site"
    publish(src, "a/app", "1", "a", "m1")
    bundle = pack(tmp_path, "vendor-a", "1", "a", [f"{src.host}/a/app:1"])
    site_key, site_pub = keyfiles(tmp_path, "site")
    out = run(["load", str(bundle), "--registry", dst.host, "--key", str(keyfiles(tmp_path, "a")[1]),
               "--site", str(site), "--site-key", str(site_key)])
    assert out.exit_code == 0, out.output
    rebuilt = tmp_path / "rebuilt"
    out = run(["site", "pull", "--registry", dst.host, "--key", str(site_pub), "-o", str(rebuilt)])
    assert out.exit_code == 0, out.output
    assert (rebuilt / "site.json").read_bytes() == (site / "site.json").read_bytes()
    assert verify_image(local(src, dst, "a/app:1"), Trust.load(rebuilt))
    # with another key: refused, nothing written
    _, other = keyfiles(tmp_path, "b")
    out = run(["site", "pull", "--registry", dst.host, "--key", str(other), "-o", str(tmp_path / "x")])
    assert out.exit_code != 0 and "not signed by the given key" in out.output and not (tmp_path / "x").exists()
    # the registry's artifact replaced by an unsigned one: refused
    client = RegistryClient()
    pushed = client.get_manifest(dst.host, "airgap/site", "state")
    doc = json.dumps({"schema": "airgap.dev/site-export/v1", "files": {}}).encode()
    layer = push_bytes(client, dst.host, "airgap/site", "application/vnd.airgap.site.v1+json", doc)
    forged = json.loads(pushed.data)
    forged["layers"] = [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}]
    client.put_manifest(dst.host, "airgap/site", "state", Manifest.from_bytes(json.dumps(forged).encode(),
                                                                              OCI_MANIFEST))
    out = run(["site", "pull", "--registry", dst.host, "--key", str(site_pub), "-o", str(tmp_path / "y")])
    assert out.exit_code != 0 and "never trusted" in out.output and not (tmp_path / "y").exists()


def test_a_state_changed_behind_the_sites_back_is_refused(registry_factory: Any, tmp_path: Path) -> None:
    src, dst = registry_factory(), registry_factory()
    site = tmp_path / "site"
    publish(src, "a/app", "1", "a", "t1")
    bundle = pack(tmp_path, "vendor-a", "1", "a", [f"{src.host}/a/app:1"])
    assert run(["load", str(bundle), "--registry", dst.host, "--key", str(keyfiles(tmp_path, "a")[1]),
                "--site", str(site)]).exit_code == 0
    trust_dir = next((site / "bundles").iterdir())
    policy = trust_dir / "policy.yaml"
    policy.write_text(policy.read_text().replace("noMatchPolicy: deny", "noMatchPolicy: allow"))
    with pytest.raises(ConfigError, match="changed outside airgap"):
        Trust.load(site)
    out = run(["verify", "--trust", str(site), local(src, dst, "a/app:1")])
    assert out.exit_code != 0 and "changed outside airgap" in out.output
    (site / "site.json").write_text("{not json")
    with pytest.raises(ConfigError, match="site.json"):
        Trust.load(site)


def _load_cmd(bundle: Path, dst: Registry, pub: Path, site: Path) -> list[str]:
    return [sys.executable, "-m", "airgap.cli", "load", str(bundle), "--registry", dst.host, "--key", str(pub),
            "--site", str(site)]


def test_two_loads_at_once_and_a_killed_load(registry_factory: Any, tmp_path: Path) -> None:
    src, dst = registry_factory(), registry_factory()
    site = tmp_path / "site"
    for n in "ab":
        image = push_image(Pusher(src.url), f"{n}/app", "1", seed=f"conc-{n}", layer_sizes=(4_000_000, 4_000_000))
        sign_image(f"{src.host}/{n}/app@{image.digest}", KEYS[n], client=RegistryClient())
    bundles = {n: pack(tmp_path, f"vendor-{n}", "1", n, [f"{src.host}/{n}/app:1"]) for n in "ab"}
    env = dict(os.environ)
    procs = [subprocess.Popen(_load_cmd(bundles[n], dst, keyfiles(tmp_path, n)[1], site), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in "ab"]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-500:]
    state = json.loads((site / "site.json").read_text())
    assert sorted(b["name"] for b in state["bundles"]) == ["vendor-a", "vendor-b"]
    before = (site / "site.json").read_bytes()

    # a third bundle's load killed while it pushes: the state is the previous one, and a re-run completes it
    image = push_image(Pusher(src.url), "c/app", "1", seed="kill", layer_sizes=(24_000_000,))
    sign_image(f"{src.host}/c/app@{image.digest}", KEYS["c"], client=RegistryClient())
    big = pack(tmp_path, "vendor-c", "1", "c", [f"{src.host}/c/app:1"])
    proc = subprocess.Popen(_load_cmd(big, dst, keyfiles(tmp_path, "c")[1], site), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30  # kill as soon as the load has started pushing into c/app
    while time.monotonic() < deadline and proc.poll() is None:
        if "c/app" in requests.get(f"{dst.url}/v2/_catalog", timeout=5).json().get("repositories", []):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert (site / "site.json").read_bytes() == before
    assert Trust.load(site)  # still a valid site
    out = subprocess.run(_load_cmd(big, dst, keyfiles(tmp_path, "c")[1], site), env=env, capture_output=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr.decode()[-500:]
    assert sorted(b["name"] for b in json.loads((site / "site.json").read_text())["bundles"]) == [
        "vendor-a", "vendor-b", "vendor-c"]
