"""``airgap load``: push a bundle into the local registry in one streaming pass, translating refs.

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

from airgap import refs, translate
from airgap.bundle.load_blobs import stream_blobs
from airgap.errors import BundleError, ConfigError, IntegrityError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Manifest
from airgap.progress import Progress

if TYPE_CHECKING:
    from airgap.bundle.manifest import BundleManifest, ImageEntry
    from airgap.keys import PublicKey
    from airgap.oci.registry import RegistryClient

CHUNK = 1024 * 1024
MAP_REPO = "airgap/maps"
MAP_ARTIFACT_TYPE = "application/vnd.airgap.translation-map.v1+json"
_EMPTY = b"{}"


@dataclass
class Placed:
    """Where one image goes: its repository at the target and the refs (tags) that name it there."""

    entry: ImageEntry
    upstream: refs.Reference
    host: str  # API host of the target registry
    repo: str
    locals: list[refs.Reference]
    sig_repo: str | None  # translated signature repository (same host), when the image has one

    @property
    def repos(self) -> list[str]:
        return [self.repo] + ([self.sig_repo] if self.sig_repo and self.sig_repo != self.repo else [])


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


# ---- translation --------------------------------------------------------------------------------


def _local_refs(upstream: refs.Reference, mode: str, target: str, rules: translate.PrefixRules | None
                ) -> list[refs.Reference]:
    if mode == "zarf":
        both = [translate.zarf_forward(upstream, target), translate.zarf_forward(upstream, target, checksum=False)]
        return list(dict.fromkeys(both))
    if mode == "prefix":
        assert rules is not None  # noqa: S101 - built by plan_targets
        return [translate.forward(upstream, "prefix", rules)]
    if mode == "none":
        return [translate.zarf_forward(upstream, target, checksum=False)]
    raise ConfigError(f"unknown translation {mode!r}: expected zarf, prefix or none")


def default_rules(manifest: BundleManifest, target: str) -> translate.PrefixRules:
    """Without ``--rule``: every upstream registry R goes under ``TARGET/R`` (registries.conf style; a port's
    ``:`` becomes ``-``, since a repository path cannot hold one: ``host:5000`` -> ``TARGET/host-5000``)."""
    hosts: set[str] = set()
    for entry in manifest.images:
        hosts.add(refs.parse(entry.upstream).registry)
        if entry.signature_repo:
            hosts.add(refs.parse(entry.signature_repo, default_tag=None).registry)
    return translate.PrefixRules.parse([f"{h}={target}/{h.replace(':', '-')}" for h in sorted(hosts)])


def plan_targets(manifest: BundleManifest, target: str, mode: str,
                 rules: translate.PrefixRules | None) -> list[Placed]:
    """Translate every image (and its signature repository) to the target registry."""
    if mode == "prefix" and not rules:
        rules = default_rules(manifest, target)
    out = []
    for entry in manifest.images:
        upstream = refs.parse(entry.upstream)
        local = _local_refs(upstream, mode, target, rules)
        sig_repo = None
        if entry.signature_repo:
            sig = refs.parse(entry.signature_repo, default_tag=None)
            sig_local = _local_refs(sig.with_tag("sig"), "none" if mode == "zarf" else mode, target, rules)[0]
            if refs.api_host(sig_local.registry) != refs.api_host(local[0].registry):
                raise ConfigError(f"signature repository {entry.signature_repo} translates to another registry "
                                  f"({sig_local.registry}) than its image")
            sig_repo = sig_local.repository
        out.append(Placed(entry, upstream, refs.api_host(local[0].registry), local[0].repository, local, sig_repo))
    return out


def translation_map(placed: list[Placed]) -> translate.TranslationMap:
    """Every image ref pushed, and every attachment tag pushed to a separate signature repository (so the
    verifier can find a policy's ``source`` repository through the map)."""
    tmap = translate.TranslationMap()
    for p in placed:
        for local in p.locals:
            tmap.add(p.upstream, local, p.entry.digest)
        if p.sig_repo and p.entry.signature_repo:
            sig = refs.parse(p.entry.signature_repo, default_tag=None)
            local_registry = p.locals[0].registry
            for att in p.entry.attachments:
                if att.tag:
                    tmap.add(sig.with_tag(att.tag), refs.Reference(local_registry, p.sig_repo, att.tag), att.digest)
    return tmap


def map_artifact(tmap_bytes: bytes, name: str, version: str, created: int) -> tuple[Manifest, bytes]:
    """The OCI artifact holding map.json: empty config, one layer; deterministic bytes."""
    import json

    from airgap.oci import digest as digests

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


# ---- the already-loaded check ----------------------------------------------------------------------


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


# ---- manifests, attachments, tags -------------------------------------------------------------------


class _Manifests:
    """The bundle's manifests parsed on demand, with media types learnt from index.json and parents."""

    def __init__(self, kept: dict[str, bytes], index_json: bytes, max_bytes: int) -> None:
        self.kept = kept
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

    def graph(self, digest: str, media_type: str | None = None) -> list[Manifest]:
        """``digest`` and every child manifest, children first."""
        root = self.get(digest, media_type)
        out: list[Manifest] = []
        for child in root.manifests:
            if child.digest in self.kept:
                out += [m for m in self.graph(child.digest, child.media_type) if m not in out]
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


# ---- the whole load ---------------------------------------------------------------------------------


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
        manifests = _Manifests(kept, reader.files["index.json"], client.limits.max_manifest_bytes)
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
