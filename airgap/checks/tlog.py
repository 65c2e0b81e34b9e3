"""Rekor evidence carried next to a legacy cosign signature: the SET and the entry body it signs.

cosign's ``dev.sigstore.cosign/bundle`` annotation holds ``{"SignedEntryTimestamp", "Payload": {body,
integratedTime, logIndex, logID}}``. The SET is the log's signature over the RFC 8785 canonical JSON of
the Payload, made with the Rekor key whose key id (SHA-256 of its SPKI) equals ``logID``. A valid SET
proves *some* entry was logged at ``integratedTime``; :func:`check_body` then proves the entry is about
*this* signature, payload and key, so a SET cannot be replayed onto other material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airgap.errors import VerificationError
from airgap.jsondoc import load_json

if TYPE_CHECKING:
    from airgap.checks.roots import TrustedRoot


class TlogError(VerificationError):
    """The Rekor SET or entry is malformed, unverifiable or about something else."""


@dataclass(frozen=True)
class TlogEntry:
    """A verified Rekor entry: when it was logged, where, and its parsed body."""

    integrated_time: int
    log_index: int
    log_id: str
    kind: str
    body: dict[str, Any]

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.integrated_time, tz=UTC)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise TlogError(f"{what}: missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TlogError(f"{what}: not valid base64") from None


def verify_set(annotation: str | bytes, root: TrustedRoot) -> TlogEntry:
    """Verify a cosign bundle annotation's SET against ``root``'s Rekor keys; return the entry."""
    import rfc8785

    from airgap.keys.public import verify_signature

    doc = load_json(annotation, "Rekor bundle", TlogError, invalid="{what}: not valid JSON")
    payload = doc.get("Payload") if isinstance(doc, dict) else None
    if not isinstance(payload, dict):
        raise TlogError("Rekor bundle: no Payload")
    body_b64, itime, index, log_id = (payload.get(k) for k in ("body", "integratedTime", "logIndex", "logID"))
    if not (isinstance(body_b64, str) and isinstance(itime, int) and isinstance(index, int)
            and isinstance(log_id, str)) or isinstance(itime, bool) or isinstance(index, bool):
        raise TlogError("Rekor bundle: Payload needs body, integratedTime, logIndex and logID")
    if index < 0 or itime < 0:
        raise TlogError("Rekor bundle: negative logIndex or integratedTime")
    try:
        log_key_id = bytes.fromhex(log_id)
    except ValueError:
        raise TlogError("Rekor bundle: logID is not hex") from None
    key = root.tlog_key(log_key_id)
    if key is None:
        raise TlogError(f"Rekor bundle: log {log_id[:16]} is not in the trusted root")
    entry_time = datetime.fromtimestamp(itime, tz=UTC)
    if not key.validity.contains(entry_time):
        raise TlogError("Rekor bundle: integratedTime is outside the Rekor key's validity")
    signed = rfc8785.dumps({"body": body_b64, "integratedTime": itime, "logID": log_id, "logIndex": index})
    if not verify_signature(key.key, _b64(doc.get("SignedEntryTimestamp"), "Rekor SET"), signed):
        raise TlogError("Rekor SET signature does not verify")
    body = load_json(_b64(body_b64, "Rekor entry body"), "Rekor entry body", TlogError,
                     invalid="{what}: not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        raise TlogError("Rekor entry body: no spec")
    kind = f"{body.get('kind')}/{body.get('apiVersion')}"
    return TlogEntry(itime, index, log_id, kind, body)


def _pem_spki(encoded: Any, what: str) -> bytes:
    """SPKI DER of a base64 PEM public key or certificate in an entry body."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from airgap.keys.public import parse_errors, spki_der

    pem = _b64(encoded, what)
    try:
        if b"CERTIFICATE" in pem:
            return spki_der(x509.load_pem_x509_certificate(pem).public_key())  # type: ignore[arg-type]
        return spki_der(serialization.load_pem_public_key(pem))  # type: ignore[arg-type]
    except parse_errors():
        raise TlogError(f"{what}: not a PEM key or certificate") from None


def _hash_matches(doc: Any, data: bytes | str, what: str) -> None:
    """``data`` is the signed bytes, or their SHA-256 as hex when only the digest is known."""
    if not isinstance(doc, dict) or doc.get("algorithm") != "sha256":
        raise TlogError(f"Rekor entry: {what} is not a sha256 hash")
    if doc.get("value") != (data if isinstance(data, str) else hashlib.sha256(data).hexdigest()):
        raise TlogError(f"Rekor entry: {what} does not match the signed payload")


def _intoto_sigs(value: Any) -> tuple[bytes, ...]:
    """intoto 0.0.2 logs the envelope signature base64-encoded twice (Rekor's own encoding of the
    already-base64 DSSE ``sig``); some writers logged it once. Both readings, nothing if malformed."""
    try:
        once = _b64(value, "Rekor envelope sig")
    except TlogError:
        return ()
    try:
        return (once, base64.b64decode(once, validate=True))
    except (binascii.Error, ValueError):
        return (once,)


def check_body(entry: TlogEntry, *, data: bytes | str, signature: bytes, spki: bytes) -> None:
    """Prove the logged entry is about ``data`` (the signed bytes or the DSSE payload, or their SHA-256
    hex), ``signature``
    and the key ``spki``. Supports hashedrekord/rekord 0.0.1, intoto 0.0.1/0.0.2 and dsse 0.0.1."""
    spec = entry.body["spec"]
    if entry.kind in ("hashedrekord/0.0.1", "rekord/0.0.1"):
        sig = spec.get("signature") if isinstance(spec.get("signature"), dict) else {}
        _hash_matches((spec.get("data") or {}).get("hash"), data, "data hash")
        if _b64(sig.get("content"), "Rekor entry signature") != signature:
            raise TlogError("Rekor entry: logged signature is not this signature")
        if _pem_spki((sig.get("publicKey") or {}).get("content"), "Rekor entry public key") != spki:
            raise TlogError("Rekor entry: logged key is not the signing key")
    elif entry.kind == "intoto/0.0.1":
        content = spec.get("content") or {}
        _hash_matches(content.get("payloadHash"), data, "payloadHash")
        if _pem_spki(spec.get("publicKey"), "Rekor entry public key") != spki:
            raise TlogError("Rekor entry: logged key is not the signing key")
    elif entry.kind == "intoto/0.0.2":
        content = spec.get("content") or {}
        _hash_matches(content.get("payloadHash"), data, "payloadHash")
        sigs = (content.get("envelope") or {}).get("signatures") or []
        if not any(isinstance(s, dict) and signature in _intoto_sigs(s.get("sig"))
                   and _pem_spki(s.get("publicKey"), "Rekor entry public key") == spki for s in sigs):
            raise TlogError("Rekor entry: logged envelope signature is not this signature and key")
    elif entry.kind == "dsse/0.0.1":
        _hash_matches(spec.get("payloadHash"), data, "payloadHash")
        sigs = spec.get("signatures") or []
        if not any(_b64(s.get("signature"), "Rekor dsse signature") == signature
                   and _pem_spki(s.get("verifier"), "Rekor dsse verifier") == spki for s in sigs):
            raise TlogError("Rekor entry: logged DSSE signature is not this signature and key")
    else:
        raise TlogError(f"Rekor entry kind {entry.kind} is not supported")
