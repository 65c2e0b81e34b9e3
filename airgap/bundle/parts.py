"""Split media: one bundle cut into numbered part files, and the parts manifest that pins them.

``pack --split-size 4G -o OUT`` writes ``OUT.part-0001``, ``OUT.part-0002``, ... and ``OUT.parts.json``; the
parts concatenated (``cat OUT.part-*``) are byte for byte the single-file bundle ``pack -o OUT`` writes. A part
is a plain cut of that stream, anywhere (even inside a tar header): nothing in the bundle knows it was split.

Why a separate parts manifest rather than part digests inside ``airgap-bundle.json``: the bundle manifest is the
first entry of the stream, so it would have to hold digests of bytes that come after it (itself included):
a writer could only produce it in two passes, and a streaming reader (``cat parts | load -``) could not use
them anyway. The parts manifest is written after the parts, pins the bundle digest (so a part set cannot be
paired with another bundle) and, when pack signs, is signed with the bundle key (``OUT.parts.json.sig``, the
same detached scheme as ``airgap-bundle.json.sig``, checkable with ``cosign verify-blob``).

Wire shape (canonical JSON: sorted keys, no whitespace)::

    {"apiVersion":"airgap.dev/v1alpha1","kind":"BundleParts","name":NAME,"version":VERSION,
     "bundleDigest":"sha256:..","size":TOTAL,"partSize":N,
     "parts":[{"name":"OUT.part-0001","size":N,"sha256":HEX},...]}

``sha256`` is bare hex, as ``sha256sum`` prints it: ``sha256sum -c`` can check parts on any machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airgap.errors import BundleError, ConfigError

API_VERSION = "airgap.dev/v1alpha1"
KIND = "BundleParts"
PARTS_SUFFIX = ".parts.json"
MIN_PART_SIZE = 1024
PART_NAME = re.compile(r"^(?P<base>.+)\.part-(?P<number>[0-9]{4,})$")
_HEX = re.compile(r"^[a-f0-9]{64}$")
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*([0-9]+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_READ = 1024 * 1024


def parse_size(text: str) -> int:
    """A part size as ``split -b`` reads it: bytes (``1048576``), or K/M/G/T and KiB/MiB/GiB/TiB (powers of
    1024), or KB/MB/GB/TB (powers of 1000). At least :data:`MIN_PART_SIZE` bytes."""
    m = _SIZE.match(text)
    if not m or (m.group(3) and not m.group(2)) or m.group(3).lower() == "i":
        raise ConfigError(f"invalid size {text!r}: expected bytes or a number with K, M, G, T (KiB.. or KB..)")
    number, unit, suffix = int(m.group(1)), m.group(2).lower(), m.group(3).lower()
    size = number * (1000 ** " kmgt".index(unit) if suffix == "b" else _UNITS[unit])
    if size < MIN_PART_SIZE:
        raise ConfigError(f"split size {text!r} is below the minimum of {MIN_PART_SIZE} bytes")
    return size


def part_names(output: str, count: int) -> list[str]:
    """``OUT.part-0001`` ... (four digits, more when there are more parts, so names sort in order)."""
    width = max(4, len(str(count)))
    return [f"{output}.part-{i:0{width}d}" for i in range(1, count + 1)]


def parts_manifest_path(output: str) -> str:
    return output + PARTS_SUFFIX


@dataclass(frozen=True)
class Part:
    name: str  # a file name, no directory
    size: int
    sha256: str  # bare hex


@dataclass(frozen=True)
class PartsManifest:
    name: str
    version: str
    bundle_digest: str
    size: int
    part_size: int
    parts: tuple[Part, ...]

    def to_json(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "version": self.version,
                "bundleDigest": self.bundle_digest, "size": self.size, "partSize": self.part_size,
                "parts": [{"name": p.name, "size": p.size, "sha256": p.sha256} for p in self.parts]}

    def to_bytes(self) -> bytes:
        from airgap.bundle.manifest import canonical_json

        data = canonical_json(self.to_json())
        PartsManifest.from_bytes(data)
        return data

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "parts manifest") -> PartsManifest:
        """Parse and validate strictly (canonical form only); every error is one line naming ``what``."""
        from airgap.bundle.manifest import canonical_json
        from airgap.jsondoc import check_document, json_object

        doc = json_object(data, what, BundleError)

        def err(msg: str) -> BundleError:
            return BundleError(f"{what}: {msg}")

        check_document(doc, ("apiVersion", "kind", "name", "version", "bundleDigest", "size", "partSize", "parts"),
                       API_VERSION, KIND, "parts manifest", err)
        for key in ("name", "version"):
            if not isinstance(doc[key], str) or not doc[key]:
                raise err(f"{key}: expected a non-empty string")
        if not isinstance(doc["bundleDigest"], str) or not _SHA256.match(doc["bundleDigest"]):
            raise err("bundleDigest: expected a sha256 digest")
        for key in ("size", "partSize"):
            if not _count(doc[key]):
                raise err(f"{key}: expected a positive integer")
        if not isinstance(doc["parts"], list) or not doc["parts"]:
            raise err("parts: expected a non-empty list")
        parts = []
        base = None
        width = max(4, len(str(len(doc["parts"]))))
        for i, item in enumerate(doc["parts"], 1):
            if not isinstance(item, dict) or set(item) != {"name", "size", "sha256"}:
                raise err(f"parts[{i - 1}]: expected an object with name, size and sha256")
            name, size, hexdigest = item["name"], item["size"], item["sha256"]
            m = PART_NAME.match(name) if isinstance(name, str) else None
            if m is None or "/" in name or "\\" in name or name.startswith(".") or any(ord(c) < 32 for c in name):
                raise err(f"parts[{i - 1}].name: {name!r} is not a part file name (NAME.part-0001)")
            if m.group("number") != f"{i:0{width}d}" or (base is not None and m.group("base") != base):
                raise err(f"parts[{i - 1}].name: {name!r} is out of sequence")
            base = m.group("base")
            if not _count(size) or size > doc["partSize"] or (size != doc["partSize"] and i != len(doc["parts"])):
                raise err(f"parts[{i - 1}].size: {size!r} does not fit the part size {doc['partSize']}")
            if not isinstance(hexdigest, str) or not _HEX.match(hexdigest):
                raise err(f"parts[{i - 1}].sha256: expected 64 hex digits")
            parts.append(Part(name, size, hexdigest))
        if sum(p.size for p in parts) != doc["size"]:
            raise err(f"size: says {doc['size']}, the parts add up to {sum(p.size for p in parts)}")
        manifest = cls(doc["name"], doc["version"], doc["bundleDigest"], doc["size"], doc["partSize"], tuple(parts))
        if canonical_json(manifest.to_json()) != data:
            raise err("not in canonical form (sorted keys, no whitespace, UTF-8)")
        return manifest


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class PartFiles:
    """One output stream cut into part files, written positionally (:meth:`pwrite`, after :meth:`truncate` set
    the total size) or sequentially (:meth:`write`). Parts are temp files beside their targets until
    :meth:`commit` renames them into place; :meth:`abort` removes them. Existing outputs are never touched
    before the commit."""

    def __init__(self, output: str, part_size: int) -> None:
        target = Path(output)
        if output == "-" or target.is_dir():
            raise ConfigError(f"--split-size writes part files: {output!r} must be a file path")
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise ConfigError(f"output directory {parent} does not exist")
        self.output = output
        self.part_size = part_size
        self.size = 0
        self._fds: list[int] = []
        self._temps: list[Path] = []
        self._pos = 0

    def _ensure(self, count: int) -> None:
        while len(self._fds) < count:
            name = Path(f"{self.output}.part")
            fd, tmp = tempfile.mkstemp(dir=name.parent, prefix=f".{name.name}-", suffix=".tmp")
            self._fds.append(fd)
            self._temps.append(Path(tmp))

    def truncate(self, size: int) -> None:
        """Size the parts for a stream of ``size`` bytes (holes read as zeros until written)."""
        self.size = size
        count = max(1, -(-size // self.part_size))
        self._ensure(count)
        for i, fd in enumerate(self._fds):
            os.ftruncate(fd, max(0, min(self.part_size, size - i * self.part_size)))

    def pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            index, within = divmod(offset, self.part_size)
            if index >= len(self._fds):
                raise BundleError(f"split writer: offset {offset} is past the sized output")
            n = min(len(view), self.part_size - within)
            written = os.pwrite(self._fds[index], view[:n], within)
            view, offset = view[written:], offset + written

    def write(self, data: bytes) -> int:
        self._ensure(-(-(self._pos + len(data)) // self.part_size))
        self.pwrite(data, self._pos)
        self._pos += len(data)
        self.size = max(self.size, self._pos)
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self, name: str, version: str, bundle_digest: str) -> PartsManifest:
        """Hash every part (read back from disk: what the media will carry) and describe them."""
        count = max(1, -(-self.size // self.part_size))
        for fd in self._fds[count:]:  # a sequential stream ending on a part boundary opened no extra part
            os.ftruncate(fd, 0)
        names = part_names(Path(self.output).name, count)
        parts = []
        for i in range(count):
            hasher = hashlib.sha256()
            size = min(self.part_size, self.size - i * self.part_size)
            done = 0
            while done < size:
                chunk = os.pread(self._fds[i], min(_READ, size - done), done)
                if not chunk:
                    raise BundleError(f"split writer: part {names[i]} is shorter than written")
                hasher.update(chunk)
                done += len(chunk)
            parts.append(Part(names[i], size, hasher.hexdigest()))
        return PartsManifest(name, version, bundle_digest, self.size, self.part_size, tuple(parts))

    def commit(self, manifest: PartsManifest, signature: bytes | None) -> list[str]:
        """Rename the parts into place, remove parts a previous pack of the same output left beyond the new
        count (and a stale signature), then write the parts manifest (and its signature) last. Returns the paths
        written."""
        from airgap.fileio import write_atomic

        directory = Path(self.output).parent
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        written = []
        for tmp, part in zip(self._temps, manifest.parts, strict=False):
            os.replace(tmp, directory / part.name)
            written.append(str(directory / part.name))
        for tmp in self._temps[len(manifest.parts):]:
            tmp.unlink(missing_ok=True)
        self._temps = []
        base = Path(self.output).name
        keep = {p.name for p in manifest.parts}
        for stale in directory.glob(f"{glob_escape(base)}.part-*"):
            m = PART_NAME.match(stale.name)
            if m and m.group("base") == base and stale.name not in keep and stale.is_file():
                stale.unlink()
        target = Path(parts_manifest_path(self.output))
        sig = Path(f"{target}.sig")
        if signature is None:
            sig.unlink(missing_ok=True)
        write_atomic(target, manifest.to_bytes(), mode=0o644)
        if signature is not None:
            write_atomic(sig, signature, mode=0o644)
        return [*written, str(target)] + ([str(sig)] if signature is not None else [])

    def abort(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        for tmp in self._temps:
            tmp.unlink(missing_ok=True)
        self._temps = []


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)

