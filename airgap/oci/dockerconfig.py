"""Registry credentials from Docker's configuration, found the way the Docker CLI (and cosign, crane) finds them.

The file is ``$DOCKER_CONFIG/config.json`` when ``DOCKER_CONFIG`` is set, else ``~/.docker/config.json``;
files named in :attr:`~airgap.config.RegistryOptions.auth_configs` are consulted first. For one registry host:

1. ``credHelpers[host]``, else ``credsStore``: run ``docker-credential-<name> get`` with the server address
   on stdin (bounded by a timeout and the operation's deadline); ``{"Username", "Secret"}`` comes back,
   where the user name ``<token>`` means the secret is an identity token (an OAuth2 refresh token);
2. ``auths[host]`` (keys may be URLs: ``https://host/v1/`` matches ``host``): ``auth`` (base64 of
   ``user:password``), or ``username``/``password``, or ``identitytoken``.

``localhost`` and ``127.0.0.1`` stand for each other, and Docker Hub's API host is also looked up under its
legacy ``https://index.docker.io/v1/`` key. A file that is not what Docker writes fails with one line naming
the file, when credentials are first needed (a registry that asks for none never reads it).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from airgap.errors import AuthError, ConfigError
from airgap.jsondoc import json_object
from airgap.oci import deadline

__all__ = ["Credentials", "DockerConfig", "default_config_path"]

_HUB = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HELPER_OUTPUT_MAX = 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str | None = None  # an OAuth2 refresh token, exchanged at the token endpoint

    @property
    def basic(self) -> str | None:
        """base64 of ``user:password`` (the Basic auth value), or None without a user name."""
        if not self.username:
            return None
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def default_config_path() -> str:
    """``$DOCKER_CONFIG/config.json`` when DOCKER_CONFIG is set, else ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(directory, "config.json")


def _hostname(key: str) -> str:
    """Docker's ConvertToHostname: ``https://host:port/v1/`` -> ``host:port``."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.split("/", 1)[0].lower()


def _candidates(host: str) -> list[str]:
    names = [host.lower()]
    if "localhost" in names[0]:
        names.append(names[0].replace("localhost", "127.0.0.1"))
    elif "127.0.0.1" in names[0]:
        names.append(names[0].replace("127.0.0.1", "localhost"))
    if names[0] in _HUB:
        names += [n for n in _HUB if n not in names]
    return names


@dataclass(frozen=True)
class _File:
    path: str
    auths: dict[str, dict[str, Any]]
    helpers: dict[str, str]
    store: str | None

    @classmethod
    def read(cls, path: str) -> _File | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"Docker config {path}: cannot read it ({exc.strerror or exc})") from None
        doc = json_object(data, f"Docker config {path}", ConfigError)
        auths, helpers, store = doc.get("auths") or {}, doc.get("credHelpers") or {}, doc.get("credsStore")
        if not isinstance(auths, dict) or not all(isinstance(v, dict) for v in auths.values()):
            raise ConfigError(f"Docker config {path}: 'auths' must map registries to objects")
        if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
            raise ConfigError(f"Docker config {path}: 'credHelpers' must map registries to helper names")
        if store is not None and not isinstance(store, str):
            raise ConfigError(f"Docker config {path}: 'credsStore' must be a helper name")
        return cls(path, {_hostname(k): v for k, v in auths.items()},
                   {_hostname(k): v for k, v in helpers.items()}, store or None)

    def entry(self, host: str) -> Credentials | None:
        """Credentials stored inline in ``auths`` for ``host``."""
        entry = self.auths.get(host)
        if entry is None:
            return None
        where = f"Docker config {self.path}: auths[{host!r}]"
        username, password = entry.get("username") or "", entry.get("password") or ""
        token = entry.get("identitytoken") or None
        if not all(isinstance(v, str) for v in (username, password, token or "")):
            raise ConfigError(f"{where}: username, password and identitytoken must be strings")
        auth = entry.get("auth")
        if auth:
            if not isinstance(auth, str):
                raise ConfigError(f"{where}.auth must be a string")
            try:
                pair = base64.b64decode(auth, validate=True).decode()
            except (binascii.Error, ValueError):
                raise ConfigError(f"{where}.auth is not base64 of user:password") from None
            username, sep, password = pair.partition(":")
            if not sep:
                raise ConfigError(f"{where}.auth is not base64 of user:password (no ':')")
        if not username and not token:
            return None  # a bare entry: the credential store holds the secret
        return Credentials(username, password, token)


class DockerConfig:
    """The Docker config files to consult, read once when credentials are first asked for."""

    def __init__(self, extra: tuple[str, ...] = (), helper_timeout: float = 30.0) -> None:
        self.paths = list(dict.fromkeys([*extra, default_config_path()]))
        self.helper_timeout = helper_timeout
        self._files: list[_File] | None = None

    def files(self) -> list[_File]:
        if self._files is None:
            self._files = [f for f in (_File.read(p) for p in self.paths) if f is not None]
        return self._files

    def credentials(self, host: str) -> Credentials | None:
        """Credentials for registry ``host`` (``host[:port]``), or None when no file has any."""
        for file in self.files():
            for name in _candidates(host):
                helper = file.helpers.get(name) or file.store
                found = (self._from_helper(file, helper, name) if helper else None) or file.entry(name)
                if found is not None:
                    return found
        return None

    def _from_helper(self, file: _File, helper: str, host: str) -> Credentials | None:
        """``docker-credential-<helper> get``: None when it has nothing for ``host``."""
        if not _HELPER_NAME.fullmatch(helper):
            raise ConfigError(f"Docker config {file.path}: credential helper name {helper!r} is not valid")
        program = f"docker-credential-{helper}"
        server = "https://index.docker.io/v1/" if host in _HUB else host
        limit = deadline.current()  # the operation's deadline bounds the helper too
        timeout = self.helper_timeout if limit is None else min(self.helper_timeout, limit.check(program))
        try:
            proc = subprocess.run([program, "get"], input=server.encode(), capture_output=True,
                                  timeout=timeout, check=False)
        except FileNotFoundError:
            raise AuthError(f"{program} (credential helper for {host} in {file.path}) is not on PATH") from None
        except subprocess.TimeoutExpired:
            if limit is not None and limit.remaining() <= 0:
                raise limit.exceeded(f"running {program} for {host}") from None
            raise AuthError(f"{program} (credential helper for {host}) did not answer within "
                            f"{self.helper_timeout:g}s") from None
        except OSError as exc:
            raise AuthError(f"{program} (credential helper for {host}) could not run: {exc.strerror or exc}"
                            ) from None
        out = proc.stdout[:_HELPER_OUTPUT_MAX]
        if proc.returncode != 0:
            message = (out or proc.stderr).decode(errors="replace").strip()
            if "credentials not found" in message.lower() or not message:
                return None
            raise AuthError(f"{program} get {host} failed: {message.splitlines()[0][:200]}")
        doc = json_object(out, f"{program} get {host} output", AuthError)
        username, secret = doc.get("Username"), doc.get("Secret")
        if not isinstance(username, str) or not isinstance(secret, str):
            raise AuthError(f"{program} get {host}: output lacks Username and Secret strings")
        if not secret:
            return None
        if username == "<token>":
            return Credentials(identity_token=secret)
        return Credentials(username, secret)
