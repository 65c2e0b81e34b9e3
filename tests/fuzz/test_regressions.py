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


P256 = bytes.fromhex("2a8648ce3d030107")  # the DER of 1.2.840.10045.3.1.7 (prime256v1)
UNKNOWN_CURVE = bytes.fromhex("2a8648ce3d050107")  # a curve OID no library knows


def _unknown_curve_pem(kind: str) -> bytes:
    import base64
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    if kind == "PUBLIC KEY":
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
        now = datetime.datetime.now(datetime.UTC)
        der = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
               .sign(ec.generate_private_key(ec.SECP384R1()), hashes.SHA384())
               .public_bytes(serialization.Encoding.DER))
    assert der.count(P256) == 1
    body = base64.encodebytes(der.replace(P256, UNKNOWN_CURVE)).decode()
    return f"-----BEGIN {kind}-----\n{body}-----END {kind}-----\n".encode()


def test_public_key_of_an_unknown_algorithm() -> None:
    """Found by Hypothesis: cryptography's UnsupportedAlgorithm (not a ValueError) escaped the PEM readers."""
    from airgap.errors import ConfigError
    from airgap.keys.public import load_public_key, load_public_keys_pem

    with pytest.raises(ConfigError, match="^k: not a PEM public key"):
        load_public_key(_unknown_curve_pem("PUBLIC KEY"), "k")
    with pytest.raises(ConfigError, match="^k: cannot parse PUBLIC KEY"):
        load_public_keys_pem(_unknown_curve_pem("PUBLIC KEY"), "k")
    with pytest.raises(ConfigError, match="^k: cannot parse CERTIFICATE"):
        load_public_keys_pem(_unknown_curve_pem("CERTIFICATE"), "k")


def test_keyless_signature_whose_certificate_key_is_of_an_unknown_algorithm() -> None:
    """The same through a legacy keyless signature: the certificate annotation is untrusted registry data."""
    from airgap.checks.cosign import ANN_CERTIFICATE, simple_signing_payload
    from airgap.checks.keyless import CertError, Identity, load_certificates
    from airgap.checks.legacy import check_simple_signing
    from airgap.checks.outcome import KeylessAuthority
    from airgap.checks.roots import TrustedRoot

    pem = _unknown_curve_pem("CERTIFICATE")
    with pytest.raises(CertError, match="^certificate: unsupported public key"):
        load_certificates(pem, "certificate")
    authority = KeylessAuthority((Identity(subject="a@example.com", issuer="https://x"),), TrustedRoot.public_good())
    outcome = check_simple_signing(simple_signing_payload("r/x", DIGEST), "AA==", {ANN_CERTIFICATE: pem.decode()},
                                   expected_digest=DIGEST, authority=authority)
    assert not outcome.ok and outcome.reason.startswith("certificate: unsupported public key (Curve"), outcome.reason


@pytest.mark.parametrize(("pod", "where"), [
    ('"spec": {"containers": 6.78e16}', r"items\[0\].spec.containers is not a list"),  # found by Hypothesis
    ('"status": {"containerStatuses": 396413497}', r"items\[0\].status.containerStatuses is not a list"),
])
def test_pods_file_lists_of_the_wrong_type(pod: str, where: str) -> None:
    """Found by Hypothesis: a number where a pod's containers (or their statuses) go was iterated (TypeError)."""
    from airgap.audit.inputs import parse_pods
    from airgap.errors import IntegrityError

    with pytest.raises(IntegrityError, match=rf"^pods file: {where}$"):
        parse_pods(('{"items": [{"metadata": {"name": "p"}, ' + pod + "}]}").encode())


def test_sigstore_bundle_whose_certificate_has_a_malformed_extension() -> None:
    """Found by Hypothesis: sigstore-python reads a bundle's certificate without parsing its extensions, and
    the identity lookup then raised ValueError from ``cert.extensions``."""
    import base64
    import datetime
    import json

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtensionOID, NameOID
    from support.minisigstore import MiniSigstore

    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.checks.keyless import CertError, Identity, subject_of
    from airgap.checks.outcome import KeylessAuthority
    from airgap.checks.roots import TrustedRoot

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x02"),
                           critical=False)
            .sign(key, hashes.SHA256()))
    with pytest.raises(CertError, match="^certificate: malformed extension"):
        subject_of(cert)
    sigstore = MiniSigstore()
    doc = json.loads(sigstore.image_bundle(DIGEST, sigstore.issue("a@example.com", "https://x")))
    doc["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(
        cert.public_bytes(serialization.Encoding.DER)).decode()
    root = TrustedRoot.from_bytes(json.dumps(sigstore.trusted_root()).encode())
    authority = KeylessAuthority((Identity(subject="a@example.com", issuer="https://x"),), root)
    outcome = check_sigstore_bundle(json.dumps(doc).encode(), expected_digest=DIGEST, authority=authority)
    assert not outcome.ok and outcome.reason.startswith("identity: certificate: malformed extension"), outcome.reason


def test_certificate_with_a_duplicate_extension() -> None:
    """Found by Hypothesis: cryptography's DuplicateExtension (not a ValueError) escaped the identity lookup."""
    import base64
    import json

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from support.minisigstore import MiniSigstore

    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.checks.keyless import CertError, Identity, load_certificates
    from airgap.checks.outcome import KeylessAuthority
    from airgap.checks.roots import TrustedRoot

    sigstore = MiniSigstore()
    who = sigstore.issue("a@example.com", "https://x")
    der = who.certificate.public_bytes(serialization.Encoding.DER)
    aki, ski = b"\x06\x03\x55\x1d\x23", b"\x06\x03\x55\x1d\x0e"
    assert der.count(aki) == 1 and der.count(ski) == 1
    twice = der.replace(aki, ski)  # the authority key id now claims to be a second subject key id
    pem = x509.load_der_x509_certificate(twice).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CertError, match="^certificate: malformed extension .*Duplicate"):
        load_certificates(pem, "certificate")
    doc = json.loads(sigstore.image_bundle(DIGEST, who))
    doc["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(twice).decode()
    root = TrustedRoot.from_bytes(json.dumps(sigstore.trusted_root()).encode())
    authority = KeylessAuthority((Identity(subject="a@example.com", issuer="https://x"),), root)
    outcome = check_sigstore_bundle(json.dumps(doc).encode(), expected_digest=DIGEST, authority=authority)
    assert not outcome.ok and "Duplicate" in outcome.reason, outcome.reason


def test_certificate_of_an_invalid_version() -> None:
    """Found by Hypothesis: cryptography's InvalidVersion (not a ValueError) escaped sigstore-python's bundle
    reader; the same certificate reached airgap's own PEM readers."""
    import base64
    import json

    from cryptography.hazmat.primitives import serialization
    from support.minisigstore import MiniSigstore

    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.checks.keyless import CertError, Identity, load_certificates
    from airgap.checks.outcome import KeylessAuthority
    from airgap.checks.roots import TrustedRoot
    from airgap.errors import ConfigError
    from airgap.keys.public import load_public_keys_pem

    sigstore = MiniSigstore()
    who = sigstore.issue("a@example.com", "https://x")
    der = who.certificate.public_bytes(serialization.Encoding.DER)
    v3, v56 = bytes.fromhex("a003020102"), bytes.fromhex("a003020137")
    assert der.count(v3) == 1
    bad = der.replace(v3, v56)
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bad) + b"-----END CERTIFICATE-----\n"
    with pytest.raises(CertError, match="^certificate: not a PEM certificate$"):
        load_certificates(pem, "certificate")
    with pytest.raises(ConfigError, match="^k: cannot parse CERTIFICATE"):
        load_public_keys_pem(pem, "k")
    doc = json.loads(sigstore.image_bundle(DIGEST, who))
    doc["verificationMaterial"]["certificate"]["rawBytes"] = base64.b64encode(bad).decode()
    root = TrustedRoot.from_bytes(json.dumps(sigstore.trusted_root()).encode())
    authority = KeylessAuthority((Identity(subject="a@example.com", issuer="https://x"),), root)
    outcome = check_sigstore_bundle(json.dumps(doc).encode(), expected_digest=DIGEST, authority=authority)
    assert not outcome.ok and outcome.reason.startswith("bundle: "), outcome.reason


def test_inspect_summary_of_a_policy_of_the_wrong_shape() -> None:
    """Found while moving inspect to the strict loader (not by Hypothesis): a policy whose metadata is not a
    mapping raised AttributeError, and a YAML date in the settings made ``inspect --json`` fail to print."""
    import json

    from airgap.bundle.inspect import _policies

    text = (b"kind: ClusterImagePolicy\nmetadata: [x]\nspec: {images: abc, authorities: [{key: {}}]}\n---\n"
            b"kind: AirgapPolicy\nspec: {noMatchPolicy: 2024-01-01}\n")
    summary = _policies(text)
    assert summary == {"policies": [{"name": None, "images": [], "authorities": ["key"]}],
                       "settings": {"noMatchPolicy": "2024-01-01"}}
    json.dumps(summary)
