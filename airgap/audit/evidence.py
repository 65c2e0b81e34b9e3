"""Audit evidence: which images were checked, against which trust and policy, with what result, and why.

An audit reuses the verifier (:class:`airgap.verification.verifier.Verifier`): there is no second verification
path. This module runs the verifier once over each image :mod:`airgap.audit.inputs` gathered and builds one
versioned JSON evidence document that every other output is rendered from (:mod:`airgap.audit.render` for
Markdown/HTML, :mod:`airgap.audit.reports` for Kubernetes PolicyReports, :mod:`airgap.audit.vsa` for the
signed SLSA verification summary).

Reproducibility: the document is a pure function of the inputs (trust, policy, registry contents, pods),
sorted at every level, with exactly one non-reproducible field, ``generated_at``, at the top. Renderers
and reports take their timestamps from that one field.

Everything pulled from the registry goes through the verifier, which hashes every byte.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airgap import __version__
from airgap.audit.inputs import Inputs, Workload
from airgap.errors import ConfigError

if TYPE_CHECKING:
    from airgap.verification.result import VerificationResult
    from airgap.verification.trust import Trust
    from airgap.verification.verifier import Verifier


SCHEMA_VERSION = 1


KIND = "AuditEvidence"


API_VERSION = "airgap.dev/v1alpha1"


STATUSES = ("PASS", "FAIL", "WARN", "ERROR", "SKIP")


def status_of(result: VerificationResult) -> str:
    """PASS / FAIL / WARN / ERROR / SKIP, as a PolicyReport counts them.

    ERROR: the image could not be evaluated (not found, registry down, origin unknown). SKIP: admitted
    without a signature check (allow-list, ``noMatchPolicy: allow``). WARN: admitted with warnings."""
    if result.digest is None or result.upstream is None:
        return "ERROR"
    if result.decision == "deny":
        return "FAIL"
    if not result.policies:  # decided without a signature check: allow-list or noMatchPolicy
        return "WARN" if result.decision == "warn" else "SKIP"
    return "WARN" if result.decision == "warn" else "PASS"


def _signatures(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """The signatures that verified, flattened from policies -> authorities -> evidence."""
    seen: dict[tuple[str, ...], dict[str, Any]] = {}
    for policy in evidence.get("policies", []):
        for auth in policy.get("authorities", []):
            for ev in auth.get("evidence", []):
                if ev.get("ok"):
                    item = {"policy": policy["name"], "authority": auth["name"], "kind": ev["kind"],
                            "location": ev["location"], "layer_digest": ev["layer_digest"],
                            "key_id": ev.get("key_id"), "identity": ev.get("identity"), "issuer": ev.get("issuer")}
                    seen[tuple(str(v) for v in item.values())] = item
    return [seen[k] for k in sorted(seen)]


def image_record(result: VerificationResult, workloads: Iterable[Workload] = ()) -> dict[str, Any]:
    """One image in the evidence document: the verifier's own evidence record plus the audit's status."""
    ev = result.evidence
    return {
        "ref": result.ref,
        "digest": result.digest,
        "upstream": result.upstream,
        "upstream_source": result.upstream_source,
        "status": status_of(result),
        "decision": result.decision,
        "reasons": list(result.reasons),
        "warnings": list(result.warnings),
        "verified_by": _signatures(ev),
        "policies": ev["policies"],
        "workloads": [w.to_json() for w in sorted(set(workloads))],
    }


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_evidence(results: Sequence[VerificationResult], trust: Trust, inputs: Inputs, *,
                   workloads: dict[str, list[Workload]] | None = None,
                   now: datetime.datetime | None = None) -> dict[str, Any]:
    """The evidence document (see the module docstring). ``now`` is the only non-reproducible input."""
    workloads = workloads or {}
    images = sorted((image_record(r, workloads.get(r.ref, ())) for r in results),
                    key=lambda d: (d["ref"], d["digest"] or ""))
    counts = {s: sum(1 for i in images if i["status"] == s) for s in STATUSES}
    policy_digests = sorted({r.policy_digest for r in results if r.policy_digest})
    policy_digest = policy_digests[0] if len(policy_digests) == 1 else (
        trust.policy.digest if trust.policy is not None else None)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "generated_at": rfc3339(now or datetime.datetime.now(datetime.UTC)),
        "tool": {"name": "airgap", "version": __version__},
        "inputs": inputs.to_json(),
        "trust": {
            "source": trust.source,
            "digest": trust.digest,
            "roots": {n: "sha256:" + hashlib.sha256(d).hexdigest() for n, d in sorted(trust.roots.items())},
            "key_manifest": trust.key_manifest(),
        },
        "policy": {"digest": policy_digest, "source": trust.policy.where if trust.policy is not None else None},
        "summary": {"images": len(images), **counts,
                    "result": "PASSED" if images and not counts["FAIL"] and not counts["ERROR"] else "FAILED"},
        "images": images,
    }


def without_timestamp(doc: dict[str, Any]) -> dict[str, Any]:
    """The evidence minus its one non-reproducible field: equal for equal inputs."""
    return {k: v for k, v in doc.items() if k != "generated_at"}


def dumps(doc: dict[str, Any]) -> bytes:
    """The evidence file's bytes: sorted keys, two-space indent, trailing newline (stable for digests)."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def run_audit(verifier: Verifier, inputs: Inputs, *, jobs: int = 8,
              now: datetime.datetime | None = None) -> dict[str, Any]:
    """Verify every target once (through the shared verifier) and build the evidence document."""
    targets = inputs.targets()
    if not targets:
        raise ConfigError("nothing to audit: the inputs name no images")
    ordered = sorted(targets)
    results = verifier.verify_many(ordered, jobs=jobs)
    return build_evidence(results, verifier.trust, inputs, workloads=targets, now=now)
