"""The Rekor half of :mod:`support.minisigstore` (test-only): an append-only in-memory Rekor v1 log.

Entries carry a SET (ECDSA over RFC 8785 JSON of body/integratedTime/logID/logIndex), an RFC 6962 inclusion
proof and a signed checkpoint note, in the JSON shapes cosign v2 annotations and sigstore bundles hold.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def log_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962 log id (and Sigstore's keyId): SHA-256 of the SubjectPublicKeyInfo DER."""
    return hashlib.sha256(spki_der(key)).digest()


def ecdsa_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def canonical(doc: Any) -> bytes:
    return rfc8785.dumps(doc)


# ---- RFC 6962 Merkle tree -----------------------------------------------------------------------------

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root(leaves: list[bytes]) -> bytes:
    """MTH over leaf hashes (RFC 6962 section 2.1)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def audit_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) from RFC 6962 section 2.1.1, ordered from the leaf upwards."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return audit_path(index, leaves[:k]) + [merkle_root(leaves[k:])]
    return audit_path(index - k, leaves[k:]) + [merkle_root(leaves[:k])]


# ---- Rekor ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogEntry:
    """One Rekor v1 entry as a client sees it, with promise (SET) and proof (path + checkpoint)."""

    kind: str
    version: str
    body: bytes  # canonicalized entry body (what the leaf hash covers)
    log_index: int
    integrated_time: int
    log_id: bytes
    signed_entry_timestamp: bytes
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str

    def cosign_bundle(self) -> dict[str, Any]:
        """The ``dev.sigstore.cosign/bundle`` annotation as cosign v2 writes it."""
        return {"SignedEntryTimestamp": b64(self.signed_entry_timestamp),
                "Payload": {"body": b64(self.body), "integratedTime": self.integrated_time,
                            "logIndex": self.log_index, "logID": self.log_id.hex()}}

    @property
    def uuid(self) -> str:
        """The entry's UUID as Rekor v1 names it: the hex Merkle leaf hash of its body."""
        return leaf_hash(self.body).hex()

    def v1_response(self) -> dict[str, Any]:
        """What ``POST /api/v1/log/entries`` answers: ``{uuid: LogEntryAnon}`` (hashes and ids in hex)."""
        return {self.uuid: {
            "body": b64(self.body), "integratedTime": self.integrated_time, "logID": self.log_id.hex(),
            "logIndex": self.log_index,
            "verification": {
                "signedEntryTimestamp": b64(self.signed_entry_timestamp),
                "inclusionProof": {"logIndex": self.log_index, "rootHash": self.root_hash.hex(),
                                   "treeSize": self.tree_size, "hashes": [h.hex() for h in self.hashes],
                                   "checkpoint": self.checkpoint},
            },
        }}

    def tlog_entry(self) -> dict[str, Any]:
        """``verificationMaterial.tlogEntries[0]`` of a sigstore bundle (protobuf JSON: int64 as strings)."""
        return {
            "logIndex": str(self.log_index),
            "logId": {"keyId": b64(self.log_id)},
            "kindVersion": {"kind": self.kind, "version": self.version},
            "integratedTime": str(self.integrated_time),
            "inclusionPromise": {"signedEntryTimestamp": b64(self.signed_entry_timestamp)},
            "inclusionProof": {
                "logIndex": str(self.log_index), "rootHash": b64(self.root_hash), "treeSize": str(self.tree_size),
                "hashes": [b64(h) for h in self.hashes], "checkpoint": {"envelope": self.checkpoint},
            },
            "canonicalizedBody": b64(self.body),
        }


@dataclass
class RekorLog:
    """An append-only in-memory Rekor v1 log signing SETs and checkpoints with ``key``."""

    key: ec.EllipticCurvePrivateKey
    origin: str = "mini-rekor.airgap.test - 1"
    leaves: list[bytes] = field(default_factory=list)
    entries: list[LogEntry] = field(default_factory=list)

    @property
    def log_id(self) -> bytes:
        return log_id(self.key.public_key())

    def checkpoint(self, size: int, root: bytes) -> str:
        """A signed note: ``origin\\nsize\\nroot-b64\\n\\n— name b64(keyhint || sig)\\n``."""
        note = f"{self.origin}\n{size}\n{b64(root)}\n"
        sig = self.log_id[:4] + ecdsa_sign(self.key, note.encode())
        name = self.origin.split(" ", 1)[0]
        return f"{note}\n\u2014 {name} {b64(sig)}\n"

    def append(self, kind: str, version: str, body_doc: dict[str, Any], integrated_time: int) -> LogEntry:
        body = canonical({"apiVersion": version, "kind": kind, "spec": body_doc})
        index = len(self.leaves)
        self.leaves.append(leaf_hash(body))
        size = len(self.leaves)
        root = merkle_root(self.leaves)
        set_payload = canonical({"body": b64(body), "integratedTime": integrated_time,
                                  "logID": self.log_id.hex(), "logIndex": index})
        entry = LogEntry(kind, version, body, index, integrated_time, self.log_id, ecdsa_sign(self.key, set_payload),
                         size, root, tuple(audit_path(index, self.leaves)), self.checkpoint(size, root))
        self.entries.append(entry)
        return entry


# ---- what the Rekor server does with a proposed entry --------------------------------------------------

class ProposalError(ValueError):
    """A proposed entry Rekor would refuse (HTTP 400): malformed, or a signature that does not verify."""


def _field(doc: Any, *path: str) -> Any:
    for name in path:
        if not isinstance(doc, dict) or name not in doc:
            raise ProposalError(f"missing {'.'.join(path)}")
        doc = doc[name]
    return doc


def _unb64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (TypeError, ValueError):
        raise ProposalError(f"{what}: not base64") from None


def _verifier_key(pem_b64: Any) -> Any:
    """The public key of a base64 PEM certificate or public key (what Rekor entries carry)."""
    from cryptography import x509

    pem = _unb64(pem_b64, "public key")
    try:
        if b"CERTIFICATE" in pem:
            return x509.load_pem_x509_certificate(pem).public_key()
        return serialization.load_pem_public_key(pem)
    except ValueError:
        raise ProposalError("public key: not a PEM certificate or key") from None


def _verify(key: Any, signature: bytes, data: bytes, *, prehashed: bool = False) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ProposalError("only ECDSA keys are supported here")
    try:
        key.verify(signature, data, ec.ECDSA(Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256()))
    except InvalidSignature:
        raise ProposalError("signature does not verify with the given key") from None


def _pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def _envelope(text: Any) -> tuple[bytes, dict[str, Any]]:
    import json

    if not isinstance(text, str):
        raise ProposalError("envelope: not a string")
    try:
        doc = json.loads(text)
        payload = _unb64(doc["payload"], "envelope payload")
        sigs = [_unb64(s["sig"], "envelope signature") for s in doc["signatures"]]
        payload_type = str(doc["payloadType"])
    except (ValueError, KeyError, TypeError):
        raise ProposalError("envelope: not a DSSE envelope") from None
    if not sigs:
        raise ProposalError("envelope: no signatures")
    return payload, {"type": payload_type, "sigs": sigs, "raw": doc}


def canonicalize(proposed: Any) -> tuple[str, str, dict[str, Any]]:
    """(kind, version, canonical spec) of a proposed entry, as Rekor v1 computes them; signatures are
    verified first (Rekor refuses an entry whose signature does not verify). hashedrekord, intoto and dsse
    0.0.1 only."""
    kind, version = _field(proposed, "kind"), _field(proposed, "apiVersion")
    spec = _field(proposed, "spec")
    if (kind, version) == ("hashedrekord", "0.0.1"):
        digest_hex = _field(spec, "data", "hash", "value")
        if _field(spec, "data", "hash", "algorithm") != "sha256" or not isinstance(digest_hex, str):
            raise ProposalError("hashedrekord: only sha256 hashes")
        signature = _unb64(_field(spec, "signature", "content"), "signature")
        key_b64 = _field(spec, "signature", "publicKey", "content")
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError:
            raise ProposalError("hashedrekord: hash is not hex") from None
        _verify(_verifier_key(key_b64), signature, digest, prehashed=True)
        return kind, version, {"data": {"hash": {"algorithm": "sha256", "value": digest_hex}},
                               "signature": {"content": b64(signature), "publicKey": {"content": key_b64}}}
    if (kind, version) == ("intoto", "0.0.1"):
        text = _field(spec, "content", "envelope")
        payload, env = _envelope(text)
        key_b64 = _field(spec, "publicKey")
        _verify(_verifier_key(key_b64), env["sigs"][0], _pae(env["type"], payload))
        return kind, version, {"content": {"hash": {"algorithm": "sha256",
                                                    "value": hashlib.sha256(text.encode()).hexdigest()},
                                           "payloadHash": {"algorithm": "sha256",
                                                           "value": hashlib.sha256(payload).hexdigest()}},
                               "publicKey": key_b64}
    if (kind, version) == ("dsse", "0.0.1"):
        text = _field(spec, "proposedContent", "envelope")
        verifiers = _field(spec, "proposedContent", "verifiers")
        payload, env = _envelope(text)
        if not isinstance(verifiers, list) or not verifiers:
            raise ProposalError("dsse: no verifiers")
        signatures = []
        for sig, raw in zip(env["sigs"], env["raw"]["signatures"], strict=True):
            for verifier in verifiers:
                try:
                    _verify(_verifier_key(verifier), sig, _pae(env["type"], payload))
                except ProposalError:
                    continue
                signatures.append({"signature": raw["sig"], "verifier": verifier})
                break
            else:
                raise ProposalError("dsse: an envelope signature verifies with no verifier")
        return kind, version, {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(text.encode()).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
            "signatures": sorted(signatures, key=lambda s: s["signature"])}
    raise ProposalError(f"entry kind {kind!r} version {version!r} is not supported by this Rekor")
