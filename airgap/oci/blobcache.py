"""Where blobs were last seen, so a push can mount a blob from a sibling repository instead of uploading it.

Copying ten images that share a base layer into one registry should upload that layer once: the registry
can link it into every other repository (``POST .../blobs/uploads/?mount=<digest>&from=<repo>``). Nothing in
one image says which repository of the target already holds the layer, so, like skopeo's blob-info cache,
we remember it: after every blob we read, find present or push, ``record(host, repo, digest)``.

Threat model: this file is a *hint*, never a source of content. A mount only links bytes the registry itself
already holds under that digest, so a wrong or hostile entry costs at most a failed mount, which answers with
the upload session we would have opened anyway (no extra round trip). The file is size-capped, parsed
defensively, and ignored whole when malformed; concurrent processes merge on save and the last writer wins.

Location: ``$AIRGAP_CACHE_DIR`` or ``$XDG_CACHE_HOME/airgap`` or ``~/.cache/airgap``, file
``blob-locations.json``. ``AIRGAP_BLOB_CACHE=off`` keeps the cache in memory only.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from airgap import digest as digests
from airgap.errors import Error
from airgap.fileio import write_atomic
from airgap.jsondoc import load_json

FILE_NAME = "blob-locations.json"
# Enough for many images' layers; at ~120 bytes an entry the file stays well under 1 MB and loads in ms.
MAX_DIGESTS = 4096
MAX_REPOS_PER_DIGEST = 4
_MAX_FILE_BYTES = 4 * 1024 * 1024


def default_path() -> Path | None:
    """The cache file named by the environment, or None when persistence is switched off."""
    if os.environ.get("AIRGAP_BLOB_CACHE", "").lower() in ("0", "off", "false", "no"):
        return None
    base = os.environ.get("AIRGAP_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "airgap")
    return Path(base) / FILE_NAME


class BlobLocations:
    """Thread-safe map (host, digest) -> repositories holding it, most recent last; optionally persisted."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], list[str]] = {}
        self._dirty = False
        if path is not None:
            self._entries = _load(path)

    @classmethod
    def default(cls) -> BlobLocations:
        return cls(default_path())

    def candidates(self, host: str, digest: str, exclude: str | None = None) -> list[str]:
        """Repositories of ``host`` believed to hold ``digest``, most recently seen first."""
        with self._lock:
            repos = list(self._entries.get((host, digest), ()))
        return [r for r in reversed(repos) if r != exclude]

    def record(self, host: str, repo: str, digest: str) -> None:
        key = (host, digest)
        with self._lock:
            repos = self._entries.pop(key, [])  # re-insert: dict order is recency
            if repos and repos[-1] == repo:
                self._entries[key] = repos
                return
            self._entries[key] = ([r for r in repos if r != repo] + [repo])[-MAX_REPOS_PER_DIGEST:]
            while len(self._entries) > MAX_DIGESTS:
                del self._entries[next(iter(self._entries))]
            self._dirty = True

    def save(self) -> None:
        """Merge with what other processes saved meanwhile and replace the file atomically. Best effort:
        a cache that cannot be written only costs speed, so OS errors are swallowed."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            mine = dict(self._entries)
            self._dirty = False
        merged = _load(self.path)
        for key, repos in mine.items():
            merged.pop(key, None)
            merged[key] = repos
        while len(merged) > MAX_DIGESTS:
            del merged[next(iter(merged))]
        doc = {"version": 1, "entries": [[h, d, r] for (h, d), r in merged.items()]}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(doc, separators=(",", ":")).encode())
        except OSError:
            pass


def _load(path: Path) -> dict[tuple[str, str], list[str]]:
    """Parse the cache file; anything unexpected yields an empty cache (it is only a hint)."""
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
        if len(raw) > _MAX_FILE_BYTES:
            return {}
        doc = load_json(raw, str(path))
        rows = doc["entries"] if isinstance(doc, dict) and doc.get("version") == 1 else []
        out: dict[tuple[str, str], list[str]] = {}
        for row in rows[-MAX_DIGESTS:]:
            host, digest, repos = row
            if not (isinstance(host, str) and isinstance(repos, list)
                    and all(isinstance(r, str) and 0 < len(r) <= 255 for r in repos)):
                continue
            out[(host, digests.validate(digest))] = repos[-MAX_REPOS_PER_DIGEST:]
        return out
    except (OSError, ValueError, KeyError, TypeError, Error):
        return {}
