"""Fixtures and push helpers around :mod:`support.minisigstore` (the test-only Fulcio/CT/Rekor stand-in).

``conftest.py`` imports the fixtures (``mini_sigstore``, ``mini_sigstore_files``, ``keyless_identity``) by name;
keyless *signing* tests import ``mini_oidc`` and ``sigstore_server`` (the Mini Sigstore's Fulcio and Rekor over
HTTP on loopback, :mod:`support.sigstoreserver`) into their module.
The Mini Sigstore is made once per session (key generation is the only slow part); each signature it makes
is a few milliseconds. Legacy signatures are pushed through airgap's own writer (:func:`airgap.signing.sign.
attach_signature`), which the cosign interop tests then check against real cosign; bundles are pushed as
raw OCI 1.1 referrers exactly as cosign v3 writes them, independent of airgap's client.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from support.images import OCI_MANIFEST, Pusher, canonical
from support.minisigstore import (
    BUNDLE_V03_MEDIA_TYPE,
    COSIGN_SIGN_PREDICATE,
    KeylessIdentity,
    MiniSigstore,
    SignedLayer,
    SigstoreFiles,
)
from support.registries import Registry
from support.sigstoreserver import MiniOIDC, SigstoreServer

EMPTY_JSON = "application/vnd.oci.empty.v1+json"
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"


@pytest.fixture(scope="session")
def mini_sigstore() -> MiniSigstore:
    """One generated Fulcio CA + CT log + Rekor for the whole session."""
    return MiniSigstore()


@pytest.fixture(scope="session")
def mini_sigstore_files(mini_sigstore: MiniSigstore, tmp_path_factory: pytest.TempPathFactory) -> SigstoreFiles:
    """``trusted_root.json`` and the PEMs cosign's ``SIGSTORE_*`` env overrides read, on disk."""
    return mini_sigstore.write_files(tmp_path_factory.mktemp("mini-sigstore"))


@pytest.fixture
def keyless_identity(mini_sigstore: MiniSigstore) -> KeylessIdentity:
    """A fresh Fulcio-like identity (email SAN) for one test."""
    return mini_sigstore.issue("signer@airgap.test", "https://oidc.airgap.test")


@pytest.fixture(scope="session")
def mini_oidc() -> MiniOIDC:
    """A test OIDC issuer (ES256) whose tokens the Mini Fulcio trusts."""
    return MiniOIDC()


@pytest.fixture(scope="session")
def mini_sigstore_server(mini_sigstore: MiniSigstore, mini_oidc: MiniOIDC) -> Iterator[SigstoreServer]:
    server = SigstoreServer(mini_sigstore, [mini_oidc, MiniOIDC("https://rsa.oidc.airgap.test", algorithm="RS256")])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sigstore_server(mini_sigstore_server: SigstoreServer) -> Iterator[SigstoreServer]:
    """The Mini Sigstore's Fulcio v2 + Rekor v1 over HTTP (one per session), its faults cleared around each test."""
    mini_sigstore_server.reset()
    try:
        yield mini_sigstore_server
    finally:
        mini_sigstore_server.reset()


def _client(registry: Registry) -> Any:
    from airgap.config import RegistryOptions
    from airgap.oci.registry import RegistryClient

    ca = str(registry.tls.ca_pem) if registry.tls else None
    return RegistryClient(RegistryOptions(insecure=frozenset() if registry.tls else frozenset({registry.host}),
                                          ca_file=ca))


def push_keyless_signature(registry: Registry, repo: str, digest: str, who: KeylessIdentity, *,
                           sigstore: MiniSigstore, docker_reference: str | None = None,
                           optional: dict[str, Any] | None = None) -> tuple[str, SignedLayer]:
    """Sign ``repo@digest`` keylessly as cosign v2 does and append it to ``sha256-<hex>.sig``.

    Returns (the ``.sig`` manifest digest, the layer written). ``docker_reference`` defaults to
    ``host/repo``, what cosign puts in the payload.
    """
    from airgap.signing.sign import attach_signature

    layer = sigstore.legacy_signature(docker_reference or f"{registry.host}/{repo}", digest, who, optional=optional)
    annotations = {k: v for k, v in layer.annotations.items() if k != "dev.cosignproject.cosign/signature"}
    manifest = attach_signature(_client(registry), registry.host, repo, digest, layer.payload, layer.signature,
                                annotations)
    return manifest, layer


def push_keyless_attestation(registry: Registry, repo: str, digest: str, who: KeylessIdentity, *,
                             sigstore: MiniSigstore, predicate_type: str, predicate: Any,
                             subject_name: str | None = None) -> tuple[str, SignedLayer]:
    """Attest keylessly as cosign v2 ``attest`` does and append the DSSE layer to ``sha256-<hex>.att``."""
    from airgap.checks import cosign
    from airgap.signing.attach import append_layer

    layer = sigstore.legacy_attestation(subject_name or f"{registry.host}/{repo}", digest, who,
                                        predicate_type=predicate_type, predicate=predicate)
    manifest, _ = append_layer(_client(registry), registry.host, repo, cosign.attestation_tag(digest), DSSE_LAYER,
                               layer.payload, layer.annotations)
    return manifest, layer


def push_bundle_referrer(registry: Registry, repo: str, subject_digest: str, subject_size: int,
                         subject_media_type: str, bundle: bytes, *,
                         predicate_type: str = COSIGN_SIGN_PREDICATE, fallback_tag: bool = False) -> str:
    """Push a sigstore bundle as an OCI 1.1 referrer, the manifest cosign v3 writes; return its digest.

    ``fallback_tag`` also maintains the ``sha256-<hex>`` referrers tag index (registries without the API).
    """
    auth = (registry.username, registry.password) if registry.username and registry.password else None
    pusher = Pusher(registry.url, auth=auth, verify=str(registry.tls.ca_pem) if registry.tls else True)
    empty = pusher.blob(repo, b"{}")
    layer = pusher.blob(repo, bundle)
    doc = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE_V03_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_JSON, "digest": empty, "size": 2},
        "layers": [{"mediaType": BUNDLE_V03_MEDIA_TYPE, "digest": layer, "size": len(bundle)}],
        "subject": {"mediaType": subject_media_type, "digest": subject_digest, "size": subject_size},
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                        "dev.sigstore.bundle.predicateType": predicate_type,
                        "org.opencontainers.image.created": "2025-01-01T00:00:00Z"},
    }
    manifest = json.dumps(doc, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    pusher.manifest(repo, digest, manifest, OCI_MANIFEST)
    if fallback_tag:
        tag = subject_digest.replace(":", "-")
        r = pusher.session.get(f"{pusher.base}/v2/{repo}/manifests/{tag}",
                               headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        manifests = r.json().get("manifests", []) if r.status_code == 200 else []
        manifests.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
                          "artifactType": BUNDLE_V03_MEDIA_TYPE, "annotations": doc["annotations"]})
        index = canonical({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": manifests})
        pusher.manifest(repo, tag, index, "application/vnd.oci.image.index.v1+json")
    return digest
