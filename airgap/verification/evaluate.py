"""Decide whether an image may run: policies x authorities x signatures, with evidence. No I/O here.

Inputs are an :class:`~airgap.verification.discover.AttachedLookup` (a registry's
:class:`~airgap.verification.discover.Artifacts`, lazy, its fetching in :mod:`airgap.verification.discover`; or a
bundle's, in memory), the upstream reference the image was translated back to, the policy set and the trust
material. The same function serves the CLI, the Python API, the webhook and the audit.

Rules, in order (policy-controller's, plus airgap's global settings):
1. the allow-list passes an image outright; an image from a registry not in ``approvedRegistries`` fails;
2. every policy whose globs match the upstream ref applies, and the image must satisfy each of them;
   none matching -> ``noMatchPolicy`` (allow | warn | deny, default deny);
3. a policy is satisfied when its authorities are (any one, unless the policy says otherwise);
4. an authority is satisfied by one signature (or, with ``attestations``, one verified attestation per
   entry whose condition holds) that verifies against its key or keyless identity and names the image's
   digest; ``dockerReference: strict`` also requires the signed docker-reference to be the upstream repo;
5. a failing policy in ``warn`` mode adds a warning instead of denying;
6. an authority with ``rfc3161timestamp`` needs a signed timestamp verified against the TSAs of its
   ``trustRootRef`` (empty: the default root) and no transparency-log entry: policy-controller sets
   ``UseSignedTimestamps`` and ``IgnoreTlog`` for it (pkg/webhook/validator.go). For a keyless signature
   that is what makes its expired short-lived certificate acceptable there too; airgap also demands the
   timestamp of key signatures, where policy-controller would let one without it through. A timestamp that
   is present is verified under every policy (cosign v2), against the authority's root.
Multi-arch: a digest needs its own signature (cosign's rule; ``airgap sign --recursive`` signs each child).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from airgap.checks.cosign import ANN_SIGNATURE
from airgap.verification.result import AuthorityResult, PolicyResult, SignatureEvidence, VerificationResult

if TYPE_CHECKING:
    from airgap.checks.outcome import Outcome
    from airgap.policy.model import Authority, ImagePolicy
    from airgap.policy.policyset import PolicySet
    from airgap.refs import Reference
    from airgap.verification.discover import AttachedLookup, Candidate, Repo
    from airgap.verification.trust import Trust


SourceResolver = Callable[[str], "Repo"]


def _evidence(candidate: Candidate, outcome: Outcome) -> SignatureEvidence:
    return SignatureEvidence(
        kind=outcome.kind, location=candidate.location, layer_digest=candidate.layer_digest, ok=outcome.ok,
        reason=outcome.reason, key_id=outcome.key_id, identity=outcome.identity, issuer=outcome.issuer,
        docker_reference=outcome.docker_reference,
        checks=[{"name": c.name, "ok": c.ok, "detail": c.detail} for c in outcome.checks],
    )


def _check_authority(authority: Authority, policy: ImagePolicy, artifacts: AttachedLookup, upstream: Reference,
                     trust: Trust, resolve_source: SourceResolver) -> AuthorityResult:
    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.checks.legacy import check_attestation, check_simple_signing
    from airgap.checks.outcome import KeyAuthority, KeylessAuthority

    name = authority.name
    if authority.static is not None:
        ok = authority.static == "pass"
        return AuthorityResult(name, ok, "" if ok else "static authority: fail")
    repos = tuple(resolve_source(s) for s in authority.sources) or None
    if authority.keys is not None:
        check_as: KeyAuthority | KeylessAuthority = KeyAuthority(tuple(authority.keys))
        trusted_root = trust.trusted_root(None) if trust.has_roots else None
    elif authority.keyless is not None:
        trusted_root = trust.trusted_root(authority.keyless.trust_root_ref)
        check_as = KeylessAuthority(tuple(authority.keyless.identities), trusted_root)
    else:
        return AuthorityResult(name, False, "authority has neither key, keyless nor static")
    wants_timestamp = authority.rfc3161_trust_root_ref is not None
    tsa_root = trust.trusted_root(authority.rfc3161_trust_root_ref or None) if wants_timestamp else trusted_root
    require_tlog = not authority.ctlog_disabled and not wants_timestamp
    strict_ref = policy.docker_reference_strict
    evidence: list[SignatureEvidence] = []

    def accept(outcome: Outcome) -> bool:
        if outcome.ok and strict_ref and outcome.docker_reference not in (upstream.name, str(upstream)):
            outcome.ok = False
            outcome.reason = (f"signed docker-reference {outcome.docker_reference!r} is not {upstream.name!r} "
                              "(dockerReference: strict)")
        return outcome.ok

    if authority.attestations:
        reasons = []
        for spec in authority.attestations:
            found = False
            for cand in artifacts.attestations(repos):
                outcome = check_attestation(
                    cand.data, cand.annotations, expected_digest=artifacts.digest, authority=check_as,
                    trusted_root=trusted_root, require_tlog=require_tlog, predicate_type=spec.predicate_type,
                    require_timestamp=wants_timestamp, tsa_root=tsa_root)
                if outcome.ok and outcome.statement is not None and not spec.evaluate(outcome.statement.predicate):
                    outcome.ok = False
                    outcome.reason = f"attestation {spec.name}: condition is false"
                evidence.append(_evidence(cand, outcome))
                if outcome.ok:
                    found = True
                    break
            if not found:
                reasons.append(f"no verified {spec.predicate_type} attestation satisfying {spec.name!r}")
        return AuthorityResult(name, not reasons, "; ".join(reasons), evidence)

    for cand in artifacts.signatures(repos):
        outcome = check_simple_signing(
            cand.data, cand.annotations.get(ANN_SIGNATURE, ""), cand.annotations,
            expected_digest=artifacts.digest, authority=check_as, trusted_root=trusted_root,
            require_tlog=require_tlog, require_timestamp=wants_timestamp, tsa_root=tsa_root)
        accepted = accept(outcome)
        evidence.append(_evidence(cand, outcome))
        if accepted:
            return AuthorityResult(name, True, "", evidence)
    for cand in artifacts.bundles(repos):
        outcome = check_sigstore_bundle(cand.data, expected_digest=artifacts.digest, authority=check_as,
                                               require_tlog=require_tlog, trusted_root=trusted_root,
                                               require_timestamp=wants_timestamp, tsa_root=tsa_root)
        accepted = accept(outcome)
        evidence.append(_evidence(cand, outcome))
        if accepted:
            return AuthorityResult(name, True, "", evidence)
    if not evidence:
        return AuthorityResult(name, False, f"no signatures found for {artifacts.digest}", evidence)
    last = "; ".join(sorted({e.reason for e in evidence if e.reason}))
    return AuthorityResult(name, False, f"no signature verified ({last})", evidence)


def evaluate(ref: str, artifacts: AttachedLookup, upstream: Reference | None, upstream_source: str,
             policies: PolicySet, trust: Trust, *, resolve_source: SourceResolver) -> VerificationResult:
    """Apply ``policies`` to the image; see the module docstring for the rules."""
    result = VerificationResult(ref=ref, digest=artifacts.digest, upstream=str(upstream) if upstream else None,
                                upstream_source=upstream_source, allowed=False, decision="deny",
                                policy_digest=policies.digest, trust_digest=trust.digest)
    if upstream is None:
        result.reasons.append(f"cannot tell where {ref} came from: {upstream_source}")
        return result
    pre = policies.pre_decision(upstream)
    if pre is not None:
        result.allowed = pre.allowed
        result.decision = "allow" if pre.allowed else "deny"
        (result.warnings if pre.allowed else result.reasons).append(pre.reason)
        return result
    selected: Sequence[ImagePolicy] = policies.select(upstream)
    if not selected:
        action = policies.no_match
        result.allowed = action in ("allow", "warn")
        result.decision = {"allow": "allow", "warn": "warn"}.get(action, "deny")
        message = f"no policy matches {upstream} (noMatchPolicy: {action})"
        (result.warnings if result.allowed else result.reasons).append(message)
        return result
    denied = False
    for policy in selected:
        outcomes = [_check_authority(a, policy, artifacts, upstream, trust, resolve_source)
                    for a in policy.authorities]
        ok = policy.satisfied({a.name: a.ok for a in outcomes})
        result.policies.append(PolicyResult(policy.name, policy.mode, ok, outcomes))
        if ok:
            continue
        why = "; ".join(f"{a.name}: {a.reason}" for a in outcomes if not a.ok) or "authorities not satisfied"
        message = f"policy {policy.name}: {why}"
        if policy.mode == "warn":
            result.warnings.append(message)
        else:
            denied = True
            result.reasons.append(message)
    result.allowed = not denied
    result.decision = "deny" if denied else ("warn" if result.warnings else "allow")
    return result
