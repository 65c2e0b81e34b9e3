"""cosign attestations: a predicate in an in-toto statement about the image, signed as DSSE, on ``.att``.

What cosign v2 ``attest --tlog-upload=false`` writes (matched against real cosign in the interop tests): the
predicate wrapped in an in-toto v0.1 statement about the image digest, in a DSSE envelope (signature over the
PAE, empty ``keyid``), appended as a layer of media type ``application/vnd.dsse.envelope.v1+json`` to
``sha256-<hex>.att`` with the annotations ``predicateType`` and an empty ``dev.cosignproject.cosign/signature``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap import digest as digests
from airgap.checks import cosign
from airgap.errors import ConfigError
from airgap.fileio import write_atomic
from airgap.jsondoc import json_object
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Manifest
from airgap.signing.attach import append_layer, go_json
from airgap.signing.bundles import rfc3339, sign_dsse
from airgap.signing.targets import SignedDigest, SignSummary, Target, docker_reference, for_each_digest

if TYPE_CHECKING:
    from airgap.keys.private import Signer
    from airgap.oci.registry import RegistryClient


def predicate_type_uri(kind: str) -> str:
    """``--type``: one of cosign's shorthands (:data:`airgap.checks.cosign.PREDICATE_TYPES`) or a URI."""
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
        body = {"Data": text, "Timestamp": rfc3339(now)}
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
            write_atomic(path, envelope, mode=0o600)
            entry.files = [str(path)]
        if upload:
            entry.manifest = attach_attestation(client, target.sig_host, target.sig_repo, manifest.digest,
                                                envelope, uri, replace=replace)
            entry.written = f"{target.sig_registry}/{target.sig_repo}:{cosign.attestation_tag(manifest.digest)}"
        return entry

    return for_each_digest(client, ref, signature_repo, recursive, output_dir, "attestation", attest_one, progress)
