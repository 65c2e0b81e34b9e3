"""Unit tests for airgap.checks.tsa: RFC 3161 responses signed by a real ``openssl ts -reply`` test TSA."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.minisigstore import MiniSigstore
from support.minitsa import MiniTSA, add_tsa, annotation

from airgap.checks.roots import TrustedRoot
from airgap.checks.tsa import TimestampError, parse_annotation, verify_annotation, verify_timestamp

DATA = b"raw signature bytes"


@pytest.fixture(scope="module")
def base_root() -> dict[str, Any]:
    return MiniSigstore().trusted_root()


def root_with(doc: dict[str, Any]) -> TrustedRoot:
    return TrustedRoot.from_bytes(json.dumps(doc).encode())


@pytest.fixture(scope="module")
def root(base_root: dict[str, Any], tsa: MiniTSA) -> TrustedRoot:
    return root_with(add_tsa(base_root, tsa))


@pytest.fixture(scope="module")
def response(tsa: MiniTSA) -> bytes:
    return tsa.timestamp(DATA)


def test_happy_path(response: bytes, root: TrustedRoot, tsa: MiniTSA) -> None:
    before = datetime.now(UTC) - timedelta(minutes=1)
    ts = verify_timestamp(response, DATA, root)
    assert before <= ts.time <= datetime.now(UTC) + timedelta(seconds=2)
    assert ts.tsa == tsa.subject.rfc4514_string()
    assert "CN=airgap-test-tsa" in ts.describe()


@pytest.mark.parametrize("digest", ["sha384", "sha512"])
def test_other_hashes_and_no_embedded_certificate(tsa: MiniTSA, root: TrustedRoot, digest: str) -> None:
    # the TSA leaf comes from the trusted root when the token does not embed it
    assert verify_timestamp(tsa.timestamp(DATA, digest=digest, certs=False), DATA, root).tsa


def test_annotation_round_trip(response: bytes, root: TrustedRoot) -> None:
    assert parse_annotation(annotation(response)) == response
    assert verify_annotation(annotation(response).encode(), DATA, root).serial > 0


def test_wrong_data(response: bytes, root: TrustedRoot) -> None:
    with pytest.raises(TimestampError, match="message imprint mismatch"):
        verify_timestamp(response, DATA + b"!", root)


def test_tsa_not_in_root(other_tsa: MiniTSA, root: TrustedRoot) -> None:
    with pytest.raises(TimestampError, match="not signed by a timestamp authority in the trusted root"):
        verify_timestamp(other_tsa.timestamp(DATA), DATA, root)


def test_second_tsa_in_root_is_used(other_tsa: MiniTSA, tsa: MiniTSA, base_root: dict[str, Any]) -> None:
    both = root_with(add_tsa(add_tsa(base_root, tsa), other_tsa))
    assert verify_timestamp(other_tsa.timestamp(DATA), DATA, both).tsa.startswith("CN=other-tsa")


def test_time_outside_tsa_validity(response: bytes, tsa: MiniTSA, base_root: dict[str, Any]) -> None:
    past = root_with(add_tsa(base_root, tsa, end=datetime.now(UTC) - timedelta(days=1)))
    with pytest.raises(TimestampError, match="outside the validity of TSA CN=airgap-test-tsa"):
        verify_timestamp(response, DATA, past)
    future = root_with(add_tsa(base_root, tsa, start=datetime.now(UTC) + timedelta(days=1)))
    with pytest.raises(TimestampError, match="outside the validity"):
        verify_timestamp(response, DATA, future)


def test_validity_is_inclusive(response: bytes, tsa: MiniTSA, base_root: dict[str, Any], root: TrustedRoot) -> None:
    gen_time = verify_timestamp(response, DATA, root).time
    assert gen_time.microsecond == 0  # openssl's genTime has whole seconds here, so the bounds are exact
    exact = root_with(add_tsa(base_root, tsa, start=gen_time, end=gen_time))
    assert verify_timestamp(response, DATA, exact).time == gen_time
    one_before = root_with(add_tsa(base_root, tsa, start=gen_time - timedelta(days=1),
                                   end=gen_time - timedelta(seconds=1)))
    with pytest.raises(TimestampError, match="outside the validity"):
        verify_timestamp(response, DATA, one_before)


def test_root_without_tsa(response: bytes, base_root: dict[str, Any]) -> None:
    with pytest.raises(TimestampError, match="no timestamp authorities"):
        verify_timestamp(response, DATA, root_with(base_root))


def test_root_naming_only_the_tsa_ca(tsa: MiniTSA, base_root: dict[str, Any]) -> None:
    entry = tsa.authority()
    entry["certChain"]["certificates"] = entry["certChain"]["certificates"][1:]
    ca_only = root_with({**base_root, "timestampAuthorities": [entry]})
    assert verify_timestamp(tsa.timestamp(DATA), DATA, ca_only).tsa == tsa.subject.rfc4514_string()
    with pytest.raises(TimestampError, match="not signed by a timestamp authority"):  # no leaf anywhere
        verify_timestamp(tsa.timestamp(DATA, certs=False), DATA, ca_only)


@pytest.mark.parametrize("raw", [b"", b"garbage", b"0\x03\x02\x01\x00", b"\x30\x82\xff\xff" + b"\x00" * 16])
def test_garbage(raw: bytes, root: TrustedRoot) -> None:
    with pytest.raises(TimestampError, match="malformed timestamp response"):
        verify_timestamp(raw, DATA, root)


def test_truncated(response: bytes, root: TrustedRoot) -> None:
    for cut in (len(response) // 2, len(response) - 1):
        with pytest.raises(TimestampError, match="malformed timestamp response"):
            verify_timestamp(response[:cut], DATA, root)


def test_tampered_signature(response: bytes, root: TrustedRoot) -> None:
    tampered = bytearray(response)
    tampered[-5] ^= 0x01  # inside the CMS signature value, the last field of the token
    with pytest.raises(TimestampError, match="not signed by a timestamp authority|malformed"):
        verify_timestamp(bytes(tampered), DATA, root)


def test_oversized(root: TrustedRoot) -> None:
    with pytest.raises(TimestampError, match="more than"):
        verify_timestamp(b"0" * (65 * 1024), DATA, root)


@pytest.mark.parametrize(("value", "reason"), [
    ("not json", "not JSON"),
    ("{}", "no SignedRFC3161Timestamp"),
    ('{"SignedRFC3161Timestamp": "!!"}', "not valid base64"),
    ("[1]", "no SignedRFC3161Timestamp"),
])
def test_bad_annotation(value: str, reason: str) -> None:
    with pytest.raises(TimestampError, match=reason):
        parse_annotation(value)


def test_minitsa_files(tsa: MiniTSA, tmp_path: Path) -> None:
    # the PEM chain cosign's --timestamp-certificate-chain takes: leaf then root
    pem = tsa.chain_pem.read_bytes()
    assert pem.count(b"BEGIN CERTIFICATE") == 2
    assert base64.b64decode(tsa.authority()["certChain"]["certificates"][0]["rawBytes"])


# ---- wired into the legacy checks (airgap.checks.legacy) ---------------------------------------------------

IMAGE = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def sigstore() -> MiniSigstore:
    return MiniSigstore()


def keyless_case(sigstore: MiniSigstore, tsa: MiniTSA | None, stamp: MiniTSA | None) -> dict[str, Any]:
    """A keyless legacy signature without a Rekor SET, timestamped by ``stamp``, checked against a root with
    ``tsa``: the arguments of check_simple_signing."""
    from airgap.checks import cosign
    from airgap.checks.keyless import Identity
    from airgap.checks.outcome import KeylessAuthority

    who = sigstore.issue("signer@airgap.test", "https://oidc.airgap.test")
    layer = sigstore.legacy_signature("registry.test/app", IMAGE, who)
    ann = {k: v for k, v in layer.annotations.items() if k != cosign.ANN_BUNDLE}
    if stamp is not None:
        ann[cosign.ANN_RFC3161] = annotation(stamp.timestamp(layer.signature))
    root = root_with(add_tsa(sigstore.trusted_root(), tsa) if tsa else sigstore.trusted_root())
    authority = KeylessAuthority((Identity(issuer="https://oidc.airgap.test", subject="signer@airgap.test"),), root)
    return {"payload": layer.payload, "signature_b64": ann.pop(cosign.ANN_SIGNATURE), "annotations": ann,
            "expected_digest": IMAGE, "authority": authority, "require_tlog": False}


def test_keyless_certificate_checked_at_the_timestamp(sigstore: MiniSigstore, tsa: MiniTSA) -> None:
    from airgap.checks.legacy import check_simple_signing

    later = datetime.now(UTC) + timedelta(days=1)  # the 10-minute certificate has long expired by then
    out = check_simple_signing(**keyless_case(sigstore, tsa, tsa), now=later)
    assert out.ok, out.reason
    chain = next(c for c in out.checks if c.name == "chain")
    assert "(TSA)" in chain.detail
    assert out.signed_time is not None and out.signed_time.tsa.startswith("CN=airgap-test-tsa")
    bare = check_simple_signing(**keyless_case(sigstore, tsa, None), now=later)
    assert not bare.ok and bare.reason.startswith("chain:")


def test_legacy_timestamp_failures(sigstore: MiniSigstore, tsa: MiniTSA, other_tsa: MiniTSA) -> None:
    from airgap.checks.legacy import check_simple_signing

    assert "no timestamp authorities" in check_simple_signing(**keyless_case(sigstore, None, tsa)).reason
    foreign = check_simple_signing(**keyless_case(sigstore, tsa, other_tsa))
    assert "not signed by a timestamp authority" in foreign.reason
    required = check_simple_signing(**keyless_case(sigstore, tsa, None), require_timestamp=True)
    assert required.reason.startswith("timestamp: no signed RFC 3161 timestamp")
    assert check_simple_signing(**keyless_case(sigstore, tsa, tsa), require_timestamp=True).ok


def timestamped_bundle(sigstore: MiniSigstore, stamp: MiniTSA | None, *, tamper: bool = False) -> bytes:
    """A keyless image bundle (DSSE) with an RFC 3161 timestamp from ``stamp`` over its signature."""
    who = sigstore.issue("signer@airgap.test", "https://oidc.airgap.test")
    doc = json.loads(sigstore.image_bundle(IMAGE, who))
    if stamp is not None:
        signature = base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"])
        raw = stamp.timestamp(signature + (b"!" if tamper else b""))
        doc["verificationMaterial"]["timestampVerificationData"] = {
            "rfc3161Timestamps": [{"signedTimestamp": base64.b64encode(raw).decode()}]}
    return json.dumps(doc).encode()


def test_bundle_timestamps(sigstore: MiniSigstore, tsa: MiniTSA) -> None:
    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.checks.keyless import Identity
    from airgap.checks.outcome import KeylessAuthority

    root = root_with(add_tsa(sigstore.trusted_root(), tsa))
    authority = KeylessAuthority((Identity(issuer="https://oidc.airgap.test", subject="signer@airgap.test"),), root)

    def check(raw: bytes, require: bool) -> Any:
        return check_sigstore_bundle(raw, expected_digest=IMAGE, authority=authority, require_timestamp=require)

    stamped = check(timestamped_bundle(sigstore, tsa), True)
    assert stamped.ok, stamped.reason
    assert any(c.name == "timestamp" and "CN=airgap-test-tsa" in c.detail for c in stamped.checks)
    assert check(timestamped_bundle(sigstore, None), False).ok
    assert check(timestamped_bundle(sigstore, None), True).reason.startswith("timestamp: no signed RFC 3161")
    assert "message imprint mismatch" in check(timestamped_bundle(sigstore, tsa, tamper=True), False).reason
