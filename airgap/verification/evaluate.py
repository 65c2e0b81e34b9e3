"""Decide whether an image may run: policies x authorities x signatures, with evidence. No I/O here.

Inputs are an :class:`~airgap.verification.discover.AttachedLookup` (a registry's
:class:`~airgap.verification.discover.Artifacts`, lazy, its fetching in :mod:`airgap.verification.discover`; or a
bundle's, in memory), the upstream identities the image was translated back to (one ref, or several when a
digest was shipped under several tags: ``busybox:1.36`` and ``busybox:latest``), the policy set and the trust
material. The same function serves the CLI, the Python API, the webhook and the audit.

Rules, in order (policy-controller's, plus airgap's global settings):
1. an image whose identities are all allow-listed passes outright; one identity from a registry not in
   ``approvedRegistries`` fails it;
2. every policy whose globs match ANY of the image's upstream identities applies (information that selects
   policies is never dropped: a tag-scoped glob such as ``**:latest`` still sees the ``latest`` identity of a
   digest also shipped as ``1.36``), and the image must satisfy each of them; none matching ->
   ``noMatchPolicy`` (allow | warn | deny, default deny);
3. a policy is satisfied when its authorities are (any one, unless the policy says otherwise;
   ``match: {authorities: N}`` counts distinct signers, see :meth:`~airgap.policy.model.ImagePolicy.explain`);
4. an authority is satisfied by one signature (or, with ``attestations``, one verified attestation per
   entry whose condition holds; for an entry translated from Kyverno, every verified attestation of its type
   must satisfy the condition) that verifies against its key or keyless identity and names the image's
   digest; ``dockerReference: strict`` also requires the signed docker-reference to be an upstream repo the
   policy matched. A sigstore bundle counts as a signature only when it is a message signature or a DSSE
   statement of cosign's signature type (``https://sigstore.dev/cosign/sign/v1``): a bundle carrying an
   attestation satisfies ``attestations`` entries, never a signature authority (stricter than cosign v3.1.3,
   which accepts any verified bundle as a signature). A keyless authority's ``ca-cert`` is its only anchor;
5. a failing policy in ``warn`` mode adds a warning instead of denying;
6. ``annotations`` (``verify -a key=value``, cosign's check): a signature an authority accepts must also carry
   every pair, in the simple-signing payload's ``optional`` section or, in a sigstore bundle, the annotations
   of the statement subject naming the image (as cosign v3); a signature missing one is a failed candidate
   with the reason. Static and attestation authorities are not about signatures and are not affected;
7. an authority with ``rfc3161timestamp`` needs a signed timestamp verified against the TSAs of its
   ``trustRootRef`` (empty: the default root) and no transparency-log entry: policy-controller sets
   ``UseSignedTimestamps`` and ``IgnoreTlog`` for it (pkg/webhook/validator.go). For a keyless signature
   that is what makes its expired short-lived certificate acceptable there too; airgap also demands the
   timestamp of key signatures, where policy-controller would let one without it through. A timestamp that
   is present is verified under every policy (cosign v2), against the authority's root.
Multi-arch: a digest needs its own signature (cosign's rule; ``airgap sign --recursive`` signs each child).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airgap.checks.bundle import check_sigstore_bundle
from airgap.checks.cosign import ANN_SIGNATURE, COSIGN_SIGN_PREDICATE, SimpleSigning
from airgap.checks.legacy import check_attestation, check_simple_signing
from airgap.checks.outcome import Check, KeyAuthority, KeylessAuthority
from airgap.verification.result import AuthorityResult, PolicyResult, SignatureEvidence, VerificationResult

if TYPE_CHECKING:
    from airgap.checks.outcome import Outcome
    from airgap.checks.roots import TrustedRoot
    from airgap.policy.model import AttestationSpec, Authority, ImagePolicy
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


def signer_of(outcome: Outcome) -> str:
    """Who made a verified signature, as N-of-M counts signers: the key, or the keyless identity."""
    if outcome.key_id:
        return f"key {outcome.key_id}"
    return f"identity {outcome.identity} from {outcome.issuer}"


class _AuthorityCheck:
    """One authority of one policy checked against the candidates of one image."""

    def __init__(self, authority: Authority, policy: ImagePolicy, artifacts: AttachedLookup,
                 upstreams: Sequence[Reference], trust: Trust, resolve_source: SourceResolver,
                 annotations: Mapping[str, str] | None = None) -> None:
        self.authority, self.artifacts = authority, artifacts
        self.annotations = dict(annotations or {})
        self.repos = tuple(resolve_source(s) for s in authority.sources) or None
        self.trusted_root: TrustedRoot | None
        if authority.keys is not None:
            self.check_as: KeyAuthority | KeylessAuthority = KeyAuthority(tuple(authority.keys))
            self.trusted_root = trust.with_tlogs(trust.trusted_root(None) if trust.has_roots else None,
                                                 authority.ctlog_trust_root_ref)
        else:
            assert authority.keyless is not None  # noqa: S101 - the caller handled static
            self.trusted_root = trust.with_tlogs(
                trust.keyless_root(authority.keyless.trust_root_ref, authority.keyless.ca_cert_pem),
                authority.ctlog_trust_root_ref)
            assert self.trusted_root is not None  # noqa: S101 - with_tlogs keeps a root it is given
            self.check_as = KeylessAuthority(tuple(authority.keyless.identities), self.trusted_root)
        self.require_sct = authority.keyless is None or not authority.keyless.insecure_ignore_sct
        self.wants_timestamp = authority.rfc3161_trust_root_ref is not None
        self.tsa_root = (trust.trusted_root(authority.rfc3161_trust_root_ref or None) if self.wants_timestamp
                         else self.trusted_root)
        self.require_tlog = not authority.ctlog_disabled and not self.wants_timestamp
        # dockerReference: strict accepts a signed docker-reference naming an upstream this policy matched
        self.strict_names = ({n for u in upstreams if policy.matches(u) for n in (u.name, str(u))}
                             if policy.docker_reference_strict else None)
        self.evidence: list[SignatureEvidence] = []

    def _strict(self, outcome: Outcome) -> bool:
        if outcome.ok and self.strict_names is not None and outcome.docker_reference not in self.strict_names:
            outcome.ok = False
            outcome.reason = (f"signed docker-reference {outcome.docker_reference!r} is not "
                              f"{' or '.join(sorted(self.strict_names))!r} (dockerReference: strict)")
        return outcome.ok

    def signatures(self, collect_all: bool) -> AuthorityResult:
        """Signatures (legacy ``.sig`` layers, then sigstore bundles of cosign's signature type). The first
        that verifies satisfies the authority; ``collect_all`` (N-of-M) goes on to find every signer."""
        a, signers = self.artifacts, list[str]()
        for cand in a.signatures(self.repos):
            outcome = check_simple_signing(
                cand.data, cand.annotations.get(ANN_SIGNATURE, ""), cand.annotations, expected_digest=a.digest,
                authority=self.check_as, trusted_root=self.trusted_root, require_tlog=self.require_tlog,
                require_sct=self.require_sct, require_timestamp=self.wants_timestamp, tsa_root=self.tsa_root)
            if self.annotations:
                self._annotated(outcome, _payload_annotations(cand.data))
            if self._record(cand, outcome, signers) and not collect_all:
                break
        if not signers or collect_all:
            for cand in a.bundles(self.repos):
                outcome = check_sigstore_bundle(
                    cand.data, expected_digest=a.digest, authority=self.check_as, require_tlog=self.require_tlog,
                    trusted_root=self.trusted_root, require_timestamp=self.wants_timestamp, tsa_root=self.tsa_root,
                    predicate_type=COSIGN_SIGN_PREDICATE)
                if self.annotations:
                    self._annotated(outcome, _subject_annotations(outcome, a.digest))
                if self._record(cand, outcome, signers) and not collect_all:
                    break
        name = self.authority.name
        if signers:
            return AuthorityResult(name, True, "", self.evidence, sorted(set(signers)))
        if not self.evidence:
            return AuthorityResult(name, False, f"no signatures found for {a.digest}", self.evidence)
        last = "; ".join(sorted({e.reason for e in self.evidence if e.reason}))
        return AuthorityResult(name, False, f"no signature verified ({last})", self.evidence)

    def _annotated(self, outcome: Outcome, have: Mapping[str, Any] | None) -> None:
        """``-a key=value``: a verified signature must carry every pair (``have``: its signed annotations; None
        when it carries none that can be read), compared as cosign compares them (the same string)."""
        if not outcome.ok:
            return
        missing = [f"{k}={v}" for k, v in sorted(self.annotations.items()) if (have or {}).get(k) != v]
        if have is None:
            reason = "annotations: the signature carries no signed annotations"
        elif missing:
            reason = (f"annotations: missing or different {', '.join(missing)} (signed: "
                      f"{', '.join(f'{k}={v}' for k, v in sorted(have.items())) or 'none'})")
        else:
            outcome.checks.append(Check("annotations", True, ", ".join(f"{k}={v}" for k, v in
                                                                       sorted(self.annotations.items()))))
            return
        outcome.ok, outcome.reason = False, reason
        outcome.checks.append(Check("annotations", False, reason))

    def _record(self, cand: Candidate, outcome: Outcome, signers: list[str]) -> bool:
        if cand.refused:  # not fetched (over a size cap): a failed candidate, whatever the check said
            outcome.ok, outcome.reason = False, cand.refused
        accepted = self._strict(outcome)
        self.evidence.append(_evidence(cand, outcome))
        if accepted:
            signers.append(signer_of(outcome))
        return accepted

    def attestations(self, collect_all: bool) -> AuthorityResult:
        """Every ``attestations`` entry needs one verified attestation (a legacy ``.att`` DSSE envelope, or a
        sigstore bundle) of its predicate type whose condition holds over the whole statement."""
        reasons, signers = list[str](), list[str]()
        for spec in self.authority.attestations:
            found = violated = False
            for cand, outcome in self._attestation_outcomes(spec):
                if outcome.ok and outcome.statement is not None:
                    holds, why = spec.explain(outcome.statement.predicate, outcome.statement.doc)
                    if not holds:
                        outcome.ok = False
                        violated = violated or spec.every
                        detail = why.split(": ", 1)[-1] if why else ""
                        outcome.reason = f"attestation {spec.name}: condition is false" + (f" ({detail})" if detail
                                                                                          else "")
                if self._record(cand, outcome, signers):
                    found = True
                    if not collect_all and not spec.every:  # every: all of them are looked at
                        break
            if violated:
                reasons.append(f"a verified {spec.predicate_type} attestation does not satisfy {spec.name!r} "
                               "(every one must)")
            elif not found:
                reasons.append(f"no verified {spec.predicate_type} attestation satisfying {spec.name!r}")
        ok = not reasons
        return AuthorityResult(self.authority.name, ok, "; ".join(reasons), self.evidence,
                               sorted(set(signers)) if ok else [])

    def _attestation_outcomes(self, spec: AttestationSpec) -> list[tuple[Candidate, Outcome]]:
        a, out = self.artifacts, []
        for cand in a.attestations(self.repos):
            out.append((cand, check_attestation(
                cand.data, cand.annotations, expected_digest=a.digest, authority=self.check_as,
                trusted_root=self.trusted_root, require_tlog=self.require_tlog, predicate_type=spec.predicate_type,
                require_sct=self.require_sct, require_timestamp=self.wants_timestamp, tsa_root=self.tsa_root)))
        for cand in a.bundles(self.repos):
            out.append((cand, check_sigstore_bundle(
                cand.data, expected_digest=a.digest, authority=self.check_as, require_tlog=self.require_tlog,
                trusted_root=self.trusted_root, require_timestamp=self.wants_timestamp, tsa_root=self.tsa_root,
                predicate_type=spec.predicate_type)))
        return out


def _payload_annotations(payload: bytes) -> dict[str, Any] | None:
    """The ``optional`` section of a simple-signing payload (called only once the signature over it verified)."""
    from airgap.errors import Error

    try:
        return SimpleSigning.from_bytes(payload).optional
    except Error:
        return None


def _subject_annotations(outcome: Outcome, digest: str) -> dict[str, Any] | None:
    """The annotations of the verified bundle statement's subject naming ``digest`` (cosign v3's
    ``IntotoSubjectClaimVerifier``); None for a bundle without a statement (a message signature)."""
    if outcome.statement is None:
        return None
    alg, hexpart = digest.split(":", 1)
    for subject in outcome.statement.doc.get("subject") or []:
        if isinstance(subject, dict) and isinstance(subject.get("digest"), dict) \
                and subject["digest"].get(alg) == hexpart:
            found = subject.get("annotations")
            return found if isinstance(found, dict) else {}
    return None


def _check_authority(authority: Authority, policy: ImagePolicy, artifacts: AttachedLookup,
                     upstreams: Sequence[Reference], trust: Trust, resolve_source: SourceResolver,
                     annotations: Mapping[str, str] | None = None) -> AuthorityResult:
    name = authority.name
    if authority.static is not None:
        ok = authority.static == "pass"
        return AuthorityResult(name, ok, "" if ok else "static authority: fail", [], [f"static {name}"] if ok else [])
    if authority.keys is None and authority.keyless is None:
        return AuthorityResult(name, False, "authority has neither key, keyless nor static")
    check = _AuthorityCheck(authority, policy, artifacts, upstreams, trust, resolve_source, annotations)
    collect_all = policy.threshold is not None
    return check.attestations(collect_all) if authority.attestations else check.signatures(collect_all)


def evaluate(ref: str, artifacts: AttachedLookup, upstreams: Sequence[Reference], upstream_source: str,
             policies: PolicySet, trust: Trust, *, resolve_source: SourceResolver,
             annotations: Mapping[str, str] | None = None) -> VerificationResult:
    """Apply ``policies`` to the image known upstream as ``upstreams`` (empty: unknown origin, denied); see the
    module docstring for the rules. ``annotations``: pairs every accepted signature must carry (rule 6)."""
    result = VerificationResult(ref=ref, digest=artifacts.digest, upstream=str(upstreams[0]) if upstreams else None,
                                upstream_source=upstream_source, allowed=False, decision="deny",
                                policy_digest=policies.digest, trust_digest=trust.digest,
                                upstreams=[str(u) for u in upstreams])
    if not upstreams:
        result.reasons.append(f"cannot tell where {ref} came from: {upstream_source}")
        return result
    pre = policies.pre_decision_for(upstreams)
    if pre is not None:
        result.allowed = pre.allowed
        result.decision = "allow" if pre.allowed else "deny"
        (result.warnings if pre.allowed else result.reasons).append(pre.reason)
        return result
    selected = policies.select_for(upstreams)
    if not selected:
        action = policies.no_match
        result.allowed = action in ("allow", "warn")
        result.decision = {"allow": "allow", "warn": "warn"}.get(action, "deny")
        names = " or ".join(str(u) for u in upstreams)
        message = f"no policy matches {names} (noMatchPolicy: {action})"
        (result.warnings if result.allowed else result.reasons).append(message)
        return result
    denied = False
    for policy in selected:
        outcomes = [_check_authority(a, policy, artifacts, upstreams, trust, resolve_source, annotations)
                    for a in policy.authorities]
        ok, why = policy.explain({a.name: a.ok for a in outcomes}, {a.name: a.signers for a in outcomes})
        result.policies.append(PolicyResult(policy.name, policy.mode, ok, outcomes))
        if ok:
            continue
        failed = "; ".join(f"{a.name}: {a.reason}" for a in outcomes if not a.ok)
        message = f"policy {policy.name}: {failed}" if failed else why
        if policy.mode == "warn":
            result.warnings.append(message)
        else:
            denied = True
            result.reasons.append(message)
    result.allowed = not denied
    result.decision = "deny" if denied else ("warn" if result.warnings else "allow")
    return result
