"""Fetch what verification needs from a registry: the image, its signatures, attestations and bundles.

This is the narrow edge where network I/O enters verification: :mod:`airgap.verification.evaluate` only sees the
:class:`Artifacts` this module returns. Everything is fetched lazily and at most once (a policy that needs
no attestation never costs an ``.att`` lookup), and everything is verified against its digest on the way
in (the registry is untrusted: :class:`~airgap.oci.registry.RegistryClient` hashes every byte).

Where signatures are looked for, in order: the ``sha256-<hex>.sig`` / ``.att`` tags and the referrers
(Referrers API or the ``sha256-<hex>`` fallback tag) of the image digest, in the image's own repository
or in each signature repository given (policy ``source.oci``, ``--signature-repo``, ``COSIGN_REPOSITORY``).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from airgap import digest as digests
from airgap.checks import cosign
from airgap.config import Limits
from airgap.errors import IntegrityError, NotFoundError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest
from airgap.oci.registry import RegistryClient

_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"


@dataclass(frozen=True)
class Candidate:
    """One signature, attestation or sigstore bundle found for an image, with where it came from.

    ``refused`` is set (and ``data`` empty) when the layer was not fetched because it is over
    ``Limits.max_signature_layer_bytes``: it counts as a candidate that failed, with that reason."""

    kind: str  # "signature" (simple signing), "attestation" (DSSE), "bundle" (sigstore bundle)
    data: bytes  # the exact layer bytes: payload, envelope or bundle JSON
    annotations: dict[str, str]
    location: str  # host/repo:tag or host/repo@digest of the manifest that carried it
    layer_digest: str
    media_type: str
    refused: str = ""


@dataclass(frozen=True)
class Repo:
    host: str  # the host to connect to (after access aliases)
    repository: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


class AttachedLookup(ABC):
    """What verification asks of an image wherever it lives (a registry, a bundle): its manifest and the
    signatures, attestations and sigstore bundles attached to it, per signature repository."""

    manifest: Manifest

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def signatures(self, repos: tuple[Repo, ...] | None = None) -> list[Candidate]:
        return self._gather("signature", repos)

    def attestations(self, repos: tuple[Repo, ...] | None = None) -> list[Candidate]:
        return self._gather("attestation", repos)

    def bundles(self, repos: tuple[Repo, ...] | None = None) -> list[Candidate]:
        return self._gather("bundle", repos)

    @abstractmethod
    def _gather(self, kind: str, repos: tuple[Repo, ...] | None) -> list[Candidate]:
        """Candidates of ``kind`` ("signature", "attestation", "bundle") from ``repos`` (None: the default)."""


@dataclass
class Artifacts(AttachedLookup):
    """The image at ``repo@digest`` and, fetched on first use, what is attached to it.

    ``signature_repos`` are searched for every kind of signature; the image's own repository is the
    default when it is empty.
    """

    client: RegistryClient
    repo: Repo
    manifest: Manifest
    signature_repos: tuple[Repo, ...] = ()
    # Names the image may have been signed under (``registry/repository``): see :func:`_predicted_payload`.
    signed_names: tuple[str, ...] = ()
    _cache: dict[tuple[str, Repo], list[Candidate]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _spent: list[int] = field(default_factory=lambda: [0])  # bytes fetched for this image (see _Fetch.take)

    def _repos(self, override: tuple[Repo, ...] | None) -> tuple[Repo, ...]:
        return override or self.signature_repos or (self.repo,)

    def _gather(self, kind: str, repos: tuple[Repo, ...] | None) -> list[Candidate]:
        out: list[Candidate] = []
        for repo in self._repos(repos):
            with self._lock:
                cached = self._cache.get((kind, repo))
            if cached is None:
                cached = _Fetch(self, repo).run(kind)
                with self._lock:
                    self._cache[(kind, repo)] = cached
            out += cached
        return out


def resolve(client: RegistryClient, repo: Repo, reference: str) -> Artifacts:
    """Fetch the manifest ``reference`` (tag or digest) names; its bytes are checked against the digest.
    A digest reference may be answered from the client's cache of verified content: it cannot change."""
    return Artifacts(client, repo, client.get_manifest(repo.host, repo.repository, reference, cached=True))


def signature_layers(manifest: Manifest, where: str, limits: Limits) -> tuple[Descriptor, ...]:
    """The layers of a signature or attestation manifest (after its config); more than
    ``limits.max_signature_layers`` of them is refused, before any is fetched."""
    layers = manifest.blobs[1:]
    if len(layers) > limits.max_signature_layers:
        raise IntegrityError(f"{where}: {len(layers)} layers, more than the {limits.max_signature_layers} "
                             "a signature manifest may have (limit max_signature_layers): refused")
    return layers


def _predicted_payload(layer: Descriptor, digest: str, names: tuple[str, ...]) -> bytes | None:
    """The simple-signing payload of ``layer`` without fetching it, when it is one cosign writes for
    ``digest`` under one of ``names`` with no annotations: the bytes are then fully known, and their
    sha256 equalling the layer digest makes them the layer's content exactly as a verified download would
    (content addressing). Saves the most expensive of a key-signed image's three registry round trips;
    anything else (annotations, another name) returns None and is fetched."""
    for name in names:
        data = cosign.simple_signing_payload(name, digest)
        if len(data) == layer.size and digests.of_bytes(data) == layer.digest:
            return data
    return None


class _Fetch:
    """Fetching what is attached to one image from one repository, within the image's bounds (the registry
    is untrusted: see ``Limits.max_signature_layers`` and the caps beside it)."""

    def __init__(self, artifacts: Artifacts, repo: Repo) -> None:
        self.a, self.repo, self.client = artifacts, repo, artifacts.client
        self.limits = self.client.limits

    def take(self, size: int, what: str) -> None:
        """Count ``size`` bytes about to be fetched against the image's budget; refuse past it."""
        with self.a._lock:
            self.a._spent[0] += size
            spent = self.a._spent[0]
        if spent > self.limits.max_attached_bytes:
            raise IntegrityError(f"{what}: the signatures, attestations and referrers of {self.a.digest} come to more "
                                 f"than {self.limits.max_attached_bytes} bytes (limit max_attached_bytes): refused")

    def manifest(self, reference: str, size: int | None = None) -> Manifest:
        if size is not None:
            self.take(size, f"{self.repo}@{reference}")
        found = self.client.get_manifest(self.repo.host, self.repo.repository, reference, cached=True)
        if size is None:
            self.take(len(found.data), f"{self.repo}:{reference}")
        return found

    def layers(self, manifest: Manifest, location: str, kind: str, media_types: frozenset[str],
               names: tuple[str, ...] = ()) -> list[Candidate]:
        layers = signature_layers(manifest, location, self.limits)
        out = []
        for layer in layers:
            if layer.media_type not in media_types:
                continue
            data = _predicted_payload(layer, self.a.digest, names) if names else None
            refused = ""
            if data is None:
                if layer.size > self.limits.max_signature_layer_bytes:
                    refused = (f"layer of {layer.size} bytes is over the {self.limits.max_signature_layer_bytes}-byte "
                               "limit for a signature (max_signature_layer_bytes): not fetched")
                    data = b""
                else:
                    self.take(layer.size, location)
                    # Content-addressed and verified: a repeat verification skips the round trip.
                    data = self.client.read_blob(self.repo.host, self.repo.repository, layer, cached=True)
            out.append(Candidate(kind, data, dict(layer.annotations), location, layer.digest, layer.media_type,
                                 refused))
        return out

    def run(self, kind: str) -> list[Candidate]:
        digest, repo = self.a.digest, self.repo
        if kind in ("signature", "attestation"):
            tag = cosign.signature_tag(digest) if kind == "signature" else cosign.attestation_tag(digest)
            try:
                manifest = self.manifest(tag)
            except NotFoundError:
                return []
            if manifest.is_index:
                return []
            wanted = frozenset({mt.COSIGN_SIMPLESIGNING}) if kind == "signature" else frozenset({mt.DSSE_ENVELOPE})
            return self.layers(manifest, f"{repo}:{tag}", kind, wanted,
                               self.a.signed_names if kind == "signature" else ())
        out: list[Candidate] = []
        try:
            referrers = self.client.referrers(repo.host, repo.repository, digest,
                                              max_items=self.limits.max_referrers + 1)
        except NotFoundError:
            return []
        if len(referrers) > self.limits.max_referrers:
            raise IntegrityError(f"{repo}@{digest}: more than {self.limits.max_referrers} referrers "
                                 "(limit max_referrers): refused")
        for desc in referrers:
            # The index's artifactType is a hint only (some registries report the config media type there):
            # skip only what is clearly something else; the manifest's own artifactType decides.
            if desc.artifact_type not in (None, mt.OCI_EMPTY) and not desc.artifact_type.startswith(_BUNDLE_PREFIX):
                continue
            manifest = self.manifest(desc.digest, desc.size)
            if manifest.subject is None or manifest.subject.digest != digest:
                continue  # a referrers index may not list what it does not refer to: ignore, never trust
            if not (manifest.artifact_type or "").startswith(_BUNDLE_PREFIX):
                continue
            out += self.layers(manifest, f"{repo}@{desc.digest}", "bundle",
                               frozenset(b.media_type for b in manifest.blobs[1:]
                                         if b.media_type.startswith(_BUNDLE_PREFIX)))
        return out
