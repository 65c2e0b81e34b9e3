"""Check steps shared by legacy cosign signatures and sigstore bundles: a key signature, RFC 3161 signed
timestamps, and the in-toto statement an attestation or bundle signature carries.

Signed timestamps (cosign v2's ``verifyInternal``): a timestamp that is present is verified (fail closed), and
fails the candidate when invalid or when there is no trusted root with TSAs; ``require`` (a policy's
``rfc3161timestamp``) demands one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from airgap.checks import cosign
from airgap.checks.outcome import Run
from airgap.checks.tsa import SignedTimestamp, TimestampError, parse_annotation, verify_timestamp
from airgap.errors import Error
from airgap.keys.public import algorithm, key_id, verify_signature

if TYPE_CHECKING:
    from airgap.checks.roots import TrustedRoot
    from airgap.keys.public import PublicKey


def key_signed(run: Run, keys: tuple[PublicKey, ...], signature: bytes, data: bytes) -> PublicKey:
    """The first key that verifies ``signature`` over ``data``; fails the run if none does."""
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

