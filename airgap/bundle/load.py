"""``airgap load``: push a bundle into the local registry in one streaming pass, translating refs
(where each image goes: :mod:`~airgap.bundle.placement`).

Order, so that a load killed at any point leaves no tag pointing at missing or unverified content and a
re-run completes: the bundle manifest is trusted first (key, pinned digest, or an explicit opt-out, see
:class:`~airgap.bundle.reader.BundleReader`); blobs are read in tar order, each hashed to its digest before it
can be pushed (spooled to a temp file while hashing, then uploaded concurrently, ``-j``: see
:mod:`~airgap.bundle.load_blobs`), skipping what the registry already has; then manifests by digest,
children before indexes; then attachments (``.sig/.att/.sbom`` tags and referrers, re-homed into the
translated repository and the translated signature repository); then the image tags; last the translation
map artifact (``airgap/maps:<name>-<version>``).

Re-loading a loaded bundle is fast: when every final tag and the map artifact already resolve to what this
bundle would write, nothing is read beyond the trusted manifest and nothing is pushed. The map artifact is
pushed last, so its presence means everything before it completed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from airgap import refs
from airgap.bundle.load_blobs import stream_blobs
from airgap.bundle.placement import Placed, plan_targets, translation_map
from airgap.errors import BundleError, IntegrityError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Manifest
from airgap.progress import Progress
from airgap.refs import translate

if TYPE_CHECKING:
    from airgap.keys.public import PublicKey
    from airgap.oci.registry import RegistryClient


CHUNK = 1024 * 1024


MAP_REPO = "airgap/maps"


MAP_ARTIFACT_TYPE = "application/vnd.airgap.translation-map.v1+json"


_EMPTY = b"{}"


@dataclass
class LoadSummary:
    registry: str
    bundle_digest: str
    signed_by: str | None
    images: list[dict[str, Any]]
    blobs_pushed: int = 0
    bytes_pushed: int = 0
    manifests_pushed: int = 0
    already_loaded: bool = False
    map_ref: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def map_artifact(tmap_bytes: bytes, name: str, version: str, created: int) -> tuple[Manifest, bytes]:
    """The OCI artifact holding map.json: empty config, one layer; deterministic bytes."""
    import json

    from airgap import digest as digests

    doc = {
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": MAP_ARTIFACT_TYPE,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": digests.of_bytes(_EMPTY), "size": len(_EMPTY)},
        "layers": [{"mediaType": "application/json", "digest": digests.of_bytes(tmap_bytes),
                    "size": len(tmap_bytes), "annotations": {"org.opencontainers.image.title": "map.json"}}],
        "annotations": {"dev.airgap.bundle.name": name, "dev.airgap.bundle.version": version,
                        "org.opencontainers.image.created": str(created)},
    }
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return Manifest.from_bytes(data, mt.OCI_MANIFEST), tmap_bytes


def map_tag(name: str, version: str) -> str:
    import re

    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{version}")[:128]
    return tag if re.match(r"[A-Za-z0-9_]", tag) else f"_{tag}"[:128]


def _all_in_place(client: RegistryClient, placed: list[Placed], map_host: str, map_repo: str, tag: str,
                  map_manifest: Manifest, jobs: int) -> bool:
    checks: list[tuple[str, str, str, str]] = [(map_host, map_repo, tag, map_manifest.digest)]
    for p in placed:
        checks += [(p.host, local.repository, local.tag or local.digest or "", p.entry.digest) for local in p.locals]

    def ok(item: tuple[str, str, str, str]) -> bool:
        host, repo, ref, digest = item
        desc = client.head_manifest(host, repo, ref)
        return desc is not None and desc.digest == digest

    with ThreadPoolExecutor(max_workers=max(1, min(jobs * 2, len(checks)))) as pool:
        return all(pool.map(ok, checks))


class _Manifests:
    """The bundle's manifests parsed on demand, with media types learnt from index.json and parents."""

    def __init__(self, kept: dict[str, bytes], index_json: bytes, max_bytes: int, max_depth: int) -> None:
        self.kept = kept
        self.max_depth = max_depth
        self.types: dict[str, str] = {}
        self.parsed: dict[str, Manifest] = {}
        index = Manifest.from_bytes(index_json, mt.OCI_INDEX, what="index.json")
        for desc in index.manifests:
            self.types[desc.digest] = desc.media_type

    def get(self, digest: str, media_type: str | None = None) -> Manifest:
        if digest not in self.parsed:
            data = self.kept.get(digest)
            if data is None:
                raise BundleError(f"bundle lists manifest {digest} but it was not among its blobs")
            manifest = Manifest.from_bytes(data, media_type or self.types.get(digest), expected_digest=digest,
                                           what=f"bundle manifest {digest}")
            for child in manifest.manifests:
                self.types.setdefault(child.digest, child.media_type)
            self.parsed[digest] = manifest
        return self.parsed[digest]

    def graph(self, digest: str, media_type: str | None = None, _depth: int = 1) -> list[Manifest]:
        """``digest`` and every child manifest, children first (no deeper than ``Limits.max_index_depth``)."""
        root = self.get(digest, media_type)
        out: list[Manifest] = []
        for child in root.manifests:
            if child.digest in self.kept:
                if _depth >= self.max_depth:
                    raise BundleError(f"bundle manifest {digest}: indexes nested more than {self.max_depth} deep")
                out += [m for m in self.graph(child.digest, child.media_type, _depth + 1) if m not in out]
        return [*out, root]


def push_image(client: RegistryClient, p: Placed, manifests: _Manifests) -> int:
    """Manifests children-first, attachments, then the tags; returns how many manifests were PUT."""
    count = 0
    entry = p.entry

    def put(repo: str, ref: str, m: Manifest) -> None:
        nonlocal count
        desc = client.head_manifest(p.host, repo, ref)
        if desc is None or desc.digest != m.digest:
            client.put_manifest(p.host, repo, ref, m)
            count += 1

    manifests.types.setdefault(entry.digest, entry.media_type)
    for digest in entry.manifests:
        manifests.get(entry.digest)  # learn the children's media types from the root
        put(p.repo, digest, manifests.get(digest))
    for att in entry.attachments:
        graph = manifests.graph(att.digest)
        top = graph[-1]
        for repo in p.repos:
            for m in graph:
                if repo != p.repo:
                    for blob in m.blobs:  # the signature repository: link the blobs pushed to the image repo
                        client.push_blob(p.host, repo, blob, _unreachable, mount_from=p.repo)
                if m is not top:
                    put(repo, m.digest, m)
            if att.tag:
                put(repo, att.tag, top)
            elif top.subject is not None:
                client.add_referrer(p.host, repo, top)
                count += 1
            else:
                put(repo, top.digest, top)
    root = manifests.get(entry.digest)
    for local in p.locals:
        put(local.repository, local.tag or root.digest, root)
    return count


def _bytes_opener(data: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter([data])


def _unreachable() -> Iterator[bytes]:
    raise IntegrityError("blob to mount is missing from the image repository")


def _drain(source: IO[bytes]) -> None:
    """Consume the rest of a pipe, so a producer (``pack -o - |``) is not killed by SIGPIPE."""
    try:
        if source.seekable():
            return
    except (AttributeError, OSError, ValueError):
        pass
    while source.read(CHUNK):
        pass


def load(source: BinaryIO, registry: str, *, translate_mode: str = "zarf", rules: Sequence[str] = (),
         key: PublicKey | Sequence[PublicKey] | None = None, bundle_digest: str | None = None,
         allow_unsigned: bool = False, client: RegistryClient | None = None, jobs: int = 4,
         map_out: str | None = None, trust_out: str | None = None, progress: bool | None = None) -> LoadSummary:
    """Load the bundle read from ``source`` into ``registry`` (``HOST[:PORT][/PREFIX]``); see the module doc."""
    from airgap.bundle.reader import BundleReader
    from airgap.oci.registry import RegistryClient

    started = time.monotonic()
    client = client or RegistryClient()
    target = translate._check_target(registry.rstrip("/"))
    prefix_rules = translate.PrefixRules.parse(rules) if rules else None
    reader = BundleReader(source, key=key, bundle_digest=bundle_digest, allow_unsigned=allow_unsigned,
                          limits=client.limits)
    manifest = reader.manifest
    placed = plan_targets(manifest, target, translate_mode, prefix_rules)
    tmap = translation_map(placed)
    tmap_bytes = tmap.to_json()
    map_host = refs.api_host(target.split("/", 1)[0])
    map_repo = f"{target.split('/', 1)[1]}/{MAP_REPO}" if "/" in target else MAP_REPO
    tag = map_tag(manifest.name, manifest.version)
    map_manifest, map_blob = map_artifact(tmap_bytes, manifest.name, manifest.version, manifest.created)
    summary = LoadSummary(
        registry=target, bundle_digest=reader.digest, signed_by=reader.signed_by,
        images=[{"upstream": str(p.upstream), "digest": p.entry.digest, "local": [str(r) for r in p.locals],
                 "signature_repo": f"{p.locals[0].registry}/{p.sig_repo}" if p.sig_repo else None}
                for p in placed],
        map_ref=f"{target}/{MAP_REPO}:{tag}",
    )
    jobs = max(1, jobs)
    if _all_in_place(client, placed, map_host, map_repo, tag, map_manifest, jobs):
        summary.already_loaded = True
        _drain(source)
    else:
        meter = Progress(f"load {manifest.name}", total_bytes=manifest.blob_bytes, total_items=manifest.blob_count,
                         enabled=progress)
        with meter:
            kept, uploader = stream_blobs(reader, client, placed, jobs=jobs,
                                          max_manifest=client.limits.max_manifest_bytes, meter=meter)
        summary.blobs_pushed, summary.bytes_pushed = uploader.pushed, uploader.bytes
        manifests = _Manifests(kept, reader.files["index.json"], client.limits.max_manifest_bytes,
                               client.limits.max_index_depth)
        for p in placed:  # parse everything before pushing anything: a bad manifest fails the load early
            for digest in p.entry.manifests:
                manifests.get(p.entry.digest, p.entry.media_type)
                manifests.get(digest)
            for att in p.entry.attachments:
                manifests.graph(att.digest)
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(placed) or 1))) as pool:
            summary.manifests_pushed = sum(pool.map(lambda p: push_image(client, p, manifests), placed))
        for desc, data in zip(map_manifest.blobs, (_EMPTY, map_blob), strict=True):
            client.push_blob(map_host, map_repo, desc, _bytes_opener(data))
        client.put_manifest(map_host, map_repo, tag, map_manifest)
    if map_out:
        tmap.save(map_out)
    if trust_out:
        from airgap.bundle.inspect import write_trust

        write_trust(reader.files, trust_out, extra={"map.json": tmap_bytes})
    summary.seconds = round(time.monotonic() - started, 3)
    return summary
