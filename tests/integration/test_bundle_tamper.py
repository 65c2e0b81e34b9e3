"""The tampering corpus: every way a bundle can be corrupted is refused with one clear line naming the entry.

A small real bundle (two-platform image, cosign signature, trust from a real spec, signed manifest) is built
with the writer, then corrupted: a flipped byte in each kind of entry, truncation at several points, appended
and duplicated entries, unsafe paths, links/devices/FIFOs/directories, a header claiming 1 TB, a wrong
signature, an unlisted trust file, a missing blob. The reader is run over a real file and over a pipe (not
seekable). Where ``airgap.bundle.load`` pushes into a registry, a failed load must leave no tag at all: every
tag would otherwise point at content nobody verified.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.bundles import CREATED, Built, make_bundle, make_signer  # noqa: E402

from airgap.bundle.manifest import INDEX_NAME, MANIFEST_NAME, OCI_LAYOUT_NAME, SIGNATURE_NAME, blob_name  # noqa: E402
from airgap.bundle.reader import BundleReader  # noqa: E402
from airgap.bundle.writer import BLOCK, RECORD, ustar_header  # noqa: E402
from airgap.errors import BundleError  # noqa: E402

Entry = tuple[str, bytes, bytes]  # name, header block, data with padding
TB = 1 << 40


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return make_bundle(tmp_path_factory.mktemp("tamper"))


def split(data: bytes) -> list[Entry]:
    out: list[Entry] = []
    pos = 0
    while data[pos:pos + BLOCK] != bytes(BLOCK):
        header = data[pos:pos + BLOCK]
        name = header[:100].split(b"\0", 1)[0].decode()
        size = int(header[124:136].split(b"\0", 1)[0], 8)
        padded = (size + BLOCK - 1) // BLOCK * BLOCK
        out.append((name, header, data[pos + BLOCK:pos + BLOCK + padded]))
        pos += BLOCK + padded
    return out


def join(entries: list[Entry]) -> bytes:
    body = b"".join(h + d for _n, h, d in entries) + bytes(2 * BLOCK)
    return body + bytes(-len(body) % RECORD)


def entry(name: str, data: bytes = b"", typeflag: bytes = b"0", linkname: str = "", size: int | None = None) -> Entry:
    header = ustar_header(name, len(data) if size is None else size, CREATED, typeflag=typeflag, linkname=linkname)
    return name, header, data + bytes(-len(data) % BLOCK)


def index_of(entries: list[Entry], name: str) -> int:
    return next(i for i, e in enumerate(entries) if e[0] == name)


def flip(name_of: Callable[[Built], str], at: int = 0) -> Callable[[Built], bytes]:
    def mutate(b: Built) -> bytes:
        entries = split(b.data)
        i = index_of(entries, name_of(b))
        name, header, data = entries[i]
        pos = at if at >= 0 else len(data.rstrip(b"\0")) + at
        entries[i] = (name, header, data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:])
        return join(entries)
    return mutate


def insert(before: Callable[[Built], str], new: Callable[[Built], Entry]) -> Callable[[Built], bytes]:
    def mutate(b: Built) -> bytes:
        entries = split(b.data)
        entries.insert(index_of(entries, before(b)), new(b))
        return join(entries)
    return mutate


def drop(name_of: Callable[[Built], str]) -> Callable[[Built], bytes]:
    def mutate(b: Built) -> bytes:
        entries = split(b.data)
        del entries[index_of(entries, name_of(b))]
        return join(entries)
    return mutate


def replace_header(name_of: Callable[[Built], str], size: int) -> Callable[[Built], bytes]:
    def mutate(b: Built) -> bytes:
        entries = split(b.data)
        i = index_of(entries, name_of(b))
        entries[i] = (entries[i][0], ustar_header(entries[i][0], size, CREATED), entries[i][2])
        return join(entries)
    return mutate


def truncate(where: Callable[[Built], int]) -> Callable[[Built], bytes]:
    return lambda b: b.data[:where(b)]


def offset_of(name_of: Callable[[Built], str], extra: int) -> Callable[[Built], int]:
    def where(b: Built) -> int:
        pos = 0
        for name, header, data in split(b.data):
            if name == name_of(b):
                return pos + extra
            pos += len(header) + len(data)
        raise AssertionError(name_of(b))
    return where


def layer(b: Built) -> str:
    return blob_name(b.kinds["layer"])


def child_manifest(b: Built) -> str:
    return blob_name(b.kinds["manifest"])


def sig_manifest(b: Built) -> str:
    return blob_name(b.kinds["signature-manifest"])


def const(name: str) -> Callable[[Built], str]:
    return lambda _b: name


def first_blob(b: Built) -> str:
    return blob_name(next(iter(b.blobs)))


def last_blob(b: Built) -> str:
    return blob_name(list(b.blobs)[-1])


def _resign(b: Built) -> bytes:
    entries = split(b.data)
    i = index_of(entries, SIGNATURE_NAME)
    sig = base64.b64encode(make_signer().sign(b.manifest.to_bytes()))
    entries[i] = entry(SIGNATURE_NAME, sig)
    return join(entries)


def _sig_char(b: Built) -> bytes:
    entries = split(b.data)
    i = index_of(entries, SIGNATURE_NAME)
    name, header, data = entries[i]
    swapped = bytes([data[5] + 1 if data[5] not in b"9zZ+/" else ord("A")])
    entries[i] = (name, header, data[:5] + swapped + data[6:])
    return join(entries)


def _flip_header(b: Built) -> bytes:
    entries = split(b.data)
    i = index_of(entries, layer(b))
    name, header, data = entries[i]
    entries[i] = (name, header[:20] + bytes([header[20] ^ 1]) + header[21:], data)
    return join(entries)


def _no_end(b: Built) -> bytes:
    return b"".join(h + d for _n, h, d in split(b.data))


def _dup(b: Built, name: str) -> bytes:
    entries = split(b.data)
    i = index_of(entries, name)
    entries.insert(i + 1, entries[i])
    return join(entries)


def _replace(b: Built, name: str, data: bytes) -> bytes:
    entries = split(b.data)
    entries[index_of(entries, name)] = entry(name, data)
    return join(entries)


CASES: dict[str, tuple[Callable[[Built], bytes], str]] = {
    # flipped bytes, one per kind of entry
    "flip-manifest": (flip(const(MANIFEST_NAME), 40), r"signature \(airgap-bundle.json.sig\) does not verify"),
    "flip-signature": (_sig_char, r"signature \(airgap-bundle.json.sig\) does not verify"),
    "flip-trust-file": (flip(const("trust/policy.yaml"), 3), "bundle entry trust/policy.yaml: content digest"),
    "flip-trust-key": (flip(const("trust/keys/release.pub"), 40), "bundle entry trust/keys/release.pub: content"),
    "flip-oci-layout": (flip(const(OCI_LAYOUT_NAME), 3), "bundle entry oci-layout: content digest"),
    "flip-index-json": (flip(const(INDEX_NAME), 10), "bundle entry index.json: content digest"),
    "flip-layer-blob": (flip(layer, 20_000), r"bundle entry blobs/sha256/\w{64}: content digest"),
    "flip-layer-last-byte": (flip(layer, -1), r"bundle entry blobs/sha256/\w{64}: content digest"),
    "flip-manifest-blob": (flip(child_manifest, 5), r"bundle entry blobs/sha256/\w{64}: content digest"),
    "flip-signature-manifest": (flip(sig_manifest, 5), r"bundle entry blobs/sha256/\w{64}: content digest"),
    "flip-tar-header": (_flip_header, r"corrupt tar header after index.json \(checksum mismatch"),
    # truncation
    "truncate-empty": (truncate(lambda _b: 0), r"bundle is empty \(0 bytes\)"),
    "truncate-in-manifest": (truncate(lambda _b: 700), "bundle is truncated in airgap-bundle.json"),
    "truncate-in-header": (truncate(offset_of(const("trust/keys.json"), 100)), "truncated after"),
    "truncate-in-trust": (truncate(offset_of(const("trust/policy.yaml"), 520)), "truncated in trust/policy.yaml"),
    "truncate-in-layer": (truncate(offset_of(layer, 9000)), r"truncated in blobs/sha256/\w{64}"),
    "truncate-before-end": (_no_end, "truncated after"),
    # extra, duplicate, unlisted, missing
    "append-after-end": (lambda b: b.data + b"".join(entry("x", b"evil")[1:]), "data after its end-of-archive"),
    "append-entry": (lambda b: join([*split(b.data), entry("trust/keys/evil.pub", b"x")]), "is not listed"),
    "append-blob": (lambda b: join([*split(b.data), entry(blob_name("sha256:" + "e" * 64), b"x")]), "is not listed"),
    "duplicate-blob": (lambda b: join([*split(b.data), split(b.data)[-1]]), "appears twice"),
    "duplicate-trust-file": (lambda b: _dup(b, "trust/keys.json"), "appears twice or out of place"),
    "duplicate-manifest": (lambda b: join([*split(b.data), split(b.data)[0]]), "appears twice"),
    "unlisted-trust-file": (insert(const("trust/policy.yaml"), lambda _b: entry("trust/keys/zz.pub", b"k")),
                            "'trust/keys/zz.pub' is not listed"),
    "missing-blob": (drop(sig_manifest), r"incomplete: 1 listed blob\(s\) missing"),
    "missing-trust-file": (drop(const("trust/policy.yaml")), "expected trust/policy.yaml"),
    "missing-index": (drop(const(INDEX_NAME)), r"index.json is missing"),
    "manifest-not-first": (lambda b: join(split(b.data)[2:]), "no airgap-bundle.json first"),
    # unsafe names and entry types
    "dotdot-path": (insert(last_blob, lambda _b: entry("../evil", b"x")), "'../evil' has an unsafe path"),
    "dotdot-inner": (insert(last_blob, lambda _b: entry("blobs/../../evil", b"x")), "unsafe path"),
    "absolute-path": (insert(last_blob, lambda _b: entry("/etc/cron.d/evil", b"x")), "has an absolute path"),
    "absolute-first": (lambda b: join([entry("/" + MANIFEST_NAME, split(b.data)[0][2].rstrip(b"\0")),
                                       *split(b.data)[1:]]), "absolute path"),
    "symlink": (insert(last_blob, lambda b: entry(last_blob(b), typeflag=b"2", linkname="/etc/passwd")),
                "is a symbolic link: only regular files"),
    "hardlink": (insert(last_blob, lambda b: entry(last_blob(b), typeflag=b"1", linkname=MANIFEST_NAME)),
                 "is a hard link"),
    "char-device": (insert(last_blob, lambda b: entry(last_blob(b), typeflag=b"3")), "is a character device"),
    "block-device": (insert(last_blob, lambda b: entry(last_blob(b), typeflag=b"4")), "is a block device"),
    "fifo": (insert(last_blob, lambda b: entry(last_blob(b), typeflag=b"6")), "is a FIFO"),
    "directory": (insert(const("trust/keys.json"), lambda _b: entry("trust/", typeflag=b"5")), "is a directory"),
    "pax-header": (insert(first_blob, lambda _b: entry("pax", b"30 path=trust/keys/evil.pub\n", typeflag=b"x")),
                   "is a pax extended header"),
    # sizes
    "header-1tb-blob": (replace_header(layer, TB), rf"header says {TB} bytes, the manifest lists 40000"),
    "header-1tb-manifest": (replace_header(const(MANIFEST_NAME), TB), f"{TB} bytes exceeds the limit"),
    "header-1tb-trust": (replace_header(const("trust/policy.yaml"), TB), f"header says {TB} bytes"),
    "header-short-blob": (replace_header(layer, 100), "header says 100 bytes, the manifest lists 40000"),
    # trust of the bundle
    "wrong-signature": (_resign, r"signature \(airgap-bundle.json.sig\) does not verify"),
    "signature-removed": (drop(const(SIGNATURE_NAME)), "bundle is not signed"),
    "signature-not-base64": (lambda b: _replace(b, SIGNATURE_NAME, b"not base64!"), "not base64"),
}


def read_everything(stream: Any, b: Built) -> None:
    reader = BundleReader(stream, key=b.public_key)
    for _digest, _size, chunks in reader.blobs():
        for _chunk in chunks:
            pass
    reader.finish()


def _feed(data: bytes) -> tuple[Any, threading.Thread]:
    rfd, wfd = os.pipe()

    def feed() -> None:
        try:
            with os.fdopen(wfd, "wb") as w:
                w.write(data)
        except BrokenPipeError:  # the reader refused early and closed its end
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    return os.fdopen(rfd, "rb"), t


def test_untampered_bundle_reads(built: Built, tmp_path: Path) -> None:
    """The control: the same harness on the untouched bundle passes (so every case below can fail)."""
    assert split(built.data) and join(split(built.data)) == built.data
    (tmp_path / "b.tar").write_bytes(built.data)
    with open(tmp_path / "b.tar", "rb") as f:
        read_everything(f, built)
    r, t = _feed(built.data)
    with r:
        read_everything(r, built)
    t.join()


@pytest.mark.parametrize("via", ["file", "pipe"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_bundle_refused(built: Built, tmp_path: Path, case: str, via: str) -> None:
    mutate, message = CASES[case]
    data = mutate(built)
    assert data != built.data
    if via == "file":
        path = tmp_path / "bundle.tar"
        path.write_bytes(data)
        with open(path, "rb") as f, pytest.raises(BundleError, match=message) as info:
            read_everything(f, built)
    else:
        r, t = _feed(data)
        with r, pytest.raises(BundleError, match=message) as info:
            read_everything(r, built)
        t.join(timeout=10)
    assert "\n" not in str(info.value)


def test_pinned_digest_catches_manifest_tampering(built: Built) -> None:
    data = CASES["flip-manifest"][0](built)
    with pytest.raises(BundleError, match="does not match the pinned"):
        BundleReader(io.BytesIO(data), bundle_digest=built.manifest.digest)


def test_1tb_header_refused_without_reading(built: Built) -> None:
    """The size check comes from the header alone: the reader never asks the stream for the data."""
    data = replace_header(layer, TB)(built)

    class Counting(io.BytesIO):
        asked = 0

        def read(self, n: int | None = -1) -> bytes:
            Counting.asked = max(Counting.asked, n or 0)
            return super().read(n)

    with pytest.raises(BundleError, match="header says"):
        read_everything(Counting(data), built)
    assert Counting.asked <= 1024 * 1024


# ---- load: a refused bundle leaves no tag in the target registry ------------------------------------------

LOAD_CASES = ["flip-layer-blob", "flip-manifest-blob", "flip-signature-manifest", "flip-index-json",
              "missing-blob", "truncate-in-layer", "append-blob", "symlink", "wrong-signature"]


def _all_tags(host: str) -> dict[str, list[str]]:
    import requests

    repos = requests.get(f"http://{host}/v2/_catalog", timeout=10).json().get("repositories") or []
    out = {}
    for repo in repos:
        tags = requests.get(f"http://{host}/v2/{repo}/tags/list", timeout=10).json().get("tags") or []
        if tags:
            out[repo] = tags
    return out


@pytest.fixture(scope="module")
def target(module_registry_factory: Callable[..., Any]) -> Iterator[Any]:
    yield module_registry_factory()


@pytest.mark.parametrize("case", LOAD_CASES)
def test_failed_load_leaves_no_tag(built: Built, target: Any, case: str) -> None:
    load_mod = pytest.importorskip("airgap.bundle.load")
    from airgap.oci.registry import RegistryClient

    data = CASES[case][0](built)
    with pytest.raises(BundleError, match=CASES[case][1]):
        load_mod.load(io.BytesIO(data), target.host, translate_mode="zarf", key=built.public_key,
                      client=RegistryClient(), progress=False)
    assert _all_tags(target.host) == {}


def test_load_control_untampered(built: Built, registry: Any) -> None:
    """Control for the test above: loading the untouched bundle does create tags (so the check can fail)."""
    load_mod = pytest.importorskip("airgap.bundle.load")
    from airgap.oci.registry import RegistryClient

    load_mod.load(io.BytesIO(built.data), registry.host, translate_mode="zarf", key=built.public_key,
                  client=RegistryClient(), progress=False)
    assert _all_tags(registry.host)


def test_cosign_verifies_the_bundle_signature(built: Built, tmp_path: Path) -> None:
    """The ``.sig`` entry is cosign sign-blob's format: ``cosign verify-blob`` accepts it (and a flip refutes it)."""
    import subprocess

    from conftest import require_tool

    from airgap.keys.public import public_pem

    cosign = require_tool("cosign")
    entries = {n: d for n, _h, d in split(built.data)}
    (tmp_path / "key.pub").write_bytes(public_pem(built.public_key))
    (tmp_path / "sig").write_bytes(entries[SIGNATURE_NAME].rstrip(b"\0"))
    manifest = built.manifest.to_bytes()
    for name, data, ok in (("m.json", manifest, True), ("bad.json", manifest.replace(b"tamper", b"tamped"), False)):
        (tmp_path / name).write_bytes(data)
        proc = subprocess.run([cosign, "verify-blob", "--key", str(tmp_path / "key.pub"), "--signature",
                               str(tmp_path / "sig"), "--insecure-ignore-tlog=true", str(tmp_path / name)],
                              capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
        assert (proc.returncode == 0) == ok, proc.stderr
