"""Images and signatures on disk (airgap.verification.local): signature directories and OCI layouts, judged by the same
evaluation as a registry's, with hostile content failing as candidates or errors, never as exceptions."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from airgap import digest as digests
from airgap.checks import cosign
from airgap.config import Limits
from airgap.errors import ConfigError, Error
from airgap.keys.private import KeySigner
from airgap.keys.public import public_pem
from airgap.oci import mediatypes as mt
from airgap.oci.layout import Layout
from airgap.oci.manifest import Descriptor, Manifest
from airgap.refs import Reference
from airgap.signing.bundles import sign_statement
from airgap.verification.adhoc import policy_for_keys
from airgap.verification.evaluate import evaluate
from airgap.verification.local import KIND, KIND_IMAGE, KIND_SIGS, SignatureDir, open_layout_image, split_layout_ref
from airgap.verification.trust import Trust

SIGNER = KeySigner(ec.generate_private_key(ec.SECP256R1()))


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _image(layout: Layout, seed: str) -> Manifest:
    config = _json({"architecture": "amd64", "os": "linux", "seed": seed})
    layout.write_blob(digests.of_bytes(config), len(config), [config])
    data = _json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests.of_bytes(config),
        "size": len(config)}, "layers": []})
    return Manifest.from_bytes(data, mt.OCI_MANIFEST)


def _sig_manifest(layout: Layout, payloads: list[tuple[bytes, bytes]]) -> Manifest:
    layers = []
    for payload, signature in payloads:
        layout.write_blob(digests.of_bytes(payload), len(payload), [payload])
        layers.append({"mediaType": mt.COSIGN_SIMPLESIGNING, "digest": digests.of_bytes(payload), "size": len(payload),
                       "annotations": {cosign.ANN_SIGNATURE: base64.b64encode(signature).decode()}})
    layout.write_blob(digests.of_bytes(b"{}"), 2, [b"{}"])
    data = _json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests.of_bytes(b"{}"), "size": 2},
        "layers": layers})
    return Manifest.from_bytes(data, mt.OCI_MANIFEST)


def _judge(artifacts: object, annotations: dict[str, str] | None = None) -> tuple[bool, list[str]]:
    trust = Trust.from_keys([("k", public_pem(SIGNER.public_key))])
    policy = policy_for_keys(trust, require_tlog=False)
    result = evaluate("img", artifacts, (Reference("oci-layout", "image", digest=artifacts.digest),),  # type: ignore[attr-defined]
                      "test", policy, trust, resolve_source=lambda s: None, annotations=annotations)  # type: ignore[arg-type, return-value]
    return result.allowed, result.reasons


def _payload(digest: str, optional: dict[str, str] | None = None) -> bytes:
    return cosign.simple_signing_payload("example.test/app", digest, optional)


# ---- signature directories ------------------------------------------------------------------------------------

def test_signature_dir_candidates_and_annotations(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout", create=True)
    image = _image(layout, "a")
    suffix = image.digest.replace(":", "-")
    payload = _payload(image.digest, {"env": "prod"})
    (tmp_path / f"payload-{suffix}").write_bytes(payload)
    (tmp_path / f"signature-{suffix}").write_bytes(base64.b64encode(SIGNER.sign(payload)) + b"\n")
    found = SignatureDir(tmp_path, image)
    (cand,) = found.signatures()
    assert cand.location == str(tmp_path / f"signature-{suffix}") and not cand.refused
    assert _judge(found) == (True, [])
    assert _judge(found, {"env": "prod"})[0]
    ok, reasons = _judge(found, {"env": "dev"})
    assert not ok and "annotations: missing or different env=dev (signed: env=prod)" in reasons[0]
    assert found.attestations() == [] and found.bundles() == []


def test_signature_dir_bundle_subject_annotations(tmp_path: Path) -> None:
    from airgap.signing.bundles import build_bundle

    layout = Layout(tmp_path / "layout", create=True)
    image = _image(layout, "b")
    suffix = image.digest.replace(":", "-")
    (tmp_path / f"bundle-{suffix}.json").write_bytes(build_bundle(SIGNER, "example.test/app", image.digest,
                                                                  {"team": "web"}))
    found = SignatureDir(tmp_path, image)
    assert _judge(found, {"team": "web"}) == (True, [])
    ok, reasons = _judge(found, {"team": "ops"})
    assert not ok and "team=ops (signed: team=web)" in reasons[0]
    assert json.loads(sign_statement(image.digest, {"team": "web"}))["subject"][0]["annotations"] == {"team": "web"}


def test_signature_dir_hostile_files(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "layout", create=True)
    image = _image(layout, "c")
    suffix = image.digest.replace(":", "-")
    (tmp_path / f"signature-{suffix}").write_bytes(b"!!not base64!!")
    (tmp_path / f"payload-{suffix}").write_bytes(b"\x00\xff junk")
    assert _judge(SignatureDir(tmp_path, image))[0] is False
    (tmp_path / f"payload-{suffix}").unlink()
    (cand,) = SignatureDir(tmp_path, image).signatures()
    assert cand.refused.endswith(f"payload-{suffix} is missing")
    (tmp_path / f"payload-{suffix}").write_bytes(b"x" * 2048)
    small = Limits(max_signature_layer_bytes=1024)
    (cand,) = SignatureDir(tmp_path, image, small).signatures()
    assert "over the 1024-byte limit" in cand.refused and cand.data == b""
    ok, reasons = _judge(SignatureDir(tmp_path, image, small))
    assert not ok and "over the 1024-byte limit" in reasons[0]


# ---- OCI layouts ------------------------------------------------------------------------------------------

def _cosign_save_layout(root: Path, *, signed: bool = True) -> tuple[Layout, Manifest]:
    """A layout shaped as `cosign save` writes it: the image and its signatures as `kind`-annotated entries."""
    layout = Layout(root, create=True)
    image = _image(layout, "saved")
    layout.write_blob(image.digest, len(image.data), [image.data])
    entries = [Descriptor(mt.OCI_MANIFEST, image.digest, len(image.data), annotations={KIND: KIND_IMAGE})]
    if signed:
        payload = _payload(image.digest)
        sigs = _sig_manifest(layout, [(payload, SIGNER.sign(payload))])
        layout.write_blob(sigs.digest, len(sigs.data), [sigs.data])
        entries.append(Descriptor(mt.OCI_MANIFEST, sigs.digest, len(sigs.data), annotations={KIND: KIND_SIGS}))
    index = _json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [e.to_json() for e in entries]})
    (root / "index.json").write_bytes(index)
    return layout, image


def test_layout_of_cosign_save(tmp_path: Path) -> None:
    _, image = _cosign_save_layout(tmp_path / "saved")
    found = open_layout_image(str(tmp_path / "saved"))
    assert found.digest == image.digest and found.saved_by_cosign and found.root
    assert len(found.signatures()) == 1 and _judge(found) == (True, [])
    assert open_layout_image(f"oci:{tmp_path / 'saved'}@{image.digest}").digest == image.digest
    _cosign_save_layout(tmp_path / "unsigned", signed=False)
    ok, reasons = _judge(open_layout_image(str(tmp_path / "unsigned")))
    assert not ok and "no signatures found" in reasons[0]


def test_layout_with_tagged_signatures_and_naming(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "copied", create=True)
    image = _image(layout, "copied")
    layout.push_manifest(image, "1.0")
    payload = _payload(image.digest)
    layout.push_manifest(_sig_manifest(layout, [(payload, SIGNER.sign(payload))]), cosign.signature_tag(image.digest))
    for text in (f"oci:{tmp_path / 'copied'}:1.0", str(tmp_path / "copied"), f"oci:{tmp_path / 'copied'}"):
        found = open_layout_image(text)
        assert found.digest == image.digest and not found.saved_by_cosign
        assert _judge(found) == (True, [])
    other = _image(layout, "other")
    layout.push_manifest(other, "2.0")
    with pytest.raises(ConfigError, match="holds 2 images; name one"):
        open_layout_image(str(tmp_path / "copied"))
    assert _judge(open_layout_image(f"oci:{tmp_path / 'copied'}:2.0"))[0] is False
    with pytest.raises(ConfigError, match="no image tagged"):
        open_layout_image(f"oci:{tmp_path / 'copied'}:3.0")


def test_layout_refs_and_hostile_layouts(tmp_path: Path) -> None:
    assert split_layout_ref(f"oci:{tmp_path}") == (str(tmp_path), None)
    assert split_layout_ref(f"{tmp_path}:v1") == (str(tmp_path), "v1")
    with pytest.raises(ConfigError, match="is not a directory"):
        split_layout_ref(str(tmp_path / "missing"))
    with pytest.raises(Error):
        split_layout_ref(f"oci:{tmp_path}@sha256:nothex")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (tmp_path / "broken" / "index.json").write_text("{not json")
    with pytest.raises(Error):
        open_layout_image(str(tmp_path / "broken"))
    # a blob that is not what its name says, or junk among the blobs, is never trusted as a referrer
    layout, image = _cosign_save_layout(tmp_path / "junk")
    blobs = tmp_path / "junk" / "blobs" / "sha256"
    (blobs / ("0" * 64)).write_bytes(_json({"subject": {"digest": image.digest}}))
    (blobs / "not-a-digest").write_bytes(b'{"subject": 1}')
    found = open_layout_image(str(tmp_path / "junk"))
    assert found.bundles() == [] and _judge(found)[0]
    # a signature entry whose blob is gone: a denial with the reason, not an exception
    sig_entry = next(e for e in json.loads((tmp_path / "junk" / "index.json").read_text())["manifests"]
                     if e["annotations"][KIND] == KIND_SIGS)
    (blobs / sig_entry["digest"].split(":")[1]).unlink()
    with pytest.raises(Error, match="missing"):
        open_layout_image(str(tmp_path / "junk")).signatures()
