"""Policy loading (ClusterImagePolicy as policy-controller writes it), selection, combination, CEL, errors."""

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap import refs
from airgap.checks.keyless import Identity
from airgap.errors import PolicyError
from airgap.keys.public import key_id, load_public_key, public_pem
from airgap.policy.cip import FileKeyResolver
from airgap.policy.model import AttestationSpec
from airgap.policy.policyset import PolicySet

DATA = Path(__file__).parents[2] / "data" / "policies"
PC_EXAMPLE_KEY = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOc6HkISHzVdUbtUsdjYtPuyPYBeg\n"
    "4FCemyVurIM4KEORQk4OAu8ZNwxvGSoY3eAabYaFIPPQ8ROAjrbdPwNdJw==\n"
    "-----END PUBLIC KEY-----\n"
)
PEM_JSON = json.dumps(PC_EXAMPLE_KEY)


@pytest.fixture(scope="module")
def ops_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


@pytest.fixture(scope="module")
def site(ops_key: Any) -> PolicySet:
    return PolicySet.load(DATA / "airgap-policy.yaml", keys_dir=DATA / "keys", keys={"ops": ops_key})


def ref(text: str) -> refs.Reference:
    return refs.parse(text)


# --- loading real policy-controller documents --------------------------------------------------------------


def test_policy_controller_examples_load_as_is() -> None:
    ps = PolicySet.load(DATA / "policy-controller-examples.yaml")
    assert [p.name for p in ps.policies] == [
        "image-is-signed-by-github-actions", "custom-key-attestation-sbom-spdxjson", "image-policy-key-secret",
        "allow-distroless-static", "block-latest-busybox",
    ]
    gh, custom, secret, distroless, busybox = ps.policies
    (auth,) = gh.authorities
    assert auth.name == "authority-0" and auth.kind == "keyless"
    assert auth.keyless is not None and auth.keyless.url == "https://fulcio.sigstore.dev"
    assert auth.keyless.identities == (Identity(
        issuer="https://token.actions.githubusercontent.com",
        subject_regexp="https://github.com/sigstore/.*/.github/workflows/release.yaml@refs/tags/v.*"),)
    assert auth.ctlog_url == "https://rekor.sigstore.dev" and not auth.ctlog_disabled
    (auth,) = custom.authorities
    assert auth.keys is not None and key_id(auth.keys[0]) == key_id(load_public_key(PC_EXAMPLE_KEY.encode()))
    assert auth.attestations == (AttestationSpec("must-have-spdxjson", "https://spdx.dev/Document"),)
    (auth,) = secret.authorities
    assert auth.keys is not None
    assert public_pem(auth.keys[0]) == (DATA / "team-a.pub").read_bytes()  # secretRef -> team-a.pub next to it
    assert auth.key_refs == ("secretRef:team-a",) and auth.sources == ("registry.example.com/signatures",)
    assert distroless.mode == "warn" and distroless.authorities[0].static == "pass"
    assert busybox.authorities[0].static == "fail"
    assert busybox.authorities[0].static_message == "do not run busybox:latest"
    assert ps.no_match == "deny" and ps.allow == () and ps.approved_registries == ()


def test_selection_uses_globs(site: PolicySet) -> None:
    ps = PolicySet.load(DATA / "policy-controller-examples.yaml")
    names = lambda r: [p.name for p in ps.select(ref(r))]  # noqa: E731
    assert names("ghcr.io/sigstore/cosign/cosign:v2.4.1") == ["image-is-signed-by-github-actions"]
    assert names("registry.example.com/team-a/demo-api:1") == [
        "custom-key-attestation-sbom-spdxjson", "image-policy-key-secret"]
    assert names("busybox") == ["block-latest-busybox"]
    assert names("busybox:1.36") == []
    assert names("gcr.io/distroless/static-debian12:nonroot") == ["allow-distroless-static"]
    assert names("quay.io/x/y") == []
    assert [p.name for p in site.select(ref("nginx:1.25"))] == ["acme-release"]
    assert [p.name for p in site.select(ref("ghcr.io/acme/critical/db@sha256:" + "a" * 64))] == [
        "acme-release", "acme-two-people"]


def test_airgap_settings_and_extensions(site: PolicySet, ops_key: Any) -> None:
    assert site.no_match == "warn" and site.default_mode == "enforce"
    assert site.approved_registries == ("docker.io", "ghcr.io/acme", "registry.k8s.io")
    release, two = site.policies
    assert release.docker_reference_strict and release.threshold == 2 and release.mode == "enforce"
    rel, ops, ci = release.authorities
    assert rel.keys is not None
    assert public_pem(rel.keys[0]) == (DATA / "keys" / "release-signer" / "cosign.pub").read_bytes()
    assert ops.keys == (ops_key,) and ops.ctlog_disabled and ops.key_refs == ("name:ops",)
    assert ci.keyless is not None and ci.keyless.trust_root_ref == "airgap-sigstore"
    assert ci.attestations[0].predicate_type == "https://slsa.dev/provenance/v1"
    assert two.policy is not None and two.threshold is None


def test_pre_decision(site: PolicySet) -> None:
    denied = site.pre_decision(ref("quay.io/evil/app:1"))
    assert denied is not None and not denied.allowed
    assert denied.reason == ("registry not approved: quay.io/evil/app is not under docker.io, ghcr.io/acme, "
                             "registry.k8s.io")
    assert not site.pre_decision(ref("ghcr.io/acme-evil/app")).allowed  # type: ignore[union-attr]
    allowed = site.pre_decision(ref("registry.k8s.io/pause:3.9"))
    assert allowed is not None and allowed.allowed
    assert allowed.reason == "allowed by allow-list glob 'registry.k8s.io/pause*'"
    assert site.pre_decision(ref("index.docker.io/library/nginx:1.25")) is None
    assert site.pre_decision(ref("ghcr.io/acme/app:v1")) is None


# --- combining authority results -----------------------------------------------------------------------------


def test_any_authority_satisfies_a_plain_policy() -> None:
    ps = PolicySet.load(DATA / "policy-controller-examples.yaml")
    policy = ps.policies[2]
    assert policy.satisfied({"authority-0": True})
    assert not policy.satisfied({"authority-0": False})
    assert not policy.satisfied({})
    assert policy.explain({}) == (False, "policy image-policy-key-secret: no authority passed")


def test_threshold_and_cel_policy(site: PolicySet) -> None:
    release, two = site.policies
    assert not release.satisfied({"release": True})
    assert release.explain({"release": True}) == (
        False, "policy acme-release: 1 of 3 authorities passed with 1 distinct signer(s), 2 required")
    assert release.satisfied({"release": True, "ci": True})
    assert not two.satisfied({"release": True})
    assert two.explain({"release": True})[1] == (
        "policy acme-two-people: CEL 'authorities[\"release\"] && authorities[\"ops\"]' is false")
    assert two.satisfied({"release": True, "ops": True})


def test_static_fail_never_passes() -> None:
    ps = PolicySet.from_yaml(_cip("  - static: {action: fail}\n  - static: {action: pass}\n"), "p.yaml")
    assert [a.static for a in ps.policies[0].authorities] == ["fail", "pass"]


# --- CEL over attestations ------------------------------------------------------------------------------------

BUILD = "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1"


def test_attestation_condition_true_false_and_eval_errors(site: PolicySet) -> None:
    spec = site.policies[0].authorities[2].attestations[0]
    assert spec.evaluate({"buildDefinition": {"buildType": BUILD}})
    assert not spec.evaluate({"buildDefinition": {"buildType": "https://evil"}})
    ok, why = spec.explain({"other": 1})  # field missing in an untrusted predicate: false, with the reason
    assert not ok and "evaluation failed" in why and why.startswith("attestation provenance: CEL ")
    stmt = {"_type": "https://in-toto.io/Statement/v1", "predicateType": "x", "subject": [{"name": "a"}],
            "predicate": {"buildDefinition": {"buildType": BUILD}}}
    assert spec.evaluate(stmt["predicate"], stmt)


def test_attestation_condition_sees_statement_fields() -> None:
    yaml_text = _cip(
        "  - key: {data: " + PEM_JSON + "}\n"
        "    attestations:\n"
        "    - name: vuln\n"
        "      predicateType: vuln\n"
        "      policy:\n"
        "        type: cel\n"
        "        data: >-\n"
        "          predicateType.endsWith('/vuln/v1') && size(subject) == 1 && predicate.scanner.result.count < 3\n")
    spec = PolicySet.from_yaml(yaml_text, "p.yaml").policies[0].authorities[0].attestations[0]
    assert spec.predicate_type == "https://cosign.sigstore.dev/attestation/vuln/v1"
    stmt = {"predicateType": spec.predicate_type, "subject": [{"name": "x"}],
            "predicate": {"scanner": {"result": {"count": 2}}}}
    assert spec.evaluate(stmt["predicate"], stmt)
    stmt["predicate"] = {"scanner": {"result": {"count": 7}}}
    assert not spec.evaluate(stmt["predicate"], stmt)
    assert not spec.evaluate({"scanner": {"result": {"count": 1}}}, {"predicateType": "y", "subject": []})


def test_non_boolean_cel_result_is_false() -> None:
    yaml_text = _cip("  - key: {data: " + PEM_JSON + "}\n    attestations:\n    - {name: a, predicateType: custom, "
                     "policy: {type: cel, data: 'predicate.n + 1'}}\n")
    spec = PolicySet.from_yaml(yaml_text, "p.yaml").policies[0].authorities[0].attestations[0]
    ok, why = spec.explain({"n": 1})
    assert not ok and "not a boolean" in why


# --- errors name file, document, field ---------------------------------------------------------------------------


def _cip(authorities: str, *, name: str = "team-a", images: str = "  - glob: ghcr.io/**\n", extra: str = "") -> str:
    return (f"apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata:\n  name: {name}\n"
            f"spec:\n{extra}  images:\n{images}  authorities:\n{authorities}")


FIRST = "apiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\nspec: {noMatchPolicy: deny}\n---\n"
KEY = "  - key: {data: " + PEM_JSON + "}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (FIRST + _cip("  - keyless:\n      identities:\n      - {issuer: https://i, subjectRegExp: '('}\n"),
         "policy.yaml: document 2 (team-a): spec.authorities[0].keyless.identities[0].subjectRegExp: "
         "invalid regexp '(': missing closing )"),
        (_cip(KEY, images="  - glob: 'ghcr.io/[a-z]+'\n"),
         "policy.yaml: document 1 (team-a): spec.images[0].glob: invalid glob 'ghcr.io/[a-z]+': character(s) "
         "'+[]' not allowed (use * and ** only; globs are not regexps)"),
        (_cip(KEY, extra="  mode: audit\n"),
         "policy.yaml: document 1 (team-a): spec.mode: invalid value 'audit' (expected one of: enforce, warn)"),
        (_cip(KEY + "    keyles: {}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].keyles: unknown field (expected one of: name, key, "
         "keyless, static, source, ctlog, attestations, rfc3161timestamp, signatureFormat)"),
        (_cip(KEY, extra="  imagez: []\n"),
         "policy.yaml: document 1 (team-a): spec.imagez: unknown field"),
        (_cip("  - key: {secretRef: {name: missing-secret}}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].key.secretRef: no key resolver given"),
        (_cip("  - key: {kms: 'awskms:///arn:aws:kms:us-east-1:1:key/x'}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].key.kms: KMS keys are not supported offline"),
        (_cip("  - key: {data: 'not a key'}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].key.data: key: not a PEM public key"),
        (_cip("  - key: {}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].key: expected exactly one of data, secretRef, "
         "kms, name (got none)"),
        (_cip("  - key: {data: " + PEM_JSON + ", hashAlgorithm: md5}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].key.hashAlgorithm: invalid value 'md5'"),
        (_cip("  - name: a\n    static: {action: pass}\n    keyless: {identities: [{issuer: i, subject: s}]}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0]: expected exactly one of key, keyless, static "
         "(got keyless and static)"),
        (_cip("  - static: {action: maybe}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].static.action: invalid value 'maybe'"),
        (_cip("  - keyless: {identities: [{issuer: i}]}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].keyless.identities[0]: expected one of subject, "
         "subjectRegExp"),
        (_cip("  - keyless: {identities: [{issuer: i, issuerRegExp: j, subject: s}]}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].keyless.identities[0]: expected only one of "
         "issuer, issuerRegExp"),
        (_cip(KEY + "    attestations:\n    - {name: a, predicateType: custom, policy: {type: cue, data: 'x: 1'}}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].attestations[0].policy.type: cue policies are not "
         "supported; use type: cel"),
        (_cip(KEY, extra="  policy: {type: rego, data: 'package x'}\n"),
         "policy.yaml: document 1 (team-a): spec.policy.type: rego policies are not supported; use type: cel"),
        (_cip(KEY + "    attestations:\n    - {name: a, predicateType: custom, policy: {type: cel, data: 'a =='}}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].attestations[0].policy.data: invalid CEL "
         "expression 'a ==': syntax error at line 1 column 3"),
        (_cip(KEY, extra="  match: {authorities: 3}\n"),
         "policy.yaml: document 1 (team-a): spec.match.authorities: expected a number from 1 to 1, got 3"),
        (_cip("  []\n").replace("authorities:\n  []", "authorities: []"),
         "policy.yaml: document 1 (team-a): spec.authorities: required field missing"),
        (_cip(KEY, extra="  dockerReference: loose\n"),
         "policy.yaml: document 1 (team-a): spec.dockerReference: invalid value 'loose' (expected one of: strict, "
         "report)"),
        (_cip(KEY).replace("v1beta1", "v2"),
         "policy.yaml: document 1 (team-a): apiVersion: invalid value 'policy.sigstore.dev/v2'"),
        ("kind: ImagePolicy\nmetadata: {name: x}\n",
         "policy.yaml: document 1 (x): kind: unknown kind 'ImagePolicy' (expected ClusterImagePolicy, TrustRoot, "
         "ClusterPolicy, Policy or AirgapPolicy)"),
        (_cip(KEY) + "---\n" + _cip(KEY),
         "policy.yaml: document 2 (team-a): metadata.name: duplicate policy name 'team-a'"),
        (FIRST + FIRST,
         "policy.yaml: document 2: kind: a second AirgapPolicy (the first is document 1)"),
        ("apiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\nspec: {noMatchPolicy: maybe}\n",
         "policy.yaml: document 1: spec.noMatchPolicy: invalid value 'maybe' (expected one of: allow, warn, deny)"),
        ("apiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\nspec: {approvedRegistries: ['*.io']}\n",
         "policy.yaml: document 1: spec.approvedRegistries[0]: invalid registry '*.io'"),
        ("apiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\nspec: {allow: ['a+b']}\n",
         "policy.yaml: document 1: spec.allow[0]: invalid glob 'a+b'"),
        ("kind: [unclosed\n", "policy.yaml: invalid YAML at line 2 column 1"),
        (_cip("  - key: {name: nobody}\n"),
         "policy.yaml: document 1 (team-a): spec.authorities[0].key.name: no key resolver given"),
    ],
)
def test_errors_name_file_document_and_field(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        PolicySet.from_yaml(text, "policy.yaml")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_duplicate_authority_names() -> None:
    text = _cip("  - {name: a, static: {action: pass}}\n  - {name: a, static: {action: fail}}\n")
    with pytest.raises(PolicyError, match=r"^p.yaml: document 1 \(team-a\): spec.authorities: duplicate authority "
                                          r"name 'a'$"):
        PolicySet.from_yaml(text, "p.yaml")


# --- key references resolved as files ----------------------------------------------------------------------------


def test_named_key_unknown(ops_key: Any) -> None:
    with pytest.raises(PolicyError) as err:
        PolicySet.from_yaml(_cip("  - key: {name: nobody}\n"), "p.yaml",
                            key_resolver=FileKeyResolver((), {"ops": ops_key}))
    assert str(err.value) == ("p.yaml: document 1 (team-a): spec.authorities[0].key.name: no key named 'nobody' "
                              "in the key manifest (known: ops)")


def test_secret_directory_rules(tmp_path: Path, ops_key: Any) -> None:
    pem = public_pem(ops_key)
    secret = tmp_path / "cip-secret"
    secret.mkdir()
    (secret / "..data").mkdir()  # what a mounted Kubernetes secret has next to its keys: skipped
    (secret / "cosign.pub").write_bytes(pem)
    policy = tmp_path / "policy.yaml"
    policy.write_text(_cip("  - key: {secretRef: {name: cip-secret}}\n"))
    ps = PolicySet.load(policy)
    assert ps.policies[0].authorities[0].keys == (load_public_key(pem),)
    (secret / "other.pub").write_bytes(pem)
    with pytest.raises(PolicyError, match="has 2 data files; exactly one public key is supported"):
        PolicySet.load(policy)
    policy.write_text(_cip("  - key: {secretRef: {name: absent}}\n"))
    with pytest.raises(PolicyError) as err:
        PolicySet.load(policy)
    assert str(err.value).startswith(f"{policy}: document 1 (team-a): spec.authorities[0].key.secretRef: "
                                     "secret 'absent' not found")
    policy.write_text(_cip("  - key: {secretRef: {name: ../etc}}\n"))
    with pytest.raises(PolicyError, match="invalid secret name '../etc'"):
        PolicySet.load(policy)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file .*nope.yaml"):
        PolicySet.load(tmp_path / "nope.yaml")


# --- the digest -------------------------------------------------------------------------------------------------


def test_digest_is_stable_and_covers_content_and_resolved_keys(tmp_path: Path, ops_key: Any) -> None:
    a = PolicySet.load(DATA / "policy-controller-examples.yaml")
    b = PolicySet.load(DATA / "policy-controller-examples.yaml")
    assert a.digest == b.digest and a.digest.startswith("sha256:") and len(a.digest) == 71
    text = (DATA / "policy-controller-examples.yaml").read_text()
    # comments and formatting do not change the digest; content does
    assert PolicySet.from_yaml("# hi\n" + text, "x", key_resolver=FileKeyResolver([DATA])).digest == a.digest
    assert PolicySet.from_yaml(text.replace("mode: warn", "mode: enforce"), "x",
                               key_resolver=FileKeyResolver([DATA])).digest != a.digest
    # the same secretRef resolving to a different key file changes the digest
    (tmp_path / "team-a.pub").write_bytes(public_pem(ops_key))
    assert PolicySet.from_yaml(text, "x", key_resolver=FileKeyResolver([tmp_path])).digest != a.digest


def test_kubectl_style_metadata_and_status_are_accepted() -> None:
    text = _cip(KEY).replace("  name: team-a\n", "  name: team-a\n  uid: 123\n  generation: 2\n  labels: {a: b}\n")
    text += "status:\n  conditions: []\n"
    assert PolicySet.from_yaml(text, "p.yaml").policies[0].name == "team-a"


def test_empty_file_is_an_empty_deny_by_default_policy() -> None:
    ps = PolicySet.from_yaml("", "p.yaml")
    assert ps.policies == [] and ps.no_match == "deny"
    assert ps.select(ref("nginx")) == []


def test_kubectl_list_output_loads_with_item_locations() -> None:
    items = "".join(
        "\n".join("  " + line if i else "- " + line for i, line in enumerate(_cip(KEY, name=n).splitlines())) + "\n"
        for n in ("one", "two"))
    text = "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: ''}\nitems:\n" + items
    assert [p.name for p in PolicySet.from_yaml(text, "p.yaml").policies] == ["one", "two"]
    with pytest.raises(PolicyError) as err:
        PolicySet.from_yaml(text.replace("name: two", "name: one"), "p.yaml")
    assert str(err.value) == ("p.yaml: document 1 item 1 (one): metadata.name: duplicate policy name 'one' "
                              "(also document 1 item 0 (one))")


def test_specs_built_in_code_accept_cel_source() -> None:
    from airgap.policy.glob import Glob
    from airgap.policy.model import Authority, ImagePolicy

    spec = AttestationSpec("sbom", "https://spdx.dev/Document", "has(predicate.spdxVersion)")  # type: ignore[arg-type]
    assert spec.evaluate({"spdxVersion": "SPDX-2.3"}) and not spec.evaluate({})
    policy = ImagePolicy("p", (Glob.compile("**"),), (Authority("a", static="pass"), Authority("b", static="pass")),
                         policy="size(passed) == 2")  # type: ignore[arg-type]
    assert policy.satisfied({"a": True, "b": True}) and not policy.satisfied({"a": True})
    with pytest.raises(PolicyError, match="invalid CEL expression"):
        AttestationSpec("x", "y", "(((")  # type: ignore[arg-type]
