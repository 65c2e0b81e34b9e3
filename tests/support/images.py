"""Build real OCI / Docker images and push them with plain HTTP calls, independent of airgap's client,
so tests of airgap's registry code cannot pass by sharing its bugs."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class Pusher:
    """Raw registry pushes with `requests` (basic auth and a CA file when given)."""

    base: str  # http(s)://host:port
    auth: tuple[str, str] | None = None
    verify: bool | str = True
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        if self.auth:
            self.session.auth = self.auth
        self.session.verify = self.verify
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override session.verify

    def blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        if self.session.head(f"{self.base}/v2/{repo}/blobs/{digest}").status_code == 200:
            return digest
        r = self.session.post(f"{self.base}/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else self.base + loc
        sep = "&" if "?" in loc else "?"
        r = self.session.put(f"{loc}{sep}digest={digest}", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return digest

    def manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> requests.Response:
        r = self.session.put(f"{self.base}/v2/{repo}/manifests/{ref}", data=data,
                             headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        return r

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str]:
        r = self.session.get(f"{self.base}/v2/{repo}/manifests/{ref}", headers={
            "Accept": ",".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])})
        assert r.status_code == 200, (r.status_code, r.text)
        return r.content, r.headers["Content-Type"]

    def tags(self, repo: str) -> list[str]:
        r = self.session.get(f"{self.base}/v2/{repo}/tags/list")
        if r.status_code == 404:
            return []
        return list(r.json().get("tags") or [])


@dataclass
class Image:
    repo: str
    tag: str | None
    digest: str
    media_type: str
    manifest: bytes
    children: dict[str, str] = field(default_factory=dict)  # platform -> digest
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size


def layer_bytes(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def push_image(
    pusher: Pusher, repo: str, tag: str | None = "1.0", *,
    platforms: tuple[str, ...] = ("linux/amd64",), layer_sizes: tuple[int, ...] = (2048,),
    base_sizes: tuple[int, ...] = (), seed: str | None = None, docker: bool = False,
    index: bool | None = None,
) -> Image:
    """Push an image: one manifest per platform (an index/list when several or ``index=True``).

    ``base_sizes`` are layers shared by every image with the same platform (seeded by platform only),
    ``layer_sizes`` are unique to this image (seeded by repo/tag/``seed``).
    """
    seed = seed or f"{repo}:{tag}"
    mtype, ltype, ctype, itype = (
        (DOCKER_MANIFEST, DOCKER_LAYER, DOCKER_CONFIG, DOCKER_LIST) if docker
        else (OCI_MANIFEST, OCI_LAYER, OCI_CONFIG, OCI_INDEX)
    )
    image = Image(repo, tag, "", "", b"")
    children = []
    for plat in platforms:
        os_, arch = plat.split("/")[:2]
        layers = []
        for i, size in enumerate(base_sizes):
            data = layer_bytes(f"base-{plat}-{i}", size)
            layers.append({"mediaType": ltype, "digest": pusher.blob(repo, data), "size": size})
        for i, size in enumerate(layer_sizes):
            data = layer_bytes(f"{seed}-{plat}-{i}", size)
            layers.append({"mediaType": ltype, "digest": pusher.blob(repo, data), "size": size})
        config = canonical({"architecture": arch, "os": os_, "rootfs": {
            "type": "layers", "diff_ids": [l_["digest"] for l_ in layers]}, "config": {"Labels": {"seed": seed}}})
        cdigest = pusher.blob(repo, config)
        for layer in layers:
            image.blobs[layer["digest"]] = layer["size"]
        image.blobs[cdigest] = len(config)
        manifest = canonical({"schemaVersion": 2, "mediaType": mtype,
                              "config": {"mediaType": ctype, "digest": cdigest, "size": len(config)},
                              "layers": layers})
        digest = sha256(manifest)
        pusher.manifest(repo, digest, manifest, mtype)
        image.children[plat] = digest
        children.append({"mediaType": mtype, "digest": digest, "size": len(manifest),
                         "platform": {"os": os_, "architecture": arch}})
    if index or (index is None and len(platforms) > 1):
        top = canonical({"schemaVersion": 2, "mediaType": itype, "manifests": children})
        image.media_type = itype
    else:
        top = pusher.get_manifest(repo, children[0]["digest"])[0]
        image.media_type = mtype
        image.children = {}
    image.manifest = top
    image.digest = sha256(top)
    pusher.manifest(repo, tag or image.digest, top, image.media_type)
    if tag:
        pusher.manifest(repo, image.digest, top, image.media_type)
    return image


def push_signature_tag(pusher: Pusher, repo: str, subject: str, suffix: str = ".sig",
                       payload: bytes | None = None) -> str:
    """Push a cosign-shaped ``sha256-<hex><suffix>`` manifest (content need not verify: copy tests)."""
    payload = payload or canonical({"critical": {"image": {"docker-manifest-digest": subject},
                                                 "type": "cosign container image signature"}})
    layer = pusher.blob(repo, payload)
    cfg = pusher.blob(repo, b"{}")
    manifest = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": OCI_CONFIG, "digest": cfg, "size": 2},
                          "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                                      "digest": layer, "size": len(payload),
                                      "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}]})
    tag = subject.replace(":", "-") + suffix
    pusher.manifest(repo, tag, manifest, OCI_MANIFEST)
    return sha256(manifest)


def push_referrer(pusher: Pusher, repo: str, subject_digest: str, subject_size: int,
                  subject_type: str = OCI_INDEX, artifact_type: str = "application/vnd.example.sbom+json",
                  content: bytes = b'{"sbom":true}', fallback_tag: bool = False) -> str:
    """Push an OCI 1.1 artifact with ``subject``; maintain the fallback tag index when asked."""
    empty = pusher.blob(repo, b"{}")
    layer = pusher.blob(repo, content)
    manifest = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(content)}],
        "subject": {"mediaType": subject_type, "digest": subject_digest, "size": subject_size},
    })
    digest = sha256(manifest)
    pusher.manifest(repo, digest, manifest, OCI_MANIFEST)
    if fallback_tag:
        index = canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest), "artifactType": artifact_type}]})
        pusher.manifest(repo, subject_digest.replace(":", "-"), index, OCI_INDEX)
    return digest
