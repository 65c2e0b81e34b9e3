"""Kyverno verifyImages rules end to end: the shapes Kyverno documents, loaded from a trust directory's policy.yaml
and enforced on a real registry against real signatures (airgap's signer, the mini Sigstore's keyless ones), with
the same verdict as the equivalent ClusterImagePolicy on the same image."""

from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from support.fixtures_sigstore import push_keyless_signature
from support.minisigstore import KeylessIdentity, MiniSigstore
from support.trustdirs import write_trust

from airgap import Trust, verify_image
from airgap.cli import cli
from airgap.errors import PolicyError
from airgap.keys.private import KeySigner
from airgap.keys.public import public_pem
from airgap.oci.registry import RegistryClient
from airgap.signing.attest import attest_image
from airgap.signing.sign import sign_image

ALICE = KeySigner(ec.generate_private_key(ec.SECP256R1()))
BOB = KeySigner(ec.generate_private_key(ec.SECP256R1()))
CAROL = KeySigner(ec.generate_private_key(ec.SECP256R1()))
_dirs = itertools.count()


def pem(signer: KeySigner, indent: int) -> str:
    return textwrap.indent(public_pem(signer.public_key).decode().strip(), " " * indent)


def kyverno(verify_images: str, *, action: str = "Enforce", api: str = "kyverno.io/v1") -> str:
    return (f"apiVersion: {api}\nkind: ClusterPolicy\nmetadata:\n  name: check-image\nspec:\n"
            f"  validationFailureAction: {action}\n  background: false\n  webhookTimeoutSeconds: 30\n"
            "  failurePolicy: Fail\n  rules:\n    - name: check-image\n      match:\n        any:\n"
            f"        - resources:\n            kinds: [Pod]\n      verifyImages:\n{verify_images}")


def cip(spec: str) -> str:
    return f"apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: p\nspec:\n{spec}"


def key_entry(signer: KeySigner, indent: int = 10) -> str:
    pad = " " * indent
    return (f"{pad}- keys:\n{pad}    publicKeys: |-\n{pem(signer, indent + 6)}\n{pad}    rekor:\n"
            f"{pad}      ignoreTlog: true\n{pad}      url: https://rekor.sigstore.dev\n")


def cip_key(signer: KeySigner, name: str = "a") -> str:
    data = json.dumps(public_pem(signer.public_key).decode())
    return f"    - {{name: {name}, key: {{data: {data}}}, ctlog: {{disabled: true}}}}\n"


def same_verdict(tmp: Path, ref: str, kyverno_policy: str, cip_policy: str, **trust: Any) -> Any:
    """Verify ``ref`` under both policies (separate trust directories); the verdicts must agree."""
    n = next(_dirs)
    k = verify_image(ref, Trust.load(write_trust(tmp / f"kyverno{n}", policy=kyverno_policy, **trust)))
    c = verify_image(ref, Trust.load(write_trust(tmp / f"cip{n}", policy=cip_policy, **trust)))
    assert (k.allowed, k.decision) == (c.allowed, c.decision), (k.reasons, c.reasons)
    return k


@pytest.fixture
def images(registry: Any, make_image: Any) -> Any:
    def make(repo: str) -> str:
        make_image(registry, repo, "1")
        return f"{registry.host}/{repo}:1"
    return make


def test_cosign_key(registry: Any, images: Any, tmp_path: Path) -> None:
    signed, unsigned, other = images("kyv/key/signed"), images("kyv/key/unsigned"), images("kyv/key/other")
    sign_image(signed, ALICE, client=RegistryClient())
    sign_image(other, BOB, client=RegistryClient())
    k = kyverno(f"      - imageReferences:\n        - \"{registry.host}/kyv/key/*\"\n        attestors:\n"
                f"        - count: 1\n          entries:\n{key_entry(ALICE)}")
    c = cip(f"  images: [{{glob: \"{registry.host}/kyv/key/**\"}}]\n  authorities:\n{cip_key(ALICE)}")
    result = same_verdict(tmp_path, signed, k, c)
    assert result and result.policies[0].name == "check-image/check-image"
    assert not same_verdict(tmp_path, unsigned, k, c)
    result = same_verdict(tmp_path, other, k, c)
    assert not result and "check-image/check-image: entries[0]: no signature verified" in result.reasons[0]


def test_key_with_custom_signature_repository(registry: Any, images: Any, tmp_path: Path) -> None:
    ref = images("kyv/repo/app")
    sign_image(ref, ALICE, client=RegistryClient(), signature_repo=f"{registry.host}/kyv/signatures")
    base = f"      - imageReferences:\n        - \"{registry.host}/kyv/repo/*\"\n"
    k = kyverno(base + f"        repository: \"{registry.host}/kyv/signatures\"\n        attestors:\n"
                f"        - entries:\n{key_entry(ALICE)}")
    c = cip(f"  images: [{{glob: \"{registry.host}/kyv/repo/**\"}}]\n  authorities:\n"
            + cip_key(ALICE).replace("}}\n", f"}}, source: [{{oci: \"{registry.host}/kyv/signatures\"}}]}}\n"))
    assert same_verdict(tmp_path, ref, k, c)
    without = kyverno(base + f"        attestors:\n        - entries:\n{key_entry(ALICE)}")
    assert not same_verdict(tmp_path, ref, without, cip(f"  images: [{{glob: \"{registry.host}/kyv/repo/**\"}}]\n"
                                                        f"  authorities:\n{cip_key(ALICE)}"))


@pytest.fixture
def keyless_image(registry: Any, make_image: Any, mini_sigstore: MiniSigstore,
                  keyless_identity: KeylessIdentity) -> str:
    image = make_image(registry, "kyv/keyless/app", "1")
    push_keyless_signature(registry, "kyv/keyless/app", image.digest, keyless_identity, sigstore=mini_sigstore)
    return f"{registry.host}/kyv/keyless/app:1"


def test_keyless_subject_and_issuer(registry: Any, keyless_image: str, mini_sigstore: MiniSigstore,
                                    keyless_identity: KeylessIdentity, tmp_path: Path) -> None:
    root = mini_sigstore.trusted_root()

    def pair(subject: str, regexp: str) -> tuple[str, str]:
        k = kyverno(f"      - imageReferences: [\"{registry.host}/kyv/keyless/*\"]\n        attestors:\n"
                    f"        - entries:\n          - keyless:\n              subject: \"{subject}\"\n"
                    f"              issuer: \"{keyless_identity.issuer}\"\n"
                    "              rekor: {url: https://rekor.airgap.test}\n")
        c = cip(f"  images: [{{glob: \"{registry.host}/kyv/keyless/**\"}}]\n  authorities:\n    - keyless:\n"
                f"        identities: [{{issuer: \"{keyless_identity.issuer}\", subjectRegExp: '{regexp}'}}]\n")
        return k, c

    assert same_verdict(tmp_path, keyless_image, *pair(keyless_identity.identity,
                                                       "^signer@airgap\\.test$"), trusted_root=root)
    assert same_verdict(tmp_path, keyless_image, *pair("*@airgap.test", "^.*@airgap\\.test$"), trusted_root=root)
    result = same_verdict(tmp_path, keyless_image, *pair("*@acme.test", "^.*@acme\\.test$"), trusted_root=root)
    assert not result and "identity" in result.reasons[0]


def test_keyless_regexp(registry: Any, keyless_image: str, mini_sigstore: MiniSigstore,
                        keyless_identity: KeylessIdentity, tmp_path: Path) -> None:
    root = mini_sigstore.trusted_root()

    def pair(subject: str, issuer: str) -> tuple[str, str]:
        k = kyverno(f"      - imageReferences: [\"{registry.host}/kyv/keyless/*\"]\n        attestors:\n"
                    f"        - entries:\n          - keyless:\n              subjectRegExp: '{subject}'\n"
                    f"              issuerRegExp: '{issuer}'\n"
                    "              rekor: {url: https://rekor.airgap.test}\n")
        c = cip(f"  images: [{{glob: \"{registry.host}/kyv/keyless/**\"}}]\n  authorities:\n    - keyless:\n"
                f"        identities: [{{issuerRegExp: '{issuer}', subjectRegExp: '{subject}'}}]\n")
        return k, c

    assert same_verdict(tmp_path, keyless_image, *pair("^signer@airgap[.]test$", "^https://oidc[.]airgap[.]test$"),
                        trusted_root=root)
    # the whole string must match: Kyverno (Go's MatchString) would accept this one, both airgap policies refuse it
    assert not same_verdict(tmp_path, keyless_image, *pair("gner@airgap[.]test", "^https://oidc[.]airgap[.]test$"),
                            trusted_root=root)
    assert not same_verdict(tmp_path, keyless_image, *pair("^signer@airgap[.]test$", "^https://other$"),
                            trusted_root=root)


def test_attestation_with_conditions(registry: Any, images: Any, tmp_path: Path) -> None:
    ref = images("kyv/att/app")
    review = {"repo": {"branch": "main", "uri": "https://git.example/org/app"}, "reviewers": ["bob@example.com"]}
    attest_image(ref, ALICE, client=RegistryClient(), predicate=json.dumps(review).encode(),
                 predicate_type="https://example.com/CodeReview/v1")

    def pair(branch: str) -> tuple[str, str]:
        k = kyverno(f"      - imageReferences:\n        - \"{registry.host}/kyv/att/*\"\n        attestations:\n"
                    "          - type: https://example.com/CodeReview/v1\n            attestors:\n"
                    f"            - entries:\n{key_entry(ALICE, 14)}            conditions:\n              - all:\n"
                    "                - key: \"{{ repo.uri }}\"\n                  operator: Equals\n"
                    "                  value: \"https://git.example/org/app\"\n"
                    "                - key: \"{{ repo.branch }}\"\n                  operator: Equals\n"
                    f"                  value: \"{branch}\"\n"
                    "                - key: \"{{ reviewers }}\"\n                  operator: AnyIn\n"
                    "                  value: [\"ana@example.com\", \"bob@example.com\"]\n")
        cel = (f'predicate.repo.uri == "https://git.example/org/app" && predicate.repo.branch == "{branch}" && '
               'predicate.reviewers.exists(r, r in ["ana@example.com", "bob@example.com"])')
        c = cip(f"  images: [{{glob: \"{registry.host}/kyv/att/**\"}}]\n  authorities:\n"
                + cip_key(ALICE).rstrip("}\n") + "}, attestations: [{name: review, predicateType: "
                f"'https://example.com/CodeReview/v1', policy: {{type: cel, data: '{cel}'}}}}]}}\n")
        return k, c

    assert same_verdict(tmp_path, ref, *pair("main"))
    result = same_verdict(tmp_path, ref, *pair("release"))
    assert not result and "condition is false" in json.dumps(result.evidence)


def test_every_attestation_must_satisfy_kyverno_conditions(registry: Any, images: Any, tmp_path: Path) -> None:
    """Where Kyverno and policy-controller differ, each keeps its own rule: a second CodeReview attestation that
    fails the condition fails the Kyverno policy (every statement is checked), not the ClusterImagePolicy."""
    ref = images("kyv/every/app")
    for branch in ("main", "wip"):
        attest_image(ref, ALICE, client=RegistryClient(), predicate=json.dumps({"branch": branch}).encode(),
                     predicate_type="https://example.com/CodeReview/v1")
    k = kyverno(f"      - imageReferences: [\"{registry.host}/kyv/every/*\"]\n        attestations:\n"
                "          - type: https://example.com/CodeReview/v1\n            attestors:\n"
                f"            - entries:\n{key_entry(ALICE, 14)}            conditions:\n"
                "              - all: [{key: '{{ branch }}', operator: Equals, value: main}]\n")
    result = verify_image(ref, Trust.load(write_trust(tmp_path / "k", policy=k)))
    assert not result and "does not satisfy 'attestations[0]' (every one must)" in result.reasons[0]
    c = cip(f"  images: [{{glob: \"{registry.host}/kyv/every/**\"}}]\n  authorities:\n"
            + cip_key(ALICE).rstrip("}\n") + "}, attestations: [{name: review, predicateType: "
            "'https://example.com/CodeReview/v1', policy: {type: cel, data: 'predicate.branch == \"main\"'}}]}\n")
    assert verify_image(ref, Trust.load(write_trust(tmp_path / "c", policy=c)))


def test_count_two_of_three(registry: Any, images: Any, tmp_path: Path) -> None:
    ref = images("kyv/count/app")
    sign_image(ref, ALICE, client=RegistryClient())
    k = kyverno(f"      - imageReferences: [\"{registry.host}/kyv/count/*\"]\n        attestors:\n"
                f"        - count: 2\n          entries:\n{key_entry(ALICE)}{key_entry(BOB)}{key_entry(CAROL)}")
    c = cip(f"  images: [{{glob: \"{registry.host}/kyv/count/**\"}}]\n  match: {{authorities: 2}}\n  authorities:\n"
            + cip_key(ALICE, "a") + cip_key(BOB, "b") + cip_key(CAROL, "c"))
    result = same_verdict(tmp_path, ref, k, c)
    assert not result and result.reasons[0].startswith("policy check-image/check-image: entries[1]: no signature")
    sign_image(ref, CAROL, client=RegistryClient())
    assert same_verdict(tmp_path, ref, k, c)


def test_audit_warns_enforce_denies(registry: Any, images: Any, tmp_path: Path) -> None:
    ref = images("kyv/audit/app")  # unsigned
    shape = (f"      - imageReferences: [\"{registry.host}/kyv/audit/*\"]\n        attestors:\n"
             f"        - entries:\n{key_entry(ALICE)}")
    spec = f"  images: [{{glob: \"{registry.host}/kyv/audit/**\"}}]\n  authorities:\n{cip_key(ALICE)}"
    result = same_verdict(tmp_path, ref, kyverno(shape, action="Audit"), cip("  mode: warn\n" + spec))
    assert result.allowed and result.decision == "warn" and "no signatures found" in result.warnings[0]
    result = same_verdict(tmp_path, ref, kyverno(shape, action="Enforce"), cip(spec))
    assert not result.allowed and result.decision == "deny"


def test_skip_image_references(registry: Any, images: Any, tmp_path: Path) -> None:
    trusted, app = images("kyv/skip/trusted/tool"), images("kyv/skip/app")
    k = kyverno(f"      - imageReferences: [\"{registry.host}/kyv/skip/*\"]\n"
                f"        skipImageReferences: [\"{registry.host}/kyv/skip/trusted/*\"]\n        attestors:\n"
                f"        - entries:\n{key_entry(ALICE)}", api="kyverno.io/v2beta1")
    settings = "---\napiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\nspec: {noMatchPolicy: allow}\n"
    trust = Trust.load(write_trust(tmp_path / "t", policy=k + settings))
    result = verify_image(trusted, trust)
    assert result and result.policies == [] and "no policy matches" in result.warnings[0]
    assert not verify_image(app, trust)


def test_pinned_certificate(registry: Any, images: Any, tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    ref = images("kyv/cert/app")
    sign_image(ref, ALICE, client=RegistryClient())
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kyverno-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
            .issuer_name(ca_name).public_key(ALICE.public_key).serial_number(2)  # type: ignore[arg-type]
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))

    def block(name: str, cert: Any) -> str:
        text = cert.public_bytes(serialization.Encoding.PEM).decode().strip()
        return f"              {name}: |-\n" + textwrap.indent(text, " " * 16) + "\n"

    k = kyverno(f"      - imageReferences: [\"{registry.host}/kyv/cert/*\"]\n        attestors:\n"
                "        - entries:\n          - certificates:\n" + block("cert", leaf) + block("certChain", ca)
                + "              rekor: {ignoreTlog: true, url: https://rekor.sigstore.dev}\n")
    c = cip(f"  images: [{{glob: \"{registry.host}/kyv/cert/**\"}}]\n  authorities:\n{cip_key(ALICE)}")
    assert same_verdict(tmp_path, ref, k, c)


def test_cli_verify_with_a_kyverno_policy_and_an_unsupported_field(registry: Any, images: Any,
                                                                    tmp_path: Path) -> None:
    ref = images("kyv/cli/app")
    sign_image(ref, ALICE, client=RegistryClient())
    k = kyverno(f"      - imageReferences: [\"{registry.host}/kyv/cli/*\"]\n        attestors:\n"
                f"        - entries:\n{key_entry(ALICE)}")
    trust = write_trust(tmp_path / "t", policy=k)
    out = CliRunner().invoke(cli, ["verify", "--trust", str(trust), ref], catch_exceptions=False)
    assert out.exit_code == 0 and "policy check-image/check-image [enforce]: passed" in out.stdout, out.output
    (trust / "policy.yaml").write_text(k.replace("          - keys:\n", "          - annotations: {sig: original}\n"
                                                                       "            keys:\n"))
    with pytest.raises(PolicyError) as err:
        Trust.load(trust)
    assert str(err.value) == (f"{trust / 'policy.yaml'}: document 1 (check-image, rule check-image): spec.rules[0]."
                              "verifyImages[0].attestors[0].entries[0].annotations: not supported (airgap does not "
                              "check signature annotations)")
    out = CliRunner().invoke(cli, ["verify", "--trust", str(trust), ref], catch_exceptions=False)
    assert out.exit_code != 0 and "entries[0].annotations: not supported" in out.stderr
