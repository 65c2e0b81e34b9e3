"""Where a bundle is read from: one file, stdin (``-``), or the parts of a split bundle.

``load``, ``verify-bundle``, ``inspect`` and ``trust export`` take the parts as every part file given on the
command line (in any order), a directory holding them, or the parts manifest (the parts are then looked up
beside it). Before one byte of a part is read, the parts manifest is parsed and checked (its signature with the
operator's key, the bundle digest the operator pinned) and every part it lists must be there with its listed
size; a part file it does not list is refused. The parts are then read in order as ONE stream, and each part is
hashed as it streams (on a helper thread): a part whose digest is not the listed one fails the next read, the end
of the stream is reached only after every part matched, and any error while reading is blamed on the part when
that part (read to its end) does not match (:func:`open_source`).

Threat model: part files are as untrusted as a bundle. The parts manifest is trusted only as far as its
signature (``--key``) or the pinned bundle digest vouch for it; either way the bundle inside is still checked
by :class:`~airgap.bundle.reader.BundleReader` exactly as a single file is.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from airgap.bundle.parts import PART_NAME, PARTS_SUFFIX, PartsManifest
from airgap.errors import BundleError, ConfigError
from airgap.fileio import read_capped

if TYPE_CHECKING:
    from airgap.keys.public import PublicKey

MAX_PARTS_MANIFEST = 16 * 1024 * 1024


@dataclass
class PartSet:
    """A checked set of parts: the parts manifest and the part files in stream order."""

    manifest: PartsManifest
    manifest_path: Path
    paths: list[Path]
    signed_by: str | None = None

    def describe(self) -> dict[str, object]:
        return {"manifest": str(self.manifest_path), "signed_by": self.signed_by, "size": self.manifest.size,
                "part_size": self.manifest.part_size,
                "parts": [{"name": p.name, "path": str(path), "size": p.size, "sha256": p.sha256}
                          for p, path in zip(self.manifest.parts, self.paths, strict=True)]}


@dataclass
class Source:
    """An open bundle: ``stream`` to hand to a reader, ``where`` to name it, ``parts`` when it is split."""

    stream: IO[bytes]
    where: str
    parts: PartSet | None = None


def is_parts(args: Sequence[str]) -> bool:
    """True when ``args`` name a split bundle rather than one file (or ``-``)."""
    if len(args) != 1:
        return True
    arg = args[0]
    return arg != "-" and (Path(arg).is_dir() or arg.endswith(PARTS_SUFFIX) or bool(PART_NAME.match(Path(arg).name)))


def find_parts(args: Sequence[str], *, key: PublicKey | Sequence[PublicKey] | None = None,
               bundle_digest: str | None = None) -> PartSet:
    """Resolve and check a split bundle before reading it (see the module docstring)."""
    if not args:
        raise ConfigError("no bundle given")
    manifests: list[Path] = []
    given: list[Path] = []  # part files named on the command line
    scanned: list[Path] = []  # directories named on the command line: their part files must all be listed
    for arg in args:
        path = Path(arg)
        if arg == "-":
            raise ConfigError("stdin (-) cannot be combined with other parts: pipe `cat PARTS...` into it instead")
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith(PARTS_SUFFIX) and p.is_file())
            if not found:
                raise ConfigError(f"directory {path} holds no parts manifest (*{PARTS_SUFFIX})")
            manifests += found
            scanned.append(path)
        elif arg.endswith(PARTS_SUFFIX):
            manifests.append(path)
        elif PART_NAME.match(path.name):
            given.append(path)
        else:
            raise ConfigError(f"{arg} is neither a part (NAME.part-0001) nor a parts manifest (NAME{PARTS_SUFFIX}); "
                              "give one bundle file, or the parts of one bundle")
    manifests = list(dict.fromkeys(manifests))
    if not manifests:
        beside = list(dict.fromkeys(p.parent / f"{PART_NAME.match(p.name).group('base')}{PARTS_SUFFIX}"  # type: ignore[union-attr]
                                    for p in given))
        manifests = [m for m in beside if m.is_file()]
        if not manifests:
            raise ConfigError(f"no parts manifest beside the parts (looked for {', '.join(map(str, beside[:3]))}); "
                              "give the parts manifest too")
    contents = {m: _read_small(m, "parts manifest") for m in manifests}
    if len(set(contents.values())) > 1:  # copies of one manifest (on each medium) are fine
        shown = ", ".join(str(m) for m in manifests[:3])
        raise ConfigError(f"parts manifests of more than one bundle given ({shown}): give the parts of one bundle")
    manifest_path = manifests[0]
    data = contents[manifest_path]
    manifest = PartsManifest.from_bytes(data, manifest_path.name)
    signed_by = _check_trust(manifest, manifest_path, data, key, bundle_digest)
    base = PART_NAME.match(manifest.parts[0].name).group("base")  # type: ignore[union-attr]
    listed = {p.name for p in manifest.parts}
    by_name: dict[str, Path] = {}
    for path in given:  # named on the command line: two different files of one name are a mistake
        if path.name not in listed:
            raise BundleError(f"unexpected extra part {path}: {manifest_path.name} does not list it")
        if path.name in by_name and _same(by_name[path.name]) != _same(path):
            raise ConfigError(f"part {path.name} given twice ({by_name[path.name]}, {path})")
        by_name.setdefault(path.name, path)
    for directory in dict.fromkeys([*scanned, manifest_path.parent]):  # beside the manifest, in named directories
        for path in sorted(directory.iterdir()):
            m = PART_NAME.match(path.name)
            if m is None or m.group("base") != base:
                continue
            if path.name not in listed:
                raise BundleError(f"unexpected extra part {path}: {manifest_path.name} does not list it")
            by_name.setdefault(path.name, path)
    paths = []
    for part in manifest.parts:
        part_path = by_name.get(part.name)
        if part_path is None or not part_path.is_file():
            raise BundleError(f"part {part.name} is missing ({manifest_path.name} lists {len(manifest.parts)} "
                              "parts); nothing was read")
        size = part_path.stat().st_size
        if size != part.size:
            why = "truncated" if size < part.size else "too long"
            raise BundleError(f"part {part_path}: {size} bytes, {manifest_path.name} lists {part.size} ({why}, or a "
                              "part of another bundle)")
        paths.append(part_path)
    return PartSet(manifest, manifest_path, paths, signed_by)


def _same(path: Path) -> object:
    try:
        st = path.stat()
        return (st.st_dev, st.st_ino)
    except OSError:
        return str(path)


def _read_small(path: Path, what: str) -> bytes:
    return read_capped(path, MAX_PARTS_MANIFEST, what, too_large=BundleError)


def _check_trust(manifest: PartsManifest, path: Path, data: bytes, key: PublicKey | Sequence[PublicKey] | None,
                 bundle_digest: str | None) -> str | None:
    """With a key, the parts manifest must be signed by it (``NAME.parts.json.sig``); a pinned bundle digest
    must be the one the parts manifest names. Either way the bundle inside is checked again by its reader."""
    from airgap.bundle.detached import verify_detached

    signed_by = None
    keys = [] if key is None else list(key) if isinstance(key, Sequence) else [key]
    sig_path = Path(f"{path}.sig")
    if keys:
        signature = _read_small(sig_path, "parts manifest signature") if sig_path.is_file() else None
        signed_by = verify_detached(keys, signature, data, path.name)
    if bundle_digest is not None and bundle_digest != manifest.bundle_digest:
        raise BundleError(f"{path.name} is for bundle {manifest.bundle_digest}, not the pinned {bundle_digest}")
    return signed_by


class _PartHasher:
    """Hashes the parts on a helper thread, so the part digests cost the load no time on a free core
    (``hashlib`` releases the GIL while it hashes). Chunks are handed over by reference through a bounded queue
    (at most :data:`QUEUE_CHUNKS` reads ahead, so memory stays flat); a part's digest is compared when its end
    marker comes through, and the first mismatch is kept for the reading thread to raise."""

    QUEUE_CHUNKS = 3

    def __init__(self, manifest_name: str) -> None:
        import queue
        import threading

        self.manifest_name = manifest_name
        self.failure: BundleError | None = None
        self._stopped = False
        self._queue: queue.Queue[bytes | tuple[Path, str] | None] = queue.Queue(self.QUEUE_CHUNKS)
        self._thread = threading.Thread(target=self._run, name="airgap-part-hasher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        hasher = hashlib.sha256()
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, bytes):
                hasher.update(item)
                continue
            path, listed = item
            actual = hasher.hexdigest()
            hasher = hashlib.sha256()
            if actual != listed and self.failure is None:
                self.failure = BundleError(
                    f"part {path}: sha256 {actual[:16]}... does not match {self.manifest_name}'s {listed[:16]}... "
                    "(corrupted, or a part of another bundle)")

    def update(self, data: bytes) -> None:
        self._queue.put(data)

    def end_part(self, path: Path, listed: str) -> None:
        self._queue.put((path, listed))

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def join(self) -> None:
        """Wait until every part handed over was checked; raise the first mismatch."""
        self.stop()
        self._thread.join()
        self.check()

    def stop(self) -> None:
        """Let the thread end once it has hashed what it was given (idempotent)."""
        if self._thread.is_alive() and not self._stopped:
            self._stopped = True
            self._queue.put(None)


class PartsStream:
    """The parts read in order as one binary stream, each part hashed while it streams (see the module
    docstring). Reads stop at part boundaries (short reads), which every reader of a stream handles. The read
    that reaches the end of the last part returns only once every part's digest matched; a mismatch found
    earlier fails the next read."""

    def __init__(self, parts: PartSet) -> None:
        self.parts = parts
        self._index = 0
        self._file: IO[bytes] | None = None
        self._left = 0
        self._hasher: _PartHasher | None = None
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if self._hasher is None:
            self._hasher = _PartHasher(self.parts.manifest_path.name)
        self._hasher.check()
        while True:
            if self._file is None:
                if self._index >= len(self.parts.paths):
                    self._hasher.join()
                    return b""
                self._open()
            if self._left == 0:
                self._end_part()
                continue
            want = self._left if n is None or n < 0 else min(n, self._left)
            data = self._file.read(want) if self._file is not None else b""
            if not data:
                raise BundleError(f"part {self.parts.paths[self._index]} is truncated: it ended "
                                  f"{self._left} bytes early")
            self._hasher.update(data)
            self._left -= len(data)
            if self._left == 0:
                self._end_part()
            return data

    def _open(self) -> None:
        path = self.parts.paths[self._index]
        try:
            self._file = path.open("rb")
        except OSError as exc:
            raise BundleError(f"part {path}: cannot open ({exc.strerror or exc})") from None
        self._left = self.parts.manifest.parts[self._index].size

    def _end_part(self) -> None:
        """The current part was read to its listed size: hand its digest check to the hasher."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._hasher is not None:
            self._hasher.end_part(self.parts.paths[self._index], self.parts.manifest.parts[self._index].sha256)
        self._index += 1

    def blame(self) -> None:
        """After a failure while reading: read the current part to its end, so a part that does not match its
        listed digest is named (raises) rather than whatever the reader tripped over in it."""
        if self._hasher is None:
            return
        try:
            while self._file is not None and self._left:
                data = self._file.read(min(self._left, 1024 * 1024))
                if not data:
                    break
                self._hasher.update(data)
                self._left -= len(data)
            if self._file is not None and not self._left:
                self._end_part()
        except OSError:
            pass
        self._hasher.join()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._hasher is not None:
            self._hasher.stop()
        self.closed = True


def check_bundle_digest(stream: object, digest: str) -> None:
    """When ``stream`` reads parts: the bundle in them must be the one their parts manifest names (checked as
    soon as the bundle manifest was read, before anything else is)."""
    if isinstance(stream, PartsStream) and stream.parts.manifest.bundle_digest != digest:
        name = stream.parts.manifest_path.name
        raise BundleError(f"{name} is for bundle {stream.parts.manifest.bundle_digest}, but the parts hold bundle "
                          f"{digest}")


@contextmanager
def open_source(args: Sequence[str] | str, *, key: PublicKey | Sequence[PublicKey] | None = None,
                bundle_digest: str | None = None) -> Iterator[Source]:
    """Open a bundle given as one path, ``-`` (stdin) or parts (see :func:`find_parts`). A :class:`BundleError`
    raised inside the block while parts are read becomes the error naming the part, when a part is at fault."""
    args = [args] if isinstance(args, str) else list(args)
    if not is_parts(args):
        if args[0] == "-":
            yield Source(sys.stdin.buffer, "-")
            return
        try:
            f = open(args[0], "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise ConfigError(f"cannot open bundle {args[0]}: {exc.strerror or exc}") from None
        with f:
            yield Source(f, args[0])
        return
    parts = find_parts(args, key=key, bundle_digest=bundle_digest)
    stream = PartsStream(parts)
    try:
        yield Source(stream, str(parts.manifest_path), parts)  # type: ignore[arg-type]
    except BundleError as exc:
        from airgap.bundle.manifest import DeltaBaseError

        if not isinstance(exc, DeltaBaseError):  # the site lacks what a delta leaves out: no part is at fault
            stream.blame()
        raise
    finally:
        stream.close()

