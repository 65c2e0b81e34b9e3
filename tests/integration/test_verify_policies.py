"""Policy features end to end on a real registry: attestations with CEL conditions, N-of-M authorities,
`dockerReference: strict`, signature repositories from `source.oci`, and the trust directory's key manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap import Trust, verify_image
from airgap.errors import ConfigError
from airgap.keys.private import KeySigner
from airgap.keys.public import key_id, public_pem
from airgap.oci.registry import RegistryClient
from airgap.signing.attest import attest_image
from airgap.signing.sign import sign_image

ALICE = KeySigner(ec.generate_private_key(ec.SECP256R1()))
BOB = KeySigner(ec.generate_private_key(ec.SECP256R1()))


def trust_dir(tmp: Path, spec: str, **keys: KeySigner) -> Path:
    root = tmp / "trust"
    (root / "keys").mkdir(parents=True)
    for name, signer in (keys or {"alice": ALICE}).items():
        (root / "keys" / f"{name}.pub").write_bytes(public_pem(signer.public_key))
    (root / "policy.yaml").write_text(f"""\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: p
spec:
{spec}""")
    return root


def test_attestation_with_cel_condition(registry: Any, make_image: Any, tmp_path: Path) -> None:
    make_image(registry, "att/app", "1")
    ref = f"{registry.host}/att/app:1"
    predicate = json.dumps({"buildType": "https://airgap.dev/build/v1", "builder": {"id": "ci"}}).encode()
    attest_image(ref, ALICE, client=RegistryClient(), predicate=predicate, predicate_type="slsaprovenance")

    def spec(condition: str) -> str:
        return f"""\
  images: [{{glob: "{registry.host}/att/**"}}]
  authorities:
    - name: build
      key: {{name: alice}}
      ctlog: {{disabled: true}}
      attestations:
        - name: provenance
          predicateType: slsaprovenance
          policy:
            type: cel
            data: '{condition}'
"""
    good = Trust.load(trust_dir(tmp_path / "a", spec('predicate.buildType == "https://airgap.dev/build/v1"')))
    result = verify_image(ref, good)
    assert result, result.reasons
    bad = Trust.load(trust_dir(tmp_path / "b", spec('predicate.builder.id == "someone-else"')))
    result = verify_image(ref, bad)
    assert not result and "condition is false" in json.dumps(result.evidence)
    missing = Trust.load(trust_dir(tmp_path / "c", spec("true").replace("slsaprovenance", "cyclonedx")))
    result = verify_image(ref, missing)
    assert not result and "cyclonedx" in result.reasons[0]


def test_two_of_two_authorities(registry: Any, make_image: Any, tmp_path: Path) -> None:
    make_image(registry, "nofm/app", "1")
    ref = f"{registry.host}/nofm/app:1"
    sign_image(ref, ALICE, client=RegistryClient())
    spec = f"""\
  images: [{{glob: "{registry.host}/nofm/**"}}]
  match: {{authorities: 2}}
  authorities:
    - {{name: alice, key: {{name: alice}}, ctlog: {{disabled: true}}}}
    - {{name: bob, key: {{name: bob}}, ctlog: {{disabled: true}}}}
"""
    trust = Trust.load(trust_dir(tmp_path, spec, alice=ALICE, bob=BOB))
    result = verify_image(ref, trust)
    assert not result and "bob" in result.reasons[0]
    sign_image(ref, BOB, client=RegistryClient())
    assert verify_image(ref, trust)


def test_docker_reference_strict(registry: Any, make_image: Any, tmp_path: Path) -> None:
    """A signature made for another repository's name is refused when the policy asks for strictness."""
    from airgap.oci.copy import copy_image

    make_image(registry, "strict/app", "1")
    sign_image(f"{registry.host}/strict/app:1", ALICE, client=RegistryClient())
    # The same image (same digest) under another name, its signature copied along.
    copy_image(f"{registry.host}/strict/app:1", f"{registry.host}/strict/copy:1", progress=False)
    base = f"""\
  images: [{{glob: "{registry.host}/strict/**"}}]
  authorities: [{{name: alice, key: {{name: alice}}, ctlog: {{disabled: true}}}}]
"""
    lax = Trust.load(trust_dir(tmp_path / "lax", base))
    assert verify_image(f"{registry.host}/strict/copy:1", lax)
    strict = Trust.load(trust_dir(tmp_path / "strict", base + "  dockerReference: strict\n"))
    assert verify_image(f"{registry.host}/strict/app:1", strict)
    result = verify_image(f"{registry.host}/strict/copy:1", strict)
    assert not result and "dockerReference: strict" in result.reasons[0]


def test_policy_source_names_the_signature_repository(registry: Any, make_image: Any, tmp_path: Path) -> None:
    make_image(registry, "src/app", "1")
    ref = f"{registry.host}/src/app:1"
    sign_image(ref, ALICE, client=RegistryClient(), signature_repo=f"{registry.host}/src/signatures")
    spec = f"""\
  images: [{{glob: "{registry.host}/src/**"}}]
  authorities:
    - name: alice
      key: {{name: alice}}
      ctlog: {{disabled: true}}
      source: [{{oci: "{registry.host}/src/signatures"}}]
"""
    assert verify_image(ref, Trust.load(trust_dir(tmp_path, spec)))


def test_key_manifest_must_agree_with_the_key_files(tmp_path: Path) -> None:
    spec = """\
  images: [{glob: "**"}]
  authorities: [{name: alice, key: {name: alice}, ctlog: {disabled: true}}]
"""
    root = trust_dir(tmp_path, spec)
    trust = Trust.load(root)
    manifest = trust.key_manifest()
    assert manifest["keys"] == [{"name": "alice", "id": key_id(ALICE.public_key), "algorithm": "ecdsa-p256",
                                 "source": "keys/alice.pub", "policies": ["p"]}]
    (root / "keys.json").write_text(json.dumps(manifest))
    assert Trust.load(root).keys["alice"].key_id == key_id(ALICE.public_key)
    (root / "keys" / "alice.pub").write_bytes(public_pem(BOB.public_key))  # swapped behind the manifest's back
    with pytest.raises(ConfigError, match="alice.*has id"):
        Trust.load(root)


def test_unanchored_regexp_warns_on_stderr_and_in_json(registry: Any, make_image: Any, tmp_path: Path) -> None:
    """A regexp Go would match anywhere loads with a warning (once per policy) that `verify` prints to stderr and
    `--json` includes; the verdict itself is unchanged."""
    from click.testing import CliRunner

    from airgap.cli import cli

    make_image(registry, "warn/app", "1")
    ref = f"{registry.host}/warn/app:1"
    sign_image(ref, ALICE, client=RegistryClient())
    spec = f"""\
  images: [{{glob: "{registry.host}/warn/**"}}]
  authorities:
    - {{name: alice, key: {{name: alice}}, ctlog: {{disabled: true}}}}
    - name: ci
      keyless:
        identities: [{{issuer: "https://oidc.airgap.test", subjectRegExp: ".*@airgap[.]test"}}]
"""
    trust = trust_dir(tmp_path, spec)
    runner = CliRunner()
    out = runner.invoke(cli, ["verify", "--trust", str(trust), ref], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert out.stderr.count("warning:") == 1
    assert ("policy.yaml: document 1 (p): regexp not anchored with ^...$: spec.authorities[1].keyless.identities[0]."
            "subjectRegExp '.*@airgap[.]test'") in out.stderr
    out = runner.invoke(cli, ["verify", "--trust", str(trust), "--json", ref], catch_exceptions=False)
    doc = json.loads(out.stdout)
    assert doc["results"][0]["allowed"] is True and len(doc["policy_warnings"]) == 1
    assert "subjectRegExp '.*@airgap[.]test'" in doc["policy_warnings"][0]
    spec = spec.replace('".*@airgap[.]test"', '"^.*@airgap[.]test$"')
    out = runner.invoke(cli, ["verify", "--trust", str(trust_dir(tmp_path / "b", spec)), "--json", ref],
                        catch_exceptions=False)
    assert out.stderr == "" and json.loads(out.stdout)["policy_warnings"] == []
    out = runner.invoke(cli, ["verify", "--certificate-identity-regexp", "(?<=x)y", "--certificate-oidc-issuer",
                              "https://i", ref], catch_exceptions=False)
    assert out.exit_code == 2 and "lookbehind (?<=...) is not RE2" in out.stderr


def test_webhook_logs_policy_warnings_when_it_loads_the_trust(tmp_path: Path) -> None:
    import io

    from airgap.admission.metrics import JsonLog
    from airgap.admission.service import AdmissionService, WebhookConfig

    spec = """\
  images: [{glob: "**"}]
  authorities:
    - name: ci
      keyless:
        identities: [{issuerRegExp: "https://oidc[.]airgap[.]test", subject: ci@airgap.test}]
"""
    stream = io.StringIO()
    service = AdmissionService(WebhookConfig(trust_dir=str(trust_dir(tmp_path, spec)), reload_interval=60),
                               log=JsonLog(stream))
    try:
        records = [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        service.close()
    (warning,) = [r for r in records if r["msg"] == "policy warning"]
    assert warning["level"] == "warning"
    assert "spec.authorities[0].keyless.identities[0].issuerRegExp 'https://oidc[.]airgap[.]test'" in warning["warning"]
