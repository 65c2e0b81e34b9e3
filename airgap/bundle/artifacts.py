"""``airgap verify-bundle``: check a bundle completely offline, then decide every image with the bundled policy.

The bundle is read in one pass with :class:`~airgap.bundle.reader.BundleReader` (trust of the manifest first,
then every entry's name, size and digest, nothing unlisted or duplicated, nothing missing). Manifests and the
small blobs that may be signature layers are kept (small ones in memory, larger ones up to the signature-layer
cap in a temp directory); then each image is decided by :func:`airgap.verification.evaluate.evaluate`, the same
function the registry verifier uses, over :class:`BundleArtifacts`: the ``Artifacts`` interface answered from the
bundle.

Where an attachment lives: ``load`` pushes every attachment to the image's repository and, when the image
has a separate signature repository, there too; so here both repositories answer with all of them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airgap import refs
from airgap.config import Limits
from airgap.errors import BundleError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Manifest
from airgap.verification.discover import AttachedLookup, Candidate, Repo

if TYPE_CHECKING:
    from airgap.bundle.manifest import Attachment, BundleManifest, ImageEntry, SelfCarry
    from airgap.keys.public import PublicKey
    from airgap.verification.result import VerificationResult

IN_MEMORY = 64 * 1024  # blobs up to this size are kept in memory; larger candidates go to a temp file
_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
_LAYERS = {"signature": frozenset({mt.COSIGN_SIMPLESIGNING}), "attestation": frozenset({mt.DSSE_ENVELOPE})}


class BlobStore:
    """The bundle's small blobs, kept while streaming: bytes in memory or a path in a temp directory."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool
        self.memory: dict[str, bytes] = {}
        self.files: dict[str, Path] = {}

    def keep(self, digest: str, size: int, chunks: Any) -> None:
        if size <= IN_MEMORY:
            self.memory[digest] = b"".join(chunks)
            return
        path = self.spool / digest.split(":", 1)[1]
        with path.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
        self.files[digest] = path

    def get(self, digest: str) -> bytes | None:
        if digest in self.memory:
            return self.memory[digest]
        path = self.files.get(digest)
        return path.read_bytes() if path is not None else None


@dataclass
class BundleArtifacts(AttachedLookup):
    """``airgap.verification.discover.Artifacts``'s interface over one image of a bundle (see the module docstring)."""

    repo: Repo
    manifest: Manifest
    attachments: list[tuple[Attachment, Manifest]]
    blobs: BlobStore
    signature_repos: tuple[Repo, ...] = ()
    _homes: tuple[Repo, ...] = field(default=())
    limits: Limits = field(default_factory=Limits)

    def _gather(self, kind: str, repos: tuple[Repo, ...] | None) -> list[Candidate]:
        out: list[Candidate] = []
        for repo in repos or self.signature_repos or (self.repo,):
            if repo not in (self.repo, *self._homes):
                continue  # a repository the bundle carries nothing from
            for att, manifest in self.attachments:
                if att.subject != self.digest:
                    continue
                if kind == "bundle":
                    if att.kind != "referrer" or not (manifest.artifact_type or "").startswith(_BUNDLE_PREFIX):
                        continue
                    wanted = frozenset(b.media_type for b in manifest.blobs[1:]
                                       if b.media_type.startswith(_BUNDLE_PREFIX))
                    location = f"{repo}@{manifest.digest}"
                elif att.kind == kind:
                    wanted = _LAYERS[kind]
                    location = f"{repo}:{att.tag}" if att.tag else f"{repo}@{manifest.digest}"
                else:
                    continue
                if len(manifest.blobs) - 1 > self.limits.max_signature_layers:
                    raise BundleError(f"{location}: {len(manifest.blobs) - 1} layers, more than the "
                                      f"{self.limits.max_signature_layers} a signature manifest may have")
                for layer in manifest.blobs[1:]:
                    if layer.media_type not in wanted:
                        continue
                    if layer.size > self.limits.max_signature_layer_bytes:
                        raise BundleError(f"{location}: signature layer of {layer.size} bytes is over the limit")
                    data = self.blobs.get(layer.digest)
                    if data is None:
                        raise BundleError(f"{location}: layer {layer.digest} is not in the bundle")
                    out.append(Candidate(kind, data, dict(layer.annotations), location, layer.digest,
                                         layer.media_type))
        return out


def _repo(text: str) -> Repo:
    ref = refs.parse(text.removeprefix("oci://"), default_tag=None)
    return Repo(ref.registry, ref.repository)


def _manifest(blobs: BlobStore, digest: str, media_type: str | None, what: str) -> Manifest:
    data = blobs.get(digest)
    if data is None:
        raise BundleError(f"{what}: manifest {digest} is not in the bundle")
    return Manifest.from_bytes(data, media_type, expected_digest=digest, what=f"{what} manifest {digest}")


def _check_graph(manifest: BundleManifest, blobs: BlobStore, entry: ImageEntry,
                 unchecked: dict[str, dict[str, Any]]) -> Manifest:
    """Every manifest of the image parses and everything it names is in the bundle, or (a layer or config of a
    delta bundle) pinned as omitted: those are recorded in ``unchecked`` (digest -> size, images)."""
    root = _manifest(blobs, entry.digest, entry.media_type, entry.upstream)
    todo = [root]
    while todo:
        m = todo.pop()
        for desc in m.manifests:
            if desc.digest not in manifest.blobs:
                raise BundleError(f"{entry.upstream}: {m.digest} names {desc.digest}, which is not in the bundle")
        for desc in m.blobs:
            if desc.digest in manifest.omitted and desc.digest in entry.blobs:
                if desc.size != manifest.omitted[desc.digest]:
                    raise BundleError(f"{entry.upstream}: {m.digest} names {desc.digest} with {desc.size} bytes, "
                                      f"the delta pins {manifest.omitted[desc.digest]}")
                record = unchecked.setdefault(desc.digest, {"digest": desc.digest, "size": desc.size, "images": []})
                if entry.upstream not in record["images"]:
                    record["images"].append(entry.upstream)
            elif desc.digest not in manifest.blobs:
                raise BundleError(f"{entry.upstream}: {m.digest} names {desc.digest}, which is not in the bundle")
        todo += [_manifest(blobs, c.digest, c.media_type, entry.upstream) for c in m.manifests]
    return root


@dataclass
class BundleVerification:
    bundle_digest: str
    signed_by: str | None
    name: str
    version: str
    results: list[VerificationResult]
    delta: dict[str, Any] | None = None  # a delta bundle: kind, base, and the omitted blobs it could not check
    airgap: SelfCarry | None = None  # what the manifest says about airgap itself (its image, the CLI beside)

    @property
    def ok(self) -> bool:
        return all(self.results)


def verify_bundle(source: IO[bytes], *, key: PublicKey | list[PublicKey] | None = None,
                  bundle_digest: str | None = None, allow_unsigned: bool = False) -> BundleVerification:
    """Read and check the whole bundle, then decide every image offline; see the module docstring.

    Integrity failures (signature, digests, structure) raise :class:`BundleError`; policy failures are
    verdicts in the result."""
    from airgap.bundle.delta import check_attachments_carried
    from airgap.bundle.pack import load_trust
    from airgap.bundle.reader import BundleReader
    from airgap.bundle.source import check_bundle_digest
    from airgap.verification.evaluate import evaluate

    reader = BundleReader(source, key=key, bundle_digest=bundle_digest, allow_unsigned=allow_unsigned)
    check_bundle_digest(source, reader.digest)
    manifest = reader.manifest
    manifest_digests = {d for e in manifest.images for d in (*e.manifests, *(a.digest for a in e.attachments))}
    with tempfile.TemporaryDirectory(prefix="airgap-verify-bundle-") as tmp:
        spool = Path(tmp) / "blobs"
        spool.mkdir()
        blobs = BlobStore(spool)
        for digest, size, chunks in reader.blobs():
            if digest in manifest_digests or size <= Limits.max_signature_layer_bytes:
                blobs.keep(digest, size, chunks)
        reader.finish()
        trust = load_trust(reader.files, Path(tmp) / "trust")
        if trust.policy is None:
            raise BundleError("bundle carries no trust/policy.yaml: nothing to verify the images against")
        results = []
        unchecked: dict[str, dict[str, Any]] = {}
        for entry in manifest.images:
            root = _check_graph(manifest, blobs, entry, unchecked)
            attachments = [(a, _manifest(blobs, a.digest, None, entry.upstream)) for a in entry.attachments]
            for att, m in attachments:
                check_attachments_carried(manifest, att.digest, [b.digest for b in m.blobs])
            upstream = refs.parse(entry.upstream)
            homes = (_repo(entry.signature_repo),) if entry.signature_repo else ()
            artifacts = BundleArtifacts(Repo(upstream.registry, upstream.repository), root, attachments, blobs,
                                        _homes=homes)
            results.append(evaluate(entry.upstream, artifacts, (upstream.with_digest(entry.digest),),
                                    "bundle manifest", trust.policy, trust, resolve_source=_repo))
    delta = None
    if manifest.delta is not None:
        delta = {"kind": manifest.delta.kind, "base": manifest.delta.base, "omitted_blobs": len(manifest.omitted),
                 "omitted_bytes": manifest.delta.omitted_bytes,
                 "unchecked": sorted(unchecked.values(), key=lambda r: str(r["digest"]))}
    return BundleVerification(reader.digest, reader.signed_by, manifest.name, manifest.version, results, delta,
                              manifest.airgap)
