"""RFC 3161 signed timestamps end to end on a real registry: airgap-signed ``.sig`` layers carrying cosign's
``dev.sigstore.cosign/rfc3161timestamp`` annotation from the mini TSA (``openssl ts -reply``), verified against
the trust directory's ``trusted_root.json`` TSAs, with and without a policy ``rfc3161timestamp``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from support.fixtures_sigstore import DSSE_LAYER, _client
from support.minisigstore import MiniSigstore
from support.minitsa import MiniTSA, add_tsa, annotation
from support.trustdirs import cip, write_trust

from airgap import Trust, verify_image
from airgap.checks import cosign
from airgap.cli import cli
from airgap.keys.private import KeySigner
from airgap.keys.public import public_pem
from airgap.signing.attach import append_layer
from airgap.signing.sign import attach_signature, payload_for

SIGNER = KeySigner(ec.generate_private_key(ec.SECP256R1()))
ISSUER = "https://oidc.airgap.test"


def trust_dir(path: Path, sigstore: MiniSigstore, tsa: MiniTSA | None, authority: str) -> Trust:
    root = sigstore.trusted_root()
    return Trust.load(write_trust(path, keys={"release": public_pem(SIGNER.public_key)},
                                  trusted_root=add_tsa(root, tsa) if tsa else root,
                                  policy=cip("tsa", "    - name: release\n" + authority)))


KEY_TSA = "      key: {name: release}\n      rfc3161timestamp: {trustRootRef: default}\n"
KEY_NO_TLOG = "      key: {name: release}\n      ctlog: {disabled: true}\n"


def sign(registry: Any, make_image: Any, repo: str, timestamp: Any) -> str:
    """Push an image and an airgap key signature whose layer carries ``timestamp(signature)`` (if any)."""
    image = make_image(registry, repo, "1")
    payload = payload_for(f"{registry.host}/{repo}", image.digest, None)
    signature = SIGNER.sign(payload)
    extra = {cosign.ANN_RFC3161: annotation(timestamp(signature))} if timestamp else {}
    attach_signature(_client(registry), registry.host, repo, image.digest, payload, signature, extra)
    return f"{registry.host}/{repo}:1"


def checks_of(result: Any) -> list[dict[str, Any]]:
    return [c for p in result.policies for a in p.authorities for e in a.evidence for c in e.checks]


def test_key_signature_with_timestamp(registry: Any, make_image: Any, tsa: MiniTSA, mini_sigstore: MiniSigstore,
                                      tmp_path: Path) -> None:
    ref = sign(registry, make_image, "tsa/ok", tsa.timestamp)
    result = verify_image(ref, trust_dir(tmp_path / "t", mini_sigstore, tsa, KEY_TSA))
    assert result, result.reasons
    stamp = next(c for c in checks_of(result) if c["name"] == "timestamp")
    assert stamp["ok"] and "by CN=airgap-test-tsa" in stamp["detail"]
    # a policy without rfc3161timestamp still verifies a timestamp that is present
    assert verify_image(ref, trust_dir(tmp_path / "u", mini_sigstore, tsa, KEY_NO_TLOG))
    out = CliRunner().invoke(cli, ["verify", "--trust", str(tmp_path / "t"), ref], catch_exceptions=False)
    assert out.exit_code == 0, out.output


def test_policy_requires_a_timestamp(registry: Any, make_image: Any, tsa: MiniTSA, mini_sigstore: MiniSigstore,
                                     tmp_path: Path) -> None:
    ref = sign(registry, make_image, "tsa/none", None)
    result = verify_image(ref, trust_dir(tmp_path / "t", mini_sigstore, tsa, KEY_TSA))
    assert not result and "no signed RFC 3161 timestamp" in result.reasons[0]
    assert verify_image(ref, trust_dir(tmp_path / "u", mini_sigstore, tsa, KEY_NO_TLOG))


def test_tampered_or_foreign_timestamps_are_denied(registry: Any, make_image: Any, tsa: MiniTSA,
                                                   other_tsa: MiniTSA, mini_sigstore: MiniSigstore,
                                                   tmp_path: Path) -> None:
    trust = trust_dir(tmp_path / "t", mini_sigstore, tsa, KEY_TSA)
    other = sign(registry, make_image, "tsa/other-data", lambda sig: tsa.timestamp(sig + b"x"))
    result = verify_image(other, trust)
    assert not result and "message imprint mismatch" in result.reasons[0]

    def flipped(sig: bytes) -> bytes:
        raw = bytearray(tsa.timestamp(sig))
        raw[-5] ^= 1
        return bytes(raw)

    result = verify_image(sign(registry, make_image, "tsa/flipped", flipped), trust)
    assert not result and "timestamp:" in result.reasons[0]
    result = verify_image(sign(registry, make_image, "tsa/rogue", other_tsa.timestamp), trust)
    assert not result and "not signed by a timestamp authority in the trusted root" in result.reasons[0]


def test_timestamp_without_tsa_in_trust_is_denied(registry: Any, make_image: Any, tsa: MiniTSA,
                                                  mini_sigstore: MiniSigstore, tmp_path: Path) -> None:
    """cosign: a timestamp present but no TSA roots configured fails verification."""
    ref = sign(registry, make_image, "tsa/no-root", tsa.timestamp)
    result = verify_image(ref, trust_dir(tmp_path / "t", mini_sigstore, None, KEY_NO_TLOG))
    assert not result and "no timestamp authorities" in result.reasons[0]


def test_unknown_trust_root_ref(registry: Any, make_image: Any, tsa: MiniTSA, mini_sigstore: MiniSigstore,
                                tmp_path: Path) -> None:
    ref = sign(registry, make_image, "tsa/ref", tsa.timestamp)
    authority = KEY_TSA.replace("trustRootRef: default", "trustRootRef: nope")
    trust = trust_dir(tmp_path / "t", mini_sigstore, tsa, authority)
    result = verify_image(ref, trust)  # resolved like keyless.trustRootRef: a denial naming the missing root
    assert not result and "no trusted root named 'nope'" in result.reasons[0]


def test_keyless_signature_and_attestation_without_tlog(registry: Any, make_image: Any, tsa: MiniTSA,
                                                        mini_sigstore: MiniSigstore, tmp_path: Path) -> None:
    """Keyless with ``rfc3161timestamp``: no Rekor entry needed; the TSA time is the certificate's check time."""
    who = mini_sigstore.issue("tsa@airgap.test", ISSUER)
    image = make_image(registry, "tsa/keyless", "1")
    layer = mini_sigstore.legacy_signature(f"{registry.host}/tsa/keyless", image.digest, who)
    ann = {k: v for k, v in layer.annotations.items() if k not in (cosign.ANN_SIGNATURE, cosign.ANN_BUNDLE)}
    ann[cosign.ANN_RFC3161] = annotation(tsa.timestamp(layer.signature))
    attach_signature(_client(registry), registry.host, "tsa/keyless", image.digest, layer.payload, layer.signature,
                     ann)
    att = mini_sigstore.legacy_attestation(f"{registry.host}/tsa/keyless", image.digest, who,
                                           predicate_type="https://slsa.dev/provenance/v1", predicate={"x": 1})
    att_ann = {k: v for k, v in att.annotations.items() if k != cosign.ANN_BUNDLE}
    att_ann[cosign.ANN_RFC3161] = annotation(tsa.timestamp(att.payload))  # over the envelope, as cosign attest
    append_layer(_client(registry), registry.host, "tsa/keyless", cosign.attestation_tag(image.digest), DSSE_LAYER,
                 att.payload, att_ann)
    keyless = (f"      keyless:\n        identities: [{{issuer: {ISSUER}, subject: tsa@airgap.test}}]\n"
               "      rfc3161timestamp: {trustRootRef: default}\n")
    ref = f"{registry.host}/tsa/keyless:1"
    result = verify_image(ref, trust_dir(tmp_path / "sig", mini_sigstore, tsa, keyless))
    assert result, result.reasons
    assert any(c["name"] == "chain" and "(TSA)" in c["detail"] for c in checks_of(result))
    attest = keyless + "      attestations: [{name: prov, predicateType: https://slsa.dev/provenance/v1}]\n"
    result = verify_image(ref, trust_dir(tmp_path / "att", mini_sigstore, tsa, attest))
    assert result, result.reasons
    # without rfc3161timestamp the (default) transparency-log requirement is back, and these have no SET
    result = verify_image(ref, trust_dir(tmp_path / "tlog", mini_sigstore, tsa, keyless.split("      rfc")[0]))
    assert not result and "tlog" in result.reasons[0]
