"""The Mini Sigstore makes real keyless signatures: sigstore-python and real cosign accept them offline.

If these pass, keyless verification tests built on ``support.minisigstore`` exercise the same formats the
public Sigstore produces; if a real verifier starts rejecting them, every keyless test downstream is suspect.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import require_tool
from cryptography import x509
from support.fixtures_sigstore import (  # noqa: F401  (fixtures)
    mini_sigstore,
    mini_sigstore_files,
    push_bundle_referrer,
    push_keyless_attestation,
    push_keyless_signature,
)
from support.images import Image
from support.minisigstore import (
    OID_ISSUER_V1,
    OID_ISSUER_V2,
    KeylessIdentity,
    MiniSigstore,
    SigstoreFiles,
    audit_path,
    leaf_hash,
    merkle_root,
)
from support.registries import Registry

if TYPE_CHECKING:
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

ALICE = "alice@airgap.test"
ISSUER = "https://oidc.airgap.test"
CI_URI = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
CI_ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def alice(mini_sigstore: MiniSigstore) -> KeylessIdentity:  # noqa: F811
    return mini_sigstore.issue(ALICE, ISSUER)


@pytest.fixture(scope="module")
def verifier(mini_sigstore_files: SigstoreFiles) -> Verifier:  # noqa: F811
    from sigstore.models import TrustedRoot
    from sigstore.verify import Verifier

    return Verifier(trusted_root=TrustedRoot.from_file(str(mini_sigstore_files.trusted_root)))


def _identity(identity: str = ALICE, issuer: str = ISSUER) -> Identity:
    from sigstore.verify import policy

    return policy.Identity(identity=identity, issuer=issuer)


def _bundle(data: bytes) -> Bundle:
    from sigstore.models import Bundle

    return Bundle.from_json(data)


# ---- the pieces ---------------------------------------------------------------------------------------

def test_merkle_proofs_recompute_the_root_for_every_leaf_and_size() -> None:
    from sigstore._internal.merkle import _chain_border_right, _chain_inner, _decomp_inclusion_proof

    leaves = [leaf_hash(bytes([i])) for i in range(13)]
    for size in range(1, len(leaves) + 1):
        root = merkle_root(leaves[:size])
        for index in range(size):
            path = audit_path(index, leaves[:size])
            inner, border = _decomp_inclusion_proof(index, size)
            assert len(path) == inner + border
            assert _chain_border_right(_chain_inner(leaves[index], path[:inner], index), path[inner:]) == root


def test_certificate_is_fulcio_shaped_with_a_verifiable_embedded_sct(mini_sigstore: MiniSigstore,  # noqa: F811
                                                                     alice: KeylessIdentity) -> None:
    from sigstore._internal.sct import verify_sct
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.errors import VerificationError
    from sigstore.models import TrustedRoot

    cert = alice.certificate
    v1, v2 = (cert.extensions.get_extension_for_oid(oid).value for oid in (OID_ISSUER_V1, OID_ISSUER_V2))
    assert isinstance(v1, x509.UnrecognizedExtension) and isinstance(v2, x509.UnrecognizedExtension)
    assert v1.value == ISSUER.encode()  # legacy: raw bytes
    assert v2.value == b"\x0c" + bytes([len(ISSUER)]) + ISSUER.encode()  # DER UTF8String
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name) == [ALICE]
    assert x509.oid.ExtendedKeyUsageOID.CODE_SIGNING in cert.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    scts = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    assert len(scts) == 1
    assert list(cert.extensions)[-1].oid == x509.oid.ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS  # last
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() == 600
    trusted = TrustedRoot(_load_root(mini_sigstore.trusted_root_json()))

    verify_sct(cert, list(alice.chain), trusted.ct_keyring(KeyringPurpose.VERIFY))
    untrusted = TrustedRoot(_load_root(MiniSigstore().trusted_root_json()))  # another CT log key
    with pytest.raises(VerificationError):
        verify_sct(cert, list(alice.chain), untrusted.ct_keyring(KeyringPurpose.VERIFY))


def test_trusted_root_lists_keys_by_spki_sha256(mini_sigstore: MiniSigstore) -> None:  # noqa: F811
    import base64

    doc = json.loads(mini_sigstore.trusted_root_json())
    assert doc["mediaType"] == "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
    for section in ("tlogs", "ctlogs"):
        (log,) = doc[section]
        spki = base64.b64decode(log["publicKey"]["rawBytes"])
        assert base64.b64decode(log["logId"]["keyId"]) == hashlib.sha256(spki).digest()
    chain = doc["certificateAuthorities"][0]["certChain"]["certificates"]
    certs = [x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"])) for c in chain]
    assert certs[0].issuer == certs[1].subject and certs[1].issuer == certs[1].subject  # leaf-most first


# ---- 1. sigstore-python accepts the bundles -----------------------------------------------------------------

def test_sigstore_python_verifies_artifact_digest_and_dsse_bundles(mini_sigstore: MiniSigstore,  # noqa: F811
                                                                   alice: KeylessIdentity, verifier: Verifier) -> None:
    from sigstore.hashes import Hashed
    from sigstore_models.common.v1 import HashAlgorithm

    v = verifier
    artifact = b"release notes v1.2.3\n"
    v.verify_artifact(artifact, _bundle(mini_sigstore.bundle(artifact, alice)), _identity())

    manifest = b'{"schemaVersion":2}'
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=hashlib.sha256(manifest).digest())
    v.verify_artifact(hashed, _bundle(mini_sigstore.bundle(digest, alice)), _identity())

    payload_type, payload = v.verify_dsse(_bundle(mini_sigstore.image_bundle(digest, alice)),
                                          _identity())
    statement = json.loads(payload)
    assert payload_type == "application/vnd.in-toto+json"
    assert statement["subject"][0]["digest"] == {"sha256": digest.split(":")[1]}


def test_sigstore_python_verifies_uri_identities(mini_sigstore: MiniSigstore, verifier: Verifier) -> None:  # noqa: F811
    ci = mini_sigstore.issue(CI_URI, CI_ISSUER, san_kind="uri")
    verifier.verify_artifact(b"x", _bundle(mini_sigstore.bundle(b"x", ci)), _identity(CI_URI, CI_ISSUER))


@pytest.mark.parametrize("who, issuer", [("mallory@airgap.test", ISSUER), (ALICE, "https://evil.example")],
                         ids=["wrong-identity", "wrong-issuer"])
def test_sigstore_python_rejects_the_wrong_identity_or_issuer(mini_sigstore: MiniSigstore,  # noqa: F811
                                                              alice: KeylessIdentity, verifier: Verifier,
                                                              who: str, issuer: str) -> None:
    from sigstore.errors import VerificationError

    with pytest.raises(VerificationError):
        verifier.verify_artifact(b"y", _bundle(mini_sigstore.bundle(b"y", alice)), _identity(who, issuer))


def test_sigstore_python_rejects_tampering_and_foreign_roots(mini_sigstore: MiniSigstore,  # noqa: F811
                                                             alice: KeylessIdentity, verifier: Verifier) -> None:
    from sigstore.errors import VerificationError
    from sigstore.models import TrustedRoot
    from sigstore.verify import Verifier

    good = mini_sigstore.bundle(b"z", alice)
    with pytest.raises(VerificationError):
        verifier.verify_artifact(b"Z", _bundle(good), _identity())
    doc = json.loads(good)
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)  # breaks the SET
    with pytest.raises(VerificationError):
        verifier.verify_artifact(b"z", _bundle(json.dumps(doc).encode()), _identity())
    other = MiniSigstore()
    foreign = Verifier(trusted_root=TrustedRoot(_load_root(other.trusted_root_json())))
    with pytest.raises(VerificationError):
        foreign.verify_artifact(b"z", _bundle(good), _identity())


def _load_root(data: bytes) -> Any:
    from sigstore_models.trustroot import v1

    return v1.TrustedRoot.from_json(data)


def test_an_expired_certificate_still_verifies_at_its_integrated_time(mini_sigstore: MiniSigstore,  # noqa: F811
                                                                      verifier: Verifier) -> None:
    import time

    old = mini_sigstore.issue(ALICE, ISSUER, not_before=time.time() - 7 * 86400)
    verifier.verify_artifact(b"old", _bundle(mini_sigstore.bundle(b"old", old)), _identity())


# ---- 2. cosign v2 verifies legacy keyless signatures offline ---------------------------------------------------

def _cosign(tool: str, args: list[str], files: SigstoreFiles, home: Path, *, env_roots: bool = True,
            ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TUF_ROOT": str(home / "tuf"),
           "COSIGN_EXPERIMENTAL": "0", "NO_PROXY": "*"}
    if env_roots:
        env.update(files.cosign_env())
    return subprocess.run([tool, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_cosign_v2_verifies_a_keyless_legacy_signature_offline(
    registry: Registry, make_image: Callable[..., Image], mini_sigstore: MiniSigstore,  # noqa: F811
    mini_sigstore_files: SigstoreFiles, tmp_path: Path,  # noqa: F811
) -> None:
    cosign = require_tool("cosign")
    image = make_image(registry, "keyless/app")
    ci = mini_sigstore.issue(CI_URI, CI_ISSUER, san_kind="uri")
    push_keyless_signature(registry, "keyless/app", image.digest, ci, sigstore=mini_sigstore)
    ref = f"{registry.host}/keyless/app@{image.digest}"
    args = ["verify", "--offline", "--allow-http-registry", "--certificate-identity", CI_URI,
            "--certificate-oidc-issuer", CI_ISSUER, "--output", "json", ref]
    ok = _cosign(cosign, args, mini_sigstore_files, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "The code-signing certificate was verified using trusted certificate authority certificates" in ok.stderr
    assert "Existence of the claims in the transparency log was verified offline" in ok.stderr
    assert "The signatures were verified against the specified public key" not in ok.stderr
    (claim,) = json.loads(ok.stdout)
    assert claim["critical"]["image"]["docker-manifest-digest"] == image.digest

    wrong = [*args[:4], "someone@else.test", *args[5:]]
    bad = _cosign(cosign, wrong, mini_sigstore_files, tmp_path)
    assert bad.returncode != 0 and "none of the expected identities matched" in bad.stderr

    # Each trust input is really checked: swap one for another Mini Sigstore's and verification fails.
    other = MiniSigstore().write_files(tmp_path / "other")
    for name, message in (("fulcio_chain", "certificate signed by unknown authority"),
                          ("ctlog_pub", "ctfe public key not found"),
                          ("rekor_pub", "rekor log public key not found")):
        mixed = dataclasses.replace(mini_sigstore_files, **{name: getattr(other, name)})
        foreign = _cosign(cosign, args, mixed, tmp_path)
        assert foreign.returncode != 0 and message in foreign.stderr, (name, foreign.stderr)


def test_cosign_v2_verifies_a_keyless_legacy_attestation_offline(
    registry: Registry, make_image: Callable[..., Image], mini_sigstore: MiniSigstore,  # noqa: F811
    mini_sigstore_files: SigstoreFiles, alice: KeylessIdentity, tmp_path: Path,  # noqa: F811
) -> None:
    cosign = require_tool("cosign")
    image = make_image(registry, "keyless/att")
    push_keyless_attestation(registry, "keyless/att", image.digest, alice, sigstore=mini_sigstore,
                             predicate_type="https://slsa.dev/provenance/v0.2", predicate={"builder": {"id": "ci"}})
    ref = f"{registry.host}/keyless/att@{image.digest}"
    args = ["verify-attestation", "--offline", "--allow-http-registry", "--type", "slsaprovenance",
            "--certificate-identity", ALICE, "--certificate-oidc-issuer", ISSUER, ref]
    ok = _cosign(cosign, args, mini_sigstore_files, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "Existence of the claims in the transparency log was verified offline" in ok.stderr


# ---- 3. cosign v3 verifies sigstore bundles attached as referrers, with --trusted-root ---------------------

@pytest.mark.parametrize("kind", ["referrers", "distribution2"], ids=["referrers-api", "fallback-tag"])
def test_cosign_v3_verifies_a_bundle_referrer_and_a_legacy_signature_with_trusted_root(
    registry_factory: Callable[..., Registry], make_image: Callable[..., Image], kind: str,
    mini_sigstore: MiniSigstore, mini_sigstore_files: SigstoreFiles, tmp_path: Path,  # noqa: F811
) -> None:
    cosign3 = require_tool("cosign3")
    registry = registry_factory(kind)
    image = make_image(registry, "keyless/v3")
    ci = mini_sigstore.issue(CI_URI, CI_ISSUER, san_kind="uri")
    push_bundle_referrer(registry, "keyless/v3", image.digest, len(image.manifest), image.media_type,
                         mini_sigstore.image_bundle(image.digest, ci), fallback_tag=kind == "distribution2")
    push_keyless_signature(registry, "keyless/v3", image.digest, ci, sigstore=mini_sigstore)
    ref = f"{registry.host}/keyless/v3@{image.digest}"
    args = ["verify", "--trusted-root", str(mini_sigstore_files.trusted_root), "--allow-http-registry",
            "--certificate-identity", CI_URI, "--certificate-oidc-issuer", CI_ISSUER, ref]

    bundle = _cosign(cosign3, args, mini_sigstore_files, tmp_path, env_roots=False)
    assert bundle.returncode == 0, bundle.stderr
    (claim,) = json.loads(bundle.stdout)
    assert claim["critical"]["type"] == "https://sigstore.dev/cosign/sign/v1"  # the bundle, not the .sig
    assert claim["critical"]["image"]["docker-manifest-digest"] == image.digest

    legacy = _cosign(cosign3, [*args[:-1], "--new-bundle-format=false", ref], mini_sigstore_files, tmp_path,
                     env_roots=False)
    assert legacy.returncode == 0, legacy.stderr
    (claim,) = json.loads(legacy.stdout)
    assert claim["critical"]["type"] == "cosign container image signature"

    other = MiniSigstore().write_files(tmp_path / "other")
    foreign = _cosign(cosign3, ["verify", "--trusted-root", str(other.trusted_root), *args[3:]], other, tmp_path,
                      env_roots=False)
    assert foreign.returncode != 0 and "not enough verified log entries" in foreign.stderr, foreign.stderr
    wrong = _cosign(cosign3, [*args[:4], "--certificate-identity", "x@y.test", *args[6:]], mini_sigstore_files,
                    tmp_path, env_roots=False)
    assert wrong.returncode != 0 and 'expected SAN value "x@y.test"' in wrong.stderr, wrong.stderr
