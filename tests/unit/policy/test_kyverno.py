"""Kyverno verifyImages rules translated into airgap's policy model: the documented shapes, the mapping of each
field, conditions as CEL, and every field airgap does not implement refused with file, document, rule and field."""

from __future__ import annotations

import datetime
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airgap import refs
from airgap.errors import PolicyError
from airgap.keys.public import key_id, public_pem
from airgap.policy.cip import FileKeyResolver
from airgap.policy.kyverno import SkipPattern, image_globs, spellings
from airgap.policy.policyset import PolicySet

ALICE = ec.generate_private_key(ec.SECP256R1()).public_key()
BOB = ec.generate_private_key(ec.SECP256R1()).public_key()
CAROL = ec.generate_private_key(ec.SECP256R1()).public_key()


def pem(key: Any, indent: int) -> str:
    """A PEM key as a YAML block scalar's lines, indented."""
    return textwrap.indent(public_pem(key).decode().strip(), " " * indent)


def cluster_policy(verify_images: str, *, action: str | None = "Enforce", api: str = "kyverno.io/v1",
                   kind: str = "ClusterPolicy", name: str = "check-image", rule: str = "check-image") -> str:
    """A Kyverno policy as its docs write one; ``verify_images`` is the YAML list under verifyImages (indented 6)."""
    action_line = f"  validationFailureAction: {action}\n" if action else ""
    return (f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n{action_line}"
            "  background: false\n  webhookTimeoutSeconds: 30\n  failurePolicy: Fail\n  rules:\n"
            f"    - name: {rule}\n      match:\n        any:\n        - resources:\n            kinds: [Pod]\n"
            f"      verifyImages:\n{verify_images}")


KEY_SHAPE = f"""\
      - imageReferences:
        - "ghcr.io/acme/app*"
        attestors:
        - count: 1
          entries:
          - keys:
              publicKeys: |-
{pem(ALICE, 16)}
              rekor:
                ignoreTlog: true
                url: https://rekor.sigstore.dev
"""


def load(text: str, **kwargs: Any) -> PolicySet:
    return PolicySet.from_yaml(text, "policy.yaml", **kwargs)


def ref(text: str) -> refs.Reference:
    return refs.parse(text)


# --- the shapes Kyverno documents --------------------------------------------------------------------------------


def test_cosign_key_shape() -> None:
    (policy,) = load(cluster_policy(KEY_SHAPE)).policies
    assert policy.name == "check-image/check-image" and policy.mode == "enforce" and policy.threshold is None
    assert [g.text for g in policy.globs] == ["ghcr.io/acme/app**"]
    assert policy.matches(ref("ghcr.io/acme/app:1")) and policy.matches(ref("ghcr.io/acme/app-x/sub:1"))
    assert not policy.matches(ref("ghcr.io/acme/other:1"))
    (auth,) = policy.authorities
    assert auth.name == "entries[0]" and auth.keys == (ALICE,) and auth.key_refs == ("data",)
    assert auth.ctlog_disabled and auth.ctlog_url == "https://rekor.sigstore.dev" and auth.sources == ()
    assert policy.origin == "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0]"


def test_tlog_is_required_unless_ignored() -> None:
    text = cluster_policy(KEY_SHAPE.replace("                ignoreTlog: true\n", ""))
    assert not load(text).policies[0].authorities[0].ctlog_disabled
    text = cluster_policy(KEY_SHAPE.replace("              rekor:\n                ignoreTlog: true\n"
                                            "                url: https://rekor.sigstore.dev\n", ""))
    assert not load(text).policies[0].authorities[0].ctlog_disabled


def test_signature_repository_shape() -> None:
    text = cluster_policy(KEY_SHAPE.replace('        attestors:\n', '        repository: "registry.io/signatures"\n'
                                                                   '        attestors:\n'))
    assert load(text).policies[0].authorities[0].sources == ("registry.io/signatures",)
    text = cluster_policy(KEY_SHAPE.replace("          - keys:\n", "          - repository: registry.io/own\n"
                                                                   "            keys:\n"))
    assert load(text).policies[0].authorities[0].sources == ("registry.io/own",)


def test_skip_image_references_shape() -> None:
    text = cluster_policy(KEY_SHAPE.replace('"ghcr.io/acme/app*"', '"ghcr.io/*"\n        skipImageReferences:\n'
                                                                   '        - "ghcr.io/trusted/*"'),
                          api="kyverno.io/v2beta1", name="exclude-refs", rule="exclude-refs")
    (policy,) = load(text).policies
    assert policy.matches(ref("ghcr.io/acme/app:1")) and policy.matches(ref("ghcr.io/a/b/c@sha256:" + "a" * 64))
    assert not policy.matches(ref("ghcr.io/trusted/tool:1"))
    assert not policy.matches(ref("ghcr.io/trusted/tool:1@sha256:" + "b" * 64))


def test_keyless_subject_issuer_shape() -> None:
    text = cluster_policy("""\
      - imageReferences:
        - "ghcr.io/kyverno/test-verify-image:signed-keyless"
        attestors:
        - entries:
          - keyless:
              subject: "*@acme.test"
              issuer: "https://accounts.google.com"
              rekor:
                url: https://rekor.sigstore.dev
""")
    ps = load(text)
    (auth,) = ps.policies[0].authorities
    assert auth.keyless is not None and auth.keyless.ca_cert_pem is None and not auth.ctlog_disabled
    (identity,) = auth.keyless.identities
    assert identity.matches("alice@acme.test", "https://accounts.google.com")
    assert not identity.matches("alice@acme.test.evil", "https://accounts.google.com")
    assert not identity.matches("alice@acme.test", "https://accounts.google.com.evil")
    assert ps.warnings == []  # wildcards are whole-string in Kyverno too
    policy = ps.policies[0]
    assert policy.matches(ref("ghcr.io/kyverno/test-verify-image:signed-keyless"))
    assert not policy.matches(ref("ghcr.io/kyverno/test-verify-image:unsigned"))


def test_keyless_regexp_shape_roots_and_ignore_sct() -> None:
    text = cluster_policy("""\
      - imageReferences: ["registry.example.com/*"]
        attestors:
        - entries:
          - keyless:
              subjectRegExp: "https://github\\\\.com/acme/.+"
              subject: "ops@acme.test"
              issuerRegExp: "^https://token\\\\.actions\\\\.githubusercontent\\\\.com$"
              rekor: {url: https://rekor.example.com}
              ctlog: {ignoreSCT: true}
""")
    ps = load(text)
    (auth,) = ps.policies[0].authorities
    assert auth.keyless is not None and auth.keyless.insecure_ignore_sct
    issuer = "https://token.actions.githubusercontent.com"
    ids = auth.keyless.identities
    assert len(ids) == 2  # subject OR subjectRegExp, as Kyverno
    assert any(i.matches("ops@acme.test", issuer) for i in ids)
    assert any(i.matches("https://github.com/acme/app/.github/workflows/r.yml@refs/tags/v1", issuer) for i in ids)
    assert not any(i.matches("https://github.com/acme/x", "https://evil.test") for i in ids)
    (warning,) = ps.warnings
    assert ("policy.yaml: document 1 (check-image): regexp not anchored with ^...$: spec.rules[0].verifyImages[0]."
            "attestors[0].entries[0].keyless.subjectRegExp 'https://github\\\\.com/acme/.+'") in warning


def test_attestation_with_conditions_shape() -> None:
    text = cluster_policy(f"""\
      - imageReferences:
        - "registry.io/org/app*"
        attestations:
          - type: https://example.com/CodeReview/v1
            attestors:
            - entries:
              - keys:
                  publicKeys: |-
{pem(ALICE, 20)}
            conditions:
              - all:
                - key: "{{{{ repo.uri }}}}"
                  operator: Equals
                  value: "https://git-repo.com/org/app"
                - key: "{{{{ repo.branch }}}}"
                  operator: Equals
                  value: "main"
                - key: "{{{{ reviewers }}}}"
                  operator: AnyIn
                  value: ["ana@example.com", "bob@example.com"]
""", name="attest-code-review", rule="attest")
    (policy,) = load(text).policies
    assert policy.name == "attest-code-review/attest/attestations[0]"
    (auth,) = policy.authorities
    (spec,) = auth.attestations
    assert spec.predicate_type == "https://example.com/CodeReview/v1" and spec.every and spec.name == "attestations[0]"
    good = {"author": "alice@example.com", "repo": {"branch": "main", "type": "git",
                                                    "uri": "https://git-repo.com/org/app"},
            "reviewers": ["bob@example.com"]}
    assert spec.evaluate(good)
    assert not spec.evaluate(good | {"reviewers": ["mallory@example.com"]})
    assert not spec.evaluate(good | {"repo": {"branch": "dev", "uri": "https://git-repo.com/org/app"}})
    assert not spec.evaluate({"reviewers": ["bob@example.com"]})  # a missing key fails the condition


def test_count_two_of_three_and_keys_split_like_kyverno() -> None:
    text = cluster_policy(f"""\
      - imageReferences: ["ghcr.io/acme/*"]
        attestors:
        - count: 2
          entries:
          - keys:
              publicKeys: |-
{pem(ALICE, 16)}
{pem(BOB, 16)}
              rekor: {{ignoreTlog: true, url: https://rekor.sigstore.dev}}
          - keys:
              publicKeys: |-
{pem(CAROL, 16)}
              rekor: {{ignoreTlog: true, url: https://rekor.sigstore.dev}}
""")
    (policy,) = load(text).policies
    assert [a.name for a in policy.authorities] == ["entries[0].keys[0]", "entries[0].keys[1]", "entries[1]"]
    assert [a.keys for a in policy.authorities] == [(ALICE,), (BOB,), (CAROL,)]
    assert policy.threshold == 2
    assert not policy.satisfied({"entries[0].keys[0]": True})
    assert policy.satisfied({"entries[0].keys[0]": True, "entries[1]": True})
    no_count = load(text.replace("        - count: 2\n          entries:", "        - entries:")).policies[0]
    assert no_count.threshold == 3  # Kyverno: every entry when count is absent
    with pytest.raises(PolicyError, match=r"attestors\[0\].count: expected a number from 1 to 3, got 4"):
        load(text.replace("count: 2", "count: 4"))


def test_audit_enforce_and_defaults() -> None:
    assert load(cluster_policy(KEY_SHAPE, action="Audit")).policies[0].mode == "warn"
    assert load(cluster_policy(KEY_SHAPE, action="audit")).policies[0].mode == "warn"
    assert load(cluster_policy(KEY_SHAPE, action="Enforce")).policies[0].mode == "enforce"
    override = KEY_SHAPE.replace("        attestors:\n", "        failureAction: Enforce\n        attestors:\n", 1)
    assert load(cluster_policy(override, action="Audit")).policies[0].mode == "enforce"
    # neither: airgap's default (the AirgapPolicy's mode), not Kyverno's Audit
    assert load(cluster_policy(KEY_SHAPE, action=None)).policies[0].mode == "enforce"
    settings = "---\napiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\nspec: {mode: warn}\n"
    assert load(cluster_policy(KEY_SHAPE, action=None) + settings).policies[0].mode == "warn"


def test_namespaced_policy_applies_to_every_image() -> None:
    text = cluster_policy(KEY_SHAPE, kind="Policy").replace("  name: check-image\n",
                                                            "  name: check-image\n  namespace: team-a\n")
    (policy,) = load(text).policies
    assert policy.name == "team-a/check-image/check-image" and policy.matches(ref("ghcr.io/acme/app:1"))


def test_secret_references(tmp_path: Path) -> None:
    (tmp_path / "cosign-pub").mkdir()
    (tmp_path / "cosign-pub" / "cosign.pub").write_bytes(public_pem(BOB))
    resolver = FileKeyResolver([tmp_path])
    text = cluster_policy(KEY_SHAPE.replace(f"publicKeys: |-\n{pem(ALICE, 16)}", "publicKeys: k8s://kyverno/cosign-pub"))
    assert load(text, key_resolver=resolver).policies[0].authorities[0].keys == (BOB,)
    text = cluster_policy(KEY_SHAPE.replace(f"publicKeys: |-\n{pem(ALICE, 16)}",
                                            "secret: {name: cosign-pub, namespace: kyverno}"))
    auth = load(text, key_resolver=resolver).policies[0].authorities[0]
    assert auth.keys == (BOB,) and auth.key_refs == ("secretRef:cosign-pub",)


def _ca_and_leaf() -> tuple[bytes, bytes, Any]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    return (ca.public_bytes(serialization.Encoding.PEM), leaf.public_bytes(serialization.Encoding.PEM),
            leaf_key.public_key())


def test_certificates_shapes() -> None:
    ca, leaf, leaf_key = _ca_and_leaf()

    def shape(fields: str) -> str:
        return cluster_policy("      - imageReferences: [\"ghcr.io/kyverno/test-verify-image:signed-cert\"]\n"
                              "        attestors:\n        - entries:\n          - certificates:\n" + fields)

    def block(name: str, data: bytes) -> str:
        return f"              {name}: |-\n" + textwrap.indent(data.decode().strip(), " " * 16) + "\n"

    (auth,) = load(shape(block("cert", leaf) + block("certChain", ca))).policies[0].authorities
    assert auth.keys is not None and key_id(auth.keys[0]) == key_id(leaf_key) and auth.key_refs == ("certificate",)
    (auth,) = load(shape(block("certChain", ca))).policies[0].authorities
    assert auth.keyless is not None and auth.keyless.ca_cert_pem == ca.strip() + b"\n"
    other_ca, _, _ = _ca_and_leaf()
    with pytest.raises(PolicyError) as err:
        load(shape(block("cert", leaf) + block("certChain", other_ca)))
    assert str(err.value) == ("policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0]."
                              "attestors[0].entries[0].certificates.certChain: the certificate is not issued through "
                              "this chain")


# --- imageReferences and skipImageReferences ------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "image", "matched"), [
    ("ghcr.io/acme/*", "ghcr.io/acme/app:1", True),
    ("ghcr.io/acme/*", "ghcr.io/acme/team/app:1", True),  # Kyverno's * crosses /
    ("ghcr.io/acme/*", "ghcr.io/other/app:1", False),
    ("*", "quay.io/x/y:1", True),
    ("docker.io/nginx*", "nginx:1.25", True),  # a pod's `nginx` is docker.io/nginx to Kyverno
    ("docker.io/library/nginx*", "nginx:1.25", True),
    ("ghcr.io/app:v1", "ghcr.io/app:v1", True),
    ("ghcr.io/app:v1", "ghcr.io/app:v2", False),
    ("*:latest", "busybox:latest", True),
    ("*:latest", "busybox:1.36", False),
])
def test_image_references_become_globs(pattern: str, image: str, matched: bool) -> None:
    assert any(g.matches(ref(image)) for g in image_globs(pattern)) is matched


def test_skip_needs_every_spelling_kyverno_could_have_seen() -> None:
    nginx = ref("nginx:1.25@sha256:" + "c" * 64)
    assert spellings(nginx)[:2] == ["docker.io/library/nginx:1.25", "docker.io/library/nginx@sha256:" + "c" * 64]
    assert "docker.io/nginx:1.25" in spellings(nginx) and "index.docker.io/nginx:1.25" in spellings(nginx)
    assert spellings(ref("ghcr.io/a/b")) == ["ghcr.io/a/b:latest"]
    assert SkipPattern.compile("*").matches(nginx)
    assert not SkipPattern.compile("docker.io/library/*").matches(nginx)  # a pod's `nginx` is docker.io/nginx
    assert not SkipPattern.compile("*:1.25").matches(nginx)  # pinned by digest, Kyverno sees no tag
    assert SkipPattern.compile("ghcr.io/trusted/*").matches(ref("ghcr.io/trusted/x:1@sha256:" + "d" * 64))
    assert SkipPattern.compile("ghcr.io/t?usted/x:1").matches(ref("ghcr.io/trusted/x:1"))


# --- conditions: the supported subset, as CEL --------------------------------------------------------------------


ALICE_JSON = json.dumps(public_pem(ALICE).decode())


def _condition(operator: str, value: str, key: str = "{{ a.b }}") -> Any:
    text = cluster_policy(f"""\
      - imageReferences: ["*"]
        attestations:
        - type: https://example.com/t
          attestors: [{{entries: [{{keys: {{publicKeys: {ALICE_JSON}}}}}]}}]
          conditions: [{{any: [{{key: {json.dumps(key)}, operator: {operator}, value: {value}}}]}}]
""")
    return load(text).policies[0].authorities[0].attestations[0]


@pytest.mark.parametrize(("operator", "value", "true_for", "false_for"), [
    ("Equals", '"main"', ["main"], ["dev", 5, None, ["main"]]),
    ("Equals", '"v*.release"', ["v1.release", "v.release"], ["v1.releasex", "1", "100"]),
    ("Equals", "5", [5, 5.0], [5.5, "5", True]),
    ("Equals", "true", [True], ["true", 1]),
    ("NotEquals", '"main"', ["dev"], ["main", 5]),
    ("NotEquals", "3", [4, 2.5], [3, "4"]),
    ("AnyIn", '["ana@example.com", "bob@*"]', [["x", "bob@example.com"], "ana@example.com"], [["x"], [], 5]),
    ("AllIn", '["a", "b"]', [["a", "b"], [], "a"], [["a", "c"], [1]]),
    ("In", '["a", "b"]', ["a", ["a", "b"]], ["c", ["a", "c"]]),
    ("AnyNotIn", '["a", "b"]', [["a", "c"]], [["a", "b"], ["a", "*"], [1]]),
    ("AllNotIn", '["a", "b"]', [["c", "d"], "c", []], [["c", "a"], ["c?"]]),
    ("NotIn", '["a"]', ["b"], ["a", "*"]),
    ("GreaterThan", "3", [4, 3.5], [3, "4", None]),
    ("GreaterThanOrEquals", "3", [3], [2.9]),
    ("LessThan", "0.5", [0, 0.25], [0.5]),
    ("LessThanOrEquals", "-1", [-1, -2], [0]),
])
def test_condition_operators(operator: str, value: str, true_for: list[Any], false_for: list[Any]) -> None:
    spec = _condition(operator, value)
    for v in true_for:
        assert spec.evaluate({"a": {"b": v}}), (operator, value, v, spec.condition.source)
    for v in false_for:
        assert not spec.evaluate({"a": {"b": v}}), (operator, value, v, spec.condition.source)


def test_condition_keys() -> None:
    spec = _condition("Equals", '"x"', key='{{ a[1]."b-c" }}')
    assert spec.evaluate({"a": [{}, {"b-c": "x"}]}) and not spec.evaluate({"a": [{"b-c": "x"}]})
    assert _condition("Equals", '"x"', key="{{a}}").evaluate({"a": "x"})


@pytest.mark.parametrize(("operator", "value", "key", "message"), [
    ("DurationGreaterThan", '"1h"', "{{ a }}", "operator: DurationGreaterThan is not supported (durations)"),
    ("Contains", '"x"', "{{ a }}", "operator: unsupported operator 'Contains'"),
    ("Equals", '"1Gi"', "{{ a }}", "value: '1Gi' reads as a quantity or a duration, which Kyverno compares by amount"),
    ("Equals", '"90m"', "{{ a }}", "value: '90m' reads as a quantity or a duration"),
    ("Equals", '"1h30m"', "{{ a }}", "value: '1h30m' reads as a quantity or a duration"),
    ("Equals", "[a]", "{{ a }}", "value: Equals compares a string, a number or a boolean, got list"),
    ("Equals", '"{{ request.name }}"', "{{ a }}", "value: variables ({{ }}) in values are not supported"),
    ("AnyIn", '"a"', "{{ a }}", "value: AnyIn needs a list of strings"),
    ("AnyIn", "[1]", "{{ a }}", "value[0]: expected a string without variables, got 1"),
    ("GreaterThan", '"1.2.3"', "{{ a }}", "value: GreaterThan with a string (a quantity or a version in Kyverno) "
                                          "is not supported"),
    ("Equals", '"x"', "{{ length(a) }}", "key: unsupported JMESPath 'length(a)'"),
    ("Equals", '"x"', "{{ a[*].b }}", "key: unsupported JMESPath 'a[*].b'"),
    ("Equals", '"x"', "a.b", "key: expected a {{ field.path }} over the predicate, got 'a.b'"),
    ("Equals", '"x"', '{{ "\\q" }}', 'key: invalid quoted field "\\q"'),
    ("Equals", '"x"', "{{ a[\u0661] }}", "key: unsupported JMESPath"),
])
def test_unsupported_conditions_are_refused(operator: str, value: str, key: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        _condition(operator, value, key)
    assert str(err.value).startswith(
        "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0].attestations[0]."
        "conditions[0].any[0]." + message), str(err.value)


def test_every_verified_attestation_must_satisfy_kyverno_conditions() -> None:
    assert _condition("Equals", '"x"').every


# --- what airgap does not implement is refused, naming file, document, rule and field --------------------------

ENTRY = "          - keys:\n              publicKeys: |-\n"
PREFIX = "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0]."


@pytest.mark.parametrize(("edit", "message"), [
    (("          - keys:\n", "          - annotations: {sig: original}\n            keys:\n"),
     "verifyImages[0].attestors[0].entries[0].annotations: not supported (airgap does not check signature "
     "annotations)"),
    (("          - keys:\n", "          - attestor: {entries: []}\n            keys:\n"),
     "verifyImages[0].attestors[0].entries[0].attestor: nested attestor sets are not supported"),
    (("              rekor:\n", "              kms: awskms:///x\n              rekor:\n"),
     "verifyImages[0].attestors[0].entries[0].keys.kms: KMS keys are not supported offline"),
    (("                ignoreTlog: true\n", "                ignoreTlog: true\n                pubkey: x\n"),
     "verifyImages[0].attestors[0].entries[0].keys.rekor.pubkey: a custom Rekor key is not supported here"),
    (("              rekor:\n", "              ctlog: {tsaCertChain: x}\n              rekor:\n"),
     "verifyImages[0].attestors[0].entries[0].keys.ctlog.tsaCertChain: a TSA chain is not supported here"),
    (("              rekor:\n", "              ctlog: {pubkey: x}\n              rekor:\n"),
     "verifyImages[0].attestors[0].entries[0].keys.ctlog.pubkey: a custom CT log key is not supported here"),
    (("      - imageReferences:\n", "      - type: Notary\n        imageReferences:\n"),
     "verifyImages[0].type: Notary verification is not supported"),
    (("      - imageReferences:\n", "      - type: SigstoreBundle\n        imageReferences:\n"),
     "verifyImages[0].type: SigstoreBundle verification is not supported"),
    (("      - imageReferences:\n", "      - validate: {deny: {conditions: {any: []}}}\n        imageReferences:\n"),
     "verifyImages[0].validate: not supported"),
    (("      - imageReferences:\n", "      - annotations: {a: b}\n        imageReferences:\n"),
     "verifyImages[0].annotations: not supported"),
    (("      - imageReferences:\n", "      - key: x\n        imageReferences:\n"),
     "verifyImages[0].key: the deprecated one-key form is not supported"),
    (("      - imageReferences:\n", "      - imageRegistry: x\n        imageReferences:\n"),
     "verifyImages[0].imageRegistry: unknown field"),
    (('"ghcr.io/acme/app*"', '"ghcr.io/acme/app?"'),
     "verifyImages[0].imageReferences[0]: invalid image reference 'ghcr.io/acme/app?': '?' has no glob equivalent"),
    (("        - count: 1\n          entries:\n", "        - count: 1\n          entries: []\n          x:\n"),
     "verifyImages[0].attestors[0].x: unknown field"),
    (("      verifyImages:\n", "      context: []\n      verifyImages:\n"),
     "context: not supported (airgap evaluates no Kyverno variables)"),
    (("      verifyImages:\n", "      preconditions: {any: []}\n      verifyImages:\n"),
     "preconditions: not supported"),
    (("      verifyImages:\n", "      validate: {message: x}\n      verifyImages:\n"),
     "validate: airgap translates verifyImages rules only"),
    (("          - keys:\n", "          - keys:\n              publicKeys: k8s://a/b/c\n"
                            "            certificates: {cert: x}\n            x-keys:\n"),
     "verifyImages[0].attestors[0].entries[0].x-keys: unknown field"),
])
def test_unsupported_fields_are_refused(edit: tuple[str, str], message: str) -> None:
    text = cluster_policy(KEY_SHAPE).replace(*edit, 1)
    with pytest.raises(PolicyError) as err:
        load(text)
    assert str(err.value).startswith(PREFIX + message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("text", "message"), [
    (cluster_policy(KEY_SHAPE).replace("  failurePolicy: Fail\n", "  validationFailureActionOverrides: []\n"),
     "policy.yaml: document 1 (check-image): spec.validationFailureActionOverrides: per-namespace actions are not "
     "supported"),
    (cluster_policy(KEY_SHAPE).replace("  failurePolicy: Fail\n", "  applyRules: One\n"),
     "policy.yaml: document 1 (check-image): spec.applyRules: invalid value 'One' (expected one of: All)"),
    (cluster_policy(KEY_SHAPE, action="Warn"),
     "policy.yaml: document 1 (check-image): spec.validationFailureAction: invalid value 'Warn'"),
    (cluster_policy(KEY_SHAPE, api="kyverno.io/v2"),
     "policy.yaml: document 1 (check-image): apiVersion: invalid value 'kyverno.io/v2'"),
    (cluster_policy("      - imageReferences: ['*']\n"),
     "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0]: expected attestors or "
     "attestations"),
    (cluster_policy(KEY_SHAPE).replace("      verifyImages:\n" + KEY_SHAPE, "      mutate: {}\n"),
     "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].mutate: airgap translates verifyImages "
     "rules only"),
    (cluster_policy("      - imageReferences: ['*']\n        attestations: [{type: t, attestors: []}]\n"),
     "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0].attestations[0]."
     "attestors: required by airgap: without attestors Kyverno accepts an attestation from any Sigstore signer"),
    (cluster_policy("      - imageReferences: ['*']\n        attestors: [{entries: [{keyless: {subject: s, "
                    "rekor: {url: u}}}]}]\n"),
     "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0].attestors[0].entries[0]."
     "keyless: expected issuer or issuerRegExp"),
    (cluster_policy("      - imageReferences: ['*']\n        attestors: [{entries: [{keyless: {subject: s, "
                    "issuer: i}}]}]\n"),
     "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0].attestors[0].entries[0]."
     "keyless: expected rekor or roots"),
    (cluster_policy("      - imageReferences: ['*']\n        attestors: [{entries: [{keyless: {subject: s, "
                    "issuer: i, rekor: {url: u}, additionalExtensions: {githubWorkflowTrigger: push}}}]}]\n"),
     "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0].attestors[0].entries[0]."
     "keyless.additionalExtensions: not supported"),
    (cluster_policy("      - imageReferences: ['*']\n        attestors: [{entries: [{keyless: {subjectRegExp: '(?!x)',"
                    " issuer: i, rekor: {url: u}}}]}]\n"),
     "policy.yaml: document 1 (check-image, rule check-image): spec.rules[0].verifyImages[0].attestors[0].entries[0]."
     "keyless.subjectRegExp: invalid regexp '(?!x)': lookahead (?!...) is not RE2"),
])
def test_policy_level_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        load(text)
    assert str(err.value).startswith(message), str(err.value)


def test_names_must_stay_unique_across_kinds() -> None:
    cip = ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\n"
           "metadata: {name: check-image/check-image}\nspec:\n  images: [{glob: '**'}]\n"
           "  authorities: [{static: {action: pass}}]\n---\n")
    with pytest.raises(PolicyError, match=r"document 2 \(check-image\): metadata.name: policy name "
                                          r"'check-image/check-image' is taken \(by document 1"):
        load(cip + cluster_policy(KEY_SHAPE))
