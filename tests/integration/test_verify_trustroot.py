"""policy-controller TrustRoot documents end to end: keyless signatures from the mini Sigstore, pushed to a real
registry, verify through a TrustRoot built from that Sigstore's keys (keyless.trustRootRef, ctlog.trustRootRef,
rfc3161timestamp.trustRootRef) and fail through another one; the remote (TUF) form is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.fixtures_sigstore import _client, push_keyless_signature
from support.minisigstore import KeylessIdentity, MiniSigstore, cert_pem, spki_pem
from support.minitsa import MiniTSA, annotation
from support.trustdirs import cip, trust_root, write_trust

from airgap import Trust, verify_image
from airgap.checks import cosign
from airgap.errors import PolicyError
from airgap.signing.sign import attach_signature


def sigstore_keys(name: str, sigstore: MiniSigstore, *, tsa: MiniTSA | None = None,
                  rekor_of: MiniSigstore | None = None) -> str:
    """A TrustRoot with ``sigstore``'s Fulcio chain and CT log, the Rekor key of ``rekor_of`` (default: the same)."""
    rekor = rekor_of or sigstore
    return trust_root(name, ca_chain=cert_pem(sigstore.intermediate_cert) + cert_pem(sigstore.root_cert),
                      tlogs=[spki_pem(rekor.rekor_key.public_key())], ctlogs=[spki_pem(sigstore.ct_key.public_key())],
                      tsa_chain=tsa.chain_pem.read_bytes() if tsa else None)


def keyless(who: KeylessIdentity, ref: str = "mini", extra: str = "") -> str:
    return (f"    - name: ci\n      keyless:\n        trustRootRef: {ref}\n        identities:\n"
            f"        - {{issuer: '{who.issuer}', subject: '{who.identity}'}}\n{extra}")


def trust_with(tmp: Path, policy: str) -> Trust:
    # no trusted_root.json: without the TrustRoot, keyless checks would fall back to the public-good root
    return Trust.load(write_trust(tmp, policy=policy))


@pytest.fixture
def keyless_image(registry: Any, make_image: Any, mini_sigstore: MiniSigstore, keyless_identity: KeylessIdentity
                  ) -> str:
    image = make_image(registry, "trustroot/app", "1")
    push_keyless_signature(registry, "trustroot/app", image.digest, keyless_identity, sigstore=mini_sigstore)
    return f"{registry.host}/trustroot/app:1"


def test_keyless_signature_verifies_through_a_trust_root(keyless_image: str, mini_sigstore: MiniSigstore,
                                                         keyless_identity: KeylessIdentity, tmp_path: Path) -> None:
    policy = cip("ci", keyless(keyless_identity)) + sigstore_keys("mini", mini_sigstore)
    result = verify_image(keyless_image, trust_with(tmp_path / "good", policy))
    assert result, result.reasons
    checks = [c["name"] for p in result.policies for a in p.authorities for e in a.evidence if e.ok
              for c in e.checks if c["ok"]]
    assert sorted(checks) == ["chain", "digest", "identity", "sct", "signature", "tlog"]


def test_another_root_fails(keyless_image: str, mini_sigstore: MiniSigstore, keyless_identity: KeylessIdentity,
                            tmp_path: Path) -> None:
    other = MiniSigstore(name="another")
    policy = cip("ci", keyless(keyless_identity)) + sigstore_keys("mini", other)
    result = verify_image(keyless_image, trust_with(tmp_path / "other", policy))
    assert not result and "is not in the trusted root" in result.reasons[0], result.reasons
    # the same Rekor but another Fulcio: the certificate is what fails
    policy = cip("ci", keyless(keyless_identity)) + sigstore_keys("mini", other, rekor_of=mini_sigstore)
    result = verify_image(keyless_image, trust_with(tmp_path / "fulcio", policy))
    assert not result and "does not chain to a trusted Fulcio CA" in result.reasons[0], result.reasons
    # without the TrustRoot the name resolves to nothing: a denial that says so, never another root
    result = verify_image(keyless_image, trust_with(tmp_path / "none", cip("ci", keyless(keyless_identity))))
    assert not result and "no trusted root named 'mini'" in result.reasons[0]


def test_ctlog_trust_root_ref_chooses_the_rekor_keys(keyless_image: str, mini_sigstore: MiniSigstore,
                                                     keyless_identity: KeylessIdentity, tmp_path: Path) -> None:
    other = MiniSigstore(name="other-rekor")
    roots = sigstore_keys("mini", mini_sigstore) + sigstore_keys("foreign-rekor", mini_sigstore, rekor_of=other)
    good = cip("ci", keyless(keyless_identity, extra="      ctlog: {trustRootRef: mini}\n")) + roots
    assert verify_image(keyless_image, trust_with(tmp_path / "good", good))
    bad = cip("ci", keyless(keyless_identity, extra="      ctlog: {trustRootRef: foreign-rekor}\n")) + roots
    result = verify_image(keyless_image, trust_with(tmp_path / "bad", bad))
    assert not result and "rekor" in result.reasons[0].lower(), result.reasons


def test_rfc3161_trust_root_ref_uses_the_trust_roots_tsa(registry: Any, make_image: Any, mini_sigstore: MiniSigstore,
                                                         tsa: MiniTSA, other_tsa: MiniTSA, tmp_path: Path) -> None:
    """A keyless signature with a signed timestamp and no Rekor entry: the TSA comes from the TrustRoot."""
    who = mini_sigstore.issue("tsa@airgap.test", "https://oidc.airgap.test")
    image = make_image(registry, "trustroot/tsa", "1")
    layer = mini_sigstore.legacy_signature(f"{registry.host}/trustroot/tsa", image.digest, who)
    ann = {k: v for k, v in layer.annotations.items() if k not in (cosign.ANN_SIGNATURE, cosign.ANN_BUNDLE)}
    ann[cosign.ANN_RFC3161] = annotation(tsa.timestamp(layer.signature))
    attach_signature(_client(registry), registry.host, "trustroot/tsa", image.digest, layer.payload, layer.signature,
                     ann)
    ref = f"{registry.host}/trustroot/tsa:1"
    stamped = keyless(who, extra="      rfc3161timestamp: {trustRootRef: mini}\n")
    good = cip("ci", stamped) + sigstore_keys("mini", mini_sigstore, tsa=tsa)
    result = verify_image(ref, trust_with(tmp_path / "good", good))
    assert result, result.reasons
    bad = cip("ci", stamped) + sigstore_keys("mini", mini_sigstore, tsa=other_tsa)
    assert not verify_image(ref, trust_with(tmp_path / "bad", bad))


def test_remote_trust_root_is_refused(tmp_path: Path) -> None:
    remote = ("---\napiVersion: policy.sigstore.dev/v1alpha1\nkind: TrustRoot\nmetadata: {name: tuf}\nspec:\n"
              "  remote:\n    mirror: https://tuf-repo-cdn.sigstore.dev\n    root: eyJzaWduZWQiOnt9fQ==\n")
    root = write_trust(tmp_path / "t", policy=cip("ci", "    - {static: {action: pass}}\n") + remote)
    with pytest.raises(PolicyError) as err:
        Trust.load(root)
    assert str(err.value) == (f"{root / 'policy.yaml'}: document 2 (tuf): spec.remote: a TUF mirror cannot be "
                              "reached offline; give the keys as spec.sigstoreKeys, or ship its trusted_root.json in "
                              "the trust directory (trusted_roots/NAME.json)")
