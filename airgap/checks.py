"""Pure signature checks: bytes and trust in, an :class:`Outcome` out. No registry, no network, no clock
unless given (``now``).

One call checks ONE signature candidate (a legacy ``.sig`` layer, a ``.att`` DSSE envelope, or a
sigstore bundle) against ONE authority (a set of keys, or keyless identities plus a trusted root).
Untrusted input never raises: every problem becomes ``Outcome(ok=False, reason=...)`` with the list
of checks that ran, so callers can report evidence and try the next candidate. Checks fail closed:
anything present but invalid (a Rekor SET, an SCT, a chain) fails the candidate even when it was
optional.

Sigstore bundles are checked in :mod:`airgap.checks_bundle`; certificates in :mod:`airgap.checks_keyless`;
Rekor SETs in :mod:`airgap.checks_tlog`; RFC 3161 signed timestamps in :mod:`airgap.checks_tsa`.

Signed timestamps (cosign v2's ``verifyInternal``): a legacy signature's ``rfc3161timestamp`` annotation is
verified whenever present (over the raw signature; for an attestation, over the DSSE envelope), and fails
the candidate when invalid or when there is no trusted root with TSAs; its time is then a time at which a
keyless certificate must be valid (with the Rekor time when there is one; "now" only when there is
neither). ``require_timestamp`` (a policy's ``rfc3161timestamp``) demands one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from airgap import cosign
from airgap.checks_keyless import Identity
from airgap.errors import Error

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from airgap.checks_tlog import TlogEntry
    from airgap.checks_tsa import SignedTimestamp
    from airgap.keys import PublicKey
    from airgap.roots import TrustedRoot

__all__ = ["Check", "Identity", "KeyAuthority", "KeylessAuthority", "Outcome", "check_attestation",
           "check_sigstore_bundle", "check_simple_signing"]


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
    statement: cosign.Statement | None = None
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


def key_signed(run: Run, keys: tuple[PublicKey, ...], signature: bytes, data: bytes) -> PublicKey:
    """The first key that verifies ``signature`` over ``data``; fails the run if none does."""
    from airgap.keys import algorithm, key_id, verify_signature

    if not keys:
        raise run.fail("signature", "the authority has no keys")
    for key in keys:
        if verify_signature(key, signature, data):
            run.outcome.key_id = key_id(key)
            run.ok("signature", f"{algorithm(key)} key {run.outcome.key_id}")
            return key
    raise run.fail("signature", f"does not verify with any of {len(keys)} authority key(s)")


def timestamp_check(run: Run, annotations: Mapping[str, str], root: TrustedRoot | None, require: bool,
                    data: bytes) -> SignedTimestamp | None:
    """Verify the ``rfc3161timestamp`` annotation over ``data`` when present (fail closed); demand one when
    ``require``. ``root`` supplies the TSAs."""
    from airgap.checks_tsa import TimestampError, parse_annotation

    value = annotations.get(cosign.ANN_RFC3161)
    try:
        responses = [parse_annotation(value)] if value else []
    except TimestampError as exc:
        raise run.fail("timestamp", str(exc)) from None
    return timestamps_check(run, responses, data, root, require)


def timestamps_check(run: Run, responses: Sequence[bytes], data: bytes, root: TrustedRoot | None,
                     require: bool) -> SignedTimestamp | None:
    """Verify every DER TimeStampResp in ``responses`` over ``data`` against ``root``'s TSAs (any that fails
    fails the candidate); demand at least one when ``require``. Returns the first, also kept on the outcome."""
    from airgap.checks_tsa import TimestampError, verify_timestamp

    if not responses:
        if require:
            raise run.fail("timestamp", "no signed RFC 3161 timestamp, and the policy requires one (rfc3161timestamp)")
        return None
    if root is None:
        raise run.fail("timestamp", "signed timestamp present but no trusted root with timestamp authorities "
                                    "to verify it")
    for response in responses:
        try:
            stamp = verify_timestamp(response, data, root)
        except TimestampError as exc:
            raise run.fail("timestamp", str(exc)) from None
        run.outcome.signed_time = run.outcome.signed_time or stamp
        run.ok("timestamp", f"RFC 3161 timestamp {stamp.describe()}")
    return run.outcome.signed_time


def _tlog(run: Run, annotations: Mapping[str, str], root: TrustedRoot | None, require_tlog: bool, *,
          data: bytes, signature: bytes, spki: bytes) -> TlogEntry | None:
    """Check the Rekor SET annotation when present; demand one when ``require_tlog``."""
    from airgap.checks_tlog import TlogError, check_body, verify_set

    bundle = annotations.get(cosign.ANN_BUNDLE)
    if not bundle:
        if require_tlog:
            raise run.fail("tlog", "no Rekor SET, and the transparency log is required")
        return None
    if root is None:
        if require_tlog:
            raise run.fail("tlog", "no trusted root to check the Rekor SET with")
        run.ok("tlog", "Rekor SET present but not checked (no trusted root given; tlog not required)")
        return None
    try:
        entry = verify_set(bundle, root)
        check_body(entry, data=data, signature=signature, spki=spki)
    except TlogError as exc:
        raise run.fail("tlog", str(exc)) from None
    run.outcome.integrated_time = entry.integrated_time
    run.ok("tlog", f"Rekor SET {entry.kind} logIndex {entry.log_index} at {entry.time:%Y-%m-%dT%H:%M:%SZ}")
    return entry


def _keyless(run: Run, annotations: Mapping[str, str], authority: KeylessAuthority, root: TrustedRoot,
             require_tlog: bool, require_sct: bool, now: datetime | None, *, data: bytes,
             signature: bytes, signed: bytes, stamp: SignedTimestamp | None = None) -> None:
    """Certificate path: SET and/or signed timestamp (the signing times), chain at each, SCT, identity,
    signature."""
    from airgap.checks_keyless import CertError, issuer_of, load_certificates, subject_of, verify_chain, verify_sct
    from airgap.keys import spki_der, verify_signature

    pem = annotations.get(cosign.ANN_CERTIFICATE)
    if not pem:
        raise run.fail("certificate", "no certificate on a keyless signature")
    try:
        leaf: Certificate = load_certificates(pem, "certificate")[0]
        extra = load_certificates(annotations[cosign.ANN_CHAIN], "chain") if annotations.get(cosign.ANN_CHAIN) else []
        spki = spki_der(leaf.public_key())  # type: ignore[arg-type]
    except (CertError, TypeError, ValueError) as exc:
        raise run.fail("certificate", str(exc)) from None
    entry = _tlog(run, annotations, root, require_tlog, data=data, signature=signature, spki=spki)
    times = [(t, why) for t, why in ((stamp.time if stamp else None, "TSA"), (entry.time if entry else None, "tlog"))
             if t is not None] or [(now or datetime.now(UTC), "time: now, no tlog or signed timestamp")]
    try:
        for at, why in times:
            chain = verify_chain(leaf, extra, root, at)
            run.ok("chain", f"chains to {chain[-1].subject.rfc4514_string()} at {at:%Y-%m-%dT%H:%M:%SZ} ({why})")
    except CertError as exc:
        raise run.fail("chain", str(exc)) from None
    if require_sct:
        try:
            run.ok("sct", verify_sct(leaf, chain, root))
        except CertError as exc:
            raise run.fail("sct", str(exc)) from None
    try:
        subject, issuer = subject_of(leaf), issuer_of(leaf)
    except CertError as exc:
        raise run.fail("identity", str(exc)) from None
    run.outcome.identity, run.outcome.issuer = subject, issuer
    match = next((i for i in authority.identities if i.matches(subject, issuer)), None)
    if match is None:
        raise run.fail("identity", f"{subject} from {issuer} matches none of {len(authority.identities)} identities")
    run.ok("identity", f"{subject} from {issuer} matches {match}")
    if not verify_signature(leaf.public_key(), signature, signed):  # type: ignore[arg-type]
        raise run.fail("signature", "does not verify with the certificate's key")
    run.ok("signature", f"made by the certificate key of {subject}")


def _root_for(authority: Authority, trusted_root: TrustedRoot | None) -> TrustedRoot | None:
    if trusted_root is not None:
        return trusted_root
    return authority.trusted_root if isinstance(authority, KeylessAuthority) else None


def check_simple_signing(payload: bytes, signature_b64: str, annotations: Mapping[str, str], *,
                         expected_digest: str, authority: Authority, trusted_root: TrustedRoot | None = None,
                         require_tlog: bool = False, require_sct: bool = True,
                         now: datetime | None = None, require_timestamp: bool = False,
                         tsa_root: TrustedRoot | None = None) -> Outcome:
    """Check a legacy cosign signature: ``payload`` (the exact simple-signing bytes), its base64
    signature and the OCI layer annotations, for the image ``expected_digest``.

    A signed timestamp is checked against ``tsa_root`` (default: the root used for the rest)."""
    from airgap.keys import spki_der

    run = Run("key" if isinstance(authority, KeyAuthority) else "keyless")
    try:
        try:
            signature = cosign.b64decode(signature_b64, "signature")
            parsed = cosign.SimpleSigning.from_bytes(payload)
        except Error as exc:
            raise run.fail("payload", str(exc)) from None
        run.outcome.docker_reference, run.outcome.signed_digest = parsed.docker_reference, parsed.manifest_digest
        root = _root_for(authority, trusted_root)
        if isinstance(authority, KeyAuthority):
            key = key_signed(run, authority.keys, signature, payload)
            timestamp_check(run, annotations, tsa_root or root, require_timestamp, signature)
            _tlog(run, annotations, root, require_tlog, data=payload, signature=signature, spki=spki_der(key))
        else:
            stamp = timestamp_check(run, annotations, tsa_root or root or authority.trusted_root, require_timestamp,
                                    signature)
            _keyless(run, annotations, authority, root or authority.trusted_root, require_tlog, require_sct, now,
                     data=payload, signature=signature, signed=payload, stamp=stamp)
        if parsed.manifest_digest != expected_digest:
            raise run.fail("digest", f"payload names {parsed.manifest_digest}, not {expected_digest}")
        run.ok("digest", f"payload names {expected_digest}")
    except Failed:
        pass
    return run.finish()


def predicate_type_matches(wanted: str | None, actual: str) -> bool:
    """cosign's ``--type`` shorthands (``slsaprovenance``...) or a full predicate type URI."""
    return wanted is None or actual == cosign.PREDICATE_TYPES.get(wanted, wanted)


def check_statement(run: Run, payload: bytes, expected_digest: str | None, predicate_type: str | None) -> None:
    """The in-toto statement names the image (``expected_digest``) and has the wanted predicate type."""
    try:
        statement = cosign.Statement.from_bytes(payload)
    except Error as exc:
        raise run.fail("statement", str(exc)) from None
    run.outcome.statement = statement
    if expected_digest is not None:
        if not statement.names_digest(expected_digest):
            raise run.fail("digest", f"statement subjects do not name {expected_digest}")
        run.outcome.signed_digest = expected_digest
        run.ok("digest", f"statement subject names {expected_digest}")
    if not predicate_type_matches(predicate_type, statement.predicate_type):
        raise run.fail("predicate", f"predicate type is {statement.predicate_type}, not {predicate_type}")
    run.ok("predicate", statement.predicate_type)


def check_attestation(envelope: bytes, annotations: Mapping[str, str], *, expected_digest: str,
                      authority: Authority, trusted_root: TrustedRoot | None = None, require_tlog: bool = False,
                      predicate_type: str | None = None, require_sct: bool = True,
                      now: datetime | None = None, require_timestamp: bool = False,
                      tsa_root: TrustedRoot | None = None) -> Outcome:
    """Check a legacy cosign attestation (a DSSE envelope in a ``.att`` layer): a signature over the PAE,
    the statement naming ``expected_digest``, and the predicate type when asked."""
    from airgap.keys import spki_der

    keyed = isinstance(authority, KeyAuthority)
    run = Run("attestation-key" if keyed else "attestation-keyless")
    try:
        try:
            env = cosign.Envelope.from_bytes(envelope)
        except Error as exc:
            raise run.fail("envelope", str(exc)) from None
        root = _root_for(authority, trusted_root)
        if isinstance(authority, KeyAuthority):
            key, signature = None, b""
            for _, signature in env.signatures:
                probe = Run(run.outcome.kind)
                try:
                    key = key_signed(probe, authority.keys, signature, env.pae)
                except Failed:
                    continue
                run.outcome.key_id = probe.outcome.key_id
                run.outcome.checks.extend(probe.outcome.checks)
                break
            if key is None:
                raise run.fail("signature", f"no envelope signature verifies with the {len(authority.keys)} key(s)")
            timestamp_check(run, annotations, tsa_root or root, require_timestamp, envelope)
            _tlog(run, annotations, root, require_tlog, data=env.payload, signature=signature, spki=spki_der(key))
        else:
            if len(env.signatures) != 1:
                raise run.fail("envelope", f"expected one signature on a keyless envelope, got {len(env.signatures)}")
            stamp = timestamp_check(run, annotations, tsa_root or root or authority.trusted_root, require_timestamp,
                                    envelope)  # cosign timestamps an attestation's payload: the envelope
            _keyless(run, annotations, authority, root or authority.trusted_root, require_tlog, require_sct, now,
                     data=env.payload, signature=env.signatures[0][1], signed=env.pae, stamp=stamp)
        check_statement(run, env.payload, expected_digest, predicate_type)
    except Failed:
        pass
    return run.finish()


def check_sigstore_bundle(bundle: bytes, *, expected_digest: str | None, authority: Authority,
                          artifact: bytes | None = None, require_tlog: bool = True,
                          predicate_type: str | None = None, trusted_root: TrustedRoot | None = None,
                          require_timestamp: bool = False, tsa_root: TrustedRoot | None = None) -> Outcome:
    """Check a sigstore bundle (v0.1-v0.3; message signature or DSSE). See :mod:`airgap.checks_bundle`."""
    from airgap.checks_bundle import check_bundle

    return check_bundle(bundle, expected_digest=expected_digest, authority=authority, artifact=artifact,
                        require_tlog=require_tlog, predicate_type=predicate_type, trusted_root=trusted_root,
                        require_timestamp=require_timestamp, tsa_root=tsa_root)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
