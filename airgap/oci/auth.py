"""Registry authentication: anonymous and credentialed bearer tokens, and basic auth.

Credentials come from explicit options or Docker config files (``$DOCKER_CONFIG/config.json`` or
``~/.docker/config.json``, inline ``auths``, ``credHelpers`` and ``credsStore``); oras-py reads those files
and runs the credential helpers (imported only when a registry asks for credentials: oras-py pulls in
requests). What oras-py's single-token backends lack, and this module adds, is a token cache keyed by
(host, scope) that is safe to share between threads. Tokens are fetched over the registry client's own
:class:`~airgap.oci.transport.Transport`.
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from airgap.errors import AuthError, Error, TransportError
from airgap.jsondoc import load_json

if TYPE_CHECKING:
    from airgap.oci.transport import Transport

# auth-param = token "=" ( token / quoted-string ), RFC 7235 section 2.1
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("((?:[^"\\]|\\.)*)"|[^,\s]*)\s*,?')
_MAX_TOKEN_RESPONSE = 1024 * 1024


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    realm: str
    service: str | None
    scope: str | None


def parse_challenge(header: str) -> Challenge:
    """Parse a ``WWW-Authenticate`` header (``Bearer realm="..",service="..",scope=".."``)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted = match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(2)
        params.setdefault(match.group(1).lower(), value)
    return Challenge(scheme.lower(), params.get("realm", ""), params.get("service"), params.get("scope"))


def _docker_configs(extra: tuple[str, ...]) -> list[str]:
    configs = list(extra)
    if os.environ.get("DOCKER_CONFIG"):
        configs.append(os.path.join(os.environ["DOCKER_CONFIG"], "config.json"))
    return configs


class Authenticator:
    """Turns a 401 challenge into an ``Authorization`` header, caching per (host, scope)."""

    def __init__(self, configs: tuple[str, ...] = ()) -> None:
        self._configs = configs
        self._lock = threading.Lock()
        self._creds: dict[str, str | None] = {}  # host -> base64 "user:pass" (or None)
        self._headers: dict[tuple[str, str], tuple[str, float]] = {}  # (host, scope) -> (header, expiry)
        self._auth_config: dict[str, Any] | None = None

    def set_credentials(self, host: str, username: str, password: str) -> None:
        with self._lock:
            self._creds[host] = base64.b64encode(f"{username}:{password}".encode()).decode()

    def cached_header(self, host: str, scope: str) -> str | None:
        with self._lock:
            entry = self._headers.get((host, scope)) or self._headers.get((host, "*"))
        if entry and entry[1] > time.monotonic():
            return entry[0]
        return None

    def _basic(self, host: str) -> str | None:
        with self._lock:
            if host in self._creds:
                return self._creds[host]
        found = self._lookup_docker_config(host)
        with self._lock:
            self._creds.setdefault(host, found)
            return self._creds[host]

    def _lookup_docker_config(self, host: str) -> str | None:
        # oras-py knows the Docker config format and how to run credential helpers.
        from oras.auth.basic import BasicAuth
        from oras.utils import iter_localhosts

        from airgap.oci.dockerconfig import load_configs

        with self._lock:
            if self._auth_config is None:
                self._auth_config = load_configs(_docker_configs(self._configs))
            auth_config = self._auth_config
        backend = BasicAuth()
        backend._auth_config = auth_config
        for candidate in iter_localhosts(host):
            if backend._load_auth(candidate):
                return str(backend._basic_auth)
        if host == "registry-1.docker.io":
            for candidate in ("https://index.docker.io/v1/", "docker.io", "index.docker.io"):
                if backend._load_auth(candidate):
                    return str(backend._basic_auth)
        return None

    def authorize(self, transport: Transport, host: str, scope: str, header: str, insecure: bool) -> str:
        """Answer a challenge for ``scope`` on ``host``; return the Authorization header value.

        ``insecure``: ``host`` is an ``--insecure-registry``, so its token endpoint is not verified either."""
        challenge = parse_challenge(header)
        basic = self._basic(host)
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
        headers = {"Authorization": f"Basic {basic}"} if basic else {}
        url = challenge.realm
        if params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(params)
        try:
            resp = transport.request("GET", url, headers=headers, insecure=insecure)
            status = resp.status_code
            data = resp.body(_MAX_TOKEN_RESPONSE)
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
