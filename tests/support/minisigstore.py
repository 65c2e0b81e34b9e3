"""A test-only "mini Sigstore": a Fulcio CA, a CT log and a Rekor log, all generated locally.

The public Sigstore services (Fulcio, CTFE, Rekor, TUF) cannot exist in an air-gapped test run, so this module
is the one allowed stand-in for them. It plays each service with keys it generates and produces REAL keyless
signatures in the exact wire formats real cosign and sigstore-python write and read:

- Fulcio: a P-384 root and intermediate; leaves with the code-signing EKU, a SAN (email or URI), the OIDC
  issuer in 1.3.6.1.4.1.57264.1.8 (DER UTF8String) and the legacy 1.3.6.1.4.1.57264.1.1 (raw bytes), a
  10-minute validity and an embedded SCT over the precertificate (RFC 6962 ``precert_entry``).
- Rekor (:mod:`support.minirekor`): an append-only in-memory log of canonicalized entry bodies (hashedrekord,
  intoto, dsse v0.0.1); each entry carries a SET (ECDSA over RFC 8785 JSON of body/integratedTime/logID/
  logIndex), an RFC 6962 inclusion proof and a signed checkpoint note.
- Outputs: cosign v2 legacy ``.sig``/``.att`` layer annotations, sigstore bundles v0.3, and a
  ``trusted_root.json`` (plus the PEM files cosign v2's ``SIGSTORE_*`` env overrides read).

Nothing here is product code; tests use it to prove airgap's keyless verification interoperates. Keys are
made once per :class:`MiniSigstore`; a signature costs a few milliseconds. :mod:`support.sigstoreserver` serves
the same Fulcio (:meth:`MiniSigstore.certify`) and Rekor over HTTP, for keyless *signing* tests.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from airgap.checks.cosign import (
    ANN_BUNDLE,
    ANN_CERTIFICATE,
    ANN_CHAIN,
    ANN_PREDICATE_TYPE,
    ANN_SIGNATURE,
    DSSE_PAYLOAD_TYPE_INTOTO,
    pae,
    simple_signing_payload,
    statement,
)
from support.minirekor import (
    LogEntry,
    RekorLog,
    audit_path,
    b64,
    leaf_hash,
    log_id,
    merkle_root,
    spki_der,
)
from support.minirekor import canonical as _canonical
from support.minirekor import ecdsa_sign as _ecdsa

__all__ = ["BUNDLE_V03_MEDIA_TYPE", "COSIGN_SIGN_PREDICATE", "OID_ISSUER_V1", "OID_ISSUER_V2", "KeylessIdentity",
           "LogEntry", "MiniSigstore", "RekorLog", "SignedLayer", "SigstoreFiles", "audit_path", "leaf_hash",
           "merkle_root"]

OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
BUNDLE_V03_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"  # what cosign v3 signs images with
INTOTO_V1 = "https://in-toto.io/Statement/v1"
LEAF_VALIDITY = datetime.timedelta(minutes=10)
SIGSTORE_TIME = "%Y-%m-%dT%H:%M:%SZ"


# ---- small encoders --------------------------------------------------------------------------------

def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_utf8string(text: str) -> bytes:
    raw = text.encode()
    return b"\x0c" + _der_len(len(raw)) + raw


def der_octet_string(raw: bytes) -> bytes:
    return b"\x04" + _der_len(len(raw)) + raw


def _u16(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _u24(data: bytes) -> bytes:
    return struct.pack("!I", len(data))[1:] + data


def spki_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC)


# ---- Fulcio identities ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeylessIdentity:
    """An ephemeral key and the Fulcio-like certificate binding it to ``identity`` at ``issuer``."""

    identity: str
    issuer: str
    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # intermediate, root

    @property
    def cert_pem(self) -> bytes:
        return cert_pem(self.certificate)

    @property
    def chain_pem(self) -> bytes:
        return b"".join(cert_pem(c) for c in self.chain)

    @property
    def not_before(self) -> int:
        return int(self.certificate.not_valid_before_utc.timestamp())

    @property
    def not_after(self) -> int:
        return int(self.certificate.not_valid_after_utc.timestamp())

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 / SHA-256 over ``data``, DER (what cosign and sigstore-python produce)."""
        return _ecdsa(self.private_key, data)

    def sign_digest(self, digest: bytes) -> bytes:
        return self.private_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))


class SignedLayer(NamedTuple):
    """A legacy cosign layer: its bytes, the raw signature, and the layer annotations."""

    payload: bytes
    signature: bytes
    annotations: dict[str, str]


@dataclass(frozen=True)
class SigstoreFiles:
    """Trust material on disk, for cosign's env overrides and ``--trusted-root``."""

    trusted_root: Path
    fulcio_root: Path
    fulcio_intermediate: Path
    fulcio_chain: Path  # intermediate + root: what SIGSTORE_ROOT_FILE takes
    ctlog_pub: Path
    rekor_pub: Path

    def cosign_env(self) -> dict[str, str]:
        """The env vars that point cosign v2 at this trust root instead of the public-good TUF repo."""
        return {"SIGSTORE_ROOT_FILE": str(self.fulcio_chain),
                "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(self.ctlog_pub),
                "SIGSTORE_REKOR_PUBLIC_KEY": str(self.rekor_pub)}


def _ca_cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
             issuer_key: ec.EllipticCurvePrivateKey, start: datetime.datetime, end: datetime.datetime,
             path_length: int | None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_key is not key:
        builder = (builder
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False))
    return builder.sign(issuer_key, hashes.SHA384())


class MiniSigstore:
    """Fulcio + CT log + Rekor with generated keys. Make one per test session; it is not thread-safe."""

    def __init__(self, *, now: float | None = None, name: str = "airgap-test") -> None:
        self.created = int(now if now is not None else time.time())
        start, end = _utc(self.created - 30 * 86400), _utc(self.created + 30 * 86400)
        self.valid_from = start
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.intermediate_key = ec.generate_private_key(ec.SECP384R1())
        self.ct_key = ec.generate_private_key(ec.SECP256R1())
        self.rekor_key = ec.generate_private_key(ec.SECP256R1())
        org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.dev")
        root_name = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-fulcio-root")])
        inter_name = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-fulcio-intermediate")])
        self.root_cert = _ca_cert(root_name, self.root_key, root_name, self.root_key, start, end, 1)
        self.intermediate_cert = _ca_cert(inter_name, self.intermediate_key, root_name, self.root_key, start, end, 0)
        self.rekor = RekorLog(self.rekor_key)

    # ---- trust material ------------------------------------------------------------------------------

    @property
    def ct_log_id(self) -> bytes:
        return log_id(self.ct_key.public_key())

    @property
    def rekor_log_id(self) -> bytes:
        return log_id(self.rekor_key.public_key())

    def trusted_root(self) -> dict[str, Any]:
        """A Sigstore ``trusted_root.json`` document (trustroot v1 protobuf JSON)."""
        valid = {"start": self.valid_from.strftime(SIGSTORE_TIME)}

        def tlog(url: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
            return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                    "publicKey": {"rawBytes": b64(spki_der(key.public_key())),
                                  "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": valid},
                    "logId": {"keyId": b64(log_id(key.public_key()))}}

        ders = [c.public_bytes(serialization.Encoding.DER) for c in (self.intermediate_cert, self.root_cert)]
        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [tlog("https://rekor.airgap.test", self.rekor_key)],
            "certificateAuthorities": [{
                "subject": {"organization": "sigstore.dev", "commonName": "airgap-test-fulcio"},
                "uri": "https://fulcio.airgap.test",
                "certChain": {"certificates": [{"rawBytes": b64(d)} for d in ders]},
                "validFor": valid,
            }],
            "ctlogs": [tlog("https://ctfe.airgap.test/test", self.ct_key)],
            "timestampAuthorities": [],
        }

    def trusted_root_json(self) -> bytes:
        return json.dumps(self.trusted_root(), indent=2).encode()

    def write_files(self, directory: Path) -> SigstoreFiles:
        directory.mkdir(parents=True, exist_ok=True)
        files = SigstoreFiles(directory / "trusted_root.json", directory / "fulcio_root.pem",
                              directory / "fulcio_intermediate.pem", directory / "fulcio_chain.pem",
                              directory / "ctfe.pub", directory / "rekor.pub")
        files.trusted_root.write_bytes(self.trusted_root_json())
        files.fulcio_root.write_bytes(cert_pem(self.root_cert))
        files.fulcio_intermediate.write_bytes(cert_pem(self.intermediate_cert))
        files.fulcio_chain.write_bytes(cert_pem(self.intermediate_cert) + cert_pem(self.root_cert))
        files.ctlog_pub.write_bytes(spki_pem(self.ct_key.public_key()))
        files.rekor_pub.write_bytes(spki_pem(self.rekor_key.public_key()))
        return files

    # ---- Fulcio ----------------------------------------------------------------------------------------

    def issue(self, identity: str, issuer: str, *, san_kind: str = "email",
              not_before: datetime.datetime | float | None = None) -> KeylessIdentity:
        """A Fulcio-like code-signing certificate for a fresh P-256 key, with an embedded precert SCT."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.certify(key.public_key(), identity, issuer, san_kind=san_kind, not_before=not_before)
        return KeylessIdentity(identity, issuer, key, cert, (self.intermediate_cert, self.root_cert))

    def certify(self, public_key: Any, identity: str, issuer: str, *, san_kind: str = "email",
                not_before: datetime.datetime | float | None = None) -> x509.Certificate:
        """What Fulcio does once it trusts the caller: a 10-minute code-signing certificate for ``public_key``
        binding ``identity`` (email or URI SAN) and ``issuer``, with an embedded precert SCT."""
        if not_before is None:
            start = _utc(time.time() - 60).replace(microsecond=0)
        elif isinstance(not_before, datetime.datetime):
            start = not_before.astimezone(datetime.UTC).replace(microsecond=0)
        else:
            start = _utc(not_before).replace(microsecond=0)
        if san_kind == "email":
            san: x509.GeneralName = x509.RFC822Name(identity)
        elif san_kind == "uri":
            san = x509.UniformResourceIdentifier(identity)
        else:
            raise ValueError(f"san_kind must be 'email' or 'uri', not {san_kind!r}")
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.intermediate_cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + LEAF_VALIDITY)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V2, der_utf8string(issuer)), critical=False)
        )
        precert_tbs = builder.sign(self.intermediate_key, hashes.SHA384()).tbs_certificate_bytes
        sct = self._sct(precert_tbs, int(start.timestamp() * 1000))
        sct_list = _u16(_u16(sct))
        cert = builder.add_extension(x509.UnrecognizedExtension(OID_SCT_LIST, der_octet_string(sct_list)),
                                     critical=False).sign(self.intermediate_key, hashes.SHA384())
        if cert.tbs_precertificate_bytes != precert_tbs:  # the SCT would not verify: fail loudly here
            raise AssertionError("precertificate TBS changed when the SCT was embedded")
        return cert

    def _sct(self, precert_tbs: bytes, timestamp_ms: int) -> bytes:
        """A v1 SCT (TLS encoding) for a precert entry, signed by the CT log key."""
        issuer_key_hash = log_id(self.intermediate_key.public_key())
        extensions = b""
        signed = (struct.pack("!BBQH", 0, 0, timestamp_ms, 1) + issuer_key_hash + _u24(precert_tbs)
                  + _u16(extensions))
        signature = _ecdsa(self.ct_key, signed)
        # SHA-256 (4), ECDSA (3)
        return (b"\x00" + self.ct_log_id + struct.pack("!Q", timestamp_ms) + _u16(extensions)
                + b"\x04\x03" + _u16(signature))

    # ---- Rekor entries --------------------------------------------------------------------------------

    def _time(self, who: KeylessIdentity, integrated_time: int | None) -> int:
        if integrated_time is not None:
            return integrated_time
        return min(max(int(time.time()), who.not_before + 1), who.not_after - 1)

    def log_hashedrekord(self, who: KeylessIdentity, signature: bytes, sha256_digest: bytes, *,
                         integrated_time: int | None = None) -> LogEntry:
        spec = {"data": {"hash": {"algorithm": "sha256", "value": sha256_digest.hex()}},
                "signature": {"content": b64(signature), "publicKey": {"content": b64(who.cert_pem)}}}
        return self.rekor.append("hashedrekord", "0.0.1", spec, self._time(who, integrated_time))

    def log_intoto(self, who: KeylessIdentity, envelope: bytes, payload: bytes, *,
                   integrated_time: int | None = None) -> LogEntry:
        """An intoto v0.0.1 entry, as cosign v2 ``attest`` uploads (hash = SHA-256 of the envelope bytes)."""
        spec = {"content": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
                            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
                "publicKey": b64(who.cert_pem)}
        return self.rekor.append("intoto", "0.0.1", spec, self._time(who, integrated_time))

    def log_dsse(self, who: KeylessIdentity, envelope: dict[str, Any], payload: bytes, *,
                 integrated_time: int | None = None) -> LogEntry:
        """A dsse v0.0.1 entry (what sigstore bundles with DSSE envelopes carry)."""
        spec = {"envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(_canonical(envelope)).hexdigest()},
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                "signatures": [{"signature": s["sig"], "verifier": b64(who.cert_pem)}
                               for s in envelope["signatures"]]}
        return self.rekor.append("dsse", "0.0.1", spec, self._time(who, integrated_time))

    # ---- outputs ---------------------------------------------------------------------------------------

    def legacy_signature(self, image_ref: str, digest: str, who: KeylessIdentity, *,
                         optional: dict[str, Any] | None = None,
                         integrated_time: int | None = None) -> SignedLayer:
        """A cosign v2 keyless ``.sig`` layer: simple-signing payload, signature, cert, chain, Rekor bundle."""
        payload = simple_signing_payload(image_ref, digest, optional)
        signature = who.sign(payload)
        entry = self.log_hashedrekord(who, signature, hashlib.sha256(payload).digest(),
                                      integrated_time=integrated_time)
        return SignedLayer(payload, signature, {
            ANN_SIGNATURE: b64(signature),
            ANN_CERTIFICATE: who.cert_pem.decode(),
            ANN_CHAIN: who.chain_pem.decode(),
            ANN_BUNDLE: json.dumps(entry.cosign_bundle(), separators=(",", ":")),
        })

    def dsse_envelope(self, who: KeylessIdentity, payload: bytes,
                      payload_type: str = DSSE_PAYLOAD_TYPE_INTOTO) -> dict[str, Any]:
        return {"payloadType": payload_type, "payload": b64(payload),
                "signatures": [{"keyid": "", "sig": b64(who.sign(pae(payload_type, payload)))}]}

    def legacy_attestation(self, image_ref: str, digest: str, who: KeylessIdentity, *,
                           predicate_type: str = "https://cosign.sigstore.dev/attestation/v1",
                           predicate: Any = None, integrated_time: int | None = None) -> SignedLayer:
        """A cosign v2 keyless ``.att`` layer: a DSSE envelope over an in-toto statement, intoto Rekor entry."""
        payload = statement(image_ref, digest, predicate_type, predicate if predicate is not None else {})
        envelope_doc = self.dsse_envelope(who, payload)
        envelope = json.dumps(envelope_doc, separators=(",", ":")).encode()
        entry = self.log_intoto(who, envelope, payload, integrated_time=integrated_time)
        signature = base64.b64decode(envelope_doc["signatures"][0]["sig"])
        return SignedLayer(envelope, signature, {
            ANN_SIGNATURE: "",
            ANN_PREDICATE_TYPE: predicate_type,
            ANN_CERTIFICATE: who.cert_pem.decode(),
            ANN_CHAIN: who.chain_pem.decode(),
            ANN_BUNDLE: json.dumps(entry.cosign_bundle(), separators=(",", ":")),
        })

    def bundle(self, subject: bytes | str, who: KeylessIdentity, *, dsse_statement: bytes | None = None,
               payload_type: str = DSSE_PAYLOAD_TYPE_INTOTO, integrated_time: int | None = None) -> bytes:
        """A sigstore bundle v0.3.

        With ``dsse_statement``: a DSSE envelope over it and a dsse entry (``subject`` is then only
        informational). Otherwise a message signature over ``subject``: bytes are the artifact itself, a
        ``"sha256:<hex>"`` string is a prehashed digest (e.g. an image manifest digest).
        """
        content: dict[str, Any]
        if dsse_statement is not None:
            envelope = self.dsse_envelope(who, dsse_statement, payload_type)
            entry = self.log_dsse(who, envelope, dsse_statement, integrated_time=integrated_time)
            content = {"dsseEnvelope": envelope}
        else:
            if isinstance(subject, str):
                alg, _, hexpart = subject.partition(":")
                if alg != "sha256" or len(hexpart) != 64:
                    raise ValueError(f"subject digest must be sha256:<64 hex>, not {subject!r}")
                digest = bytes.fromhex(hexpart)
                signature = who.sign_digest(digest)
            else:
                digest = hashlib.sha256(subject).digest()
                signature = who.sign(subject)
            entry = self.log_hashedrekord(who, signature, digest, integrated_time=integrated_time)
            content = {"messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
                                            "signature": b64(signature)}}
        doc = {
            "mediaType": BUNDLE_V03_MEDIA_TYPE,
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(who.certificate.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [entry.tlog_entry()],
                "timestampVerificationData": {},
            },
            **content,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    def image_bundle(self, digest: str, who: KeylessIdentity, *, integrated_time: int | None = None) -> bytes:
        """What cosign v3 ``sign`` attaches to an image: a bundle whose DSSE envelope holds an in-toto v1
        statement with predicate type ``https://sigstore.dev/cosign/sign/v1`` about ``digest``."""
        alg, _, hexpart = digest.partition(":")
        doc = {"_type": INTOTO_V1, "subject": [{"digest": {alg: hexpart}}],
               "predicateType": COSIGN_SIGN_PREDICATE, "predicate": {}}
        return self.bundle(digest, who, dsse_statement=json.dumps(doc, separators=(",", ":")).encode(),
                           integrated_time=integrated_time)
