"""One interface over the places images live: a registry repository or an OCI image layout.

``copy`` (and later ``pack``/``load``) are written once against :class:`Store`; a registry repository
and a layout directory each implement it. Everything a store returns is already verified against its
digest, so callers never handle unverified bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from airgap.oci.manifest import Descriptor, Manifest
from airgap.oci.registry import BlobOpener, RegistryClient


class Store(Protocol):
    """A repository-like place holding manifests (by digest and tag) and blobs."""

    @property
    def name(self) -> str: ...

    @property
    def mount_key(self) -> tuple[str, str] | None:
        """(host, repo) when blobs can be mounted across repos of the same registry, else None."""

    def resolve(self, reference: str) -> Manifest: ...

    def has_manifest(self, digest: str) -> bool: ...

    def open_blob(self, desc: Descriptor) -> Iterator[bytes]: ...

    def push_blob(self, desc: Descriptor, opener: BlobOpener, mount_from: str | None = None) -> bool: ...

    def push_manifest(self, manifest: Manifest, tag: str | None = None, *, root: bool = False) -> None:
        """Store a manifest by digest, and under ``tag`` when given. ``root`` marks the top of what
        was copied (a layout lists it in index.json even untagged; a registry needs no such mark)."""

    def list_tags(self) -> list[str]: ...

    def referrers(self, digest: str) -> list[Descriptor]: ...

    def add_referrer(self, manifest: Manifest) -> None: ...

    def close(self) -> None: ...


class RegistryRepo:
    """A :class:`Store` over one repository of a registry."""

    def __init__(self, client: RegistryClient, host: str, repo: str) -> None:
        self.client = client
        self.host = host
        self.repo = repo

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repo}"

    @property
    def mount_key(self) -> tuple[str, str] | None:
        return (self.host, self.repo)

    def resolve(self, reference: str) -> Manifest:
        return self.client.get_manifest(self.host, self.repo, reference)

    def has_manifest(self, digest: str) -> bool:
        return self.client.head_manifest(self.host, self.repo, digest) is not None

    def open_blob(self, desc: Descriptor) -> Iterator[bytes]:
        return self.client.open_blob(self.host, self.repo, desc)

    def push_blob(self, desc: Descriptor, opener: BlobOpener, mount_from: str | None = None) -> bool:
        return self.client.push_blob(self.host, self.repo, desc, opener, mount_from=mount_from)

    def push_manifest(self, manifest: Manifest, tag: str | None = None, *, root: bool = False) -> None:
        self.client.put_manifest(self.host, self.repo, tag or manifest.digest, manifest)

    def list_tags(self) -> list[str]:
        return self.client.list_tags(self.host, self.repo)

    def referrers(self, digest: str) -> list[Descriptor]:
        return self.client.referrers(self.host, self.repo, digest)

    def add_referrer(self, manifest: Manifest) -> None:
        self.client.add_referrer(self.host, self.repo, manifest)

    def close(self) -> None:
        pass


def drain(chunks: Iterable[bytes]) -> int:
    """Consume a (verifying) stream; return its length. Used to check content without keeping it."""
    return sum(len(c) for c in chunks)
