"""A trust directory that is a site: one trust scope per loaded bundle, and the site-wide policy on top.

A site receives bundles from many signers for years. ``airgap load --site DIR`` records each bundle in
``DIR/site.json`` and keeps the bundle's own trust (keys, roots, policy, translation map) in
``DIR/bundles/<name>-<digest>/``; the operator's own site-wide policy, when there is one, is ``DIR/policy.yaml``
(with ``DIR/keys/`` and ``DIR/trusted_root.json`` for the keys and roots it names)::

    site.json                         the state: every loaded bundle (name, version, bundle digest, signer key
                                      id, when, its images upstream -> local -> digest, the digest of each of
                                      its trust files, and airgap's own image as loaded when it carried it)
    bundles/<name>-<digest12>/        that bundle's trust directory (keys/, keys.json, trusted_root.json,
                                      policy.yaml, map.json)
    policy.yaml, keys/, trusted_root.json    optional: the site-wide policy and what it names

How an image is judged (:mod:`airgap.verification.verifier`): each bundle's keys and policies govern that bundle's
images (the images its translation map records), so one bundle can neither weaken nor block another's; an image
two bundles ship is judged by both; the site-wide policy applies to every image on top, and can only add
requirements (its policies must pass where they match; its allow-list and ``noMatchPolicy`` grant nothing, its
``approvedRegistries`` restrict). Every matching policy must pass: the safe rule. An image no bundle loaded is
denied.

The state is trusted as the operator's (it is written by their loads), yet checked: ``site.json`` is parsed
strictly and pins the digest of every trust file it names, so a trust file changed behind its back is refused
with the file named, never used.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airgap.errors import ConfigError

SITE_FILE = "site.json"
SCHEMA = "airgap.dev/site/v1"
BUNDLES_DIR = "bundles"
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")  # a bundle name as its spec wrote it
_REL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_PINNED = re.compile(r"^[^\x00-\x20\x7f@]{1,512}@sha256:[a-f0-9]{64}$")  # a digest-pinned image ref


def trust_dir_name(name: str, digest: str) -> str:
    """Where a bundle's trust lives in a site: ``bundles/<name, filesystem-safe>-<12 hex of its digest>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-")[:64] or "bundle"
    return f"{BUNDLES_DIR}/{safe}-{digest.removeprefix('sha256:')[:12]}"


def is_site(directory: str | Path) -> bool:
    """True when ``directory`` holds a site state (``site.json``)."""
    return (Path(directory) / SITE_FILE).is_file()


def file_digests(directory: Path) -> dict[str, str]:
    """``relative path -> sha256:hex`` of every regular file under ``directory`` (dotfiles skipped)."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if not any(part.startswith(".") for part in rel.split("/")):
            out[rel] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass(frozen=True)
class SiteImage:
    """One image a bundle loaded: where it came from, the local refs it was pushed as, its manifest digest."""

    upstream: str
    digest: str
    local: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"upstream": self.upstream, "digest": self.digest, "local": list(self.local)}


@dataclass(frozen=True)
class SiteBundle:
    """One loaded bundle as the site records it."""

    name: str
    version: str
    digest: str  # the bundle digest (what ``pack``/``inspect`` print and ``--bundle-digest`` pins)
    signer: str | None  # key id of the key its signature verified with (None: pinned digest or unsigned)
    loaded_at: str  # RFC 3339
    registry: str  # where it was loaded (HOST[/PREFIX])
    trust_dir: str  # relative to the site: bundles/<name>-<digest12>
    files: dict[str, str] = field(default_factory=dict)  # trust_dir-relative path -> sha256 (pinned)
    images: tuple[SiteImage, ...] = ()
    # The bundle carried airgap's own image: where it was loaded, pinned (HOST/REPO@sha256:...); the webhook's
    # manifests default to it (airgap.bundle.selfcarry).
    airgap_image: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": self.digest, "signer": self.signer,
                "loadedAt": self.loaded_at, "registry": self.registry, "trustDir": self.trust_dir,
                "files": dict(sorted(self.files.items())), "images": [i.to_json() for i in self.images]} | (
            {"airgapImage": self.airgap_image} if self.airgap_image is not None else {})


@dataclass
class SiteState:
    """``site.json``: every bundle the site holds, newest load last."""

    bundles: list[SiteBundle] = field(default_factory=list)

    def get(self, name: str) -> SiteBundle | None:
        return next((b for b in self.bundles if b.name == name), None)

    def with_bundle(self, bundle: SiteBundle) -> SiteState:
        """A new state where ``bundle`` replaces the bundle of the same name (an upgrade) or is added."""
        return SiteState([b for b in self.bundles if b.name != bundle.name] + [bundle])

    def without(self, name: str) -> SiteState:
        return SiteState([b for b in self.bundles if b.name != name])

    def to_bytes(self) -> bytes:
        doc = {"schema": SCHEMA, "bundles": [b.to_json() for b in self.bundles]}
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> SiteState:
        """Parse strictly: every field typed and named; anything else is a ConfigError naming ``where``."""
        from airgap.jsondoc import json_object

        doc = json_object(data, where, ConfigError)
        if doc.get("schema") != SCHEMA or set(doc) != {"schema", "bundles"} or not isinstance(doc["bundles"], list):
            raise ConfigError(f"{where}: not an airgap site state (expected schema {SCHEMA!r} and a bundles list)")
        out = cls()
        seen: set[str] = set()
        for i, raw in enumerate(doc["bundles"]):
            bundle = _bundle(raw, f"{where}: bundles[{i}]")
            if bundle.name in seen:
                raise ConfigError(f"{where}: bundle {bundle.name!r} is listed twice")
            seen.add(bundle.name)
            out.bundles.append(bundle)
        return out

    @classmethod
    def load(cls, directory: Path) -> SiteState:
        path = directory / SITE_FILE
        if not path.exists():
            return cls()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, str(path))

    def check_files(self, directory: Path) -> None:
        """Every bundle's trust directory holds exactly the files the state pins, with their digests."""
        for b in self.bundles:
            have = file_digests(directory / b.trust_dir) if (directory / b.trust_dir).is_dir() else {}
            for rel, want in sorted(b.files.items()):
                got = have.pop(rel, None)
                if got != want:
                    what = "is missing" if got is None else f"has digest {got}, the site state pins {want}"
                    raise ConfigError(f"{directory / b.trust_dir / rel} {what}: the site's trust was changed "
                                      "outside airgap; re-load the bundle or restore the file")
            if have:
                raise ConfigError(f"{directory / b.trust_dir}: {', '.join(sorted(have))} not pinned by the site state")


_BUNDLE_FIELDS = {"name", "version", "digest", "signer", "loadedAt", "registry", "trustDir", "files", "images"}


def _str(doc: dict[str, Any], key: str, where: str, pattern: re.Pattern[str] | None = None) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
        raise ConfigError(f"{where}.{key}: missing or malformed")
    return value


def _bundle(raw: Any, where: str) -> SiteBundle:
    if not isinstance(raw, dict) or set(raw) - {"airgapImage"} != _BUNDLE_FIELDS:
        raise ConfigError(f"{where}: expected exactly the fields {', '.join(sorted(_BUNDLE_FIELDS))} "
                          "(and optionally airgapImage)")
    airgap_image = None
    if "airgapImage" in raw:
        airgap_image = _str(raw, "airgapImage", where, _PINNED)
    signer = raw["signer"]
    if signer is not None and (not isinstance(signer, str) or not _DIGEST.match(signer)):
        raise ConfigError(f"{where}.signer: expected a key id or null")
    trust_dir = _str(raw, "trustDir", where, _REL)
    if not trust_dir.startswith(f"{BUNDLES_DIR}/") or trust_dir.count("/") != 1:
        raise ConfigError(f"{where}.trustDir: expected {BUNDLES_DIR}/<name>")
    files = raw["files"]
    if not isinstance(files, dict) or not all(isinstance(k, str) and _REL.match(k) and isinstance(v, str)
                                              and _DIGEST.match(v) for k, v in files.items()):
        raise ConfigError(f"{where}.files: expected relative paths mapped to sha256 digests")
    images = raw["images"]
    if not isinstance(images, list):
        raise ConfigError(f"{where}.images: expected a list")
    parsed = []
    for j, img in enumerate(images):
        iw = f"{where}.images[{j}]"
        if not isinstance(img, dict) or set(img) != {"upstream", "digest", "local"}:
            raise ConfigError(f"{iw}: expected exactly upstream, digest, local")
        local = img["local"]
        if not isinstance(local, list) or not all(isinstance(x, str) and x for x in local):
            raise ConfigError(f"{iw}.local: expected a list of refs")
        parsed.append(SiteImage(_str(img, "upstream", iw), _str(img, "digest", iw, _DIGEST), tuple(local)))
    return SiteBundle(name=_str(raw, "name", where, _NAME), version=_str(raw, "version", where),
                      digest=_str(raw, "digest", where, _DIGEST), signer=signer,
                      loaded_at=_str(raw, "loadedAt", where), registry=_str(raw, "registry", where),
                      trust_dir=trust_dir, files=dict(files), images=tuple(parsed), airgap_image=airgap_image)
