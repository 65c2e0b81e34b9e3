"""Write a bundle tar: reproducible ustar entries in the one order a streaming reader can verify.

The writer is strict on purpose, so ``pack`` cannot produce a bundle that ``load`` refuses: the first entry
must be the manifest (it is parsed with :meth:`BundleManifest.from_bytes`), then the optional signature,
then exactly the manifest's ``files`` in :func:`file_order`, then every listed blob once; each entry is
checked against the manifest (name, size, digest) as it is written, and :meth:`close` fails if anything
listed is missing. A failed writer has produced a broken tar: ``pack`` writes to a temp file and only
renames it into place after ``close()`` succeeded.

Headers are written by us in POSIX ustar form (``tarfile``'s layout: 512-byte header, data padded to 512,
two zero blocks, padded to a 10 KiB record) with fixed metadata: mode 0644, uid/gid 0, empty user and
group names, mtime = the manifest's ``created``. Blob data is copied chunk by chunk, never held whole.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from types import TracebackType
from typing import IO

from airgap.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, BundleManifest, blob_name, file_order
from airgap.errors import BundleError

BLOCK = 512
RECORD = 20 * BLOCK  # tar's default blocking factor; GNU tar and Python's tarfile pad to it
_OCTAL_MAX_SIZE = 8**11 - 1


def ustar_header(name: str, size: int, mtime: int, *, typeflag: bytes = b"0", linkname: str = "",
                 mode: int = 0o644) -> bytes:
    """One POSIX ustar header block. Sizes of 8 GiB and more use the base-256 encoding that GNU tar, Go's
    archive/tar and Python's tarfile all read."""
    raw = name.encode("utf-8")
    prefix = b""
    if len(raw) > 100:
        cut = raw.rfind(b"/", 0, 156)
        if cut <= 0 or len(raw) - cut - 1 > 100:
            raise BundleError(f"bundle entry name too long for ustar: {name!r}")
        prefix, raw = raw[:cut], raw[cut + 1:]
    if size > _OCTAL_MAX_SIZE:
        size_field = bytes([0x80]) + size.to_bytes(11, "big")
    else:
        size_field = b"%011o\0" % size
    header = b"".join([
        raw.ljust(100, b"\0"),
        b"%07o\0" % mode,
        b"%07o\0" % 0,  # uid
        b"%07o\0" % 0,  # gid
        size_field,
        b"%011o\0" % mtime,
        b" " * 8,  # checksum placeholder
        typeflag,
        linkname.encode("utf-8").ljust(100, b"\0"),
        b"ustar\x0000",
        b"\0" * 32,  # uname
        b"\0" * 32,  # gname
        b"%07o\0" % 0,  # devmajor
        b"%07o\0" % 0,  # devminor
        prefix.ljust(155, b"\0"),
        b"\0" * 12,
    ])
    chksum = sum(header)
    return header[:148] + b"%06o\0 " % chksum + header[156:]


class BundleWriter:
    """``add_file(MANIFEST_NAME, ..)`` first, optionally ``add_file(SIGNATURE_NAME, ..)``, then the files in
    order, then ``add_blob`` for every blob, then ``close()``. Does not close ``fileobj``."""

    def __init__(self, fileobj: IO[bytes], created: int) -> None:
        if created < 0:
            raise BundleError(f"bundle creation time must be a non-negative epoch, got {created}")
        self._out = fileobj
        self._mtime = created
        self.manifest: BundleManifest | None = None
        self._files: list[str] = []  # files still expected, in order
        self._blobs_left: dict[str, int] = {}
        self._signed = False
        self._closed = False
        self._broken = False
        self.bytes_written = 0

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.bytes_written += len(data)

    def _entry(self, name: str, size: int) -> None:
        self._write(ustar_header(name, size, self._mtime))

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._write(b"\0" * (BLOCK - size % BLOCK))

    def _check_open(self) -> None:
        if self._closed:
            raise BundleError("bundle writer is closed")
        if self._broken:
            raise BundleError("bundle writer failed earlier; the output is incomplete")

    def add_file(self, name: str, data: bytes) -> None:
        """Write a small entry: the manifest, its signature, a trust file, ``oci-layout`` or ``index.json``."""
        self._check_open()
        if self.manifest is None:
            if name != MANIFEST_NAME:
                raise BundleError(f"bundle entry {name!r} written before {MANIFEST_NAME}")
            manifest = BundleManifest.from_bytes(data)
            if manifest.created != self._mtime:
                raise BundleError(f"{MANIFEST_NAME}: created {manifest.created} differs from the writer's "
                                  f"{self._mtime}")
            self.manifest = manifest
            self._files = file_order(manifest.files)
            self._blobs_left = dict(manifest.blobs)
        elif name == SIGNATURE_NAME:
            if self._signed or len(self._files) != len(self.manifest.files):
                raise BundleError(f"{SIGNATURE_NAME} must come right after {MANIFEST_NAME}, once")
            self._signed = True
        else:
            if not self._files or self._files[0] != name:
                want = self._files[0] if self._files else "a blob"
                raise BundleError(f"bundle entry {name!r} out of order or not listed (expected {want})")
            listed = self.manifest.files[name]
            if listed.size != len(data) or listed.digest != "sha256:" + hashlib.sha256(data).hexdigest():
                raise BundleError(f"bundle entry {name!r} does not match its digest/size in the manifest")
            self._files.pop(0)
        self._entry(name, len(data))
        self._write(data)
        self._pad(len(data))

    def add_blob(self, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        """Stream one blob into the tar, hashing as it goes; the digest and size must match the manifest."""
        self._check_open()
        name = blob_name(digest)
        if self.manifest is None or self._files:
            want = self._files[0] if self._files else MANIFEST_NAME
            raise BundleError(f"bundle entry {name} written before {want}")
        if digest not in self._blobs_left:
            why = "twice" if digest in self.manifest.blobs else "but the manifest does not list it"
            raise BundleError(f"blob {digest} written {why}")
        if self._blobs_left[digest] != size:
            raise BundleError(f"blob {digest}: size {size} differs from the manifest's {self._blobs_left[digest]}")
        del self._blobs_left[digest]
        self._entry(name, size)
        hasher = hashlib.sha256()
        seen = 0
        self._broken = True  # until the blob is complete and verified
        for chunk in chunks:
            if not chunk:
                continue
            seen += len(chunk)
            if seen > size:
                raise BundleError(f"blob {digest}: more than the expected {size} bytes")
            hasher.update(chunk)
            self._write(chunk)
        if seen != size:
            raise BundleError(f"blob {digest}: got {seen} bytes, expected {size}")
        if "sha256:" + hasher.hexdigest() != digest:
            raise BundleError(f"blob {digest}: content digest sha256:{hasher.hexdigest()} does not match")
        self._broken = False
        self._pad(size)

    def close(self) -> None:
        """Write the end-of-archive marker; fail if any listed entry was never written."""
        if self._closed:
            return
        self._check_open()
        if self.manifest is None:
            raise BundleError(f"bundle has no {MANIFEST_NAME}")
        if self._files:
            raise BundleError(f"bundle is missing {self._files[0]} (listed in the manifest)")
        if self._blobs_left:
            first = sorted(self._blobs_left)[0]
            raise BundleError(f"bundle is missing {len(self._blobs_left)} listed blob(s), first {first}")
        end = self.bytes_written + 2 * BLOCK
        self._write(b"\0" * (2 * BLOCK + (-end) % RECORD))
        self._closed = True

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
