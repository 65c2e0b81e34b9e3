"""Read a bundle safely, in one forward pass, from a file or a pipe.

Threat model: every byte of the bundle is hostile until the manifest vouches for it, and the manifest is
hostile until it is trusted: its signature verifies with a key the operator passed (``key``), or its sha256
equals a digest the operator pinned (``bundle_digest``), or the operator explicitly opted out
(``allow_unsigned``). Fail closed: with none of these, the constructor refuses the bundle before reading
anything after the manifest (and its signature). After that, every entry must be the next one the manifest
lists, with the listed size (checked from the header, before any data is read: a header claiming 1 TB is
refused at once) and the listed digest (blob data is hash-verified while streaming and the last chunk is
held back until the digest matched, so a consumer never sees a complete wrong blob).

We parse tar headers ourselves instead of using ``tarfile``: only POSIX ustar regular files are accepted, so
there is no pax/GNU extension (which would let a header rewrite names or sizes, or make ``tarfile`` buffer a
huge extended header), no link, device, FIFO or directory, no absolute or ``..`` path, nothing unlisted,
nothing twice, and no data after the end-of-archive marker beyond zero padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from airgap.bundle.manifest import (
    BLOB_PREFIX,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    BundleManifest,
    blob_name,
    file_order,
)
from airgap.config import Limits
from airgap.errors import BundleError

if TYPE_CHECKING:
    from airgap.bundle.source import PartSet
    from airgap.keys.public import PublicKey

BLOCK = 512
MAX_SIGNATURE_BYTES = 64 * 1024
MAX_TRAILING_BYTES = 64 * 1024  # zero padding allowed after the end-of-archive marker
_TYPES = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device", b"4": "a block device",
          b"5": "a directory", b"6": "a FIFO", b"7": "a contiguous file", b"x": "a pax extended header",
          b"g": "a pax global header", b"L": "a GNU long name", b"K": "a GNU long link name",
          b"S": "a GNU sparse file"}


@dataclass(frozen=True)
class _Header:
    name: str
    size: int
    typeflag: bytes
    offset: int  # where the header starts in the stream


class BundleReader:
    """Reads and verifies a bundle. The constructor reads the manifest, its signature and every non-blob
    entry; :meth:`blobs` then streams the blobs in tar order; :meth:`finish` checks nothing is missing.

    Attributes: ``manifest``, ``manifest_bytes``, ``digest`` (sha256 of the manifest bytes: the bundle
    digest), ``signature`` (raw bytes or None), ``signed_by`` (id of the key the signature verified with,
    or None), ``files`` (name -> bytes of every non-blob entry, verified), ``bytes_read``, ``parts`` (set by
    a caller that read a split bundle: its checked parts).
    """

    def __init__(self, fileobj: IO[bytes], *, key: PublicKey | Sequence[PublicKey] | None = None,
                 bundle_digest: str | None = None, allow_unsigned: bool = False,
                 limits: Limits | None = None) -> None:
        self._in = fileobj
        self.limits = limits or Limits()
        self.bytes_read = 0
        self._last = "the start of the bundle"
        self._current: Iterator[bytes] | None = None
        self._failed: str | None = None
        self._ended = False
        self._seen_blobs: set[str] = set()
        self.parts: PartSet | None = None  # the checked parts, when the caller read a split bundle

        first = self._first_header()
        self._check_regular(first)
        self._check_limit(first, self.limits.max_bundle_manifest_bytes)
        self.manifest_bytes = self._read_data(first)
        self.digest = "sha256:" + hashlib.sha256(self.manifest_bytes).hexdigest()

        self.signature: bytes | None = None
        hdr = self._next_header()
        if hdr is not None and hdr.name == SIGNATURE_NAME:
            self._check_regular(hdr)
            self._check_limit(hdr, MAX_SIGNATURE_BYTES)
            raw = self._read_data(hdr)
            try:
                self.signature = base64.b64decode(b"".join(raw.split()), validate=True)
            except (binascii.Error, ValueError):
                raise BundleError(f"{SIGNATURE_NAME}: not base64") from None
            hdr = self._next_header()

        self.signed_by = self._check_trust(key, bundle_digest, allow_unsigned)
        self.manifest = BundleManifest.from_bytes(self.manifest_bytes)

        self.files: dict[str, bytes] = {}
        for expected in file_order(self.manifest.files):
            if hdr is None:
                raise BundleError(f"bundle is incomplete: {expected} is missing")
            self._check_file_header(hdr, expected)
            listed = self.manifest.files[expected]
            self._check_limit(hdr, self.limits.max_bundle_file_bytes)
            data = self._read_data(hdr)
            actual = "sha256:" + hashlib.sha256(data).hexdigest()
            if actual != listed.digest:
                raise BundleError(f"bundle entry {expected}: content digest {actual} does not match the "
                                  f"manifest's {listed.digest}")
            self.files[expected] = data
            hdr = self._next_header()
        self._pending: _Header | None = hdr

    # ---- trust ----------------------------------------------------------------------------------

    def _check_trust(self, key: PublicKey | Sequence[PublicKey] | None, bundle_digest: str | None,
                     allow_unsigned: bool) -> str | None:
        keys = [] if key is None else list(key) if isinstance(key, Sequence) else [key]
        signed_by = None
        if keys:
            from airgap.keys.public import key_id, verify_signature

            if self.signature is None:
                raise BundleError(f"bundle is not signed (no {SIGNATURE_NAME}), but a key to check it was given")
            for k in keys:
                if verify_signature(k, self.signature, self.manifest_bytes):
                    signed_by = key_id(k)
                    break
            else:
                raise BundleError(f"bundle signature ({SIGNATURE_NAME}) does not verify with the given key")
        if bundle_digest is not None:
            if bundle_digest != self.digest:
                raise BundleError(f"bundle digest {self.digest} does not match the pinned {bundle_digest}")
        elif not keys and not allow_unsigned:
            raise BundleError("bundle is not trusted: pass the signer's public key (--key), the bundle digest "
                              "(--bundle-digest) or --allow-unsigned-bundle")
        return signed_by

    # ---- blobs ----------------------------------------------------------------------------------

    def blobs(self) -> Iterator[tuple[str, int, Iterator[bytes]]]:
        """Yield ``(digest, size, chunks)`` for each blob in tar order. ``chunks`` is hash-verified (the last
        chunk comes only after the digest matched); a blob not fully consumed is drained (and verified)
        before the next one is read. Raises BundleError at the end if a listed blob never came."""
        while True:
            self._drain()
            if self._ended:
                self._check_complete()
                return
            hdr = self._pending if self._pending is not None else self._next_header()
            self._pending = None
            if hdr is None:
                self._check_complete()
                return
            digest = self._check_blob_header(hdr)
            chunks = self._blob_chunks(hdr, digest)
            self._current = chunks
            yield digest, hdr.size, chunks

    def finish(self) -> None:
        """Read (and verify) whatever is left; fail unless every listed blob came, once, and nothing trails."""
        for _ in self.blobs():
            pass

    def _drain(self) -> None:
        if self._failed:
            raise BundleError(self._failed)
        if self._current is not None:
            for _ in self._current:
                pass
            self._current = None

    def _check_complete(self) -> None:
        missing = sorted(set(self.manifest.blobs) - self._seen_blobs)
        if missing:
            raise BundleError(f"bundle is incomplete: {len(missing)} listed blob(s) missing, first "
                              f"{blob_name(missing[0])}")

    def _blob_chunks(self, hdr: _Header, digest: str) -> Iterator[bytes]:
        try:
            hasher = hashlib.sha256()
            remaining = hdr.size
            held: bytes | None = None
            while remaining:
                chunk = self._read_exact(min(self.limits.chunk_bytes, remaining), hdr.name)
                remaining -= len(chunk)
                hasher.update(chunk)
                if held is not None:
                    yield held
                held = chunk
            self._skip_padding(hdr)
            actual = "sha256:" + hasher.hexdigest()
            if actual != digest:
                raise BundleError(f"bundle entry {hdr.name}: content digest {actual} does not match the name")
        except BundleError as exc:
            self._failed = exc.message
            raise
        self._last = hdr.name
        self._current = None
        if held is not None:
            yield held

    # ---- entry checks ---------------------------------------------------------------------------

    def _check_regular(self, hdr: _Header) -> None:
        if hdr.typeflag not in (b"0", b"\0"):
            kind = _TYPES.get(hdr.typeflag, f"of type {hdr.typeflag!r}")
            raise BundleError(f"bundle entry {hdr.name!r} is {kind}: only regular files are allowed")
        name = hdr.name
        if name.startswith("/"):
            raise BundleError(f"bundle entry {name!r} has an absolute path")
        parts = name.split("/")
        if "\\" in name or any(p in ("", ".", "..") for p in parts) or any(ord(c) < 32 for c in name):
            raise BundleError(f"bundle entry {name!r} has an unsafe path")

    def _check_file_header(self, hdr: _Header, expected: str) -> None:
        self._check_regular(hdr)
        name = hdr.name
        if name != expected:
            if name in (MANIFEST_NAME, SIGNATURE_NAME) or name in self.files:
                raise BundleError(f"bundle entry {name!r} appears twice or out of place (expected {expected})")
            if name in self.manifest.files:
                raise BundleError(f"bundle entry {name!r} is out of order: expected {expected} (missing or moved)")
            if name.startswith(BLOB_PREFIX) and name[len(BLOB_PREFIX):] in _blob_hexes(self.manifest):
                raise BundleError(f"bundle is incomplete: {expected} is missing (found {name} instead)")
            raise BundleError(f"bundle entry {name!r} is not listed in the manifest")
        self._check_size(hdr, self.manifest.files[name].size)

    def _check_blob_header(self, hdr: _Header) -> str:
        self._check_regular(hdr)
        name = hdr.name
        digest = "sha256:" + name[len(BLOB_PREFIX):] if name.startswith(BLOB_PREFIX) else ""
        if digest not in self.manifest.blobs:
            if name in (MANIFEST_NAME, SIGNATURE_NAME) or name in self.files:
                raise BundleError(f"bundle entry {name!r} appears twice")
            raise BundleError(f"bundle entry {name!r} is not listed in the manifest")
        if digest in self._seen_blobs:
            raise BundleError(f"bundle entry {name!r} appears twice")
        self._check_size(hdr, self.manifest.blobs[digest])
        self._seen_blobs.add(digest)
        return digest

    def _check_size(self, hdr: _Header, listed: int) -> None:
        if hdr.size != listed:
            raise BundleError(f"bundle entry {hdr.name!r}: header says {hdr.size} bytes, the manifest lists {listed}")

    def _check_limit(self, hdr: _Header, limit: int) -> None:
        if hdr.size > limit:
            raise BundleError(f"bundle entry {hdr.name!r}: {hdr.size} bytes exceeds the limit of {limit}")

    # ---- tar framing ----------------------------------------------------------------------------

    def _read_exact(self, n: int, what: str) -> bytes:
        parts = []
        want = n
        while want:
            chunk = self._in.read(want)
            if not chunk:
                raise BundleError(f"bundle is truncated in {what}")
            parts.append(chunk)
            want -= len(chunk)
        self.bytes_read += n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _skip_padding(self, hdr: _Header) -> None:
        if hdr.size % BLOCK:
            self._read_exact(BLOCK - hdr.size % BLOCK, hdr.name)

    def _read_data(self, hdr: _Header) -> bytes:
        data = self._read_exact(hdr.size, hdr.name) if hdr.size else b""
        self._skip_padding(hdr)
        self._last = hdr.name
        return data

    def _read_block(self) -> bytes:
        block = self._in.read(BLOCK)
        while block and len(block) < BLOCK:
            more = self._in.read(BLOCK - len(block))
            if not more:
                break
            block += more
        return block

    def _first_header(self) -> _Header:
        """The manifest's header, with what a user most likely handed us named when it is not a bundle: an empty
        file, a compressed one, another tar, something else."""
        block = self._read_block()
        if not block:
            raise BundleError("bundle is empty (0 bytes)")
        for magic, kind, tool in _COMPRESSED:
            if block.startswith(magic):
                raise BundleError(f"this is {kind}-compressed: airgap bundles are plain tar ({tool} it first)")
        not_tar = "not an airgap bundle (not a tar archive: a bundle starts with airgap-bundle.json)"
        if len(block) < BLOCK:
            raise BundleError(not_tar)
        self.bytes_read += BLOCK
        if block == bytes(BLOCK):
            raise BundleError("bundle is empty (an empty tar archive, without airgap-bundle.json)")
        if block[257:262] != b"ustar" or not _checksum_ok(block):
            raise BundleError(not_tar)
        first = block[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if block[257:265] == b"ustar\x0000" and block[345]:  # a POSIX name prefix
            first = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace") + "/" + first
        if first.lstrip("/").removeprefix("./") != MANIFEST_NAME:  # a tar, not ours (a GNU tar's name says so)
            raise BundleError(f"not an airgap bundle (no {MANIFEST_NAME} first: it starts with {first!r})")
        return self._parse_header(block, 0)

    def _next_header(self) -> _Header | None:
        """The next entry's header, or None at a valid end of archive (two zero blocks, zero padding, EOF)."""
        offset = self.bytes_read
        block = self._read_block()
        if len(block) < BLOCK:
            raise BundleError(f"bundle is truncated after {self._last} (no end-of-archive marker)")
        self.bytes_read += BLOCK
        if block == bytes(BLOCK):
            self._read_end()
            return None
        return self._parse_header(block, offset)

    def _parse_header(self, block: bytes, offset: int) -> _Header:
        stored = _octal(block[148:156])
        unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
        signed = unsigned - 2 * sum(b for b in block[:148] + block[156:] if b >= 128)
        if stored not in (unsigned, signed):
            raise BundleError(f"corrupt tar header after {self._last} (checksum mismatch at byte {offset})")
        if block[257:265] != b"ustar\x0000":
            raise BundleError(f"tar header after {self._last} is not POSIX ustar")
        try:
            name = block[0:100].split(b"\0", 1)[0].decode("utf-8")
            prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError(f"tar entry name after {self._last} is not UTF-8") from None
        if prefix:
            name = f"{prefix}/{name}"
        field = block[124:136]
        if field[0] & 0x80:
            if field[0] != 0x80:
                raise BundleError(f"bundle entry {name!r}: negative size in its tar header")
            size = int.from_bytes(field[1:], "big")
        else:
            size = _octal(field)
            if size < 0:
                raise BundleError(f"bundle entry {name!r}: malformed size in its tar header")
        return _Header(name, size, block[156:157], offset)

    def _read_end(self) -> None:
        second = self._in.read(BLOCK)
        if second != bytes(BLOCK):
            raise BundleError(f"bundle has a malformed end-of-archive marker after {self._last}")
        self.bytes_read += BLOCK
        trailing = 0
        while True:
            chunk = self._in.read(min(BLOCK * 8, MAX_TRAILING_BYTES + 1 - trailing))
            if not chunk:
                break
            trailing += len(chunk)
            if chunk.count(0) != len(chunk) or trailing > MAX_TRAILING_BYTES:
                raise BundleError("bundle has data after its end-of-archive marker")
        self.bytes_read += trailing
        self._ended = True
        self._last = "the end-of-archive marker"


_COMPRESSED = ((b"\x1f\x8b", "gzip", "gunzip"), (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
               (b"\xfd7zXZ\x00", "xz", "unxz"), (b"BZh", "bzip2", "bunzip2"))


def _checksum_ok(block: bytes) -> bool:
    stored = _octal(block[148:156])
    unsigned = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return stored in (unsigned, unsigned - 2 * sum(b for b in block[:148] + block[156:] if b >= 128))


def _octal(field: bytes) -> int:
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return -1


def _blob_hexes(manifest: BundleManifest) -> set[str]:
    return {d.split(":", 1)[1] for d in manifest.blobs}
