"""Detached signatures over small documents that travel beside a bundle (a parts manifest, a site inventory).

The same scheme as ``airgap-bundle.json.sig``: the base64 of the signature over the file's exact bytes, as
``cosign sign-blob --key`` writes it and ``cosign verify-blob --key K --signature F.sig F`` checks it (ECDSA
signatures are deterministic, RFC 6979, so the same key and bytes always give the same file).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from airgap.errors import BundleError, Error

if TYPE_CHECKING:
    from airgap.keys.private import Signer
    from airgap.keys.public import PublicKey

MAX_SIGNATURE_BYTES = 64 * 1024


def sign_detached(signer: Signer, data: bytes) -> bytes:
    """The ``.sig`` file's bytes for ``data``: base64, no newline (what the bundle signature holds)."""
    return base64.b64encode(signer.sign(data))


def verify_detached(keys: Sequence[PublicKey], signature: bytes | None, data: bytes, what: str, *,
                    error: Callable[[str], Error] = BundleError) -> str:
    """The id of the first of ``keys`` whose signature over ``data`` ``signature`` (the ``.sig`` file's bytes,
    None when there is none) is; else ``error`` naming ``what``."""
    from airgap.keys.public import key_id, verify_signature

    if signature is None:
        raise error(f"{what} is not signed (no {what}.sig), but a key to check it was given")
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise error(f"{what}.sig: more than {MAX_SIGNATURE_BYTES} bytes")
    try:
        raw = base64.b64decode(b"".join(signature.split()), validate=True)
    except (binascii.Error, ValueError):
        raise error(f"{what}.sig: not base64") from None
    for key in keys:
        if verify_signature(key, raw, data):
            return key_id(key)
    raise error(f"{what}.sig does not verify with the given key")
