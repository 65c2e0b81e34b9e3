"""Images and signatures on disk: an image in an OCI image layout (``verify --local-image``) and signatures kept
in a directory (``verify --signature-dir``), as :class:`~airgap.verification.discover.AttachedLookup` s, so
:func:`~airgap.verification.evaluate.evaluate` judges them exactly as it judges a registry's. No network.

Where signatures are found in a layout (every byte hashed against its digest on the way in: a layout on removable
media is untrusted):

- ``sha256-<hex>.sig`` / ``.att`` entries of ``index.json`` (``org.opencontainers.image.ref.name``), what
  ``airgap copy IMAGE oci:DIR`` writes for the image and each platform;
- the ``kind: dev.cosignproject.cosign/sigs`` / ``atts`` entries ``cosign save`` writes (signatures of the saved
  image itself, the one tagged ``kind: dev.cosignproject.cosign/image`` or ``imageIndex``);
- sigstore bundle referrers: untagged ``index.json`` entries whose manifest has the image as ``subject``
  (image-layout 1.1), and, in a layout ``cosign save`` wrote, any manifest blob naming the image as its subject
  (cosign v3 rewrites ``index.json`` for each artifact it saves, so its bundle referrers are only blobs; cosign
  v3 ``verify --local-image`` finds them the same way).

A signature directory holds what ``airgap sign --output-dir DIR`` (and ``attest --output-dir``) write, per digest
``sha256-<hex>``: ``signature-<d>`` (base64) + ``payload-<d>`` (the simple-signing payload), with, for a keyless
signature, ``certificate-<d>.pem`` (leaf first, then its chain) and ``rekor-bundle-<d>.json`` (the Rekor SET, the
``dev.sigstore.cosign/bundle`` annotation); ``bundle-<d>.json`` (a sigstore bundle); ``attestation-<d>.json`` (a
DSSE envelope) and ``attestation-bundle-<d>.json``. cosign's ``sign --recursive --output-signature DIR/signature
--output-payload DIR/payload`` writes the same first two names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from airgap import digest as digests
from airgap.checks import cosign
from airgap.config import Limits
from airgap.errors import ConfigError, IntegrityError, NotFoundError
from airgap.oci import mediatypes as mt
from airgap.oci.layout import REF_NAME, Layout
from airgap.oci.manifest import Descriptor, Manifest
from airgap.verification.discover import AttachedLookup, Candidate, Repo, signature_layers

# ``cosign save``'s index.json annotations (cosign pkg/oci/layout).
KIND = "kind"
KIND_IMAGE = "dev.cosignproject.cosign/image"
KIND_INDEX = "dev.cosignproject.cosign/imageIndex"
KIND_SIGS = "dev.cosignproject.cosign/sigs"
KIND_ATTS = "dev.cosignproject.cosign/atts"
_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
_LAYERS = {"signature": frozenset({mt.COSIGN_SIMPLESIGNING}), "attestation": frozenset({mt.DSSE_ENVELOPE})}


def split_layout_ref(text: str) -> tuple[str, str | None]:
    """``oci:PATH[:TAG|@DIGEST]`` or a plain ``PATH`` -> (directory, tag or digest or None)."""
    body = text.removeprefix("oci:")
    reference: str | None = None
    if "@" in body:
        body, reference = body.rsplit("@", 1)
        digests.validate(reference)
    elif not os.path.isdir(body):
        head, sep, tail = body.rpartition(":")
        if sep and head and "/" not in tail:
            body, reference = head, tail
    if not body or not os.path.isdir(body):
        raise ConfigError(f"--local-image {text!r}: {body or '(empty path)'} is not a directory")
    return body, reference


@dataclass
class LayoutArtifacts(AttachedLookup):
    """One image of an OCI image layout and what the layout holds for it (see the module docstring)."""

    layout: Layout
    manifest: Manifest
    limits: Limits = field(default_factory=Limits)
    saved_by_cosign: bool = False
    root: bool = False  # the image ``cosign save`` saved (its sigs/atts entries are about it)

    def _gather(self, kind: str, repos: tuple[Repo, ...] | None) -> list[Candidate]:
        if kind == "bundle":
            return self._bundles()
        tag = cosign.signature_tag(self.digest) if kind == "signature" else cosign.attestation_tag(self.digest)
        cosign_kind = KIND_SIGS if kind == "signature" else KIND_ATTS
        out: list[Candidate] = []
        for entry in index_entries(self.layout):
            if entry.annotations.get(REF_NAME) == tag:
                where = f"oci:{self.layout.path}:{tag}"
            elif self.root and entry.annotations.get(KIND) == cosign_kind:
                where = f"oci:{self.layout.path}@{entry.digest} ({cosign_kind})"
            else:
                continue
            manifest = self.layout.get_manifest(entry.digest, entry.media_type)
            if not manifest.is_index:
                out += self._layers(manifest, where, kind, _LAYERS[kind])
        return out

    def _bundles(self) -> list[Candidate]:
        seen: set[str] = set()
        out: list[Candidate] = []
        referrers = list(self.layout.referrers(self.digest))
        if self.saved_by_cosign:
            referrers += self._unlisted_referrers()
        if len(referrers) > self.limits.max_referrers:
            raise IntegrityError(f"oci:{self.layout.path}: more than {self.limits.max_referrers} referrers of "
                                 f"{self.digest} (limit max_referrers): refused")
        for desc in referrers:
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            manifest = self.layout.get_manifest(desc.digest, desc.media_type)
            if manifest.subject is None or manifest.subject.digest != self.digest:
                continue
            if not (manifest.artifact_type or "").startswith(_BUNDLE_PREFIX):
                continue
            wanted = frozenset(b.media_type for b in manifest.blobs[1:] if b.media_type.startswith(_BUNDLE_PREFIX))
            out += self._layers(manifest, f"oci:{self.layout.path}@{desc.digest}", "bundle", wanted)
        return out

    def _unlisted_referrers(self) -> list[Descriptor]:
        """Manifest blobs of the layout whose subject is this image (see the module docstring), each hashed
        against its file name; blobs over the manifest size limit are not manifests and are skipped unread."""
        found = []
        blobs = self.layout.path / "blobs" / "sha256"
        for path in sorted(blobs.iterdir()) if blobs.is_dir() else []:
            if not path.is_file() or path.stat().st_size > self.limits.max_manifest_bytes:
                continue
            data = path.read_bytes()
            if b'"subject"' not in data:
                continue
            try:
                manifest = Manifest.from_bytes(data, None, f"sha256:{path.name}", f"oci:{self.layout.path} blob")
            except IntegrityError:
                continue  # not a manifest (or not this file's content): never trusted
            if manifest.subject is not None and manifest.subject.digest == self.digest:
                found.append(Descriptor(manifest.media_type, manifest.digest, len(data),
                                        artifact_type=manifest.artifact_type))
        return found

    def _layers(self, manifest: Manifest, where: str, kind: str, wanted: frozenset[str]) -> list[Candidate]:
        layers = signature_layers(manifest, where, self.limits)
        out = []
        for layer in layers:
            if layer.media_type not in wanted:
                continue
            refused, data = "", b""
            if layer.size > self.limits.max_signature_layer_bytes:
                refused = (f"layer of {layer.size} bytes is over the {self.limits.max_signature_layer_bytes}-byte "
                           "limit for a signature (max_signature_layer_bytes): not read")
            else:
                data = b"".join(self.layout.open_blob(layer))
            out.append(Candidate(kind, data, dict(layer.annotations), where, layer.digest, layer.media_type, refused))
        return out


def open_layout_image(text: str, limits: Limits | None = None) -> LayoutArtifacts:
    """The image ``--local-image`` names: ``oci:PATH[:TAG|@DIGEST]`` or a directory. Without a tag or digest,
    the image ``cosign save`` saved, else the layout's only image (signature, attestation and referrer entries
    aside); anything else must be named."""
    limits = limits or Limits()
    path, reference = split_layout_ref(text)
    layout = Layout(path, max_manifest_bytes=limits.max_manifest_bytes)
    entries = index_entries(layout)
    by_cosign = any(e.annotations.get(KIND, "").startswith("dev.cosignproject.cosign/") for e in entries)
    saved = next((e for e in entries if e.annotations.get(KIND) in (KIND_IMAGE, KIND_INDEX)), None)
    try:
        if reference is not None:
            manifest = layout.resolve(reference)
        elif saved is not None:
            manifest = layout.get_manifest(saved.digest, saved.media_type)
        else:
            images = [e for e in entries if e.media_type in mt.MANIFESTS and not _attached(e)
                      and _subject(layout, e) is None]
            if len(images) != 1:
                raise ConfigError(f"--local-image {text!r}: the layout holds {len(images)} images; name one as "
                                  f"oci:{path}:TAG or oci:{path}@DIGEST")
            manifest = layout.get_manifest(images[0].digest, images[0].media_type)
    except NotFoundError as exc:
        raise ConfigError(f"--local-image {text!r}: {exc}") from None
    return LayoutArtifacts(layout, manifest, limits, saved_by_cosign=by_cosign,
                           root=saved is not None and saved.digest == manifest.digest)


def index_entries(layout: Layout) -> list[Descriptor]:
    """The layout's ``index.json`` entries, read now (the layout may have changed since it was opened)."""
    path = layout.path / "index.json"
    return list(Manifest.from_bytes(path.read_bytes(), mt.OCI_INDEX, what=str(path)).manifests)


def _attached(entry: Descriptor) -> bool:
    tag = entry.annotations.get(REF_NAME, "")
    return tag.startswith(("sha256-", "sha512-")) or entry.annotations.get(KIND) in (KIND_SIGS, KIND_ATTS)


def _subject(layout: Layout, entry: Descriptor) -> str | None:
    try:
        manifest = layout.get_manifest(entry.digest, entry.media_type)
    except (NotFoundError, IntegrityError):
        return None
    return manifest.subject.digest if manifest.subject else None


@dataclass
class SignatureDir(AttachedLookup):
    """The signatures, attestations and bundles a directory holds for the image ``manifest`` (see the module
    docstring); they replace the registry's (or the layout's), as cosign's ``--signature`` replaces them."""

    directory: Path
    manifest: Manifest
    limits: Limits = field(default_factory=Limits)

    def _read(self, name: str) -> tuple[bytes | None, str]:
        path = self.directory / name
        if not path.is_file():
            return None, ""
        size = path.stat().st_size
        if size > self.limits.max_signature_layer_bytes:
            return b"", (f"{path} is {size} bytes, over the {self.limits.max_signature_layer_bytes}-byte limit for "
                         "a signature (max_signature_layer_bytes): not read")
        return path.read_bytes(), ""

    def _gather(self, kind: str, repos: tuple[Repo, ...] | None) -> list[Candidate]:
        suffix = self.digest.replace(":", "-", 1)
        if kind == "signature":
            return self._signature(suffix)
        names = {"attestation": [(f"attestation-{suffix}.json", mt.DSSE_ENVELOPE)],
                 "bundle": [(f"bundle-{suffix}.json", mt.SIGSTORE_BUNDLE_V03),
                            (f"attestation-bundle-{suffix}.json", mt.SIGSTORE_BUNDLE_V03)]}[kind]
        out = []
        for name, media_type in names:
            data, refused = self._read(name)
            if data is not None:
                out.append(Candidate(kind, data, {}, str(self.directory / name), digests.of_bytes(data), media_type,
                                     refused))
        return out

    def _signature(self, suffix: str) -> list[Candidate]:
        payload, refused = self._read(f"payload-{suffix}")
        signature, refused_sig = self._read(f"signature-{suffix}")
        if payload is None and signature is None:
            return []
        where = str(self.directory / f"signature-{suffix}")
        if payload is None or signature is None:
            missing = f"payload-{suffix}" if payload is None else f"signature-{suffix}"
            return [Candidate("signature", b"", {}, where, "", mt.COSIGN_SIMPLESIGNING,
                              f"{self.directory / missing} is missing")]
        annotations = {cosign.ANN_SIGNATURE: signature.decode("ascii", "replace").strip()}
        certificate, refused_cert = self._read(f"certificate-{suffix}.pem")
        if certificate:
            leaf, chain = _split_pem(certificate)
            annotations[cosign.ANN_CERTIFICATE] = leaf
            if chain:
                annotations[cosign.ANN_CHAIN] = chain
        rekor, refused_rekor = self._read(f"rekor-bundle-{suffix}.json")
        if rekor:
            annotations[cosign.ANN_BUNDLE] = rekor.decode("utf-8", "replace")
        return [Candidate("signature", payload, annotations, where, digests.of_bytes(payload),
                          mt.COSIGN_SIMPLESIGNING, refused or refused_sig or refused_cert or refused_rekor)]


def _split_pem(data: bytes) -> tuple[str, str]:
    """(the first PEM certificate, the rest): a leaf and its chain, as cosign's layer annotations keep them."""
    text = data.decode("ascii", "replace")
    end = "-----END CERTIFICATE-----"
    cut = text.find(end)
    if cut < 0:
        return text, ""
    cut += len(end)
    return text[:cut] + "\n", text[cut:].lstrip()

