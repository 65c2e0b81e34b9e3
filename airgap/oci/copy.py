"""Copy an image with everything attached to it between registries and OCI layouts.

What is copied: the manifest or index and every child (all platforms), every blob, cosign's
``sha256-<hex>.sig/.att/.sbom`` tags of the image and of each child, and referrers (Referrers API or the
``sha256-<hex>`` fallback tag), recursively up to ``Limits.max_referrer_depth``.

Order, so a tag never points at something incomplete: all blobs first (concurrently, skipping what the
target has, mounting across repos of one registry), then manifests children-before-parents by digest, then
companion tags and referrers, and the requested tag last. Everything read is verified against its digest
before it is written anywhere, so a registry that serves wrong bytes makes the copy fail before any tag moves.

Progress counts a blob when the destination acknowledged it (the upload's last request answered success, or the
layout's file is in place); blobs it already had count apart. A copy into an OCI layout that fails or is
interrupted removes what it wrote there (:meth:`~airgap.oci.layout.Layout.rollback`), never what was there.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from airgap import refs
from airgap.config import Limits, RegistryOptions
from airgap.errors import ConfigError, IntegrityError
from airgap.oci import mediatypes as mt
from airgap.oci.deadline import carry  # pool workers run under the caller's deadline
from airgap.oci.layout import Layout
from airgap.oci.manifest import Descriptor, Manifest
from airgap.oci.registry import RegistryClient
from airgap.oci.store import RegistryRepo, Store
from airgap.progress import Progress, human_bytes, interruptible


@dataclass(frozen=True)
class Location:
    """Where an image is: ``store`` plus the tag/digest asked for (``None``: not given)."""

    store: Store
    reference: str | None
    text: str


def open_location(text: str, client: RegistryClient, *, create: bool = False) -> Location:
    """Parse ``oci:PATH[:TAG|@DIGEST]`` or an image reference into a store and a reference."""
    if text.startswith("oci:"):
        body = text[4:]
        reference: str | None = None
        if "@" in body:
            body, reference = body.rsplit("@", 1)
        else:
            head, sep, tail = body.rpartition(":")
            if sep and head and "/" not in tail:
                body, reference = head, tail
        if not body:
            raise ConfigError(f"invalid location {text!r}: oci: needs a directory path")
        if not create and not os.path.isdir(body):
            raise ConfigError(f"invalid location {text!r}: {body} is not a directory")
        return Location(Layout(body, create=create, max_manifest_bytes=client.limits.max_manifest_bytes),
                        reference, text)
    ref = refs.parse(text, default_tag=None)
    return Location(RegistryRepo(client, refs.api_host(ref.registry), ref.repository),
                    ref.digest or ref.tag, text)


@dataclass
class CopySummary:
    source: str
    destination: str
    digest: str
    media_type: str
    platforms: list[str]
    manifests: int
    blobs: int
    blobs_copied: int
    bytes_copied: int
    bytes_total: int
    tags: list[str] = field(default_factory=list)
    referrers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    manifests: dict[str, Manifest] = field(default_factory=dict)  # post-order: children first
    blobs: dict[str, Descriptor] = field(default_factory=dict)
    companions: list[tuple[str, Manifest]] = field(default_factory=list)
    referrers: list[Manifest] = field(default_factory=list)


MAX_INDEX_DEPTH = Limits().max_index_depth


def collect_graph(src: Store, manifest: Manifest, plan: Plan, *, max_depth: int = MAX_INDEX_DEPTH,
                  _depth: int = 1) -> None:
    """Add ``manifest`` and every manifest under it to ``plan`` (children first); an index chain deeper
    than ``max_depth`` manifests is refused (``Limits.max_index_depth``) before the walk recurses into it."""
    if manifest.digest in plan.manifests:
        return
    for child in manifest.manifests:
        if child.digest not in plan.manifests:
            if child.media_type not in mt.MANIFESTS:
                raise IntegrityError(f"{src.name}@{manifest.digest}: child {child.digest} has media type "
                                     f"{child.media_type!r}, not a manifest")
            if _depth >= max_depth:
                raise IntegrityError(f"{src.name}@{manifest.digest}: indexes nested more than {max_depth} deep")
            collect_graph(src, src.resolve(child.digest), plan, max_depth=max_depth, _depth=_depth + 1)
    for blob in manifest.blobs:
        plan.blobs.setdefault(blob.digest, blob)
    plan.manifests[manifest.digest] = manifest


def _image_digests(root: Manifest, plan: Plan) -> list[str]:
    return [root.digest, *(c.digest for c in root.manifests if c.digest in plan.manifests)]


def plan_attachments(src: Store, root: Manifest, plan: Plan, max_depth: int) -> None:
    """Add companion tags and referrers (recursively) of ``root``, whose graph is already in ``plan``."""
    subjects = _image_digests(root, plan)
    tags = set(src.list_tags())
    for subject in subjects:
        alg, hexpart = subject.split(":", 1)
        for suffix in mt.COSIGN_TAG_SUFFIXES:
            tag = f"{alg}-{hexpart}{suffix}"
            if tag in tags:
                companion = src.resolve(tag)
                collect_graph(src, companion, plan)
                plan.companions.append((tag, companion))
    seen: set[str] = set()
    frontier = [*subjects, *(m.digest for _, m in plan.companions)]
    for _depth in range(max_depth):
        nxt: list[str] = []
        for subject in frontier:
            for desc in src.referrers(subject):
                if desc.digest in seen:
                    continue
                seen.add(desc.digest)
                referrer = src.resolve(desc.digest)
                if referrer.subject is None or referrer.subject.digest != subject:
                    raise IntegrityError(f"{src.name}: referrer {desc.digest} does not name {subject} "
                                         "as its subject")
                for child in referrer.manifests:
                    collect_graph(src, src.resolve(child.digest), plan)
                plan.blobs.update({b.digest: b for b in referrer.blobs})
                plan.referrers.append(referrer)
                nxt.append(referrer.digest)
        frontier = nxt


def copy_image(
    source: str, destination: str, *, options: RegistryOptions | None = None, jobs: int | None = None,
    progress: bool | None = None,
) -> CopySummary:
    """Copy ``source`` to ``destination`` (image refs or ``oci:PATH[:TAG]``); see the module docstring."""
    from airgap.oci.blobcache import BlobLocations

    client = RegistryClient(options, locations=BlobLocations.default())
    src = open_location(source, client)
    dst = open_location(destination, client, create=True)
    try:
        return copy_between(src, dst, client=client, jobs=jobs, progress=progress)
    except BaseException:
        if isinstance(dst.store, Layout):
            dst.store.rollback()  # no partial layout: what this copy wrote goes, what was there stays
        raise
    finally:
        if client.locations is not None:
            client.locations.save()


def copy_between(src: Location, dst: Location, *, client: RegistryClient, jobs: int | None = None,
                 progress: bool | None = None) -> CopySummary:
    started = time.monotonic()
    root = src.store.resolve(src.reference or "latest")
    dst_tag: str | None = None
    if dst.reference and dst.reference.startswith(("sha256:", "sha512:")):
        if dst.reference != root.digest:
            raise ConfigError(f"destination digest {dst.reference} does not match the source's {root.digest}")
    else:
        dst_tag = dst.reference or (
            src.reference if src.reference and not src.reference.startswith("sha") else None
        )
    plan = Plan()
    collect_graph(src.store, root, plan, max_depth=client.limits.max_index_depth)
    mount_from = None
    if src.store.mount_key and dst.store.mount_key and src.store.mount_key[0] == dst.store.mount_key[0] \
            and src.store.mount_key[1] != dst.store.mount_key[1]:
        mount_from = src.store.mount_key[1]
    meter = Progress(f"copy {src.text}", enabled=progress, verb="copied")

    def transfer(desc: Descriptor) -> bool:
        def opener() -> Any:
            return interruptible(src.store.open_blob(desc))  # Ctrl-C stops a transfer at its next chunk

        sent = dst.store.push_blob(desc, opener, mount_from)
        if sent:  # acknowledged by the destination
            meter.add_bytes(desc.size)
        else:
            meter.add_present(desc.size)
        meter.add_item()
        return sent

    futures: dict[Future[bool], Descriptor] = {}

    def submit(pool: ThreadPoolExecutor) -> None:
        # Largest first: the biggest blob is the critical path; small ones fill in around it.
        fresh = [b for d, b in plan.blobs.items() if d not in submitted]
        for desc in sorted(fresh, key=lambda b: b.size, reverse=True):
            submitted.add(desc.digest)
            futures[pool.submit(carry(transfer), desc)] = desc
        meter.total_items = len(plan.blobs)
        meter.total_bytes = sum(b.size for b in plan.blobs.values())

    submitted: set[str] = set()
    with meter:
        with ThreadPoolExecutor(max_workers=max(1, jobs or client.limits.concurrency)) as pool:
            try:
                # The image's blobs start moving while companions and referrers are still being discovered.
                submit(pool)
                plan_attachments(src.store, root, plan, client.limits.max_referrer_depth)
                submit(pool)
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
            for fut in pending:
                fut.cancel()
            for fut in done:
                if fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
        copied = sum(1 for f in futures if f.result())
        bytes_copied = sum(b.size for f, b in futures.items() if f.result())
        total = sum(b.size for b in plan.blobs.values())

        # Manifests children-first by digest, then what hangs off the image, then the tag last.
        meter.set_status("copying manifests and tags")
        for manifest in plan.manifests.values():
            if manifest.digest != root.digest:
                dst.store.push_manifest(manifest)
        dst.store.push_manifest(root)
        for tag, companion in plan.companions:
            dst.store.push_manifest(companion, tag)
        for referrer in plan.referrers:
            dst.store.add_referrer(referrer)
        dst.store.push_manifest(root, dst_tag, root=True)
        where = f"{dst.store.name}:{dst_tag}" if dst_tag else dst.store.name
        meter.note(f"pushed {where}@{root.digest} ({len(plan.blobs)} blobs, {human_bytes(total)})")

    platforms = sorted({c.platform for c in root.manifests if c.platform})
    return CopySummary(
        source=src.text, destination=dst.text, digest=root.digest, media_type=root.media_type,
        platforms=platforms, manifests=len(plan.manifests), blobs=len(plan.blobs), blobs_copied=copied,
        bytes_copied=bytes_copied, bytes_total=total, tags=[t for t, _ in plan.companions],
        referrers=[r.digest for r in plan.referrers], seconds=round(time.monotonic() - started, 3),
    )
