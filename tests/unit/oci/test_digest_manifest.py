import hashlib
import json

import pytest

from airgap import digest as digests
from airgap.errors import IntegrityError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Manifest, referrers_tag


def _d(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_verified_stream_passes_good_bytes() -> None:
    chunks = [b"abc", b"def", b"g"]
    assert b"".join(digests.verified_stream(chunks, _d(b"abcdefg"), 7, "x")) == b"abcdefg"


def test_verified_stream_holds_back_last_chunk_on_mismatch() -> None:
    got: list[bytes] = []
    with pytest.raises(IntegrityError, match="does not match"):
        for chunk in digests.verified_stream([b"abc", b"XYZ"], _d(b"abcdef"), 6, "blob"):
            got.append(chunk)
    # The consumer never saw the complete (wrong) stream.
    assert got == [b"abc"]


def test_verified_stream_stops_reading_past_declared_size() -> None:
    def endless():  # a hostile server that never stops
        while True:
            yield b"x" * 1024

    with pytest.raises(IntegrityError, match="more than the expected 4096"):
        list(digests.verified_stream(endless(), _d(b""), 4096, "blob"))


def test_verified_stream_rejects_short_stream() -> None:
    with pytest.raises(IntegrityError, match="got 3 bytes, expected 4"):
        list(digests.verified_stream([b"abc"], _d(b"abcd"), 4, "blob"))


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "a" * 32, "sha256:" + "A" * 64, "", None])
def test_malformed_digests_are_rejected(bad: object) -> None:
    with pytest.raises(IntegrityError):
        digests.validate(bad)  # type: ignore[arg-type]


def _manifest(**extra: object) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
           "config": {"mediaType": mt.OCI_CONFIG, "digest": _d(b"{}"), "size": 2},
           "layers": [{"mediaType": mt.OCI_LAYER, "digest": _d(b"l"), "size": 1}]}
    doc.update(extra)
    return json.dumps(doc).encode()


def test_manifest_parses_and_keeps_exact_bytes() -> None:
    data = _manifest()
    m = Manifest.from_bytes(data, mt.OCI_MANIFEST, _d(data))
    assert m.data == data and m.digest == _d(data) and not m.is_index
    assert [b.digest for b in m.blobs] == [_d(b"{}"), _d(b"l")]


def test_manifest_digest_mismatch_is_detected() -> None:
    with pytest.raises(IntegrityError, match="does not match"):
        Manifest.from_bytes(_manifest(), mt.OCI_MANIFEST, _d(b"other"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (_manifest(schemaVersion=1), "schemaVersion"),
        (_manifest(layers=[{"mediaType": "x", "digest": "sha256:zz", "size": 1}]), "malformed digest"),
        (_manifest(layers=[{"mediaType": "x", "digest": _d(b"a"), "size": -1}]), "bad size"),
        (json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX}).encode(), "no manifests list"),
    ],
)
def test_malformed_manifests_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        Manifest.from_bytes(data, mt.OCI_MANIFEST if b"index" not in data else mt.OCI_INDEX)


def test_served_type_must_agree_with_declared_type() -> None:
    with pytest.raises(IntegrityError, match="served as"):
        Manifest.from_bytes(_manifest(), mt.DOCKER_MANIFEST)


def test_referrers_tag_schema() -> None:
    assert referrers_tag("sha256:" + "b" * 64) == "sha256-" + "b" * 64
