"""Unit tests for airgap.checks.legacy and airgap.checks.bundle: each failure mode, with keys, a tiny Fulcio-like
CA, a Rekor key and a CT log made here (no network, no registry)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from airgap.checks import cosign
from airgap.checks.bundle import check_sigstore_bundle
from airgap.checks.keyless import Identity
from airgap.checks.legacy import check_attestation, check_simple_signing
from airgap.checks.outcome import KeyAuthority, KeylessAuthority
from airgap.checks.roots import TrustedRoot
from airgap.errors import ConfigError
from airgap.keys.private import KeySigner
from airgap.keys.public import spki_der

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # signing time
ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def der_len(n: int) -> bytes:
    return bytes([n]) if n < 128 else bytes([0x81, n]) if n < 256 else bytes([0x82]) + n.to_bytes(2, "big")


def der_utf8(text: str) -> bytes:
    raw = text.encode()
    return bytes([0x0C]) + der_len(len(raw)) + raw


@dataclass
class Pki:
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    rekor: ec.EllipticCurvePrivateKey
    ct: ec.EllipticCurvePrivateKey
    root: TrustedRoot

    def log_id(self, key: ec.EllipticCurvePrivateKey) -> bytes:
        return hashlib.sha256(spki_der(key.public_key())).digest()

    def leaf(self, *, subject: str = SUBJECT, issuer: str | None = ISSUER, sct: bool = True,
             ct_key: ec.EllipticCurvePrivateKey | None = None, not_before: datetime = T0 - timedelta(minutes=1),
             ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
             ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        ca_key, ca_cert = ca or (self.ca_key, self.ca)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_before + timedelta(minutes=10))
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.UniformResourceIdentifier(subject)] if "://" in subject else [x509.RFC822Name(subject)]),
                       True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False))
        if issuer is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), der_utf8(issuer)), False)
        if not sct:
            return key, builder.sign(ca_key, hashes.SHA256())
        pre = builder.sign(ca_key, hashes.SHA256())
        ct = ct_key or self.ct
        millis = int(not_before.timestamp() * 1000)
        issuer_hash = hashlib.sha256(spki_der(ca_key.public_key())).digest()
        tbs = pre.tbs_certificate_bytes
        signed = (struct.pack("!BBQH", 0, 0, millis, 1) + issuer_hash + len(tbs).to_bytes(3, "big") + tbs
                  + struct.pack("!H", 0))
        sig = ct.sign(signed, ec.ECDSA(hashes.SHA256()))
        one = bytes([0]) + self.log_id(ct) + struct.pack("!QH", millis, 0) + bytes([4, 3]) + struct.pack(
            "!H", len(sig)) + sig
        tls = struct.pack("!H", len(one) + 2) + struct.pack("!H", len(one)) + one
        value = bytes([0x04]) + der_len(len(tls)) + tls
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"), value), False)
        return key, builder.sign(ca_key, hashes.SHA256())

    def set_annotation(self, body: dict[str, Any], *, when: datetime = T0,
                       key: ec.EllipticCurvePrivateKey | None = None, tamper: bool = False) -> str:
        payload = {"body": b64(json.dumps(body).encode()), "integratedTime": int(when.timestamp()),
                   "logID": self.log_id(self.rekor).hex(), "logIndex": 42}
        sig = (key or self.rekor).sign(rfc8785.dumps(payload), ec.ECDSA(hashes.SHA256()))
        if tamper:
            payload["logIndex"] = 43
        return json.dumps({"SignedEntryTimestamp": b64(sig), "Payload": payload})


def ca_cert(key: ec.EllipticCurvePrivateKey, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(T0 - timedelta(days=365))
            .not_valid_after(T0 + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA384()))


def root_json(ca: x509.Certificate, rekor: ec.EllipticCurvePrivateKey, ct: ec.EllipticCurvePrivateKey,
              **overrides: Any) -> bytes:
    def log(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
        spki = spki_der(key.public_key())
        return {"baseUrl": "https://log.example", "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(spki), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": "2020-01-01T00:00:00Z"}},
                "logId": {"keyId": b64(hashlib.sha256(spki).digest())}}
    doc = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
           "tlogs": [log(rekor)], "ctlogs": [log(ct)],
           "certificateAuthorities": [{"subject": {"organization": "t", "commonName": "t"}, "uri": "https://ca",
                                       "certChain": {"certificates": [{"rawBytes": b64(ca.public_bytes(
                                           serialization.Encoding.DER))}]},
                                       "validFor": {"start": "2020-01-01T00:00:00Z"}}],
           "timestampAuthorities": []}
    doc.update(overrides)
    return json.dumps(doc).encode()


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = ca_cert(ca_key, "test-fulcio")
    rekor, ct = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    return Pki(ca_key, ca, rekor, ct, TrustedRoot.from_bytes(root_json(ca, rekor, ct)))


@pytest.fixture(scope="module")
def signer() -> KeySigner:
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


def pem(obj: x509.Certificate | ec.EllipticCurvePublicKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def hashedrekord(data: bytes, sig: bytes, public_pem: bytes) -> dict[str, Any]:
    return {"apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {"data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(data).hexdigest()}},
                     "signature": {"content": b64(sig), "publicKey": {"content": b64(public_pem)}}}}


PAYLOAD = cosign.simple_signing_payload("registry.example/app", DIGEST)


# ---- key-based legacy signatures -------------------------------------------------------------------

def test_key_signature_ok(signer: KeySigner) -> None:
    sig = signer.sign(PAYLOAD)
    out = check_simple_signing(PAYLOAD, b64(sig), {}, expected_digest=DIGEST,
                               authority=KeyAuthority((signer.public_key,)))
    assert out.ok, out.reason
    assert out.kind == "key" and out.signed_digest == DIGEST and out.docker_reference == "registry.example/app"
    assert out.key_id and out.key_id.startswith("sha256:")
    assert [c.name for c in out.checks] == ["signature", "digest"]


def test_key_wrong_key_tampered_payload_and_digest(signer: KeySigner) -> None:
    sig, mine = b64(signer.sign(PAYLOAD)), KeyAuthority((signer.public_key,))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    out = check_simple_signing(PAYLOAD, sig, {}, expected_digest=DIGEST, authority=KeyAuthority((other,)))
    assert not out.ok and out.reason.startswith("signature:")
    tampered = cosign.simple_signing_payload("registry.example/app", OTHER)
    out = check_simple_signing(tampered, sig, {}, expected_digest=OTHER, authority=KeyAuthority((signer.public_key,)))
    assert not out.ok and out.reason.startswith("signature:")
    out = check_simple_signing(PAYLOAD, sig, {}, expected_digest=OTHER, authority=KeyAuthority((signer.public_key,)))
    assert not out.ok and out.reason.startswith("digest:") and OTHER in out.reason
    out = check_simple_signing(b"{not json", sig, {}, expected_digest=DIGEST, authority=mine)
    assert not out.ok and out.reason.startswith("payload:")
    out = check_simple_signing(PAYLOAD, "%%%", {}, expected_digest=DIGEST, authority=mine)
    assert not out.ok and "base64" in out.reason


def test_key_with_rekor_set(signer: KeySigner, pki: Pki) -> None:
    sig = signer.sign(PAYLOAD)
    auth = KeyAuthority((signer.public_key,))
    good = pki.set_annotation(hashedrekord(PAYLOAD, sig, pem(signer.public_key)))
    out = check_simple_signing(PAYLOAD, b64(sig), {cosign.ANN_BUNDLE: good}, expected_digest=DIGEST, authority=auth,
                               trusted_root=pki.root, require_tlog=True)
    assert out.ok, out.reason
    assert out.integrated_time == int(T0.timestamp())
    # a SET whose signature does not cover the payload it comes with
    bad = pki.set_annotation(hashedrekord(PAYLOAD, sig, pem(signer.public_key)), tamper=True)
    out = check_simple_signing(PAYLOAD, b64(sig), {cosign.ANN_BUNDLE: bad}, expected_digest=DIGEST, authority=auth,
                               trusted_root=pki.root)
    assert not out.ok and out.reason == "tlog: Rekor SET signature does not verify"
    # a valid SET, but for another signature: cannot be replayed
    other_sig = signer.sign(PAYLOAD + b" ")
    replay = pki.set_annotation(hashedrekord(PAYLOAD, other_sig, pem(signer.public_key)))
    out = check_simple_signing(PAYLOAD, b64(sig), {cosign.ANN_BUNDLE: replay}, expected_digest=DIGEST,
                               authority=auth, trusted_root=pki.root)
    assert not out.ok and "not this signature" in out.reason
    # signed by a key that is not the trusted Rekor key
    forged = pki.set_annotation(hashedrekord(PAYLOAD, sig, pem(signer.public_key)),
                                key=ec.generate_private_key(ec.SECP256R1()))
    out = check_simple_signing(PAYLOAD, b64(sig), {cosign.ANN_BUNDLE: forged}, expected_digest=DIGEST,
                               authority=auth, trusted_root=pki.root)
    assert not out.ok and out.reason.startswith("tlog:")
    # required but absent
    out = check_simple_signing(PAYLOAD, b64(sig), {}, expected_digest=DIGEST, authority=auth,
                               trusted_root=pki.root, require_tlog=True)
    assert not out.ok and "required" in out.reason


def test_warm_key_check_is_fast(signer: KeySigner) -> None:
    sig, auth = b64(signer.sign(PAYLOAD)), KeyAuthority((signer.public_key,))
    check_simple_signing(PAYLOAD, sig, {}, expected_digest=DIGEST, authority=auth)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        assert check_simple_signing(PAYLOAD, sig, {}, expected_digest=DIGEST, authority=auth).ok
    per_check = (time.perf_counter() - start) / n
    assert per_check < 0.005, f"{per_check * 1000:.2f} ms per warm key-based check"


# ---- keyless legacy signatures ---------------------------------------------------------------------

def keyless_annotations(pki: Pki, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate, payload: bytes = PAYLOAD,
                        *, when: datetime = T0, with_set: bool = True) -> tuple[str, dict[str, str]]:
    sig = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    ann = {cosign.ANN_CERTIFICATE: pem(cert).decode()}
    if with_set:
        ann[cosign.ANN_BUNDLE] = pki.set_annotation(hashedrekord(payload, sig, pem(cert)), when=when)
    return b64(sig), ann


def test_keyless_ok(pki: Pki) -> None:
    key, cert = pki.leaf()
    sig, ann = keyless_annotations(pki, key, cert)
    auth = KeylessAuthority((Identity(issuer=ISSUER, subject=SUBJECT),), pki.root)
    out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST, authority=auth, require_tlog=True)
    assert out.ok, out.reason
    assert (out.kind, out.identity, out.issuer) == ("keyless", SUBJECT, ISSUER)
    assert [c.name for c in out.checks] == ["tlog", "chain", "sct", "identity", "signature", "digest"]


def test_keyless_expired_certificate(pki: Pki) -> None:
    key, cert = pki.leaf()
    auth = KeylessAuthority((Identity(issuer=ISSUER, subject=SUBJECT),), pki.root)
    # no tlog: the certificate must be valid now, and a 10-minute Fulcio certificate is not
    sig, ann = keyless_annotations(pki, key, cert, with_set=False)
    out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST, authority=auth)
    assert not out.ok and out.reason.startswith("chain:")
    out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST, authority=auth, now=T0)
    assert out.ok, out.reason
    # logged after the certificate expired
    sig, ann = keyless_annotations(pki, key, cert, when=T0 + timedelta(hours=1))
    out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST, authority=auth)
    assert not out.ok and out.reason.startswith("chain:")


def test_keyless_identity_and_regexp_full_match(pki: Pki) -> None:
    key, cert = pki.leaf()
    sig, ann = keyless_annotations(pki, key, cert)

    def check(*identities: Identity) -> str:
        out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST,
                                   authority=KeylessAuthority(identities, pki.root))
        return "ok" if out.ok else out.reason

    assert check(Identity(issuer=ISSUER, subject_regexp=r"https://github\.com/acme/.*")) == "ok"
    assert check(Identity(issuer=ISSUER, subject="someone@example.com"),
                 Identity(issuer_regexp=r"https://token\.actions\..*", subject=SUBJECT)) == "ok"
    # regexps match the WHOLE string: a prefix or a substring is not enough
    assert check(Identity(issuer=ISSUER, subject_regexp=r"https://github\.com/acme")).startswith("identity:")
    assert check(Identity(issuer_regexp="token", subject=SUBJECT)).startswith("identity:")
    assert check(Identity(issuer="https://accounts.google.com", subject=SUBJECT)).startswith("identity:")
    assert check(Identity()).startswith("identity:")  # constrains nothing: matches nothing


def test_identity_matches() -> None:
    assert Identity(subject="a@b.c").matches("a@b.c", None)
    assert not Identity(subject="a@b.c", issuer="x").matches("a@b.c", None)
    assert not Identity(subject="a@b.c", issuer_regexp=".*").matches("a@b.c", None)
    assert Identity(subject_regexp="[a-z]+@b\\.c").matches("abc@b.c", "x")
    assert not Identity(subject_regexp="[a-z]+@b\\.c").matches("abc@b.c.evil", "x")
    assert not Identity(subject_regexp="(").matches("(", "x")  # a broken pattern matches nothing


def test_keyless_sct(pki: Pki) -> None:
    auth = KeylessAuthority((Identity(issuer=ISSUER, subject=SUBJECT),), pki.root)
    key, cert = pki.leaf(sct=False)
    sig, ann = keyless_annotations(pki, key, cert)
    out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST, authority=auth)
    assert not out.ok and out.reason == "sct: certificate has no embedded SCT"
    out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST, authority=auth, require_sct=False)
    assert out.ok, out.reason
    key, cert = pki.leaf(ct_key=ec.generate_private_key(ec.SECP256R1()))  # a CT log the root does not know
    sig, ann = keyless_annotations(pki, key, cert)
    out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST, authority=auth)
    assert not out.ok and out.reason.startswith("sct: unknown CT log")


def test_keyless_untrusted_ca_and_wrong_signature(pki: Pki) -> None:
    auth = KeylessAuthority((Identity(issuer=ISSUER, subject=SUBJECT),), pki.root)
    rogue_key = ec.generate_private_key(ec.SECP384R1())
    key, cert = pki.leaf(ca=(rogue_key, ca_cert(rogue_key, "test-fulcio")))
    sig, ann = keyless_annotations(pki, key, cert)
    out = check_simple_signing(PAYLOAD, sig, ann, expected_digest=DIGEST, authority=auth)
    assert not out.ok and out.reason.startswith("chain:")
    key, cert = pki.leaf()
    _, ann = keyless_annotations(pki, key, cert)
    out = check_simple_signing(PAYLOAD, b64(b"\x30\x00"), ann, expected_digest=DIGEST, authority=auth)
    assert not out.ok and out.reason.startswith("tlog:")  # the logged signature is not this one
    out = check_simple_signing(PAYLOAD, b64(b"\x30\x00"), {cosign.ANN_CERTIFICATE: ann[cosign.ANN_CERTIFICATE]},
                               expected_digest=DIGEST, authority=auth, now=T0)
    assert not out.ok and out.reason.startswith("signature:")
    out = check_simple_signing(PAYLOAD, b64(b"x"), {}, expected_digest=DIGEST, authority=auth)
    assert not out.ok and out.reason.startswith("certificate:")


# ---- legacy attestations ---------------------------------------------------------------------------

def envelope(sign: Any, digest: str = DIGEST, ptype: str = "https://slsa.dev/provenance/v0.2") -> bytes:
    payload = cosign.statement("registry.example/app", digest, ptype, {"builder": {"id": "x"}})
    env = cosign.Envelope(cosign.DSSE_PAYLOAD_TYPE_INTOTO, payload, (("", sign(cosign.pae(
        cosign.DSSE_PAYLOAD_TYPE_INTOTO, payload))),))
    return json.dumps(env.to_json()).encode()


def test_attestation_key(signer: KeySigner) -> None:
    auth = KeyAuthority((signer.public_key,))
    env = envelope(signer.sign)
    out = check_attestation(env, {}, expected_digest=DIGEST, authority=auth, predicate_type="slsaprovenance")
    assert out.ok, out.reason
    assert out.statement is not None and out.statement.predicate_type == "https://slsa.dev/provenance/v0.2"
    out = check_attestation(env, {}, expected_digest=DIGEST, authority=auth, predicate_type="spdxjson")
    assert not out.ok and out.reason.startswith("predicate:")
    out = check_attestation(env, {}, expected_digest=OTHER, authority=auth)
    assert not out.ok and out.reason.startswith("digest:")
    other = KeySigner(ec.generate_private_key(ec.SECP256R1()))
    out = check_attestation(envelope(other.sign), {}, expected_digest=DIGEST, authority=auth)
    assert not out.ok and out.reason.startswith("signature:")


def test_attestation_keyless(pki: Pki) -> None:
    key, cert = pki.leaf()
    env = envelope(lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())))
    payload = cosign.Envelope.from_bytes(env).payload
    body = {"apiVersion": "0.0.1", "kind": "intoto",
            "spec": {"content": {"payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                     "publicKey": b64(pem(cert))}}
    ann = {cosign.ANN_CERTIFICATE: pem(cert).decode(), cosign.ANN_BUNDLE: pki.set_annotation(body)}
    auth = KeylessAuthority((Identity(issuer=ISSUER, subject=SUBJECT),), pki.root)
    out = check_attestation(env, ann, expected_digest=DIGEST, authority=auth, require_tlog=True)
    assert out.ok, out.reason
    body["spec"]["content"]["payloadHash"]["value"] = "00" * 32
    ann[cosign.ANN_BUNDLE] = pki.set_annotation(body)
    out = check_attestation(env, ann, expected_digest=DIGEST, authority=auth)
    assert not out.ok and "payloadHash" in out.reason


# ---- sigstore bundles (managed key; certificate bundles are covered by the conformance vectors) --------

def key_bundle(signer: KeySigner, artifact: bytes, *, dsse: bytes | None = None) -> bytes:
    vm = {"publicKey": {"hint": "k"}, "tlogEntries": []}
    doc: dict[str, Any] = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": vm}
    if dsse is not None:
        doc["dsseEnvelope"] = json.loads(dsse)
    else:
        doc["messageSignature"] = {"messageDigest": {"algorithm": "SHA2_256",
                                                     "digest": b64(hashlib.sha256(artifact).digest())},
                                   "signature": b64(signer.sign(artifact))}
    return json.dumps(doc).encode()


def test_bundle_managed_key_without_tlog(signer: KeySigner, pki: Pki) -> None:
    auth = KeyAuthority((signer.public_key,))
    raw = key_bundle(signer, PAYLOAD)
    out = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=auth, artifact=PAYLOAD, require_tlog=False)
    assert out.ok, out.reason
    assert out.kind == "bundle-key" and out.signed_digest == DIGEST
    # the digest alone is enough for a prehashed ECDSA check
    out = check_sigstore_bundle(raw, expected_digest=OTHER, authority=auth, require_tlog=False)
    assert not out.ok and out.reason.startswith("digest:")
    out = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=auth, artifact=PAYLOAD)
    assert not out.ok and out.reason.startswith("tlog:")  # require_tlog defaults to True for bundles
    other = KeyAuthority((ec.generate_private_key(ec.SECP256R1()).public_key(),))
    out = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=other, artifact=PAYLOAD, require_tlog=False)
    assert not out.ok and out.reason.startswith("signature:")
    out = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=KeylessAuthority((Identity(subject="x"),),
                                pki.root), artifact=PAYLOAD, require_tlog=False)
    assert not out.ok and out.reason.startswith("authority:")


def test_bundle_managed_key_dsse(signer: KeySigner) -> None:
    auth = KeyAuthority((signer.public_key,))
    raw = key_bundle(signer, b"", dsse=envelope(signer.sign))
    out = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=auth, require_tlog=False)
    assert out.ok, out.reason
    out = check_sigstore_bundle(raw, expected_digest=OTHER, authority=auth, require_tlog=False)
    assert not out.ok and out.reason.startswith("digest:")


def test_bundle_malformed(signer: KeySigner) -> None:
    auth = KeyAuthority((signer.public_key,))
    for raw, why in ((b"{", "not valid JSON"), (b"[]", "no verificationMaterial"),
                     (json.dumps({"mediaType": "x", "verificationMaterial": {}}).encode(), "mediaType")):
        out = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=auth)
        assert not out.ok and why in out.reason


# ---- trusted roots ---------------------------------------------------------------------------------

def test_public_good_root_loads_offline() -> None:
    root = TrustedRoot.public_good()
    assert root.fulcio and root.tlogs and root.ctlogs
    assert root.tlog_key(base64.b64decode("wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0=")) is not None
    assert root.to_sigstore() is root.to_sigstore()  # built once


def test_root_rejects_missing_validity_start(pki: Pki) -> None:
    doc = json.loads(root_json(pki.ca, pki.rekor, pki.ct))
    del doc["tlogs"][0]["publicKey"]["validFor"]["start"]
    with pytest.raises(ConfigError, match="validFor needs a start"):
        TrustedRoot.from_bytes(json.dumps(doc).encode())
    with pytest.raises(ConfigError, match="mediaType"):
        TrustedRoot.from_bytes(json.dumps({"mediaType": "x"}).encode())
    with pytest.raises(ConfigError, match="JSON"):
        TrustedRoot.from_bytes(b"{")
