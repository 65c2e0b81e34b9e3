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
