"""Typed, validated views of manifests and indexes that keep their exact bytes.

Parse, then trust: a registry's JSON becomes a :class:`Manifest` only after its digest was checked and its
descriptors validated (well-formed digest, non-negative size). The bytes are kept verbatim because the
digest, and every signature over it, covers them exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from airgap import digest as digests
from airgap.errors import IntegrityError
from airgap.jsondoc import json_object
from airgap.oci import mediatypes as mt


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise IntegrityError(f"{where}: descriptor is not an object")
        media_type = obj.get("mediaType")
        size = obj.get("size")
        if not isinstance(media_type, str) or not media_type:
            raise IntegrityError(f"{where}: descriptor has no mediaType")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise IntegrityError(f"{where}: descriptor has a bad size {size!r}")
        digest = digests.validate(obj.get("digest", ""))
        platform = None
        plat = obj.get("platform")
        if isinstance(plat, dict) and plat.get("os") and plat.get("architecture"):
            platform = f"{plat['os']}/{plat['architecture']}" + (
                f"/{plat['variant']}" if plat.get("variant") else ""
            )
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise IntegrityError(f"{where}: annotations is not an object")
        artifact_type = obj.get("artifactType")
        return cls(
            media_type, digest, size, platform,
            artifact_type if isinstance(artifact_type, str) else None,
            {str(k): str(v) for k, v in annotations.items()},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Manifest:
    """A manifest or index: exact ``data``, its ``media_type`` and ``digest``, and parsed descriptors."""

    data: bytes
    media_type: str
    digest: str
    manifests: tuple[Descriptor, ...] = ()  # children, for an index
    blobs: tuple[Descriptor, ...] = ()  # config then layers, for an image manifest
    subject: Descriptor | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data), artifact_type=self.artifact_type)

    @property
    def config(self) -> Descriptor | None:
        return None if self.is_index or not self.blobs else self.blobs[0]

    @classmethod
    def from_bytes(
        cls, data: bytes, media_type: str | None = None, expected_digest: str | None = None,
        what: str = "manifest",
    ) -> Manifest:
        """Validate ``data`` (digest when ``expected_digest`` is given) and parse its descriptors.

        ``media_type`` is the Content-Type the transport reported; the document's own ``mediaType``
        wins when present, and they must agree when both are manifest types.
        """
        if expected_digest is not None:
            digests.check_bytes(data, expected_digest, what)
        doc = json_object(data, what)
        declared = doc.get("mediaType")
        if isinstance(declared, str) and declared:
            if media_type in mt.MANIFESTS and declared in mt.MANIFESTS and declared != media_type:
                raise IntegrityError(f"{what}: served as {media_type} but declares {declared}")
            kind = declared
        elif media_type in mt.MANIFESTS:
            kind = media_type
        elif "manifests" in doc:
            kind = mt.OCI_INDEX
        elif "layers" in doc and "config" in doc:
            kind = mt.OCI_MANIFEST
        else:
            raise IntegrityError(f"{what}: neither a manifest nor an index")
        if kind not in mt.MANIFESTS:
            raise IntegrityError(f"{what}: unsupported media type {kind}")
        if doc.get("schemaVersion") != 2:
            raise IntegrityError(f"{what}: schemaVersion must be 2")
        children: list[Descriptor] = []
        blobs: list[Descriptor] = []
        if kind in mt.INDEXES:
            items = doc.get("manifests")
            if not isinstance(items, list):
                raise IntegrityError(f"{what}: index has no manifests list")
            children = [Descriptor.from_json(d, f"{what} manifests[{i}]") for i, d in enumerate(items)]
        else:
            layers = doc.get("layers")
            if not isinstance(layers, list):
                raise IntegrityError(f"{what}: manifest has no layers list")
            blobs = [Descriptor.from_json(doc.get("config"), f"{what} config")]
            blobs += [Descriptor.from_json(d, f"{what} layers[{i}]") for i, d in enumerate(layers)]
        subject = Descriptor.from_json(doc["subject"], f"{what} subject") if doc.get("subject") else None
        artifact_type = doc.get("artifactType")
        if not isinstance(artifact_type, str) and blobs:
            # OCI 1.1: without artifactType, the config media type names the artifact.
            artifact_type = blobs[0].media_type if blobs[0].media_type not in (
                mt.OCI_CONFIG, mt.DOCKER_CONFIG) else None
        annotations = doc.get("annotations") or {}
        return cls(
            data=data,
            media_type=kind,
            digest=expected_digest or digests.of_bytes(data),
            manifests=tuple(children),
            blobs=tuple(blobs),
            subject=subject,
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
            annotations={str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict)
            else {},
        )


def referrers_tag(subject_digest: str) -> str:
    """The OCI 1.1 fallback tag for a subject's referrers index: ``sha256-<hex>``."""
    alg, hexpart = digests.validate(subject_digest).split(":", 1)
    return f"{alg}-{hexpart}"


def build_index(descriptors: list[Descriptor]) -> bytes:
    """Serialize an OCI index (used for referrers fallback indexes) deterministically."""
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [d.to_json() for d in descriptors],
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
