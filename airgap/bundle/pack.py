"""``airgap pack``: resolve, collect, verify and write a bundle in one streaming pass.

Steps: resolve every spec ref to a digest and collect its graph and attachments at the source
(:mod:`~airgap.bundle.pack_collect`); assemble the trust files; then write the bundle in the pinned order
(:mod:`~airgap.bundle.pack_write`) while every image is verified against the bundled policy at the SOURCE
registry (all failures reported at once). Everything but the blob bytes is known once the images are
collected, so the bundle manifest (which pins every entry) goes first and a reader can verify while streaming.

Verification and download overlap only when the output is a temp file (renamed over the target at the end):
a failed verification stops the download and deletes the temp file, so no bundle of unverified images is ever
left at the target. On stdout nothing is written before every image passed. Every downloaded byte is hashed
against its digest before it can reach the bundle.

With a pending CLI archive (``pack --with-cli``, :mod:`~airgap.bundle.cli_archive`), its digest is pinned in the
bundle manifest and it is renamed into place (``OUT.airgap.pyz``, signed with the bundle key) only after the
bundle itself was committed; any failure removes it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap import refs
from airgap.bundle.pack_collect import Collected, collect_image, verify_at_source
from airgap.bundle.pack_write import Counting, FileAt, Order, Sources, write_bundle, write_bundle_at
from airgap.fileio import Output
from airgap.oci import mediatypes as mt
from airgap.oci.deadline import carry  # pool workers run under the caller's deadline
from airgap.oci.manifest import Manifest
from airgap.progress import Progress

if TYPE_CHECKING:
    from airgap.bundle.cli_archive import PendingArchive
    from airgap.bundle.delta import DeltaBase
    from airgap.bundle.manifest import BundleManifest, Delta, ImageEntry, SelfCarry
    from airgap.bundle.spec import BundleSpec
    from airgap.keys.private import Signer
    from airgap.oci.registry import RegistryClient
    from airgap.verification.trust import Trust

LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class PackSummary:
    """What ``pack`` wrote: the bundle digest is the sha256 of the bundle manifest (pin it with
    ``--bundle-digest``); ``file_sha256`` is the digest of the whole file when it was written sequentially
    (``--cache``); None otherwise (stdout, or blobs written concurrently in place)."""

    output: str
    bundle_digest: str
    signed_by: str | None
    images: list[dict[str, Any]]
    blobs: int
    blob_bytes: int
    bytes_written: int
    seconds: float
    verified: bool
    file_sha256: str | None = None
    parts_manifest: str | None = None  # with split_size: OUT.parts.json
    delta: dict[str, Any] | None = None  # with a delta base: kind, base, omitted blobs and bytes
    parts: list[dict[str, Any]] | None = None  # with split_size: name, size, sha256 of each part
    airgap_image: str | None = None  # the spec's airgap.image, as the bundle manifest names it
    cli: dict[str, Any] | None = None  # with a CLI archive: path, digest, size, version, python, platform, files

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ---- trust ------------------------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def load_trust(files: dict[str, bytes], directory: Path) -> Trust:
    """Write the bundle's ``trust/`` entries under ``directory`` and load them as a trust directory."""
    from airgap.verification.trust import Trust

    write_tree(directory, {n.removeprefix("trust/"): d for n, d in files.items() if n.startswith("trust/")})
    return Trust.load(directory)


# ---- layout and manifest ----------------------------------------------------------------------------


def index_json(images: list[Collected]) -> bytes:
    """The OCI layout index: each root tagged with its upstream ref, attached tags under their tag names."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for image in images:
        name = str(image.upstream)
        desc = image.root.descriptor.to_json()
        desc["annotations"] = {REF_NAME: name}
        entries[(name, image.root.digest)] = desc
        for att in image.attachments:
            if att.tag is None:
                continue
            desc = att.manifest.descriptor.to_json()
            desc["annotations"] = {REF_NAME: att.tag}
            entries[(att.tag, att.manifest.digest)] = desc
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entries[k] for k in sorted(entries)]}
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def blob_order(images: list[Collected]) -> Order:
    """Every blob once, in the pinned order: layers/configs, image manifests, indexes, then attachments;
    within a rank by depth (a manifest after everything it names, its subject included) then digest."""
    manifests: dict[str, Manifest] = {}
    rank: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for image in images:
        for m in image.manifests:
            manifests[m.digest] = m
            rank[m.digest] = min(rank.get(m.digest, 9), 2 if m.is_index else 1)
        for m in [*image.extra_manifests, *(a.manifest for a in image.attachments)]:
            manifests.setdefault(m.digest, m)
            rank.setdefault(m.digest, 3)
        for digest, (_store, desc) in image.blob_sources.items():
            sizes.setdefault(digest, desc.size)
    level: dict[str, int] = {}

    def depth(digest: str) -> int:
        if digest not in level:
            m = manifests.get(digest)
            if m is None:
                level[digest] = 0
            else:
                named = [d.digest for d in (*m.manifests, *m.blobs)] + ([m.subject.digest] if m.subject else [])
                level[digest] = 1 + max((depth(d) for d in named if d in manifests or d in sizes), default=0)
        return level[digest]

    out: list[tuple[tuple[int, int, str], str, int, Manifest | None]] = []
    for digest, size in sizes.items():
        if digest not in manifests:
            out.append(((0, 0, digest), digest, size, None))
    for digest, m in manifests.items():
        out.append(((rank[digest], depth(digest), digest), digest, len(m.data), m))
    out.sort(key=lambda item: item[0])
    return [(digest, size, m) for _key, digest, size, m in out]


def image_entry(image: Collected) -> ImageEntry:
    """The manifest's record of one image. ``blobs`` lists every non-manifest blob of the image AND of its
    attachments: ``load`` pushes them all to the image's repository (and mounts the attachments' blobs into
    the signature repository when there is one), so an attachment found in either place works in both."""
    from airgap.bundle.manifest import Attachment as Entry
    from airgap.bundle.manifest import ImageEntry, PlatformEntry

    manifests = {m.digest for m in (*image.manifests, *image.extra_manifests, *(a.manifest for a in image.attachments))}
    return ImageEntry(
        upstream=str(image.upstream), digest=image.root.digest, media_type=image.root.media_type,
        platforms=tuple(PlatformEntry(p["platform"], p["digest"]) for p in image.platforms),
        manifests=tuple(m.digest for m in image.manifests),
        blobs=tuple(sorted(d for d in image.blob_sources if d not in manifests)),
        attachments=tuple(Entry(a.kind, a.tag, a.manifest.digest, a.subject) for a in image.attachments),
        signature_repo=image.signature_repo,
    )


def build_manifest(spec: BundleSpec, images: list[Collected], files: dict[str, bytes],
                   order: Order, key_manifest: dict[str, Any], delta: Delta | None = None,
                   airgap: SelfCarry | None = None) -> BundleManifest:
    from airgap.bundle.manifest import BundleManifest, FileEntry

    return BundleManifest(
        name=spec.name, version=spec.version, created=spec.created,
        images=tuple(image_entry(i) for i in images), keys=key_manifest,
        files={n: FileEntry.of(d) for n, d in files.items()},
        blobs={d: s for d, s, _ in order}, delta=delta, airgap=airgap,
    )


def self_carry(spec: BundleSpec, cli: PendingArchive | None) -> SelfCarry | None:
    """What the manifest says about airgap itself: its image (the spec's ``airgap.image``) and the CLI beside."""
    from airgap.bundle.manifest import SelfCarry

    if spec.airgap_image is None and cli is None:
        return None
    return SelfCarry(str(refs.parse(spec.airgap_image)) if spec.airgap_image is not None else None,
                     cli.pin if cli is not None else None)


def _image_digests(image: Collected) -> set[str]:
    """Every blob of ``image`` the bundle carries: manifests, attachments and their blobs."""
    manifests = (*image.manifests, *image.extra_manifests, *(a.manifest for a in image.attachments))
    return {m.digest for m in manifests} | set(image.blob_sources)


def packed_line(image: Collected) -> str:
    """``packed REF@DIGEST (N blobs, X MB)``: the image's layers and configs (a delta's left-out ones too)."""
    from airgap.progress import human_bytes

    manifests = _image_digests(image) - set(image.blob_sources)
    blobs = [(d, desc.size) for d, (_store, desc) in image.blob_sources.items() if d not in manifests]
    return (f"packed {image.upstream}@{image.root.digest} ({len(blobs)} blobs, "
            f"{human_bytes(sum(size for _d, size in blobs))})")


def _stop_on_failure(verdict: Future[None], stop: threading.Event) -> None:
    if verdict.exception() is not None:
        stop.set()


def pack(spec: BundleSpec, output: str, *, client: RegistryClient, key: Signer | None = None, jobs: int = 4,
         cache_dir: str | None = None, verify: bool = True, progress: bool | None = None,
         split_size: int | None = None, delta: DeltaBase | None = None,
         cli: PendingArchive | None = None) -> PackSummary:
    """Pack ``spec`` into ``output`` (a path, or ``-`` for stdout); see the module docstring.

    ``split_size``: write the bundle as parts of that many bytes (``OUT.part-0001`` ...) and the parts manifest
    ``OUT.parts.json`` (signed with ``key`` too), see :mod:`airgap.bundle.parts`; the parts are the same bytes.
    ``delta``: leave out the image blobs the site holds (a delta bundle, see :mod:`airgap.bundle.delta`); they
    are neither downloaded nor written, and the manifest pins them as omitted.
    ``cli``: the CLI archive written for this bundle (pinned in its manifest, committed after it, signed with
    ``key``); removed if the pack fails."""
    try:
        return _pack(spec, output, client=client, key=key, jobs=jobs, cache_dir=cache_dir, verify=verify,
                     progress=progress, split_size=split_size, delta=delta, cli=cli)
    except BaseException:
        if cli is not None:
            cli.abort()
        raise


def _pack(spec: BundleSpec, output: str, *, client: RegistryClient, key: Signer | None, jobs: int,
          cache_dir: str | None, verify: bool, progress: bool | None, split_size: int | None,
          delta: DeltaBase | None, cli: PendingArchive | None) -> PackSummary:
    from airgap.bundle.parts import PartFiles

    started = time.monotonic()
    jobs = max(1, jobs)
    files = spec.trust_files()
    with tempfile.TemporaryDirectory(prefix="airgap-trust-") as tmp:
        trust = load_trust(files, Path(tmp))
    seen: set[str] = set()
    specs = []
    for wanted in spec.images:
        name = str(refs.parse(wanted.ref))
        if name not in seen:
            seen.add(name)
            specs.append(wanted)
    with ThreadPoolExecutor(max_workers=max(1, min(4 * jobs, len(specs) or 1))) as pool:
        images = list(pool.map(carry(lambda s: collect_image(client, s.ref, s.platforms, trust.policy)), specs))
    parts = PartFiles(output, split_size) if split_size else None
    # a device or FIFO is written through, never replaced
    target = None if output == "-" or parts is not None else Output(output)
    sequential = parts is None and (target is None or not target.atomic)
    if verify and sequential:
        try:  # on stdout or a device, not one byte before every image passed
            verify_at_source(images, trust, client, jobs)
        except BaseException:
            if target is not None:
                target.abort()
            raise
    files["oci-layout"] = LAYOUT_FILE
    files["index.json"] = index_json(images)
    order = blob_order(images)
    delta_entry = None
    if delta is not None:
        from airgap.bundle.delta import omit
        from airgap.bundle.manifest import Delta

        omitted = omit(images, delta)
        delta_entry = Delta(delta.kind, delta.digest, omitted)
        order = [item for item in order if item[0] not in omitted]
    sources: Sources = {}
    for image in images:
        for digest, src in image.blob_sources.items():
            sources.setdefault(digest, src)
    airgap = self_carry(spec, cli)
    manifest = build_manifest(spec, images, files, order, spec.key_manifest(), delta_entry, airgap)
    manifest_bytes = manifest.to_bytes()
    signature = None
    signed_by = None
    if key is not None:
        import base64

        from airgap.keys.public import key_id

        signature = base64.b64encode(key.sign(manifest_bytes))
        signed_by = key_id(key.public_key)
    cache = Path(cache_dir) if cache_dir else None
    meter = Progress(f"pack {spec.name} {spec.version}", total_bytes=manifest.blob_bytes, total_items=len(order),
                     enabled=progress, verb="fetched", present_verb="from the cache")
    in_bundle = {digest for digest, _size, _m in order}
    for image in images:  # one line per image once all its blobs are in (as crane and skopeo print them)
        meter.expect(packed_line(image), sorted(in_bundle & _image_digests(image)))
    raw: Any = parts if parts is not None else sys.stdout.buffer if target is None else target.file
    out = Counting(raw)
    parts_written: list[str] = []
    parts_manifest = None
    stop = threading.Event()
    checker = ThreadPoolExecutor(max_workers=1) if verify and not sequential else None
    verdict: Future[None] | None = None
    try:
        if checker is not None:  # a temp file: verify while downloading; a failure stops the download
            verdict = checker.submit(carry(verify_at_source), images, trust, client, jobs)
            verdict.add_done_callback(lambda f: _stop_on_failure(f, stop))
        with meter:
            if not sequential and cache is None:
                sink = parts if parts is not None else FileAt(raw.fileno())
                out.count = write_bundle_at(sink, manifest_bytes, signature, files, order, sources,
                                            created=spec.created, jobs=jobs, meter=meter, stop=stop)
            else:
                write_bundle(out, manifest_bytes, signature, files, order, sources, created=spec.created,
                             jobs=jobs, cache=cache, meter=meter, stop=stop)
            if verdict is not None:
                verdict.result()  # raises the PolicyError naming every failure
        out.flush()
        if target is not None:
            target.commit()
        if parts is not None:
            parts_manifest = parts.finish(spec.name, spec.version, manifest.digest)
            parts_sig = None
            if key is not None:
                from airgap.bundle.detached import sign_detached

                parts_sig = sign_detached(key, parts_manifest.to_bytes())
            parts_written = parts.commit(parts_manifest, parts_sig)
        cli_written = cli.commit(key) if cli is not None else []
    except BaseException as exc:
        stop.set()
        if target is not None:
            target.abort()
        if parts is not None:
            parts.abort()
        failure = verdict.exception() if verdict is not None and not isinstance(exc, KeyboardInterrupt) else None
        if failure is not None:
            raise failure from None  # the reason the download stopped (or also failed): every failing image
        raise
    finally:
        if checker is not None:
            checker.shutdown(wait=False, cancel_futures=True)
    return PackSummary(
        output=output, bundle_digest=manifest.digest, signed_by=signed_by,
        images=[{"ref": str(i.upstream), "digest": i.root.digest,
                 "platforms": [p["platform"] for p in i.platforms],
                 "attachments": len(i.attachments), "signature_repo": i.signature_repo} for i in images],
        blobs=len(order), blob_bytes=manifest.blob_bytes, bytes_written=out.count,
        seconds=round(time.monotonic() - started, 3), verified=verify,
        file_sha256=None if sequential or cache is None else "sha256:" + out.hasher.hexdigest(),
        parts_manifest=parts_written[len(parts_manifest.parts)] if parts_manifest is not None else None,
        parts=[{"name": p.name, "size": p.size, "sha256": p.sha256} for p in parts_manifest.parts]
        if parts_manifest is not None else None,
        delta={"kind": delta_entry.kind, "base": delta_entry.base, "omitted_blobs": len(delta_entry.omitted),
               "omitted_bytes": delta_entry.omitted_bytes} if delta_entry is not None else None,
        airgap_image=airgap.image if airgap is not None else None,
        cli={"path": cli_written[0], **cli.pin.to_json(), "files": cli_written} if cli is not None else None,
    )
