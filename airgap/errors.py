"""One error base for everything airgap reports to a user.

Every error carries a one-line message a user can act on. Subclasses say *why* it failed, so callers
(and the CLI's exit code) can tell untrusted data from a broken transport from a user's mistake.
"""

from __future__ import annotations


class Error(Exception):
    """Base of all airgap errors: ``str(err)`` is one line naming the thing that is wrong."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message.replace("\n", " ")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): what a one-line error
    quotes of a library's multi-line explanation."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


class ConfigError(Error):
    """The user asked for something that cannot work (bad flag, bad reference, missing file)."""

    exit_code = 2


class IntegrityError(Error):
    """Untrusted data failed a check: digest or size mismatch, malformed manifest, oversized input."""


class RegistryError(Error):
    """A registry refused or failed a request (after bounded retries)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFoundError(RegistryError):
    """The image, manifest, tag or blob does not exist where it was looked for."""


class AuthError(RegistryError):
    """The registry refused our credentials (or we had none)."""


class TransportError(RegistryError):
    """The connection failed: refused, reset, TLS error, timeout."""


class ConflictError(Error):
    """The target holds something this operation does not own (another bundle's tag): refused unless forced."""


class BundleError(Error):
    """A bundle file is malformed, tampered with, or incomplete."""


class VerificationError(Error):
    """A signature, attestation or trust check failed."""


class PolicyError(Error):
    """A policy document is invalid or an image does not satisfy it."""
