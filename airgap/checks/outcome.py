"""What checking one signature candidate produces: an :class:`Outcome` with the list of checks that ran.

One call of a check (:mod:`~airgap.checks.legacy`, :mod:`~airgap.checks.bundle`) takes ONE candidate (a
legacy ``.sig`` layer, a ``.att`` DSSE envelope, or a sigstore bundle) and ONE authority (a set of keys, or
keyless identities plus a trusted root). Untrusted input never raises: every problem becomes
``Outcome(ok=False, reason=...)`` with the checks that ran, so callers can report evidence and try the next
candidate. A :class:`Run` collects the checks and stops at the first failure (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airgap.checks.cosign import Statement
    from airgap.checks.keyless import Identity
    from airgap.checks.roots import TrustedRoot
    from airgap.checks.tsa import SignedTimestamp
    from airgap.keys.public import PublicKey




@dataclass(frozen=True)
class Check:
    """One named check and its result, e.g. ``("signature", True, "ecdsa-p256 key sha256:..")``."""

    name: str
    ok: bool
    detail: str


@dataclass
class Outcome:
    """The result of checking one signature candidate against one authority."""

    ok: bool
    kind: str  # "key" | "keyless" | "bundle-key" | "bundle-keyless" | "attestation-key" | "attestation-keyless"
    reason: str  # one line, why not ok ("" when ok)
    checks: list[Check] = field(default_factory=list)
    key_id: str | None = None
    identity: str | None = None
    issuer: str | None = None
    docker_reference: str | None = None
    signed_digest: str | None = None
    integrated_time: int | None = None
    statement: Statement | None = None
    signed_time: SignedTimestamp | None = None  # a verified RFC 3161 timestamp

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"ok": self.ok, "kind": self.kind, "reason": self.reason,
                                  "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks]}
        for name in ("key_id", "identity", "issuer", "docker_reference", "signed_digest", "integrated_time"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.statement is not None:
            out["predicate_type"] = self.statement.predicate_type
        if self.signed_time is not None:
            out["signed_timestamp"] = {"time": self.signed_time.time.isoformat(), "tsa": self.signed_time.tsa}
        return out


@dataclass(frozen=True)
class KeyAuthority:
    """Accept signatures made by any of these public keys."""

    keys: tuple[PublicKey, ...]


@dataclass(frozen=True)
class KeylessAuthority:
    """Accept Fulcio certificates chaining to ``trusted_root`` whose SAN/issuer match any identity."""

    identities: tuple[Identity, ...]
    trusted_root: TrustedRoot


Authority = KeyAuthority | KeylessAuthority


class Failed(Exception):
    """Internal: stops a run at the first failed check."""


class Run:
    """Collects checks for one candidate; :meth:`fail` records a failed check and stops the run."""

    def __init__(self, kind: str) -> None:
        self.outcome = Outcome(ok=False, kind=kind, reason="")

    def ok(self, name: str, detail: str) -> None:
        self.outcome.checks.append(Check(name, True, detail))

    def fail(self, name: str, reason: str) -> Failed:
        self.outcome.checks.append(Check(name, False, reason))
        self.outcome.reason = reason if reason.startswith(f"{name}:") else f"{name}: {reason}"
        return Failed(reason)

    def finish(self) -> Outcome:
        self.outcome.ok = all(c.ok for c in self.outcome.checks) and bool(self.outcome.checks)
        self.outcome.reason = "" if self.outcome.ok else self.outcome.reason or "no checks ran"
        return self.outcome
