"""The harness's network guard itself: loopback passes, anything else fails the test."""

import socket

import pytest
from conftest import NetworkBlocked


def test_non_loopback_connect_is_blocked(network_guard: list[str]) -> None:
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    assert any("192.0.2.1" in a for a in network_guard)


def test_dns_lookup_is_blocked() -> None:
    with pytest.raises(NetworkBlocked):
        socket.getaddrinfo("registry-1.docker.io", 443)


def test_copy_touches_only_the_named_registries(registry, registry2, make_image, network_guard) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from airgap.cli import cli

    make_image(registry, "n/app", "1")
    network_guard.clear()
    result = CliRunner().invoke(cli, ["copy", f"{registry.host}/n/app:1", f"{registry2.host}/n/app:1"])
    assert result.exit_code == 0, result.stderr
    ports = {a.rsplit(":", 1)[1] for a in network_guard}
    assert ports <= {registry.host.rsplit(":", 1)[1], registry2.host.rsplit(":", 1)[1]}, network_guard
