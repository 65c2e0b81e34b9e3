"""airgap's admission webhooks in a real API server (etcd + kube-apiserver, tests/support/kubecluster.py), shown
through kubectl, twice: with the webhook run as a process of this checkout, and with the webhook run FROM
AIRGAP'S IMAGE (scripts/build-image.sh, pushed to the connected registry, signed, packed into a bundle, loaded
into the disconnected registry with `airgap load`, run with podman --read-only as user 65532): the image that
ships is the image that was tested.

The site: a "connected" registry whose images are signed with a release key (airgap key generate / sign) and
packed into a signed bundle, loaded into the "disconnected" registry with `load --site` (the site directory is
the trust: it travels as one ConfigMap, its tree restored by the volume's items), plus the operator's site-wide
policy approving three upstream repositories. The objects are exactly those `airgap webhook manifests` (and
the Helm chart) render, applied with kubectl, with one deviation: clientConfig.url to the webhook on loopback
(no kube-proxy runs). The webhook runs what the stored Deployment says (its args, env, ConfigMap and Secret).

Needs etcd, kube-apiserver and kubectl (scripts/install-peers.sh), helm, docker-registry, and for the image run
rootful podman, buildah and mmdebstrap (build-image.sh installs them): skipped when missing, failed under CI=true.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import CI, require_tool
from support.images import Pusher, push_image
from support.kubecluster import BINARIES, KubeCluster
from support.registries import Registry, start_registry
from support.webhookcluster import (
    ContainerRunner,
    ProcessRunner,
    WebhookInCluster,
    airgap_cli,
    audit_args,
    audit_events,
    deployment,
    find,
    free_port,
    helm_rendered,
    pod,
    rendered,
)

from airgap.site.state import LOCK_FILE

pytestmark = [pytest.mark.peer("kube-apiserver"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"
NAME, NAMESPACE = "airgap-webhook", "airgap-system"
VALIDATING = f"{NAME}.{NAMESPACE}.airgap.dev"
MUTATING = f"pin.{VALIDATING}"
PASSWORD = {"COSIGN_PASSWORD": "e2e-release-password"}
IMAGE_WORKDIR = Path(os.environ.get("AIRGAP_E2E_IMAGE_WORKDIR", Path.home() / ".cache" / "airgap" / "image-e2e"))
DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")


@dataclass
class Site:
    """The two registries, the site directory (the webhook's trust), the certificates and the images by role."""

    connected: Registry
    local: Registry
    work: Path
    site: Path
    certs: Path
    key: Path
    images: dict[str, str] = field(default_factory=dict)  # role -> local ref (plain tag)
    airgap_image: str = ""  # the webhook's image as the Deployment names it (set by the image run)

    def digest(self, ref: str) -> str:
        from airgap.oci.registry import RegistryClient

        host, _, rest = ref.partition("/")
        repo, _, tag = rest.rpartition(":")
        desc = RegistryClient().head_manifest(host, repo, tag)
        assert desc is not None, ref
        return desc.digest


def bundle(site: Site, name: str, images: list[str], globs: list[str], extra: str = "") -> Path:
    """Pack ``images`` (from the connected registry) into a bundle signed with the release key and load it into
    the disconnected registry, recorded in the site directory."""
    spec = site.work / f"{name}.yaml"
    spec.write_text(f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: {name}, version: 1.0.0}}
images: {json.dumps(images)}
keys: [{{name: release, path: release.pub}}]
policies:
  - name: {name}
    images: {json.dumps([{"glob": g} for g in globs])}
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
noMatchPolicy: deny
{extra}""")
    out = site.work / f"{name}.tar"
    airgap_cli("pack", str(spec), "-o", str(out), "--key", str(site.key), env=PASSWORD)
    airgap_cli("load", str(out), "--registry", site.local.host, "--key", f"{site.key.with_suffix('.pub')}",
               "--site", str(site.site))
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_tool("docker-registry")
    work = tmp_path_factory.mktemp("e2e-site")
    connected, local = start_registry(work / "connected"), start_registry(work / "disconnected")
    try:
        s = Site(connected, local, work, work / "site", work / "certs", work / "release.key")
        airgap_cli("key", "generate", "--output-prefix", str(work / "release"), env=PASSWORD)
        pusher = Pusher(connected.url)
        signed = ("demo/app", "demo/api", "demo/window", "demo/tampered", "rogue/app")
        for repo in (*signed, "tools/debug"):
            push_image(pusher, repo, "1.0", seed=repo)
        airgap_cli("sign", "--key", str(s.key), *(f"{connected.host}/{repo}:1.0" for repo in signed), env=PASSWORD)
        c = connected.host
        bundle(s, "apps", [f"{c}/{repo}:1.0" for repo in (*signed, "tools/debug")],
               [f"{c}/demo/**", f"{c}/rogue/**"], extra=f'allow: ["{c}/tools/**"]\n')
        # The operator's site-wide policy: only these upstream repositories may run (rogue/ came in a bundle).
        (s.site / "policy.yaml").write_text(f"""\
apiVersion: airgap.dev/v1alpha1
kind: AirgapPolicy
metadata: {{name: site}}
spec:
  approvedRegistries: ["{c}/demo", "{c}/tools", "{c}/airgap"]
""")
        l_ = local.host
        s.images = {"signed": f"{l_}/demo/app:1.0", "api": f"{l_}/demo/api:1.0", "window": f"{l_}/demo/window:1.0",
                    "tampered": f"{l_}/demo/tampered:1.0", "unapproved": f"{l_}/rogue/app:1.0",
                    "allowed": f"{l_}/tools/debug:1.0", "unsigned": f"{l_}/demo/unsigned:1.0"}
        # Pushed straight into the disconnected registry: no bundle brought it, nobody signed it.
        push_image(Pusher(local.url), "demo/unsigned", "1.0", seed="unsigned")
        tamper(local, "demo/tampered", s.digest(s.images["tampered"]))
        # Certificates from airgap for the Service, and for 127.0.0.1 (the API server dials clientConfig.url).
        airgap_cli("webhook", "certs", "--service", NAME, "--namespace", NAMESPACE, "--ip", "127.0.0.1",
                   "-o", str(s.certs))
        yield s
    finally:
        connected.stop()
        local.stop()


def tamper(reg: Registry, repo: str, digest: str) -> None:
    """Change one byte of an image's manifest in the registry's storage (same size, same digest in its name):
    what someone with write access to the disk would do after the bundle was loaded."""
    hexpart = digest.split(":", 1)[1]
    data = reg.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
    raw = bytearray(data.read_bytes())
    at = raw.index(b'"size":') + len(b'"size":')
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")
    data.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeCluster, Path]]:
    for tool in BINARIES:
        require_tool(tool)
    work = tmp_path_factory.mktemp("kube")
    with KubeCluster(work / "cluster", apiserver_args=audit_args(work / "audit")) as kube:
        kube.kubectl("create", "namespace", "apps")
        kube.kubectl("create", "namespace", "excluded")
        kube.kubectl("label", "namespace", "excluded", "airgap.dev/exclude=true")
        kube.kubectl("create", "namespace", "optin")
        kube.kubectl("label", "namespace", "optin", "airgap.dev/include=true")
        yield kube, work / "audit"


# ---- the webhook image, carried across the gap like any other image -------------------------------------------

@dataclass
class ImageRun:
    ref: str  # as the Deployment names it: the disconnected registry's digest reference
    podman: Any
    figures: dict[str, Any]


def webhook_image(site: Site) -> ImageRun:
    """build-image.sh --push to the connected registry, sign, pack, load into the disconnected registry (the
    site), podman pull from there. Fails under CI=true when podman cannot run here (never skips silently)."""
    from support.podman import Podman, unavailable

    reason = unavailable()
    if reason is not None:
        message = (f"the webhook image cannot run here: {reason}; the end-to-end run from airgap's image needs "
                   f"rootful podman (scripts/build-image.sh installs podman, buildah, crun, mmdebstrap)")
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    upstream = f"{site.connected.host}/airgap/webhook:{VERSION}"
    began = time.monotonic()
    proc = subprocess.run([str(ROOT / "scripts" / "build-image.sh"), "--workdir", str(IMAGE_WORKDIR),
                           "--push", upstream], capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-image.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    figures: dict[str, Any] = {"build_seconds": round(time.monotonic() - began, 1)}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in ("compressed", "uncompressed", "layers", "pushed"):
            figures[key] = value.strip()
    pushed = DIGEST.search(figures["pushed"])
    assert pushed, proc.stdout
    airgap_cli("sign", "--key", str(site.key), upstream, env=PASSWORD)
    bundle(site, "airgap", [upstream], [f"{site.connected.host}/airgap/**"])
    loaded = site.digest(f"{site.local.host}/airgap/webhook:{VERSION}")
    assert loaded == pushed.group(1), "the disconnected registry does not hold the image build-image.sh pushed"
    ref = f"{site.local.host}/airgap/webhook@{loaded}"
    podman = Podman.create(IMAGE_WORKDIR / "containers")
    podman.run("pull", "-q", "--tls-verify=false", ref, timeout=600)
    figures["digest"] = loaded
    return ImageRun(ref, podman, figures)


# ---- the webhook, deployed --------------------------------------------------------------------------------------

@dataclass
class Deployed:
    hook: WebhookInCluster
    site: Site
    kube: KubeCluster
    audit: Path
    variant: str
    image: str
    names: Iterator[int] = field(default_factory=itertools.count)
    state: str = ""  # what is deployed: "default" is `webhook manifests` with no more flags

    def args(self, *extra: str) -> list[str]:
        return ["--image", self.image, "--trust", str(self.site.site), "--certs", str(self.site.certs),
                "--name", NAME, "--namespace", NAMESPACE, *extra]

    def deploy(self, *extra: str, objects: list[dict[str, Any]] | None = None, state: str = "",
               probe: str = "apps") -> None:
        """Render (or take ``objects``), apply, run the webhook the stored Deployment describes, and wait until
        the API server calls it for a pod in the namespace ``probe``."""
        self.state = ""
        self.hook.deploy(objects if objects is not None else rendered(*self.args(*extra)), probe_namespace=probe,
                         probe_image=self.site.images["signed"])
        self.state = state or ("default" if not extra and objects is None else " ".join(extra) or "objects")

    def name(self, what: str) -> str:
        return f"{what}-{self.variant}-{next(self.names)}"

    def create(self, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.kube.kubectl("create", "-f", "-", input=json.dumps(obj), check=False)

    def create_pod(self, namespace: str, images: list[str],
                   **kwargs: Any) -> tuple[str, subprocess.CompletedProcess[str]]:
        name = self.name("pod")
        return name, self.create(pod(name, namespace, images, **kwargs))

    def stored_images(self, kind: str, name: str, namespace: str) -> list[str]:
        obj = self.kube.get_json(kind, name, f"--namespace={namespace}")
        spec = obj["spec"] if kind == "pod" else obj["spec"]["template"]["spec"]
        return [c["image"] for c in spec.get("initContainers", []) + spec["containers"]]

    def pinned(self, ref: str) -> str:
        return f"{ref}@{self.site.digest(ref)}"


@pytest.fixture(scope="module", params=["process", "image"])
def deployed(request: pytest.FixtureRequest, site: Site, cluster: tuple[KubeCluster, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    kube, audit = cluster
    work = tmp_path_factory.mktemp(f"webhook-{request.param}")
    port = free_port()
    if request.param == "image":
        run = webhook_image(site)
        runner: Any = ContainerRunner(port, run.podman, work / "logs")
        image = run.ref
        print(f"webhook image: {json.dumps(run.figures)}")
    else:
        runner = ProcessRunner(port, work / "logs")
        image = f"{site.local.host}/airgap/webhook:{VERSION}"  # named in the Deployment; this run does not pull it
    hook = WebhookInCluster(kube, runner, work, NAME, NAMESPACE)
    d = Deployed(hook, site, kube, audit, request.param, image)
    try:
        began = time.monotonic()
        d.deploy()
        print(f"[{request.param}] deployed and called by the API server in {time.monotonic() - began:.1f} s "
              f"(webhook ready {runner.ready_after:.2f} s after start)")
        yield d
    finally:
        runner.stop()


@pytest.fixture
def enforcing(deployed: Deployed) -> Deployed:
    """The webhook as `webhook manifests` renders it by default (enforce), running."""
    if deployed.state != "default":
        deployed.deploy()
    return deployed


# ---- the objects as rendered --------------------------------------------------------------------------------

def test_the_cluster_holds_what_airgap_rendered(enforcing: Deployed) -> None:
    stored = {kind: enforcing.kube.get_json(kind.lower(), NAME) for kind in ("MutatingWebhookConfiguration",
                                                                             "ValidatingWebhookConfiguration")}
    for kind, obj in stored.items():
        want = find(enforcing.hook.applied, kind)["webhooks"][0]
        got = obj["webhooks"][0]
        # Every field airgap rendered is stored as rendered (the API server adds its defaults beside them).
        for key, value in want.items():
            assert got[key] == value, (kind, key)
    assert stored["MutatingWebhookConfiguration"]["webhooks"][0]["reinvocationPolicy"] == "IfNeeded"
    assert enforcing.hook.deployment is not None
    assert enforcing.hook.deployment.image == enforcing.image
    # The trust the webhook serves is the site directory, tree and all, back from the ConfigMap's items;
    # only the site's writer lock stays home (nothing the webhook reads).
    trust = enforcing.hook.deployment.mounts["/etc/airgap/trust"]
    site_files = {p.relative_to(enforcing.site.site).as_posix() for p in enforcing.site.site.rglob("*")
                  if p.is_file()} - {LOCK_FILE}
    served = {p.relative_to(trust).as_posix() for p in trust.rglob("*") if p.is_file()}
    assert served == site_files
    for rel in site_files:
        assert (trust / rel).read_bytes() == (enforcing.site.site / rel).read_bytes()


# ---- admitted, pinned ---------------------------------------------------------------------------------------

def test_signed_pod_and_deployment_are_admitted_and_pinned(enforcing: Deployed) -> None:
    images = enforcing.site.images
    name, result = enforcing.create_pod("apps", [images["signed"], images["api"]], init=[images["signed"]])
    assert result.returncode == 0, result.stderr
    assert enforcing.stored_images("pod", name, "apps") == [enforcing.pinned(images["signed"]),
                                                            enforcing.pinned(images["signed"]),
                                                            enforcing.pinned(images["api"])]
    deploy_name = enforcing.name("deploy")
    result = enforcing.create(deployment(deploy_name, "apps", [images["signed"]]))
    assert result.returncode == 0, result.stderr
    assert enforcing.stored_images("deployment", deploy_name, "apps") == [enforcing.pinned(images["signed"])]
    # An image already pinned is left exactly as written.
    pinned = enforcing.pinned(images["api"])
    name, result = enforcing.create_pod("apps", [pinned])
    assert result.returncode == 0, result.stderr
    assert enforcing.stored_images("pod", name, "apps") == [pinned]


def test_an_allow_listed_image_is_admitted(enforcing: Deployed) -> None:
    name, result = enforcing.create_pod("apps", [enforcing.site.images["allowed"]])
    assert result.returncode == 0, result.stderr
    assert enforcing.stored_images("pod", name, "apps") == [enforcing.pinned(enforcing.site.images["allowed"])]


# ---- denied, with airgap's reason -------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "reason"), [
    ("unsigned", "was not loaded by any bundle of the site"),
    ("unapproved", "site policy: registry not approved"),
    ("tampered", "does not match the expected sha256:"),
])
def test_denied_with_airgaps_reason(enforcing: Deployed, role: str, reason: str) -> None:
    image = enforcing.site.images[role]
    name, result = enforcing.create_pod("apps", [enforcing.site.images["signed"], image])
    assert result.returncode != 0, f"{role} admitted"
    said = result.stderr
    assert f'admission webhook "{VALIDATING}" denied the request' in said, said
    assert f"airgap denied Pod apps/{name}: 1 of 2 image(s) failed verification: {image}:" in said, said
    assert reason in said.split(f"{image}:", 1)[1], said
    assert "NotFound" in enforcing.kube.kubectl("get", "pod", name, "--namespace=apps", check=False).stderr
    # A Deployment naming it is refused the same way.
    result = enforcing.create(deployment(enforcing.name("deploy"), "apps", [image]))
    assert result.returncode != 0 and reason in result.stderr, result.stderr


# ---- namespaces the webhook never blocks ------------------------------------------------------------------------

def test_excluded_namespace_and_kube_system_are_untouched(enforcing: Deployed) -> None:
    unsigned = enforcing.site.images["unsigned"]
    for namespace in ("excluded", "kube-system", NAMESPACE):
        name, result = enforcing.create_pod(namespace, [unsigned, enforcing.site.images["signed"]])
        assert result.returncode == 0, (namespace, result.stderr)
        assert enforcing.stored_images("pod", name, namespace) == [unsigned, enforcing.site.images["signed"]]


def test_stopped_the_webhook_fails_closed_and_restarted_it_works(enforcing: Deployed) -> None:
    signed = enforcing.site.images["signed"]
    enforcing.hook.stop()
    try:
        name, result = enforcing.create_pod("apps", [signed])
        assert result.returncode != 0, "a pod was created while the webhook was down (failurePolicy Fail)"
        assert f'failed calling webhook "{MUTATING}"' in result.stderr, result.stderr
        # The control plane and the webhook's own namespace do not wait for it: it can always be repaired.
        for namespace in ("kube-system", NAMESPACE):
            assert enforcing.create_pod(namespace, [enforcing.site.images["unsigned"]])[1].returncode == 0
    finally:
        enforcing.hook.start(probe_namespace="apps", probe_image=signed)
    name, result = enforcing.create_pod("apps", [signed])
    assert result.returncode == 0, result.stderr
    assert enforcing.stored_images("pod", name, "apps") == [enforcing.pinned(signed)]


# ---- the tag window: a re-tag pins the previous, verified digest; never unverified content --------------------------

def test_retag_inside_and_after_the_window(enforcing: Deployed) -> None:
    # A window wider than the default (3 s), so that two kubectl calls fit in it on a loaded machine.
    enforcing.deploy("--tag-reuse-window", "6")
    ref = enforcing.site.images["window"]
    assert enforcing.hook.deployment is not None
    args = enforcing.hook.deployment.args
    window = float(args[args.index("--tag-reuse-window") + 1])
    assert window == 6
    good = enforcing.site.digest(ref)
    began = time.monotonic()  # the window opens after this (when the webhook looks the tag up)...
    name, result = enforcing.create_pod("apps", [ref])
    looked_up = time.monotonic()  # ...and before this
    assert result.returncode == 0, result.stderr
    assert enforcing.stored_images("pod", name, "apps") == [f"{ref}@{good}"]

    # Inside the window the tag is moved to content no bundle brought: the pod still gets the verified digest.
    push_image(Pusher(enforcing.site.local.url), "demo/window", "1.0", seed=f"evil-{enforcing.variant}")
    assert enforcing.site.digest(ref) != good
    name, result = enforcing.create_pod("apps", [ref])
    inside = time.monotonic() - began
    assert inside < window, f"the machine took {inside:.1f} s: too slow to test inside a {window:g} s window"
    assert result.returncode == 0, result.stderr
    assert enforcing.stored_images("pod", name, "apps") == [f"{ref}@{good}"]

    # After the window the new content is resolved, verified and refused.
    time.sleep(max(0.0, looked_up + window - time.monotonic()) + 0.2)
    name, result = enforcing.create_pod("apps", [ref])
    assert result.returncode != 0 and "was not loaded by any bundle of the site" in result.stderr, result.stderr
    # Put the tag back for the next run (the bundle's digest is still in the registry).
    airgap_cli("copy", f"{ref.rsplit(':', 1)[0]}@{good}", ref)


# ---- warn and audit ---------------------------------------------------------------------------------------------

def test_warn_mode_admits_with_warnings_kubectl_prints(deployed: Deployed) -> None:
    deployed.deploy("--mode", "warn")
    images = deployed.site.images
    name, result = deployed.create_pod("apps", [images["signed"], images["unsigned"]])
    assert result.returncode == 0, result.stderr
    assert f"Warning: airgap (warn mode) would deny {images['unsigned']}:" in result.stderr, result.stderr
    # warn mode pins what verified, and leaves the rest as written.
    assert deployed.stored_images("pod", name, "apps") == [deployed.pinned(images["signed"]), images["unsigned"]]


def test_audit_mode_admits_and_annotates(deployed: Deployed) -> None:
    deployed.deploy("--mode", "audit")
    images = deployed.site.images
    name, result = deployed.create_pod("apps", [images["signed"], images["tampered"]])
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    # No patch in audit mode: the pod is stored as written.
    assert deployed.stored_images("pod", name, "apps") == [images["signed"], images["tampered"]]
    events = [e for e in audit_events(deployed.audit) if e.get("verb") == "create"
              and e.get("objectRef", {}).get("name") == name and e.get("stage") == "ResponseComplete"]
    assert events, "no audit event for the pod"
    annotations = events[-1].get("annotations", {})
    assert annotations.get(f"{VALIDATING}/decision") == "deny", annotations
    assert images["tampered"] in annotations.get(f"{VALIDATING}/denied-images", ""), annotations


# ---- the Helm chart admits and denies the same way --------------------------------------------------------------

def test_helm_template_kubectl_apply(deployed: Deployed, tmp_path: Path) -> None:
    helm = require_tool("helm")
    values = tmp_path / "values.yaml"
    airgap_cli("webhook", "values", *deployed.args(), "-o", str(values))
    chart = ROOT / "charts" / "airgap-webhook"
    objects = helm_rendered(helm, chart, NAMESPACE, values, home=tmp_path / "helm")
    def canonical(objs: list[dict[str, Any]]) -> list[str]:
        return sorted(json.dumps(o, sort_keys=True) for o in objs)

    assert canonical(objects) == canonical(rendered(*deployed.args()))  # the same objects, in Helm's order
    deployed.deploy(objects=objects)
    images = deployed.site.images
    name, result = deployed.create_pod("apps", [images["signed"]])
    assert result.returncode == 0, result.stderr
    assert deployed.stored_images("pod", name, "apps") == [deployed.pinned(images["signed"])]
    _, result = deployed.create_pod("apps", [images["unsigned"]])
    assert result.returncode != 0 and "was not loaded by any bundle of the site" in result.stderr

    # Opt-in: only namespaces labelled airgap.dev/include=true are reviewed.
    deployed.deploy(objects=helm_rendered(helm, chart, NAMESPACE, values, "namespaceSelector.optIn=true",
                                          home=tmp_path / "helm"), probe="optin")
    name, result = deployed.create_pod("apps", [images["unsigned"]])
    assert result.returncode == 0, result.stderr
    _, result = deployed.create_pod("optin", [images["unsigned"]])
    assert result.returncode != 0 and "was not loaded by any bundle of the site" in result.stderr, result.stderr
    name, result = deployed.create_pod("optin", [images["signed"]])
    assert result.returncode == 0, result.stderr
    assert deployed.stored_images("pod", name, "optin") == [deployed.pinned(images["signed"])]
