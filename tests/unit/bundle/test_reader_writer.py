"""Bundle writer and reader: round trips, reproducibility, trust of the bundle, order enforcement, pipes.

The bundles are made by ``support.bundles.make_bundle`` with the real writer and a real signing key.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
from support.bundles import CREATED, Built, make_bundle, make_signer, sha

from airgap.bundle.manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    OCI_LAYOUT_BYTES,
    OCI_LAYOUT_NAME,
    SIGNATURE_NAME,
    blob_name,
)
from airgap.bundle.reader import BundleReader
from airgap.bundle.writer import BundleWriter, ustar_header
from airgap.config import Limits
from airgap.errors import BundleError


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return make_bundle(tmp_path_factory.mktemp("bundle"))


def read_all(reader: BundleReader) -> dict[str, bytes]:
    out = {d: b"".join(chunks) for d, _size, chunks in reader.blobs()}
    reader.finish()
    return out


# ---- round trip -----------------------------------------------------------------------------------


def test_round_trip_signed(built: Built) -> None:
    from airgap.keys.public import key_id

    reader = BundleReader(io.BytesIO(built.data), key=built.public_key)
    assert reader.signed_by == key_id(built.public_key)
    assert reader.manifest == built.manifest
    assert reader.digest == built.manifest.digest == sha(reader.manifest_bytes)
    assert reader.files == built.files
    assert read_all(reader) == built.blobs
    assert reader.bytes_read == len(built.data)


def test_tar_is_plain_ustar_with_fixed_metadata(built: Built) -> None:
    with tarfile.open(fileobj=io.BytesIO(built.data), mode="r:") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == [MANIFEST_NAME, SIGNATURE_NAME, *built.files, *(blob_name(d) for d in built.blobs)]
        for m in members:
            assert (m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.type) == (
                0o644, 0, 0, "", "", CREATED, tarfile.REGTYPE)
        first = tar.extractfile(members[-1])
        assert first is not None and first.read() == list(built.blobs.values())[-1]
    assert len(built.data) % 10240 == 0


def test_reproducible(tmp_path: Path) -> None:
    signer = make_signer("ed25519")
    a = make_bundle(tmp_path / "a", signer=signer)
    b = make_bundle(tmp_path / "b", signer=signer)
    assert a.data == b.data
    assert make_bundle(tmp_path / "c", signer=signer, seed=2).data != a.data


def test_pinned_digest_and_allow_unsigned(built: Built) -> None:
    assert BundleReader(io.BytesIO(built.data), bundle_digest=built.manifest.digest).signed_by is None
    r = BundleReader(io.BytesIO(built.data), allow_unsigned=True)
    assert r.signed_by is None and r.signature is not None
    with pytest.raises(BundleError, match="does not match the pinned"):
        BundleReader(io.BytesIO(built.data), bundle_digest="sha256:" + "0" * 64)


def test_untrusted_bundle_refused(built: Built) -> None:
    with pytest.raises(BundleError, match=r"not trusted: .*--key.*--bundle-digest.*--allow-unsigned-bundle"):
        BundleReader(io.BytesIO(built.data))
    with pytest.raises(BundleError, match="does not verify with the given key"):
        BundleReader(io.BytesIO(built.data), key=[make_signer().public_key])
    with pytest.raises(BundleError, match="does not verify with the given key"):
        BundleReader(io.BytesIO(built.data), key=make_signer().public_key, allow_unsigned=True)


def test_unsigned_bundle_with_key_refused(tmp_path: Path) -> None:
    b = make_bundle(tmp_path, sign=False)
    with pytest.raises(BundleError, match="not signed"):
        BundleReader(io.BytesIO(b.data), key=b.public_key)
    assert BundleReader(io.BytesIO(b.data), bundle_digest=b.manifest.digest).signature is None


def test_key_list_any_matches(built: Built) -> None:
    r = BundleReader(io.BytesIO(built.data), key=[make_signer().public_key, built.public_key])
    assert r.signed_by is not None


# ---- streaming --------------------------------------------------------------------------------------


class _Trickle(io.RawIOBase):
    """Non-seekable and returns at most 1000 bytes per read (a pipe under load)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), 1000, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def test_short_reads_and_unconsumed_blobs(built: Built) -> None:
    reader = BundleReader(_Trickle(built.data), key=built.public_key)  # type: ignore[arg-type]
    got = []
    for digest, size, chunks in reader.blobs():
        got.append((digest, size))
        next(chunks, None)  # consume at most one chunk: the reader drains (and verifies) the rest
    reader.finish()
    assert got == [(d, len(b)) for d, b in built.blobs.items()]


def test_real_pipe(built: Built) -> None:
    rfd, wfd = os.pipe()

    def feed() -> None:
        with os.fdopen(wfd, "wb") as w:
            w.write(built.data)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(rfd, "rb") as r:
        assert not r.seekable()
        reader = BundleReader(r, key=built.public_key, limits=Limits(chunk_bytes=4096))
        assert read_all(reader) == built.blobs
    t.join()


def test_last_chunk_held_until_digest_matches(built: Built) -> None:
    digest = built.kinds["layer"]
    blob = built.blobs[digest]
    data = bytearray(built.data)
    pos = bytes(built.data).index(blob) + len(blob) - 1
    data[pos] ^= 1
    reader = BundleReader(io.BytesIO(bytes(data)), key=built.public_key, limits=Limits(chunk_bytes=4096))
    seen = b""
    with pytest.raises(BundleError, match=f"{blob_name(digest)}: content digest"):
        for d, _size, chunks in reader.blobs():
            for chunk in chunks:
                if d == digest:
                    seen += chunk
    assert 0 < len(seen) < len(blob)  # got the verified-so-far prefix, never the whole (wrong) blob
    with pytest.raises(BundleError):
        reader.finish()


# ---- writer misuse ------------------------------------------------------------------------------------


def _writer(built: Built) -> tuple[BundleWriter, io.BytesIO]:
    out = io.BytesIO()
    w = BundleWriter(out, CREATED)
    w.add_file(MANIFEST_NAME, built.manifest.to_bytes())
    return w, out


def _all_files(w: BundleWriter, built: Built) -> None:
    for name, data in built.files.items():
        w.add_file(name, data)


def test_writer_requires_manifest_first(built: Built) -> None:
    w = BundleWriter(io.BytesIO(), CREATED)
    with pytest.raises(BundleError, match="before airgap-bundle.json"):
        w.add_file(OCI_LAYOUT_NAME, OCI_LAYOUT_BYTES)
    with pytest.raises(BundleError, match="created"):
        BundleWriter(io.BytesIO(), CREATED + 1).add_file(MANIFEST_NAME, built.manifest.to_bytes())


def test_writer_refuses_out_of_order_and_unlisted(built: Built) -> None:
    w, _ = _writer(built)
    with pytest.raises(BundleError, match="out of order or not listed"):
        w.add_file(INDEX_NAME, built.files[INDEX_NAME])
    w, _ = _writer(built)
    with pytest.raises(BundleError, match="written before"):
        w.add_blob(built.kinds["layer"], len(built.blobs[built.kinds["layer"]]), [])
    w, _ = _writer(built)
    with pytest.raises(BundleError, match="does not match its digest"):
        w.add_file(next(iter(built.files)), b"other")
    w, _ = _writer(built)
    _all_files(w, built)
    with pytest.raises(BundleError, match="must come right after"):
        w.add_file(SIGNATURE_NAME, b"c2ln")


def test_writer_checks_blobs(built: Built) -> None:
    w, _ = _writer(built)
    _all_files(w, built)
    layer = built.kinds["layer"]
    with pytest.raises(BundleError, match="does not list it"):
        w.add_blob(sha(b"x"), 1, [b"x"])
    with pytest.raises(BundleError, match="size 3 differs"):
        w.add_blob(layer, 3, [b"abc"])
    with pytest.raises(BundleError, match="does not match"):
        w.add_blob(layer, len(built.blobs[layer]), [bytes(len(built.blobs[layer]))])
    with pytest.raises(BundleError, match="failed earlier"):
        w.close()
    w, _ = _writer(built)
    _all_files(w, built)
    w.add_blob(layer, len(built.blobs[layer]), [built.blobs[layer]])
    with pytest.raises(BundleError, match="twice"):
        w.add_blob(layer, len(built.blobs[layer]), [built.blobs[layer]])
    with pytest.raises(BundleError, match=r"missing \d+ listed blob"):
        w.close()


def test_header_sizes_over_8_gib_use_base256() -> None:
    block = ustar_header("blobs/sha256/" + "a" * 64, 1 << 40, CREATED)
    info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    assert (info.size, info.name, info.mtime) == (1 << 40, "blobs/sha256/" + "a" * 64, CREATED)


def test_empty_input_and_garbage() -> None:
    with pytest.raises(BundleError, match=r"^bundle is empty \(0 bytes\)$"):
        BundleReader(io.BytesIO(b""), allow_unsigned=True)
    with pytest.raises(BundleError, match=r"^not an airgap bundle \(not a tar archive"):
        BundleReader(io.BytesIO(b"x" * 1024), allow_unsigned=True)
    with pytest.raises(BundleError, match=r"^bundle is empty \(an empty tar archive"):
        BundleReader(io.BytesIO(bytes(10240)), allow_unsigned=True)


@pytest.mark.parametrize(("compress", "kind"), [("gzip", "gzip"), ("bz2", "bzip2"), ("lzma", "xz")])
def test_a_compressed_bundle_is_named_as_such(built: Built, compress: str, kind: str) -> None:
    import bz2
    import gzip
    import lzma

    squeeze = {"gzip": gzip.compress, "bz2": bz2.compress, "lzma": lzma.compress}[compress]
    with pytest.raises(BundleError, match=rf"^this is {kind}-compressed: airgap bundles are plain tar"):
        BundleReader(io.BytesIO(squeeze(built.data)), allow_unsigned=True)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_another_tar_is_not_an_airgap_bundle(fmt: int) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    with pytest.raises(BundleError, match=r"^not an airgap bundle \(no airgap-bundle.json first: it starts with '"):
        BundleReader(io.BytesIO(out.getvalue()), allow_unsigned=True)




# ---- inspect and trust export ---------------------------------------------------------------------------


def test_inspect_and_trust_export(built: Built, tmp_path: Path) -> None:
    from airgap.bundle.inspect import inspect, render, trust_export, write_trust
    from airgap.errors import ConfigError
    from airgap.keys.public import key_id
    from airgap.verification.trust import Trust

    path = tmp_path / "b.tar"
    path.write_bytes(built.data)
    info = inspect(path)
    assert (info["digest"], info["signed"], info["signed_by"], info["trusted"]) == (
        built.manifest.digest, True, None, False)
    img = info["images"][0]
    assert (img["ref"], img["signatures"], [p["platform"] for p in img["platforms"]]) == (
        built.upstream, 1, ["linux/amd64", "linux/arm64"])
    assert img["bytes"] == built.manifest.blob_bytes
    assert [k["name"] for k in info["keys"]] == ["release"]
    assert info["policies"]["policies"][0]["name"] == "team" and info["policies"]["settings"]["noMatchPolicy"] == "deny"
    checked = inspect(path, key=built.public_key, check_blobs=True)
    assert checked["signed_by"] == key_id(built.public_key) and checked["bytes"] == len(built.data)
    text = render(checked)
    assert built.manifest.digest in text and "verified with key" in text and built.upstream in text

    with pytest.raises(BundleError, match="not trusted"):
        trust_export(path, tmp_path / "trust")
    written = trust_export(path, tmp_path / "trust", key=built.public_key)
    assert written == ["keys.json", "keys/release.pub", "policy.yaml"]
    trust = Trust.load(tmp_path / "trust")
    assert trust.policy is not None and [e.key_id for e in trust.keys.values()] == [key_id(built.public_key)]
    assert trust_export(path, tmp_path / "trust", bundle_digest=built.manifest.digest) == written  # idempotent
    (tmp_path / "trust" / "keys" / "stale.pub").write_bytes(b"x")
    with pytest.raises(ConfigError, match="holds files not from this bundle"):
        write_trust({"trust/policy.yaml": b""}, tmp_path / "trust")
