"""Bundle writer and reader: round trips, reproducibility, trust of the bundle, order enforcement, pipes.

``make_bundle`` (also used by tests/integration/test_bundle_tamper.py) builds a small but real bundle with
the writer: a two-platform OCI index with configs and layers, a cosign ``.sig`` manifest signed with a real
key, trust files from a real spec, ``oci-layout`` and ``index.json``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airgap.bundle.manifest import (
    INDEX_NAME,
    MANIFEST_NAME,
    OCI_LAYOUT_BYTES,
    OCI_LAYOUT_NAME,
    SIGNATURE_NAME,
    Attachment,
    BundleManifest,
    FileEntry,
    ImageEntry,
    PlatformEntry,
    blob_name,
)
from airgap.bundle.reader import BundleReader
from airgap.bundle.writer import BundleWriter, ustar_header
from airgap.config import Limits
from airgap.errors import BundleError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CREATED = 1_700_000_000


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def cjson(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class Built:
    data: bytes  # the whole bundle
    manifest: BundleManifest
    blobs: dict[str, bytes]  # digest -> content, in tar order
    files: dict[str, bytes]  # every non-blob entry after the manifest, in tar order
    signer: Any = None
    kinds: dict[str, str] = field(default_factory=dict)  # "layer" / "manifest" / ... -> a blob digest
    upstream: str = ""

    @property
    def public_key(self) -> Any:
        return self.signer.public_key


def _signer(kind: str = "ecdsa-p256") -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from airgap.keys import KeySigner

    if kind == "ed25519":  # deterministic signatures: two packs of the same input are byte-identical
        return KeySigner(ed25519.Ed25519PrivateKey.generate())
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


def make_spec_files(tmp: Path, signer: Any, upstream_repo: str) -> dict[str, bytes]:
    """Trust files from a real spec (key + policy) via BundleSpec.trust_files()."""
    from airgap.bundle.spec import BundleSpec
    from airgap.keys import public_pem

    (tmp / "keys").mkdir(parents=True, exist_ok=True)
    (tmp / "keys" / "release.pub").write_bytes(public_pem(signer.public_key))
    (tmp / "spec.yaml").write_text(f"""apiVersion: airgap/v1
kind: Bundle
metadata: {{name: tamper, version: 1.0.0}}
created: {CREATED}
images: [{upstream_repo}:1.0]
keys: [{{name: release, path: keys/release.pub}}]
policies:
  - name: team
    images: [{{glob: "{upstream_repo.split('/')[0]}/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
noMatchPolicy: deny
""")
    return BundleSpec.load(tmp / "spec.yaml").trust_files()


def make_bundle(tmp: Path, *, sign: bool = True, upstream_repo: str = "quay.io/team/app", layer_size: int = 40_000,
                seed: int = 1, signer: Any = None) -> Built:
    from airgap import sign as signmod
    from airgap.cosign import ANN_SIGNATURE, signature_tag
    from airgap.oci import mediatypes as mt
    from airgap.oci.manifest import Descriptor

    signer = signer or _signer()
    rng = random.Random(seed)
    upstream = f"{upstream_repo}:1.0"
    order: dict[str, bytes] = {}
    kinds: dict[str, str] = {}
    children = []
    for arch in ("amd64", "arm64"):
        layer = rng.randbytes(layer_size)
        config = cjson({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}})
        man = cjson({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                     "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                                "size": len(config)},
                     "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer),
                                 "size": len(layer)}]})
        order[sha(layer)] = layer
        order[sha(config)] = config
        kinds.setdefault("layer", sha(layer))
        kinds.setdefault("config", sha(config))
        children.append((arch, man))
    for _arch, man in children:
        order[sha(man)] = man
    kinds["manifest"] = sha(children[0][1])
    index = cjson({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha(m), "size": len(m), "platform": {"os": "linux", "architecture": a}}
        for a, m in children]})
    order[sha(index)] = index
    kinds["index"] = sha(index)
    payload = signmod.payload_for(upstream_repo, sha(index), None)
    layer_desc = Descriptor(mt.COSIGN_SIMPLESIGNING, sha(payload), len(payload),
                            annotations={ANN_SIGNATURE: base64.b64encode(signer.sign(payload)).decode()})
    sig_manifest, sig_config = signmod.signature_manifest([layer_desc])
    order[sha(payload)] = payload
    order[sha(sig_config)] = sig_config
    order[sha(sig_manifest)] = sig_manifest
    kinds["signature-manifest"] = sha(sig_manifest)
    tag = signature_tag(sha(index))
    files = make_spec_files(tmp, signer, upstream_repo)
    files[OCI_LAYOUT_NAME] = OCI_LAYOUT_BYTES
    files[INDEX_NAME] = cjson({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": sha(index), "size": len(index),
         "annotations": {"org.opencontainers.image.ref.name": upstream}},
        {"mediaType": OCI_MANIFEST, "digest": sha(sig_manifest), "size": len(sig_manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]})
    image = ImageEntry(
        upstream=upstream, digest=sha(index), media_type=OCI_INDEX,
        platforms=tuple(PlatformEntry(f"linux/{a}", sha(m)) for a, m in children),
        manifests=tuple(sha(m) for _a, m in children) + (sha(index),),
        blobs=tuple(d for d in order if d not in {sha(index), sha(sig_manifest)} | {sha(m) for _a, m in children}),
        attachments=(Attachment("signature", tag, sha(sig_manifest), sha(index)),),
    )
    from airgap.bundle.inspect import write_trust  # noqa: F401 -- imported so a broken module fails loudly here

    manifest = BundleManifest(name="tamper", version="1.0.0", created=CREATED, images=(image,),
                              keys=json.loads(files["trust/keys.json"]),
                              files={n: FileEntry.of(d) for n, d in files.items()},
                              blobs={d: len(b) for d, b in order.items()})
    out = io.BytesIO()
    with BundleWriter(out, CREATED) as w:
        mbytes = manifest.to_bytes()
        w.add_file(MANIFEST_NAME, mbytes)
        if sign:
            w.add_file(SIGNATURE_NAME, base64.b64encode(signer.sign(mbytes)))
        from airgap.bundle.manifest import file_order

        ordered = {n: files[n] for n in file_order(files)}
        for name, data in ordered.items():
            w.add_file(name, data)
        for digest, blob in order.items():
            w.add_blob(digest, len(blob), [blob[i:i + 7000] for i in range(0, len(blob), 7000)])
    return Built(out.getvalue(), manifest, order, ordered, signer, kinds, upstream)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return make_bundle(tmp_path_factory.mktemp("bundle"))


def read_all(reader: BundleReader) -> dict[str, bytes]:
    out = {d: b"".join(chunks) for d, _size, chunks in reader.blobs()}
    reader.finish()
    return out


# ---- round trip -----------------------------------------------------------------------------------


def test_round_trip_signed(built: Built) -> None:
    from airgap.keys import key_id

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
    signer = _signer("ed25519")
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
        BundleReader(io.BytesIO(built.data), key=[_signer().public_key])
    with pytest.raises(BundleError, match="does not verify with the given key"):
        BundleReader(io.BytesIO(built.data), key=_signer().public_key, allow_unsigned=True)


def test_unsigned_bundle_with_key_refused(tmp_path: Path) -> None:
    b = make_bundle(tmp_path, sign=False)
    with pytest.raises(BundleError, match="not signed"):
        BundleReader(io.BytesIO(b.data), key=b.public_key)
    assert BundleReader(io.BytesIO(b.data), bundle_digest=b.manifest.digest).signature is None


def test_key_list_any_matches(built: Built) -> None:
    r = BundleReader(io.BytesIO(built.data), key=[_signer().public_key, built.public_key])
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
    with pytest.raises(BundleError, match="truncated"):
        BundleReader(io.BytesIO(b""), allow_unsigned=True)
    with pytest.raises(BundleError, match="checksum"):
        BundleReader(io.BytesIO(b"x" * 1024), allow_unsigned=True)
    with pytest.raises(BundleError, match="empty"):
        BundleReader(io.BytesIO(bytes(10240)), allow_unsigned=True)




# ---- inspect and trust export ---------------------------------------------------------------------------


def test_inspect_and_trust_export(built: Built, tmp_path: Path) -> None:
    from airgap.bundle.inspect import inspect, render, trust_export, write_trust
    from airgap.errors import ConfigError
    from airgap.keys import key_id
    from airgap.trust import Trust

    path = tmp_path / "b.tar"
    path.write_bytes(built.data)
    info = inspect(path)
    assert (info["digest"], info["signed"], info["signedBy"], info["trusted"]) == (
        built.manifest.digest, True, None, False)
    img = info["images"][0]
    assert (img["ref"], img["signatures"], [p["platform"] for p in img["platforms"]]) == (
        built.upstream, 1, ["linux/amd64", "linux/arm64"])
    assert img["bytes"] == built.manifest.blob_bytes
    assert [k["name"] for k in info["keys"]] == ["release"]
    assert info["policies"]["policies"][0]["name"] == "team" and info["policies"]["settings"]["noMatchPolicy"] == "deny"
    checked = inspect(path, key=built.public_key, check_blobs=True)
    assert checked["signedBy"] == key_id(built.public_key) and checked["bytes"] == len(built.data)
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
