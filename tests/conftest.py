"""Test harness: real registries on loopback, image factories, and a network guard.

- ``registry`` / ``registry2``: Debian's ``docker-registry`` (distribution 2.8), fresh per test.
- ``tls_auth_registry``: the same with a self-signed CA and htpasswd basic auth.
- ``referrers_registry``: go-containerregistry's registry with the OCI Referrers API;
  ``distribution3``: distribution v3's ``registry``.
- ``make_image(reg, repo, ...)``: builds and pushes real images with raw HTTP (not airgap's client).
- The network guard (autouse) fails any connection or DNS lookup that is not to loopback.

A test that needs a peer binary skips when it is missing, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.fixtures_sigstore import keyless_identity, mini_sigstore, mini_sigstore_files  # noqa: E402,F401
from support.images import Image, Pusher, push_image  # noqa: E402
from support.minitsa import other_tsa, tsa  # noqa: E402,F401
from support.registries import BINARIES, Registry, find_tool, start_registry  # noqa: E402

CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """Path of a peer tool; fail under CI=true when missing, else skip."""
    path = find_tool(name)
    if path is None:
        message = f"peer tool {name!r} is not installed (run scripts/install-peers.sh)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


# ---- network guard -------------------------------------------------------------------------------

class NetworkBlocked(AssertionError):
    pass


def _is_loopback(host: Any) -> bool:
    if host in ("localhost", "localhost.", "") or host is None:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail on any socket connect or DNS lookup that is not loopback; records what was attempted."""
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            attempts.append(f"{host}:{address[1]}")
            if not _is_loopback(host):
                raise NetworkBlocked(f"network guard: connection to {host}:{address[1]} is not loopback")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if not _is_loopback(host):
            attempts.append(f"dns:{host}")
            raise NetworkBlocked(f"network guard: DNS lookup of {host!r} is not allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts


# ---- registries ----------------------------------------------------------------------------------

def _registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Registry]]:
    started: list[Registry] = []

    def start(kind: str = "distribution2", **kwargs: Any) -> Registry:
        require_tool(BINARIES[kind])
        reg = start_registry(tmp_path_factory.mktemp(f"reg-{kind}"), kind=kind, **kwargs)
        started.append(reg)
        return reg

    yield start
    for reg in started:
        reg.stop()


@pytest.fixture
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Registry]]:
    """``registry_factory(kind="distribution2"|"distribution3"|"referrers", tls=..., auth=...)``: one per test."""
    yield from _registries(tmp_path_factory)


@pytest.fixture(scope="module")
def module_registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Registry]]:
    """Like ``registry_factory``, shared by a module's tests (they must use distinct repositories)."""
    yield from _registries(tmp_path_factory)


@pytest.fixture
def registry(registry_factory: Callable[..., Registry]) -> Registry:
    return registry_factory()


@pytest.fixture
def registry2(registry_factory: Callable[..., Registry]) -> Registry:
    return registry_factory()


@pytest.fixture
def tls_auth_registry(registry_factory: Callable[..., Registry]) -> Registry:
    return registry_factory(tls=True, auth=("airgap", "s3cret-pass"))


@pytest.fixture
def referrers_registry(registry_factory: Callable[..., Registry]) -> Registry:
    """A registry serving the OCI 1.1 Referrers API (go-containerregistry's, built by install-peers)."""
    return registry_factory(kind="referrers")


@pytest.fixture
def distribution3(registry_factory: Callable[..., Registry]) -> Registry:
    return registry_factory(kind="distribution3")


def pusher_for(reg: Registry) -> Pusher:
    auth = (reg.username, reg.password) if reg.username and reg.password else None
    return Pusher(reg.url, auth=auth, verify=str(reg.tls.ca_pem) if reg.tls else True)


@pytest.fixture
def make_image() -> Callable[..., Image]:
    """``make_image(reg, repo, tag="1.0", platforms=(...), layer_sizes=(...), docker=False, ...)``."""

    def make(reg: Registry, repo: str, tag: str | None = "1.0", **kwargs: Any) -> Image:
        return push_image(pusher_for(reg), repo, tag, **kwargs)

    return make
