"""The two writers of ``airgap pack``: in place into a regular file, or sequentially into any stream.

Both write the same bytes (the pinned entry order of ``airgap.bundle.writer``). Every downloaded byte is hashed
against its digest before it can reach the bundle (``RegistryClient.open_blob`` holds the last chunk back until
the digest matched; a cached blob is re-hashed as it is copied: the cache directory is not trusted).

- :func:`write_bundle_at` (a regular file, no ``--cache``): every entry's offset is known in advance, so blobs
  are downloaded concurrently straight into their place with ``os.pwrite``;
- :func:`write_bundle` (stdout, or ``--cache``): up to ``jobs`` downloads run ahead of the writer into spool
  files (or the cache), bounded by a byte and a count window, while the tar is written strictly in order.

Both take a ``stop`` event: ``pack`` sets it when the verification running alongside the download fails, and
the writer then raises :class:`Stopped` at the next chunk (the caller deletes the temp file); a Ctrl-C stops
them at the next chunk too (:func:`airgap.progress.check_interrupted`).

Progress counts a blob's bytes as they are fetched (verified chunks, into the bundle or the spool), so it moves
from the first blob on; blobs taken from ``--cache`` count apart. Each blob done is reported by digest, which
completes the per-image lines ``pack`` asked for.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from airgap import digest as digests
from airgap.fileio import write_atomic
from airgap.oci.deadline import carry  # pool workers run under the caller's deadline
from airgap.oci.manifest import Descriptor, Manifest
from airgap.progress import Progress, check_interrupted

if TYPE_CHECKING:
    from airgap.oci.store import RegistryRepo

CHUNK = 1024 * 1024
# Downloads running ahead of the sequential writer: at most this many bytes spooled to disk (never memory).
WINDOW_BYTES = 1024 * 1024 * 1024
# Blobs up to this size (signature payloads, configs) go through the client's cache of verified content: the
# verification running alongside fetches the signature payloads too, and a small blob's GET costs the registry
# far more than its bytes (~1 ms of distribution's CPU on the bench, mostly zeroing fresh buffer pages).
SMALL_BLOB = 64 * 1024

Order = list[tuple[str, int, Manifest | None]]  # (digest, size, the manifest when the blob is one)
Sources = dict[str, tuple["RegistryRepo", Descriptor]]  # digest -> where to read it


class Stopped(Exception):  # noqa: N818 - control flow, never shown: the caller raises the reason instead
    """The writer was told to stop (the verification running alongside failed)."""


def _check(stop: threading.Event | None) -> None:
    check_interrupted()
    if stop is not None and stop.is_set():
        raise Stopped


class Counting:
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


# ---- in place (a regular file) ------------------------------------------------------------------------


class Positional(Protocol):
    """Where :func:`write_bundle_at` writes: a regular file (:class:`FileAt`) or a set of parts
    (:class:`airgap.bundle.parts.PartFiles`)."""

    def truncate(self, size: int) -> None: ...

    def pwrite(self, data: bytes, offset: int) -> None: ...


class FileAt:
    """A regular file's descriptor as a :class:`Positional` sink."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written


def write_bundle_at(sink: Positional, manifest_bytes: bytes, signature: bytes | None, files: dict[str, bytes],
                    order: Order, sources: Sources, *, created: int, jobs: int, meter: Progress,
                    stop: threading.Event | None = None) -> int:
    """The same bytes as :func:`write_bundle`, for a regular file: every entry's offset is known in advance
    (ustar framing: 512-byte header, data padded to 512, two zero blocks, padded to a 10 KiB record), so
    blobs are downloaded concurrently straight into their place (``os.pwrite``), with no spool copy.
    Every byte is hash-verified by ``open_blob`` before the last chunk is written; any failure fails the
    whole pack (the temp file is then deleted), and stops the other downloads at their next chunk.
    Returns the file size."""
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
    sink.truncate(total)  # the padding and the end-of-archive blocks are the zeros of the extended file
    sink.pwrite(head.getvalue(), 0)
    stop = stop or threading.Event()

    def fetch(item: tuple[int, str, int, Manifest | None]) -> None:
        at, digest, size, manifest = item
        _check(stop)
        sink.pwrite(ustar_header(blob_name(digest), size, created), at)
        pos = at + BLOCK
        if manifest is not None:
            sink.pwrite(manifest.data, pos)
            meter.add_bytes(size)
        elif size <= SMALL_BLOB:
            store, desc = sources[digest]
            sink.pwrite(store.client.read_blob(store.host, store.repo, desc, cached=True), pos)  # verified
            meter.add_bytes(size)
        else:
            store, desc = sources[digest]
            for chunk in store.open_blob(desc):  # verified: the last chunk only after the digest matched
                _check(stop)
                sink.pwrite(chunk, pos)
                pos += len(chunk)
                meter.add_bytes(len(chunk))
        meter.add_item(digest)

    # Largest first: the biggest blob is the critical path; small ones fill in around it.
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(carry(fetch), item) for item in sorted(placed, key=lambda p: -p[2])]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            stop.set()
            for fut in futures:
                fut.cancel()
            raise
    return total


# ---- sequential (stdout, --cache) ---------------------------------------------------------------------


def _read_file(path: Path, verify: str | None, size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        chunks = iter(lambda: f.read(CHUNK), b"")
        yield from (digests.verified_stream(chunks, verify, size, f"cached blob {path}") if verify else chunks)


class _Fetcher:
    """Downloads blobs ahead of the writer into spool files (or the --cache directory)."""

    def __init__(self, pool: ThreadPoolExecutor, spool: Path, cache: Path | None, meter: Progress,
                 stop: threading.Event) -> None:
        self.pool = pool
        self.stop = stop
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
            self.pending[desc.digest] = self.pool.submit(carry(self._download), store, desc)

    def _download(self, store: RegistryRepo, desc: Descriptor) -> Path:
        path = self._path(desc.digest)
        if self.cache is not None and path.is_file():
            self.meter.add_present(desc.size)  # from the cache (re-hashed as it is written)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)

        def chunks() -> Iterator[bytes]:
            for chunk in store.open_blob(desc):  # verified: the last chunk only after the digest matched
                _check(self.stop)
                self.meter.add_bytes(len(chunk))
                yield chunk

        write_atomic(path, chunks())
        return path

    def take(self, digest: str, size: int) -> Iterator[bytes]:
        path = self.pending.pop(digest).result()
        try:
            yield from _read_file(path, digest if self.cache is not None else None, size)
        finally:
            if self.cache is None:
                path.unlink(missing_ok=True)


def write_bundle(out: Any, manifest_bytes: bytes, signature: bytes | None, files: dict[str, bytes],
                 order: Order, sources: Sources, *, created: int, jobs: int, cache: Path | None, meter: Progress,
                 stop: threading.Event | None = None) -> None:
    """Write every entry in order; blob downloads run ahead of the writer within the window."""
    stop = stop or threading.Event()
    writer = _write_header_entries(out, created, manifest_bytes, signature, files)
    window = max(2 * jobs, 8)
    with tempfile.TemporaryDirectory(prefix="airgap-pack-") as spool, \
            ThreadPoolExecutor(max_workers=jobs) as pool:
        fetcher = _Fetcher(pool, Path(spool), cache, meter, stop)
        ahead = 0  # index of the next blob to submit
        inflight = 0  # bytes submitted and not yet written
        try:
            for i, (digest, size, manifest) in enumerate(order):
                _check(stop)
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
                meter.add_item(digest)
        except BaseException:
            stop.set()
            for fut in fetcher.pending.values():
                fut.cancel()
            raise
    writer.close()
