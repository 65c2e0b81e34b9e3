"""cosign-compatible image signing: legacy ``.sig`` manifests and sigstore bundles as referrers.

What is written, byte for byte as cosign v2.4.1 writes it (checked against real cosign in the interop
tests): a ``sha256-<hex>.sig`` OCI manifest whose config is go-containerregistry's empty image config
(one ``history`` entry and one ``diff_id`` per layer) and whose layers are simple-signing payloads with the
base64 signature in ``dev.cosignproject.cosign/signature``. Signatures accumulate: a new one is appended to
the existing manifest, and one that is already there (same payload and annotations, a signature that
verifies with the same key) is not added again. ``--format bundle`` writes what cosign v3 writes instead
(see :mod:`airgap.signing.bundles`).

Order, so a failed push never leaves a tag pointing at missing blobs: every blob first, the manifest last.
The image is always resolved to a digest first and the digest is what gets signed; a tag is never trusted
to still name the same image after we looked.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from airgap import digest as digests
from airgap.checks import cosign
from airgap.errors import ConfigError, IntegrityError
from airgap.fileio import write_atomic
from airgap.keys.public import verify_signature
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest
from airgap.signing.attach import append_layer, go_json, same_layer
from airgap.signing.bundles import build_bundle, keyless_bundle, push_bundle, sign_statement
from airgap.signing.keyless import KeylessSigner, check_before_push
from airgap.signing.targets import (
    Format,
    OutputFiles,
    Prepared,
    SignedDigest,
    SignSummary,
    Target,
    docker_reference,
    for_each_digest,
    output_names,
)

if TYPE_CHECKING:
    from airgap.keys.private import Signer
    from airgap.oci.registry import RegistryClient


def payload_for(docker_reference: str, digest: str, annotations: dict[str, str] | None) -> bytes:
    """The simple-signing payload cosign v2 signs for ``digest`` (annotations sorted, as Go's map
    marshalling sorts them, and HTML characters escaped as Go escapes them)."""
    raw = cosign.simple_signing_payload(
        docker_reference, digest, dict(sorted(annotations.items())) if annotations else None)
    return go_json(json.loads(raw))


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
        return (same_layer(new_digest, mt.COSIGN_SIMPLESIGNING, ann, layer)
                and layer.annotations.get(cosign.ANN_SIGNATURE) == ann[cosign.ANN_SIGNATURE])

    digest, _ = append_layer(client, host, repo, cosign.signature_tag(subject_digest), mt.COSIGN_SIMPLESIGNING,
                             payload, ann, is_duplicate=duplicate)
    return digest


def _attach_keyed(client: RegistryClient, host: str, repo: str, subject_digest: str, payload: bytes,
                  signature: bytes, signer: Signer, annotations: dict[str, str]) -> tuple[str, bool]:
    """Like :func:`attach_signature`, with cosign's dupe rule: an existing layer is the same signature
    when content and annotations match and its signature verifies with this signer's key."""
    ann = {**annotations, cosign.ANN_SIGNATURE: base64.b64encode(signature).decode()}
    new_digest = digests.of_bytes(payload)

    def duplicate(layer: Descriptor) -> bool:
        if not same_layer(new_digest, mt.COSIGN_SIMPLESIGNING, ann, layer):
            return False
        try:
            existing = cosign.b64decode(layer.annotations.get(cosign.ANN_SIGNATURE, ""), "signature")
        except IntegrityError:
            return False
        return bool(existing) and verify_signature(signer.public_key, existing, payload)

    return append_layer(client, host, repo, cosign.signature_tag(subject_digest), mt.COSIGN_SIMPLESIGNING,
                        payload, ann, is_duplicate=duplicate)


def sign_image(
    ref: str, signer: Signer | KeylessSigner, *, client: RegistryClient, recursive: bool = False,
    annotations: dict[str, str] | None = None, signature_repo: str | None = None, upload: bool = True,
    output_dir: Path | None = None, fmt: Format = "legacy",
    progress: Callable[[SignedDigest], None] | None = None, output_files: OutputFiles | None = None,
) -> SignSummary:
    """Sign the image ``ref`` (and with ``recursive`` each child of an index) with ``signer``.

    ``fmt="legacy"`` appends a simple-signing layer to ``sha256-<hex>.sig``; ``fmt="bundle"`` pushes a
    sigstore bundle v0.3 referrer (the Referrers API or its fallback tag). With a key nothing is uploaded to
    a transparency log (offline signing). With a :class:`~airgap.signing.keyless.KeylessSigner` each
    signature carries the Fulcio certificate and is logged in Rekor, and is verified against the trusted
    root before anything is pushed. ``upload=False`` only writes files: to ``output_dir`` (per digest) and/or
    ``output_files`` (cosign's single files, for an image signed without ``recursive``; the signature and payload
    files for ``fmt="legacy"`` only).
    """
    if fmt not in ("legacy", "bundle"):
        raise ConfigError(f"unknown signature format {fmt!r} (legacy or bundle)")
    files = output_files or OutputFiles()
    if files and recursive:
        raise ConfigError("--output-signature/--output-payload/--output-certificate write the files of one digest "
                          "(as cosign without --recursive): with --recursive use --output-dir DIR")
    if fmt == "bundle" and (files.signature or files.payload):
        raise ConfigError("--output-signature/--output-payload are for --format legacy: a bundle goes to "
                          "--output-dir DIR (bundle-<digest>.json)")
    if not upload and output_dir is None and not (fmt == "legacy" and files.signature):
        raise ConfigError("--upload=false without --output-dir (or --output-signature) would discard the signatures")
    one = _sign_legacy if fmt == "legacy" else _sign_bundle

    def sign_one(target: Target, manifest: Manifest) -> Prepared:
        entry, push = one(client, target, manifest, signer, annotations or {}, upload, output_dir, files)
        _write_certificate(files.certificate, signer, entry)
        return entry, push

    summary = for_each_digest(client, ref, signature_repo, recursive, output_dir, fmt, sign_one, progress)
    if isinstance(signer, KeylessSigner):
        summary.identity, summary.issuer = signer.identity, signer.issuer
    return summary


def _write_certificate(path: Path | None, signer: Signer | KeylessSigner, entry: SignedDigest) -> None:
    """cosign's ``--output-certificate FILE``: the signing certificate (keyless: the leaf PEM) or, with a key,
    its public key PEM."""
    if path is None:
        return
    from airgap.keys.public import public_pem

    pem = signer.certificate_pem.encode() if isinstance(signer, KeylessSigner) else public_pem(signer.public_key)
    write_atomic(path, pem, mode=0o600)
    entry.files.append(str(path))


def _keyless_legacy(signer: KeylessSigner, payload: bytes, digest: str) -> tuple[bytes, dict[str, str], int]:
    """Sign and log ``payload`` (hashedrekord); the layer annotations cosign v2 writes for a keyless
    signature (certificate, chain, Rekor SET), checked like any signature before they may be pushed."""
    from airgap.checks.legacy import check_simple_signing

    signature, logged = signer.sign_artifact(payload)
    annotations = {cosign.ANN_CERTIFICATE: signer.certificate_pem, cosign.ANN_CHAIN: signer.chain_pem,
                   cosign.ANN_BUNDLE: logged.cosign_annotation()}
    outcome = check_simple_signing(payload, base64.b64encode(signature).decode(), annotations,
                                   expected_digest=digest, authority=signer.authority, require_tlog=True)
    check_before_push(outcome, signer.services)
    return signature, annotations, logged.log_index


def _sign_legacy(client: RegistryClient, target: Target, manifest: Manifest, signer: Signer | KeylessSigner,
                 annotations: dict[str, str], upload: bool, output_dir: Path | None, files: OutputFiles) -> Prepared:
    payload = payload_for(docker_reference(target.ref), manifest.digest, annotations)
    entry = SignedDigest(manifest.digest, f"{target.ref.name}@{manifest.digest}", "signature")
    layer_annotations: dict[str, str] = {}
    if isinstance(signer, KeylessSigner):
        signature, layer_annotations, entry.log_index = _keyless_legacy(signer, payload, manifest.digest)
    else:
        signature = signer.sign(payload)
    b64 = base64.b64encode(signature)
    outputs: list[tuple[Path, bytes]] = []
    if output_dir is not None:
        sig_name, payload_name, _ = output_names(manifest.digest)
        outputs += [(output_dir / sig_name, b64), (output_dir / payload_name, payload)]
        if isinstance(signer, KeylessSigner):  # what a verifier needs besides: certificate, chain, Rekor SET
            suffix = manifest.digest.replace(":", "-", 1)
            chain = (signer.certificate_pem + signer.chain_pem).encode()
            outputs += [(output_dir / f"certificate-{suffix}.pem", chain),
                        (output_dir / f"rekor-bundle-{suffix}.json", layer_annotations[cosign.ANN_BUNDLE].encode())]
    outputs += [(path, data) for path, data in ((files.signature, b64), (files.payload, payload)) if path is not None]
    for path, data in outputs:
        write_atomic(path, data, mode=0o600)
        entry.files.append(str(path))
    if not upload:
        return entry, None

    def push() -> None:
        if isinstance(signer, KeylessSigner):
            entry.manifest = attach_signature(client, target.sig_host, target.sig_repo, manifest.digest, payload,
                                              signature, layer_annotations)
        else:
            entry.manifest, entry.duplicate = _attach_keyed(
                client, target.sig_host, target.sig_repo, manifest.digest, payload, signature, signer, {})
        entry.written = f"{target.sig_registry}/{target.sig_repo}:{cosign.signature_tag(manifest.digest)}"

    return entry, push


def _sign_bundle(client: RegistryClient, target: Target, manifest: Manifest, signer: Signer | KeylessSigner,
                 annotations: dict[str, str], upload: bool, output_dir: Path | None, files: OutputFiles) -> Prepared:
    entry = SignedDigest(manifest.digest, f"{target.ref.name}@{manifest.digest}", "bundle")
    statement = sign_statement(manifest.digest, annotations)
    if isinstance(signer, KeylessSigner):
        bundle, entry.log_index = keyless_bundle(signer, statement, manifest.digest, cosign.COSIGN_SIGN_PREDICATE)
    else:
        bundle = build_bundle(signer, docker_reference(target.ref), manifest.digest, annotations)
    if output_dir is not None:
        _, _, bundle_name = output_names(manifest.digest)
        write_atomic(output_dir / bundle_name, bundle, mode=0o600)
        entry.files = [str(output_dir / bundle_name)]
    if not upload:
        return entry, None

    def push() -> None:
        entry.manifest = push_bundle(client, target.sig_host, target.sig_repo, manifest.descriptor, bundle)
        entry.written = f"{target.sig_registry}/{target.sig_repo}@{entry.manifest}"

    return entry, push
