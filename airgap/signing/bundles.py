"""DSSE envelopes, and sigstore bundle signatures as cosign v3 writes them.

- **DSSE**: one signature over the PAE of a payload (in-toto statements here): what cosign ``.att``
  attestations carry, what a bundle signature wraps, and what airgap's signed audit summary is.
- **Bundle signatures** (cosign v3 ``sign --key K --use-signing-config=false --tlog-upload=false``): an in-toto
  v1 statement with predicate type ``https://sigstore.dev/cosign/sign/v1`` and an empty predicate (``-a``
  annotations go on the subject), in a DSSE envelope inside a sigstore bundle v0.3 whose verification
  material is only a public-key hint (base64 SHA-256 of the SPKI DER): no transparency log entry, no
  timestamp. The bundle is one layer of an OCI 1.1 artifact (empty config, ``subject`` = the image) pushed
  through the Referrers API or its ``sha256-<hex>`` fallback tag.
- **Keyless bundles** (cosign v3 ``sign``/``attest`` with an identity token): the same DSSE envelope, with the
  Fulcio certificate as verification material and the Rekor dsse entry (SET and inclusion proof).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from typing import TYPE_CHECKING, Any

from airgap import digest as digests
from airgap.checks import cosign
from airgap.keys.public import spki_der
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest
from airgap.signing.attach import go_json, push_bytes

if TYPE_CHECKING:
    from airgap.keys.private import Signer
    from airgap.oci.registry import RegistryClient
    from airgap.signing.keyless import KeylessSigner




ANN_BUNDLE_CONTENT = "dev.sigstore.bundle.content"


ANN_BUNDLE_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"


ANN_CREATED = "org.opencontainers.image.created"


EMPTY_CONFIG = b"{}"


def rfc3339(now: datetime.datetime | None) -> str:
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


def public_key_hint(signer: Signer) -> str:
    """cosign v3's ``publicKey.hint``: base64 of the SHA-256 of the key's SubjectPublicKeyInfo DER."""
    return base64.b64encode(hashlib.sha256(spki_der(signer.public_key)).digest()).decode()


def sign_statement(digest: str, annotations: dict[str, str] | None = None) -> bytes:
    """The in-toto v1 statement cosign v3 signs for an image: no subject name, the digest, ``-a``
    annotations on the subject, an empty ``cosign/sign/v1`` predicate."""
    alg, hexpart = digests.validate(digest).split(":", 1)
    subject: dict[str, Any] = {"digest": {alg: hexpart}}
    if annotations:
        subject["annotations"] = dict(sorted(annotations.items()))
    return _proto_json({"_type": cosign.INTOTO_STATEMENT_V1, "subject": [subject],
                        "predicateType": cosign.COSIGN_SIGN_PREDICATE, "predicate": {}})


def build_bundle(signer: Signer, subject_name: str, digest: str,
                 annotations: dict[str, str] | None = None, *, statement: bytes | None = None) -> bytes:
    """A sigstore bundle v0.3 (key-based, no tlog) holding a DSSE signature over the cosign v3 sign
    statement for ``digest`` (or over ``statement``, an attestation's). ``subject_name`` is accepted for
    symmetry with attestations; cosign v3 leaves the subject of a signature unnamed, and so do we."""
    del subject_name
    if statement is None:
        statement = sign_statement(digest, annotations)
    envelope = sign_dsse(signer, cosign.DSSE_PAYLOAD_TYPE_INTOTO, statement, keyid=None)
    return _proto_json({
        "mediaType": mt.SIGSTORE_BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": public_key_hint(signer)}},
        "dsseEnvelope": {"payload": envelope["payload"], "payloadType": envelope["payloadType"],
                         "signatures": envelope["signatures"]},
    })


def keyless_bundle(signer: KeylessSigner, statement: bytes, digest: str, predicate_type: str) -> tuple[bytes, int]:
    """(bundle, Rekor log index): a DSSE signature over ``statement`` with the Fulcio certificate, logged as
    a dsse entry (cosign v3's keyless bundle), checked against the trusted root before it may be pushed."""
    from airgap.checks.bundle import check_sigstore_bundle
    from airgap.signing.keyless import check_before_push

    envelope = _proto_json(sign_dsse(signer, cosign.DSSE_PAYLOAD_TYPE_INTOTO, statement, keyid=None))
    bundle, logged = signer.dsse_bundle(envelope)
    outcome = check_sigstore_bundle(bundle, expected_digest=digest, authority=signer.authority, require_tlog=True,
                                    predicate_type=predicate_type)
    check_before_push(outcome, signer.services)
    return bundle, logged.log_index


def bundle_manifest(bundle: bytes, subject: Descriptor, *, predicate_type: str = cosign.COSIGN_SIGN_PREDICATE,
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
                        ANN_CREATED: rfc3339(created)},
        "subject": {"mediaType": subject.media_type, "size": subject.size, "digest": subject.digest},
        "artifactType": mt.SIGSTORE_BUNDLE_V03,
    })
    return Manifest.from_bytes(manifest, mt.OCI_MANIFEST)


def push_bundle(client: RegistryClient, host: str, repo: str, subject: Descriptor, bundle: bytes, *,
                created: datetime.datetime | None = None,
                predicate_type: str = cosign.COSIGN_SIGN_PREDICATE) -> str:
    """Push a bundle as a referrer of ``subject`` (blobs first, then the manifest, then the fallback
    index when the registry has no Referrers API); return the referrer manifest's digest.
    ``predicate_type`` goes in the manifest's annotation (an attestation's type, for an attestation)."""
    manifest = bundle_manifest(bundle, subject, created=created, predicate_type=predicate_type)
    push_bytes(client, host, repo, mt.SIGSTORE_BUNDLE_V03, bundle)
    push_bytes(client, host, repo, mt.OCI_EMPTY, EMPTY_CONFIG)
    client.add_referrer(host, repo, manifest)
    return manifest.digest
