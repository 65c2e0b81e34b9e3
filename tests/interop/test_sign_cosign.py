"""Real cosign accepts what airgap signs: legacy `.sig` signatures (cosign v2.4.1), sigstore bundles
(cosign v3.1.3) and `.att` attestations, and signatures from both tools accumulate side by side.

cosign runs with HOME in a temporary directory, ``--insecure-ignore-tlog`` / ``--tlog-upload=false`` and
no trust-root lookups, so it never needs the network (there is none: it would fail, not hang).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import require_tool
from support.images import Image, Pusher, push_image
from support.registries import Registry
from support.signing import KeyPair, write_keypair

from airgap.checks import cosign
from airgap.oci.registry import RegistryClient
from airgap.signing.attest import attest_image
from airgap.signing.sign import sign_image

pytestmark = pytest.mark.peer("cosign")


@pytest.fixture(scope="module")
def reg(module_registry_factory: Callable[..., Registry]) -> Registry:
    return module_registry_factory()


@pytest.fixture(scope="module")
def refreg(module_registry_factory: Callable[..., Registry]) -> Registry:
    return module_registry_factory(kind="referrers")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_keypair(tmp_path_factory.mktemp("airgap-key"), "airgap")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cosign-home")


_n = iter(range(10_000))


def push(reg: Registry, platforms: tuple[str, ...] = ("linux/amd64",)) -> Image:
    return push_image(Pusher(reg.url), f"interop/img{next(_n)}", "1.0", platforms=platforms)


def run_cosign(tool: str, home: Path, *args: str, env: dict[str, str] | None = None,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = require_tool(tool)
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "COSIGN_YES": "true",
                "TUF_ROOT": str(home / "tuf"), **(env or {})}
    proc = subprocess.run([binary, *args], env=full_env, capture_output=True, text=True, timeout=120,  # noqa: S603
                          check=False)
    if check:
        assert proc.returncode == 0, f"{tool} {' '.join(args)}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def verify(home: Path, pub: Path, ref: str, *extra: str, tool: str = "cosign",
           env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_cosign(tool, home, "verify", "--key", str(pub), "--insecure-ignore-tlog",
                      "--allow-insecure-registry", *extra, ref, env=env, check=check)


def test_cosign_verifies_single_and_multi_arch(reg: Registry, key: KeyPair, home: Path) -> None:
    single = push(reg)
    multi = push(reg, platforms=("linux/amd64", "linux/arm64"))
    client = RegistryClient()
    sign_image(f"{reg.host}/{single.repo}:1.0", key.signer, client=client, annotations={"env": "prod"})
    sign_image(f"{reg.host}/{multi.repo}:1.0", key.signer, client=client, recursive=True)
    out = verify(home, key.public_path, f"{reg.host}/{single.repo}:1.0", "-a", "env=prod").stdout
    assert json.loads(out)[0]["critical"]["image"]["docker-manifest-digest"] == single.digest
    verify(home, key.public_path, f"{reg.host}/{multi.repo}:1.0")
    child = next(iter(multi.children.values()))
    verify(home, key.public_path, f"{reg.host}/{multi.repo}@{child}")
    # An unsigned image and a wrong key are refused: the checks above can fail.
    assert verify(home, key.public_path, f"{reg.host}/{push(reg).repo}:1.0", check=False).returncode != 0
    other = write_keypair(home / "other", "other")
    assert verify(home, other.public_path, f"{reg.host}/{single.repo}:1.0", check=False).returncode != 0


def test_cosign_repository(reg: Registry, key: KeyPair, home: Path) -> None:
    img = push(reg, platforms=("linux/amd64", "linux/arm64"))
    sigrepo = f"{reg.host}/interop/signatures{next(_n)}"
    sign_image(f"{reg.host}/{img.repo}:1.0", key.signer, client=RegistryClient(), recursive=True,
               signature_repo=sigrepo)
    env = {"COSIGN_REPOSITORY": sigrepo}
    verify(home, key.public_path, f"{reg.host}/{img.repo}:1.0", env=env)
    verify(home, key.public_path, f"{reg.host}/{img.repo}@{next(iter(img.children.values()))}", env=env)
    assert verify(home, key.public_path, f"{reg.host}/{img.repo}:1.0", check=False).returncode != 0


@pytest.mark.parametrize("kind", ["referrers", "fallback-tag"])
def test_cosign3_verifies_bundles(kind: str, reg: Registry, refreg: Registry, key: KeyPair, home: Path) -> None:
    target = refreg if kind == "referrers" else reg
    img = push(target)
    sign_image(f"{target.host}/{img.repo}:1.0", key.signer, client=RegistryClient(), fmt="bundle")
    if kind == "fallback-tag":
        assert img.digest.replace(":", "-") in Pusher(target.url).tags(img.repo)
    verify(home, key.public_path, f"{target.host}/{img.repo}@{img.digest}", tool="cosign3")
    other = write_keypair(home / f"other-{kind}", "other")
    proc = verify(home, other.public_path, f"{target.host}/{img.repo}@{img.digest}", tool="cosign3", check=False)
    assert proc.returncode != 0


def test_cosign_verifies_attestations(reg: Registry, key: KeyPair, home: Path) -> None:
    img = push(reg)
    ref = f"{reg.host}/{img.repo}:1.0"
    client = RegistryClient()
    attest_image(ref, key.signer, client=client, predicate=b"free text\n", predicate_type="custom")
    attest_image(ref, key.signer, client=client, predicate=b'{"scanner": {"uri": "x"}}',
                 predicate_type="https://example.com/scan/v1")
    for ptype in ("custom", "https://example.com/scan/v1"):
        out = run_cosign("cosign", home, "verify-attestation", "--key", str(key.public_path),
                         "--insecure-ignore-tlog", "--allow-insecure-registry", "--type", ptype, ref).stdout
        statements = [json.loads(base64.b64decode(json.loads(line)["payload"]))
                      for line in out.splitlines() if line.strip()]
        assert any(s["predicateType"] == cosign.PREDICATE_TYPES.get(ptype, ptype) for s in statements)
    proc = run_cosign("cosign", home, "verify-attestation", "--key", str(key.public_path), "--insecure-ignore-tlog",
                      "--allow-insecure-registry", "--type", "spdxjson", ref, check=False)
    assert proc.returncode != 0


def test_signatures_from_cosign_and_airgap_accumulate(reg: Registry, key: KeyPair, home: Path) -> None:
    keydir = home / "cosign-key"
    keydir.mkdir(exist_ok=True)
    env = {"COSIGN_PASSWORD": "pw"}
    if not (keydir / "cosign.key").exists():
        subprocess.run([require_tool("cosign"), "generate-key-pair"], cwd=keydir, check=True, capture_output=True,  # noqa: S603
                       env={"HOME": str(home), "COSIGN_PASSWORD": "pw", "PATH": os.environ.get("PATH", "")},
                       timeout=60)
    cosign_pub = keydir / "cosign.pub"
    client = RegistryClient()
    # cosign first, airgap appends ...
    a = push(reg)
    run_cosign("cosign", home, "sign", "--key", str(keydir / "cosign.key"), "--tlog-upload=false",
               "--allow-insecure-registry", f"{reg.host}/{a.repo}@{a.digest}", env=env)
    entry = sign_image(f"{reg.host}/{a.repo}:1.0", key.signer, client=client).signed[0]
    assert not entry.duplicate
    # ... airgap first, cosign appends.
    b = push(reg)
    sign_image(f"{reg.host}/{b.repo}:1.0", key.signer, client=client)
    run_cosign("cosign", home, "sign", "--key", str(keydir / "cosign.key"), "--tlog-upload=false",
               "--allow-insecure-registry", f"{reg.host}/{b.repo}@{b.digest}", env=env)
    for img in (a, b):
        layers = json.loads(Pusher(reg.url).get_manifest(img.repo, cosign.signature_tag(img.digest))[0])["layers"]
        assert len(layers) == 2
        # Same payload bytes from both tools: one blob, two signatures.
        assert layers[0]["digest"] == layers[1]["digest"]
        for pub in (cosign_pub, key.public_path):
            verify(home, pub, f"{reg.host}/{img.repo}@{img.digest}")


def test_cli_signs_with_a_cosign_generated_key(reg: Registry, home: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from airgap.cli import cli

    subprocess.run([require_tool("cosign"), "generate-key-pair"], cwd=tmp_path, check=True, capture_output=True,  # noqa: S603
                   env={"HOME": str(home), "COSIGN_PASSWORD": "s3cret", "PATH": os.environ.get("PATH", "")},
                   timeout=60)
    img = push(reg, platforms=("linux/amd64", "linux/arm64"))
    result = CliRunner().invoke(cli, ["sign", "--key", str(tmp_path / "cosign.key"), "--recursive", "--json",
                                      f"{reg.host}/{img.repo}:1.0"], env={"COSIGN_PASSWORD": "s3cret"})
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["images"][0]["signed"]) == 3
    verify(home, tmp_path / "cosign.pub", f"{reg.host}/{img.repo}@{next(iter(img.children.values()))}")
    result = CliRunner().invoke(cli, ["sign", "--key", str(tmp_path / "cosign.key"), f"{reg.host}/{img.repo}:1.0"],
                                env={"COSIGN_PASSWORD": "wrong"})
    assert result.exit_code != 0 and result.stderr.startswith("error: ") and "password" in result.stderr


def test_cosign3_verifies_key_attestation_bundles(refreg: Registry, key: KeyPair, home: Path) -> None:
    img = push(refreg)
    ref = f"{refreg.host}/{img.repo}@{img.digest}"
    summary = attest_image(ref, key.signer, client=RegistryClient(), predicate=b'{"builder": {"id": "ci"}}',
                           predicate_type="slsaprovenance", fmt="bundle")
    assert summary.signed[0].written and "@sha256:" in summary.signed[0].written
    out = run_cosign("cosign3", home, "verify-attestation", "--key", str(key.public_path), "--insecure-ignore-tlog",
                     "--allow-insecure-registry", "--type", "slsaprovenance", ref).stdout
    statement = json.loads(base64.b64decode(json.loads(out.splitlines()[0])["payload"]))
    assert statement["predicateType"] == "https://slsa.dev/provenance/v0.2"
    assert statement["subject"][0]["digest"] == {"sha256": img.digest.split(":")[1]}
    other = run_cosign("cosign3", home, "verify-attestation", "--key", str(key.public_path), "--insecure-ignore-tlog",
                       "--allow-insecure-registry", "--type", "spdxjson", ref, check=False)
    assert other.returncode != 0
