"""sigstore-python ``Verifier`` objects for airgap's trusted roots, built once per root (no network).

What sigstore-python rebuilds for every bundle (Fulcio chain store, Rekor/CT keyrings, the TSA list,
certificate extension policies) is built once per :class:`~airgap.checks.roots.TrustedRoot` here, and Rekor v1
``intoto`` entries get their integrated time accepted like ``dsse`` entries. Used by
:mod:`airgap.checks.bundle`.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.models import Bundle

    from airgap.checks.roots import TrustedRoot

__all__ = ["verifier"]


# Verifiers built per trusted root (keyrings and the chain store are parsed once, not per bundle). Keyed by
# id() with the root kept alive beside it, so an id is never reused while its entry exists.
_VERIFIERS: dict[int, tuple[TrustedRoot, Any]] = {}


def verifier(root: TrustedRoot) -> Any:
    """The cached sigstore ``Verifier`` for ``root``."""
    hit = _VERIFIERS.get(id(root))
    if hit is not None and hit[0] is root:
        return hit[1]
    verifier = _new_verifier(root)
    if len(_VERIFIERS) >= 16:
        _VERIFIERS.clear()
    _VERIFIERS[id(root)] = (root, verifier)
    return verifier


def _new_verifier(root: TrustedRoot) -> Any:
    from cryptography.x509 import ExtendedKeyUsage, UnsupportedGeneralNameType
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
    from cryptography.x509.verification import VerificationError as X509Error
    from sigstore.errors import CertValidationError
    from sigstore.verify import Verifier

    from airgap.checks.roots import TrustedRoot as _Root

    class _IntotoVerifier(Verifier):
        """sigstore-python's Verifier, also accepting the integrated time of Rekor v1 ``intoto`` entries
        (bound by the inclusion promise exactly as for ``dsse``/``hashedrekord``). What sigstore-python
        rebuilds per bundle is built once here: keyrings (:class:`_KeyringCache`), extension policies and the
        Fulcio chain store (the store keeps its CAs' parsed keys: a fresh one costs ~50 us a verification)."""

        def __init__(self, *, trusted_root: Any) -> None:
            super().__init__(trusted_root=trusted_root)
            self._trusted_root = cast(Any, _KeyringCache(trusted_root))  # duck-typed: the calls sigstore makes
            self._store = Store(self._fulcio_certificate_chain)
            # as sigstore-python: webpki defaults, but the EKU is code signing (checked after the chain)
            self._ca_policy, self._ee_policy = (
                p.may_be_present(ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
                for p in (ExtensionPolicy.webpki_defaults_ca(), ExtensionPolicy.webpki_defaults_ee()))

        def _verify_chain_at_time(self, certificate: Certificate, timestamp_result: Any) -> list[Certificate]:
            verifier = (PolicyBuilder().store(self._store).time(timestamp_result.time)
                        .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
                        .build_client_verifier())
            try:
                return list(verifier.verify(certificate, []).chain[1:])  # the path above the leaf
            except (X509Error, UnsupportedGeneralNameType) as exc:
                raise CertValidationError(f"failed to build timestamp certificate chain: {exc}") from None

        def _establish_time(self, bundle: Bundle) -> Any:
            from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
            from sigstore.errors import VerificationError as SigstoreVerificationError

            inner = bundle.log_entry._inner
            if inner.kind_version.kind != "intoto":
                return super()._establish_time(bundle)
            found = []
            tsd = bundle.verification_material.timestamp_verification_data
            if tsd and tsd.rfc3161_timestamps:
                if not self._trusted_root.get_timestamp_authorities():
                    raise SigstoreVerificationError("signed timestamps present but the trusted root has no TSA")
                found.extend(self._verify_timestamp_authority(bundle))
            if inner.integrated_time and inner.inclusion_promise:
                from datetime import datetime

                found.append(TimestampVerificationResult(
                    source=TimestampSource.TRANSPARENCY_SERVICE,
                    time=datetime.fromtimestamp(inner.integrated_time, tz=UTC)))
            return found

    if not isinstance(root, _Root):
        raise TypeError("expected an airgap.checks.roots.TrustedRoot")
    return _IntotoVerifier(trusted_root=root.to_sigstore())


class _KeyringCache:
    """A sigstore ``TrustedRoot`` whose keyrings and TSA list are built once (sigstore-python loads every
    key on each call). Which keys are usable is still decided per call: a keyring is reused only for the
    same selection, so a key whose ``validFor`` starts later joins when it starts, as without the cache."""

    def __init__(self, root: Any) -> None:
        self._root = root
        self._rings: dict[tuple[str, Any, tuple[int, ...]], Any] = {}
        self._tsas: list[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._root, name)

    def _ring(self, kind: str, purpose: Any) -> Any:
        logs = self._root._inner.tlogs if kind == "rekor" else self._root._inner.ctlogs
        key = (kind, purpose, tuple(id(k) for k in self._root._get_tlog_keys(logs, purpose)))
        ring = self._rings.get(key)
        if ring is None:
            ring = self._root.rekor_keyring(purpose) if kind == "rekor" else self._root.ct_keyring(purpose)
            self._rings[key] = ring
        return ring

    def rekor_keyring(self, purpose: Any) -> Any:
        return self._ring("rekor", purpose)

    def ct_keyring(self, purpose: Any) -> Any:
        return self._ring("ct", purpose)

    def get_timestamp_authorities(self) -> list[Any]:
        if self._tsas is None:
            self._tsas = self._root.get_timestamp_authorities()
        return list(self._tsas)
