"""airgap: move signed container images into disconnected networks and verify them offline.

The package root stays import-light on purpose: ``airgap --help`` must not pay for requests,
cryptography or sigstore. The public API is loaded on first use::

    from airgap import Trust, verify_image
    result = verify_image("127.0.0.1:31999/team/app:1.0", Trust.load("trust/"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Trust", "VerificationResult", "Verifier", "__version__", "verify_image"]

if TYPE_CHECKING:
    from airgap.verification.result import VerificationResult
    from airgap.verification.trust import Trust
    from airgap.verification.verifier import Verifier, verify_image

_LAZY = {"Trust": "airgap.verification.trust", "verify_image": "airgap.verification.verifier",
         "Verifier": "airgap.verification.verifier", "VerificationResult": "airgap.verification.result"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'airgap' has no attribute {name!r}")
