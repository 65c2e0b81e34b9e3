"""Keeping a site's state: recording each load, upgrades, removing a bundle, one writer at a time.

The state (``site.json``) and each bundle's trust directory are described in :mod:`airgap.verification.scopes`;
this module changes them:

* :func:`record_load` after ``airgap load --site DIR``: the bundle's trust files are written to a new directory
  beside the others, then ``site.json`` is replaced atomically (the commit point: a load killed before it leaves
  the previous state, and its half-written directory is swept by the next writer), then what the previous
  version of the same bundle name held and the new one does not is retired (an upgrade);
* :func:`remove_bundle`: the bundle's tags are deleted from the registry unless another bundle (or a tag outside
  airgap) still names the same manifest, its map artifact goes, then the state forgets it and its trust;
* :class:`SiteLock`: every writer holds ``DIR/.lock`` (``flock``) for the whole operation, so two loads at once
  run one after the other, and a writer that cannot get the lock in time fails cleanly.

Blobs are never deleted here: a registry collects unreferenced blobs itself (distribution's
``garbage-collect``), and only it knows what every manifest still uses.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from airgap import refs
from airgap.errors import ConfigError, ConflictError, NotFoundError
from airgap.fileio import write_atomic
from airgap.verification.scopes import (
    BUNDLES_DIR,
    SITE_FILE,
    SiteBundle,
    SiteImage,
    SiteState,
    file_digests,
    trust_dir_name,
)

if TYPE_CHECKING:
    from airgap.bundle.load import LoadSummary
    from airgap.oci.registry import RegistryClient

LOCK_FILE = ".lock"


@contextmanager
def SiteLock(site: Path, *, wait: float = 600.0) -> Iterator[None]:  # noqa: N802 - used like a class
    """Hold the site's writer lock (created with the site directory); wait up to ``wait`` seconds for another
    writer, then fail with a ConflictError naming the lock."""
    site.mkdir(parents=True, exist_ok=True)
    fd = os.open(site / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConflictError(f"another airgap command is changing the site {site} (it holds "
                                        f"{site / LOCK_FILE}); try again when it is done") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_dir(target: Path, files: Mapping[str, bytes]) -> None:
    """``files`` as a new directory at ``target``, built beside it and renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        for rel, data in sorted(files.items()):
            if rel.startswith("/") or any(p in ("", ".", "..") for p in rel.split("/")):
                raise ConfigError(f"refusing to write trust file {rel!r}")
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o644)
        tmp.chmod(0o755)
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
            os.rename(target, old / "d")
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _sweep(site: Path, state: SiteState) -> None:
    """Remove trust directories no bundle of ``state`` uses (an upgrade's predecessor, a killed load's leftovers)."""
    keep = {b.trust_dir.split("/", 1)[1] for b in state.bundles}
    bundles = site / BUNDLES_DIR
    for entry in bundles.iterdir() if bundles.is_dir() else ():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)


@dataclass
class Retired:
    """What retiring a bundle's tags did: deleted, kept because someone else still uses them, or already gone."""

    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)


def record_load(site: Path, summary: LoadSummary, *, client: RegistryClient | None = None,
                loaded_at: str | None = None) -> SiteBundle:
    """Record a finished load in the site (the caller holds :class:`SiteLock`); see the module docstring.
    With ``client``, what an earlier version of the same bundle held and this one does not is retired."""
    state = SiteState.load(site)
    previous = state.get(summary.name)
    files = dict(summary.trust_files)
    trust_dir = trust_dir_name(summary.name, summary.bundle_digest)
    _write_dir(site / trust_dir, files)
    bundle = SiteBundle(
        name=summary.name, version=summary.version, digest=summary.bundle_digest, signer=summary.signed_by,
        loaded_at=loaded_at or _now(), registry=summary.registry, trust_dir=trust_dir,
        files=file_digests(site / trust_dir),
        images=tuple(SiteImage(i["upstream"], i["digest"], tuple(i["local"])) for i in summary.images),
        airgap_image=summary.airgap_image)
    new_state = state.with_bundle(bundle)
    write_atomic(site / SITE_FILE, new_state.to_bytes(), mode=0o644)  # the commit point
    _sweep(site, new_state)
    if previous is not None and client is not None:
        now = {ref for img in bundle.images for ref in img.local}
        old = [(img, ref) for img in previous.images for ref in img.local if ref not in now]
        retire(client, new_state, old)
    return bundle


def _other_uses(state: SiteState, repo_name: str, digest: str) -> bool:
    return any(refs.parse(ref).name == repo_name and img.digest == digest
               for b in state.bundles for img in b.images for ref in img.local)


def retire(client: RegistryClient, remaining: SiteState, images: list[tuple[SiteImage, str]]) -> Retired:
    """Delete the manifests behind these local refs (and the cosign attachments of their digests) unless a
    bundle of ``remaining``, or a tag outside airgap, still names the same manifest in that repository; a tag
    re-pointed since (no longer the recorded digest) is left alone."""
    from airgap.checks.cosign import attestation_tag, signature_tag

    out = Retired()
    done: set[tuple[str, str, str]] = set()
    for img, text in images:
        ref = refs.parse(text)
        host, repo = refs.api_host(ref.registry), ref.repository
        if (host, repo, img.digest) in done:
            continue
        current = client.head_manifest(host, repo, ref.tag or img.digest)
        if current is None:
            out.gone.append(text)
            continue
        if current.digest != img.digest or _other_uses(remaining, ref.name, img.digest):
            out.kept.append(text)
            continue
        ours = {refs.parse(r).tag for _, r in images if refs.parse(r).name == ref.name}
        strangers = [t for t in client.list_tags(host, repo) if t not in ours and not t.startswith("sha256-")]
        if any((d := client.head_manifest(host, repo, t)) is not None and d.digest == img.digest for t in strangers):
            out.kept.append(text)
            continue
        for tag in (signature_tag(img.digest), attestation_tag(img.digest)):
            attached = client.head_manifest(host, repo, tag)
            if attached is not None:
                client.delete_manifest(host, repo, attached.digest)
        client.delete_manifest(host, repo, img.digest)
        done.add((host, repo, img.digest))
        out.deleted.append(text)
    return out


@dataclass
class Removal:
    bundle: SiteBundle
    retired: Retired
    map_deleted: bool


def remove_bundle(site: Path, name: str, *, client: RegistryClient | None) -> Removal:
    """Remove bundle ``name`` from the site (the caller holds :class:`SiteLock`): its images from the registry
    (``client``; None keeps them), its map artifact, then its record and trust. Re-running a removal that was
    killed midway finishes it."""
    from airgap.bundle.load import MAP_REPO, map_tag

    state = SiteState.load(site)
    bundle = state.get(name)
    if bundle is None:
        known = ", ".join(b.name for b in state.bundles) or "none"
        raise ConfigError(f"the site {site} holds no bundle named {name!r} (it holds: {known})")
    remaining = state.without(name)
    retired, map_deleted = Retired(), False
    if client is not None:
        retired = retire(client, remaining, [(img, ref) for img in bundle.images for ref in img.local])
        target = bundle.registry
        host = refs.api_host(target.split("/", 1)[0])
        repo = f"{target.split('/', 1)[1]}/{MAP_REPO}" if "/" in target else MAP_REPO
        desc = client.head_manifest(host, repo, map_tag(bundle.name, bundle.version))
        if desc is not None:
            try:
                client.delete_manifest(host, repo, desc.digest)
                map_deleted = True
            except NotFoundError:
                pass
    write_atomic(site / SITE_FILE, remaining.to_bytes(), mode=0o644)
    _sweep(site, remaining)
    return Removal(bundle, retired, map_deleted)

