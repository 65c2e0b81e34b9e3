"""RFC 3161 signed timestamps: is this TimeStampResp over these bytes, from a TSA the trusted root names?

cosign v2 stores one next to a legacy signature in the ``dev.sigstore.cosign/rfc3161timestamp`` layer
annotation (``{"SignedRFC3161Timestamp": base64 DER TimeStampResp}``), made over the raw signature bytes
(for attestations: over the DSSE envelope, the layer's payload). A verified timestamp proves the signature
existed at ``genTime``, so that time may stand in for "now" when checking a short-lived Fulcio certificate,
and a policy may demand one instead of a transparency-log entry (policy-controller's ``rfc3161timestamp``).

Trust comes only from ``trusted_root.json``'s ``timestampAuthorities``: each entry's chain (leaf first,
then intermediates, then the root) and its ``validFor``. The token's CMS signature and chain are checked at
``genTime`` by ``rfc3161-client`` (the library sigstore-python uses), which also demands the critical
id-kp-timeStamping EKU on the signer; ``genTime`` must then fall inside the authority's validity, a closed
interval as everywhere in :mod:`airgap.checks.roots`. The responder is untrusted: anything malformed, unsigned,
or about other bytes is a :class:`TimestampError` with a one-line reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from airgap.errors import VerificationError
from airgap.jsondoc import load_json

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from rfc3161_client import TimeStampResponse

    from airgap.checks.roots import Authority, TrustedRoot

__all__ = ["SignedTimestamp", "TimestampError", "parse_annotation", "verify_annotation", "verify_timestamp"]

_MAX_RESPONSE = 64 * 1024  # a TimeStampResp with a short chain is ~1-4 KiB
_HASHES = {"2.16.840.1.101.3.4.2.1": hashlib.sha256, "2.16.840.1.101.3.4.2.2": hashlib.sha384,
           "2.16.840.1.101.3.4.2.3": hashlib.sha512}


class TimestampError(VerificationError):
    """The signed timestamp is malformed, untrusted, outside its TSA's validity, or over other data."""


@dataclass(frozen=True)
class SignedTimestamp:
    """A verified RFC 3161 timestamp: when, and which TSA (its leaf certificate's subject) said so."""

    time: datetime
    tsa: str
    serial: int

    def describe(self) -> str:
        return f"{self.time.strftime('%Y-%m-%dT%H:%M:%SZ')} by {self.tsa}"


def parse_annotation(value: str | bytes) -> bytes:
    """The DER TimeStampResp inside cosign's ``rfc3161timestamp`` annotation JSON."""
    doc = load_json(value, "rfc3161timestamp annotation", TimestampError, invalid="{what} is not JSON")
    raw = doc.get("SignedRFC3161Timestamp") if isinstance(doc, dict) else None
    if not isinstance(raw, str) or not raw:
        raise TimestampError("rfc3161timestamp annotation has no SignedRFC3161Timestamp")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise TimestampError("rfc3161timestamp annotation: SignedRFC3161Timestamp is not valid base64") from None


def verify_annotation(value: str | bytes, data: bytes, root: TrustedRoot) -> SignedTimestamp:
    """:func:`verify_timestamp` for cosign's annotation JSON."""
    return verify_timestamp(parse_annotation(value), data, root)


def _decode(response: bytes) -> TimeStampResponse:
    from rfc3161_client import PKIStatus, decode_timestamp_response

    if len(response) > _MAX_RESPONSE:
        raise TimestampError(f"timestamp response is {len(response)} bytes, more than {_MAX_RESPONSE}")
    try:
        tsr = decode_timestamp_response(response)
        status = tsr.status
        info = tsr.tst_info
        algorithm, imprint, _ = info.message_imprint.hash_algorithm, info.message_imprint.message, info.gen_time
    except ValueError as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise TimestampError(f"malformed timestamp response ({detail})") from None
    if status != PKIStatus.GRANTED:
        raise TimestampError(f"the TSA did not grant the timestamp (PKIStatus {status})")
    if algorithm.dotted_string not in _HASHES:
        raise TimestampError(f"timestamp uses an unsupported hash algorithm {algorithm.dotted_string}")
    if not imprint:
        raise TimestampError("timestamp has an empty message imprint")
    return tsr


def _leaf(tsa: Authority, tsr: TimeStampResponse) -> Certificate | None:
    """The TSA's signing certificate: from the trusted root's chain, else the one the token embeds."""
    from cryptography import x509

    if len(tsa.certificates) >= 2:
        return tsa.certificates[0]
    signers = tsr.signed_data.signer_infos
    for der in tsr.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if any(cert.issuer == s.issuer and cert.serial_number == s.serial_number for s in signers):
            return cert
    return None


def _verify_with(tsa: Authority, tsr: TimeStampResponse, data: bytes) -> Certificate:
    """Check the token's signature and chain against one TSA; its leaf on success, TimestampError if not."""
    from rfc3161_client import VerificationError as Rfc3161Error
    from rfc3161_client import VerifierBuilder

    chain = tsa.certificates
    builder = VerifierBuilder()
    if len(chain) >= 2:  # leaf, intermediates..., root (as sigstore-python reads a TSA entry)
        builder = builder.tsa_certificate(chain[0])
        for cert in chain[1:-1]:
            builder = builder.add_intermediate_certificate(cert)
    builder = builder.add_root_certificate(chain[-1])
    try:
        builder.build().verify_message(tsr, data)
    except (Rfc3161Error, ValueError) as exc:
        raise TimestampError(str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__) from None
    leaf = _leaf(tsa, tsr)
    if leaf is None:  # pragma: no cover - verify_message already found the signer
        raise TimestampError("no TSA signing certificate")
    return leaf


def verify_timestamp(response: bytes, data: bytes, root: TrustedRoot) -> SignedTimestamp:
    """Verify a DER TimeStampResp over ``data`` against ``root``'s TSAs; the verified time and TSA.

    Raises :class:`TimestampError` (one line) when the root has no TSA, the response is malformed or not
    granted, its message imprint is not the hash of ``data``, no TSA's chain verifies it, or its time is
    outside the validity of every TSA that does.
    """
    if not root.tsas:
        raise TimestampError("the trusted root has no timestamp authorities to verify a signed timestamp")
    tsr = _decode(response)
    info = tsr.tst_info
    digest = _HASHES[info.message_imprint.hash_algorithm.dotted_string](data).digest()
    if info.message_imprint.message != digest:
        raise TimestampError("message imprint mismatch: the timestamp is over other data")
    when = info.gen_time
    reasons = []
    for i, tsa in enumerate(root.tsas):
        try:
            leaf = _verify_with(tsa, tsr, data)
        except TimestampError as exc:
            reasons.append(f"TSA {i}: {exc}")
            continue
        subject = leaf.subject.rfc4514_string()
        if not tsa.validity.contains(when):
            end = tsa.validity.end.isoformat() if tsa.validity.end else "open"
            reasons.insert(0, f"timestamp time {when.isoformat()} is outside the validity of TSA {subject} "
                              f"({tsa.validity.start.isoformat()} .. {end})")
            continue
        return SignedTimestamp(when, subject, info.serial_number)
    if reasons and reasons[0].startswith("timestamp time"):
        raise TimestampError(reasons[0])
    raise TimestampError("not signed by a timestamp authority in the trusted root ("
                         + "; ".join(reasons)[:240] + ")")
