"""Guarantee 6: a key twice in any YAML or JSON document airgap reads is an error naming the file (or source),
the line and the key; a second ``authorities:`` or ``noMatchPolicy:`` never silently wins, and a signed payload
with a duplicate key is refused even when its signature verifies (Go and Python readers could disagree on which
value counts: fail closed).

Each test feeds one reader a document whose LAST value is the harmless-looking one Python's json/yaml would
have kept, and checks the reader refuses it instead."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from support.trustdirs import airgap_policy, cip, key_authority, write_trust

from airgap.errors import BundleError, ConfigError, IntegrityError, PolicyError
from airgap.keys.private import KeySigner
from airgap.keys.public import public_pem

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
SIGNER = KeySigner(ec.generate_private_key(ec.SECP256R1()))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- policies (YAML) ----------------------------------------------------------------------------

def test_policy_second_authorities_is_an_error(tmp_path: Path) -> None:
    from airgap.policy.policyset import PolicySet

    text = cip("team", key_authority("release")) + "  authorities:\n    - name: anyone\n      static: {action: pass}\n"
    (tmp_path / "policy.yaml").write_text(text)
    (tmp_path / "release.pub").write_bytes(public_pem(SIGNER.public_key))
    with pytest.raises(PolicyError, match=rf"^{tmp_path}/policy.yaml: line 12: spec.authorities: duplicate key$"):
        PolicySet.load(tmp_path / "policy.yaml", keys={"release": SIGNER.public_key})


def test_policy_second_no_match_policy_is_an_error() -> None:
    from airgap.policy.policyset import PolicySet

    text = airgap_policy("deny", "  noMatchPolicy: allow\n").removeprefix("---\n")
    with pytest.raises(PolicyError, match=r"^policy.yaml: line 7: spec.noMatchPolicy: duplicate key$"):
        PolicySet.from_yaml(text, "policy.yaml")


def test_trust_directory_policy_with_a_duplicate_fails_to_load(tmp_path: Path) -> None:
    from airgap.verification.trust import Trust

    policy = cip("team", key_authority("release")) + airgap_policy("deny", "  noMatchPolicy: allow\n")
    trust = write_trust(tmp_path / "trust", keys={"release": public_pem(SIGNER.public_key)}, policy=policy)
    with pytest.raises(PolicyError, match=r"policy.yaml: line 19: spec.noMatchPolicy: duplicate key$"):
        Trust.load(trust)


def test_bundle_spec_policy_file_with_a_duplicate(tmp_path: Path) -> None:
    from airgap.bundle.spec import BundleSpec

    (tmp_path / "cip.yaml").write_text("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
                                       "metadata: {name: p}\nspec:\n  images: [{glob: '**'}]\n"
                                       "  authorities: [{static: {action: fail}}]\n"
                                       "  authorities: [{static: {action: pass}}]\n")
    (tmp_path / "spec.yaml").write_text("apiVersion: airgap/v1\nkind: Bundle\nmetadata: {name: demo, version: 1}\n"
                                        "images: [127.0.0.1:5000/team/app:1]\npolicyFiles: [cip.yaml]\n")
    with pytest.raises(ConfigError, match=r"spec.yaml:5: policyFiles\[0\]: .*cip.yaml: line 7: spec.authorities: "
                                          r"duplicate key$"):
        BundleSpec.load(tmp_path / "spec.yaml", env={})


def test_bundle_spec_duplicates_compare_as_values(tmp_path: Path) -> None:
    from airgap.bundle.spec import BundleSpec

    # `true` and `yes` are one key once loaded: the raw-text comparison the spec used to make missed it.
    (tmp_path / "spec.yaml").write_text("apiVersion: airgap/v1\nkind: Bundle\nmetadata: {name: demo, version: 1}\n"
                                        "images: [127.0.0.1:5000/team/app:1]\nallow: {true: 1, yes: 2}\n")
    with pytest.raises(ConfigError, match=r"spec.yaml:5: allow.True: duplicate key$"):
        BundleSpec.load(tmp_path / "spec.yaml", env={})


def test_inspect_reads_trust_policy_strictly() -> None:
    from airgap.bundle.inspect import _policies

    with pytest.raises(BundleError, match=r"^trust/policy.yaml: line 3: kind: duplicate key$"):
        _policies(b"apiVersion: v1\nkind: ClusterImagePolicy\nkind: AirgapPolicy\n")


# ---- trust files (JSON) -------------------------------------------------------------------------

def test_key_manifest_duplicate(tmp_path: Path) -> None:
    from airgap.verification.trust import Trust

    trust = write_trust(tmp_path / "trust", keys={"release": public_pem(SIGNER.public_key)})
    (trust / "keys.json").write_text('{"schemaVersion": 1,\n "keys": [{"name": "nobody"}],\n "keys": []}')
    with pytest.raises(ConfigError, match=r"keys.json: line 3: keys: duplicate key$"):
        Trust.load(trust)


def test_trusted_root_duplicate(tmp_path: Path) -> None:
    from airgap.checks.roots import TrustedRoot
    from airgap.verification.trust import Trust

    text = ('{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",\n'
            ' "tlogs": [{"bogus": 1}],\n "tlogs": []}')
    with pytest.raises(ConfigError, match=r"^trusted_root.json: line 3: tlogs: duplicate key$"):
        TrustedRoot.from_bytes(text.encode(), "trusted_root.json")
    trust = Trust.load(write_trust(tmp_path / "trust", trusted_root=text.encode()))
    with pytest.raises(ConfigError, match="line 3: tlogs: duplicate key"):
        trust.trusted_root(None)


def test_translation_map_duplicate(tmp_path: Path) -> None:
    from airgap.refs.translation_map import TranslationMap

    row = f'"upstream": "docker.io/library/nginx:1", "local": "127.0.0.1:5000/library/nginx:1", "digest": "{DIGEST}"'
    (tmp_path / "map.json").write_text(f'[{{{row},\n "digest": "{OTHER}"}}]')
    with pytest.raises(ConfigError, match=r"map.json: line 2: \[0\].digest: duplicate key$"):
        TranslationMap.load(tmp_path / "map.json")


def test_docker_config_duplicate(tmp_path: Path) -> None:
    from airgap.oci.dockerconfig import DockerConfig

    (tmp_path / "config.json").write_text('{"auths": {"r.example": {"auth": "YTpi"}},\n"auths": {}}')
    with pytest.raises(ConfigError, match=r"config.json: line 2: auths: duplicate key$"):
        DockerConfig((str(tmp_path / "config.json"),)).files()


# ---- documents from registries, bundles and clusters ----------------------------------------------

def test_oci_manifest_duplicate() -> None:
    from airgap.oci.manifest import Manifest

    data = (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
            b' "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "' + DIGEST.encode()
            + b'", "size": 2},\n "layers": [{"bogus": true}],\n "layers": []}')
    with pytest.raises(IntegrityError, match=r"^reg/app@x: line 4: layers: duplicate key$"):
        Manifest.from_bytes(data, what="reg/app@x")


def test_bundle_manifest_duplicate_names_the_line() -> None:
    from airgap.bundle.manifest import BundleManifest

    with pytest.raises(BundleError, match=r"^airgap-bundle.json: line 1: name: duplicate key$"):
        BundleManifest.from_bytes(b'{"name":"a","name":"b"}')


def test_admission_review_duplicate() -> None:
    from airgap.admission.review import AdmissionRequest, ReviewError

    body = ('{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u1",\n'
            ' "kind": {"kind": "Pod"}, "operation": "CREATE", "object": {"spec": {"containers": [\n'
            '  {"name": "a", "image": "evil.example/x:1",\n   "image": "127.0.0.1:5000/ok:1"}]}}}}')
    with pytest.raises(ReviewError, match=r"^AdmissionReview: line 4: request.object.spec.containers\[0\].image: "
                                          r"duplicate key$"):
        AdmissionRequest.from_bytes(body.encode())


def test_pods_file_duplicate() -> None:
    from airgap.audit.inputs import parse_pods

    with pytest.raises(IntegrityError, match=r"^pods file: line 1: items: duplicate key$"):
        parse_pods(b'{"items": [], "items": []}')


def _payload(*digests: str) -> bytes:
    image = ", ".join(f'"docker-manifest-digest": "{d}"' for d in digests)
    return ('{"critical": {"identity": {"docker-reference": "127.0.0.1:5000/team/app"}, "image": {' + image
            + '}, "type": "cosign container image signature"}, "optional": null}').encode()


def test_signed_payload_with_duplicate_key_is_refused_although_its_signature_verifies() -> None:
    from airgap.checks.legacy import check_simple_signing
    from airgap.checks.outcome import KeyAuthority

    authority = KeyAuthority((SIGNER.public_key,))
    clean = _payload(DIGEST)
    assert check_simple_signing(clean, b64(SIGNER.sign(clean)), {}, expected_digest=DIGEST,
                                authority=authority).ok
    payload = _payload(OTHER, DIGEST)  # Python's json would keep DIGEST; a first-wins reader OTHER
    outcome = check_simple_signing(payload, b64(SIGNER.sign(payload)), {}, expected_digest=DIGEST,
                                   authority=authority)
    assert not outcome.ok
    assert outcome.reason.endswith("line 1: critical.image.docker-manifest-digest: duplicate key"), outcome.reason


def test_dsse_envelope_and_statement_duplicates() -> None:
    from airgap.checks import cosign

    statement = (f'{{"_type": "{cosign.INTOTO_STATEMENT_V01}", "predicateType": "x",\n'
                 f' "subject": [{{"name": "a", "digest": {{"sha256": "{"cd" * 32}", "sha256": "{"ab" * 32}"}}}}]}}')
    with pytest.raises(IntegrityError, match=r"^statement: line 2: subject\[0\].digest.sha256: duplicate key$"):
        cosign.Statement.from_bytes(statement.encode(), "statement")
    envelope = '{"payloadType": "a", "payload": "e30=", "payload": "e30=", "signatures": [{"sig": "AA=="}]}'
    with pytest.raises(IntegrityError, match=r"^envelope: line 1: payload: duplicate key$"):
        cosign.Envelope.from_bytes(envelope.encode(), "envelope")


def test_sigstore_bundle_duplicate_is_a_failed_outcome() -> None:
    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.checks.outcome import KeyAuthority

    raw = (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",\n "verificationMaterial": {},\n'
           b' "verificationMaterial": {"publicKey": {"hint": "x"}}, "messageSignature": {}}')
    outcome = check_sigstore_bundle(raw, expected_digest=DIGEST, authority=KeyAuthority((SIGNER.public_key,)))
    assert not outcome.ok
    assert outcome.reason == "bundle: sigstore bundle: line 3: verificationMaterial: duplicate key"


def test_rekor_set_and_timestamp_annotation_duplicates() -> None:
    from airgap.checks.roots import TrustedRoot
    from airgap.checks.tlog import TlogError, verify_set
    from airgap.checks.tsa import TimestampError, parse_annotation

    with pytest.raises(TlogError, match=r"^Rekor bundle: line 1: Payload: duplicate key$"):
        verify_set('{"Payload": {}, "Payload": {"body": "e30="}}', TrustedRoot.public_good())
    with pytest.raises(TimestampError, match=r"^rfc3161timestamp annotation: line 1: SignedRFC3161Timestamp: "
                                             r"duplicate key$"):
        parse_annotation('{"SignedRFC3161Timestamp": "AA==", "SignedRFC3161Timestamp": "AQ=="}')

