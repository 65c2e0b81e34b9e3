"""airgap: move signed container images into disconnected networks and verify them offline.

The package root stays import-light on purpose: ``airgap --help`` must not pay for requests,
cryptography or sigstore. The public API is loaded on first use::

    from airgap import Trust, verify_image
    result = verify_image("127.0.0.1:31999/team/app:1.0", Trust.load("trust/"))

From asyncio (an admission framework, say), ``await verify_image_async(...)`` or ``await Verifier(...).averify(ref)``
run the same verification on a worker thread. Every error airgap raises is an :class:`Error` (exported here with
its subclasses), with a one-line message a user can act on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AuthError", "BundleError", "ConfigError", "ConflictError", "Error", "IntegrityError", "NotFoundError",
    "PolicyError", "RegistryError", "TransportError", "Trust", "VerificationError", "VerificationResult", "Verifier",
    "__version__", "verify_image", "verify_image_async",
]

if TYPE_CHECKING:
    from airgap.errors import (
        AuthError,
        BundleError,
        ConfigError,
        ConflictError,
        Error,
        IntegrityError,
        NotFoundError,
        PolicyError,
        RegistryError,
        TransportError,
        VerificationError,
    )
    from airgap.verification.result import VerificationResult
    from airgap.verification.trust import Trust
    from airgap.verification.verifier import Verifier, verify_image, verify_image_async

_ERRORS = ("AuthError", "BundleError", "ConfigError", "ConflictError", "Error", "IntegrityError", "NotFoundError",
           "PolicyError", "RegistryError", "TransportError", "VerificationError")
_LAZY = {"Trust": "airgap.verification.trust", "verify_image": "airgap.verification.verifier",
         "verify_image_async": "airgap.verification.verifier", "Verifier": "airgap.verification.verifier",
         "VerificationResult": "airgap.verification.result", **dict.fromkeys(_ERRORS, "airgap.errors")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'airgap' has no attribute {name!r}")
