"""Where and who for keyless signing: the Sigstore instance (Fulcio, Rekor v1, the trusted root that checks their
answers, the deadlines of calls to them) and the OIDC identity token that buys a certificate.

Which Sigstore: ``--signing-config`` (sigstore's ``signing_config.json``, as cosign v3 reads it, parsed by
sigstore-python; its Fulcio and its Rekor v1 log), ``--fulcio-url``/``--rekor-url`` (which override it), else the
public-good instance named in the signing config shipped inside sigstore-python. ``--trusted-root`` checks what
they return (the public-good root shipped with sigstore-python when none is given, which only fits the public-good
services: a private Sigstore must come with its root). Plain HTTP only to loopback: the token would travel in clear.

The token is only read here (sigstore-python's ``IdentityToken``: audience ``sigstore``, required claims, validity
period); Fulcio verifies it. Its errors are one line each and never quote the token.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airgap.errors import ConfigError, first_line

if TYPE_CHECKING:
    from airgap.checks.roots import TrustedRoot

ENV_TOKEN = "SIGSTORE_ID_TOKEN"  # noqa: S105  (the variable's name, not a token)
AUDIENCE = "sigstore"
_PUBLIC_GOOD_STORE = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
_LOOPBACK = ("localhost", "::1")


class IdentityTokenError(ConfigError):
    """The identity token is missing, malformed, for another audience, or outside its validity."""


# ---- where: the Sigstore instance ---------------------------------------------------------------------

@dataclass(frozen=True)
class Services:
    """A Sigstore instance to sign with: Fulcio and Rekor (v1) URLs, the root that checks their answers, and
    the deadlines of the calls to them (seconds: per connect, per read, and for one whole exchange: the
    certificate request, or one log entry; no request starts past it and none waits beyond it)."""

    fulcio_url: str
    rekor_url: str
    trusted_root: TrustedRoot
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    timeout: float = 180.0


def _check_url(url: str, what: str) -> str:
    """http(s) URLs only, plain HTTP only on loopback (the identity token must not cross a network in clear)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} {url!r} is not an http(s) URL")
    if parts.scheme == "http" and not (parts.hostname in _LOOPBACK or parts.hostname.startswith("127.")):
        raise ConfigError(f"{what} {url!r}: plain HTTP is only allowed to a loopback address")
    return url.rstrip("/")


def _signing_config_urls(data: bytes, what: str) -> tuple[str, str]:
    """(Fulcio URL, Rekor v1 URL) from a sigstore ``signing_config.json`` (v0.2), through sigstore-python's
    parser (valid services only, one per operator, Rekor v1 because cosign v2 annotations need a SET)."""
    from sigstore.models import SigningConfig
    from sigstore_models.trustroot import v1 as trustroot_v1

    try:
        config = SigningConfig(trustroot_v1.SigningConfig.from_json(data), tlog_version=1)
        fulcio, rekor = config.get_fulcio(), config.get_tlogs()[0]
    except Exception as exc:  # pydantic and sigstore errors alike: the file is unusable, say so in one line
        raise ConfigError(f"{what}: not a usable signing config ({first_line(exc)})") from None
    rekor_url = str(getattr(rekor, "url", ""))
    return str(fulcio.url), rekor_url.removesuffix("/api/v1")


def _public_good_signing_config() -> bytes:
    from importlib import resources

    try:
        return (resources.files("sigstore") / "_store" / _PUBLIC_GOOD_STORE / "signing_config.v0.2.json").read_bytes()
    except (OSError, ModuleNotFoundError) as exc:
        raise ConfigError(f"the sigstore package ships no public-good signing config ({exc})") from None


def resolve_services(*, signing_config: str | None = None, fulcio_url: str | None = None,
                     rekor_url: str | None = None, trusted_root: str | None = None,
                     connect_timeout: float = 10.0, read_timeout: float = 60.0,
                     timeout: float = 180.0) -> Services:
    """The Sigstore instance the flags name (see the module docstring)."""
    from airgap.checks.roots import TrustedRoot

    if signing_config is not None:
        try:
            data = Path(signing_config).read_bytes()
        except OSError as exc:
            raise ConfigError(f"signing config {signing_config}: {exc.strerror or exc}") from None
        config_fulcio, config_rekor = _signing_config_urls(data, f"signing config {signing_config}")
    else:
        config_fulcio, config_rekor = _signing_config_urls(_public_good_signing_config(),
                                                           "public-good signing config")
    private = signing_config is not None or fulcio_url is not None or rekor_url is not None
    if trusted_root is not None:
        root = TrustedRoot.from_file(trusted_root)
    elif private:
        raise ConfigError("--signing-config/--fulcio-url/--rekor-url name a private Sigstore: give its root "
                          "with --trusted-root")
    else:
        root = TrustedRoot.public_good()
    return Services(_check_url(fulcio_url or config_fulcio, "Fulcio URL"),
                    _check_url(rekor_url or config_rekor, "Rekor URL"), root,
                    connect_timeout=connect_timeout, read_timeout=read_timeout, timeout=timeout)


# ---- who: the identity token --------------------------------------------------------------------------

def read_identity_token(value: str | None) -> str | None:
    """``--identity-token``: the token, ``@FILE``, or (as cosign) the path of a file holding it; else the
    ``SIGSTORE_ID_TOKEN`` environment variable; None when there is neither."""
    value = value if value is not None else os.environ.get(ENV_TOKEN)
    if value is None or not value.strip():
        return None
    path = value[1:] if value.startswith("@") else value if os.path.isfile(value) else None
    if path is not None:
        try:
            value = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise IdentityTokenError(f"identity token file {path}: {getattr(exc, 'strerror', None) or exc}"
                                     ) from None
        if not value.strip():
            raise IdentityTokenError(f"identity token file {path} is empty")
    return value.strip()


@dataclass(frozen=True)
class TokenInfo:
    """What the (unverified) token says: Fulcio verifies it; we only refuse what Fulcio would refuse anyway."""

    identity: str
    issuer: str
    expires: datetime


def parse_identity_token(raw: str) -> Any:
    """A sigstore ``IdentityToken`` for ``raw``, with its errors turned into one line each: not a JWT, a
    missing claim, audience not ``sigstore``, expired or not yet valid."""
    import jwt
    from sigstore.oidc import IdentityError, IdentityToken

    try:
        return IdentityToken(raw, client_id=AUDIENCE)
    except IdentityError as exc:
        cause = exc.__cause__
        try:
            claims = jwt.decode(raw, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise IdentityTokenError("identity token: not a JWT") from None
        if isinstance(cause, jwt.ExpiredSignatureError) or (
                cause is None and isinstance(claims.get("exp"), int | float) and claims["exp"] <= time.time()):
            when = datetime.fromtimestamp(claims["exp"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise IdentityTokenError(f"identity token expired at {when}: get a fresh one") from None
        if isinstance(cause, jwt.InvalidAudienceError):
            raise IdentityTokenError(f"identity token is for audience {claims.get('aud')!r}, not {AUDIENCE!r}"
                                     ) from None
        if isinstance(cause, jwt.MissingRequiredClaimError):
            raise IdentityTokenError(f"identity token lacks the {cause.claim!r} claim") from None
        if isinstance(cause, jwt.ImmatureSignatureError) or cause is None:
            raise IdentityTokenError("identity token is not valid yet") from None
        raise IdentityTokenError(f"identity token: {first_line(cause)}") from None


def token_info(token: Any) -> TokenInfo:
    """Identity (the ``email`` claim when there is one, as Fulcio binds it, else sigstore's choice), issuer and
    expiry, as the unverified token claims them (Fulcio decides what the certificate binds)."""
    claims = token._unverified_claims  # sigstore 4.5.x: the decoded claims
    identity = str(claims.get("email") or token.identity)
    return TokenInfo(identity, str(token.issuer), datetime.fromtimestamp(int(claims["exp"]), UTC))
