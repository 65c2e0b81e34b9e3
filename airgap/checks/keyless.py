"""Fulcio certificates, offline: chain to a trusted root at a time, the embedded SCT, identity and issuer.

Threat model: the certificate, its chain annotation and everything in them come from an untrusted
registry. Only the trusted root decides what is trusted; intermediates shipped with a signature are
used for path building, never as anchors. Every function raises :class:`CertError` (one line) when a
check fails, and returns what the caller reports as evidence when it passes.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from airgap.errors import VerificationError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate, Extensions
    from cryptography.x509.verification import ExtensionPolicy, Store

    from airgap.checks.roots import TrustedRoot

OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"  # raw string value (deprecated)
OID_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"  # DER UTF8String
OID_OTHERNAME_SAN = "1.3.6.1.4.1.57264.1.7"  # Fulcio's otherName SAN (UTF8String username)


class CertError(VerificationError):
    """A certificate check failed: the message names the check."""


@dataclass(frozen=True)
class Identity:
    """One keyless identity as policy-controller spells it. Exact fields compare for equality;
    regexps must match the WHOLE string (``re.fullmatch``). A field left None is not checked, but an
    identity that constrains nothing matches nothing (fail closed: say ``subject_regexp=".*"`` to
    accept any subject on purpose)."""

    issuer: str | None = None
    subject: str | None = None
    issuer_regexp: str | None = None
    subject_regexp: str | None = None

    def matches(self, subject: str, issuer: str | None) -> bool:
        if not any((self.issuer, self.subject, self.issuer_regexp, self.subject_regexp)):
            return False
        if self.subject is not None and subject != self.subject:
            return False
        if self.subject_regexp is not None and not _fullmatch(self.subject_regexp, subject):
            return False
        if self.issuer is not None and issuer != self.issuer:
            return False
        return self.issuer_regexp is None or (issuer is not None and _fullmatch(self.issuer_regexp, issuer))

    def __str__(self) -> str:
        def show(exact: str | None, regexp: str | None) -> str:
            return exact if exact is not None else f"~{regexp}" if regexp else "*"

        return f"{show(self.subject, self.subject_regexp)} from {show(self.issuer, self.issuer_regexp)}"


def _fullmatch(pattern: str, text: str) -> bool:
    try:
        return re.fullmatch(pattern, text) is not None
    except re.error:
        return False  # a broken pattern matches nothing; policy validation reports it


def load_certificates(pem: bytes | str, what: str) -> list[Certificate]:
    """Every PEM certificate in ``pem`` (at least one)."""
    from cryptography import x509

    from airgap.keys.public import parse_errors

    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(data)
    except parse_errors():
        raise CertError(f"{what}: not a PEM certificate") from None
    if not certs:
        raise CertError(f"{what}: no certificate")
    for cert in certs:
        try:
            _ = cert.extensions  # parse now: a malformed extension is untrusted input, not a crash later
        except parse_errors() as exc:
            raise CertError(f"{what}: malformed extension ({str(exc).splitlines()[0]})") from None
        try:
            cert.public_key()  # likewise its key: an unknown algorithm would raise UnsupportedAlgorithm later
        except parse_errors() as exc:
            raise CertError(f"{what}: unsupported public key ({str(exc).splitlines()[0]})") from None
    return certs


def _extensions(cert: Certificate) -> Extensions:
    """The certificate's extensions, parsed: a malformed one is untrusted input (CertError), not a crash.
    (A certificate from :func:`load_certificates` has had them parsed already; one from a sigstore bundle,
    read by sigstore-python, has not.)"""
    from airgap.keys.public import parse_errors

    try:
        return cert.extensions
    except parse_errors() as exc:
        raise CertError(f"certificate: malformed extension ({str(exc).splitlines()[0]})") from None


def subject_of(cert: Certificate) -> str:
    """The identity Fulcio bound: the first email, URI or otherName SAN."""
    from cryptography import x509

    try:
        san = _extensions(cert).get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertError("certificate has no subjectAltName identity") from None
    for name in san:
        if isinstance(name, x509.RFC822Name | x509.UniformResourceIdentifier):
            return str(name.value)
        if isinstance(name, x509.OtherName) and name.type_id.dotted_string == OID_OTHERNAME_SAN:
            return _der_utf8(name.value)
    raise CertError("certificate has no email, URI or otherName identity")


def issuer_of(cert: Certificate) -> str | None:
    """The OIDC issuer Fulcio recorded (1.3.6.1.4.1.57264.1.8, else the deprecated .1.1), or None."""
    from cryptography import x509

    values = {ext.oid.dotted_string: ext.value for ext in _extensions(cert)}
    v2 = values.get(OID_ISSUER_V2)
    if isinstance(v2, x509.UnrecognizedExtension):
        return _der_utf8(v2.value)
    v1 = values.get(OID_ISSUER_V1)
    if isinstance(v1, x509.UnrecognizedExtension):
        return v1.value.decode("utf-8", "replace")
    return None


def _der_utf8(der: bytes) -> str:
    """Decode a DER UTF8String (tag 0x0C) with a short or long length."""
    if len(der) < 2 or der[0] != 0x0C:
        raise CertError("certificate extension is not a UTF8String")
    length, offset = der[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, offset = int.from_bytes(der[2:2 + n], "big"), 2 + n
    if offset + length != len(der):
        raise CertError("certificate extension has a bad length")
    return der[offset:].decode("utf-8", "replace")


@functools.lru_cache(maxsize=64)
def _store(certificates: tuple[Certificate, ...]) -> Store:
    """One trust store per CA chain, built once: building one parses every CA key again (~50 µs)."""
    from cryptography.x509.verification import Store

    return Store(list(certificates))


@functools.lru_cache(maxsize=1)
def _extension_policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """WebPKI's CA and end-entity extension policies, with Fulcio's non-critical EKU allowed."""
    from cryptography import x509
    from cryptography.x509.verification import Criticality, ExtensionPolicy

    def eku(policy: ExtensionPolicy) -> ExtensionPolicy:
        return policy.may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None)

    return eku(ExtensionPolicy.webpki_defaults_ca()), eku(ExtensionPolicy.webpki_defaults_ee())


def verify_chain(leaf: Certificate, intermediates: list[Certificate], root: TrustedRoot,
                 at: datetime) -> list[Certificate]:
    """Build and check a path from ``leaf`` to a Fulcio CA of ``root`` valid at ``at`` (both the CA's
    ``validFor`` in the trusted root and every certificate's own validity). Returns the path above the
    leaf (issuer first). Checks the Fulcio profile: code-signing EKU, digitalSignature key usage."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from cryptography.x509.verification import PolicyBuilder
    from cryptography.x509.verification import VerificationError as X509Error

    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    ca_policy, ee_policy = _extension_policies()
    last = "no Fulcio CA in the trusted root is valid at that time"
    chain: list[Certificate] | None = None
    for authority in root.fulcio:
        if not authority.validity.contains(at):
            continue
        verifier = (PolicyBuilder().store(_store(authority.certificates)).time(at)
                    .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy).build_client_verifier())
        try:
            chain = list(verifier.verify(leaf, intermediates).chain[1:])
            break
        except (X509Error, x509.UnsupportedGeneralNameType) as exc:
            last = str(exc).splitlines()[0]
    if chain is None:
        raise CertError(f"certificate does not chain to a trusted Fulcio CA at {at:%Y-%m-%dT%H:%M:%SZ}: {last}")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise CertError("certificate lacks key usage or extended key usage") from None
    if not usage.digital_signature:
        raise CertError("certificate key usage lacks digitalSignature")
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise CertError("certificate is not for code signing (EKU)")
    return chain


def verify_sct(leaf: Certificate, chain: list[Certificate], root: TrustedRoot) -> str:
    """Check the SCT embedded in ``leaf`` (RFC 6962 precertificate entry) with a CT log key of
    ``root``. Returns a detail line; raises CertError when there is no SCT or none verifies."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.certificate_transparency import LogEntryType

    from airgap.keys.public import spki_der, verify_signature

    try:
        scts = list(leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value)
    except x509.ExtensionNotFound:
        raise CertError("certificate has no embedded SCT") from None
    if not chain:
        raise CertError("no issuer certificate to bind the precertificate to")
    issuer = chain[0]
    try:
        eku = issuer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if x509.oid.ExtendedKeyUsageOID.CERTIFICATE_TRANSPARENCY in eku and len(chain) > 1:
            issuer = chain[1]  # a precertificate signing certificate stands in for the real issuer
    except x509.ExtensionNotFound:
        pass
    issuer_key_hash = hashlib.sha256(spki_der(issuer.public_key())).digest()  # type: ignore[arg-type]
    tbs = leaf.tbs_precertificate_bytes
    problems = []
    for sct in scts:
        log = root.ctlog_key(sct.log_id)
        if log is None:
            problems.append(f"unknown CT log {sct.log_id.hex()[:16]}")
            continue
        if sct.entry_type != LogEntryType.PRE_CERTIFICATE or not isinstance(sct.signature_hash_algorithm,
                                                                             hashes.SHA256):
            problems.append("unsupported SCT form")
            continue
        ts = sct.timestamp.replace(tzinfo=UTC)
        millis = (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        if not log.validity.contains(ts):
            problems.append("SCT made outside the CT log key's validity")
            continue
        signed = struct.pack("!BBQH", sct.version.value, 0, millis, sct.entry_type.value) + issuer_key_hash
        signed += len(tbs).to_bytes(3, "big") + tbs
        signed += struct.pack("!H", len(sct.extension_bytes)) + sct.extension_bytes
        if verify_signature(log.key, sct.signature, signed):
            return f"SCT from CT log {sct.log_id.hex()[:16]} at {ts:%Y-%m-%dT%H:%M:%SZ}"
        problems.append("SCT signature does not verify")
    raise CertError("; ".join(problems))

