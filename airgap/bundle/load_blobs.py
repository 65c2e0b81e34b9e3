"""The blob pass of ``airgap load``: read every blob in tar order and push what the registry lacks.

Each blob is hashed by the reader while it is spooled to a temp file (the last chunk only after its digest
matched), then uploaded concurrently (``-j``) to the first repository that needs it and mounted into the others.
Manifests and other small unclaimed blobs are kept in memory for the manifest pass; blobs the registry already
has are still read (and so hashed: the bundle must be intact) but not pushed. At most ``WINDOW_BYTES`` are
spooled and not yet uploaded, so memory and disk stay bounded whatever the bundle size.

Progress counts what the registry acknowledged, never what was read from the tar (which runs up to the window
ahead): a blob's bytes when its upload's last request answered success, a blob the registry already holds (or
that was mounted) apart, as already there. Manifests are pushed after the blobs and are not counted in bytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap.errors import BundleError
from airgap.oci.deadline import carry  # pool workers run under the caller's deadline
from airgap.oci.manifest import Descriptor
from airgap.progress import Progress, interruptible

if TYPE_CHECKING:
    from airgap.bundle.placement import Placed
    from airgap.oci.registry import RegistryClient

CHUNK = 1024 * 1024
WINDOW_BYTES = 512 * 1024 * 1024  # spooled (on disk) and not yet uploaded
_OCTET = "application/octet-stream"


def _spool(chunks: Iterator[bytes], directory: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="blob-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:  # hash-verified by the reader: the last chunk only after the digest matched
                f.write(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _file_opener(path: Path) -> Callable[[], Iterator[bytes]]:
    def opener() -> Iterator[bytes]:
        with path.open("rb") as f:
            yield from interruptible(iter(lambda: f.read(CHUNK), b""))  # Ctrl-C stops an upload mid-blob

    return opener


class _Uploader:
    """Uploads spooled blobs concurrently; the first repository gets the bytes, the others a mount. ``meter``
    counts a blob when the registry acknowledged it."""

    def __init__(self, client: RegistryClient, host: str, jobs: int, meter: Progress) -> None:
        self.client = client
        self.host = host
        self.meter = meter
        self.pool = ThreadPoolExecutor(max_workers=jobs)
        self.jobs = jobs
        self.futures: dict[Future[int], int] = {}  # future -> spooled bytes
        self.pushed = 0
        self.bytes = 0

    def submit(self, digest: str, size: int, path: Path, repos: list[str]) -> None:
        while self.futures and (len(self.futures) >= 2 * self.jobs or sum(self.futures.values()) >= WINDOW_BYTES):
            self._reap(wait(self.futures, return_when=FIRST_COMPLETED).done)
        self.futures[self.pool.submit(carry(self._push), digest, size, path, repos)] = size

    def _push(self, digest: str, size: int, path: Path, repos: list[str]) -> int:
        desc = Descriptor(_OCTET, digest, size)
        opener = _file_opener(path)
        try:
            sent = self.client.push_blob(self.host, repos[0], desc, opener, check_exists=False)
            if sent:  # the upload's last request answered success: the registry holds these bytes
                self.meter.add_bytes(size)
            else:
                self.meter.add_present(size)  # mounted from where the registry had it
            for repo in repos[1:]:
                self.client.push_blob(self.host, repo, desc, opener, mount_from=repos[0], check_exists=False)
            self.meter.add_item()
        finally:
            path.unlink(missing_ok=True)
        return size if sent else -1

    def _reap(self, done: set[Future[int]]) -> None:
        for fut in done:
            self.futures.pop(fut)
            sent = fut.result()
            if sent >= 0:
                self.pushed += 1
                self.bytes += sent

    def join(self) -> None:
        try:
            self._reap(set(wait(self.futures).done))
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _present(client: RegistryClient, host: str, pairs: list[tuple[str, str]], jobs: int) -> set[tuple[str, str]]:
    def probe(pair: tuple[str, str]) -> bool:
        return client.blob_exists(host, pair[0], pair[1])

    if not pairs:
        return set()
    with ThreadPoolExecutor(max_workers=max(1, min(jobs * 2, len(pairs)))) as pool:
        return {p for p, there in zip(pairs, pool.map(carry(probe), pairs), strict=True) if there}


def stream_blobs(reader: Any, client: RegistryClient, placed: list[Placed], *, jobs: int,
                 max_manifest: int, meter: Progress) -> tuple[dict[str, bytes], _Uploader]:
    """Read every blob in tar order: manifests (and other small unclaimed blobs) kept in memory, claimed
    blobs pushed to every repository that needs them unless already there. Returns the kept bytes."""
    host = placed[0].host if placed else ""
    claims: dict[str, list[str]] = {}
    manifest_digests: set[str] = set()
    omitted = reader.manifest.omitted  # a delta's: never in the stream (check_site placed them)
    for p in placed:
        for digest in p.entry.blobs:
            if digest in omitted:
                continue
            repos = claims.setdefault(digest, [])
            if p.repo not in repos:
                repos.append(p.repo)
        manifest_digests.update(p.entry.manifests)
        manifest_digests.update(a.digest for a in p.entry.attachments)
    sizes = reader.manifest.blobs
    pushed = [d for d in claims if d not in manifest_digests]
    meter.total_bytes = sum(sizes.get(d, 0) for d in pushed)
    meter.total_items = len(pushed)
    meter.set_status("checking what the registry holds")
    present = _present(client, host, [(r, d) for d, rs in claims.items() for r in rs if d not in manifest_digests],
                       jobs)
    for digest in pushed:
        if all((r, digest) in present for r in claims[digest]):
            meter.add_present(sizes.get(digest, 0))
            meter.add_item()
    meter.set_status("")
    kept: dict[str, bytes] = {}
    uploader = _Uploader(client, host, jobs, meter)
    with tempfile.TemporaryDirectory(prefix="airgap-load-") as spool:
        try:
            for digest, size, chunks in reader.blobs():
                missing = [r for r in claims.get(digest, ()) if (r, digest) not in present]
                if digest in manifest_digests or (digest not in claims and size <= max_manifest):
                    if size > max_manifest:
                        raise BundleError(f"manifest {digest}: {size} bytes is over the limit of {max_manifest}")
                    kept[digest] = b"".join(chunks)
                elif missing:
                    uploader.submit(digest, size, _spool(chunks, spool), missing)
                else:
                    for _chunk in chunks:  # still hashed by the reader: the bundle must be intact
                        pass
            reader.finish()
            uploader.join()
        except BaseException:
            uploader.pool.shutdown(wait=True, cancel_futures=True)
            raise
    return kept, uploader
