"""The seed scenarios under examples/ run end to end on real registries: each example's run.sh (the steps its
README walks through) with airgap's own command line, then what the scenario is about checked from here (the
webhook's answers for UDS/Pepr, through the webhook service in-process).

The images an example expects are pushed first (a real build pipeline would have pushed them); keyless signing
(Apocryph) goes to the test-only Mini Sigstore's Fulcio and Rekor on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.fixtures_sigstore import mini_oidc, mini_sigstore_server, sigstore_server  # noqa: F401  (fixtures)
from support.images import Image, Pusher
from support.minisigstore import SigstoreFiles
from support.registries import Registry
from support.sigstoreserver import MiniOIDC, SigstoreServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AIRGAP = str(Path(sys.executable).with_name("airgap"))


def run_example(name: str, work: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``examples/NAME/run.sh`` with airgap from this environment; it must succeed (its own checks included)."""
    work.mkdir(parents=True, exist_ok=True)
    full = {"PATH": f"{Path(AIRGAP).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(work),
            "AIRGAP": AIRGAP, "WORK": str(work), "COSIGN_PASSWORD": "example", **env}
    proc = subprocess.run(["bash", str(EXAMPLES / name / "run.sh")], env=full, capture_output=True, text=True,  # noqa: S603, S607
                          timeout=600, check=False)
    assert proc.returncode == 0, f"{name}/run.sh\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_every_example_has_a_readme_a_script_and_is_in_the_readme() -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    for name in ("uds-pepr", "apocryph", "sylva", "ko", "kubectl-buildkit"):
        assert (EXAMPLES / name / "README.md").is_file() and (EXAMPLES / name / "run.sh").is_file()
        assert f"examples/{name}/" in readme


# ---- UDS/Pepr: the webhook with an allow-list and approved registries ---------------------------------------

def _review(uid: str, *images: str, namespace: str = "uds-apps") -> bytes:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE",
        "namespace": namespace, "name": uid,
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": uid}, "spec": {"containers": containers}},
    }}).encode()


def test_uds_pepr(registry_factory: Callable[..., Registry], make_image: Callable[..., Image],
                  tmp_path: Path) -> None:
    from airgap.admission.service import AdmissionService, WebhookConfig

    source, other, site = registry_factory(), registry_factory(), registry_factory()
    make_image(source, "uds/podinfo", "6.4.0", platforms=("linux/amd64", "linux/arm64"))
    make_image(source, "uds/pepr-controller", "0.28.0")
    make_image(source, "uds/pause", "3.9")
    make_image(source, "uds/rogue", "1.0")
    make_image(other, "other/tool", "1.0")
    proc = run_example("uds-pepr", tmp_path / "work", SOURCE=source.host, OTHER=other.host, SITE=site.host)
    assert f"registry not approved: {other.host}/other/tool is not under {source.host}" in proc.stdout + proc.stderr
    trust = tmp_path / "work" / "trust"
    service = AdmissionService(WebhookConfig(trust_dir=str(trust), mode="enforce"))
    try:
        def answer(uid: str, *images: str) -> dict[str, Any]:
            status, _, body = service.handle("POST", "/validate", _review(uid, *images))
            assert status == 200
            response: dict[str, Any] = json.loads(body)["response"]
            assert response["uid"] == uid
            return response

        # signed images and the allow-listed one, as the pod spec names them in the Zarf registry
        ok = answer("signed", f"{site.host}/uds/podinfo:6.4.0", f"{site.host}/uds/pepr-controller:0.28.0",
                    f"{site.host}/uds/pause:3.9")
        assert ok["allowed"] is True, ok
        zarf_tags = [t for t in Pusher(site.url).tags("uds/podinfo") if "-zarf-" in t]
        assert zarf_tags and answer("zarf", f"{site.host}/uds/podinfo:{zarf_tags[0]}")["allowed"] is True
        # in the registry, but no verified bundle brought it: denied, with the reason
        rogue = answer("rogue", f"{site.host}/uds/podinfo:6.4.0", f"{site.host}/uds/rogue:1.0")
        assert rogue["allowed"] is False and "uds/rogue" in rogue["status"]["message"]
    finally:
        service.close()


# ---- Apocryph: keyless per-image policy, signatures from --output-dir verified with --signature-dir --------------

def test_apocryph(registry: Registry, make_image: Callable[..., Image], sigstore_server: SigstoreServer,  # noqa: F811
                  mini_oidc: MiniOIDC, mini_sigstore_files: SigstoreFiles, tmp_path: Path) -> None:  # noqa: F811
    frontend = make_image(registry, "apocryph/frontend", "1.0")
    backend = make_image(registry, "apocryph/backend", "1.0", platforms=("linux/amd64", "linux/arm64"))
    work = tmp_path / "work"
    run_example("apocryph", work, SOURCE=registry.host, ISSUER=mini_oidc.issuer,
                FRONTEND_TOKEN=mini_oidc.token(email="frontend-ci@apocryph.test"),
                BACKEND_TOKEN=mini_oidc.token(email="backend-ci@apocryph.test"),
                FULCIO_URL=sigstore_server.url, REKOR_URL=sigstore_server.url,
                TRUSTED_ROOT=str(mini_sigstore_files.trusted_root))
    files = {p.name for p in (work / "signatures").iterdir()}
    for image in (frontend, backend):
        hexpart = image.digest.split(":")[1]
        assert {f"signature-sha256-{hexpart}", f"payload-sha256-{hexpart}", f"certificate-sha256-{hexpart}.pem",
                f"rekor-bundle-sha256-{hexpart}.json"} <= files
    assert not [t for t in Pusher(registry.url).tags("apocryph/frontend") if t.endswith(".sig")]


# ---- Sylva: a signature repository, Audit (warn) then Enforce ------------------------------------------------

def test_sylva(registry: Registry, make_image: Callable[..., Image], tmp_path: Path) -> None:
    signed = make_image(registry, "sylva/capi-controller", "1.6", platforms=("linux/amd64", "linux/arm64"))
    make_image(registry, "sylva/metallb", "0.14")
    work = tmp_path / "work"
    proc = run_example("sylva", work, SOURCE=registry.host)
    hexpart = signed.digest.split(":")[1]
    assert f"{registry.host}/sylva/signatures:sha256-{hexpart}.sig\n" in proc.stdout  # triangulate
    assert f"sha256-{hexpart}.sig" in Pusher(registry.url).tags("sylva/signatures")
    assert not [t for t in Pusher(registry.url).tags("sylva/capi-controller") if t.endswith(".sig")]
    for form in ("kyverno", "cip"):
        audit = (work / f"audit-{form}.txt").read_text()
        assert audit.startswith(f"OK   {registry.host}/sylva/capi-controller:1.6"), audit
        assert f"WARN {registry.host}/sylva/metallb:0.14" in audit


# ---- ko: the base image as a signed annotation, warn then fail ---------------------------------------------

def test_ko(registry: Registry, make_image: Callable[..., Image], tmp_path: Path) -> None:
    for tag in ("hello:1.0", "legacy:1.0", "legacy:1.1"):
        name, version = tag.split(":")
        make_image(registry, f"ko/{name}", version)
    work = tmp_path / "work"
    proc = run_example("ko", work, SOURCE=registry.host)
    warned = (work / "warn.txt").read_text()
    assert warned.startswith(f"OK   {registry.host}/ko/hello:1.0") and f"WARN {registry.host}/ko/legacy:1.0" in warned
    assert "annotations: missing or different org.opencontainers.image.base.name=cgr.dev/chainguard/static" in warned
    assert "signed: org.opencontainers.image.base.name=docker.io/library/debian:11" in warned
    assert "ko: " in proc.stdout


# ---- kubectl-buildkit: a multi-arch image, two signers, every platform ----------------------------------------

def test_kubectl_buildkit(registry_factory: Callable[..., Registry], make_image: Callable[..., Image],
                          tmp_path: Path) -> None:
    source, site = registry_factory(), registry_factory()
    app = make_image(source, "buildkit/app", "1.0", platforms=("linux/amd64", "linux/arm64"))
    make_image(source, "buildkit/half", "1.0", platforms=("linux/amd64", "linux/arm64"))
    work = tmp_path / "work"
    proc = run_example("kubectl-buildkit", work, SOURCE=source.host, SITE=site.host)
    digests = [app.digest, *app.children.values()]
    assert f"buildkit/app: 3 digests (index + platforms): {' '.join(digests)}" in proc.stdout
    site_text = (work / "site.txt").read_text()
    verdicts = [line for line in site_text.splitlines() if line[:4] in ("OK  ", "WARN", "FAIL")]
    assert len(verdicts) == 4 and all(v.startswith("OK   ") for v in verdicts), verdicts
    assert verdicts[0].startswith(f"OK   {site.host}/buildkit/app:1.0@{app.digest}")
    for digest, verdict in zip(digests, verdicts[1:], strict=True):
        assert verdict == f"OK   {source.host}/buildkit/app@{digest}"
    assert site_text.count("authority builder:") == 4 and site_text.count("authority release:") == 4
    assert f"at {site.host}/buildkit/app:sha256-" in site_text  # the signatures were read at the site
