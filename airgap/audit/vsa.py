"""A signed SLSA verification summary of the audit evidence, and its check.

**Verification summary attestation** (https://slsa.dev/verification_summary/v1): an in-toto v1 statement
whose subjects are every audited image digest plus the evidence file itself, in a DSSE envelope signed with
the operator's key (cosign's ``attest-blob`` envelope: ``payloadType application/vnd.in-toto+json``, an
empty ``keyid``). Real cosign checks it offline with ``cosign verify-blob-attestation --key PUB
--insecure-ignore-tlog --type https://slsa.dev/verification_summary/v1 --signature VSA EVIDENCE``.
We verify signatures and policy, not build provenance, so a PASSED summary claims ``SLSA_BUILD_LEVEL_0``
(no build guarantee) plus the custom ``AIRGAP_SIGNATURE_POLICY_PASSED``; a FAILED one says ``FAILED``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airgap.checks import cosign
from airgap.errors import IntegrityError, VerificationError

if TYPE_CHECKING:
    from airgap.keys.private import Signer
    from airgap.keys.public import PublicKey


VSA_PREDICATE = "https://slsa.dev/verification_summary/v1"


VERIFIER_ID = "https://airgap.dev/audit/v1"


EVIDENCE_NAME = "audit.json"


def _sha256_of(digest: str) -> dict[str, str]:
    alg, _, hexpart = digest.partition(":")
    return {alg: hexpart}


def vsa_statement(doc: dict[str, Any], evidence: bytes, *, resource_uri: str | None = None) -> bytes:
    """The in-toto v1 statement: subjects = the audited image digests and the evidence file (so a VSA is
    bound to the exact evidence it summarises); predicate = SLSA VSA v1."""
    subjects = {(EVIDENCE_NAME, hashlib.sha256(evidence).hexdigest())}
    for image in doc["images"]:
        if image["digest"]:
            subjects.add((image["ref"].split("@")[0], image["digest"].partition(":")[2]))
    inputs = {(s["location"], s["layer_digest"]) for i in doc["images"] for s in i["verified_by"]}
    passed = doc["summary"]["result"] == "PASSED"
    policy_digest = doc["policy"]["digest"] or doc["trust"]["digest"]
    predicate = {
        "verifier": {"id": VERIFIER_ID, "version": {"airgap": doc["tool"]["version"]}},
        "timeVerified": doc["generated_at"],
        "resourceUri": resource_uri or _resource_uri(doc),
        "policy": {"uri": doc["policy"]["source"] or doc["trust"]["source"], "digest": _sha256_of(policy_digest)},
        "inputAttestations": [{"uri": loc, "digest": _sha256_of(d)} for loc, d in sorted(inputs)],
        "verificationResult": "PASSED" if passed else "FAILED",
        "verifiedLevels": ["SLSA_BUILD_LEVEL_0", "AIRGAP_SIGNATURE_POLICY_PASSED"] if passed else ["FAILED"],
        "slsaVersion": "1.0",
    }
    statement = {"_type": cosign.INTOTO_STATEMENT_V1, "predicateType": VSA_PREDICATE,
                 "subject": [{"name": n, "digest": {"sha256": h}} for n, h in sorted(subjects)],
                 "predicate": predicate}
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _resource_uri(doc: dict[str, Any]) -> str:
    inputs = doc["inputs"]
    if len(doc["images"]) == 1:
        return "oci://" + str(doc["images"][0]["ref"])
    if inputs.get("registry"):
        return "oci://" + str(inputs["registry"])
    if inputs.get("bundle"):
        return "file:" + str(inputs["bundle"].get("path", ""))
    if inputs.get("pods_file"):
        return "k8s:pods"
    return "file:" + str((inputs.get("images_file") or {}).get("path", ""))


def sign_vsa(signer: Signer, doc: dict[str, Any], evidence: bytes) -> bytes:
    """The DSSE envelope (JSON bytes, as cosign ``attest-blob`` prints it) of the VSA statement."""
    from airgap.signing.bundles import sign_dsse

    envelope = sign_dsse(signer, cosign.DSSE_PAYLOAD_TYPE_INTOTO, vsa_statement(doc, evidence))
    return json.dumps(envelope, separators=(",", ":")).encode() + b"\n"


@dataclass
class VsaCheck:
    """A VSA whose signature verified: who signed it, about what, and what it says."""

    key_id: str
    predicate_type: str
    verification_result: str
    resource_uri: str
    time_verified: str
    subjects: list[tuple[str, str]] = field(default_factory=list)
    evidence_checked: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"verified": True, "key_id": self.key_id, "predicate_type": self.predicate_type,
                "verification_result": self.verification_result, "resource_uri": self.resource_uri,
                "time_verified": self.time_verified, "evidence_checked": self.evidence_checked,
                "subjects": [{"name": n, "digest": d} for n, d in self.subjects]}


def verify_vsa(envelope: bytes, keys: list[PublicKey], *, evidence: bytes | None = None,
               predicate_type: str = VSA_PREDICATE) -> VsaCheck:
    """Check a VSA offline: a DSSE signature over the PAE by one of ``keys``, an in-toto statement of
    ``predicate_type``, and (with ``evidence``) a subject naming that file's SHA-256. Raises
    :class:`VerificationError` naming the first check that failed."""
    from airgap.keys.public import key_id, verify_signature

    try:
        env = cosign.Envelope.from_bytes(envelope, "attestation")
        env.require_intoto("attestation")
    except IntegrityError as exc:
        raise VerificationError(str(exc)) from None
    signer = next((k for k in keys for _, sig in env.signatures if verify_signature(k, sig, env.pae)), None)
    if signer is None:
        raise VerificationError(f"attestation: no signature verifies with the {len(keys)} key(s) given")
    try:
        statement = cosign.Statement.from_bytes(env.payload, "attestation statement")
    except IntegrityError as exc:
        raise VerificationError(str(exc)) from None
    if statement.predicate_type != predicate_type:
        raise VerificationError(f"attestation: predicate type is {statement.predicate_type}, not {predicate_type}")
    predicate = statement.predicate if isinstance(statement.predicate, dict) else {}
    check = VsaCheck(key_id(signer), statement.predicate_type, str(predicate.get("verificationResult", "")),
                     str(predicate.get("resourceUri", "")), str(predicate.get("timeVerified", "")),
                     [(n, ",".join(f"{a}:{h}" for a, h in sorted(d.items()))) for n, d in statement.subjects])
    if evidence is not None:
        digest = "sha256:" + hashlib.sha256(evidence).hexdigest()
        if not statement.names_digest(digest):
            raise VerificationError(f"attestation: no subject has the evidence file's digest {digest}")
        check.evidence_checked = True
    return check
