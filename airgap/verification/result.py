"""What verification says of one image: allowed or not, why, and the evidence (which policy, which authority,
which signature, which key id or identity). The CLI, the Python API, the webhook and the audit all read it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SignatureEvidence:
    """One candidate checked against one authority: what was checked, with which key or identity."""

    kind: str
    location: str
    layer_digest: str
    ok: bool
    reason: str
    key_id: str | None = None
    identity: str | None = None
    issuer: str | None = None
    docker_reference: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class AuthorityResult:
    """One authority of one policy: passed or not, why, the candidates it checked, and who signed what it
    accepted (``key sha256:...`` or ``identity SUBJECT from ISSUER``; distinct signers count toward N-of-M)."""

    name: str
    ok: bool
    reason: str
    evidence: list[SignatureEvidence] = field(default_factory=list)
    signers: list[str] = field(default_factory=list)


@dataclass
class PolicyResult:
    """One policy applied to the image; ``scope`` says whose it is on a site (``bundle NAME``, ``site policy``)."""

    name: str
    mode: str
    ok: bool
    authorities: list[AuthorityResult] = field(default_factory=list)
    scope: str | None = None


@dataclass
class VerificationResult:
    """Truthy when the image may run. ``reasons`` say why (one line each); ``evidence`` is the JSON record
    audits reuse: which policy, which authority, which signature, which key id or identity."""

    ref: str
    digest: str | None
    upstream: str | None
    upstream_source: str
    allowed: bool
    decision: str  # "allow", "warn" (allowed with warnings) or "deny"
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    policies: list[PolicyResult] = field(default_factory=list)
    policy_digest: str | None = None
    trust_digest: str | None = None
    # Every upstream identity the image has (``upstream`` is the first): a digest shipped under several tags
    # has one per tag, and the policies of all of them applied.
    upstreams: list[str] = field(default_factory=list)
    # ``key: value`` pairs every accepted signature had to carry (``verify -a``): part of what was required, so
    # also part of ``policy_digest`` (the same policy with other pairs is another digest).
    required_annotations: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.allowed

    def require_annotations(self, annotations: Mapping[str, str]) -> None:
        """Record the ``-a`` pairs the verdict required, and fold them into :attr:`policy_digest`."""
        import hashlib
        import json

        self.required_annotations = dict(sorted(annotations.items()))
        if self.policy_digest is not None:
            canonical = json.dumps([self.policy_digest, self.required_annotations], sort_keys=True,
                                   separators=(",", ":"))
            self.policy_digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def evidence(self) -> dict[str, Any]:
        return asdict(self)
