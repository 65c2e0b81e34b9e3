"""airgap: move signed container images into disconnected networks and verify them offline.

The package root stays import-light on purpose: ``airgap --help`` must not pay for requests,
cryptography or sigstore. Heavy modules are imported where they are used.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
