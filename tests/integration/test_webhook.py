"""The admission webhook end to end: real HTTPS AdmissionReviews to a served webhook backed by a real registry.

One registry per module holds signed, unsigned, wrongly signed, allow-listed and unapproved-registry images;
one webhook per mode (enforce, warn, audit) serves them over TLS with keep-alive.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from support.images import Pusher, push_image
from support.registries import Registry, TLSMaterial, free_port, make_tls, start_registry

from airgap.admission.server import JsonLog, Running, WebhookConfig, start
from airgap.cli import cli
from airgap.keys.private import KeySigner
from airgap.keys.public import public_pem
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

RELEASE = KeySigner(ec.generate_private_key(ec.SECP256R1()))
OTHER = KeySigner(ec.generate_private_key(ec.SECP256R1()))
KINDS = ("Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob")


def policy(host: str) -> str:
    return f"""\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: team}}
spec:
  images: [{{glob: "{host}/**"}}]
  authorities: [{{name: release, key: {{name: release}}, ctlog: {{disabled: true}}}}]
---
apiVersion: airgap.dev/v1alpha1
kind: AirgapPolicy
metadata: {{name: settings}}
spec:
  noMatchPolicy: deny
  allow: ["{host}/tools/**"]
  approvedRegistries: ["{host}/team", "{host}/tools"]
"""


def write_trust(root: Path, host: str) -> Path:
    (root / "keys").mkdir(parents=True, exist_ok=True)
    (root / "keys" / "release.pub").write_bytes(public_pem(RELEASE.public_key))
    (root / "policy.yaml").write_text(policy(host))
    return root


@dataclass
class Site:
    reg: Registry
    tls: TLSMaterial
    trust: Path
    signed: str
    unsigned: str
    wrong: str
    allowed: str
    unapproved: str


def make_site(tmp: Path) -> Site:
    reg = start_registry(tmp / "registry")
    pusher = Pusher(reg.url)
    client = RegistryClient()
    refs = {}
    for name, repo, signer in (("signed", "team/app", RELEASE), ("unsigned", "team/unsigned", None),
                               ("wrong", "team/wrong", OTHER), ("allowed", "tools/debug", None),
                               ("unapproved", "rogue/app", RELEASE)):
        push_image(pusher, repo, "1.0")
        refs[name] = f"{reg.host}/{repo}:1.0"
        if signer is not None:
            sign_image(refs[name], signer, client=client)
    return Site(reg, make_tls(tmp / "tls"), write_trust(tmp / "trust", reg.host), **refs)


def serve(site: Site, mode: str = "enforce", **kwargs: Any) -> Running:
    config = WebhookConfig(trust_dir=str(kwargs.pop("trust", site.trust)), mode=mode, **kwargs)  # type: ignore[arg-type]
    return start(config, str(site.tls.cert_pem), str(site.tls.key_pem), log=kwargs.pop("log", None) or
                 JsonLog(open(os.devnull, "w")))  # noqa: SIM115


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = make_site(tmp_path_factory.mktemp("webhook-site"))
    yield s
    s.reg.stop()


@pytest.fixture(scope="module")
def servers(site: Site) -> Iterator[dict[str, Running]]:
    running = {mode: serve(site, mode) for mode in ("enforce", "warn", "audit")}
    yield running
    for r in running.values():
        r.stop()


class Client:
    """One keep-alive HTTPS connection that trusts the test CA."""

    def __init__(self, running: Running, ca: Path) -> None:
        self.conn = http.client.HTTPSConnection("127.0.0.1", running.port, timeout=30,
                                                context=ssl.create_default_context(cafile=str(ca)))

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def review(self, doc: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
        status, data = self.call("POST", "/validate", doc if isinstance(doc, bytes) else json.dumps(doc).encode())
        return status, json.loads(data)["response"]


def pod_spec(images: list[str], init: list[str] = (), ephemeral: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": im} for i, im in enumerate(init)]
    if ephemeral:
        spec["ephemeralContainers"] = [{"name": f"e{i}", "image": im} for i, im in enumerate(ephemeral)]
    return spec


def admission(kind: str, spec: dict[str, Any], *, operation: str = "CREATE", uid: str | None = None
              ) -> dict[str, Any]:
    group, version = {"Pod": ("", "v1"), "Job": ("batch", "v1"), "CronJob": ("batch", "v1")}.get(kind, ("apps", "v1"))
    template = {"metadata": {"labels": {"app": "x"}}, "spec": spec}
    obj: dict[str, Any] = {"Pod": {"spec": spec}, "CronJob": {"spec": {"schedule": "* * * * *", "jobTemplate": {
        "spec": {"template": template}}}}}.get(kind, {"spec": {"template": template}})
    obj.update(apiVersion=f"{group}/{version}".lstrip("/"), kind=kind, metadata={"name": "w", "namespace": "apps"})
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid or str(uuid.uuid4()), "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
        "operation": operation, "namespace": "apps", "name": "w", "userInfo": {"username": "dev"},
        "object": None if operation in ("DELETE", "CONNECT") else obj}}


@pytest.fixture
def enforce(servers: dict[str, Running], site: Site) -> Client:
    return Client(servers["enforce"], site.tls.ca_pem)


# ---- enforce ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_each_workload_kind_is_checked(enforce: Client, site: Site, kind: str) -> None:
    ok = admission(kind, pod_spec([site.signed], init=[site.allowed]), uid=f"uid-{kind}")
    status, resp = enforce.review(ok)
    assert status == 200 and resp == {"uid": f"uid-{kind}", "allowed": True}
    status, resp = enforce.review(admission(kind, pod_spec([site.signed], init=[site.unsigned])))
    assert status == 200 and resp["allowed"] is False and resp["status"]["code"] == 403
    assert site.unsigned in resp["status"]["message"] and site.signed + ":" not in resp["status"]["message"]
    assert f"{kind} apps/w" in resp["status"]["message"]


def test_enforce_names_each_failing_image_and_why(enforce: Client, site: Site) -> None:
    spec = pod_spec([site.signed, site.unsigned, site.wrong], init=[site.allowed], ephemeral=[site.unapproved])
    status, resp = enforce.review(admission("Pod", spec))
    msg = resp["status"]["message"]
    assert status == 200 and resp["allowed"] is False, resp
    assert "3 of 5 image(s) failed" in msg
    assert f"{site.unsigned}: policy team: release: no signatures found" in msg
    assert f"{site.wrong}: policy team: release: no signature verified" in msg
    assert f"{site.unapproved}: registry not approved" in msg
    assert f"{site.allowed}:" not in msg and f"{site.signed}:" not in msg


def test_ephemeral_containers_are_checked(enforce: Client, site: Site) -> None:
    doc = admission("Pod", pod_spec([site.signed], ephemeral=[site.wrong]), operation="UPDATE")
    doc["request"]["subResource"] = "ephemeralcontainers"
    assert enforce.review(doc)[1]["allowed"] is False


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_delete_and_connect_pass_untouched(enforce: Client, operation: str) -> None:
    status, resp = enforce.review(admission("Pod", {}, operation=operation, uid="u1"))
    assert status == 200 and resp == {"uid": "u1", "allowed": True}


def test_keep_alive_and_cache_hits(enforce: Client, servers: dict[str, Running], site: Site) -> None:
    enforce.review(admission("Pod", pod_spec([site.signed])))
    sock = enforce.conn.sock
    service = servers["enforce"].service
    hits = service.cache.hits
    for _ in range(5):
        assert enforce.review(admission("Pod", pod_spec([site.signed])))[1]["allowed"] is True
    assert enforce.conn.sock is sock, "the connection was not kept alive"
    assert service.cache.hits == hits + 5


def test_retagged_image_is_never_let_through_by_the_cache(enforce: Client, site: Site) -> None:
    pusher = Pusher(site.reg.url)
    push_image(pusher, "team/retag", "1.0", seed="good")
    ref = f"{site.reg.host}/team/retag:1.0"
    sign_image(ref, RELEASE, client=RegistryClient())
    assert enforce.review(admission("Pod", pod_spec([ref])))[1]["allowed"] is True
    assert enforce.review(admission("Pod", pod_spec([ref])))[1]["allowed"] is True  # cached
    push_image(pusher, "team/retag", "1.0", seed="evil")  # same tag, unsigned content
    resp = enforce.review(admission("Pod", pod_spec([ref])))[1]
    assert resp["allowed"] is False and "no signatures found" in resp["status"]["message"]


def test_health_ready_and_metrics(enforce: Client) -> None:
    assert enforce.call("GET", "/healthz") == (200, b"ok\n")
    assert enforce.call("GET", "/readyz") == (200, b"ready\n")
    enforce.review(admission("Pod", pod_spec(["127.0.0.1:1/nowhere/app:1"])))
    status, body = enforce.call("GET", "/metrics")
    text = body.decode()
    assert status == 200
    assert 'airgap_webhook_decisions_total{result="deny",allowed="false"}' in text
    assert 'airgap_webhook_review_seconds_bucket{le="+Inf"}' in text and "airgap_webhook_cache_hits_total" in text
    assert enforce.call("GET", "/nope")[0] == 404 and enforce.call("GET", "/validate")[0] == 405


# ---- warn and audit ---------------------------------------------------------------------------------

def test_warn_mode_allows_with_warnings(servers: dict[str, Running], site: Site) -> None:
    client = Client(servers["warn"], site.tls.ca_pem)
    status, resp = client.review(admission("Deployment", pod_spec([site.signed, site.unsigned, site.unapproved])))
    assert status == 200 and resp["allowed"] is True and "status" not in resp
    warnings = resp["warnings"]
    assert len(warnings) == 2 and all(w.startswith("airgap (warn mode) would deny") for w in warnings)
    assert any(site.unsigned in w for w in warnings) and any(site.unapproved in w for w in warnings)
    ok = client.review(admission("Job", pod_spec([site.signed]), uid="j"))[1]
    assert ok == {"uid": "j", "allowed": True}


def test_audit_mode_allows_with_annotations(servers: dict[str, Running], site: Site) -> None:
    client = Client(servers["audit"], site.tls.ca_pem)
    status, resp = client.review(admission("StatefulSet", pod_spec([site.wrong, site.allowed])))
    assert status == 200 and resp["allowed"] is True and "warnings" not in resp
    assert resp["auditAnnotations"]["decision"] == "deny"
    assert site.wrong in resp["auditAnnotations"]["denied-images"]
    assert site.allowed not in resp["auditAnnotations"]["denied-images"]
    ok = client.review(admission("DaemonSet", pod_spec([site.signed])))[1]
    assert ok["allowed"] is True and ok["auditAnnotations"] == {"decision": "allow"}


def test_policy_warn_mode_passes_warnings_through_in_enforce(site: Site, tmp_path: Path) -> None:
    trust = write_trust(tmp_path / "trust", site.reg.host)
    warn_policy = policy(site.reg.host).replace("spec:\n  images", "spec:\n  mode: warn\n  images")
    (trust / "policy.yaml").write_text(warn_policy)
    running = serve(site, trust=trust)
    try:
        resp = Client(running, site.tls.ca_pem).review(admission("Pod", pod_spec([site.unsigned])))[1]
        assert resp["allowed"] is True and "no signatures found" in resp["warnings"][0]
    finally:
        running.stop()


# ---- trust reload -----------------------------------------------------------------------------------

def test_trust_reload_without_dropping_requests(site: Site, tmp_path: Path) -> None:
    trust = write_trust(tmp_path / "trust", site.reg.host)
    running = serve(site, trust=trust, reload_interval=0.05)
    client = Client(running, site.tls.ca_pem)
    try:
        assert client.review(admission("Pod", pod_spec([site.wrong])))[1]["allowed"] is False
        before = running.service.metrics.reloads
        # An operator rotates to the OTHER key (a ConfigMap update): wrong becomes right, and back.
        (trust / "keys" / "release.pub").write_bytes(public_pem(OTHER.public_key))
        answers = []
        deadline = time.monotonic() + 10
        while running.service.metrics.reloads == before and time.monotonic() < deadline:
            answers.append(client.review(admission("Pod", pod_spec([site.signed])))[0])
        assert running.service.metrics.reloads == before + 1 and set(answers) <= {200}
        assert client.review(admission("Pod", pod_spec([site.wrong])))[1]["allowed"] is True
        assert client.review(admission("Pod", pod_spec([site.signed])))[1]["allowed"] is False
        (trust / "policy.yaml").write_text("kind: [broken")  # a bad update keeps the last good trust
        time.sleep(0.3)
        assert running.service.metrics.reload_failures >= 1
        assert client.review(admission("Pod", pod_spec([site.wrong])))[1]["allowed"] is True
        assert client.call("GET", "/readyz")[0] == 200
    finally:
        running.stop()


def test_not_ready_without_trust_and_denies(site: Site, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    running = serve(site, trust=tmp_path / "empty")
    try:
        client = Client(running, site.tls.ca_pem)
        assert client.call("GET", "/readyz")[0] == 503
        resp = client.review(admission("Pod", pod_spec([site.signed])))[1]
        assert resp["allowed"] is False and "trust directory not loaded" in resp["status"]["message"]
    finally:
        running.stop()


# ---- CLI -------------------------------------------------------------------------------------------

def test_cli_serve_answers_over_https(site: Site, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "airgap.cli", "webhook", "serve", "--trust", str(site.trust),
                                 "--tls-cert", str(site.tls.cert_pem), "--tls-key", str(site.tls.key_pem),
                                 "--host", "127.0.0.1", "--port", str(port), "--mode", "warn"], stderr=fh)
    try:
        ctx = ssl.create_default_context(cafile=str(site.tls.ca_pem))
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
                conn.request("GET", "/readyz")
                ready = conn.getresponse()
                ready.read()
                if ready.status == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.1)
        conn.request("POST", "/validate", body=json.dumps(admission("Pod", pod_spec([site.unsigned]), uid="c")))
        resp = json.loads(conn.getresponse().read())["response"]
        assert resp["uid"] == "c" and resp["allowed"] is True and site.unsigned in resp["warnings"][0]
        conn.close()
    finally:
        proc.terminate()
        code = proc.wait(timeout=10)
    # SIGTERM (what Kubernetes sends) is a stop asked for: reviews in flight finish, the log says so, exit 0.
    assert code == 0, log.read_text()
    assert '"stopped"' in log.read_text().splitlines()[-1], log.read_text()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    review = next(r for r in records if r["msg"] == "admission review")
    assert review["uid"] == "c" and review["mode"] == "warn" and review["images"][0]["image"] == site.unsigned
    assert any(r["msg"] == "trust loaded" for r in records)


def test_cli_serve_rejects_bad_alias(site: Site) -> None:
    out = CliRunner().invoke(cli, ["webhook", "serve", "--trust", str(site.trust), "--tls-cert",
                                   str(site.tls.cert_pem), "--tls-key", str(site.tls.key_pem),
                                   "--registry-alias", "nonsense"])
    assert out.exit_code == 2 and "invalid registry alias" in out.output


# ---- guarantee 12: what the webhook cannot read is denied (warned, audited), never allowed ------------------

def raw_review(kind: str, obj: Any, *, group: str = "", version: str = "v1", operation: str = "CREATE",
               uid: str = "g12", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
        "operation": operation, "namespace": "apps", "name": "w", "userInfo": {"username": "dev"},
        "object": obj, **extra}}


def not_understood(signed: str) -> dict[str, tuple[dict[str, Any], str]]:
    """Reviews the webhook must not allow, each carrying only a signed image (so "verify whatever pod spec
    is there" would wrongly allow it), and the reason expected."""
    template = {"spec": {"template": {"spec": pod_spec([signed])}}}
    return {
        "custom kind with a pod template": (raw_review("Rollout", template, group="argoproj.io", version="v1alpha1"),
                                            "argoproj.io/v1alpha1 Rollout is not a kind the webhook can verify"),
        "core kind not registered": (raw_review("PodTemplate", {"template": {"spec": pod_spec([signed])}}),
                                     "v1 PodTemplate is not a kind"),
        "workload of another group": (raw_review("Deployment", template, group="example.com"),
                                      "example.com/v1 Deployment is not a kind"),
        "old version of a workload": (raw_review("Deployment", template, group="apps", version="v1beta1"),
                                      "apps/v1beta1 Deployment is not a kind"),
        "object missing": (raw_review("Pod", None), "Pod CREATE carries no object"),
        "object not an object": (raw_review("Pod", [pod_spec([signed])]), "Pod CREATE carries no object"),
        "object of another kind": (raw_review("Pod", {"kind": "Deployment", **template}),
                                   "the object is a 'Deployment', the request says Pod"),
        "pod spec without containers": (
            raw_review("Pod", {"spec": {"initContainers": [{"name": "i", "image": signed}]}}),
            "the pod spec has no containers"),
        "subresource object not understood": (raw_review("Binding", {"target": {"kind": "Node", "name": "n1"}},
                                                         subResource="binding"), "v1 Binding is not a kind"),
        "unknown operation": (raw_review("Pod", {"spec": pod_spec([signed])}, operation="PATCH"),
                              "operation 'PATCH' is not an admission operation"),
    }


@pytest.mark.parametrize("mode", ["enforce", "warn", "audit"])
def test_what_the_webhook_cannot_read_is_never_allowed_silently(servers: dict[str, Running], site: Site,
                                                                mode: str) -> None:
    client = Client(servers[mode], site.tls.ca_pem)
    for case, (doc, reason) in not_understood(site.signed).items():
        status, resp = client.review(doc)
        assert status == 200 and resp["uid"] == "g12", (case, status, resp)
        if mode == "enforce":
            assert resp["allowed"] is False and reason in resp["status"]["message"], (case, resp)
        elif mode == "warn":
            assert resp["allowed"] is True and "status" not in resp, (case, resp)
            assert any("would deny" in w and reason in w for w in resp["warnings"]), (case, resp)
        else:
            assert resp["allowed"] is True and "warnings" not in resp, (case, resp)
            assert resp["auditAnnotations"]["decision"] == "deny", (case, resp)
            assert reason in resp["auditAnnotations"]["error"], (case, resp)


def test_kinds_that_are_understood_beyond_workloads(enforce: Client, site: Site) -> None:
    # pods/ephemeralcontainers before Kubernetes 1.22: the EphemeralContainers kind, its list at the top.
    def legacy(image: str) -> dict[str, Any]:
        return raw_review("EphemeralContainers", {"apiVersion": "v1", "kind": "EphemeralContainers",
                                                  "metadata": {"name": "w", "namespace": "apps"},
                                                  "ephemeralContainers": [{"name": "dbg", "image": image}]},
                          operation="UPDATE", subResource="ephemeralcontainers")

    assert enforce.review(legacy(site.signed))[1] == {"uid": "g12", "allowed": True}
    denied = enforce.review(legacy(site.unsigned))[1]
    assert denied["allowed"] is False and f"{site.unsigned}: policy team: release: no signatures found" in \
        denied["status"]["message"]
    # A scale subresource changes a replica count: nothing to verify.
    scale = raw_review("Scale", {"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 3}},
                       group="autoscaling", operation="UPDATE", subResource="scale")
    assert enforce.review(scale)[1] == {"uid": "g12", "allowed": True}
    # DELETE and CONNECT start nothing, whatever the kind.
    for operation in ("DELETE", "CONNECT"):
        doc = raw_review("Rollout", None, group="argoproj.io", version="v1alpha1", operation=operation)
        assert enforce.review(doc)[1] == {"uid": "g12", "allowed": True}


def test_dry_run_is_decided_like_the_real_request(enforce: Client, site: Site) -> None:
    for image, allowed in ((site.signed, True), (site.unsigned, False)):
        real = admission("Pod", pod_spec([image]), uid="real")
        dry = admission("Pod", pod_spec([image]), uid="real")
        dry["request"]["dryRun"] = True
        assert enforce.review(dry)[1] == enforce.review(real)[1]
        assert enforce.review(dry)[1]["allowed"] is allowed
