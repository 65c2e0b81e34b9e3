"""DSSE-signed in-toto statements: cosign ``.att`` attestations and sigstore bundle signatures.

Two shapes, each matched against what real cosign writes (see the interop tests):

- **Attestations** (cosign v2 ``attest --tlog-upload=false``): the predicate wrapped in an in-toto v0.1
  statement about the image digest, in a DSSE envelope (signature over the PAE, empty ``keyid``), appended
  as a layer of media type ``application/vnd.dsse.envelope.v1+json`` to ``sha256-<hex>.att`` with the
  annotations ``predicateType`` and an empty ``dev.cosignproject.cosign/signature``.
- **Bundle signatures** (cosign v3 ``sign --key K --use-signing-config=false --tlog-upload=false``): an in-toto
  v1 statement with predicate type ``https://sigstore.dev/cosign/sign/v1`` and an empty predicate (``-a``
  annotations go on the subject), in a DSSE envelope inside a sigstore bundle v0.3 whose verification
  material is only a public-key hint (base64 SHA-256 of the SPKI DER): no transparency log entry, no
  timestamp. The bundle is one layer of an OCI 1.1 artifact (empty config, ``subject`` = the image) pushed
  through the Referrers API or its ``sha256-<hex>`` fallback tag.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap import cosign
from airgap.errors import ConfigError
from airgap.jsondoc import json_object
from airgap.oci import digest as digests
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest
from airgap.sign import (
    SignedDigest,
    SignSummary,
    Target,
    append_layer,
    docker_reference,
    for_each_digest,
    go_json,
    push_bytes,
    write_private,
)

if TYPE_CHECKING:
    from airgap.keys import Signer
    from airgap.oci.registry import RegistryClient

COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
ANN_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANN_BUNDLE_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"
ANN_CREATED = "org.opencontainers.image.created"
EMPTY_CONFIG = b"{}"


def _rfc3339(now: datetime.datetime | None) -> str:
    moment = now or datetime.datetime.now(datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _proto_json(obj: Any) -> bytes:
    """JSON shaped like Go's protojson as cosign v3 emits it (``", "`` between members, no space
    after ``:``), so our bundles look like cosign's. Verifiers parse JSON; nothing depends on spacing."""
    return json.dumps(obj, separators=(", ", ":"), ensure_ascii=False).encode()


def sign_dsse(signer: Signer, payload_type: str, payload: bytes, *, keyid: str | None = "") -> dict[str, Any]:
    """A DSSE envelope (as a JSON object) with one signature over the PAE. ``keyid=None`` omits the
    field (cosign v3 bundles); cosign v2 attestations carry ``"keyid": ""``."""
    sig = base64.b64encode(signer.sign(cosign.pae(payload_type, payload))).decode()
    entry: dict[str, str] = {"sig": sig} if keyid is None else {"keyid": keyid, "sig": sig}
    return {"payloadType": payload_type, "payload": base64.b64encode(payload).decode(), "signatures": [entry]}


# ---- sigstore bundle signatures (cosign v3) ---------------------------------------------------------

def public_key_hint(signer: Signer) -> str:
    """cosign v3's ``publicKey.hint``: base64 of the SHA-256 of the key's SubjectPublicKeyInfo DER."""
    from airgap.keys import spki_der

    return base64.b64encode(hashlib.sha256(spki_der(signer.public_key)).digest()).decode()


def sign_statement(digest: str, annotations: dict[str, str] | None = None) -> bytes:
    """The in-toto v1 statement cosign v3 signs for an image: no subject name, the digest, ``-a``
    annotations on the subject, an empty ``cosign/sign/v1`` predicate."""
    alg, hexpart = digests.validate(digest).split(":", 1)
    subject: dict[str, Any] = {"digest": {alg: hexpart}}
    if annotations:
        subject["annotations"] = dict(sorted(annotations.items()))
    return _proto_json({"_type": cosign.INTOTO_STATEMENT_V1, "subject": [subject],
                        "predicateType": COSIGN_SIGN_PREDICATE, "predicate": {}})


def build_bundle(signer: Signer, subject_name: str, digest: str,
                 annotations: dict[str, str] | None = None) -> bytes:
    """A sigstore bundle v0.3 (key-based, no tlog) holding a DSSE signature over the cosign v3 sign
    statement for ``digest``. ``subject_name`` is accepted for symmetry with attestations; cosign v3
    leaves the subject unnamed, and so do we."""
    del subject_name
    envelope = sign_dsse(signer, cosign.DSSE_PAYLOAD_TYPE_INTOTO, sign_statement(digest, annotations), keyid=None)
    return _proto_json({
        "mediaType": mt.SIGSTORE_BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": public_key_hint(signer)}},
        "dsseEnvelope": {"payload": envelope["payload"], "payloadType": envelope["payloadType"],
                         "signatures": envelope["signatures"]},
    })


def bundle_manifest(bundle: bytes, subject: Descriptor, *, predicate_type: str = COSIGN_SIGN_PREDICATE,
                    created: datetime.datetime | None = None) -> Manifest:
    """The OCI 1.1 artifact manifest cosign v3 pushes for a bundle: empty config (carrying the
    artifactType), the bundle as the only layer, ``subject`` = the signed image."""
    manifest = go_json({
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_EMPTY, "size": len(EMPTY_CONFIG),
                   "digest": digests.of_bytes(EMPTY_CONFIG), "artifactType": mt.SIGSTORE_BUNDLE_V03},
        "layers": [{"mediaType": mt.SIGSTORE_BUNDLE_V03, "size": len(bundle), "digest": digests.of_bytes(bundle)}],
        "annotations": {ANN_BUNDLE_CONTENT: "dsse-envelope", ANN_BUNDLE_PREDICATE_TYPE: predicate_type,
                        ANN_CREATED: _rfc3339(created)},
        "subject": {"mediaType": subject.media_type, "size": subject.size, "digest": subject.digest},
        "artifactType": mt.SIGSTORE_BUNDLE_V03,
    })
    return Manifest.from_bytes(manifest, mt.OCI_MANIFEST)


def push_bundle(client: RegistryClient, host: str, repo: str, subject: Descriptor, bundle: bytes, *,
                created: datetime.datetime | None = None) -> str:
    """Push a bundle as a referrer of ``subject`` (blobs first, then the manifest, then the fallback
    index when the registry has no Referrers API); return the referrer manifest's digest."""
    manifest = bundle_manifest(bundle, subject, created=created)
    push_bytes(client, host, repo, mt.SIGSTORE_BUNDLE_V03, bundle)
    push_bytes(client, host, repo, mt.OCI_EMPTY, EMPTY_CONFIG)
    client.add_referrer(host, repo, manifest)
    return manifest.digest


# ---- attestations (cosign v2 .att) -----------------------------------------------------------------

def predicate_type_uri(kind: str) -> str:
    """``--type``: one of cosign's shorthands (:data:`airgap.cosign.PREDICATE_TYPES`) or a URI."""
    if kind in cosign.PREDICATE_TYPES:
        return cosign.PREDICATE_TYPES[kind]
    if "://" in kind:
        return kind
    raise ConfigError(f"unknown predicate type {kind!r}: use one of {', '.join(sorted(cosign.PREDICATE_TYPES))} "
                      "or a URI")


def _sorted_json(value: Any) -> Any:
    """Maps with sorted keys, as Go re-marshals a parsed JSON object."""
    if isinstance(value, dict):
        return {k: _sorted_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_json(v) for v in value]
    return value


def attestation_statement(kind: str, predicate: bytes, subject_name: str, digest: str, *,
                          now: datetime.datetime | None = None) -> tuple[str, bytes]:
    """``(predicate type URI, statement bytes)`` as cosign v2 ``attest --type kind`` builds them:
    ``custom`` wraps the file as ``{"Data": text, "Timestamp": now}``, ``spdx`` embeds it as a string,
    every other type requires a JSON object."""
    uri = predicate_type_uri(kind)
    body: Any
    if kind == "custom":
        try:
            text = predicate.decode()
        except UnicodeDecodeError:
            raise ConfigError("predicate: not UTF-8 text") from None
        body = {"Data": text, "Timestamp": _rfc3339(now)}
    elif kind == "spdx":
        try:
            body = predicate.decode()
        except UnicodeDecodeError:
            raise ConfigError("predicate: not UTF-8 text") from None
    else:
        body = _sorted_json(json_object(predicate, f"predicate for type {kind}", ConfigError))
    alg, hexpart = digests.validate(digest).split(":", 1)
    statement = go_json({
        "_type": cosign.INTOTO_STATEMENT_V01,
        "predicateType": uri,
        "subject": [{"name": subject_name, "digest": {alg: hexpart}}],
        "predicate": body,
    })
    return uri, statement


def attach_attestation(client: RegistryClient, host: str, repo: str, subject_digest: str, envelope: bytes,
                       predicate_type: str, *, replace: bool = False,
                       annotations: dict[str, str] | None = None) -> str:
    """Append a DSSE envelope layer to ``sha256-<hex>.att``; return the ``.att`` manifest's digest.

    Like cosign, attestations are never deduplicated (each carries its own statement). ``replace``
    drops earlier layers of the same predicate type (cosign ``attest --replace``).
    """
    ann = {**(annotations or {}), cosign.ANN_SIGNATURE: "", cosign.ANN_PREDICATE_TYPE: predicate_type}
    digest, _ = append_layer(
        client, host, repo, cosign.attestation_tag(subject_digest), mt.DSSE_ENVELOPE, envelope, ann,
        replace=(lambda d: d.annotations.get(cosign.ANN_PREDICATE_TYPE) == predicate_type) if replace else None,
    )
    return digest


def attest_image(
    ref: str, signer: Signer, *, client: RegistryClient, predicate: bytes, predicate_type: str = "custom",
    signature_repo: str | None = None, recursive: bool = False, replace: bool = False, upload: bool = True,
    output_dir: Path | None = None, now: datetime.datetime | None = None,
    progress: Callable[[SignedDigest], None] | None = None,
) -> SignSummary:
    """Attest ``predicate`` (of ``predicate_type``: a cosign shorthand or a URI) about the image ``ref``
    (and with ``recursive`` each child of an index). Offline: no transparency log."""
    if not upload and output_dir is None:
        raise ConfigError("--upload=false without --output-attestation would discard the attestations")
    predicate_type_uri(predicate_type)

    def attest_one(target: Target, manifest: Manifest) -> SignedDigest:
        uri, statement = attestation_statement(predicate_type, predicate, docker_reference(target.ref),
                                               manifest.digest, now=now)
        envelope = go_json(sign_dsse(signer, cosign.DSSE_PAYLOAD_TYPE_INTOTO, statement))
        entry = SignedDigest(manifest.digest, f"{target.ref.name}@{manifest.digest}", "attestation")
        if output_dir is not None:
            path = output_dir / f"attestation-{manifest.digest.replace(':', '-', 1)}.json"
            write_private(path, envelope)
            entry.files = [str(path)]
        if upload:
            entry.manifest = attach_attestation(client, target.sig_host, target.sig_repo, manifest.digest,
                                                envelope, uri, replace=replace)
            entry.written = f"{target.sig_registry}/{target.sig_repo}:{cosign.attestation_tag(manifest.digest)}"
        return entry

    return for_each_digest(client, ref, signature_repo, recursive, output_dir, "attestation", attest_one, progress)
