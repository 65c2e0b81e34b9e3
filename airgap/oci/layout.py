"""OCI image layouts (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``) as a :class:`Store`.

Tags are ``org.opencontainers.image.ref.name`` annotations on ``index.json`` entries, as skopeo, crane and
oras write them; cosign's ``sha256-<hex>.sig`` objects are tagged entries too. Referrers are untagged
entries whose manifest has a ``subject`` (image-layout 1.1). Every blob is hashed while written (temp file,
then ``os.replace``) and again while read: a layout on removable media is untrusted.

A writer that fails or is interrupted calls :meth:`Layout.rollback`: the blobs it wrote are removed, ``index.json``
gets its earlier bytes back, and a layout (or directory) it created is removed, so what was there before stays
exactly as it was and nothing half-written is left.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from airgap import digest as digests
from airgap.errors import ConfigError, IntegrityError, NotFoundError
from airgap.fileio import write_atomic
from airgap.jsondoc import json_object
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest
from airgap.oci.registry import BlobOpener

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_FILE = '{"imageLayoutVersion":"1.0.0"}'
CHUNK = 1024 * 1024


class Layout:
    """A :class:`Store` over an OCI image layout directory (created on first write when asked)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False,
                 max_manifest_bytes: int = 4 * 1024 * 1024) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._max_manifest = max_manifest_bytes
        self._subjects: dict[str, str | None] = {}
        self._created: list[Path] = []  # files and directories this instance created, in order (rollback)
        self._index_before: bytes | None = None  # index.json as it was before this instance rewrote it
        layout_file = self.path / "oci-layout"
        if not layout_file.exists():
            if not create:
                raise ConfigError(f"{self.path} is not an OCI image layout (no oci-layout file)")
            for directory in (self.path, self.path / "blobs", self.path / "blobs" / "sha256"):
                if not directory.exists():
                    directory.mkdir(parents=True)
                    self._created.append(directory)
            write_atomic(layout_file, LAYOUT_FILE.encode())
            self._created.append(layout_file)
            self._entries: list[Descriptor] = []
            self._write_index()
            self._created.append(self.path / "index.json")
        else:
            version = json_object(layout_file.read_bytes(), str(layout_file)).get("imageLayoutVersion")
            if not isinstance(version, str) or not version.startswith("1."):
                raise IntegrityError(f"{layout_file}: unsupported imageLayoutVersion {version!r}")
            index_path = self.path / "index.json"
            if not index_path.exists():
                raise IntegrityError(f"{self.path}: OCI layout has no index.json")
            index = Manifest.from_bytes(index_path.read_bytes(), mt.OCI_INDEX, what=str(index_path))
            if not index.is_index:
                raise IntegrityError(f"{index_path}: not an image index")
            self._entries = list(index.manifests)

    # ---- Store interface ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"oci:{self.path}"

    @property
    def mount_key(self) -> tuple[str, str] | None:
        return None

    def blob_path(self, digest: str) -> Path:
        alg, hexpart = digests.validate(digest).split(":", 1)
        return self.path / "blobs" / alg / hexpart

    def tags(self) -> dict[str, Descriptor]:
        with self._lock:
            return {d.annotations[REF_NAME]: d for d in self._entries if REF_NAME in d.annotations}

    def resolve(self, reference: str) -> Manifest:
        if reference.startswith(("sha256:", "sha512:")):
            return self.get_manifest(digests.validate(reference))
        entry = self.tags().get(reference)
        if entry is None:
            with self._lock:
                untagged = list(self._entries)
            if reference == "latest" and len(untagged) == 1:
                entry = untagged[0]
            else:
                raise NotFoundError(f"{self.name}: no image tagged {reference!r}")
        return self.get_manifest(entry.digest, entry.media_type)

    def get_manifest(self, digest: str, media_type: str | None = None) -> Manifest:
        path = self.blob_path(digest)
        if not path.exists():
            raise NotFoundError(f"{self.name}: manifest {digest} is missing")
        if path.stat().st_size > self._max_manifest:
            raise IntegrityError(f"{self.name}: manifest {digest} is over the size limit")
        return Manifest.from_bytes(path.read_bytes(), media_type, digest, f"{self.name}@{digest}")

    def has_manifest(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def _read(self, path: Path) -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def open_blob(self, desc: Descriptor) -> Iterator[bytes]:
        path = self.blob_path(desc.digest)
        if not path.exists():
            raise NotFoundError(f"{self.name}: blob {desc.digest} is missing")
        return digests.verified_stream(self._read(path), desc.digest, desc.size, f"{self.name}@{desc.digest}")

    def write_blob(self, digest: str, size: int | None, chunks: Iterable[bytes]) -> bool:
        """Write a blob through a temp file, verifying it; return False when it was already there."""
        path = self.blob_path(digest)
        if path.exists():
            return False
        if not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._created.append(path.parent)
        write_atomic(path, digests.verified_stream(chunks, digest, size, f"{self.name}@{digest}"))
        with self._lock:
            self._created.append(path)
        return True

    def push_blob(self, desc: Descriptor, opener: BlobOpener, mount_from: str | None = None) -> bool:
        if self.blob_path(desc.digest).exists():
            return False
        return self.write_blob(desc.digest, desc.size, opener())

    def push_manifest(self, manifest: Manifest, tag: str | None = None, *, root: bool = False) -> None:
        """Store the manifest blob; with ``tag`` (or ``root``) also list it in ``index.json``."""
        self.write_blob(manifest.digest, len(manifest.data), [manifest.data])
        if tag is None and not root:
            return
        annotations = {REF_NAME: tag} if tag else {}
        entry = Descriptor(manifest.media_type, manifest.digest, len(manifest.data),
                           artifact_type=manifest.artifact_type, annotations=annotations)
        with self._lock:
            if tag:
                self._entries = [d for d in self._entries if d.annotations.get(REF_NAME) != tag]
            elif any(d.digest == manifest.digest and REF_NAME not in d.annotations for d in self._entries):
                return
            self._entries.append(entry)
            self._write_index()

    def list_tags(self) -> list[str]:
        return sorted(self.tags())

    def _subject_of(self, desc: Descriptor) -> str | None:
        with self._lock:
            if desc.digest in self._subjects:
                return self._subjects[desc.digest]
        try:
            subject = self.get_manifest(desc.digest, desc.media_type).subject
        except (NotFoundError, IntegrityError):
            subject = None
        found = subject.digest if subject else None
        with self._lock:
            self._subjects[desc.digest] = found
        return found

    def referrers(self, digest: str) -> list[Descriptor]:
        with self._lock:
            candidates = [d for d in self._entries if REF_NAME not in d.annotations]
        return [d for d in candidates if self._subject_of(d) == digest]

    def add_referrer(self, manifest: Manifest) -> None:
        if manifest.subject is None:
            raise IntegrityError(f"referrer {manifest.digest} has no subject")
        with self._lock:
            self._subjects[manifest.digest] = manifest.subject.digest
        self.push_manifest(manifest, root=True)

    def close(self) -> None:
        pass

    def rollback(self) -> None:
        """Undo this instance's writes: its blobs and the directories it made go, ``index.json`` gets its earlier
        bytes back (or goes, when this instance created the layout). Best effort: a file that cannot be removed
        is left, never anything that was there before."""
        with self._lock:
            created, self._created = self._created, []
            before, self._index_before = self._index_before, None
        index = self.path / "index.json"
        if before is not None and index not in created:
            write_atomic(index, before)
        for path in reversed(created):
            try:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()  # only when empty: never what something else put there
                else:
                    path.unlink(missing_ok=True)
            except OSError:
                pass

    def _write_index(self) -> None:
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [d.to_json() for d in self._entries],
        }
        index = self.path / "index.json"
        if self._index_before is None and index.exists() and index not in self._created:
            self._index_before = index.read_bytes()
        write_atomic(index, json.dumps(doc, indent=2).encode() + b"\n")

