"""`airgap audit` end to end on a real registry: signed, unsigned, wrongly signed, unmatched, allow-listed and
missing images; the catalog, an images file and a pods file as inputs; PolicyReport counts; reproducibility;
a VSA signed by airgap and checked by airgap and by real cosign.

One registry and one set of images serve the whole module (the audit only reads them).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from conftest import pusher_for, require_tool
from support.images import Image, push_image
from support.registries import Registry
from support.signing import KeyPair, write_keypair
from support.trustdirs import airgap_policy, cip, key_authority, write_trust

from airgap.audit.evidence import without_timestamp
from airgap.cli import cli
from airgap.keys.public import key_id
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

VSA_TYPE = "https://slsa.dev/verification_summary/v1"


@dataclass
class Scene:
    reg: Registry
    trust: Path
    release: KeyPair
    other: KeyPair
    vsa_key: KeyPair
    images: dict[str, Image]
    tmp: Path

    def ref(self, name: str) -> str:
        image = self.images[name]
        return f"{self.reg.host}/{image.repo}:{image.tag}"


EXPECTED = {"app": "PASS", "app2": "PASS", "unsigned": "FAIL", "wrong": "FAIL", "tool": "WARN", "vendor": "SKIP"}


@pytest.fixture(scope="module")
def scene(module_registry_factory: Callable[..., Registry], tmp_path_factory: pytest.TempPathFactory) -> Scene:
    reg = module_registry_factory()
    tmp = tmp_path_factory.mktemp("audit")
    release = write_keypair(tmp / "keys", "release")
    other = write_keypair(tmp / "keys", "other")
    vsa_key = write_keypair(tmp / "keys", "vsa", password=b"vsa-pass")
    pusher = pusher_for(reg)
    images = {
        "app": push_image(pusher, "team/app", "1.0", platforms=("linux/amd64", "linux/arm64")),
        "app2": push_image(pusher, "team/app", "2.0"),
        "unsigned": push_image(pusher, "team/unsigned", "1"),
        "wrong": push_image(pusher, "team/wrong", "1"),
        "tool": push_image(pusher, "misc/tool", "1"),
        "vendor": push_image(pusher, "vendor/blessed", "1"),
    }
    client = RegistryClient()
    sign_image(f"{reg.host}/team/app:1.0", release.signer, client=client, recursive=True)
    sign_image(f"{reg.host}/team/app:2.0", release.signer, client=client)
    sign_image(f"{reg.host}/team/wrong:1", other.signer, client=client)
    policy = cip("team", key_authority("release"), f"{reg.host}/team/**") + airgap_policy(
        "warn", f'  allow:\n    - "{reg.host}/vendor/**"\n')
    trust = write_trust(tmp / "trust", keys={"release": release.public_pem}, policy=policy)
    return Scene(reg, trust, release, other, vsa_key, images, tmp)


def run(args: list[str], **kwargs: Any) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {i["ref"]: i["status"] for i in doc["images"]}


@pytest.fixture(scope="module")
def catalog_run(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    out = tmp_path_factory.mktemp("out1")
    result = run(["audit", "--registry", scene.reg.host, "--trust", str(scene.trust), "-o", str(out),
                  "--key", str(scene.vsa_key.private_path)], env={"COSIGN_PASSWORD": "vsa-pass"})
    return result, out


def test_catalog_audit_gives_each_image_its_status_and_evidence(scene: Scene, catalog_run: tuple[Any, Path]) -> None:
    result, out = catalog_run
    assert result.exit_code == 1, result.output  # two images fail: the audit says so after writing everything
    assert "2 of 6 image(s) failed the audit" in result.stderr
    doc = json.loads((out / "audit.json").read_text())
    assert statuses(doc) == {scene.ref(n): s for n, s in EXPECTED.items()}  # no sha256-*.sig tags audited
    assert doc["schema_version"] == 1 and doc["kind"] == "AuditEvidence" and doc["tool"]["name"] == "airgap"
    assert doc["summary"] == {"images": 6, "PASS": 2, "FAIL": 2, "WARN": 1, "ERROR": 0, "SKIP": 1,
                              "result": "FAILED"}
    assert doc["trust"]["digest"].startswith("sha256:") and doc["policy"]["digest"].startswith("sha256:")
    assert [k["id"] for k in doc["trust"]["key_manifest"]["keys"]] == [scene.release.key_id]
    by_ref = {i["ref"]: i for i in doc["images"]}
    app = by_ref[scene.ref("app")]
    assert app["digest"] == scene.images["app"].digest
    assert app["verified_by"][0]["key_id"] == scene.release.key_id
    assert app["verified_by"][0]["location"].endswith(".sig")
    wrong = by_ref[scene.ref("wrong")]
    assert wrong["verified_by"] == [] and "no signature verified" in wrong["reasons"][0]
    checked = wrong["policies"][0]["authorities"][0]["evidence"]
    assert checked and not checked[0]["ok"]  # the wrong signature was found and checked, and rejected
    assert "no signatures found" in by_ref[scene.ref("unsigned")]["reasons"][0]
    assert "noMatchPolicy: warn" in by_ref[scene.ref("tool")]["warnings"][0]
    assert "allow-list" in by_ref[scene.ref("vendor")]["warnings"][0]
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json", "audit.md", "audit.vsa.json",
                                                     "policyreports.yaml"]
    md = (out / "audit.md").read_text()
    assert "# airgap audit: FAILED" in md and "| **FAIL** |" in md and scene.release.key_id in md
    html = (out / "audit.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "team/unsigned" in html


def test_rerun_gives_the_same_evidence_except_the_timestamp(scene: Scene, catalog_run: tuple[Any, Path],
                                                           tmp_path: Path) -> None:
    _, first = catalog_run
    result = run(["audit", "--registry", scene.reg.host, "--trust", str(scene.trust), "-o", str(tmp_path),
                  "--exit-zero"])
    assert result.exit_code == 0, result.output
    one, two = (json.loads((d / "audit.json").read_text()) for d in (first, tmp_path))
    assert without_timestamp(one) == without_timestamp(two)
    for name in ("audit.md", "audit.html", "policyreports.yaml"):
        a, b = (first / name).read_text(), (tmp_path / name).read_text()
        if one["generated_at"] != two["generated_at"]:
            a = a.replace(one["generated_at"], "T")
            b = b.replace(two["generated_at"], "T")
            a, b = (_drop_seconds(x) for x in (a, b))
        assert a == b, name


def _drop_seconds(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "seconds:" not in line)


def test_images_file_stdout_formats_and_a_missing_image_is_an_error(scene: Scene, tmp_path: Path) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text(f"# what we run\nteam/app:1.0\n{scene.reg.host}/team/missing:9\n\n")
    result = run(["audit", "--registry", scene.reg.host, "--images", str(listing), "--trust", str(scene.trust),
                  "--format", "json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert statuses(doc) == {scene.ref("app"): "PASS", f"{scene.reg.host}/team/missing:9": "ERROR"}
    assert doc["inputs"]["images_file"]["path"] == str(listing)
    md = run(["audit", "--images", str(listing), "--registry", scene.reg.host, "--trust", str(scene.trust),
              "--format", "md", "--exit-zero"])
    assert md.exit_code == 0 and md.stdout.startswith("# airgap audit: FAILED") and "**ERROR**" in md.stdout


def _pods(scene: Scene) -> dict[str, Any]:
    host = scene.reg.host

    def pod(ns: str, name: str, uid: str, containers: dict[str, list[tuple[str, str, str]]]) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        status: dict[str, Any] = {}
        for kind, items in containers.items():
            spec[kind] = [{"name": c, "image": image} for c, image, _ in items]
            status_key = kind[:-1] + "Statuses"
            status[status_key] = [{"name": c, "image": image, "imageID": iid} for c, image, iid in items if iid]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "uid": uid},
                "spec": spec, "status": status}

    app, unsigned = scene.images["app"], scene.images["unsigned"]
    return {"apiVersion": "v1", "kind": "List", "items": [
        pod("prod", "web-1", "u1", {
            "containers": [("web", f"{host}/team/app:1.0", f"docker-pullable://{host}/team/app@{app.digest}")],
            "initContainers": [("init", f"{host}/team/unsigned:1", f"{host}/team/unsigned@{unsigned.digest}")]}),
        pod("prod", "web-2", "u2", {
            "containers": [("web", f"{host}/team/app:1.0", f"{host}/team/app@{app.digest}")]}),
        pod("dev", "tool", "u3", {
            "containers": [("tool", f"{host}/misc/tool:1", "")],
            "ephemeralContainers": [("debug", f"{host}/team/wrong:1", "")]}),
    ]}


def test_pods_input_gives_namespace_policyreports_and_a_cluster_report(scene: Scene, tmp_path: Path) -> None:
    pods = tmp_path / "pods.json"
    pods.write_text(json.dumps(_pods(scene)))
    result = run(["audit", "--pods", str(pods), "--trust", str(scene.trust), "-o", str(tmp_path / "out"),
                  "--format", "policyreport"])
    assert result.exit_code == 1
    reports = list(yaml.safe_load_all(result.stdout))
    assert [(r["kind"], r["metadata"].get("namespace")) for r in reports] == [
        ("PolicyReport", "dev"), ("PolicyReport", "prod"), ("ClusterPolicyReport", None)]
    dev, prod, cluster = reports
    assert all(r["apiVersion"] == "wgpolicyk8s.io/v1alpha2" for r in reports)
    assert prod["summary"] == {"pass": 2, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    assert dev["summary"] == {"pass": 0, "fail": 1, "warn": 1, "error": 0, "skip": 0}
    assert cluster["summary"] == {"pass": 1, "fail": 2, "warn": 1, "error": 0, "skip": 0}
    failing = next(r for r in prod["results"] if r["result"] == "fail")
    assert failing["resources"] == [{"apiVersion": "v1", "kind": "Pod", "name": "web-1", "namespace": "prod",
                                     "uid": "u1"}]
    assert failing["policy"] == "team" and failing["properties"]["container"] == "init"
    assert "no signatures found" in failing["message"] and failing["source"] == "airgap"
    assert {r["rule"] for r in dev["results"]} == {"image-signature", "no-match-policy"}
    doc = json.loads((tmp_path / "out" / "audit.json").read_text())
    by_ref = {i["ref"]: i for i in doc["images"]}
    # a running container is audited at the digest the kubelet reports, once for both pods
    running = by_ref[f"{scene.reg.host}/team/app@{scene.images['app'].digest}"]
    assert running["status"] == "PASS" and [w["pod"] for w in running["workloads"]] == ["web-1", "web-2"]
    assert by_ref[scene.ref("tool")]["workloads"][0]["image_id"] == ""  # pending: audited by its tag


def test_vsa_is_checked_by_airgap_and_by_cosign(scene: Scene, catalog_run: tuple[Any, Path], tmp_path: Path) -> None:
    _, out = catalog_run
    vsa, evidence = out / "audit.vsa.json", out / "audit.json"
    pub = str(scene.vsa_key.public_path)
    ok = run(["verify-attestation", str(vsa), "--key", pub, "--evidence", str(evidence), "--json"])
    assert ok.exit_code == 0, ok.output
    check = json.loads(ok.stdout)
    assert check["key_id"] == key_id(scene.vsa_key.signer.public_key) and check["evidence_checked"]
    assert check["verification_result"] == "FAILED" and check["resource_uri"] == f"oci://{scene.reg.host}"
    statement = json.loads(__import__("base64").b64decode(json.loads(vsa.read_text())["payload"]))
    predicate = statement["predicate"]
    assert statement["_type"] == "https://in-toto.io/Statement/v1" and statement["predicateType"] == VSA_TYPE
    assert predicate["timeVerified"] == json.loads(evidence.read_text())["generated_at"]
    assert predicate["verifiedLevels"] == ["FAILED"] and predicate["verifier"]["id"]
    assert predicate["policy"]["digest"]["sha256"] and predicate["inputAttestations"]
    assert scene.images["app"].digest.split(":")[1] in {s["digest"]["sha256"] for s in statement["subject"]}

    strict = run(["verify-attestation", str(vsa), "--key", pub, "--require-passed"])
    assert strict.exit_code == 1 and "records FAILED" in strict.stderr
    tampered = tmp_path / "audit.json"
    tampered.write_text(evidence.read_text().replace('"FAIL"', '"PASS"'))
    bad = run(["verify-attestation", str(vsa), "--key", pub, "--evidence", str(tampered)])
    assert bad.exit_code == 1 and "no subject has the evidence file's digest" in bad.stderr
    wrong_key = run(["verify-attestation", str(vsa), "--key", str(scene.release.public_path)])
    assert wrong_key.exit_code == 1 and "no signature verifies" in wrong_key.stderr

    cosign = require_tool("cosign")
    base = [cosign, "verify-blob-attestation", "--key", pub, "--insecure-ignore-tlog", "--type", VSA_TYPE,
            "--signature", str(vsa)]
    good = subprocess.run([*base, str(evidence)], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert "Verified OK" in good.stderr
    forged = subprocess.run([*base, str(tampered)], capture_output=True, text=True, timeout=60)
    assert forged.returncode != 0 and "no matching subject digest" in forged.stderr

    # and the other way round: a VSA cosign attest-blob signs is checked by airgap verify-attestation
    predicate = tmp_path / "predicate.json"
    predicate.write_text(json.dumps({"verificationResult": "PASSED", "resourceUri": "oci://x"}))
    made = subprocess.run([cosign, "attest-blob", "--key", str(scene.vsa_key.private_path), "--predicate",
                           str(predicate), "--type", VSA_TYPE, "--tlog-upload=false", "-y", str(evidence)],
                          capture_output=True, text=True, timeout=60,
                          env={"COSIGN_PASSWORD": "vsa-pass", "HOME": str(tmp_path)})
    assert made.returncode == 0, made.stderr
    theirs = tmp_path / "cosign-vsa.json"
    theirs.write_text(made.stdout)
    ok = run(["verify-attestation", str(theirs), "--key", pub, "--evidence", str(evidence), "--require-passed"])
    assert ok.exit_code == 0, ok.output
    assert "PASSED for oci://x" in ok.stdout


def test_passing_audit_gives_a_passed_vsa(scene: Scene, tmp_path: Path) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("team/app:1.0\nteam/app:2.0\n")
    result = run(["audit", "--registry", scene.reg.host, "--images", str(listing), "--trust", str(scene.trust),
                  "-o", str(tmp_path / "out"), "--key", str(scene.vsa_key.private_path)],
                 env={"COSIGN_PASSWORD": "vsa-pass"})
    assert result.exit_code == 0, result.output
    assert "2 PASS" in result.stderr
    vsa = tmp_path / "out" / "audit.vsa.json"
    ok = run(["verify-attestation", str(vsa), "--key", str(scene.vsa_key.public_path), "--require-passed",
              "--evidence", str(tmp_path / "out" / "audit.json")])
    assert ok.exit_code == 0, ok.output
    assert "PASSED" in ok.stdout and "evidence digest matches" in ok.stdout


def test_usage_errors(scene: Scene, tmp_path: Path) -> None:
    result = run(["audit", "--trust", str(scene.trust)])
    assert result.exit_code == 2 and "nothing to audit" in result.stderr
    bad = tmp_path / "pods.json"
    bad.write_text('{"items": [{"spec": {"containers": [{"name": "a", "image": 5}]}}]}')
    result = run(["audit", "--pods", str(bad), "--trust", str(scene.trust)])
    assert result.exit_code == 1 and "pods file: items[0].spec.containers[0].image is not a string" in result.stderr
    result = run(["audit", "--registry", scene.reg.host, "--trust", str(scene.trust), "--key",
                  str(scene.vsa_key.private_path)], env={"COSIGN_PASSWORD": "wrong"})
    assert result.exit_code != 0 and result.stdout == ""  # the key is checked before any image is audited


def test_bundle_input_audits_what_the_bundle_loaded(scene: Scene, module_registry_factory: Callable[..., Registry],
                                                    tmp_path: Path) -> None:
    from airgap.bundle.load import load
    from airgap.bundle.pack import pack
    from airgap.bundle.spec import BundleSpec

    host = scene.reg.host
    (tmp_path / "release.pub").write_bytes(scene.release.public_pem)
    (tmp_path / "spec.yaml").write_text(f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: audited, version: 1.0.0}}
images: ["{host}/team/app:1.0", "{host}/team/unsigned:1"]
keys: [{{name: release, path: release.pub}}]
policies:
  - name: team
    images: [{{glob: "{host}/team/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
""")
    bundle = tmp_path / "audited.tar"
    client = RegistryClient()
    pack(BundleSpec.load(tmp_path / "spec.yaml"), str(bundle), client=client, verify=False, progress=False)
    site = module_registry_factory()
    trust = tmp_path / "site-trust"
    with bundle.open("rb") as f:
        load(f, site.host, allow_unsigned=True, client=client, trust_out=str(trust), progress=False)
    result = run(["audit", "--bundle", str(bundle), "--registry", site.host, "--trust", str(trust), "--format",
                  "json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    by_ref = {i["ref"]: i for i in doc["images"]}
    app = by_ref[f"{site.host}/team/app@{scene.images['app'].digest}"]
    assert app["status"] == "PASS" and app["upstream"] == f"{host}/team/app:1.0@{scene.images['app'].digest}"
    assert app["verified_by"][0]["key_id"] == scene.release.key_id
    unsigned = by_ref[f"{site.host}/team/unsigned@{scene.images['unsigned'].digest}"]
    assert unsigned["status"] == "FAIL" and unsigned["upstream"].startswith(f"{host}/team/unsigned:1@")
    assert doc["inputs"]["bundle"]["name"] == "audited" and doc["inputs"]["bundle"]["images"] == 2
    # the whole site registry: both tags `load` pushed (zarf crc and plain), never the translation map
    from airgap.audit.inputs import catalog

    assert "airgap/maps" in catalog(client, site.host)
    whole = json.loads(run(["audit", "--registry", site.host, "--trust", str(trust), "--exit-zero"]).stdout)
    listed = {i["ref"].rsplit(":", 1)[0].replace(site.host + "/", ""): i["status"] for i in whole["images"]}
    assert listed == {"team/app": "PASS", "team/unsigned": "FAIL"} and len(whole["images"]) == 4
