"""Sigstore trusted roots (``trusted_root.json``): the Fulcio CAs, Rekor and CT log keys, and TSAs.

A trusted root is the whole of what keyless verification trusts, so it is parsed strictly and never
refreshed: airgap loads it from a file shipped in a bundle, or uses the public-good root that ships
*inside* the sigstore package (read offline from its ``_store``; no TUF, no network). A malformed
root (bad base64, a key without a validity start, an unparsable certificate) is a
:class:`~airgap.errors.ConfigError`, never silently "unbounded".

Validity intervals are closed: ``start <= t <= end`` (the Sigstore client spec; a missing end means
"still valid").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airgap.errors import ConfigError
from airgap.jsondoc import json_object

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.models import TrustedRoot as SigstoreTrustedRoot

    from airgap.keys.public import PublicKey

MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
_PUBLIC_GOOD_STORE = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
_STAGING_STORE = "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev"


def parse_time(value: Any, what: str) -> datetime:
    """An RFC 3339 timestamp (``...Z``, fractional seconds allowed) as an aware UTC datetime."""
    if not isinstance(value, str):
        raise ConfigError(f"{what}: expected an RFC 3339 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{what}: malformed time {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what}: missing base64 value")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what}: not valid base64") from None


@dataclass(frozen=True)
class Validity:
    """A closed time interval; ``end`` None means open-ended."""

    start: datetime
    end: datetime | None = None

    @classmethod
    def from_json(cls, doc: Any, what: str) -> Validity:
        if not isinstance(doc, dict) or "start" not in doc:
            raise ConfigError(f"{what}: validFor needs a start")
        start = parse_time(doc["start"], f"{what} validFor.start")
        end = parse_time(doc["end"], f"{what} validFor.end") if doc.get("end") is not None else None
        if end is not None and end < start:
            raise ConfigError(f"{what}: validFor ends before it starts")
        return cls(start, end)

    def contains(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when <= self.end)


@dataclass(frozen=True)
class LogKey:
    """A transparency (Rekor) or certificate-transparency log key: ``key_id`` is the raw log id."""

    key_id: bytes
    key: PublicKey
    validity: Validity
    base_url: str = ""


@dataclass(frozen=True)
class Authority:
    """A certificate authority (Fulcio or a TSA): its chain, leaf-most first, and validity."""

    certificates: tuple[Certificate, ...]
    validity: Validity
    uri: str = ""


def _entries(entries: Any, what: str) -> list[tuple[str, Any]]:
    """A trusted root's list field as ``(what[i], entry)`` pairs: none when absent, an error when not a list."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{what}: expected a list")
    return [(f"{what}[{i}]", entry) for i, entry in enumerate(entries)]


def _log_keys(entries: Any, what: str) -> tuple[LogKey, ...]:
    from cryptography.hazmat.primitives import serialization

    from airgap.keys.public import load_public_key, parse_errors, public_pem

    out = []
    for where, entry in _entries(entries, what):
        if not isinstance(entry, dict) or not isinstance(entry.get("publicKey"), dict):
            raise ConfigError(f"{where}: no publicKey")
        pk = entry["publicKey"]
        raw = _b64(pk.get("rawBytes"), f"{where} publicKey.rawBytes")
        try:
            key = serialization.load_der_public_key(raw)
        except parse_errors():
            raise ConfigError(f"{where}: publicKey is not a DER SubjectPublicKeyInfo") from None
        key = load_public_key(public_pem(key), where)  # type: ignore[arg-type]
        log_id = entry.get("logId")
        key_id = _b64(log_id.get("keyId") if isinstance(log_id, dict) else None, f"{where} logId.keyId")
        out.append(LogKey(key_id, key, Validity.from_json(pk.get("validFor"), where),
                          str(entry.get("baseUrl", ""))))
    return tuple(out)


def _authorities(entries: Any, what: str) -> tuple[Authority, ...]:
    from cryptography import x509

    from airgap.keys.public import parse_errors

    out = []
    for where, entry in _entries(entries, what):
        chain = entry.get("certChain") if isinstance(entry, dict) else None
        certs = chain.get("certificates") if isinstance(chain, dict) else None
        if not isinstance(certs, list) or not certs:
            raise ConfigError(f"{where}: empty certChain")
        parsed = []
        for j, c in enumerate(certs):
            der = _b64(c.get("rawBytes") if isinstance(c, dict) else None, f"{where} certificate {j}")
            try:
                parsed.append(x509.load_der_x509_certificate(der))
            except parse_errors():
                raise ConfigError(f"{where}: certificate {j} is not DER X.509") from None
        out.append(Authority(tuple(parsed), Validity.from_json(entry.get("validFor"), where),
                             str(entry.get("uri", ""))))
    return tuple(out)


@dataclass(frozen=True)
class TrustedRoot:
    """A parsed ``trusted_root.json``; ``data`` are the exact bytes (their digest names this root)."""

    data: bytes = field(repr=False)  # equality and hashing go by these bytes alone
    fulcio: tuple[Authority, ...] = field(compare=False)
    tlogs: tuple[LogKey, ...] = field(compare=False)
    ctlogs: tuple[LogKey, ...] = field(compare=False)
    tsas: tuple[Authority, ...] = field(compare=False)
    _sigstore: list[SigstoreTrustedRoot] = field(default_factory=list, repr=False, compare=False, hash=False)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "trusted root") -> TrustedRoot:
        doc = json_object(data, what, ConfigError)
        if doc.get("mediaType") != MEDIA_TYPE:
            raise ConfigError(f"{what}: unsupported mediaType {doc.get('mediaType')!r}")
        return cls(data, _authorities(doc.get("certificateAuthorities"), f"{what} certificateAuthorities"),
                   _log_keys(doc.get("tlogs"), f"{what} tlogs"), _log_keys(doc.get("ctlogs"), f"{what} ctlogs"),
                   _authorities(doc.get("timestampAuthorities"), f"{what} timestampAuthorities"))

    @classmethod
    def from_file(cls, path: str) -> TrustedRoot:
        with open(path, "rb") as fh:
            return cls.from_bytes(fh.read(), path)

    @classmethod
    def public_good(cls) -> TrustedRoot:
        """Sigstore's production root as shipped inside the installed sigstore package (offline)."""
        return cls.from_bytes(_store_file(_PUBLIC_GOOD_STORE), "public-good trusted root")

    @classmethod
    def staging(cls) -> TrustedRoot:
        """Sigstore's staging root as shipped inside the sigstore package (for tests only)."""
        return cls.from_bytes(_store_file(_STAGING_STORE), "staging trusted root")

    def with_fulcio_ca(self, pem: bytes, what: str = "ca-cert") -> TrustedRoot:
        """This root with its certificate authorities replaced by the CA chain in ``pem`` (a keyless
        authority's ``ca-cert``): certificates then chain to that CA alone, never to this root's Fulcio CAs;
        the transparency logs, CT logs and TSAs stay this root's. The chain is ordered leaf-most first (the
        self-signed root last, as ``trusted_root.json`` writes it); it is valid from its earliest
        ``notBefore`` (each certificate's own validity is still checked by path building)."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError:
            raise ConfigError(f"{what}: not a PEM certificate chain") from None
        if not certs:
            raise ConfigError(f"{what}: no certificate")
        ordered = sorted(certs, key=lambda c: c.issuer == c.subject)  # stable: self-signed (roots) last
        start = min(c.not_valid_before_utc for c in certs)
        doc = json_object(self.data, "trusted root", ConfigError)
        doc["certificateAuthorities"] = [{
            "subject": {"organization": "", "commonName": ""},
            "uri": "",
            "certChain": {"certificates": [
                {"rawBytes": base64.b64encode(c.public_bytes(Encoding.DER)).decode()} for c in ordered]},
            "validFor": {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }]
        return TrustedRoot.from_bytes(json.dumps(doc, sort_keys=True).encode(), f"{what} (with {what})")

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def tlog_key(self, key_id: bytes) -> LogKey | None:
        return next((k for k in self.tlogs if k.key_id == key_id), None)

    def ctlog_key(self, key_id: bytes) -> LogKey | None:
        return next((k for k in self.ctlogs if k.key_id == key_id), None)

    def to_sigstore(self) -> SigstoreTrustedRoot:
        """This root as a sigstore-python ``TrustedRoot`` (built from the JSON, no TUF, cached).

        Two adjustments keep sigstore-python 4.x in line with the Sigstore spec: a TSA's
        ``validFor.end`` is made inclusive (sigstore-python compares ``gen_time < end``; we move the end
        by one microsecond), and a CA ``subject`` without ``commonName`` (informational only, but
        required by sigstore-models) gets an empty one.
        """
        if not self._sigstore:
            from sigstore.models import TrustedRoot as SigstoreTrustedRoot
            from sigstore_models.trustroot import v1 as trustroot_v1

            doc = json_object(self.data, "trusted root", ConfigError)
            for tsa in doc.get("timestampAuthorities") or []:
                end = (tsa.get("validFor") or {}).get("end")
                if end:
                    shifted = parse_time(end, "TSA validFor.end") + timedelta(microseconds=1)
                    tsa["validFor"]["end"] = shifted.isoformat().replace("+00:00", "Z")
            for ca in (doc.get("certificateAuthorities") or []) + (doc.get("timestampAuthorities") or []):
                if isinstance(ca.get("subject"), dict):
                    ca["subject"].setdefault("commonName", "")
                    ca["subject"].setdefault("organization", "")
            try:
                inner = trustroot_v1.TrustedRoot.from_json(json.dumps(doc))
                self._sigstore.append(SigstoreTrustedRoot(inner))
            except Exception as exc:  # pydantic/sigstore errors: the root is unusable, say so in one line
                raise ConfigError(f"trusted root: rejected by sigstore ({str(exc).splitlines()[0]})") from None
        return self._sigstore[0]


def _store_file(store: str) -> bytes:
    from importlib import resources

    try:
        return (resources.files("sigstore") / "_store" / store / "trusted_root.json").read_bytes()
    except (OSError, ModuleNotFoundError) as exc:
        raise ConfigError(f"the sigstore package ships no trusted root ({exc})") from None
