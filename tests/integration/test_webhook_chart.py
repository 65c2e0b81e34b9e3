"""charts/airgap-webhook with the real Helm: `helm lint` passes, and `helm template` renders exactly the objects
`airgap webhook manifests` prints for the same settings (one source of truth), compared object by object; the
chart refuses what `manifests` refuses, with a one-line reason."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import require_tool

from airgap.admission.manifests import Settings, helm_values, make_certs
from airgap.cli import cli

pytestmark = [pytest.mark.peer("helm")]

CHART = Path(__file__).resolve().parents[2] / "charts" / "airgap-webhook"
IMAGE = "127.0.0.1:31999/airgap/webhook:0.1.0@sha256:" + "ab" * 32
ObjectKey = tuple[str, str, str | None, str]


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``helm(*args)``: the real Helm with its cache, config and data in a temp directory."""
    binary = require_tool("helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, env=env, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}: {proc.stderr}{proc.stdout}")
        return proc

    yield run


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory as `load --site` leaves it: nested bundle trust, odd file names, a policy at the top."""
    root = tmp_path_factory.mktemp("site")
    (root / "keys").mkdir()
    (root / "keys" / "release.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    (root / "policy.yaml").write_text("apiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\nspec:\n"
                                      "  noMatchPolicy: deny\n  allow: ['127.0.0.1:31999/tools/**']\n")
    bundle = root / "bundles" / "vendor-a-sha256-0123abcd"
    (bundle / "keys").mkdir(parents=True)
    (bundle / "keys" / "vendor a+b.pub").write_text("key with spaces in its name\n")
    (bundle / "policy.yaml").write_text("# trailing blank lines and a tab\tkept\n\n\n")
    (bundle / "map.json").write_text('[{"upstream":"x","local":"y"}]')  # no final newline
    (root / "site.json").write_text('{"bundles": []}\n')
    (root / "keys.d").mkdir()  # sorts between "keys/" and "keys.release" as a string, not as a path
    (root / "keys.d" / "extra.pub").write_text("extra\n")
    return root


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("certs")
    return {ns: make_certs("gate" if ns == "sec" else "airgap-webhook", ns, base / ns).ca.parent
            for ns in ("airgap-system", "sec")}


def parse(text: str) -> dict[ObjectKey, dict[str, Any]]:
    objects: dict[ObjectKey, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        key = (doc["apiVersion"], doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        assert key not in objects, f"rendered twice: {key}"
        objects[key] = doc
    return objects


def manifests(args: list[str]) -> str:
    out = CliRunner().invoke(cli, ["webhook", "manifests", *args])
    assert out.exit_code == 0, out.output
    return out.stdout


def values_file(args: list[str], path: Path) -> Path:
    out = CliRunner().invoke(cli, ["webhook", "values", *args, "-o", str(path)])
    assert out.exit_code == 0, out.output
    return path


SETTINGS = {
    "defaults": [],
    "warn, opt-in, aliases": ["--mode", "warn", "--replicas", "3", "--timeout-seconds", "12",
                              "--tag-reuse-window", "1.5", "--opt-in", "--exclude-namespace", "monitoring",
                              "--exclude-namespace", "kube-system", "--registry-alias",
                              "127.0.0.1:31999=zarf-docker-registry.zarf.svc:5000"],
    "audit, own secret, no namespace, 1 replica": ["--mode", "audit", "--replicas", "1", "--tls-secret",
                                                   "gate-serving", "--no-namespace-object",
                                        "--timeout-seconds", "2", "--tag-reuse-window", "0", "--name", "gate"],
}


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_helm_template_renders_what_manifests_renders(helm: Any, site_dir: Path, certs: dict[str, Path],
                                                      tmp_path: Path, case: str) -> None:
    namespace = "sec" if "--name" in SETTINGS[case] else "airgap-system"
    args = ["--image", IMAGE, "--trust", str(site_dir), "--certs", str(certs[namespace]), "--namespace", namespace,
            *SETTINGS[case]]
    ours = parse(manifests(args))
    values = values_file(args, tmp_path / "values.yaml")
    helm("lint", str(CHART), "--namespace", namespace, "-f", str(values), "--strict")
    theirs = parse(helm("template", "release-name-is-not-used", str(CHART), "--namespace", namespace,
                        "-f", str(values)).stdout)
    assert sorted(theirs) == sorted(ours)
    for key, obj in ours.items():
        assert theirs[key] == obj, f"{key} differs"
    kinds = [key[1] for key in ours]
    assert kinds[-2:] == ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
    # A disruption budget of minAvailable 1 only beside a second replica: with one, it would block node drains.
    assert ("PodDisruptionBudget" in kinds) == ("1 replica" not in case)


def test_the_chart_defaults_are_the_manifests_defaults(site_dir: Path, certs: dict[str, Path]) -> None:
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    ours = helm_values(Settings(image=IMAGE, trust_dir=site_dir, certs_dir=certs["airgap-system"]))
    inputs = {"image", "trust", "tls", "createNamespace"}  # what a user must give (and the Helm convention)
    assert {k: v for k, v in chart.items() if k not in inputs} == {k: v for k, v in ours.items() if k not in inputs}
    assert chart["image"]["pullPolicy"] == ours["image"]["pullPolicy"]
    assert set(chart["tls"]) == set(ours["tls"]) and set(chart["trust"]) == set(ours["trust"])
    assert chart["createNamespace"] is False  # `helm install --create-namespace` creates it


def test_hand_written_values(helm: Any, certs: dict[str, Path], tmp_path: Path) -> None:
    """The chart as people use it without airgap at hand: --set and --set-file."""
    ca = certs["airgap-system"]
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: airgap.dev/v1alpha1\nkind: AirgapPolicy\n")
    out = helm("template", "w", str(CHART), "--namespace", "airgap-system",
               "--set", "image.repository=127.0.0.1:31999/airgap/webhook,image.tag=0.1.0",
               "--set", "trust.files[0].path=policy.yaml", "--set-file", f"trust.files[0].content={policy}",
               "--set-file", f"tls.ca={ca / 'ca.crt'}", "--set-file", f"tls.crt={ca / 'tls.crt'}",
               "--set-file", f"tls.key={ca / 'tls.key'}", "--set", "namespaceSelector.optIn=true").stdout
    objects = parse(out)
    deploy = next(o for k, o in objects.items() if k[1] == "Deployment")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "127.0.0.1:31999/airgap/webhook:0.1.0"
    assert container["args"][container["args"].index("--tag-reuse-window") + 1] == "3"
    assert not any(k[1] == "Namespace" for k in objects)
    hook = next(o for k, o in objects.items() if k[1] == "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["namespaceSelector"]["matchExpressions"][-1] == {"key": "airgap.dev/include", "operator": "In",
                                                                 "values": ["true"]}


# (values, reason, caught by values.schema.json). `helm lint` renders in a lenient mode in which a template's
# `fail` is only logged (values may be partial in a chart repository): it fails on what the schema refuses.
@pytest.mark.parametrize(("sets", "reason", "schema"), [
    (["image.repository="], "image.repository is required", False),
    (["trust.files[0].path=keys/k.pub"], "trust.files has no policy.yaml", False),
    (["trust.files[1].path=a/b", "trust.files[2].path=a.b"], "would share the ConfigMap key a.b", False),
    (["trust.files[1].path=../escape"], "must be relative", False),
    (["mode=block"], "mode", True),
    (["timeoutSeconds=31"], "timeoutSeconds", True),
    (["tagReuseWindow=-1"], "tagReuseWindow", True),
    (["image.digest=sha256:abc"], "digest", True),
    (["name=Not_A_Name"], "name", True),
    (["namespaceSelector.excludeNamespaces[0]=Bad"], "is not a valid Kubernetes name", False),
    (["-tls.crt"], "give crt and key", False),  # "-KEY": that --set-file left out
    (["-tls.ca"], "tls.ca is required", False),
    (["modes=enforce"], "modes", True),  # a typo is refused, not ignored
])
def test_the_chart_refuses_what_manifests_refuses(helm: Any, certs: dict[str, Path], sets: list[str], reason: str,
                                                  schema: bool) -> None:
    ca = certs["airgap-system"]
    files = {"tls.ca": ca / "ca.crt", "tls.crt": ca / "tls.crt", "tls.key": ca / "tls.key"}
    base = ["--set", "image.repository=r/airgap", "--set", "trust.files[0].path=policy.yaml",
            "--set", "trust.files[0].content=kind: AirgapPolicy"]
    base += [arg for key, path in files.items() for arg in ("--set-file", f"{key}={path}")]
    assert helm("template", "w", str(CHART), "--namespace", "airgap-system", *base).returncode == 0
    assert helm("lint", str(CHART), "--strict", "--namespace", "airgap-system", *base).returncode == 0
    left_out = {s[1:] for s in sets if s.startswith("-")}
    base = base[:6] + [arg for key, path in files.items() if key not in left_out
                       for arg in ("--set-file", f"{key}={path}")]
    extra = [arg for s in sets if not s.startswith("-") for arg in ("--set", s)]
    proc = helm("template", "w", str(CHART), "--namespace", "airgap-system", *base, *extra, check=False)
    assert proc.returncode != 0 and reason in proc.stderr, proc.stderr
    if not schema:  # one line says why (Helm adds a hint about --debug)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and reason in errors[0] and errors[0].count(": ") <= 3, proc.stderr
    lint = helm("lint", str(CHART), "--strict", "--namespace", "airgap-system", *base, *extra, check=False)
    assert (lint.returncode != 0) is schema, lint.stdout + lint.stderr
