"""The typed policy model (ClusterImagePolicy-shaped) and the pure rules that combine authority results.

Built by :mod:`airgap.policy.cip` from YAML; consumed by verification. Nothing here does I/O.

Combination rules, as sigstore policy-controller applies them:

* an image must satisfy EVERY policy whose globs match it;
* a policy is satisfied when ANY of its authorities passes (a ``static: {action: fail}`` authority never
  passes, ``static: {action: pass}`` always does), and then, when the policy says more, that too:
  ``policy: {type: cel, data: EXPR}`` over ``authorities`` (map of authority name to bool) and ``passed``
  (list of names that passed) (airgap's stand-in for policy-controller's CUE/Rego over ``authorityMatches``),
  and/or ``match: {authorities: N}`` (airgap: at least N authorities passed, credited to N DISTINCT
  signers: one key or keyless identity counts once however many authorities name it);
* an authority with ``attestations`` passes only when EVERY listed attestation is present, verified, and
  its condition holds (policy-controller's ``ValidatePolicyAttestationsForAuthority``); an entry marked
  ``every`` (Kyverno's) also fails when any verified attestation of its type does not satisfy the condition.

Kyverno ``verifyImages`` rules (:mod:`airgap.policy.kyverno`) land in the same model: one ImagePolicy per
attestor set, ``count`` as ``threshold``, ``skipImageReferences`` as ``skip``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from airgap.policy.cel import CelCondition
from airgap.policy.glob import Glob
from airgap.refs import Reference

if TYPE_CHECKING:
    from airgap.checks.keyless import Identity
    from airgap.keys.public import PublicKey


@dataclass(frozen=True)
class KeylessSpec:
    """``keyless``: certificate identities to accept, and which trust root (None: the bundled default)."""

    identities: tuple[Identity, ...]
    trust_root_ref: str | None = None
    url: str | None = None
    ca_cert_pem: bytes | None = None
    insecure_ignore_sct: bool = False


@dataclass(frozen=True)
class AttestationSpec:
    """One required attestation: its name, full predicate type URI, and optional CEL condition.

    The condition sees ``predicate`` (the statement's predicate), ``predicateType``, ``subject`` (the
    statement's subject list) and ``statement`` (the whole in-toto statement), e.g.
    ``predicate.buildType == "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"``.
    No condition means: a verified attestation of this type is enough.
    """

    name: str
    predicate_type: str
    condition: CelCondition | None = None
    # Kyverno's rule: EVERY verified attestation of this type from the authority must satisfy the condition (one
    # that does not fails the entry); policy-controller's (False): one verified attestation that satisfies it.
    every: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.condition, str):  # convenience for callers building specs in code
            object.__setattr__(self, "condition", CelCondition.compile(self.condition))

    def explain(self, predicate: Any, statement: Mapping[str, Any] | None = None) -> tuple[bool, str]:
        if self.condition is None:
            return True, ""
        stmt = dict(statement) if statement is not None else {"predicate": predicate}
        variables = {
            "predicate": predicate,
            "predicateType": stmt.get("predicateType", self.predicate_type),
            "subject": stmt.get("subject", []),
            "statement": stmt,
        }
        ok, why = self.condition.explain(variables)
        return ok, (f"attestation {self.name}: {why}" if why else "")

    def evaluate(self, predicate: Any, statement: Mapping[str, Any] | None = None) -> bool:
        return self.explain(predicate, statement)[0]


@dataclass(frozen=True)
class Authority:
    """One ``spec.authorities[]`` entry: exactly one of ``keys``, ``keyless``, ``static``.

    ``sources`` are the repositories to look for signatures in (``source[].oci``; empty: the image's own
    repository); ``ctlog_disabled`` is airgap's ``ctlog: {disabled: true}`` (do not require a transparency
    log entry). ``key_refs`` says where each key came from, for evidence (``data``, ``secretRef:NAME``...).
    """

    name: str
    keys: tuple[PublicKey, ...] | None = None
    keyless: KeylessSpec | None = None
    static: Literal["pass", "fail"] | None = None
    static_message: str = ""
    sources: tuple[str, ...] = ()
    tag_prefix: str | None = None
    ctlog_disabled: bool = False
    ctlog_url: str | None = None
    ctlog_trust_root_ref: str | None = None
    rfc3161_trust_root_ref: str | None = None
    attestations: tuple[AttestationSpec, ...] = ()
    hash_algorithm: str = "sha256"
    signature_format: Literal["legacy", "bundle"] = "legacy"
    key_refs: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "static" if self.static else "keyless" if self.keyless else "key"


class RefMatcher(Protocol):
    """What selects images besides :class:`Glob`: its text (for messages) and a match on an upstream ref."""

    @property
    def text(self) -> str: ...

    def matches(self, ref: Reference) -> bool: ...


@dataclass(frozen=True)
class ImagePolicy:
    """One ClusterImagePolicy: which images (globs, minus ``skip``), who may sign them (authorities), and how
    strictly. ``skip`` is Kyverno's ``skipImageReferences`` (see :mod:`airgap.policy.kyverno`)."""

    name: str
    globs: tuple[Glob, ...]
    authorities: tuple[Authority, ...]
    mode: Literal["enforce", "warn"] = "enforce"
    policy: CelCondition | None = None
    threshold: int | None = None
    docker_reference_strict: bool = False
    resource_match: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)
    origin: str = ""
    skip: tuple[RefMatcher, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.policy, str):
            object.__setattr__(self, "policy", CelCondition.compile(self.policy))

    def matches(self, ref: Reference) -> bool:
        return any(g.matches(ref) for g in self.globs) and not any(s.matches(ref) for s in self.skip)

    def explain(self, authority_ok: Mapping[str, bool],
                signers: Mapping[str, Collection[str]] | None = None) -> tuple[bool, str]:
        """Whether the per-authority results satisfy this policy, and why not (one line).

        ``signers`` names, per authority, the distinct signers (key ids, keyless identities) whose
        signatures it verified; ``match: {authorities: N}`` needs N passed authorities matched to N DISTINCT
        signers (one key named by two authorities, or under two names, counts once). Without ``signers``
        every passed authority counts as a signer of its own."""
        results = {a.name: bool(authority_ok.get(a.name, False)) for a in self.authorities}
        passed = [name for name, ok in results.items() if ok]
        if not passed:
            return False, f"policy {self.name}: no authority passed"
        if self.threshold is not None:
            distinct = _distinct_signers({n: (signers or {}).get(n) or {f"authority:{n}"} for n in passed})
            if distinct < self.threshold:
                return False, (
                    f"policy {self.name}: {len(passed)} of {len(results)} authorities passed with {distinct} "
                    f"distinct signer(s), {self.threshold} required"
                )
        if self.policy is not None:
            ok, why = self.policy.explain({"authorities": results, "passed": passed})
            if not ok:
                return False, f"policy {self.name}: {why}"
        return True, ""

    def satisfied(self, authority_ok: Mapping[str, bool],
                  signers: Mapping[str, Collection[str]] | None = None) -> bool:
        return self.explain(authority_ok, signers)[0]


def _distinct_signers(options: Mapping[str, Collection[str]]) -> int:
    """The most authorities that can each be credited to a different signer: a maximum bipartite matching
    (Kuhn's augmenting paths; policies have a handful of authorities, so this is tiny)."""
    owner: dict[str, str] = {}

    def assign(authority: str, seen: set[str]) -> bool:
        for signer in sorted(options[authority]):
            if signer in seen:
                continue
            seen.add(signer)
            if signer not in owner or assign(owner[signer], seen):
                owner[signer] = authority
                return True
        return False

    return sum(assign(a, set()) for a in sorted(options))


@dataclass(frozen=True)
class PreDecision:
    """A decision made from the ref alone, before any signature is looked at."""

    allowed: bool
    reason: str
