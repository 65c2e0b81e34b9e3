"""Real cosign accepts what airgap signs keylessly: legacy `.sig`/`.att` (cosign v2.4.1, roots from the SIGSTORE_*
env overrides) and sigstore bundles (cosign v3.1.3, ``--trusted-root``), all made against the Mini Sigstore's Fulcio
and Rekor over HTTP on loopback (the public-good Sigstore cannot be reached from tests) and verified offline
against the mini root. cosign also signs against the same Fulcio and Rekor, and airgap verifies that: the mini
services speak the protocol cosign speaks.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import require_tool
from support.fixtures_sigstore import mini_oidc, mini_sigstore_server, sigstore_server  # noqa: F401  (fixtures)
from support.images import Image
from support.minisigstore import MiniSigstore, SigstoreFiles
from support.registries import Registry
from support.sigstoreserver import MiniOIDC, SigstoreServer

from airgap.cli import cli

ALICE = "alice@airgap.test"
CI_URI = "https://ci.airgap.test/workflows/release@refs/heads/main"


def airgap(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, env={"SIGSTORE_ID_TOKEN": None})


def cosign(tool: str, args: list[str], home: Path, files: SigstoreFiles | None = None,
           **env: str) -> subprocess.CompletedProcess[str]:
    """cosign with HOME in a temp dir, no TUF, and (for v2) the mini root through the SIGSTORE_* overrides."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TUF_ROOT": str(home / "tuf"),
            "COSIGN_YES": "true", "NO_PROXY": "*", **(files.cosign_env() if files else {}), **env}
    return subprocess.run([require_tool(tool), *args], env=full, capture_output=True, text=True, timeout=120,
                          check=False)


def sign(server: SigstoreServer, files: SigstoreFiles, token: str, ref: str, *args: str) -> None:
    out = airgap([*args, "--identity-token", token, "--fulcio-url", server.url, "--rekor-url", server.url,
                  "--trusted-root", str(files.trusted_root), ref])
    assert out.exit_code == 0, out.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def test_cosign_v2_verifies_airgap_keyless_signatures_and_attestations(
    registry: Registry, make_image: Callable[..., Image], sigstore_server: SigstoreServer,  # noqa: F811
    mini_oidc: MiniOIDC, mini_sigstore_files: SigstoreFiles, home: Path, tmp_path: Path,  # noqa: F811
) -> None:
    image = make_image(registry, "keyless/cosign2", "1.0")
    ref = f"{registry.host}/keyless/cosign2@{image.digest}"
    token = mini_oidc.token(email=None, sub=CI_URI)
    sign(sigstore_server, mini_sigstore_files, token, ref, "sign", "-a", "team=web")
    predicate = tmp_path / "prov.json"
    predicate.write_text(json.dumps({"builder": {"id": "https://ci.airgap.test"}}))
    for entry_type in ("dsse", "intoto"):
        sign(sigstore_server, mini_sigstore_files, token, ref, "attest", "--type", "slsaprovenance",
             "--predicate", str(predicate), "--rekor-entry-type", entry_type)

    identity = ["--certificate-identity", CI_URI, "--certificate-oidc-issuer", mini_oidc.issuer]
    ok = cosign("cosign", ["verify", "--offline", "--allow-http-registry", *identity, "-a", "team=web", ref], home,
                mini_sigstore_files)
    assert ok.returncode == 0, ok.stderr
    assert "The code-signing certificate was verified using trusted certificate authority certificates" in ok.stderr
    assert "Existence of the claims in the transparency log was verified offline" in ok.stderr
    (claim,) = json.loads(ok.stdout)
    assert claim["critical"]["image"]["docker-manifest-digest"] == image.digest
    assert claim["optional"]["Issuer"] == mini_oidc.issuer and claim["optional"]["Subject"] == CI_URI

    att = cosign("cosign", ["verify-attestation", "--offline", "--allow-http-registry", "--type", "slsaprovenance",
                            *identity, ref], home, mini_sigstore_files)
    assert att.returncode == 0, att.stderr
    assert len([ln for ln in att.stdout.splitlines() if ln.strip()]) == 2  # the dsse- and the intoto-logged one

    wrong = cosign("cosign", ["verify", "--offline", "--allow-http-registry", "--certificate-identity", ALICE,
                              "--certificate-oidc-issuer", mini_oidc.issuer, ref], home, mini_sigstore_files)
    assert wrong.returncode != 0 and "none of the expected identities matched" in wrong.stderr
    foreign = MiniSigstore(name="foreign").write_files(tmp_path / "foreign")
    other = cosign("cosign", ["verify", "--offline", "--allow-http-registry", *identity, ref], home, foreign)
    assert other.returncode != 0


@pytest.mark.parametrize("kind", ["referrers", "distribution2"], ids=["referrers-api", "fallback-tag"])
def test_cosign_v3_verifies_airgap_keyless_bundles(
    kind: str, registry_factory: Callable[..., Registry], make_image: Callable[..., Image],
    sigstore_server: SigstoreServer, mini_oidc: MiniOIDC,  # noqa: F811
    mini_sigstore_files: SigstoreFiles, home: Path, tmp_path: Path,  # noqa: F811
) -> None:
    registry = registry_factory(kind)
    image = make_image(registry, "keyless/cosign3", "1.0")
    ref = f"{registry.host}/keyless/cosign3@{image.digest}"
    token = mini_oidc.token(email=ALICE)
    sign(sigstore_server, mini_sigstore_files, token, ref, "sign", "--format", "bundle")
    sign(sigstore_server, mini_sigstore_files, token, ref, "sign")  # legacy too, for --new-bundle-format=false
    predicate = tmp_path / "prov.json"
    predicate.write_text(json.dumps({"builder": {"id": "https://ci.airgap.test"}}))
    sign(sigstore_server, mini_sigstore_files, token, ref, "attest", "--format", "bundle", "--type",
         "slsaprovenance", "--predicate", str(predicate))

    root = ["--trusted-root", str(mini_sigstore_files.trusted_root), "--allow-http-registry"]
    identity = ["--certificate-identity", ALICE, "--certificate-oidc-issuer", mini_oidc.issuer]
    bundle = cosign("cosign3", ["verify", *root, *identity, ref], home)
    assert bundle.returncode == 0, bundle.stderr
    claims = json.loads(bundle.stdout)  # cosign v3.1.3 counts the attestation bundle as a signature too
    assert "https://sigstore.dev/cosign/sign/v1" in {c["critical"]["type"] for c in claims}
    assert all(c["critical"]["image"]["docker-manifest-digest"] == image.digest for c in claims)

    legacy = cosign("cosign3", ["verify", *root, *identity, "--new-bundle-format=false", ref], home)
    assert legacy.returncode == 0, legacy.stderr
    assert {c["critical"]["type"] for c in json.loads(legacy.stdout)} == {"cosign container image signature"}

    att = cosign("cosign3", ["verify-attestation", *root, *identity, "--type", "slsaprovenance", ref], home)
    assert att.returncode == 0, att.stderr
    wrong = cosign("cosign3", ["verify", *root, "--certificate-identity", "x@y.test", "--certificate-oidc-issuer",
                               mini_oidc.issuer, ref], home)
    assert wrong.returncode != 0
    other = MiniSigstore(name="foreign").write_files(tmp_path / "foreign")
    foreign = cosign("cosign3", ["verify", "--trusted-root", str(other.trusted_root), "--allow-http-registry",
                                 *identity, ref], home)
    assert foreign.returncode != 0


def test_cosign_v2_signs_against_the_mini_sigstore_and_airgap_verifies(
    registry: Registry, make_image: Callable[..., Image], sigstore_server: SigstoreServer,  # noqa: F811
    mini_oidc: MiniOIDC, mini_sigstore_files: SigstoreFiles, home: Path,  # noqa: F811
) -> None:
    image = make_image(registry, "keyless/bycosign", "1.0")
    ref = f"{registry.host}/keyless/bycosign@{image.digest}"
    out = cosign("cosign", ["sign", "--allow-http-registry", "--fulcio-url", sigstore_server.url, "--rekor-url",
                            sigstore_server.url, "--identity-token", mini_oidc.token(email=ALICE), ref], home,
                 mini_sigstore_files)
    assert out.returncode == 0, out.stderr
    ok = airgap(["verify", "--certificate-identity", ALICE, "--certificate-oidc-issuer", mini_oidc.issuer,
                 "--trusted-root", str(mini_sigstore_files.trusted_root), ref])
    assert ok.exit_code == 0, ok.output


def test_cosign_v3_signs_with_the_signing_config_airgap_reads(
    referrers_registry: Registry, make_image: Callable[..., Image], sigstore_server: SigstoreServer,  # noqa: F811
    mini_oidc: MiniOIDC, mini_sigstore_files: SigstoreFiles, home: Path, tmp_path: Path,  # noqa: F811
) -> None:
    image = make_image(referrers_registry, "keyless/bycosign3", "1.0")
    ref = f"{referrers_registry.host}/keyless/bycosign3@{image.digest}"
    config = tmp_path / "signing_config.json"
    config.write_text(json.dumps(sigstore_server.signing_config()))
    token = tmp_path / "token"  # cosign v3.1.3 stats a token given inline and fails on a long one: use a file
    token.write_text(mini_oidc.token(email=ALICE))
    out = cosign("cosign3", ["sign", "--allow-http-registry", "--signing-config", str(config), "--trusted-root",
                             str(mini_sigstore_files.trusted_root), "--identity-token", str(token), ref], home)
    assert out.returncode == 0, out.stderr
    ok = airgap(["verify", "--certificate-identity", ALICE, "--certificate-oidc-issuer", mini_oidc.issuer,
                 "--trusted-root", str(mini_sigstore_files.trusted_root), "--json", ref])
    assert ok.exit_code == 0, ok.output
    assert "bundle" in json.dumps(json.loads(ok.stdout))
    # ... and airgap signs with the very same file.
    again = airgap(["sign", "--format", "bundle", "--signing-config", str(config), "--trusted-root",
                    str(mini_sigstore_files.trusted_root), "--identity-token", str(token), ref])  # a path, as cosign
    assert again.exit_code == 0, again.stderr
