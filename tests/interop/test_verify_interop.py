"""airgap verifies what others signed: real cosign v2/v3 (key-based, legacy and bundle, COSIGN_REPOSITORY) and
keyless signatures from the mini-Sigstore (legacy `.sig` with certificate + Rekor SET, and v0.3 bundles).

The negative cases use the same real signatures: a wrong key, a signature copied onto another digest, and a
wrong identity or issuer must all be refused.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_tool
from support.trustdirs import cip, write_trust

from airgap.cli import cli

PASSWORD = "interop-pass"


def run(args: list[str], **kwargs: Any) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


def cosign(tool: str, args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, HOME=str(home), COSIGN_PASSWORD=PASSWORD, COSIGN_YES="true", TUF_ROOT=str(home / "tuf"),
                **env)
    return subprocess.run([require_tool(tool), *args], capture_output=True, text=True, env=full, timeout=120,
                          cwd=home, check=False)


@pytest.fixture(scope="module")
def cosign_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A cosign key pair made by real cosign, another pair for the wrong-key cases, and cosign's HOME."""
    home = tmp_path_factory.mktemp("cosign-home")
    for prefix in ("release", "other"):
        out = cosign("cosign", ["generate-key-pair", "--output-key-prefix", prefix], home)
        assert out.returncode == 0, out.stderr
    return home / "release.key", home / "other.pub", home


def cosign_sign(tool: str, ref: str, key: Path, home: Path, *extra: str, **env: str) -> None:
    args = ["sign", "--key", str(key), "--tlog-upload=false", "--allow-http-registry", *extra, ref]
    if tool == "cosign3":
        args[1:1] = ["--use-signing-config=false"]
    out = cosign(tool, args, home, **env)
    assert out.returncode == 0, out.stderr


def test_cosign_v2_legacy_signatures_verify(registry: Any, make_image: Any, cosign_keys: Any) -> None:
    key, other_pub, home = cosign_keys
    pub = key.with_suffix(".pub")
    image = make_image(registry, "cosigned/app", "1.0", platforms=("linux/amd64", "linux/arm64"))
    ref = f"{registry.host}/cosigned/app@{image.digest}"
    cosign_sign("cosign", ref, key, home, "--recursive")
    out = run(["verify", "--key", str(pub), "--insecure-ignore-tlog", ref])
    assert out.exit_code == 0, out.output
    child = f"{registry.host}/cosigned/app@{image.children['linux/amd64']}"
    assert run(["verify", "--key", str(pub), "--insecure-ignore-tlog", child]).exit_code == 0
    out = run(["verify", "--key", str(other_pub), "--insecure-ignore-tlog", ref])
    assert out.exit_code == 1 and "no signature verified" in out.stdout


def test_cosign_signature_copied_to_another_digest_is_refused(registry: Any, make_image: Any,
                                                              cosign_keys: Any) -> None:
    from support.images import Pusher

    key, _, home = cosign_keys
    a = make_image(registry, "cosigned/copy", "1")
    b = make_image(registry, "cosigned/copy", "2")
    cosign_sign("cosign", f"{registry.host}/cosigned/copy@{a.digest}", key, home)
    pusher = Pusher(registry.url)
    data, mtype = pusher.get_manifest("cosigned/copy", a.digest.replace(":", "-") + ".sig")
    pusher.manifest("cosigned/copy", b.digest.replace(":", "-") + ".sig", data, mtype)
    out = run(["verify", "--key", str(key.with_suffix(".pub")), "--insecure-ignore-tlog",
               f"{registry.host}/cosigned/copy:2"])
    assert out.exit_code == 1 and a.digest in out.stdout


def test_cosign_repository_signatures_verify(registry: Any, make_image: Any, cosign_keys: Any,
                                             monkeypatch: Any) -> None:
    key, _, home = cosign_keys
    image = make_image(registry, "cosigned/sep", "1")
    sigrepo = f"{registry.host}/signatures/sep"
    cosign_sign("cosign", f"{registry.host}/cosigned/sep@{image.digest}", key, home, COSIGN_REPOSITORY=sigrepo)
    ref = f"{registry.host}/cosigned/sep:1"
    pub = str(key.with_suffix(".pub"))
    assert run(["verify", "--key", pub, "--insecure-ignore-tlog", ref]).exit_code == 1
    monkeypatch.setenv("COSIGN_REPOSITORY", sigrepo)
    assert run(["verify", "--key", pub, "--insecure-ignore-tlog", ref]).exit_code == 0


@pytest.mark.parametrize("kind", ["referrers", "distribution2"])
def test_cosign_v3_bundle_signatures_verify(kind: str, registry_factory: Any, make_image: Any,
                                            cosign_keys: Any) -> None:
    key, other_pub, home = cosign_keys
    reg = registry_factory(kind=kind)
    image = make_image(reg, "cosigned/v3", "1")
    ref = f"{reg.host}/cosigned/v3@{image.digest}"
    cosign_sign("cosign3", ref, key, home)
    out = run(["verify", "--key", str(key.with_suffix(".pub")), "--insecure-ignore-tlog", "--json", ref])
    assert out.exit_code == 0, out.output
    evidence = json.loads(out.stdout)["results"][0]
    assert evidence["policies"][0]["authorities"][0]["evidence"][-1]["kind"].startswith("bundle")
    assert run(["verify", "--key", str(other_pub), "--insecure-ignore-tlog", ref]).exit_code == 1


def _keyless_trust(tmp: Path, files: Any, identity: str, issuer: str) -> Path:
    authority = f"""\
    - name: ci
      keyless:
        identities:
          - issuer: {issuer}
            subject: {identity}
"""
    return write_trust(tmp / "trust", trusted_root=Path(files.trusted_root).read_bytes(),
                       policy=cip("keyless", authority))


def test_keyless_legacy_signature_verifies_offline(registry: Any, make_image: Any, mini_sigstore: Any,
                                                   mini_sigstore_files: Any, keyless_identity: Any,
                                                   tmp_path: Path) -> None:
    from support.fixtures_sigstore import push_keyless_signature

    image = make_image(registry, "keyless/app", "1")
    push_keyless_signature(registry, "keyless/app", image.digest, keyless_identity, sigstore=mini_sigstore)
    ref = f"{registry.host}/keyless/app:1"
    good = _keyless_trust(tmp_path / "a", mini_sigstore_files, keyless_identity.identity, keyless_identity.issuer)
    out = run(["verify", "--trust", str(good), ref])
    assert out.exit_code == 0, out.output
    assert keyless_identity.identity in out.stdout
    wrong = _keyless_trust(tmp_path / "b", mini_sigstore_files, "someone@else.test", keyless_identity.issuer)
    assert run(["verify", "--trust", str(wrong), ref]).exit_code == 1
    # With --trust, an identity on the command line replaces the directory's policy, and says so.
    out = run(["verify", "--trust", str(wrong), "--certificate-identity", keyless_identity.identity,
               "--certificate-oidc-issuer", keyless_identity.issuer, ref])
    assert out.exit_code == 0, out.output
    assert f"--certificate-identity replaces the policy of --trust {wrong}" in out.stderr
    out = run(["verify", "--trusted-root", str(mini_sigstore_files.trusted_root),
               "--certificate-identity", keyless_identity.identity,
               "--certificate-oidc-issuer", "https://wrong.issuer", ref])
    assert out.exit_code == 1
    out = run(["verify", "--trusted-root", str(mini_sigstore_files.trusted_root),
               "--certificate-identity-regexp", ".*@airgap[.]test",
               "--certificate-oidc-issuer", keyless_identity.issuer, ref])
    assert out.exit_code == 0, out.output


def test_keyless_legacy_signature_from_another_sigstore_is_refused(registry: Any, make_image: Any,
                                                                   mini_sigstore_files: Any, tmp_path: Path) -> None:
    from support.fixtures_sigstore import push_keyless_signature
    from support.minisigstore import MiniSigstore

    foreign = MiniSigstore(name="foreign")
    who = foreign.issue("signer@airgap.test", "https://oidc.airgap.test")
    image = make_image(registry, "keyless/foreign", "1")
    push_keyless_signature(registry, "keyless/foreign", image.digest, who, sigstore=foreign)
    trust = _keyless_trust(tmp_path, mini_sigstore_files, who.identity, who.issuer)
    assert run(["verify", "--trust", str(trust), f"{registry.host}/keyless/foreign:1"]).exit_code == 1


def test_keyless_bundle_referrer_verifies(referrers_registry: Any, make_image: Any, mini_sigstore: Any,
                                          mini_sigstore_files: Any, keyless_identity: Any, tmp_path: Path) -> None:
    from support.fixtures_sigstore import push_bundle_referrer

    reg = referrers_registry
    image = make_image(reg, "keyless/bundle", "1")
    bundle = mini_sigstore.image_bundle(image.digest, keyless_identity)
    push_bundle_referrer(reg, "keyless/bundle", image.digest, len(image.manifest), image.media_type, bundle)
    trust = _keyless_trust(tmp_path, mini_sigstore_files, keyless_identity.identity, keyless_identity.issuer)
    out = run(["verify", "--trust", str(trust), f"{reg.host}/keyless/bundle:1"])
    assert out.exit_code == 0, out.output
    wrong = _keyless_trust(tmp_path / "w", mini_sigstore_files, keyless_identity.identity, "https://other.test")
    assert run(["verify", "--trust", str(wrong), f"{reg.host}/keyless/bundle:1"]).exit_code == 1
