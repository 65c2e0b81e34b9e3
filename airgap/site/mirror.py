"""The site state mirrored into its registry as a signed OCI artifact, and rebuilt from it only after the
signature checks against a key the operator holds.

A second verifier (the webhook's ConfigMap, an auditor on another host) rebuilds the site from the registry it
already trusts for images: ``airgap site pull --registry HOST --key site.pub -o DIR``. The artifact is
``HOST[/PREFIX]/airgap/site:state``: one layer, a canonical JSON document holding every file of the site (its
``site.json``, each bundle's trust directory, the site-wide policy), signed like any image (a cosign ``.sig``
over the artifact's digest, so ``cosign verify --key`` checks it too).

Threat model: the registry is untrusted. Nothing pulled is used unless the signature verifies with the given
key; then the document is parsed strictly (known shape, safe relative paths only), written beside the target
and loaded as a trust directory (``site.json`` pins every trust file) before it is moved into place.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from airgap import digest as digests
from airgap.errors import ConfigError, IntegrityError, VerificationError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest
from airgap.verification.scopes import SITE_FILE, is_site

if TYPE_CHECKING:
    from airgap.keys.private import Signer
    from airgap.keys.public import PublicKey
    from airgap.oci.registry import RegistryClient

SITE_REPO = "airgap/site"
STATE_TAG = "state"
MEDIA_TYPE = "application/vnd.airgap.site.v1+json"
EXPORT_SCHEMA = "airgap.dev/site-export/v1"
MAX_EXPORT_BYTES = 64 * 1024 * 1024
_EMPTY = b"{}"
_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*){0,3}$")


def _repo(target: str) -> tuple[str, str]:
    """(registry API host, repository) of the state artifact for a registry spelled ``HOST[/PREFIX]``."""
    from airgap import refs

    host, _, prefix = target.rstrip("/").partition("/")
    return refs.api_host(host), f"{prefix}/{SITE_REPO}" if prefix else SITE_REPO


def export_document(site: Path) -> bytes:
    """Every file of the site (dotfiles, such as the lock, excluded) as one canonical JSON document."""
    if not is_site(site):
        raise ConfigError(f"{site} is not a site (no {SITE_FILE}); load a bundle with --site first")
    files = {}
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        rel = path.relative_to(site).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        files[rel] = base64.b64encode(path.read_bytes()).decode()
    return json.dumps({"schema": EXPORT_SCHEMA, "files": files}, sort_keys=True, separators=(",", ":")).encode()


def push_state(client: RegistryClient, site: Path, target: str, signer: Signer) -> str:
    """Push the site's state to ``target`` and sign it; return ``HOST[/PREFIX]/airgap/site@digest``."""
    from airgap.signing.sign import sign_image

    host, repo = _repo(target)
    doc = export_document(site)
    layer = Descriptor(MEDIA_TYPE, digests.of_bytes(doc), len(doc))
    config = Descriptor(mt.OCI_EMPTY, digests.of_bytes(_EMPTY), len(_EMPTY))
    manifest = Manifest.from_bytes(json.dumps({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": MEDIA_TYPE,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}],
    }, sort_keys=True, separators=(",", ":")).encode(), mt.OCI_MANIFEST)
    client.push_blob(host, repo, config, lambda: iter((_EMPTY,)))
    client.push_blob(host, repo, layer, lambda: iter((doc,)))
    client.put_manifest(host, repo, STATE_TAG, manifest)
    ref = f"{target.rstrip('/')}/{SITE_REPO}@{manifest.digest}"
    sign_image(ref, signer, client=client)
    return ref


def pull_state(client: RegistryClient, target: str, keys: list[PublicKey], out: Path) -> str:
    """Rebuild a site at ``out`` from ``target``'s signed state artifact; return the artifact's digest. Refused
    (nothing written) unless the artifact's signature verifies with one of ``keys``."""
    from airgap.keys.public import public_pem
    from airgap.verification.adhoc import policy_for_keys
    from airgap.verification.trust import Trust
    from airgap.verification.verifier import Verifier

    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: pull the site state into a new directory")
    trust = Trust.from_keys([(f"key-{i}", public_pem(k)) for i, k in enumerate(keys)])
    host, repo = _repo(target)
    ref = f"{target.rstrip('/')}/{SITE_REPO}:{STATE_TAG}"
    result = Verifier(trust, policy_for_keys(trust, require_tlog=False), client).verify(ref)
    if not result or result.digest is None:
        raise VerificationError(f"the site state at {ref} is not signed by the given key: "
                                + "; ".join(result.reasons)[:400] + " (never trusted)")
    manifest = client.get_manifest(host, repo, result.digest)
    layers = [d for d in manifest.blobs[1:] if d.media_type == MEDIA_TYPE]
    if len(layers) != 1 or layers[0].size > MAX_EXPORT_BYTES:
        raise IntegrityError(f"{ref}: not one site-state layer within {MAX_EXPORT_BYTES} bytes")
    files = _parse(client.read_blob(host, repo, layers[0]), ref)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        Trust.load(tmp)  # site.json must pin exactly these trust files, and they must load
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result.digest


def _parse(data: bytes, where: str) -> dict[str, bytes]:
    from airgap.jsondoc import json_object

    doc = json_object(data, where)
    raw = doc.get("files")
    if doc.get("schema") != EXPORT_SCHEMA or set(doc) != {"schema", "files"} or not isinstance(raw, dict):
        raise IntegrityError(f"{where}: not an airgap site state ({EXPORT_SCHEMA})")
    files: dict[str, bytes] = {}
    for rel, value in raw.items():
        if not isinstance(rel, str) or not _PATH.match(rel) or ".." in rel.split("/") or not isinstance(value, str):
            raise IntegrityError(f"{where}: refusing file {str(rel)[:80]!r}")
        try:
            files[rel] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise IntegrityError(f"{where}: {rel} is not base64") from None
    if SITE_FILE not in files:
        raise IntegrityError(f"{where}: no {SITE_FILE}")
    return files
