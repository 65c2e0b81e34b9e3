"""Push the demo's multi-arch image (linux/amd64 + linux/arm64, shared base layer) to a registry.

Uses airgap's own registry client, so the demo exercises the same code path users do.
Usage: python scripts/demo_images.py HOST[:PORT] [REPO[:TAG]]
"""

from __future__ import annotations

import hashlib
import json
import random
import sys

from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest
from airgap.oci.registry import RegistryClient


def _blob(client: RegistryClient, host: str, repo: str, data: bytes, media_type: str) -> Descriptor:
    desc = Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    client.push_blob(host, repo, desc, lambda: [data])
    return desc


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def push_demo_image(host: str, repo: str, tag: str, app_bytes: int = 2_000_000) -> str:
    client = RegistryClient()
    children = []
    for arch in ("amd64", "arm64"):
        base = _blob(client, host, repo, random.Random(f"base-{arch}").randbytes(4_000_000), mt.OCI_LAYER)
        app = _blob(client, host, repo, random.Random(f"{repo}-{tag}-{arch}").randbytes(app_bytes), mt.OCI_LAYER)
        config = _blob(client, host, repo, _canonical({
            "architecture": arch, "os": "linux",
            "config": {"Entrypoint": ["/app"], "Labels": {"org.opencontainers.image.title": repo}},
            "rootfs": {"type": "layers", "diff_ids": [base.digest, app.digest]},
        }), mt.OCI_CONFIG)
        data = _canonical({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config.to_json(),
                           "layers": [base.to_json(), app.to_json()]})
        manifest = Manifest.from_bytes(data, mt.OCI_MANIFEST)
        client.put_manifest(host, repo, manifest.digest, manifest)
        children.append({**manifest.descriptor.to_json(), "platform": {"os": "linux", "architecture": arch}})
    index = Manifest.from_bytes(_canonical({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                            "manifests": children}), mt.OCI_INDEX)
    client.put_manifest(host, repo, tag, index)
    return index.digest


if __name__ == "__main__":
    name, _, tag = (sys.argv[2] if len(sys.argv) > 2 else "demo/app:1.0").partition(":")
    print(push_demo_image(sys.argv[1], name, tag or "latest"))
