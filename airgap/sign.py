"""cosign-compatible image signing: legacy ``.sig`` manifests and sigstore bundles as referrers.

What is written, byte for byte as cosign v2.4.1 writes it (checked against real cosign in the interop
tests): a ``sha256-<hex>.sig`` OCI manifest whose config is go-containerregistry's empty image config
(one ``history`` entry and one ``diff_id`` per layer) and whose layers are simple-signing payloads with the
base64 signature in ``dev.cosignproject.cosign/signature``. Signatures accumulate: a new one is appended to
the existing manifest, and one that is already there (same payload and annotations, a signature that
verifies with the same key) is not added again. ``--format bundle`` writes what cosign v3 writes instead
(see :mod:`airgap.attest`).

Order, so a failed push never leaves a tag pointing at missing blobs: every blob first, the manifest last.
The image is always resolved to a digest first and the digest is what gets signed; a tag is never trusted
to still name the same image after we looked.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airgap import cosign, refs
from airgap.errors import ConfigError, IntegrityError, NotFoundError
from airgap.oci import digest as digests
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest

if TYPE_CHECKING:
    from airgap.keys import Signer
    from airgap.oci.registry import RegistryClient

Format = Literal["legacy", "bundle"]

# go-containerregistry's zero time, which cosign leaves in the config of every signature image.
_ZERO_TIME = "0001-01-01T00:00:00Z"


# ---- wire shapes -------------------------------------------------------------------------------------

def go_json(obj: Any) -> bytes:
    """JSON as Go's ``json.Marshal`` writes it for the maps and strings cosign emits: compact, with
    ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, non-ASCII left as UTF-8. Key order is the caller's.

    Those characters can only occur inside JSON strings, so replacing them in the output is safe.
    """
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text.encode()


def signature_config(diff_ids: list[str]) -> bytes:
    """The config blob of a cosign signature image with these layers (go-containerregistry's
    ``empty.Image`` after ``mutate.Append``: zero times, empty os/architecture)."""
    return go_json({
        "architecture": "",
        "created": _ZERO_TIME,
        "history": [{"created": _ZERO_TIME} for _ in diff_ids],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "config": {},
    })


def _descriptor_json(desc: Descriptor) -> dict[str, Any]:
    """A descriptor in go-containerregistry's field order (mediaType, size, digest, annotations)."""
    out: dict[str, Any] = {"mediaType": desc.media_type, "size": desc.size, "digest": desc.digest}
    if desc.annotations:
        out["annotations"] = dict(sorted(desc.annotations.items()))
    return out


def signature_manifest(layers: list[Descriptor]) -> tuple[bytes, bytes]:
    """``(manifest, config)`` bytes of a cosign signature image whose layers are ``layers``."""
    config = signature_config([d.digest for d in layers])
    manifest = go_json({
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "size": len(config), "digest": digests.of_bytes(config)},
        "layers": [_descriptor_json(d) for d in layers],
    })
    return manifest, config


def payload_for(docker_reference: str, digest: str, annotations: dict[str, str] | None) -> bytes:
    """The simple-signing payload cosign v2 signs for ``digest`` (annotations sorted, as Go's map
    marshalling sorts them, and HTML characters escaped as Go escapes them)."""
    raw = cosign.simple_signing_payload(
        docker_reference, digest, dict(sorted(annotations.items())) if annotations else None)
    return go_json(json.loads(raw))


def docker_reference(ref: refs.Reference) -> str:
    """The ``docker-reference`` cosign writes for ``ref`` (see :func:`airgap.cosign.docker_reference`)."""
    return cosign.docker_reference(ref.registry, ref.repository)


# ---- appending layers to a .sig/.att manifest -----------------------------------------------------

def push_bytes(client: RegistryClient, host: str, repo: str, media_type: str, data: bytes) -> Descriptor:
    desc = Descriptor(media_type, digests.of_bytes(data), len(data))
    client.push_blob(host, repo, desc, lambda: iter((data,)))
    return desc


def _existing_layers(client: RegistryClient, host: str, repo: str, tag: str) -> tuple[list[Descriptor], str]:
    """The layers of the cosign manifest at ``tag`` and its digest (``[]``, ``""`` when there is none)."""
    try:
        existing = client.get_manifest(host, repo, tag)
    except NotFoundError:
        return [], ""
    if existing.is_index or existing.media_type not in mt.IMAGE_MANIFESTS:
        raise IntegrityError(f"{host}/{repo}:{tag} is a {existing.media_type}, not a cosign signature manifest")
    return list(existing.blobs[1:]), existing.digest


def append_layer(
    client: RegistryClient, host: str, repo: str, tag: str, layer_media_type: str, content: bytes,
    annotations: dict[str, str], *, is_duplicate: Callable[[Descriptor], bool] | None = None,
    replace: Callable[[Descriptor], bool] | None = None,
) -> tuple[str, bool]:
    """Append one layer to the cosign manifest at ``tag`` (creating it); return (manifest digest,
    whether an existing layer made this one a duplicate and nothing was written).

    ``replace`` drops existing layers it returns True for (cosign ``attest --replace``). Blobs are
    pushed before the manifest, so the tag only ever names complete content.
    """
    layers, existing_digest = _existing_layers(client, host, repo, tag)
    new = Descriptor(layer_media_type, digests.of_bytes(content), len(content), annotations=dict(annotations))
    if is_duplicate is not None:
        for layer in layers:
            if is_duplicate(layer):
                return existing_digest, True
    if replace is not None:
        layers = [d for d in layers if not replace(d)]
    layers.append(new)
    manifest_bytes, config = signature_manifest(layers)
    push_bytes(client, host, repo, layer_media_type, content)
    push_bytes(client, host, repo, mt.OCI_CONFIG, config)
    manifest = Manifest.from_bytes(manifest_bytes, mt.OCI_MANIFEST)
    client.put_manifest(host, repo, tag, manifest)
    return manifest.digest, False


def _same_layer(new_digest: str, media_type: str, annotations: dict[str, str],
                layer: Descriptor) -> bool:
    """cosign's dupe rule, minus the signature check: same content, media type, and every new
    annotation (other than the signature) present with the same value."""
    if layer.digest != new_digest or layer.media_type != media_type:
        return False
    return all(layer.annotations.get(k) == v for k, v in annotations.items() if k != cosign.ANN_SIGNATURE)


def attach_signature(client: RegistryClient, host: str, repo: str, subject_digest: str, payload: bytes,
                     signature: bytes, annotations: dict[str, str] | None = None) -> str:
    """Append a simple-signing layer (``payload`` signed by ``signature``) to ``sha256-<hex>.sig`` in
    ``host/repo``; return the digest of the resulting ``.sig`` manifest.

    ``annotations`` are extra layer annotations (a keyless certificate, chain, Rekor bundle ...). A layer
    with the same payload, annotations and signature bytes is not added twice.
    """
    ann = {**(annotations or {}), cosign.ANN_SIGNATURE: base64.b64encode(signature).decode()}
    new_digest = digests.of_bytes(payload)

    def duplicate(layer: Descriptor) -> bool:
        return (_same_layer(new_digest, mt.COSIGN_SIMPLESIGNING, ann, layer)
                and layer.annotations.get(cosign.ANN_SIGNATURE) == ann[cosign.ANN_SIGNATURE])

    digest, _ = append_layer(client, host, repo, cosign.signature_tag(subject_digest), mt.COSIGN_SIMPLESIGNING,
                             payload, ann, is_duplicate=duplicate)
    return digest


def _attach_keyed(client: RegistryClient, host: str, repo: str, subject_digest: str, payload: bytes,
                  signature: bytes, signer: Signer, annotations: dict[str, str]) -> tuple[str, bool]:
    """Like :func:`attach_signature`, with cosign's dupe rule: an existing layer is the same signature
    when content and annotations match and its signature verifies with this signer's key."""
    from airgap.keys import verify_signature

    ann = {**annotations, cosign.ANN_SIGNATURE: base64.b64encode(signature).decode()}
    new_digest = digests.of_bytes(payload)

    def duplicate(layer: Descriptor) -> bool:
        if not _same_layer(new_digest, mt.COSIGN_SIMPLESIGNING, ann, layer):
            return False
        try:
            existing = cosign.b64decode(layer.annotations.get(cosign.ANN_SIGNATURE, ""), "signature")
        except IntegrityError:
            return False
        return bool(existing) and verify_signature(signer.public_key, existing, payload)

    return append_layer(client, host, repo, cosign.signature_tag(subject_digest), mt.COSIGN_SIMPLESIGNING,
                        payload, ann, is_duplicate=duplicate)


# ---- signing images ----------------------------------------------------------------------------------

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


@dataclass
class SignSummary:
    reference: str
    digest: str
    format: str
    signed: list[SignedDigest] = field(default_factory=list)
    seconds: float = 0.0

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


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (like cosign's 0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def output_names(digest: str) -> tuple[str, str, str]:
    """File names for ``--output-signature DIR``: cosign's recursive ``--output-signature``/
    ``--output-payload`` naming (``<name>-sha256-<hex>``), one pair per digest, plus the bundle."""
    suffix = digest.replace(":", "-", 1)
    return f"signature-{suffix}", f"payload-{suffix}", f"bundle-{suffix}.json"


def sign_image(
    ref: str, signer: Signer, *, client: RegistryClient, recursive: bool = False,
    annotations: dict[str, str] | None = None, signature_repo: str | None = None, upload: bool = True,
    output_dir: Path | None = None, fmt: Format = "legacy",
    progress: Callable[[SignedDigest], None] | None = None,
) -> SignSummary:
    """Sign the image ``ref`` (and with ``recursive`` each child of an index) with ``signer``.

    ``fmt="legacy"`` appends a simple-signing layer to ``sha256-<hex>.sig``; ``fmt="bundle"`` pushes a
    sigstore bundle v0.3 referrer (the Referrers API or its fallback tag). Nothing is uploaded to a
    transparency log: this is offline signing. ``upload=False`` only writes files to ``output_dir``.
    """
    if fmt not in ("legacy", "bundle"):
        raise ConfigError(f"unknown signature format {fmt!r} (legacy or bundle)")
    if not upload and output_dir is None:
        raise ConfigError("--upload=false without --output-signature would discard the signatures")
    one = _sign_legacy if fmt == "legacy" else _sign_bundle

    def sign_one(target: Target, manifest: Manifest) -> SignedDigest:
        return one(client, target, manifest, signer, annotations or {}, upload, output_dir)

    return for_each_digest(client, ref, signature_repo, recursive, output_dir, fmt, sign_one, progress)


def for_each_digest(
    client: RegistryClient, ref: str, signature_repo: str | None, recursive: bool, output_dir: Path | None,
    kind: str, one: Callable[[Target, Manifest], SignedDigest],
    progress: Callable[[SignedDigest], None] | None,
) -> SignSummary:
    """Resolve ``ref`` (and with ``recursive`` the children of an index), then run ``one`` on each digest,
    root first, timing each and reporting it to ``progress``: the loop ``sign`` and ``attest`` share."""
    started = time.monotonic()
    target = resolve_target(ref, signature_repo)
    root, children = resolve_digests(client, target, recursive)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
    summary = SignSummary(str(target.ref), root.digest, kind)
    for manifest in [root, *children]:
        t0 = time.monotonic()
        entry = one(target, manifest)
        entry.seconds = round(time.monotonic() - t0, 3)
        summary.signed.append(entry)
        if progress is not None:
            progress(entry)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _sign_legacy(client: RegistryClient, target: Target, manifest: Manifest, signer: Signer,
                 annotations: dict[str, str], upload: bool, output_dir: Path | None) -> SignedDigest:
    payload = payload_for(docker_reference(target.ref), manifest.digest, annotations)
    signature = signer.sign(payload)
    entry = SignedDigest(manifest.digest, f"{target.ref.name}@{manifest.digest}", "signature")
    if output_dir is not None:
        sig_name, payload_name, _ = output_names(manifest.digest)
        write_private(output_dir / sig_name, base64.b64encode(signature))
        write_private(output_dir / payload_name, payload)
        entry.files = [str(output_dir / sig_name), str(output_dir / payload_name)]
    if upload:
        tag = cosign.signature_tag(manifest.digest)
        entry.manifest, entry.duplicate = _attach_keyed(
            client, target.sig_host, target.sig_repo, manifest.digest, payload, signature, signer, {})
        entry.written = f"{target.sig_registry}/{target.sig_repo}:{tag}"
    return entry


def _sign_bundle(client: RegistryClient, target: Target, manifest: Manifest, signer: Signer,
                 annotations: dict[str, str], upload: bool, output_dir: Path | None) -> SignedDigest:
    from airgap.attest import build_bundle, push_bundle

    bundle = build_bundle(signer, docker_reference(target.ref), manifest.digest, annotations)
    entry = SignedDigest(manifest.digest, f"{target.ref.name}@{manifest.digest}", "bundle")
    if output_dir is not None:
        _, _, bundle_name = output_names(manifest.digest)
        write_private(output_dir / bundle_name, bundle)
        entry.files = [str(output_dir / bundle_name)]
    if upload:
        entry.manifest = push_bundle(client, target.sig_host, target.sig_repo, manifest.descriptor, bundle)
        entry.written = f"{target.sig_registry}/{target.sig_repo}@{entry.manifest}"
    return entry
