"""cosign attestations: a predicate in an in-toto statement about the image, signed as DSSE, on ``.att``.

What cosign v2 ``attest --tlog-upload=false`` writes (matched against real cosign in the interop tests): the
predicate wrapped in an in-toto v0.1 statement about the image digest, in a DSSE envelope (signature over the
PAE, empty ``keyid``), appended as a layer of media type ``application/vnd.dsse.envelope.v1+json`` to
``sha256-<hex>.att`` with the annotations ``predicateType`` and an empty ``dev.cosignproject.cosign/signature``.
Keyless, the layer also carries the certificate, its chain and the Rekor SET, as cosign v2 ``attest`` writes them;
``--format bundle`` writes what cosign v3 ``attest`` writes (a bundle referrer with the predicate type).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap import digest as digests
from airgap.checks import cosign
from airgap.errors import ConfigError, Error, IntegrityError
from airgap.fileio import write_atomic
from airgap.jsondoc import json_object
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Manifest
from airgap.signing.attach import append_layer, go_json
from airgap.signing.bundles import build_bundle, keyless_bundle, push_bundle, rfc3339, sign_dsse
from airgap.signing.keyless import KeylessSigner
from airgap.signing.targets import (
    Format,
    Prepared,
    SignedDigest,
    SignSummary,
    Target,
    docker_reference,
    for_each_digest,
)

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
    ref: str, signer: Signer | KeylessSigner, *, client: RegistryClient, predicate: bytes,
    predicate_type: str = "custom", signature_repo: str | None = None, recursive: bool = False,
    replace: bool = False, upload: bool = True, output_dir: Path | None = None,
    now: datetime.datetime | None = None, progress: Callable[[SignedDigest], None] | None = None,
    fmt: Format = "legacy", rekor_entry_type: str = "dsse",
) -> SignSummary:
    """Attest ``predicate`` (of ``predicate_type``: a cosign shorthand or a URI) about the image ``ref``
    (and with ``recursive`` each child of an index).

    ``fmt="legacy"`` appends a DSSE envelope to ``sha256-<hex>.att`` (cosign v2); ``fmt="bundle"`` pushes a
    sigstore bundle referrer annotated with the predicate type (cosign v3). With a key: offline, no
    transparency log. With a :class:`~airgap.signing.keyless.KeylessSigner`: the Fulcio certificate goes
    along and the envelope is logged in Rekor (legacy: a ``dsse`` entry as cosign v2.4.1 by default, or
    ``rekor_entry_type="intoto"``; bundles: ``dsse``), and checked before anything is pushed."""
    if fmt not in ("legacy", "bundle"):
        raise ConfigError(f"unknown attestation format {fmt!r} (legacy or bundle)")
    if rekor_entry_type not in ("dsse", "intoto"):
        raise ConfigError(f"unknown Rekor entry type {rekor_entry_type!r} (dsse or intoto)")
    if not upload and output_dir is None:
        raise ConfigError("--upload=false without --output-dir would discard the attestations")
    predicate_type_uri(predicate_type)

    def attest_one(target: Target, manifest: Manifest) -> Prepared:
        uri, statement = attestation_statement(predicate_type, predicate, docker_reference(target.ref),
                                               manifest.digest, now=now)
        entry = SignedDigest(manifest.digest, f"{target.ref.name}@{manifest.digest}", "attestation")
        if fmt == "bundle":
            return _bundle_one(client, target, manifest, signer, uri, statement, entry, upload, output_dir)
        envelope = go_json(sign_dsse(signer, cosign.DSSE_PAYLOAD_TYPE_INTOTO, statement))
        annotations: dict[str, str] = {}
        if isinstance(signer, KeylessSigner):
            annotations, entry.log_index = _keyless_annotations(signer, envelope, manifest.digest, uri,
                                                                rekor_entry_type)
        if output_dir is not None:
            path = output_dir / f"attestation-{manifest.digest.replace(':', '-', 1)}.json"
            write_atomic(path, envelope, mode=0o600)
            entry.files = [str(path)]
        if not upload:
            return entry, None

        def push() -> None:
            entry.manifest = attach_attestation(client, target.sig_host, target.sig_repo, manifest.digest,
                                                envelope, uri, replace=replace, annotations=annotations)
            entry.written = f"{target.sig_registry}/{target.sig_repo}:{cosign.attestation_tag(manifest.digest)}"

        return entry, push

    summary = for_each_digest(client, ref, signature_repo, recursive, output_dir, "attestation", attest_one,
                              progress)
    if isinstance(signer, KeylessSigner):
        summary.identity, summary.issuer = signer.identity, signer.issuer
    return summary


def _keyless_annotations(signer: KeylessSigner, envelope: bytes, digest: str, predicate_type: str,
                         rekor_entry_type: str) -> tuple[dict[str, str], int]:
    """Log the envelope and return the layer annotations cosign v2 writes for a keyless attestation
    (certificate, chain, Rekor SET), after checking the attestation as a verifier would (cosign v2 also
    compares the logged envelope hash with the layer, so that is checked too)."""
    import hashlib

    from airgap.checks.legacy import check_attestation
    from airgap.signing.keyless import check_before_push

    logged = signer.log_intoto(envelope) if rekor_entry_type == "intoto" else signer.log_dsse(envelope)[1]
    annotations = {cosign.ANN_CERTIFICATE: signer.certificate_pem, cosign.ANN_CHAIN: signer.chain_pem,
                   cosign.ANN_BUNDLE: logged.cosign_annotation()}
    outcome = check_attestation(envelope, {**annotations, cosign.ANN_SIGNATURE: ""}, expected_digest=digest,
                                authority=signer.authority, require_tlog=True, predicate_type=predicate_type)
    check_before_push(outcome, signer.services)
    try:
        spec = json_object(base64.b64decode(logged.tlog["canonicalizedBody"]), "Rekor entry body")["spec"]
        logged_hash = (spec.get("envelopeHash") if rekor_entry_type == "dsse" else spec["content"].get("hash"))
        consistent = logged_hash == {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()}
    except (KeyError, TypeError, ValueError, Error):
        consistent = False
    if not consistent:
        raise IntegrityError(f"Rekor at {signer.services.rekor_url} logged another envelope than ours; "
                             "nothing was pushed")
    return annotations, logged.log_index


def _bundle_one(client: RegistryClient, target: Target, manifest: Manifest, signer: Signer | KeylessSigner,
                uri: str, statement: bytes, entry: SignedDigest, upload: bool, output_dir: Path | None) -> Prepared:
    """An attestation as a sigstore bundle referrer (cosign v3 ``attest``), annotated with its type."""
    if isinstance(signer, KeylessSigner):
        bundle, entry.log_index = keyless_bundle(signer, statement, manifest.digest, uri)
    else:
        bundle = build_bundle(signer, docker_reference(target.ref), manifest.digest, statement=statement)
    if output_dir is not None:
        path = output_dir / f"attestation-bundle-{manifest.digest.replace(':', '-', 1)}.json"
        write_atomic(path, bundle, mode=0o600)
        entry.files = [str(path)]
    if not upload:
        return entry, None

    def push() -> None:
        entry.manifest = push_bundle(client, target.sig_host, target.sig_repo, manifest.descriptor, bundle,
                                     predicate_type=uri)
        entry.written = f"{target.sig_registry}/{target.sig_repo}@{entry.manifest}"

    return entry, push
