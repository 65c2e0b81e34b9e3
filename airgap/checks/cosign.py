"""cosign's wire formats, shared by signing and verification: names, payloads, envelopes.

Only data shapes live here (no crypto, no I/O): the simple-signing payload, DSSE envelopes and their PAE,
in-toto statements, the ``sha256-<hex>.sig/.att/.sbom`` tag names and the OCI annotation keys cosign uses.
Parsers follow "parse, then trust": they keep the exact bytes a signature covers and raise
:class:`~airgap.errors.IntegrityError` naming what is malformed.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from airgap import digest as digests
from airgap.errors import IntegrityError
from airgap.jsondoc import json_object

# OCI layer annotations on a legacy `.sig` manifest.
ANN_SIGNATURE = "dev.cosignproject.cosign/signature"
ANN_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANN_CHAIN = "dev.sigstore.cosign/chain"
ANN_BUNDLE = "dev.sigstore.cosign/bundle"  # Rekor SET + payload (cosign's "bundle", not a sigstore bundle)
ANN_RFC3161 = "dev.sigstore.cosign/rfc3161timestamp"
ANN_PREDICATE_TYPE = "predicateType"  # on `.att` layers

SIMPLESIGNING_TYPE = "cosign container image signature"
DSSE_PAYLOAD_TYPE_INTOTO = "application/vnd.in-toto+json"
INTOTO_STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
INTOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
# The predicate type of the statement cosign v3 signs in a sigstore bundle: a signature, not an attestation.
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

# cosign's `--type` shorthands (cosign/pkg/cosign/attestation).
PREDICATE_TYPES = {
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "link": "https://in-toto.io/Link/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
    "custom": "https://cosign.sigstore.dev/attestation/v1",
}


def _tag(digest: str, suffix: str) -> str:
    alg, hexpart = digests.validate(digest).split(":", 1)
    return f"{alg}-{hexpart}.{suffix}"


def signature_tag(digest: str) -> str:
    """``sha256-<hex>.sig``: where cosign keeps legacy signatures of ``digest``."""
    return _tag(digest, "sig")


def attestation_tag(digest: str) -> str:
    return _tag(digest, "att")


def b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (cosign writes padded StdEncoding); IntegrityError naming ``what``."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"{what}: not valid base64") from None


# ---- simple signing --------------------------------------------------------------------------------

def docker_reference(registry: str, repository: str) -> str:
    """The ``docker-reference`` cosign writes: go-containerregistry's repository name, which spells
    Docker Hub as ``index.docker.io``."""
    return f"{'index.docker.io' if registry == 'docker.io' else registry}/{repository}"


def simple_signing_payload(docker_reference: str, manifest_digest: str,
                           optional: dict[str, Any] | None = None) -> bytes:
    """The payload cosign signs, byte for byte as cosign v2 writes it (Go ``json.Marshal`` field order,
    no spaces, ``"optional":null`` when there are no annotations)."""
    digests.validate(manifest_digest)
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": SIMPLESIGNING_TYPE,
        },
        "optional": optional or None,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SimpleSigning:
    """A parsed simple-signing payload; ``data`` are the exact signed bytes."""

    data: bytes
    docker_reference: str
    manifest_digest: str
    optional: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "signature payload") -> SimpleSigning:
        doc = json_object(data, what)
        critical = doc.get("critical")
        if not isinstance(critical, dict):
            raise IntegrityError(f"{what}: no 'critical' section")
        if critical.get("type") != SIMPLESIGNING_TYPE:
            raise IntegrityError(f"{what}: critical.type is {critical.get('type')!r}, not {SIMPLESIGNING_TYPE!r}")
        image = critical.get("image")
        identity = critical.get("identity")
        digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
        if not isinstance(digest, str):
            raise IntegrityError(f"{what}: no critical.image.docker-manifest-digest")
        try:
            digests.validate(digest)
        except IntegrityError:
            raise IntegrityError(f"{what}: malformed docker-manifest-digest {digest!r}") from None
        reference = identity.get("docker-reference") if isinstance(identity, dict) else None
        optional = doc.get("optional")
        return cls(data, reference if isinstance(reference, str) else "", digest,
                   optional if isinstance(optional, dict) else {})


# ---- DSSE and in-toto --------------------------------------------------------------------------------

def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature actually covers."""
    pt = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(pt), pt, len(payload), payload)


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: ``payload`` decoded; ``signatures`` as (keyid, raw signature bytes)."""

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "DSSE envelope") -> Envelope:
        doc = json_object(data, what)
        return cls.from_json(doc, what)

    @classmethod
    def from_json(cls, doc: Any, what: str = "DSSE envelope") -> Envelope:
        if not isinstance(doc, dict):  # a sigstore bundle's dsseEnvelope is whatever the bundle says
            raise IntegrityError(f"{what}: not a JSON object")
        payload_type = doc.get("payloadType")
        payload = doc.get("payload")
        sigs = doc.get("signatures")
        if not isinstance(payload_type, str) or not isinstance(payload, str):
            raise IntegrityError(f"{what}: needs string payloadType and payload")
        if not isinstance(sigs, list) or not sigs:
            raise IntegrityError(f"{what}: has no signatures")
        out = []
        for i, sig in enumerate(sigs):
            if not isinstance(sig, dict) or not isinstance(sig.get("sig"), str):
                raise IntegrityError(f"{what}: signatures[{i}] has no sig")
            keyid = sig.get("keyid")
            out.append((keyid if isinstance(keyid, str) else "", b64decode(sig["sig"], f"{what} signatures[{i}]")))
        return cls(payload_type, b64decode(payload, f"{what} payload"), tuple(out))

    @property
    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def require_intoto(self, what: str = "DSSE envelope") -> None:
        """Refuse an envelope that does not say it carries an in-toto statement: cosign v2 and v3 accept only
        ``application/vnd.in-toto+json`` for attestations and bundle signatures, and a signature over another
        payload type is a signature over something else."""
        if self.payload_type != DSSE_PAYLOAD_TYPE_INTOTO:
            raise IntegrityError(f"{what}: payloadType {self.payload_type[:80]!r} is not {DSSE_PAYLOAD_TYPE_INTOTO}")

    def to_json(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode(),
            "signatures": [{"keyid": k, "sig": base64.b64encode(s).decode()} for k, s in self.signatures],
        }


@dataclass(frozen=True)
class Statement:
    """An in-toto statement (v0.1 or v1): subjects as (name, {alg: hex}), predicate type and predicate."""

    predicate_type: str
    subjects: tuple[tuple[str, dict[str, str]], ...]
    predicate: Any
    doc: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)  # the whole statement

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "in-toto statement") -> Statement:
        doc = json_object(data, what)
        if doc.get("_type") not in (INTOTO_STATEMENT_V01, INTOTO_STATEMENT_V1):
            raise IntegrityError(f"{what}: _type {doc.get('_type')!r} is not an in-toto statement")
        ptype = doc.get("predicateType")
        subjects = doc.get("subject")
        if not isinstance(ptype, str) or not isinstance(subjects, list):
            raise IntegrityError(f"{what}: needs predicateType and subject")
        parsed = []
        for i, s in enumerate(subjects):
            if not isinstance(s, dict) or not isinstance(s.get("digest"), dict):
                raise IntegrityError(f"{what}: subject[{i}] has no digest")
            parsed.append((str(s.get("name", "")), {str(k): str(v) for k, v in s["digest"].items()}))
        return cls(ptype, tuple(parsed), doc.get("predicate"), doc)

    def names_digest(self, digest: str) -> bool:
        """True when a subject carries ``digest`` (``sha256:<hex>``)."""
        alg, hexpart = digests.validate(digest).split(":", 1)
        return any(d.get(alg) == hexpart for _, d in self.subjects)


def statement(subject_name: str, subject_digest: str, predicate_type: str, predicate: Any) -> bytes:
    """An in-toto v0.1 statement about one image, as cosign ``attest`` writes it."""
    alg, hexpart = digests.validate(subject_digest).split(":", 1)
    doc = {
        "_type": INTOTO_STATEMENT_V01,
        "predicateType": predicate_type,
        "subject": [{"name": subject_name, "digest": {alg: hexpart}}],
        "predicate": predicate,
    }
    return json.dumps(doc, separators=(",", ":")).encode()
