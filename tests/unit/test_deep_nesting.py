"""Guarantee 7, per reader: JSON or YAML nested 100,000 deep (manifests, signature payloads, DSSE envelopes,
statements, sigstore bundles, Rekor SETs, RFC 3161 annotations, bundle manifests, policies, bundle specs, trust
files, AdmissionReviews, pods files, Docker configs) is the reader's own one-line airgap Error, in well under a
second; never RecursionError, MemoryError or any other exception. The command-line behaviour (verify denies,
audit reports ERROR and goes on, verify-bundle/load/inspect fail with one line) is tested with a real registry
in tests/integration/test_hostile_documents.py."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.errors import Error

DEEP = 100_000
DIGEST = "sha256:" + "ab" * 32
KEY = ec.generate_private_key(ec.SECP256R1()).public_key()


def deep_json(wrap: str = "{}") -> bytes:
    """``wrap`` with its ``{}`` replaced by arrays nested DEEP levels."""
    return wrap.replace("{}", "[" * DEEP + "]" * DEEP).encode()


DEEP_YAML = "- " * 2_000 + "x\n"  # block style: libyaml's own limit (flow levels) does not see it
DEEP_FLOW_YAML = "a: " + "[" * DEEP + "]" * DEEP + "\n"


@pytest.fixture(autouse=True)
def quick() -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < 5.0, "a hostile document must be refused quickly"


def refused(call: Callable[[], Any], cls: type[Error], match: str = "nested deeper than 100 levels") -> None:
    with pytest.raises(cls, match=match):
        call()


# ---- from registries ----------------------------------------------------------------------------

def test_oci_manifest() -> None:
    from airgap.errors import IntegrityError
    from airgap.oci.manifest import Manifest

    data = deep_json('{"schemaVersion": 2, "layers": [], "config": {}, "annotations": {"x": {}}}')
    refused(lambda: Manifest.from_bytes(data, what="reg/app@sha256:x"), IntegrityError,
            r"^reg/app@sha256:x: line 1: nested deeper than 100 levels$")


def test_cosign_payload_envelope_statement() -> None:
    from airgap.checks import cosign
    from airgap.errors import IntegrityError

    refused(lambda: cosign.SimpleSigning.from_bytes(deep_json('{"critical": {}}')), IntegrityError)
    refused(lambda: cosign.Envelope.from_bytes(deep_json('{"payload": {}}')), IntegrityError)
    refused(lambda: cosign.Statement.from_bytes(deep_json('{"predicate": {}}')), IntegrityError)


def test_signature_checks_return_a_failed_outcome() -> None:
    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.checks.legacy import check_attestation, check_simple_signing
    from airgap.checks.outcome import KeyAuthority

    authority = KeyAuthority((KEY,))
    outcomes = [
        check_simple_signing(deep_json('{"critical": {}}'), "AA==", {}, expected_digest=DIGEST, authority=authority),
        check_attestation(deep_json('{"payload": {}}'), {}, expected_digest=DIGEST, authority=authority),
        check_sigstore_bundle(deep_json('{"verificationMaterial": {}}'), expected_digest=DIGEST, authority=authority),
    ]
    for outcome in outcomes:
        assert not outcome.ok
        assert "nested deeper than 100 levels" in outcome.reason, outcome.reason


def test_rekor_set_and_timestamp_annotation() -> None:
    from airgap.checks.roots import TrustedRoot
    from airgap.checks.tlog import TlogError, verify_set
    from airgap.checks.tsa import TimestampError, parse_annotation

    refused(lambda: verify_set(deep_json('{"Payload": {}}'), TrustedRoot.public_good()), TlogError)
    refused(lambda: parse_annotation(deep_json('{"SignedRFC3161Timestamp": {}}')), TimestampError)


def test_cel_condition_over_the_deepest_predicate_allowed() -> None:
    """What the loader lets through (100 levels) is evaluated by CEL without nearing the recursion limit."""
    from airgap.checks import cosign
    from airgap.jsondoc import MAX_DEPTH
    from airgap.policy.cel import CelCondition

    nested = '{"a":' * (MAX_DEPTH - 2) + "1" + "}" * (MAX_DEPTH - 2)
    statement = cosign.Statement.from_bytes(
        f'{{"_type": "{cosign.INTOTO_STATEMENT_V1}", "predicateType": "x", "subject": [], "predicate": {nested}}}'
        .encode())
    assert CelCondition.compile("predicate.a.a.a == predicate.a.a.a").explain({"predicate": statement.predicate})[0]


# ---- bundles ------------------------------------------------------------------------------------

def test_bundle_manifest() -> None:
    from airgap.bundle.manifest import BundleManifest
    from airgap.errors import BundleError

    refused(lambda: BundleManifest.from_bytes(deep_json('{"images": {}}')), BundleError,
            r"^airgap-bundle.json: line 1: nested deeper than 100 levels$")


def test_bundle_reader_with_a_deep_manifest_entry() -> None:
    import tarfile

    from airgap.bundle.reader import BundleReader
    from airgap.errors import BundleError

    data = deep_json('{"images": {}}')
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("airgap-bundle.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    refused(lambda: BundleReader(io.BytesIO(out.getvalue()), allow_unsigned=True), BundleError)


def test_inspect_policy() -> None:
    from airgap.bundle.inspect import _policies
    from airgap.errors import BundleError

    refused(lambda: _policies(DEEP_YAML.encode()), BundleError)
    refused(lambda: _policies(DEEP_FLOW_YAML.encode()), BundleError, "nested|nesting depth")


# ---- operator files -----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [DEEP_YAML, DEEP_FLOW_YAML, "a: &a [[[[[[[[[[1]]]]]]]]]]\n" + "".join(
    f"b{i}: &b{i} [[[[[[[[[[*{'a' if i == 0 else f'b{i - 1}'}]]]]]]]]]]\n" for i in range(20))])
def test_policy_yaml(text: str) -> None:
    from airgap.errors import PolicyError
    from airgap.policy.policyset import PolicySet

    refused(lambda: PolicySet.from_yaml(text, "policy.yaml"), PolicyError, "nested|nesting depth")


def test_bundle_spec(tmp_path: Path) -> None:
    from airgap.bundle.spec import BundleSpec
    from airgap.errors import ConfigError

    (tmp_path / "spec.yaml").write_text("apiVersion: airgap/v1\nkind: Bundle\nallow:\n  " + DEEP_YAML)
    refused(lambda: BundleSpec.load(tmp_path / "spec.yaml", env={}), ConfigError,
            r"spec.yaml:4: nested deeper than 100 levels$")


@pytest.mark.parametrize("name", ["keys.json", "map.json", "trusted_root.json"])
def test_trust_directory_files(tmp_path: Path, name: str) -> None:
    from airgap.errors import ConfigError
    from airgap.verification.trust import Trust

    (tmp_path / name).write_bytes(deep_json('{"keys": {}}'))

    def load() -> None:
        Trust.load(tmp_path).trusted_root(None)

    refused(load, ConfigError)


def test_docker_config_and_pods_file(tmp_path: Path) -> None:
    from airgap.audit.inputs import parse_pods
    from airgap.errors import ConfigError, IntegrityError
    from airgap.oci.dockerconfig import DockerConfig

    (tmp_path / "config.json").write_bytes(deep_json('{"auths": {}}'))
    refused(lambda: DockerConfig((str(tmp_path / "config.json"),)).files(), ConfigError)
    refused(lambda: parse_pods(deep_json('{"items": {}}')), IntegrityError)


# ---- from the cluster ---------------------------------------------------------------------------

def test_admission_review() -> None:
    from airgap.admission.review import AdmissionRequest, ReviewError, uid_hint

    body = deep_json('{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u",'
                     ' "object": {}}}')
    refused(lambda: AdmissionRequest.from_bytes(body), ReviewError,
            r"^AdmissionReview: line 1: nested deeper than 100 levels$")
    assert uid_hint(body) == "u"  # the uid is still echoed: found by a bounded scan of the first bytes, never parsed


# ---- manifest graphs ----------------------------------------------------------------------------

def _index_chain(length: int) -> tuple[dict[str, bytes], str]:
    """``length`` OCI indexes, each naming the previous one: digest -> bytes, and the outermost digest."""
    import hashlib
    import json

    kept: dict[str, bytes] = {}
    child: dict[str, Any] | None = None
    digest = ""
    for _ in range(length):
        data = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": [child] if child else []}).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        kept[digest] = data
        child = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": len(data)}
    return kept, digest


def test_bundle_index_chain_is_bounded() -> None:
    from airgap.bundle.load import _Manifests
    from airgap.errors import BundleError

    empty_index = b'{"schemaVersion": 2, "manifests": []}'
    kept, top = _index_chain(8)
    assert len(_Manifests(kept, empty_index, 1 << 20, 8).graph(top)) == 8
    kept, top = _index_chain(2_000)
    refused(lambda: _Manifests(kept, empty_index, 1 << 20, 8).graph(top), BundleError,
            r"^bundle manifest sha256:[0-9a-f]{64}: indexes nested more than 8 deep$")
