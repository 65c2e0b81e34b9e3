"""Bundles and peers: real cosign verifies the refs `airgap load` translated (zarf mode), and skopeo reads
the bundle itself as an OCI archive (`oci-archive:BUNDLE:<upstream ref>`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_tool
from support.signing import KeyPair, write_keypair

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.refs.translate import zarf_forward
from airgap.signing.sign import sign_image


def _bundle(registry: Any, make_image: Any, tmp_path: Path) -> tuple[Any, KeyPair, Path]:
    image = make_image(registry, "team/app", "1.0", platforms=("linux/amd64", "linux/arm64"))
    key = write_keypair(tmp_path / "keys", "release")
    sign_image(f"{registry.host}/team/app:1.0", key.signer, client=RegistryClient(), recursive=True)
    (tmp_path / "release.pub").write_bytes(key.public_pem)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: interop, version: "1"}}
images: ["{registry.host}/team/app:1.0"]
keys: [{{name: release, path: release.pub}}]
policies:
  - name: team
    images: [{{glob: "{registry.host}/team/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
""")
    bundle = tmp_path / "b.tar"
    out = CliRunner().invoke(cli, ["pack", str(spec), "-o", str(bundle), "--key", str(key.private_path)],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    return image, key, bundle


def test_cosign_verifies_translated_refs(registry: Any, registry2: Any, make_image: Any,
                                         tmp_path: Path) -> None:
    cosign = require_tool("cosign")
    image, key, bundle = _bundle(registry, make_image, tmp_path)
    out = CliRunner().invoke(cli, ["load", str(bundle), "--registry", registry2.host, "--key", str(key.public_path)],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    crc = zarf_forward(f"{registry.host}/team/app:1.0", registry2.host)
    child = image.children["linux/arm64"]
    for ref in (str(crc), f"{registry2.host}/team/app:1.0", f"{registry2.host}/team/app@{child}"):
        done = subprocess.run([cosign, "verify", "--key", str(key.public_path), "--insecure-ignore-tlog",
                               "--allow-insecure-registry", ref], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert image.digest in done.stdout or image.children["linux/arm64"] in done.stdout


def test_skopeo_reads_the_bundle_as_an_oci_archive(registry: Any, make_image: Any,
                                                   tmp_path: Path) -> None:
    skopeo = require_tool("skopeo")
    image, _key, bundle = _bundle(registry, make_image, tmp_path)
    done = subprocess.run([skopeo, "inspect", "--raw", f"oci-archive:{bundle}:{registry.host}/team/app:1.0"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["manifests"][0]["digest"] in image.children.values()
    done = subprocess.run([skopeo, "inspect", f"oci-archive:{bundle}:{registry.host}/team/app:1.0"],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["Digest"] in (image.digest, *image.children.values())


@pytest.mark.parametrize("tool", ["cosign", "cosign3"])
def test_cosign_checks_the_parts_manifest_and_inventory_signatures(registry: Any, registry2: Any, make_image: Any,
                                                                    tmp_path: Path, tool: str) -> None:
    """The detached signatures of split media and site inventories are cosign sign-blob's: `cosign verify-blob
    --key` checks them, and refuses them over other bytes."""
    cosign = require_tool(tool)
    _image, key, bundle = _bundle(registry, make_image, tmp_path)
    spec = tmp_path / "spec.yaml"
    parts = tmp_path / "parts"
    parts.mkdir()
    out = CliRunner().invoke(cli, ["pack", str(spec), "-o", str(parts / "b.tar"), "--key", str(key.private_path),
                                   "--split-size", "4K"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert b"".join(p.read_bytes() for p in sorted(parts.glob("b.tar.part-*"))) == bundle.read_bytes()
    out = CliRunner().invoke(cli, ["load", str(parts), "--registry", registry2.host, "--key",
                                   str(key.public_path)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(cli, ["site", "inventory", "--registry", registry2.host, "-o",
                                   str(tmp_path / "inventory.json"), "--key", str(key.private_path)],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TUF_ROOT": str(tmp_path / "tuf")}
    for signed in (parts / "b.tar.parts.json", tmp_path / "inventory.json"):
        argv = [cosign, "verify-blob", "--key", str(key.public_path), "--insecure-ignore-tlog", "--signature",
                f"{signed}.sig"]
        done = subprocess.run([*argv, str(signed)], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        other = tmp_path / "other.json"
        other.write_bytes(signed.read_bytes() + b" ")
        done = subprocess.run([*argv, str(other)], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode != 0
