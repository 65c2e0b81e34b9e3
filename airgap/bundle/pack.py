"""``airgap pack``: resolve, collect, verify and write a bundle in one streaming pass.

Steps: resolve every spec ref to a digest and collect its graph (every platform, or the one asked for),
cosign's ``.sig/.att/.sbom`` tags and referrers, also in a policy's separate signature repository
(``airgap.copy``'s planner does the walking); verify every image against the bundled policy at the SOURCE
registry (all failures reported at once); assemble the trust files; then write the bundle in the pinned
order. Everything but the blob bytes is known before the first byte is written, so the bundle manifest (which
pins every entry) goes first and a reader can verify while streaming.

Blobs move registry -> hash -> spool file -> tar: up to ``jobs`` downloads run ahead of the writer (bounded
by a byte and a count window) while the tar itself is written strictly in order. Every downloaded byte is
hashed against its digest before it can reach the tar (``RegistryClient.open_blob`` holds the last chunk back
until the digest matched; a cached blob is re-hashed as it is copied: the cache directory is not trusted).
The output is written to a temp file next to the target and renamed at the end; ``-`` streams to stdout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airgap import refs
from airgap.errors import ConfigError, PolicyError
from airgap.oci import digest as digests
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest
from airgap.progress import Progress

if TYPE_CHECKING:
    from airgap.bundle.manifest import BundleManifest, ImageEntry
    from airgap.bundle.spec import BundleSpec
    from airgap.keys import Signer
    from airgap.oci.registry import RegistryClient
    from airgap.oci.store import RegistryRepo
    from airgap.policy import PolicySet
    from airgap.trust import Trust

CHUNK = 1024 * 1024
# Downloads running ahead of the tar writer: at most this many bytes spooled to disk (never memory) ...
WINDOW_BYTES = 1024 * 1024 * 1024
LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'
REF_NAME = "org.opencontainers.image.ref.name"
_KINDS = {".sig": "signature", ".att": "attestation", ".sbom": "sbom"}


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Attachment:
    kind: str  # signature | attestation | sbom | referrer
    tag: str | None
    manifest: Manifest
    subject: str
    repo: str  # upstream "registry/repository" it was found in


@dataclass
class Collected:
    """One image as found at its source: the graph, what hangs off it, and where each blob is read from."""

    upstream: refs.Reference
    root: Manifest
    manifests: list[Manifest]  # children first, root last
    attachments: list[Attachment]
    extra_manifests: list[Manifest]  # children of attachment indexes (pushed before the attachment)
    blob_sources: dict[str, tuple[RegistryRepo, Descriptor]]  # digest -> where to read it
    signature_repo: str | None = None

    @property
    def platforms(self) -> list[dict[str, str]]:
        return [{"platform": c.platform, "digest": c.digest} for c in self.root.manifests if c.platform]


# ---- collection -------------------------------------------------------------------------------------


def _select_platforms(store: RegistryRepo, root: Manifest, platforms: tuple[str, ...] | None,
                      text: str) -> Manifest:
    """Apply a spec's ``platforms``: all (None), or one platform of an index (the image becomes that
    platform's manifest, as ``crane pull --platform`` does). A partial index cannot be shipped: registries
    refuse an index whose children are missing, and rewriting it would break every signature over it."""
    if not platforms or not root.is_index:
        return root
    have = {c.platform: c for c in root.manifests if c.platform}
    missing = [p for p in platforms if p not in have]
    if missing:
        raise ConfigError(f"{text}: no platform {', '.join(missing)} (has {', '.join(sorted(have)) or 'none'})")
    if set(platforms) >= set(have):
        return root
    if len(platforms) > 1:
        raise ConfigError(f"{text}: platforms must be one platform or all of {', '.join(sorted(have))} "
                          "(a partial index cannot be pushed or verified)")
    return store.resolve(have[platforms[0]].digest)


def _attachments(plan: Any, store: RegistryRepo, repo_name: str, known: set[str]) -> list[Attachment]:
    out = []
    for tag, manifest in plan.companions:
        if manifest.digest in known:
            continue
        known.add(manifest.digest)
        kind = next(k for s, k in _KINDS.items() if tag.endswith(s))
        alg, rest = tag.split("-", 1)
        out.append(Attachment(kind, tag, manifest, f"{alg}:{rest.rsplit('.', 1)[0]}", repo_name))
    for referrer in plan.referrers:
        if referrer.digest in known or referrer.subject is None:
            continue
        known.add(referrer.digest)
        out.append(Attachment("referrer", None, referrer, referrer.subject.digest, repo_name))
    return out


def collect_image(client: RegistryClient, text: str, platforms: tuple[str, ...] | None,
                  policy: PolicySet | None) -> Collected:
    """Resolve ``text`` and find everything to ship with it (see the module docstring)."""
    from airgap.copy import _collect, _Plan, _plan_attachments
    from airgap.oci.store import RegistryRepo

    upstream = refs.parse(text)
    store = RegistryRepo(client, refs.api_host(upstream.registry), upstream.repository)
    root = _select_platforms(store, store.resolve(upstream.identifier), platforms, text)
    depth = client.limits.max_referrer_depth
    plan = _Plan()
    _collect(store, root, plan)
    image_manifests = list(plan.manifests.values())
    _plan_attachments(store, root, plan, depth)
    known = {m.digest for m in image_manifests}
    attachments = _attachments(plan, store, upstream.name, known)
    sources: dict[str, tuple[RegistryRepo, Descriptor]] = {d: (store, b) for d, b in plan.blobs.items()}
    extra = [m for d, m in plan.manifests.items() if d not in known and d not in
             {a.manifest.digest for a in attachments}]
    signature_repo = None
    for repo_text in _signature_repos(policy, upstream):
        sig_ref = refs.parse(repo_text.removeprefix("oci://"), default_tag=None)
        if sig_ref.name == upstream.name:
            continue
        sig_store = RegistryRepo(client, refs.api_host(sig_ref.registry), sig_ref.repository)
        sig_plan = _Plan(manifests={m.digest: m for m in image_manifests})
        _plan_attachments(sig_store, root, sig_plan, depth)
        found = _attachments(sig_plan, sig_store, sig_ref.name, known)
        if not found:
            continue
        signature_repo = signature_repo or sig_ref.name
        attachments += found
        for d, b in sig_plan.blobs.items():
            sources.setdefault(d, (sig_store, b))
        extra += [m for d, m in sig_plan.manifests.items() if d not in known and d not in
                  {a.manifest.digest for a in attachments} and m not in extra]
    return Collected(upstream, root, image_manifests, attachments, extra, sources, signature_repo)


def _signature_repos(policy: PolicySet | None, upstream: refs.Reference) -> list[str]:
    """Upstream repositories the policies matching ``upstream`` look for its signatures in."""
    if policy is None:
        return []
    out: list[str] = []
    for image_policy in policy.select(upstream):
        for authority in image_policy.authorities:
            out += [s for s in authority.sources if s not in out]
    return out


# ---- trust ------------------------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def load_trust(files: dict[str, bytes], directory: Path) -> Trust:
    """Write the bundle's ``trust/`` entries under ``directory`` and load them as a trust directory."""
    from airgap.trust import Trust

    write_tree(directory, {n.removeprefix("trust/"): d for n, d in files.items() if n.startswith("trust/")})
    return Trust.load(directory)


# ---- verification at the source -------------------------------------------------------------------


def verify_at_source(images: list[Collected], trust: Trust, client: RegistryClient, jobs: int) -> None:
    """Verify every image against the bundled policy at its source registry; raise one PolicyError
    naming every failure."""
    from airgap.api import Verifier

    verifier = Verifier(trust, client=client)
    refs_ = [str(c.upstream.with_digest(c.root.digest)) for c in images]
    failures = [f"{r.ref}: {'; '.join(r.reasons)}" for r in verifier.verify_many(refs_, jobs=jobs) if not r]
    if failures:
        raise PolicyError(f"{len(failures)} of {len(images)} image(s) failed verification (pack with "
                          f"--no-verify to ship them anyway): " + " | ".join(failures))


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


def blob_order(images: list[Collected]) -> list[tuple[str, int, Manifest | None]]:
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
                   order: list[tuple[str, int, Manifest | None]], key_manifest: dict[str, Any]) -> BundleManifest:
    from airgap.bundle.manifest import BundleManifest, FileEntry

    return BundleManifest(
        name=spec.name, version=spec.version, created=spec.created,
        images=tuple(image_entry(i) for i in images), keys=key_manifest,
        files={n: FileEntry.of(d) for n, d in files.items()},
        blobs={d: s for d, s, _ in order},
    )


# ---- writing ----------------------------------------------------------------------------------------


def _read_file(path: Path, verify: str | None, size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        chunks = iter(lambda: f.read(CHUNK), b"")
        yield from (digests.verified_stream(chunks, verify, size, f"cached blob {path}") if verify else chunks)


class _Fetcher:
    """Downloads blobs ahead of the writer into spool files (or the --cache directory)."""

    def __init__(self, pool: ThreadPoolExecutor, spool: Path, cache: Path | None, meter: Progress) -> None:
        self.pool = pool
        self.spool = spool
        self.cache = cache
        self.meter = meter
        self.pending: dict[str, Future[Path]] = {}

    def _path(self, digest: str) -> Path:
        hexpart = digests.hex_part(digest)
        if self.cache is not None:
            return self.cache / "blobs" / digests.algorithm(digest) / hexpart
        return self.spool / hexpart

    def cached(self, digest: str) -> bool:
        return self.cache is not None and self._path(digest).is_file()

    def submit(self, store: RegistryRepo, desc: Descriptor) -> None:
        if desc.digest not in self.pending:
            self.pending[desc.digest] = self.pool.submit(self._download, store, desc)

    def _download(self, store: RegistryRepo, desc: Descriptor) -> Path:
        path = self._path(desc.digest)
        if self.cache is not None and path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in store.open_blob(desc):  # verified: the last chunk only after the digest matched
                    f.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def take(self, digest: str, size: int) -> Iterator[bytes]:
        path = self.pending.pop(digest).result()
        try:
            for chunk in _read_file(path, digest if self.cache is not None else None, size):
                self.meter.add_bytes(len(chunk))
                yield chunk
        finally:
            if self.cache is None:
                path.unlink(missing_ok=True)


def _open_output(output: str) -> tuple[IO[bytes], Path | None]:
    if output == "-":
        return sys.stdout.buffer, None
    target = Path(output)
    if target.is_dir():
        raise ConfigError(f"output {output} is a directory")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"output directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".part")
    return os.fdopen(fd, "wb"), Path(tmp)


class _Counting:
    """A write-only file wrapper that counts bytes and hashes them (the file's own sha256)."""

    def __init__(self, inner: IO[bytes]) -> None:
        import hashlib

        self.inner = inner
        self.count = 0
        self.hasher = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.inner.write(data)
        self.hasher.update(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.inner.flush()

    def tell(self) -> int:
        return self.count


def write_bundle(out: Any, manifest_bytes: bytes, signature: bytes | None, files: dict[str, bytes],
                 order: list[tuple[str, int, Manifest | None]], sources: dict[str, tuple[RegistryRepo, Descriptor]],
                 *, created: int, jobs: int, cache: Path | None, meter: Progress) -> None:
    """Write every entry in order; blob downloads run ahead of the writer within the window."""
    writer = _write_header_entries(out, created, manifest_bytes, signature, files)
    window = max(2 * jobs, 8)
    with tempfile.TemporaryDirectory(prefix="airgap-pack-") as spool, \
            ThreadPoolExecutor(max_workers=jobs) as pool:
        fetcher = _Fetcher(pool, Path(spool), cache, meter)
        ahead = 0  # index of the next blob to submit
        inflight = 0  # bytes submitted and not yet written
        try:
            for i, (digest, size, manifest) in enumerate(order):
                while ahead < len(order) and (ahead <= i or (ahead - i < window and inflight < WINDOW_BYTES)):
                    d, s, m = order[ahead]
                    if m is None:
                        fetcher.submit(sources[d][0], sources[d][1])
                        inflight += s
                    ahead += 1
                if manifest is not None:
                    writer.add_blob(digest, size, iter([manifest.data]))
                    meter.add_bytes(size)
                else:
                    writer.add_blob(digest, size, fetcher.take(digest, size))
                    inflight -= size
                meter.add_item()
        except BaseException:
            for fut in fetcher.pending.values():
                fut.cancel()
            raise
    writer.close()


def _write_header_entries(out: Any, created: int, manifest_bytes: bytes, signature: bytes | None,
                          files: dict[str, bytes]) -> Any:
    from airgap.bundle.writer import BundleWriter

    writer = BundleWriter(out, created)
    writer.add_file("airgap-bundle.json", manifest_bytes)
    if signature is not None:
        writer.add_file("airgap-bundle.json.sig", signature)
    for name in sorted(n for n in files if n.startswith("trust/")):
        writer.add_file(name, files[name])
    writer.add_file("oci-layout", files["oci-layout"])
    writer.add_file("index.json", files["index.json"])
    return writer


def write_bundle_at(fd: int, manifest_bytes: bytes, signature: bytes | None, files: dict[str, bytes],
                    order: list[tuple[str, int, Manifest | None]], sources: dict[str, tuple[RegistryRepo, Descriptor]],
                    *, created: int, jobs: int, meter: Progress) -> int:
    """The same bytes as :func:`write_bundle`, for a regular file: every entry's offset is known in advance
    (ustar framing: 512-byte header, data padded to 512, two zero blocks, padded to a 10 KiB record), so
    blobs are downloaded concurrently straight into their place (``os.pwrite``), with no spool copy.
    Every byte is hash-verified by ``open_blob`` before the last chunk is written; any failure fails the
    whole pack (the temp file is then deleted). Returns the file size."""
    import io

    from airgap.bundle.manifest import blob_name
    from airgap.bundle.writer import BLOCK, RECORD, ustar_header

    head = io.BytesIO()
    _write_header_entries(head, created, manifest_bytes, signature, files)
    offset = len(head.getvalue())
    placed: list[tuple[int, str, int, Manifest | None]] = []
    for digest, size, manifest in order:
        placed.append((offset, digest, size, manifest))
        offset += BLOCK + size + (-size) % BLOCK
    end = offset + 2 * BLOCK
    total = end + (-end) % RECORD
    os.ftruncate(fd, total)  # the padding and the end-of-archive blocks are the zeros of the extended file
    os.pwrite(fd, head.getvalue(), 0)

    def fetch(item: tuple[int, str, int, Manifest | None]) -> None:
        at, digest, size, manifest = item
        os.pwrite(fd, ustar_header(blob_name(digest), size, created), at)
        pos = at + BLOCK
        if manifest is not None:
            os.pwrite(fd, manifest.data, pos)
            meter.add_bytes(size)
        else:
            store, desc = sources[digest]
            for chunk in store.open_blob(desc):  # verified: the last chunk only after the digest matched
                os.pwrite(fd, chunk, pos)
                pos += len(chunk)
                meter.add_bytes(len(chunk))
        meter.add_item()

    # Largest first: the biggest blob is the critical path; small ones fill in around it.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(fetch, item) for item in sorted(placed, key=lambda p: -p[2])]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
    return total


def pack(spec: BundleSpec, output: str, *, client: RegistryClient, key: Signer | None = None, jobs: int = 4,
         cache_dir: str | None = None, verify: bool = True, progress: bool | None = None) -> PackSummary:
    """Pack ``spec`` into ``output`` (a path, or ``-`` for stdout); see the module docstring."""
    started = time.monotonic()
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
        images = list(pool.map(lambda s: collect_image(client, s.ref, s.platforms, trust.policy), specs))
    if verify:
        verify_at_source(images, trust, client, jobs)
    files["oci-layout"] = LAYOUT_FILE
    files["index.json"] = index_json(images)
    order = blob_order(images)
    sources: dict[str, tuple[RegistryRepo, Descriptor]] = {}
    for image in images:
        for digest, src in image.blob_sources.items():
            sources.setdefault(digest, src)
    manifest = build_manifest(spec, images, files, order, spec.key_manifest())
    manifest_bytes = manifest.to_bytes()
    signature = None
    signed_by = None
    if key is not None:
        import base64

        from airgap.keys import key_id

        signature = base64.b64encode(key.sign(manifest_bytes))
        signed_by = key_id(key.public_key)
    cache = Path(cache_dir) if cache_dir else None
    meter = Progress(f"pack {spec.name}", total_bytes=manifest.blob_bytes, total_items=len(order),
                     enabled=progress)
    raw, tmp_path = _open_output(output)
    out = _Counting(raw)
    try:
        with meter:
            if tmp_path is not None and cache is None:
                out.count = write_bundle_at(raw.fileno(), manifest_bytes, signature, files, order, sources,
                                            created=spec.created, jobs=max(1, jobs), meter=meter)
            else:
                write_bundle(out, manifest_bytes, signature, files, order, sources, created=spec.created,
                             jobs=max(1, jobs), cache=cache, meter=meter)
        out.flush()
        if tmp_path is not None:
            raw.close()
            os.replace(tmp_path, output)
    except BaseException:
        if tmp_path is not None:
            raw.close()
            tmp_path.unlink(missing_ok=True)
        raise
    return PackSummary(
        output=output, bundle_digest=manifest.digest, signed_by=signed_by,
        images=[{"ref": str(i.upstream), "digest": i.root.digest,
                 "platforms": [p["platform"] for p in i.platforms],
                 "attachments": len(i.attachments), "signature_repo": i.signature_repo} for i in images],
        blobs=len(order), blob_bytes=manifest.blob_bytes, bytes_written=out.count,
        seconds=round(time.monotonic() - started, 3), verified=verify,
        file_sha256=None if tmp_path is None or cache is None else "sha256:" + out.hasher.hexdigest(),
    )
