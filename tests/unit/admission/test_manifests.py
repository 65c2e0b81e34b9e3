"""`airgap webhook certs` and `manifests`: certificates that chain and name the Service, and YAML that the
Kubernetes schemas accept (validated offline with kubernetes-validate's bundled schemas)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from airgap.admission.manifests import Settings, make_certs, render
from airgap.cli import cli
from airgap.errors import ConfigError

K8S_VERSION = "1.30.0"


@pytest.fixture
def trust(tmp_path: Path) -> Path:
    root = tmp_path / "trust"
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "release.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    (root / "policy.yaml").write_text("apiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\n")
    return root


def test_certs_chain_and_name_the_service(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["webhook", "certs", "--service", "gate", "--namespace", "sec", "-o",
                                   str(tmp_path / "c")])
    assert out.exit_code == 0, out.output
    ca = x509.load_pem_x509_certificate((tmp_path / "c" / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "c" / "tls.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans == ["gate", "gate.sec", "gate.sec.svc", "gate.sec.svc.cluster.local"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (tmp_path / "c" / "tls.key").stat().st_mode & 0o077 == 0
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    bad = CliRunner().invoke(cli, ["webhook", "certs", "--service", "Bad_Name", "--namespace", "x", "-o",
                                   str(tmp_path / "d")])
    assert bad.exit_code == 2 and "not a valid Kubernetes name" in bad.output


def docs_for(tmp_path: Path, trust: Path, **kwargs: Any) -> list[dict[str, Any]]:
    make_certs("airgap-webhook", "airgap-system", tmp_path / "certs")
    out = CliRunner().invoke(cli, ["webhook", "manifests", "--image", "127.0.0.1:31999/airgap:0.1", "--trust",
                                   str(trust), "--certs", str(tmp_path / "certs"), *kwargs.get("args", [])])
    assert out.exit_code == 0, out.output
    return list(yaml.safe_load_all(out.stdout))


def test_manifests_validate_against_kubernetes_schemas(tmp_path: Path, trust: Path) -> None:
    import kubernetes_validate  # a dev dependency: the schemas ship inside it (no network)

    docs = docs_for(tmp_path, trust)
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "ConfigMap", "Secret", "Deployment",
                                         "Service", "PodDisruptionBudget", "MutatingWebhookConfiguration",
                                         "ValidatingWebhookConfiguration"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    broken = dict(docs[4], spec={**docs[4]["spec"], "replicas": "two"})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_manifests_say_what_the_issue_asks(tmp_path: Path, trust: Path) -> None:
    docs = {d["kind"]: d for d in docs_for(tmp_path, trust, args=["--mode", "warn", "--timeout-seconds", "12"])}
    deploy = docs["Deployment"]["spec"]
    container = deploy["template"]["spec"]["containers"][0]
    assert deploy["replicas"] == 2
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["args"][container["args"].index("--mode") + 1] == "warn"
    assert container["args"][container["args"].index("--deadline") + 1] == "10"
    items = {i["path"] for i in deploy["template"]["spec"]["volumes"][0]["configMap"]["items"]}
    assert items == {"keys/release.pub", "policy.yaml"}
    assert set(docs["ConfigMap"]["data"]) == {"keys.release.pub", "policy.yaml"}
    hook = docs["ValidatingWebhookConfiguration"]["webhooks"][0]
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"] and hook["timeoutSeconds"] == 12
    assert hook["namespaceSelector"]["matchExpressions"][0] == {
        "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["airgap-system", "kube-system"]}
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == (tmp_path / "certs" / "ca.crt").read_bytes()
    resources = {r for rule in hook["rules"] for r in rule["resources"]}
    assert {"pods", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs"} <= resources
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert container["args"][container["args"].index("--tag-reuse-window") + 1] == "3"


def test_the_mutating_webhook_pins_before_validation(tmp_path: Path, trust: Path) -> None:
    docs = docs_for(tmp_path, trust, args=["--tag-reuse-window", "1.5"])
    kinds = [d["kind"] for d in docs]
    assert kinds.index("MutatingWebhookConfiguration") < kinds.index("ValidatingWebhookConfiguration")
    by_kind = {d["kind"]: d for d in docs}
    mutating = by_kind["MutatingWebhookConfiguration"]["webhooks"][0]
    validating = by_kind["ValidatingWebhookConfiguration"]["webhooks"][0]
    assert mutating["clientConfig"]["service"]["path"] == "/mutate"
    assert validating["clientConfig"]["service"]["path"] == "/validate"
    assert mutating["reinvocationPolicy"] == "IfNeeded" and "reinvocationPolicy" not in validating
    assert mutating["name"] != validating["name"]
    # Everything else is the same registration: rules, failure policy, selector, timeout, CA.
    strip = ("name", "clientConfig", "reinvocationPolicy")
    assert {k: v for k, v in mutating.items() if k not in strip} == {k: v for k, v in validating.items()
                                                                     if k not in strip}
    assert mutating["clientConfig"]["caBundle"] == validating["clientConfig"]["caBundle"]
    assert mutating["failurePolicy"] == "Fail" and mutating["sideEffects"] == "None"
    args = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--tag-reuse-window") + 1] == "1.5"


def test_namespace_selection(tmp_path: Path, trust: Path) -> None:
    def selector(*args: str) -> list[dict[str, Any]]:
        docs = {d["kind"]: d for d in docs_for(tmp_path, trust, args=list(args))}
        hooks = [docs[k]["webhooks"][0]["namespaceSelector"] for k in ("MutatingWebhookConfiguration",
                                                                       "ValidatingWebhookConfiguration")]
        assert hooks[0] == hooks[1]
        return list(hooks[0]["matchExpressions"])

    never = {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["airgap-system", "kube-system"]}
    excluded = {"key": "airgap.dev/exclude", "operator": "NotIn", "values": ["true"]}
    assert selector() == [never, excluded]
    assert selector("--opt-in") == [never, excluded, {"key": "airgap.dev/include", "operator": "In",
                                                      "values": ["true"]}]
    assert selector("--exclude-namespace", "monitoring", "--exclude-namespace", "kube-system")[0]["values"] == [
        "airgap-system", "kube-system", "monitoring"]
    assert selector("--namespace", "gate")[0]["values"] == ["gate", "kube-system"]
    bad = CliRunner().invoke(cli, ["webhook", "manifests", "--image", "i", "--trust", str(trust), "--certs",
                                   str(tmp_path / "certs"), "--exclude-namespace", "Not_A_Name"])
    assert bad.exit_code == 2 and "not a valid Kubernetes name" in bad.output


def test_bring_your_own_tls_secret_and_no_namespace(tmp_path: Path, trust: Path) -> None:
    docs = docs_for(tmp_path, trust, args=["--tls-secret", "my-tls", "--no-namespace-object"])
    kinds = [d["kind"] for d in docs]
    assert "Secret" not in kinds and "Namespace" not in kinds
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"] == {"name": "tls", "secret": {"secretName": "my-tls"}}
    # Only ca.crt is needed then (the caBundle).
    (tmp_path / "ca-only").mkdir()
    (tmp_path / "ca-only" / "ca.crt").write_bytes((tmp_path / "certs" / "ca.crt").read_bytes())
    render(Settings(image="x", trust_dir=trust, certs_dir=tmp_path / "ca-only", tls_secret="my-tls"))
    with pytest.raises(ConfigError, match="run `airgap webhook certs` first"):
        render(Settings(image="x", trust_dir=trust, certs_dir=tmp_path / "ca-only"))


def test_a_site_directory_travels_as_one_configmap_with_its_tree(tmp_path: Path, trust: Path) -> None:
    bundle = trust / "bundles" / "vendor-a-sha256-0123"
    (bundle / "keys").mkdir(parents=True)
    (bundle / "keys" / "vendor a.pub").write_text("key\n")
    (bundle / "policy.yaml").write_text("policy\n")
    (trust / "site.json").write_text("{}\n")
    docs = {d["kind"]: d for d in docs_for(tmp_path, trust)}
    items = docs["Deployment"]["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"]
    data = docs["ConfigMap"]["data"]
    paths = {i["path"]: i["key"] for i in items}
    assert paths["bundles/vendor-a-sha256-0123/keys/vendor a.pub"] == "bundles.vendor-a-sha256-0123.keys.vendor-a.pub"
    assert set(paths.values()) == set(data)
    for path, key in paths.items():
        assert data[key] == (trust / path).read_text()
    assert all(re.fullmatch(r"[-._a-zA-Z0-9]+", key) for key in data)
    # Two files that would share a key are refused rather than one silently dropped.
    (trust / "keys" / "vendor a.pub").write_text("key\n")
    (trust / "keys" / "vendor-a.pub").write_text("other\n")
    with pytest.raises(ConfigError, match="would share the ConfigMap key keys.vendor-a.pub"):
        render(Settings(image="x", trust_dir=trust, certs_dir=tmp_path / "certs"))
    (trust / "keys" / "vendor a.pub").unlink()
    (trust / "big.json").write_text("x" * (1024 * 1024))
    with pytest.raises(ConfigError, match="limit of a ConfigMap"):
        render(Settings(image="x", trust_dir=trust, certs_dir=tmp_path / "certs"))


def test_certs_for_an_address(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["webhook", "certs", "--service", "gate", "--namespace", "sec", "--ip",
                                   "127.0.0.1", "--ip", "::1", "-o", str(tmp_path / "c")])
    assert out.exit_code == 0, out.output
    cert = x509.load_pem_x509_certificate((tmp_path / "c" / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert "gate.sec.svc" in sans.get_values_for_type(x509.DNSName)
    bad = CliRunner().invoke(cli, ["webhook", "certs", "--service", "gate", "--namespace", "sec", "--ip", "nope",
                                   "-o", str(tmp_path / "d")])
    assert bad.exit_code == 2 and "--ip" in bad.output


def test_manifests_refuse_missing_inputs(tmp_path: Path, trust: Path) -> None:
    (tmp_path / "nocerts").mkdir()
    with pytest.raises(ConfigError, match="run `airgap webhook certs` first"):
        render(Settings(image="x", trust_dir=trust, certs_dir=tmp_path / "nocerts"))
    make_certs("airgap-webhook", "airgap-system", tmp_path / "certs")
    (trust / "policy.yaml").unlink()
    with pytest.raises(ConfigError, match="no policy.yaml"):
        render(Settings(image="x", trust_dir=trust, certs_dir=tmp_path / "certs"))


def test_manifests_default_to_the_airgap_image_load_recorded(tmp_path: Path, trust: Path) -> None:
    from airgap.bundle.selfcarry import TRUST_FILE, trust_record

    make_certs("airgap-webhook", "airgap-system", tmp_path / "certs")
    args = ["webhook", "manifests", "--trust", str(trust), "--certs", str(tmp_path / "certs")]

    def image(*extra: str) -> str:
        out = CliRunner().invoke(cli, [*args, *extra], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        deployment = next(d for d in yaml.safe_load_all(out.stdout) if d["kind"] == "Deployment")
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 2 and "no --image given, and" in out.stderr and "records no airgap image" in out.stderr
    pinned = "127.0.0.1:31999/tools/airgap@sha256:" + "a" * 64
    (trust / TRUST_FILE).write_bytes(trust_record("registry.example.com/tools/airgap:0.1.0", pinned, "kit", "1"))
    assert image() == pinned
    assert image("--image", "elsewhere/airgap:1") == "elsewhere/airgap:1"  # an explicit --image wins
    (trust / TRUST_FILE).write_text("{}")
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 2 and f"{TRUST_FILE}: not an airgap image record" in out.stderr


def test_a_site_needs_no_policy_of_its_own_and_its_lock_stays_home(tmp_path: Path, trust: Path) -> None:
    # Each bundle of a site brings its policy; the site-wide policy.yaml is optional. The writer lock is not trust.
    (trust / "policy.yaml").unlink()
    bundle = trust / "bundles" / "vendor-sha256-0123"
    bundle.mkdir(parents=True)
    (bundle / "policy.yaml").write_text("policy\n")
    (trust / "site.json").write_text("{}\n")
    (trust / ".lock").write_text("")
    docs = {d["kind"]: d for d in docs_for(tmp_path, trust)}
    assert "bundles.vendor-sha256-0123.policy.yaml" in docs["ConfigMap"]["data"]
    assert not [k for k in docs["ConfigMap"]["data"] if "lock" in k]
