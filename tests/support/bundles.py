"""A small but real bundle, built with airgap's own writer: a two-platform OCI index with configs and layers, a
cosign ``.sig`` manifest signed with a real key, trust files from a real spec, ``oci-layout`` and ``index.json``.
Used by the bundle reader/writer unit tests and the tampering corpus (tests/integration/test_bundle_tamper.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
)
from airgap.bundle.writer import BundleWriter

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CREATED = 1_700_000_000


def key_spec_text(host: str, repos: tuple[str, ...] | list[str], name: str = "demo", version: str = "1.0.0") -> str:
    """A pack spec: ``HOST/REPO:1.0`` for each repo, the ``release`` key (``release.pub`` beside the spec), one
    policy requiring it for ``HOST/team/**`` (no log entry), a fixed ``created`` so packs are reproducible."""
    images = "\n".join(f"  - {host}/{r}:1.0" for r in repos)
    return f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: {name}, version: "{version}"}}
created: {CREATED}
images:
{images}
keys: [{{name: release, path: release.pub}}]
policies:
  - name: team
    images: [{{glob: "{host}/team/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
"""


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


def make_signer(kind: str = "ecdsa-p256") -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from airgap.keys.private import KeySigner

    if kind == "ed25519":  # deterministic signatures: two packs of the same input are byte-identical
        return KeySigner(ed25519.Ed25519PrivateKey.generate())
    return KeySigner(ec.generate_private_key(ec.SECP256R1()))


def make_spec_files(tmp: Path, signer: Any, upstream_repo: str) -> dict[str, bytes]:
    """Trust files from a real spec (key + policy) via BundleSpec.trust_files()."""
    from airgap.bundle.spec import BundleSpec
    from airgap.keys.public import public_pem

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
    from airgap.checks.cosign import ANN_SIGNATURE, signature_tag
    from airgap.oci import mediatypes as mt
    from airgap.oci.manifest import Descriptor
    from airgap.signing.attach import signature_manifest
    from airgap.signing.sign import payload_for

    signer = signer or make_signer()
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
    payload = payload_for(upstream_repo, sha(index), None)
    layer_desc = Descriptor(mt.COSIGN_SIMPLESIGNING, sha(payload), len(payload),
                            annotations={ANN_SIGNATURE: base64.b64encode(signer.sign(payload)).decode()})
    sig_manifest, sig_config = signature_manifest([layer_desc])
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
