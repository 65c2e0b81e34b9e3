"""The translation map: what ``load`` pushed where (upstream ref, local ref, manifest digest), as JSON.

It is the only source that can reverse a Zarf crc tag (see :mod:`airgap.refs.translate`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap import digest as digests
from airgap.errors import ConfigError, IntegrityError
from airgap.fileio import write_atomic
from airgap.jsondoc import load_json
from airgap.refs.grammar import Reference, parse


def as_ref(ref: Reference | str) -> Reference:
    """A parsed reference; text may carry a leading ``oci://`` (as Zarf and policy sources write it)."""
    if isinstance(ref, Reference):
        return ref
    text = ref.strip()
    if text.startswith("oci://"):
        text = text[len("oci://"):]
    return parse(text)


@dataclass(frozen=True)
class MapEntry:
    """One image as ``load`` pushed it: where it came from, where it went, and its manifest digest."""

    upstream: Reference
    local: Reference
    digest: str

    def to_json(self) -> dict[str, str]:
        return {"upstream": str(self.upstream), "local": str(self.local), "digest": self.digest}


@dataclass
class TranslationMap:
    """The record of what ``load`` pushed: a JSON list of ``{"upstream", "local", "digest"}`` objects.

    It is the only source that can reverse a Zarf crc tag. Entries are kept in insertion order; saving
    sorts them so the file is reproducible.
    """

    entries: list[MapEntry] = field(default_factory=list)

    def add(self, upstream: Reference | str, local: Reference | str, digest: str) -> MapEntry:
        try:
            digests.validate(digest)
        except IntegrityError:
            raise ConfigError(f"bad digest {digest!r}") from None
        entry = MapEntry(as_ref(upstream), as_ref(local), digest)
        if entry not in self.entries:
            self.entries.append(entry)
        return entry

    @classmethod
    def from_json(cls, data: bytes | str, where: str = "translation map") -> TranslationMap:
        raw: Any = load_json(data, where, ConfigError, invalid="{what}: not JSON ({detail})")
        if not isinstance(raw, list):
            raise ConfigError(f"{where}: expected a JSON list of {{upstream, local, digest}}")
        out = cls()
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or set(item) != {"upstream", "local", "digest"} or not all(
                isinstance(v, str) for v in item.values()
            ):
                raise ConfigError(f"{where}: entry {i}: expected exactly the string fields upstream, local, digest")
            try:
                out.add(item["upstream"], item["local"], item["digest"])
            except ConfigError as exc:
                raise ConfigError(f"{where}: entry {i}: {exc}") from None
        return out

    def to_json(self) -> bytes:
        rows = sorted((e.to_json() for e in self.entries), key=lambda r: (r["local"], r["upstream"], r["digest"]))
        return (json.dumps(rows, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TranslationMap:
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read translation map {p}: {exc.strerror or exc}") from None
        return cls.from_json(data, str(p))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temp file + ``os.replace``)."""
        write_atomic(Path(path), self.to_json())

    def by_local(self, local: Reference | str) -> list[MapEntry]:
        """Entries for a local ref, in its repository: those for its tag when it has one (``name:tag``, and
        ``name:tag@digest`` when the map recorded that digest for the tag), else those for its digest.

        A tag names exactly the upstream refs it was pushed for; a bare digest is every upstream ref shipped
        with that digest into this repository (``busybox:1.36`` and ``busybox:latest`` alike), so a caller
        applies the policies of all of them. A tag the map recorded for another digest (re-tagged outside
        airgap) falls back to the digest's entries: the map no longer describes that tag."""
        ref = as_ref(local)
        same_repo = [e for e in self.entries if e.local.name == ref.name]
        if ref.tag:
            tagged = [e for e in same_repo if e.local.tag == ref.tag]
            if tagged and (ref.digest is None or any(e.digest == ref.digest for e in tagged)):
                return [e for e in tagged if ref.digest is None or e.digest == ref.digest]
        if ref.digest:
            return [e for e in same_repo if e.digest == ref.digest]
        return []

    def by_digest(self, digest: str) -> list[MapEntry]:
        return [e for e in self.entries if e.digest == digest]
