"""The bundle manifest: canonical bytes, strict parsing, and errors that name the field."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from airgap.bundle.manifest import (
    OCI_LAYOUT_BYTES,
    Attachment,
    BundleManifest,
    FileEntry,
    ImageEntry,
    PlatformEntry,
    blob_name,
    file_order,
    is_file_name,
)
from airgap.errors import BundleError


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


L, C, M, I, S = (sha(x) for x in (b"layer", b"config", b"manifest", b"index", b"sig"))  # noqa: E741


def sample() -> BundleManifest:
    image = ImageEntry(
        upstream="quay.io/keycloak/keycloak:21.1.2", digest=I, media_type="application/vnd.oci.image.index.v1+json",
        platforms=(PlatformEntry("linux/amd64", M),), manifests=(M, I), blobs=(L, C),
        attachments=(Attachment("signature", "sha256-" + I[7:] + ".sig", S, I), Attachment("referrer", None, S, I)),
        signature_repo="quay.io/sigs/keycloak")
    return BundleManifest(
        name="demo", version="1.0.0", created=1700000000, images=(image,),
        keys={"schemaVersion": 1, "keys": [{"name": "release", "id": "sha256:" + "a" * 64}]},
        files={"oci-layout": FileEntry.of(OCI_LAYOUT_BYTES), "index.json": FileEntry.of(b"{}"),
               "trust/policy.yaml": FileEntry.of(b"")},
        blobs={L: 5, C: 6, M: 8, I: 5, S: 3})


def test_round_trip_and_digest() -> None:
    m = sample()
    data = m.to_bytes()
    assert BundleManifest.from_bytes(data) == m
    assert m.digest == sha(data)
    doc = json.loads(data)
    assert (doc["schema"], doc["blobCount"], doc["blobBytes"]) == ("airgap.dev/bundle/v1", 5, 27)
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert m.entry_names()[:3] == ["trust/policy.yaml", "oci-layout", "index.json"]
    assert m.entry_names()[3] == blob_name(L)


def test_non_canonical_refused() -> None:
    doc = json.loads(sample().to_bytes())
    with pytest.raises(BundleError, match="canonical"):
        BundleManifest.from_bytes(json.dumps(doc, sort_keys=True, indent=1).encode())
    with pytest.raises(BundleError, match="canonical"):
        BundleManifest.from_bytes(json.dumps(dict(reversed(doc.items())), separators=(",", ":")).encode())


def _mutate(fn: Callable[[dict[str, Any]], Any]) -> bytes:
    doc = json.loads(sample().to_bytes())
    fn(doc)
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


Mut = Callable[[dict[str, Any]], Any]
BAD: list[tuple[Mut, str]] = [
    (lambda d: d.update(schema="airgap.dev/bundle/v9"), "schema: unsupported bundle schema"),
    (lambda d: d.pop("name"), "name: required field missing"),
    (lambda d: d.update(extra=1), "extra: unknown field"),
    (lambda d: d.update(created=-1), "created: expected a non-negative integer"),
    (lambda d: d.update(created=True), "created: expected a non-negative integer"),
    (lambda d: d.update(blobCount=4), "blobCount: says 4"),
    (lambda d: d.update(blobBytes=1), "blobBytes: says 1"),
    (lambda d: d["blobs"].update({"sha256:zz": 1}), "expected a sha256 digest"),
    (lambda d: d["files"].update({"../etc/passwd": {"digest": L, "size": 1}}), "not an allowed bundle entry name"),
    (lambda d: d["files"].update({"trust/run.sh": {"digest": L, "size": 1}}), "not an allowed bundle entry name"),
    (lambda d: d["files"].update({"airgap-bundle.json": {"digest": L, "size": 1}}), "not an allowed bundle entry"),
    (lambda d: d["files"].pop("index.json"), "files: index.json is not listed"),
    (lambda d: d["files"]["oci-layout"].update(size="1"), r"files\[oci-layout\].size: expected a non-negative int"),
    (lambda d: d["images"][0].update(digest=sha(b"x")), r"images\[0\].digest: sha256:\w+ is not among the bundle"),
    (lambda d: d["images"][0].update(ref="Not A Ref"), r"images\[0\].ref: invalid image reference"),
    (lambda d: d["images"][0]["platforms"][0].update(platform="linux"), r"images\[0\].platforms\[0\].platform: "),
    (lambda d: d["images"][0]["attachments"][0].update(kind="magic"), r"images\[0\].attachments\[0\].kind: "),
    (lambda d: d["images"][0]["attachments"][0].update(tag="../x"), r"images\[0\].attachments\[0\].tag: invalid"),
    (lambda d: d["images"][0]["manifests"].append("sha256:1"), r"images\[0\].manifests\[2\]: expected a sha256"),
    (lambda d: d["images"][0].update(signatureRepo=3), r"images\[0\].signatureRepo: expected a non-empty string"),
    (lambda d: d["images"].append(None), r"images\[1\]: expected an object"),
    (lambda d: d["keys"].update(keys="x"), "keys.keys: expected a list"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD, ids=[m for _f, m in BAD])
def test_invalid_manifests_name_the_field(mutate: Mut, message: str) -> None:
    doc = json.loads(sample().to_bytes())
    mutate(doc)
    with pytest.raises(BundleError, match=message) as info:
        BundleManifest.from_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    assert str(info.value).startswith("airgap-bundle.json: ") and "\n" not in str(info.value)


def test_duplicate_image_and_json_traps() -> None:
    with pytest.raises(BundleError, match="listed twice"):
        BundleManifest.from_bytes(_mutate(lambda d: d["images"].append(d["images"][0])))
    data = sample().to_bytes()
    with pytest.raises(BundleError, match="duplicate key"):
        BundleManifest.from_bytes(data.replace(b'{"blobBytes"', b'{"blobBytes":1,"blobBytes"', 1))
    with pytest.raises(BundleError, match="non-integer"):
        BundleManifest.from_bytes(data.replace(b'"created":1700000000', b'"created":1.5'))
    with pytest.raises(BundleError, match="not UTF-8"):
        BundleManifest.from_bytes(b"\xff" + data)
    with pytest.raises(BundleError, match="not valid JSON"):
        BundleManifest.from_bytes(data[:-1])


def test_names_and_order() -> None:
    assert file_order(["index.json", "trust/policy.yaml", "oci-layout", "trust/keys/a.pub", "trust/keys.json"]) == [
        "trust/keys.json", "trust/keys/a.pub", "trust/policy.yaml", "oci-layout", "index.json"]
    assert is_file_name("trust/trusted_roots/public-good.json")
    assert not is_file_name("trust/keys/../x.pub") and not is_file_name("/trust/policy.yaml")
    assert not is_file_name("trust/keys/" + "a" * 100 + ".pub")
    with pytest.raises(BundleError):
        blob_name("sha512:" + "a" * 128)


def delta_sample() -> BundleManifest:
    """The sample as a delta: its layer is left out (the site has it)."""
    from dataclasses import replace

    from airgap.bundle.manifest import Delta

    m = sample()
    return replace(m, blobs={d: s for d, s in m.blobs.items() if d != L},
                   delta=Delta("inventory", sha(b"inventory"), {L: 5}))


def test_a_delta_round_trips_and_pins_what_it_leaves_out() -> None:
    m = delta_sample()
    data = m.to_bytes()
    assert BundleManifest.from_bytes(data) == m and m.omitted == {L: 5} and m.blob_count == 4
    doc = json.loads(data)
    assert doc["delta"] == {"schema": "airgap.dev/bundle-delta/v1", "kind": "inventory", "base": sha(b"inventory"),
                            "omitted": {L: 5}}
    assert L not in m.entry_names() and blob_name(L) not in m.entry_names()
    assert "delta" not in json.loads(sample().to_bytes())  # a full bundle's bytes (and digest) are unchanged


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["delta"].update(schema="airgap.dev/bundle-delta/v9"), "unsupported delta schema"),
    (lambda d: d["delta"].update(kind="guess"), "delta.kind: expected one of inventory, bundle"),
    (lambda d: d["delta"].update(base="sha256:xyz"), "delta.base: expected a sha256 digest"),
    (lambda d: d["delta"].update(extra=1), "delta.extra: unknown field"),
    (lambda d: d["delta"]["omitted"].update({C: 6}), "the blob is carried too"),
    (lambda d: d["delta"]["omitted"].update({sha(b"stray"): 1}), "no image names this blob"),
    (lambda d: d["delta"]["omitted"].pop(L), "is not among the bundle's blobs"),
])
def test_delta_descriptions_are_strict(change: Callable[[dict[str, Any]], None], message: str) -> None:
    doc = json.loads(delta_sample().to_bytes())
    change(doc)
    with pytest.raises(BundleError, match=message):
        BundleManifest.from_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


@pytest.mark.parametrize("carried", ["index", "platform", "signature"])
def test_a_delta_never_leaves_out_a_manifest_or_signature(carried: str) -> None:
    doc = json.loads(delta_sample().to_bytes())
    digest = {"index": I, "platform": M, "signature": S}[carried]
    doc["delta"]["omitted"][digest] = doc["blobs"].pop(digest)
    doc["images"][0]["blobs"].append(digest)  # even when an image also lists it among its blobs
    doc["blobCount"] -= 1
    doc["blobBytes"] = sum(doc["blobs"].values())
    with pytest.raises(BundleError, match="omitted by the delta: manifests and signatures are always carried"):
        BundleManifest.from_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def self_sample() -> BundleManifest:
    """The sample as a bundle that carries airgap: its image is airgap's own, and a CLI archive is pinned."""
    from dataclasses import replace

    from airgap.bundle.manifest import CliPin, SelfCarry

    return replace(sample(), airgap=SelfCarry("quay.io/keycloak/keycloak:21.1.2",
                                              CliPin("demo.tar.airgap.pyz", sha(b"pyz"), 3, "0.1.0", "3.11",
                                                     "manylinux_2_28_x86_64")))


def test_a_bundle_that_carries_airgap_round_trips() -> None:
    from dataclasses import replace

    from airgap.bundle.manifest import SelfCarry

    m = self_sample()
    data = m.to_bytes()
    assert BundleManifest.from_bytes(data) == m
    assert json.loads(data)["airgap"] == {
        "image": "quay.io/keycloak/keycloak:21.1.2",
        "cli": {"name": "demo.tar.airgap.pyz", "digest": sha(b"pyz"), "size": 3, "version": "0.1.0",
                "python": "3.11", "platform": "manylinux_2_28_x86_64"}}
    assert m.airgap is not None
    for only in (SelfCarry(image="quay.io/keycloak/keycloak:21.1.2"), SelfCarry(cli=m.airgap.cli)):
        one = replace(m, airgap=only)
        assert BundleManifest.from_bytes(one.to_bytes()) == one
    assert "airgap" not in json.loads(sample().to_bytes())  # other bundles' bytes (and digests) are unchanged
    assert m.digest != sample().digest  # the signature over the manifest covers what it says of airgap


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(airgap={}), "airgap: expected image, cli or both"),
    (lambda d: d.update(airgap=[]), "airgap: expected an object"),
    (lambda d: d["airgap"].update(image="quay.io/other:1"), "airgap.image: 'quay.io/other:1' is not one of the"),
    (lambda d: d["airgap"].update(extra=1), "airgap.extra: unknown field"),
    (lambda d: d["airgap"]["cli"].update(name="../x.airgap.pyz"), "airgap.cli.name: malformed"),
    (lambda d: d["airgap"]["cli"].update(name="x.pyz"), "airgap.cli.name: malformed"),
    (lambda d: d["airgap"]["cli"].update(digest="sha256:1"), "airgap.cli.digest: expected a sha256 digest"),
    (lambda d: d["airgap"]["cli"].update(size=-1), "airgap.cli.size: expected a non-negative integer"),
    (lambda d: d["airgap"]["cli"].update(python="3"), "airgap.cli.python: malformed"),
    (lambda d: d["airgap"]["cli"].update(platform="win_amd64"), "airgap.cli.platform: malformed"),
    (lambda d: d["airgap"]["cli"].pop("version"), "airgap.cli.version: required field missing"),
])
def test_what_a_bundle_says_of_airgap_is_strict(change: Mut, message: str) -> None:
    doc = json.loads(self_sample().to_bytes())
    change(doc)
    with pytest.raises(BundleError, match=message):
        BundleManifest.from_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
