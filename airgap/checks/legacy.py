"""Legacy cosign signatures (``.sig`` simple-signing layers) and attestations (``.att`` DSSE envelopes), offline.

Key signatures are checked with the authority's keys; keyless ones through their certificate (chain to the
trusted root at the signing time, embedded SCT, identity and issuer: :mod:`~airgap.checks.keyless`). A Rekor
SET next to a signature (:mod:`~airgap.checks.tlog`) is checked whenever present and required unless the
policy disables the transparency log. No registry, no network, no clock unless given (``now``).

Signed timestamps (cosign v2's ``verifyInternal``): a legacy signature's ``rfc3161timestamp`` annotation is
verified whenever present (over the raw signature; for an attestation, over the DSSE envelope), and fails
the candidate when invalid or when there is no trusted root with TSAs; its time is then a time at which a
keyless certificate must be valid (with the Rekor time when there is one; "now" only when there is
neither). ``require_timestamp`` (a policy's ``rfc3161timestamp``) demands one. Sigstore bundles are
:mod:`airgap.checks.bundle`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from airgap.checks import cosign
from airgap.checks.outcome import Authority, Failed, KeyAuthority, KeylessAuthority, Outcome, Run
from airgap.checks.steps import check_statement, key_signed, timestamp_check
from airgap.checks.tlog import TlogError, check_body, verify_set
from airgap.errors import Error
from airgap.keys.public import spki_der, verify_signature

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from airgap.checks.roots import TrustedRoot
    from airgap.checks.tlog import TlogEntry
    from airgap.checks.tsa import SignedTimestamp


def _tlog(run: Run, annotations: Mapping[str, str], root: TrustedRoot | None, require_tlog: bool, *,
          data: bytes, signature: bytes, spki: bytes) -> TlogEntry | None:
    """Check the Rekor SET annotation when present; demand one when ``require_tlog``."""
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
    from airgap.checks.keyless import CertError, issuer_of, load_certificates, subject_of, verify_chain, verify_sct

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


def check_attestation(envelope: bytes, annotations: Mapping[str, str], *, expected_digest: str,
                      authority: Authority, trusted_root: TrustedRoot | None = None, require_tlog: bool = False,
                      predicate_type: str | None = None, require_sct: bool = True,
                      now: datetime | None = None, require_timestamp: bool = False,
                      tsa_root: TrustedRoot | None = None) -> Outcome:
    """Check a legacy cosign attestation (a DSSE envelope in a ``.att`` layer): a signature over the PAE,
    the statement naming ``expected_digest``, and the predicate type when asked."""
    keyed = isinstance(authority, KeyAuthority)
    run = Run("attestation-key" if keyed else "attestation-keyless")
    try:
        try:
            env = cosign.Envelope.from_bytes(envelope)
            env.require_intoto()
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

