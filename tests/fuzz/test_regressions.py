"""Every crash the parser fuzzing (tests/fuzz/test_fuzz_parsers.py, scripts/fuzz_parsers.py) found, as the
smallest input that showed it: each must now be a clean refusal (an airgap Error, or a failed Outcome)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.checks.outcome import KeyAuthority

DIGEST = "sha256:" + "ab" * 32
KEY = KeyAuthority((ec.generate_private_key(ec.SECP256R1()).public_key(),))


def test_sigstore_bundle_whose_dsse_envelope_is_a_list() -> None:
    """Found by Hypothesis: ``"dsseEnvelope": []`` reached ``Envelope.from_json`` (AttributeError on .get)."""
    from airgap.checks.bundle import check_sigstore_bundle

    raw = (b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":'
           b'{"hint":"x"}},"dsseEnvelope":[]}')
    outcome = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=KEY, require_tlog=False)
    assert not outcome.ok
    assert outcome.reason == "bundle: bundle DSSE envelope: not a JSON object"


@pytest.mark.parametrize("doc", [[], "x", 1, None])
def test_envelope_from_json_refuses_non_objects(doc: object) -> None:
    from airgap.checks import cosign
    from airgap.errors import IntegrityError

    with pytest.raises(IntegrityError, match="^envelope: not a JSON object$"):
        cosign.Envelope.from_json(doc, "envelope")


@pytest.mark.parametrize(("entry", "message"), [
    ('"policies": 1e999999', "expected a string source and a list of policy names"),  # found by Hypothesis
    ('"policies": [1]', "expected a string source and a list of policy names"),
    ('"source": {}', "expected a string source and a list of policy names"),
])
def test_key_manifest_entry_of_the_wrong_shape(tmp_path: Path, entry: str, message: str) -> None:
    """Found by Hypothesis: ``policies`` that is not a list reached ``tuple(...)`` (TypeError)."""
    from airgap.errors import ConfigError
    from airgap.keys.public import key_id, public_pem
    from airgap.verification.trust import Trust

    trust = tmp_path
    (trust / "keys").mkdir()
    (trust / "keys" / "release.pub").write_bytes(public_pem(KEY.keys[0]))
    (trust / "keys.json").write_text(f'{{"keys": [{{"name": "release", "id": "{key_id(KEY.keys[0])}", {entry}}}]}}')
    with pytest.raises(ConfigError, match=rf"keys.json: key 'release': {message}$"):
        Trust.load(trust)


@pytest.mark.parametrize("keys", ['{"keys": {}}', '{"keys": [{"name": 1}]}', '[]', '{"keys": ["release"]}'])
def test_key_manifest_of_the_wrong_shape(tmp_path: Path, keys: str) -> None:
    from airgap.errors import ConfigError
    from airgap.verification.trust import Trust

    trust = tmp_path
    (trust / "keys.json").write_text(keys)
    with pytest.raises(ConfigError, match="keys.json: not a key manifest"):
        Trust.load(trust)


@pytest.mark.parametrize("chain", ['[1]', '{"certificates": "ab"}', '{"certificates": [{}, 1]}'])
def test_sigstore_bundle_whose_certificate_chain_is_malformed(chain: str) -> None:
    """Found by Hypothesis: a non-object ``x509CertificateChain`` (or chain entry) reached ``.get``
    (AttributeError) in the check that refuses an embedded root."""
    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.checks.keyless import Identity
    from airgap.checks.outcome import KeylessAuthority
    from airgap.checks.roots import TrustedRoot

    raw = ('{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":'
           f'{{"x509CertificateChain":{chain}}},"messageSignature":{{}}}}').encode()
    authority = KeylessAuthority((Identity(subject="a@example.com", issuer="https://x"),), TrustedRoot.public_good())
    outcome = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=authority)
    assert not outcome.ok
    assert outcome.reason.startswith("bundle: "), outcome.reason
