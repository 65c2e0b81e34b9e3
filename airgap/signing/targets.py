"""What gets signed: a ref resolved to digests (every child of an index with ``--recursive``), where the
signatures go (``--signature-repo`` / ``COSIGN_REPOSITORY``), the loop ``sign`` and ``attest`` share, and the
summary they report.

The image is always resolved to a digest first and the digest is what gets signed; a tag is never trusted
to still name the same image after we looked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airgap import refs
from airgap.checks import cosign
from airgap.errors import ConfigError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Manifest

if TYPE_CHECKING:
    from airgap.oci.registry import RegistryClient


Format = Literal["legacy", "bundle"]


def docker_reference(ref: refs.Reference) -> str:
    """The ``docker-reference`` cosign writes for ``ref`` (see :func:`airgap.checks.cosign.docker_reference`)."""
    return cosign.docker_reference(ref.registry, ref.repository)


@dataclass
class SignedDigest:
    """One digest signed: where the signature went (``written``, None when not uploaded), the digest
    of the manifest holding it, whether it was already there, and local files written."""

    digest: str
    reference: str
    kind: str  # "signature" | "bundle" | "attestation"
    written: str | None = None
    manifest: str | None = None
    duplicate: bool = False
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log_index: int | None = None  # keyless: the Rekor entry


@dataclass
class SignSummary:
    reference: str
    digest: str
    format: str
    signed: list[SignedDigest] = field(default_factory=list)
    seconds: float = 0.0
    identity: str | None = None  # keyless: the certificate's identity and issuer
    issuer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """Where an image is and where its signatures go (``COSIGN_REPOSITORY`` / ``--signature-repo``)."""

    ref: refs.Reference
    host: str
    sig_registry: str
    sig_host: str
    sig_repo: str


def resolve_target(ref: str, signature_repo: str | None) -> Target:
    parsed = refs.parse(ref)
    sig_name = signature_repo or os.environ.get("COSIGN_REPOSITORY") or None
    if sig_name:
        sig = refs.parse(sig_name, default_tag=None)
        if sig.tag or sig.digest:
            raise ConfigError(f"signature repository {sig_name!r} must not have a tag or digest")
        sig_registry, sig_repo = sig.registry, sig.repository
    else:
        sig_registry, sig_repo = parsed.registry, parsed.repository
    return Target(parsed, refs.api_host(parsed.registry), sig_registry, refs.api_host(sig_registry), sig_repo)


def resolve_digests(client: RegistryClient, target: Target, recursive: bool) -> tuple[Manifest, list[Manifest]]:
    """The image's manifest (fetched and verified against its digest) and, when ``recursive``, every
    manifest below an index, nested indexes included, parents before children (each verified too)."""
    root = client.get_manifest(target.host, target.ref.repository, target.ref.identifier)
    children: list[Manifest] = []
    seen = {root.digest}
    pending = [root] if recursive else []
    while pending:
        parent = pending.pop(0)
        for child in parent.manifests:
            if child.media_type in mt.MANIFESTS and child.digest not in seen:
                seen.add(child.digest)
                fetched = client.get_manifest(target.host, target.ref.repository, child.digest)
                children.append(fetched)
                pending.append(fetched)
    return root, children




def output_names(digest: str) -> tuple[str, str, str]:
    """File names for ``--output-dir DIR``: cosign's recursive ``--output-signature DIR/signature``/
    ``--output-payload DIR/payload`` naming (``<name>-sha256-<hex>``), one pair per digest, plus the bundle.
    A keyless signature adds ``certificate-<d>.pem`` and ``rekor-bundle-<d>.json`` (see
    :mod:`airgap.verification.local`, which reads the directory back)."""
    suffix = digest.replace(":", "-", 1)
    return f"signature-{suffix}", f"payload-{suffix}", f"bundle-{suffix}.json"


@dataclass(frozen=True)
class OutputFiles:
    """cosign's ``--output-signature FILE``, ``--output-payload FILE`` and ``--output-certificate FILE``: the
    files of ONE digest (cosign without ``--recursive``): the base64 signature, the signed simple-signing payload,
    and the signing certificate (keyless: the leaf PEM) or, with a key, its public key PEM."""

    signature: Path | None = None
    payload: Path | None = None
    certificate: Path | None = None

    def __bool__(self) -> bool:
        return any((self.signature, self.payload, self.certificate))


# What signing one digest gives: its entry, and what pushes it (None when nothing is uploaded).
Prepared = tuple[SignedDigest, Callable[[], None] | None]


def for_each_digest(
    client: RegistryClient, ref: str, signature_repo: str | None, recursive: bool, output_dir: Path | None,
    kind: str, one: Callable[[Target, Manifest], Prepared],
    progress: Callable[[SignedDigest], None] | None,
) -> SignSummary:
    """Resolve ``ref`` (and with ``recursive`` the children of an index), run ``one`` on each digest, root
    first, then push what they made, timing each and reporting it to ``progress``: the loop ``sign`` and
    ``attest`` share. Every digest is signed (and, keyless, logged) before anything is pushed, so a signer,
    Fulcio or Rekor failing part-way leaves the registry as it was."""
    started = time.monotonic()
    target = resolve_target(ref, signature_repo)
    root, children = resolve_digests(client, target, recursive)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
    summary = SignSummary(str(target.ref), root.digest, kind)
    prepared: list[tuple[SignedDigest, Callable[[], None] | None, float]] = []
    for manifest in [root, *children]:
        t0 = time.monotonic()
        entry, push = one(target, manifest)
        prepared.append((entry, push, time.monotonic() - t0))
    for entry, push, spent in prepared:
        t0 = time.monotonic()
        if push is not None:
            push()
        entry.seconds = round(spent + time.monotonic() - t0, 3)
        summary.signed.append(entry)
        if progress is not None:
            progress(entry)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary
