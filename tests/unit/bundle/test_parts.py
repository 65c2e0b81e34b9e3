"""Split media without a registry: sizes, the parts manifest, the part writer and the part reader, over a real
small bundle (tests/support/bundles.py) cut into parts on disk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from support.bundles import Built, make_bundle

from airgap.bundle.parts import PartFiles, PartsManifest, parse_size, part_names
from airgap.bundle.reader import BundleReader
from airgap.bundle.source import find_parts, open_source
from airgap.errors import BundleError, ConfigError


@pytest.mark.parametrize(("text", "size"), [
    ("1048576", 1048576), ("64K", 65536), ("64KiB", 65536), ("64k", 65536), ("64KB", 64000), ("64M", 64 << 20),
    ("4G", 4 << 30), ("4GiB", 4 << 30), ("4000MB", 4_000_000_000), ("1T", 1 << 40), (" 2 M ", 2 << 20),
])
def test_sizes_read_like_split(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "4X", "1.5G", "-1", "4i", "4iB", "4B", "100"])
def test_bad_sizes_are_one_line_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)


def test_part_names_sort_in_order() -> None:
    assert part_names("b.tar", 2) == ["b.tar.part-0001", "b.tar.part-0002"]
    names = part_names("b.tar", 10001)
    assert names[0] == "b.tar.part-00001" and sorted(names) == names


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return make_bundle(tmp_path_factory.mktemp("parts"), layer_size=30_000)


def split(built: Built, directory: Path, size: int = 8192, name: str = "b.tar") -> PartsManifest:
    """Cut the bundle with the pack writer's PartFiles, written sequentially in odd-sized pieces."""
    directory.mkdir(parents=True, exist_ok=True)
    out = PartFiles(str(directory / name), size)
    data = built.data
    for i in range(0, len(data), 3001):
        out.write(data[i:i + 3001])
    manifest = out.finish(built.manifest.name, built.manifest.version, built.manifest.digest)
    out.commit(manifest, None)
    return manifest


def test_parts_concatenate_to_the_bundle_and_each_checks_alone(built: Built, tmp_path: Path) -> None:
    manifest = split(built, tmp_path)
    files = sorted(tmp_path.glob("b.tar.part-*"))
    assert [f.name for f in files] == [p.name for p in manifest.parts] and len(files) == -(-len(built.data) // 8192)
    assert b"".join(f.read_bytes() for f in files) == built.data
    for f, part in zip(files, manifest.parts, strict=True):
        assert hashlib.sha256(f.read_bytes()).hexdigest() == part.sha256
    doc = json.loads((tmp_path / "b.tar.parts.json").read_bytes())
    assert doc["bundleDigest"] == built.manifest.digest and doc["size"] == len(built.data)
    assert PartsManifest.from_bytes((tmp_path / "b.tar.parts.json").read_bytes()) == manifest


def test_positional_writes_give_the_same_parts(built: Built, tmp_path: Path) -> None:
    manifest = split(built, tmp_path / "seq")
    out = PartFiles(str(tmp_path / "b.tar"), 8192)
    out.truncate(len(built.data))
    pieces = [(i, built.data[i:i + 5000]) for i in range(0, len(built.data), 5000)]
    for offset, piece in reversed(pieces):
        out.pwrite(piece, offset)
    assert out.finish("tamper", "1.0.0", built.manifest.digest) == manifest


def test_a_new_pack_removes_stale_parts_of_the_same_output(built: Built, tmp_path: Path) -> None:
    split(built, tmp_path, size=4096)
    (tmp_path / "b.tar.part-extra").write_bytes(b"not a part")
    (tmp_path / "other.tar.part-0001").write_bytes(b"another bundle")
    manifest = split(built, tmp_path, size=16384)
    assert sorted(p.name for p in tmp_path.glob("b.tar.part-0*")) == [p.name for p in manifest.parts]
    assert (tmp_path / "other.tar.part-0001").exists() and (tmp_path / "b.tar.part-extra").exists()


def read_all(args: list[str], **kwargs: object) -> BundleReader:
    with open_source(args, **kwargs) as source:  # type: ignore[arg-type]
        reader = BundleReader(source.stream, allow_unsigned=True)
        reader.finish()
        return reader


def test_parts_read_as_one_bundle_in_any_form(built: Built, tmp_path: Path) -> None:
    split(built, tmp_path)
    parts = [str(p) for p in sorted(tmp_path.glob("b.tar.part-*"))]
    for args in ([str(tmp_path)], [str(tmp_path / "b.tar.parts.json")], parts[::-1],
                 [*parts, str(tmp_path / "b.tar.parts.json")]):
        reader = read_all(args)
        assert reader.digest == built.manifest.digest and reader.bytes_read == len(built.data)


@pytest.mark.parametrize(("damage", "message"), [
    ("missing", r"part b\.tar\.part-0003 is missing"),
    ("truncated", r"part .*b\.tar\.part-0003: 8000 bytes, b\.tar\.parts\.json lists 8192 \(truncated"),
    ("flipped", r"part .*b\.tar\.part-0003: sha256 .* does not match b\.tar\.parts\.json's"),
    ("flipped-padding", r"part .*b\.tar\.part-0001: sha256 .* does not match"),
    ("extra", r"unexpected extra part .*b\.tar\.part-0099"),
    ("swapped", r"part .*b\.tar\.part-000[23]: sha256 .* does not match"),
])
def test_damaged_parts_are_named(built: Built, tmp_path: Path, damage: str, message: str) -> None:
    split(built, tmp_path)
    third = tmp_path / "b.tar.part-0003"
    if damage == "missing":
        third.unlink()
    elif damage == "truncated":
        third.write_bytes(third.read_bytes()[:8000])
    elif damage == "flipped":
        data = bytearray(third.read_bytes())
        data[4000] ^= 1
        third.write_bytes(bytes(data))
    elif damage == "flipped-padding":  # bytes the tar reader skips: only the part digest sees them
        first = tmp_path / "b.tar.part-0001"
        data = bytearray(first.read_bytes())
        data[8191] ^= 1
        assert built.data[8191] == 0
        first.write_bytes(bytes(data))
    elif damage == "extra":
        (tmp_path / "b.tar.part-0099").write_bytes(b"x")
    else:
        second = tmp_path / "b.tar.part-0002"
        a, b = second.read_bytes(), third.read_bytes()
        second.write_bytes(b)
        third.write_bytes(a)
    with pytest.raises(BundleError, match=message):
        read_all([str(tmp_path)])


def test_a_part_of_another_bundle_is_refused(built: Built, tmp_path: Path) -> None:
    other = make_bundle(tmp_path / "o", layer_size=30_000, seed=7)
    split(built, tmp_path / "a")
    split(other, tmp_path / "b")
    shutil.copy(tmp_path / "b" / "b.tar.part-0004", tmp_path / "a" / "b.tar.part-0004")
    with pytest.raises(BundleError, match=r"part .*b\.tar\.part-0004: sha256 .*part of another bundle"):
        read_all([str(tmp_path / "a")])
    # the whole set of another bundle with this one's parts manifest: the bundle digest differs
    os.replace(tmp_path / "a" / "b.tar.parts.json", tmp_path / "b" / "b.tar.parts.json")
    with pytest.raises(BundleError, match=r"part .*b\.tar\.part-0001: sha256 .* does not match"):
        read_all([str(tmp_path / "b")])


def test_parts_manifest_checks(built: Built, tmp_path: Path) -> None:
    split(built, tmp_path)
    signer = built.signer
    from airgap.bundle.detached import sign_detached

    pm = tmp_path / "b.tar.parts.json"
    with pytest.raises(BundleError, match=r"b\.tar\.parts\.json is not signed \(no b\.tar\.parts\.json\.sig\)"):
        find_parts([str(tmp_path)], key=signer.public_key)
    Path(f"{pm}.sig").write_bytes(sign_detached(signer, pm.read_bytes()))
    assert find_parts([str(tmp_path)], key=signer.public_key).signed_by is not None
    other = make_bundle(tmp_path / "o", seed=3).signer
    with pytest.raises(BundleError, match=r"b\.tar\.parts\.json\.sig does not verify"):
        find_parts([str(tmp_path)], key=other.public_key)
    with pytest.raises(BundleError, match=r"is for bundle sha256:.*not the pinned sha256:0000"):
        find_parts([str(pm)], bundle_digest="sha256:" + "0" * 64)
    doc = json.loads(pm.read_bytes())
    doc["parts"][1]["size"] += 1
    pm.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(BundleError, match=r"parts\[1\]\.size"):
        find_parts([str(pm)])
    pm.write_bytes(b'{"a": 1}')
    with pytest.raises(BundleError, match=r"b\.tar\.parts\.json: unknown field 'a'"):
        find_parts([str(pm)])


def test_what_is_not_a_part_set(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"")
    (tmp_path / "y.tar.part-0001").write_bytes(b"")
    with pytest.raises(ConfigError, match="neither a part"):
        find_parts([str(tmp_path / "x.tar"), str(tmp_path / "y.tar.part-0001")])
    with pytest.raises(ConfigError, match="no parts manifest beside the parts"):
        find_parts([str(tmp_path / "y.tar.part-0001")])
    with pytest.raises(ConfigError, match="holds no parts manifest"):
        find_parts([str(tmp_path)])


def test_parts_spread_over_several_media(built: Built, tmp_path: Path) -> None:
    """Each medium holds some parts and a copy of the parts manifest: name both directories, or the parts."""
    split(built, tmp_path / "all")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i, part in enumerate(sorted((tmp_path / "all").glob("b.tar.part-*"))):
        shutil.copy(part, (a if i % 2 else b) / part.name)
    for medium in (a, b):
        shutil.copy(tmp_path / "all" / "b.tar.parts.json", medium)
    assert read_all([str(a), str(b)]).digest == built.manifest.digest
    assert read_all([str(p) for p in sorted(b.glob("*.part-*"))] + [str(a)]).digest == built.manifest.digest
    (a / "b.tar.parts.json").write_bytes((a / "b.tar.parts.json").read_bytes().replace(b'"name":"tamper"',
                                                                                        b'"name":"tampe2"'))
    with pytest.raises(ConfigError, match="parts manifests of more than one bundle"):
        find_parts([str(a), str(b)])
