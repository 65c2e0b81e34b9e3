"""Keyless signing on the connected side: an OIDC identity token buys a short-lived Fulcio certificate for an
ephemeral key, and everything signed with it is recorded in a Rekor log, as cosign does without ``--key``.

Which Sigstore and which identity: :mod:`airgap.signing.services` (:class:`Services`, the token).

The protocol is sigstore-python 4.5.x's: :class:`sigstore.sign.SigningContext` holds its Fulcio and Rekor v1
clients and the trusted root, and its :class:`sigstore.sign.Signer` requests the certificate (a CSR as proof
of possession) and checks its SCT; ``Signer.sign_artifact`` signs and logs a legacy payload (hashedrekord).
DSSE signatures (bundles, attestations) are logged through the same Rekor client with the exact envelope
bytes airgap writes (sigstore-python's own ``sign_dsse`` only takes in-toto v1 statements with named
subjects, which cosign's are not). Private pieces used, pinned to sigstore 4.5.x: ``Signer._private_key``,
``Signer._signing_cert``, ``FulcioClient.session``, ``RekorClient._session``, ``dsse.Envelope._from_json``
and ``Bundle._from_parts``.

Threat model: Fulcio and Rekor are trusted only as far as the trusted root vouches for what they return.
The certificate must be for our key and chain to the root; every log entry is checked (SET, inclusion proof,
body about this very signature) by :mod:`airgap.checks` before anything is pushed (see
:func:`check_before_push`). Every request has a deadline: connect and read timeouts, both cut to what is left
of the exchange's overall deadline (:class:`Services`).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airgap.errors import Error, IntegrityError, TransportError, VerificationError, first_line
from airgap.signing.services import IdentityTokenError, Services, TokenInfo, parse_identity_token, token_info

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import Certificate

    from airgap.checks.outcome import KeylessAuthority
    from airgap.keys.public import PublicKey

__all__ = ["KeylessSigner", "LoggedEntry", "check_before_push"]


# ---- how: deadlines on sigstore-python's HTTP sessions ---------------------------------------------------

def _session(services: Services) -> Any:
    """A ``requests`` session whose every request gets connect/read timeouts, cut to what is left of the
    current exchange's deadline (``session.deadline``, a ``time.monotonic()`` instant set by
    :meth:`KeylessSigner._call`); sigstore-python's clients set no timeout at all."""
    import requests

    class DeadlineSession(requests.Session):
        deadline = float("inf")

        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise requests.Timeout(f"deadline of {services.timeout:g}s passed")
            kwargs["timeout"] = (min(services.connect_timeout, left), min(services.read_timeout, left))
            kwargs.setdefault("allow_redirects", False)
            return super().request(method, url, *args, **kwargs)

    session = DeadlineSession()
    session.headers.update({"User-Agent": "airgap/0.1 (sigstore-python)"})
    return session


def _printable(text: str, limit: int = 200) -> str:
    """The first line of untrusted ``text``, control characters blanked, at most ``limit`` characters."""
    line = text.splitlines()[0] if text.strip() else ""
    return "".join(c if c.isprintable() else " " for c in line)[:limit]


def _http_message(response: Any) -> str:
    """``HTTP 401: <message>`` from a Fulcio/Rekor error response (their JSON ``message``, else the text)."""
    try:
        doc = response.json()
        detail = doc["message"] if isinstance(doc, dict) and isinstance(doc.get("message"), str) else ""
    except ValueError:
        detail = response.text if isinstance(response.text, str) else ""
    detail = _printable(detail)
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")


def _transport_error(exc: BaseException, service: str, url: str, services: Services) -> Error:
    """One line for a failed call to ``service`` at ``url``."""
    import requests

    if isinstance(exc, requests.Timeout):
        return TransportError(f"{service} at {url} did not answer in time (timeouts {services.connect_timeout:g}s "
                              f"connect, {services.read_timeout:g}s read, {services.timeout:g}s in all)")
    if isinstance(exc, requests.ConnectionError):
        return TransportError(f"{service} at {url} is unreachable ({_reason(exc)})")
    response = getattr(exc, "response", None)
    if response is None and exc.__cause__ is not None:
        response = getattr(exc.__cause__, "response", None)
    if response is not None:
        return TransportError(f"{service} at {url} refused the request ({_http_message(response)})")
    text = _printable(first_line(exc), 300)
    if text[:3].isdigit() and text[3:5] == ": ":  # sigstore's RekorClientError: "<code>: <message>"
        return TransportError(f"{service} at {url} refused the request (HTTP {text})")
    if text.startswith("Rekor returned an unknown error with HTTP "):
        return TransportError(f"{service} at {url} refused the request (HTTP {text.rsplit(' ', 1)[-1]})")
    return TransportError(f"{service} at {url} failed: {text}")


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection error, briefly (``Connection refused``, a DNS failure ...)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = first_line(exc)
    return text.split("] ", 1)[-1] if "] " in text else text


# ---- the signer ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LoggedEntry:
    """A Rekor v1 entry as a sigstore bundle's ``tlogEntries[0]`` holds it (protobuf JSON)."""

    tlog: dict[str, Any]

    @property
    def log_index(self) -> int:
        return int(self.tlog["logIndex"])

    def cosign_annotation(self) -> str:
        """The ``dev.sigstore.cosign/bundle`` annotation as cosign v2 writes it (Go JSON, field order kept)."""
        from airgap.signing.attach import go_json

        try:
            doc = {"SignedEntryTimestamp": self.tlog["inclusionPromise"]["signedEntryTimestamp"],
                   "Payload": {"body": self.tlog["canonicalizedBody"],
                               "integratedTime": int(self.tlog["integratedTime"]),
                               "logIndex": int(self.tlog["logIndex"]),
                               "logID": base64.b64decode(self.tlog["logId"]["keyId"]).hex()}}
        except (KeyError, TypeError, ValueError):
            raise IntegrityError("Rekor returned an entry without SET, integrated time or log id") from None
        return go_json(doc).decode()


class KeylessSigner:
    """An ephemeral P-256 key with a Fulcio certificate for one identity token, and a Rekor v1 log.

    Satisfies :class:`airgap.keys.private.Signer` (``public_key``, ``sign``), so DSSE envelopes are made by
    the same code as with a key. One certificate serves every signature of a run (it lives ten minutes).
    """

    def __init__(self, token: str, services: Services, *, on_token: Callable[[TokenInfo], None] | None = None
                 ) -> None:
        """Parse ``token`` (``on_token`` then hears what it claims, before Fulcio is asked), get the
        certificate and check it."""
        from sigstore._internal.fulcio.client import FulcioClient
        from sigstore._internal.rekor.client import RekorClient
        from sigstore.sign import Signer, SigningContext

        self.services = services
        self._token = parse_identity_token(token)
        self.token = token_info(self._token)
        if on_token is not None:
            on_token(self.token)
        session = self._session = _session(services)

        class _Rekor(RekorClient):
            @property
            def _session(self) -> Any:  # sigstore 4.5.x: a lazily made thread-local session
                return session

        fulcio = FulcioClient(services.fulcio_url)
        fulcio.session = session
        self._rekor = _Rekor(services.rekor_url)
        context = SigningContext(fulcio=fulcio, rekor=self._rekor, trusted_root=services.trusted_root.to_sigstore())
        self._signer = self._call("Fulcio", services.fulcio_url, lambda: Signer(self._token, context, cache=True))
        self._key: ec.EllipticCurvePrivateKey = self._signer._private_key
        self.certificate: Certificate = self._signer._signing_cert()
        self.chain = self._check_certificate()
        from airgap.checks.keyless import issuer_of, subject_of

        self.identity, self.issuer = subject_of(self.certificate), issuer_of(self.certificate) or ""

    def _call(self, service: str, url: str, fn: Any) -> Any:
        """Run one Fulcio/Rekor exchange, turning every way it can fail into one line."""
        import requests
        from sigstore._internal.fulcio.client import FulcioClientError
        from sigstore._internal.rekor import RekorClientError
        from sigstore.errors import Error as SigstoreError
        from sigstore.oidc import ExpiredIdentity

        self._session.deadline = time.monotonic() + self.services.timeout
        try:
            return fn()
        except ExpiredIdentity:
            raise IdentityTokenError("identity token expired before Fulcio was asked") from None
        except (requests.RequestException, FulcioClientError, RekorClientError) as exc:
            raise _transport_error(exc, service, url, self.services) from None
        except SigstoreError as exc:  # e.g. an SCT that no CT log key of the trusted root verifies
            raise VerificationError(f"{service} at {url} returned something the trusted root does not "
                                    f"verify: {first_line(exc)}") from None
        except (ValueError, KeyError, TypeError) as exc:  # a malformed answer (pydantic errors are ValueErrors)
            raise IntegrityError(f"{service} at {url} returned a malformed answer ({first_line(exc)})") from None

    def _check_certificate(self) -> list[Certificate]:
        """The certificate is for our key and chains to the trusted root now; returns its chain."""
        from airgap.checks.keyless import CertError, verify_chain
        from airgap.keys.public import spki_der

        url = self.services.fulcio_url
        if spki_der(self.certificate.public_key()) != spki_der(self._key.public_key()):  # type: ignore[arg-type]
            raise IntegrityError(f"Fulcio at {url} certified another key than ours")
        try:
            path = verify_chain(self.certificate, [], self.services.trusted_root, datetime.now(UTC))
        except CertError as exc:
            raise VerificationError(f"Fulcio at {url} returned a certificate the trusted root does not "
                                    f"verify: {exc}") from None
        for authority in self.services.trusted_root.fulcio:  # the whole CA chain up to its root, as Fulcio sends it
            if path[0] in authority.certificates:
                return list(authority.certificates[authority.certificates.index(path[0]):])
        return path

    # -- the Signer protocol (airgap.keys.private.Signer) --

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    # -- what goes next to a signature --

    @property
    def certificate_pem(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding

        return self.certificate.public_bytes(Encoding.PEM).decode()

    @property
    def chain_pem(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding

        return "".join(c.public_bytes(Encoding.PEM).decode() for c in self.chain)

    @property
    def authority(self) -> KeylessAuthority:
        """The authority our own signatures must satisfy before they are pushed: this identity, this root."""
        from airgap.checks.keyless import Identity
        from airgap.checks.outcome import KeylessAuthority

        return KeylessAuthority((Identity(issuer=self.issuer, subject=self.identity),), self.services.trusted_root)

    def describe(self) -> str:
        """One line: the identity and issuer the certificate binds, and where signatures are logged."""
        not_after = self.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        return (f"keyless: {self.identity} from {self.issuer} (certificate from {self.services.fulcio_url}, "
                f"valid until {not_after}); logging to {self.services.rekor_url}")

    # -- signing and logging --

    def sign_artifact(self, payload: bytes) -> tuple[bytes, LoggedEntry]:
        """Sign ``payload`` and log it (hashedrekord v0.0.1): what cosign v2 ``sign`` does keylessly."""
        bundle = self._call("Rekor", self.services.rekor_url, lambda: self._signer.sign_artifact(payload))
        doc = json.loads(bundle.to_json())
        signature = base64.b64decode(doc["messageSignature"]["signature"])
        return signature, LoggedEntry(doc["verificationMaterial"]["tlogEntries"][0])

    def log_dsse(self, envelope: bytes) -> tuple[Any, LoggedEntry]:
        """Log a DSSE envelope (``envelope`` are its exact JSON bytes) as a dsse v0.0.1 entry; returns the
        sigstore ``TransparencyLogEntry`` and the entry as bundle JSON."""
        from sigstore._internal.rekor import EntryRequestBody

        request = EntryRequestBody({"apiVersion": "0.0.1", "kind": "dsse", "spec": {"proposedContent": {
            "envelope": envelope.decode(), "verifiers": [base64.b64encode(self.certificate_pem.encode()).decode()]}}})
        entry = self._call("Rekor", self.services.rekor_url, lambda: self._rekor.create_entry(request))
        return entry, LoggedEntry(json.loads(entry._inner.to_json()))

    def log_intoto(self, envelope: bytes) -> LoggedEntry:
        """Log a DSSE envelope as an intoto v0.0.1 entry (cosign v2 ``attest --rekor-entry-type intoto``).
        sigstore-python reads no intoto answers, so the Rekor v1 answer is read here."""
        request = {"apiVersion": "0.0.1", "kind": "intoto", "spec": {
            "content": {"envelope": envelope.decode()},
            "publicKey": base64.b64encode(self.certificate_pem.encode()).decode()}}
        url = self.services.rekor_url

        def post() -> dict[str, Any]:
            response = self._rekor._session.post(f"{self._rekor.url}/log/entries", json=request)
            if response.status_code != 201:
                import requests

                raise requests.HTTPError(f"HTTP {response.status_code}", response=response)
            doc = response.json()
            if not isinstance(doc, dict) or len(doc) != 1:
                raise ValueError("expected one entry")
            (record,) = doc.values()
            promise, proof = record["verification"]["signedEntryTimestamp"], record["verification"]["inclusionProof"]
            return {"logIndex": str(int(record["logIndex"])),
                    "logId": {"keyId": base64.b64encode(bytes.fromhex(record["logID"])).decode()},
                    "kindVersion": {"kind": "intoto", "version": "0.0.1"},
                    "integratedTime": str(int(record["integratedTime"])),
                    "inclusionPromise": {"signedEntryTimestamp": str(promise)},
                    "inclusionProof": proof, "canonicalizedBody": str(record["body"])}

        return LoggedEntry(self._call("Rekor", url, post))

    def dsse_bundle(self, envelope: bytes) -> tuple[bytes, LoggedEntry]:
        """A sigstore bundle v0.3 for a DSSE envelope: the certificate, the logged dsse entry (SET and
        inclusion proof), the envelope (cosign v3's keyless ``sign``/``attest``)."""
        from sigstore.dsse import Envelope
        from sigstore.models import Bundle

        entry, logged = self.log_dsse(envelope)
        bundle = self._call("Rekor", self.services.rekor_url,
                            lambda: Bundle._from_parts(self.certificate, Envelope._from_json(envelope), entry))
        return bundle.to_json().encode(), logged


def check_before_push(outcome: Any, services: Services) -> None:
    """Refuse to push a signature whose own verification failed: name the service whose answer is at fault."""
    if outcome.ok:
        return
    failed = next((c.name for c in outcome.checks if not c.ok), "")
    about_log = any(word in outcome.reason for word in ("log entry", "SET", "inclusion", "checkpoint", "Rekor"))
    service, url = (("Rekor", services.rekor_url) if failed == "tlog" or about_log else
                    ("Fulcio", services.fulcio_url) if failed in ("certificate", "chain", "sct") else
                    ("Fulcio/Rekor", services.rekor_url))
    raise IntegrityError(f"{service} at {url} returned an entry that does not verify ({outcome.reason}); "
                         "nothing was pushed")
