"""Guarantee 9, every network operation has a deadline: a registry that accepts and never answers, drips its
header block, or drips its body a byte a second ends every operation in bounded time, with one line naming
the host and the request (real sockets, tests/support/slowserver.py).

A per-read timeout alone does not do this: each dripped byte resets it. An overall deadline per operation
(`-t/--timeout`, `verify_image(timeout=)`) does, and without one (copy, pack, load) the stall detector does.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.signing import KeyPair, write_keypair
from support.slowserver import MODES, SlowServer

from airgap.cli import cli
from airgap.config import Limits, RegistryOptions
from airgap.errors import TransportError
from airgap.oci.registry import RegistryClient

DEADLINE = 2.0
SLACK = 1.5  # the process is already running (CliRunner); this is scheduling noise on a busy machine


@pytest.fixture(params=MODES)
def slow(request: pytest.FixtureRequest) -> Iterator[SlowServer]:
    server = SlowServer(request.param)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_keypair(tmp_path_factory.mktemp("keys"), "k")


def run(*args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr, time.monotonic() - started


def assert_names_host_and_request(message: str, server: SlowServer) -> None:
    assert "deadline of 2s exceeded while " in message, message
    if server.mode == "silent":  # not even the ping is answered
        assert f"GET {server.host}/v2/" in message, message
    else:
        assert f"GET {server.host}/v2/team/app/manifests/1.0" in message, message
        assert len(server.requests) == 1, server.requests  # the deadline is final: no retry


def test_verify_cli_ends_at_its_timeout(slow: SlowServer, key: KeyPair) -> None:
    code, out, err, seconds = run("verify", "--key", str(key.public_path), "--insecure-ignore-tlog", "-t", "2s",
                                  f"{slow.host}/team/app:1.0")
    assert seconds < DEADLINE + SLACK, f"took {seconds:.1f}s"
    assert code == 1 and err == "error: 1 of 1 image(s) failed verification\n", err
    reason = next(line for line in out.splitlines() if "reason:" in line)
    assert_names_host_and_request(reason, slow)


def test_copy_cli_ends_at_its_timeout(slow: SlowServer, tmp_path: Path) -> None:
    code, _, err, seconds = run("copy", "--timeout", "2", f"{slow.host}/team/app:1.0", f"oci:{tmp_path}/out")
    assert seconds < DEADLINE + SLACK, f"took {seconds:.1f}s"
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert_names_host_and_request(err, slow)


def test_sign_cli_ends_at_its_timeout(slow: SlowServer, key: KeyPair) -> None:
    code, _, err, seconds = run("sign", "--key", str(key.private_path), "-t", "2s", f"{slow.host}/team/app:1.0")
    assert seconds < DEADLINE + SLACK, f"took {seconds:.1f}s"
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "deadline of 2s exceeded while " in err and slow.host in err, err


def test_verify_image_timeout_is_a_denial_with_the_reason(slow: SlowServer, key: KeyPair) -> None:
    from airgap import Trust, verify_image
    from airgap.verification.adhoc import policy_for_keys

    trust = Trust.from_keys([("k.pub", key.public_pem)])
    started = time.monotonic()
    result = verify_image(f"{slow.host}/team/app:1.0", trust, policy=policy_for_keys(trust, require_tlog=False),
                          client=RegistryClient(), timeout=DEADLINE)
    seconds = time.monotonic() - started
    assert seconds < DEADLINE + SLACK, f"took {seconds:.1f}s"
    assert not result and result.decision == "deny" and len(result.reasons) == 1
    assert_names_host_and_request(result.reasons[0], slow)


def test_defaults_are_documented_and_cosign_like() -> None:
    from airgap import Verifier, verify_image

    assert inspect.signature(verify_image).parameters["timeout"].default == 180.0
    assert Verifier.__dataclass_fields__["timeout"].default == 180.0
    assert (Limits().timeout, Limits().bulk_timeout) == (180.0, None)
    for command, default in (("verify", "3m"), ("sign", "3m"), ("attest", "3m"), ("copy", "none"),
                             ("pack", "none"), ("load", "none"), ("audit", "none")):
        out = CliRunner().invoke(cli, [command, "--help"]).stdout
        assert "-t, --timeout DURATION" in out and f"[default: {default}" in " ".join(out.split()), command
    result = CliRunner().invoke(cli, ["verify", "-t", "soon", "127.0.0.1:1/x:1"])
    assert result.exit_code == 2 and "invalid duration 'soon'" in result.stderr


@pytest.mark.parametrize("mode", ["drip-headers", "drip-body"])
def test_stall_detector_ends_a_dripping_transfer_without_a_deadline(mode: str) -> None:
    """copy, pack and load run without an overall deadline by default: a response that delivers less than
    stall_bytes per stall_seconds of waiting is aborted (and retried, like a reset), so they end too."""
    server = SlowServer(mode, interval=0.5)
    try:
        limits = replace(Limits(), stall_seconds=1.5, retries=1, backoff_base=0.05)
        client = RegistryClient(RegistryOptions(limits=limits))
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"stalled: less than 16384 bytes in 1\.5s") as caught:
            client.get_manifest(server.host, "team/app", "1.0")
        seconds = time.monotonic() - started
        assert seconds < 2 * 1.5 + 2 * 0.5 + SLACK, f"took {seconds:.1f}s"
        assert len(server.requests) == 2  # one retry, as for a reset
        assert server.host in str(caught.value)
    finally:
        server.stop()


def test_a_deadline_caps_retry_waits() -> None:
    """Backoff and Retry-After never sleep past the deadline: the next attempt reports it instead."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Busy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(503)
            self.send_header("Retry-After", "30")
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{httpd.server_address[1]}"
        started = time.monotonic()
        code, _, err, _ = run("copy", "-t", "2s", f"{host}/team/app:1.0", "oci:/nonexistent-never-written")
        seconds = time.monotonic() - started
        assert seconds < DEADLINE + SLACK, f"took {seconds:.1f}s"
        assert code == 1 and f"deadline of 2s exceeded while GET {host}/v2/team/app/manifests/1.0" in err, err
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture()
def unanswered_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A registry name whose lookup never answers (a site whose DNS server is unreachable). The system resolver
    cannot be pointed at a silent DNS server from a test without changing /etc/resolv.conf for the whole
    machine, so getaddrinfo is wrapped: the one name blocks until the test ends, every other lookup is real."""
    import socket
    import threading

    name = "registry.unanswered.test"
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (name, name.encode()):
            return real(host, *args, **kwargs)
        if kwargs.get("flags", args[4] if len(args) > 4 else 0) & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")  # not an address
        release.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield f"{name}:5000"
    release.set()


def test_a_name_lookup_that_never_answers_ends_at_the_deadline(unanswered_dns: str, key: KeyPair) -> None:
    code, out, _, seconds = run("verify", "--key", str(key.public_path), "--insecure-ignore-tlog", "-t", "2s",
                                f"{unanswered_dns}/team/app:1.0")
    assert seconds < DEADLINE + SLACK, f"took {seconds:.1f}s"
    reason = next(line for line in out.splitlines() if "reason:" in line)
    assert code == 1 and f"deadline of 2s exceeded while GET {unanswered_dns}/v2/" in reason, reason


def test_a_name_lookup_that_never_answers_ends_at_the_connect_timeout(unanswered_dns: str) -> None:
    limits = replace(Limits(), connect_timeout=1.0, retries=0)
    started = time.monotonic()
    with pytest.raises(TransportError) as caught:
        RegistryClient(RegistryOptions(limits=limits)).get_manifest(unanswered_dns, "team/app", "1.0")
    seconds = time.monotonic() - started
    assert seconds < 1.0 + SLACK, f"took {seconds:.1f}s"
    assert str(caught.value) == (f"GET https://{unanswered_dns}/v2/team/app/manifests/1.0 failed after 1 attempt(s): "
                                 "resolving registry.unanswered.test took longer than 1s")
