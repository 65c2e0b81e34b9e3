"""Registry authentication: anonymous and credentialed bearer tokens (basic credentials, or an identity
token exchanged by OAuth2), and basic auth.

Credentials come from explicit options or the Docker config (see :mod:`airgap.oci.dockerconfig`, read only
when a registry asks for credentials). Tokens are cached per (host, scope), safe to share between threads,
and fetched over the registry client's own :class:`~airgap.oci.transport.Transport` (so the token endpoint
obeys the same TLS, proxy, redirect and deadline rules as the registry).
"""

from __future__ import annotations

import re
import threading
import time
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlencode, urlsplit

from airgap.errors import AuthError, Error, TransportError
from airgap.jsondoc import load_json
from airgap.oci.transport import FINAL

if TYPE_CHECKING:
    from airgap.oci.dockerconfig import Credentials, DockerConfig  # imported when credentials are needed
    from airgap.oci.transport import Transport

# auth-param = token "=" ( token / quoted-string ), RFC 7235 section 2.1 (compiled on first use, by re's cache)
_PARAM = r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)\s*,?'
_MAX_TOKEN_RESPONSE = 1024 * 1024


class Challenge(NamedTuple):
    scheme: str  # "basic" or "bearer"
    realm: str
    service: str | None
    scope: str | None


def parse_challenge(header: str) -> Challenge:
    """Parse a ``WWW-Authenticate`` header (``Bearer realm="..",service="..",scope=".."``)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in re.finditer(_PARAM, rest):
        quoted = match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(2)
        params.setdefault(match.group(1).lower(), value)
    return Challenge(scheme.lower(), params.get("realm", ""), params.get("service"), params.get("scope"))


class Authenticator:
    """Turns a 401 challenge into an ``Authorization`` header, caching per (host, scope)."""

    def __init__(self, configs: tuple[str, ...] = (), helper_timeout: float = 30.0) -> None:
        self._configs = configs
        self._helper_timeout = helper_timeout
        self._docker: DockerConfig | None = None
        self._lock = threading.Lock()
        self._creds: dict[str, Credentials | None] = {}  # host -> credentials (or None: anonymous)
        self._headers: dict[tuple[str, str], tuple[str, float]] = {}  # (host, scope) -> (header, expiry)

    def set_credentials(self, host: str, username: str, password: str) -> None:
        from airgap.oci.dockerconfig import Credentials

        with self._lock:
            self._creds[host] = Credentials(username, password)

    def cached_header(self, host: str, scope: str) -> str | None:
        with self._lock:
            entry = self._headers.get((host, scope)) or self._headers.get((host, "*"))
        if entry and entry[1] > time.monotonic():
            return entry[0]
        return None

    def _credentials(self, host: str) -> Credentials | None:
        with self._lock:
            if host in self._creds:
                return self._creds[host]
            if self._docker is None:
                from airgap.oci.dockerconfig import DockerConfig

                self._docker = DockerConfig(self._configs, self._helper_timeout)
            found = self._docker.credentials(host)  # under the lock: files read and helpers run once
            self._creds[host] = found
            return found

    def authorize(self, transport: Transport, host: str, scope: str, header: str, insecure: bool) -> str:
        """Answer a challenge for ``scope`` on ``host``; return the Authorization header value.

        ``insecure``: ``host`` is an ``--insecure-registry``, so its token endpoint is not verified either."""
        challenge = parse_challenge(header)
        creds = self._credentials(host)
        basic = creds.basic if creds is not None else None
        if challenge.scheme == "basic":
            if not basic:
                raise AuthError(f"{host} requires credentials: none found in the Docker config", 401)
            value = f"Basic {basic}"
            with self._lock:
                self._headers[(host, "*")] = (value, time.monotonic() + 3600)
            return value
        if challenge.scheme != "bearer" or not challenge.realm:
            raise AuthError(f"{host} sent an unsupported authentication challenge: {header[:80]}", 401)
        params = [("service", challenge.service)] if challenge.service else []
        params += [("scope", s) for s in sorted(set(filter(None, [scope, challenge.scope])))]
        try:
            if creds is not None and creds.identity_token:
                # OAuth2 refresh-token grant, as the Docker CLI does for an identity token.
                form = urlencode([*params, ("grant_type", "refresh_token"), ("client_id", "airgap"),
                                  ("refresh_token", creds.identity_token)]).encode()
                resp = transport.request("POST", challenge.realm, body=form, insecure=insecure,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
            else:
                url = challenge.realm
                if params:
                    url += ("&" if urlsplit(url).query else "?") + urlencode(params)
                headers = {"Authorization": f"Basic {basic}"} if basic else {}
                resp = transport.request("GET", url, headers=headers, insecure=insecure)
            status = resp.status_code
            data = resp.body(_MAX_TOKEN_RESPONSE)
        except FINAL:
            raise
        except TransportError as exc:
            raise AuthError(f"token request to {challenge.realm} failed: {exc}") from None
        if status in (401, 403):
            raise AuthError(f"{host} refused our credentials (token endpoint said {status})", status)
        if status != 200:
            raise AuthError(f"token endpoint {challenge.realm} answered {status}", status)
        try:
            body = load_json(data, f"token response of {challenge.realm}")
            token = body.get("token") or body.get("access_token")
            expires = float(body.get("expires_in") or 60)
        except (Error, ValueError, AttributeError, TypeError):
            token = None
        if not isinstance(token, str) or not token:
            raise AuthError(f"token endpoint {challenge.realm} returned no token")
        value = f"Bearer {token}"
        with self._lock:
            self._headers[(host, scope)] = (value, time.monotonic() + max(expires - 5, 1))
        return value
