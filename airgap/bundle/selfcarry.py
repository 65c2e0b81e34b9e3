"""airgap carries itself across the gap: its own container image in the bundle, recorded where the webhook's
deployment finds it after ``load``.

- ``pack``: the spec's ``airgap.image`` is packed like every image (every platform, its signatures, the policy
  checked) and the signed bundle manifest says it is airgap's own (``"airgap":{"image":UPSTREAM}``).
- ``load``: where that image landed, pinned by digest (``HOST/REPO@sha256:...``, the ref a Deployment should run),
  is in the load summary (``airgap_image``), in the trust directory (``--trust-out``) as :data:`TRUST_FILE`,
  and in the site state (``--site``: the bundle's ``airgapImage`` in ``site.json``, and the same file in its
  trust directory, pinned like every trust file).
- ``webhook manifests --trust DIR``: without ``--image``, the image :func:`recorded_image` finds in ``DIR``.

:data:`TRUST_FILE` is canonical JSON: ``{"bundle":NAME,"image":PINNED,"schema":SCHEMA,"upstream":UPSTREAM,
"version":VERSION}``. It is as trustworthy as the trust directory it sits in (written by ``load`` from a bundle
whose manifest was trusted first); it is parsed strictly all the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from airgap import refs
from airgap.errors import ConfigError

if TYPE_CHECKING:
    from airgap.bundle.manifest import BundleManifest
    from airgap.bundle.placement import Placed

TRUST_FILE = "airgap-image.json"
SCHEMA = "airgap.dev/airgap-image/v1"
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def loaded_image(manifest: BundleManifest, placed: list[Placed]) -> tuple[str, str] | None:
    """(upstream ref, the translated ref pinned by digest) of the image the manifest says is airgap's own, or
    None when the bundle carries none."""
    upstream = manifest.airgap.image if manifest.airgap is not None else None
    if upstream is None:
        return None
    for p in placed:
        if p.entry.upstream == upstream:
            local = p.locals[0]
            return upstream, str(refs.Reference(local.registry, local.repository, digest=p.entry.digest))
    return None  # from_bytes refuses an airgap.image that is not one of the images: not reached


def trust_record(upstream: str, pinned: str, bundle: str, version: str) -> bytes:
    """The bytes of :data:`TRUST_FILE`."""
    from airgap.bundle.manifest import canonical_json

    return canonical_json({"schema": SCHEMA, "image": pinned, "upstream": upstream, "bundle": bundle,
                           "version": version})


def read_record(data: bytes, where: str) -> str:
    """The pinned image a :data:`TRUST_FILE` records; a ConfigError naming ``where`` when it is malformed."""
    from airgap.jsondoc import json_object

    doc = json_object(data, where, ConfigError)
    if set(doc) != {"schema", "image", "upstream", "bundle", "version"} or doc["schema"] != SCHEMA:
        raise ConfigError(f"{where}: not an airgap image record (expected schema {SCHEMA!r} with image, upstream, "
                          "bundle and version)")
    return check_pinned(doc["image"], f"{where}: image")


def check_pinned(value: object, where: str) -> str:
    """``value`` if it is an image ref pinned by a sha256 digest."""
    try:
        ref = refs.parse(value) if isinstance(value, str) else None
    except ConfigError:
        ref = None
    if ref is None or ref.digest is None or not _DIGEST.match(ref.digest):
        raise ConfigError(f"{where}: expected an image ref pinned by digest (HOST/REPO@sha256:...), got {value!r}")
    return str(value)


def recorded_image(directory: Path) -> str | None:
    """The airgap image ``load`` recorded in ``directory``: a site (the most recently loaded bundle that carried
    one) or a trust directory (its :data:`TRUST_FILE`); None when it records none."""
    from airgap.verification.scopes import SiteState, is_site

    if is_site(directory):
        state = SiteState.load(directory)
        carried = [b for b in state.bundles if b.airgap_image is not None]  # newest load last
        return carried[-1].airgap_image if carried else None
    path = directory / TRUST_FILE
    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    return read_record(data, str(path))
