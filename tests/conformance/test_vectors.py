"""Conformance: every signature in ../shared/vectors (104 real signatures made by others) must get its
expected outcome from airgap's offline checks (:mod:`airgap.checks`).

How each vector is checked:

* ``cosign-simplesigning-key`` / ``cosign-attestation-key-legacy``: ``KeyAuthority(key.pub)``; the image
  digest is sha256(manifest.json) when the vector ships the manifest (so a modified manifest fails), else the
  payload's/subject's digest from vector.json. A Rekor SET, when present, is always verified.
* ``cosign-simplesigning-keyless`` / ``cosign-attestation-keyless-legacy``: ``KeylessAuthority`` with the
  vector's identity/issuer (``None`` = not checked) and its trusted_root.json; the tlog is required.
* ``sigstore-bundle``: ``KeyAuthority(key.pub)`` when the vector ships a key, else the keyless identity;
  the ``artifact`` file when present (DSSE bundles: its digest must be a statement subject), else the
  vector's ``artifact_sha256``. A trust root or key that fails to load counts as a failed verification.

Choices on ``strictness_dependent`` vectors (airgap takes the strict reading by default):

* ``keyless-rs-kubewarden-2021`` (expected ok): a 2021 Fulcio certificate with no embedded SCT and no OIDC
  issuer extension. airgap requires an SCT by default (like cosign >= 2), so the vector is checked with
  ``require_sct=False`` -- the knob a policy turns for pre-CT certificates -- and
  :func:`test_strict_default_rejects_pre_ct_certificate` proves the default rejects it for the SCT.
* ``bundle-go-dsse-root-in-chain_fail`` (expected fail): the bundle's chain embeds the Fulcio root. airgap
  rejects such chains (the Sigstore client spec; sigstore-python only warns), so it fails as expected.

Where cosign itself changed and the vector records the old behaviour, airgap follows cosign v2/v3:

* ``attest-key-kyv-pause2-0/1/2`` (recorded ok): attestations made by cosign v1, whose DSSE ``payloadType`` is the
  predicate type (``https://example.com/CodeReview/v1``, ``cosign.sigstore.dev/attestation/v1``) rather than
  ``application/vnd.in-toto+json``. cosign v2 and v3 refuse them ("invalid payloadType ... on envelope"), and so
  does airgap (an envelope is an attestation only when it says it carries an in-toto statement):
  :func:`test_pre_v2_payload_types_are_refused_like_cosign` proves the signatures themselves are authentic, that
  only the payload type fails, and that real cosign v2 and v3 refuse the same envelopes.

``checker_known_gap``: ``bundle-conf-trust-root-tsa-validity-end-inclusive`` needs a TSA's ``validFor.end``
to be inclusive; sigstore-python 4.5.1 compares exclusively, and :mod:`airgap.checks.roots` corrects that, so the
vector passes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from airgap.checks import cosign
from airgap.checks.bundle import check_sigstore_bundle
from airgap.checks.keyless import Identity
from airgap.checks.legacy import check_attestation, check_simple_signing
from airgap.checks.outcome import KeyAuthority, KeylessAuthority, Outcome
from airgap.checks.roots import TrustedRoot
from airgap.errors import Error
from airgap.keys.public import load_public_key

VECTORS = Path(__file__).parents[2].parent / "shared" / "vectors"
LENIENT_SCT = {"keyless-rs-kubewarden-2021"}
# Recorded "ok" by the vectors (cosign v1 behaviour); cosign v2/v3 and airgap refuse their payloadType.
PRE_V2_PAYLOAD_TYPE = ("attest-key-kyv-pause2-0", "attest-key-kyv-pause2-1", "attest-key-kyv-pause2-2")


def _vector_dirs() -> list[Path]:
    if not (VECTORS / "index.json").is_file():
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"conformance vectors missing at {VECTORS}")
        return []
    return sorted(p.parent for p in VECTORS.glob("*/vector.json"))


DIRS = _vector_dirs()


def _read(d: Path, name: str) -> bytes | None:
    p = d / name
    return p.read_bytes() if p.is_file() else None


def _keyless(d: Path, v: dict[str, Any]) -> KeylessAuthority:
    root_bytes = _read(d, "trusted_root.json")
    root = TrustedRoot.from_bytes(root_bytes, "trusted_root.json") if root_bytes else TrustedRoot.public_good()
    return KeylessAuthority((Identity(subject=v.get("identity"), issuer=v.get("issuer")),), root)


def _annotations(d: Path) -> dict[str, str]:
    ann: dict[str, str] = {}
    if (raw := _read(d, "annotations.json")) is not None:
        ann.update(json.loads(raw))
    for name, key in (("cert.pem", cosign.ANN_CERTIFICATE), ("chain.pem", cosign.ANN_CHAIN),
                      ("rekor_bundle.json", cosign.ANN_BUNDLE)):
        if (raw := _read(d, name)) is not None:
            ann[key] = raw.decode()
    return ann


def _subject_digest(v: dict[str, Any]) -> str | None:
    subject = v.get("attestation_subject")
    return "sha256:" + subject["sha256"] if subject else v.get("docker_manifest_digest")


def check_vector(d: Path, *, require_sct: bool | None = None) -> Outcome:
    """Run airgap's check for one vector folder (loading errors raise airgap Errors)."""
    v = json.loads((d / "vector.json").read_text())
    kind = v["kind"]
    root_bytes = _read(d, "trusted_root.json")
    root = TrustedRoot.from_bytes(root_bytes, "trusted_root.json") if root_bytes else None
    key_pem = _read(d, "key.pub")
    sct = require_sct if require_sct is not None else d.name not in LENIENT_SCT
    if kind in ("cosign-simplesigning-key", "cosign-simplesigning-keyless"):
        manifest = _read(d, "manifest.json")
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest() if manifest else v["docker_manifest_digest"]
        keyed = kind.endswith("-key")
        authority = KeyAuthority((load_public_key(key_pem or b"", "key.pub"),)) if keyed else _keyless(d, v)
        return check_simple_signing((d / "payload.json").read_bytes(), (d / "signature.b64").read_text(),
                                    _annotations(d), expected_digest=digest, authority=authority,
                                    trusted_root=root, require_tlog=not keyed, require_sct=sct)
    if kind in ("cosign-attestation-key-legacy", "cosign-attestation-keyless-legacy"):
        keyed = kind == "cosign-attestation-key-legacy"
        authority = KeyAuthority((load_public_key(key_pem or b"", "key.pub"),)) if keyed else _keyless(d, v)
        return check_attestation((d / "envelope.json").read_bytes(), _annotations(d),
                                 expected_digest=_subject_digest(v) or "", authority=authority, trusted_root=root,
                                 require_tlog=not keyed, predicate_type=v.get("predicate_type"), require_sct=sct)
    assert kind == "sigstore-bundle", kind
    artifact = _read(d, "artifact")
    raw = (d / "bundle.sigstore.json").read_bytes()
    is_dsse = b'"dsseEnvelope"' in raw
    if artifact is not None:
        digest = "sha256:" + hashlib.sha256(artifact).hexdigest() if is_dsse else None
    elif v.get("artifact_sha256"):
        digest = "sha256:" + v["artifact_sha256"]
    else:
        digest = _subject_digest(v)
    if key_pem is not None:
        authority: KeyAuthority | KeylessAuthority = KeyAuthority((load_public_key(key_pem, "key.pub"),))
    else:
        authority = _keyless(d, v)
    return check_sigstore_bundle(raw, expected_digest=digest, authority=authority,
                                 artifact=None if is_dsse else artifact, trusted_root=root)


def expected_of(d: Path, v: dict[str, Any]) -> str:
    """The vector's expected outcome, or airgap's where cosign v2/v3 changed it (see the module docstring)."""
    return "fail" if d.name in PRE_V2_PAYLOAD_TYPE else str(v["expected"])


def outcome_of(d: Path) -> tuple[str, str]:
    """("ok"|"fail", reason) for a vector; a trust root or key that cannot load is a failure."""
    try:
        out = check_vector(d)
    except Error as exc:
        return "fail", f"load: {exc}"
    return ("ok" if out.ok else "fail"), out.reason


RESULTS: dict[str, bool] = {}


@pytest.mark.skipif(not DIRS, reason=f"conformance vectors not found at {VECTORS}")
@pytest.mark.parametrize("d", DIRS, ids=[d.name for d in DIRS])
def test_vector(d: Path) -> None:
    v = json.loads((d / "vector.json").read_text())
    got, reason = outcome_of(d)
    want = expected_of(d, v)
    RESULTS[d.name] = got == want
    assert got == want, f"{d.name}: expected {want}, got {got} ({reason})"
    if got == "ok" and v["kind"].endswith("keyless") and v.get("identity"):
        out = check_vector(d)
        assert out.identity == v["identity"]
        if v.get("issuer"):
            assert out.issuer == v["issuer"]


@pytest.mark.skipif(not DIRS, reason=f"conformance vectors not found at {VECTORS}")
def test_strict_default_rejects_pre_ct_certificate() -> None:
    out = check_vector(VECTORS / "keyless-rs-kubewarden-2021", require_sct=True)
    assert not out.ok and out.reason.startswith("sct:"), out.reason


@pytest.mark.skipif(not DIRS, reason=f"conformance vectors not found at {VECTORS}")
def test_rekor_set_is_checked_for_key_vector() -> None:
    out = check_vector(VECTORS / "key-ci-rekor-set-valid")
    assert out.ok and out.integrated_time == 1674251859
    assert any(c.name == "tlog" and c.ok and "logIndex 11608800" in c.detail for c in out.checks)


@pytest.mark.skipif(not DIRS, reason=f"conformance vectors not found at {VECTORS}")
def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: every vector, counted (the line shows with ``-s`` or ``-rA``)."""
    index = json.loads((VECTORS / "index.json").read_text())
    good = sum(outcome_of(VECTORS / e["id"])[0] == expected_of(VECTORS / e["id"], e) for e in index)
    line = (f"conformance: {good}/{len(index)} vectors as expected ({len(PRE_V2_PAYLOAD_TYPE)} cosign v1 attestations "
            "refused for their payloadType, as cosign v2/v3 refuse them)")
    with capsys.disabled():
        print("\n" + line)
    assert good == len(index) == len(DIRS), line


@pytest.mark.skipif(not DIRS, reason=f"conformance vectors not found at {VECTORS}")
@pytest.mark.parametrize("name", PRE_V2_PAYLOAD_TYPE)
def test_pre_v2_payload_types_are_refused_like_cosign(name: str, tmp_path: Path) -> None:
    import subprocess

    from conftest import require_tool

    from airgap.keys.public import verify_signature

    d = VECTORS / name
    v = json.loads((d / "vector.json").read_text())
    env = cosign.Envelope.from_bytes((d / "envelope.json").read_bytes())
    key = load_public_key((d / "key.pub").read_bytes())
    assert verify_signature(key, env.signatures[0][1], env.pae)  # authentic: only the payload type is wrong
    out = check_vector(d)
    assert not out.ok and "payloadType" in out.reason and out.checks[-1].name == "envelope", out.reason
    for tool in ("cosign", "cosign3"):
        exe = require_tool(tool)
        proc = subprocess.run([exe, "verify-blob-attestation", "--key", str(d / "key.pub"), "--signature",
                               str(d / "envelope.json"), "--insecure-ignore-tlog", "--check-claims=false",
                               "--type", v["predicate_type"]], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, check=False)
        assert proc.returncode != 0 and "invalid payloadType" in proc.stderr, (tool, proc.stderr[-400:])
