"""Guarantees 6 and 7 end to end, through the command line and the webhook, with a real registry.

The registry (Debian's docker-registry, distribution 2.8) serves:
- ``team/app:1``: signed with the release key (the control: it must keep passing);
- ``team/deepmanifest:1``: a manifest nested 9,990 deep (the deepest distribution accepts: Go's encoding/json
  stops at 10,000; Python's json crashes with RecursionError long before);
- ``team/deepsig:1``: an image whose ``.sig`` layer is a payload nested 100,000 deep, carrying a signature by
  the release key that verifies over those bytes;
- ``team/deepsigmanifest:1``: an image whose ``.sig`` manifest is nested 9,990 deep;
- ``team/dupsig:1``: an image whose ``.sig`` payload names the image digest under a duplicated key, signed by
  the release key: the signature verifies, the payload is refused (guarantee 6, fail closed).

``airgap verify`` denies each hostile image with the reason and still passes the control; ``airgap audit``
reports them (ERROR when the image itself cannot be read, FAIL when a signature cannot) and audits the rest;
``airgap verify-bundle``, ``load`` and ``inspect`` fail with one line on a bundle manifest nested 100,000 deep;
the webhook answers a deep AdmissionReview with a clean denial; ``airgap copy`` and ``pack`` refuse a chain of
1,200 indexes each naming the previous one (a graph, not a document, but walked recursively all the same).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import pusher_for
from support.images import OCI_CONFIG, OCI_MANIFEST, Pusher, canonical, push_image, sha256
from support.registries import Registry
from support.signing import KeyPair, write_keypair
from support.trustdirs import cip, key_authority, write_trust

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
REGISTRY_MAX_DEPTH = 9_990  # distribution refuses manifests nested 10,000 deep or more
DEEP = 100_000
NESTED = "nested deeper than 100 levels"


@dataclass
class Scene:
    reg: Registry
    trust: Path
    release: KeyPair
    tmp: Path

    def ref(self, repo: str) -> str:
        return f"{self.reg.host}/{repo}:1"


def _deep_manifest(pusher: Pusher, repo: str, depth: int) -> bytes:
    config = pusher.blob(repo, b"{}")
    head = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "annotations": {},
                      "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2}})
    return head[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"


def _push_sig(pusher: Pusher, repo: str, subject: str, payload: bytes, signature: bytes) -> None:
    layer = pusher.blob(repo, payload)
    config = pusher.blob(repo, b"{}")
    manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
                          "layers": [{"mediaType": SIMPLESIGNING, "digest": layer, "size": len(payload),
                                      "annotations": {"dev.cosignproject.cosign/signature":
                                                      base64.b64encode(signature).decode()}}]})
    pusher.manifest(repo, subject.replace(":", "-") + ".sig", manifest, OCI_MANIFEST)


@pytest.fixture(scope="module")
def scene(module_registry_factory: Callable[..., Registry], tmp_path_factory: pytest.TempPathFactory) -> Scene:
    reg = module_registry_factory()
    tmp = tmp_path_factory.mktemp("hostile")
    release = write_keypair(tmp / "keys", "release")
    pusher = pusher_for(reg)
    push_image(pusher, "team/app", "1")
    sign_image(f"{reg.host}/team/app:1", release.signer, client=RegistryClient())

    deep = _deep_manifest(pusher, "team/deepmanifest", REGISTRY_MAX_DEPTH)
    pusher.manifest("team/deepmanifest", "1", deep, OCI_MANIFEST)

    image = push_image(pusher, "team/deepsig", "1")
    payload = ("[" * DEEP + "]" * DEEP).encode()
    _push_sig(pusher, "team/deepsig", image.digest, payload, release.signer.sign(payload))

    image = push_image(pusher, "team/deepsigmanifest", "1")
    pusher.manifest("team/deepsigmanifest", image.digest.replace(":", "-") + ".sig",
                    _deep_manifest(pusher, "team/deepsigmanifest", REGISTRY_MAX_DEPTH), OCI_MANIFEST)

    image = push_image(pusher, "team/dupsig", "1")
    payload = (f'{{"critical":{{"identity":{{"docker-reference":"{reg.host}/team/dupsig"}},"image":{{'
               f'"docker-manifest-digest":"sha256:{"0" * 64}","docker-manifest-digest":"{image.digest}"}},'
               '"type":"cosign container image signature"},"optional":null}').encode()
    _push_sig(pusher, "team/dupsig", image.digest, payload, release.signer.sign(payload))

    policy = cip("team", key_authority("release"), f"{reg.host}/team/**")
    trust = write_trust(tmp / "trust", keys={"release": release.public_pem}, policy=policy)
    return Scene(reg, trust, release, tmp)


def run(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


HOSTILE = {
    "team/deepmanifest": NESTED,
    "team/deepsig": "signature payload: line 1: " + NESTED,
    "team/deepsigmanifest": NESTED,
    "team/dupsig": "signature payload: line 1: critical.image.docker-manifest-digest: duplicate key",
}


def test_verify_denies_each_hostile_image_with_the_reason(scene: Scene) -> None:
    refs = [scene.ref("team/app"), *(scene.ref(repo) for repo in HOSTILE)]
    out = run(["verify", "--trust", str(scene.trust), "--json", *refs])
    assert out.exit_code == 1, out.output
    results = {r["ref"]: r for r in json.loads(out.stdout)["results"]}
    assert results[scene.ref("team/app")]["decision"] == "allow"
    for repo, why in HOSTILE.items():
        result = results[scene.ref(repo)]
        assert result["decision"] == "deny", result
        assert why in json.dumps(result), (repo, result)
    assert "Traceback" not in out.output


def test_verify_one_hostile_image_prints_its_reason(scene: Scene) -> None:
    out = run(["verify", "--key", str(scene.release.public_path), "--insecure-ignore-tlog",
               scene.ref("team/deepmanifest")])
    assert out.exit_code == 1
    assert f"reason: {scene.ref('team/deepmanifest')}: line 1: {NESTED}" in out.stdout
    assert out.stderr == "error: 1 of 1 image(s) failed verification\n"


def test_audit_reports_hostile_images_and_audits_the_rest(scene: Scene) -> None:
    images = scene.tmp / "images.txt"
    images.write_text("\n".join(scene.ref(r) for r in ("team/app", *HOSTILE)) + "\n")
    out = run(["audit", "--trust", str(scene.trust), "--images", str(images), "--format", "json"])
    assert out.exit_code == 1, out.output
    doc = json.loads(out.stdout)
    status = {i["ref"]: i["status"] for i in doc["images"]}
    assert status == {
        scene.ref("team/app"): "PASS",
        scene.ref("team/deepmanifest"): "ERROR",  # the image itself cannot be read
        scene.ref("team/deepsigmanifest"): "ERROR",  # its signature manifest cannot be read
        scene.ref("team/deepsig"): "FAIL",  # read, and its only signature is refused
        scene.ref("team/dupsig"): "FAIL",
    }
    reasons = {i["ref"]: " ".join(i["reasons"]) for i in doc["images"]}
    for repo, why in HOSTILE.items():
        assert why in reasons[scene.ref(repo)], reasons


def test_registry_audit_lists_every_repository(scene: Scene) -> None:
    out = run(["audit", "--trust", str(scene.trust), "--registry", scene.reg.host, "--format", "json"])
    assert out.exit_code == 1, out.output
    summary = json.loads(out.stdout)["summary"]
    assert (summary["images"], summary["PASS"], summary["ERROR"], summary["FAIL"]) == (5, 1, 2, 2), summary


# ---- manifest graphs ----------------------------------------------------------------------------

CHAIN = 1_200  # indexes, each naming the one before: enough to exhaust Python's recursion limit


@pytest.fixture
def chain(registry: Registry) -> str:
    """A fresh registry (the scene's audit counts its repositories) holding ``team/chain:1``."""
    from support.images import OCI_INDEX

    pusher = pusher_for(registry)
    image = push_image(pusher, "team/chain", "base")
    child = {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest)}
    for _ in range(CHAIN):
        index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child]})
        pusher.manifest("team/chain", sha256(index), index, OCI_INDEX)
        child = {"mediaType": OCI_INDEX, "digest": sha256(index), "size": len(index)}
    pusher.manifest("team/chain", "1", index, OCI_INDEX)
    return f"{registry.host}/team/chain:1"


def test_copy_and_pack_refuse_an_index_chain(chain: str, tmp_path: Path) -> None:
    out = run(["copy", chain, f"oci:{tmp_path}/out"])
    assert out.exit_code == 1, out.output
    assert out.stderr.startswith(f"error: {chain.rsplit(':', 1)[0]}@sha256:"), out.stderr
    assert out.stderr.endswith(": indexes nested more than 8 deep\n") and out.stderr.count("\n") == 1, out.stderr
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"apiVersion: airgap/v1\nkind: Bundle\nmetadata: {{name: chain, version: 1}}\nimages: [{chain}]\n"
                    "noMatchPolicy: allow\n")
    out = run(["pack", str(spec), "-o", str(tmp_path / "b.tar"), "--no-verify"])
    assert out.exit_code == 1, out.output
    assert out.stderr.endswith(": indexes nested more than 8 deep\n") and out.stderr.count("\n") == 1, out.stderr


# ---- bundles ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deep_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import io
    import tarfile

    data = ('{"images":' + "[" * DEEP + "]" * DEEP + "}").encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("airgap-bundle.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path = tmp_path_factory.mktemp("deep-bundle") / "deep.tar"
    path.write_bytes(out.getvalue())
    return path


@pytest.mark.parametrize("command", [
    ["verify-bundle", "{bundle}", "--allow-unsigned-bundle"],
    ["inspect", "{bundle}"],
    ["load", "{bundle}", "--registry", "{host}", "--allow-unsigned-bundle"],
])
def test_bundle_commands_fail_with_one_line(scene: Scene, deep_bundle: Path, command: list[str]) -> None:
    args = [a.format(bundle=deep_bundle, host=scene.reg.host) for a in command]
    out = run(args)
    assert out.exit_code == 1, out.output
    assert out.stderr == f"error: airgap-bundle.json: line 1: {NESTED}\n"


# ---- the webhook --------------------------------------------------------------------------------

def test_webhook_denies_a_deep_admission_review(scene: Scene, tmp_path: Path) -> None:
    from support.registries import make_tls
    from test_webhook import Client, serve
    from test_webhook import Site as WebhookSite

    tls = make_tls(tmp_path / "tls")
    site = WebhookSite(scene.reg, tls, scene.trust, *[scene.ref("team/app")] * 5)
    running = serve(site, "enforce")
    try:
        client = Client(running, tls.ca_pem)
        body = ('{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","object":'
                + "[" * DEEP + "]" * DEEP + "}}").encode()
        status, resp = client.review(body)
        assert status == 200 and resp["allowed"] is False, resp  # always 200: any other status is a failed call
        assert resp["status"]["message"].endswith(f"AdmissionReview: line 1: {NESTED}"), resp
        status, resp = client.review(_review(scene.ref("team/deepmanifest")))
        assert status == 200 and resp["allowed"] is False and NESTED in resp["status"]["message"], resp
        status, resp = client.review(_review(scene.ref("team/app")))
        assert status == 200 and resp["allowed"] is True, resp
    finally:
        running.stop()


def _review(image: str) -> dict[str, Any]:
    from test_webhook import admission, pod_spec

    return admission("Pod", pod_spec([image]))


def test_signed_duplicate_payload_sha_matches_what_was_signed(scene: Scene) -> None:
    """Control for the dupsig case: its signature does verify over the payload, so only the duplicate key
    can be what makes the verifier refuse it."""
    from airgap.keys.public import load_public_key, verify_signature

    client = RegistryClient()
    image = client.get_manifest(scene.reg.host, "team/dupsig", "1")
    sig = client.get_manifest(scene.reg.host, "team/dupsig", image.digest.replace(":", "-") + ".sig")
    layer = sig.blobs[1]
    payload = client.read_blob(scene.reg.host, "team/dupsig", layer)
    assert sha256(payload) == layer.digest
    signature = base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"])
    assert verify_signature(load_public_key(scene.release.public_pem, "release"), signature, payload)
