"""Guarantee 10, connections go only where the user pointed: a registry's redirect to another host:port, or
from https to http, is refused (one line naming both hosts) unless the user allowed that host with
`--allow-redirect`; redirects within the registry's host (and http -> https there) are followed; and a
record of every connection `airgap verify` makes shows only the registry named in the ref (or the
`--registry-alias` address it was given).

The "registry that redirects" is a loopback proxy in front of the real docker-registry
(tests/support/faultproxy.py) answering every manifest and blob GET with a 307 to another proxy on another
port (`localhost:<port>`: another host name and port, the same registry behind it).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import pusher_for
from cryptography.hazmat.primitives.asymmetric import ec
from support.faultproxy import FaultProxy
from support.images import Image
from support.registries import Registry, make_tls

from airgap.cli import cli
from airgap.config import RegistryOptions
from airgap.errors import TransportError
from airgap.keys.private import KeySigner
from airgap.keys.public import public_pem
from airgap.oci.registry import RegistryClient
from airgap.oci.transport import ProxyConfig, RedirectRefused, Transport
from airgap.signing.sign import sign_image

SIGNER = KeySigner(ec.generate_private_key(ec.SECP256R1()))


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def image(registry: Registry, make_image: Callable[..., Image]) -> Image:
    img = make_image(registry, "team/app", "1.0", layer_sizes=(4000,))
    sign_image(f"{registry.host}/team/app:1.0", SIGNER, client=RegistryClient())
    return img


@pytest.fixture
def pub(tmp_path: Path) -> Path:
    path = tmp_path / "release.pub"
    path.write_bytes(public_pem(SIGNER.public_key))
    return path


@pytest.fixture
def redirecting(registry: Registry) -> Iterator[tuple[FaultProxy, FaultProxy]]:
    """(front, storage): front redirects every manifest and blob GET to storage, another host:port."""
    storage = FaultProxy(registry.host).start()
    front = FaultProxy(registry.host).start()
    storage_host = f"localhost:{storage.host.rsplit(':', 1)[1]}"
    front.add("redirect", "/manifests/", status=307, location=f"http://{storage_host}")
    front.add("redirect", "/blobs/", status=307, location=f"http://{storage_host}")
    yield front, storage
    front.stop()
    storage.stop()


def storage_name(storage: FaultProxy) -> str:
    return f"localhost:{storage.host.rsplit(':', 1)[1]}"


# ---- a redirect to another host -------------------------------------------------------------------

def test_copy_refuses_a_redirect_to_another_host(image: Image, redirecting: tuple[FaultProxy, FaultProxy],
                                                 registry2: Registry, tmp_path: Path) -> None:
    front, storage = redirecting
    result = run("copy", f"{front.host}/team/app:1.0", f"{registry2.host}/team/app:1.0")
    assert result.exit_code == 1
    err = result.stderr
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"redirect from {front.host} to {storage_name(storage)} refused" in err, err
    assert f"--allow-redirect {storage_name(storage)}" in err, err
    assert storage.log == []  # never contacted
    assert pusher_for(registry2).tags("team/app") == []


def test_copy_follows_a_redirect_to_an_allowed_host(image: Image, redirecting: tuple[FaultProxy, FaultProxy],
                                                    registry2: Registry) -> None:
    front, storage = redirecting
    result = run("copy", "--allow-redirect", storage_name(storage), f"{front.host}/team/app:1.0",
                 f"{registry2.host}/team/app:1.0")
    assert result.exit_code == 0, result.stderr
    assert pusher_for(registry2).get_manifest("team/app", "1.0")[0] == image.manifest
    assert any("/blobs/" in path for _, path, _ in storage.log)  # the blobs did come from "storage"
    # Without a port, the default ports of the redirect's scheme: this one is :<port>, so it is still refused.
    refused = run("copy", "--allow-redirect", "localhost", f"{front.host}/team/app:1.0",
                  f"{registry2.host}/other/app:1.0")
    assert refused.exit_code == 1 and "refused" in refused.stderr


def test_verify_denies_on_a_redirect_elsewhere_unless_allowed(image: Image, pub: Path,
                                                              redirecting: tuple[FaultProxy, FaultProxy]) -> None:
    front, storage = redirecting
    ref = f"{front.host}/team/app:1.0"
    out = run("verify", "--key", str(pub), "--insecure-ignore-tlog", ref)
    assert out.exit_code == 1
    assert f"reason: GET {front.host}/v2/team/app/manifests/1.0: redirect from {front.host} to " \
           f"{storage_name(storage)} refused (another host)" in out.stdout, out.stdout
    assert storage.log == []
    out = run("verify", "--key", str(pub), "--insecure-ignore-tlog", "--allow-redirect", storage_name(storage), ref)
    assert out.exit_code == 0, out.stdout + out.stderr
    assert storage.log


def test_bad_allow_redirect_value_is_a_usage_error(registry: Registry) -> None:
    out = run("copy", "--allow-redirect", "https://storage.example/x", f"{registry.host}/a/b:1", "oci:/tmp/x")
    assert out.exit_code == 2 and out.stderr.startswith("error: --allow-redirect 'https://storage.example/x'")


# ---- scheme changes: http -> https on the same host is followed, https -> http is refused ---------

class DualServer:
    """One loopback port speaking TLS or plain HTTP (whichever the client starts with), redirecting:
    /up (plain) -> https://same/end, /down (TLS) -> http://same/end (or to ``down_to``), /end -> 200 "end"."""

    def __init__(self, tls_dir: Path) -> None:
        tls = make_tls(tls_dir)
        self.ca = str(tls.ca_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls.cert_pem), str(tls.key_pem))
        server = self
        self.down_to: str | None = None
        self.seen: list[tuple[str, str, str | None]] = []  # (scheme, path, Authorization)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
                server.seen.append((scheme, self.path, self.headers.get("Authorization")))
                if self.path == "/end":
                    body = f"end over {scheme}".encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                target = {"/up": f"https://127.0.0.1:{server.port}/end",
                          "/down": server.down_to or f"http://127.0.0.1:{server.port}/end"}[self.path]
                self.send_response(301 if self.path == "/up" else 302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[Any, Any]:
                sock, addr = super().get_request()
                if sock.recv(1, socket.MSG_PEEK) == b"\x16":
                    sock = context.wrap_socket(sock, server_side=True)
                return sock, addr

        self.httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def dual(tmp_path: Path) -> Iterator[DualServer]:
    server = DualServer(tmp_path / "tls")
    yield server
    server.stop()


def test_upgrade_to_https_on_the_same_host_is_followed(dual: DualServer) -> None:
    transport = Transport(RegistryOptions(ca_file=dual.ca), ProxyConfig())
    resp = transport.request("GET", f"http://127.0.0.1:{dual.port}/up", headers={"Authorization": "Bearer t"})
    assert (resp.status_code, resp.content) == (200, b"end over https")
    assert dual.seen == [("http", "/up", "Bearer t"), ("https", "/end", "Bearer t")]  # same host: kept


def test_downgrade_from_https_to_http_is_refused_even_on_the_same_host(dual: DualServer) -> None:
    transport = Transport(RegistryOptions(ca_file=dual.ca), ProxyConfig())
    with pytest.raises(RedirectRefused, match=rf"^GET 127\.0\.0\.1:{dual.port}/down: redirect from https to "
                                              rf"http://127\.0\.0\.1:{dual.port} refused \(TLS downgrade\); "
                                              rf"pass --allow-redirect 127\.0\.0\.1:{dual.port} to follow it$"):
        transport.request("GET", f"https://127.0.0.1:{dual.port}/down")
    assert [s for s, *_ in dual.seen] == ["https"]
    allowed = Transport(RegistryOptions(ca_file=dual.ca, redirect_hosts=frozenset({f"127.0.0.1:{dual.port}"})),
                        ProxyConfig())
    assert allowed.request("GET", f"https://127.0.0.1:{dual.port}/down").content == b"end over http"


def test_authorization_never_follows_a_redirect_to_another_host(dual: DualServer, tmp_path: Path) -> None:
    storage = DualServer(tmp_path / "storage-tls")
    try:
        dual.down_to = f"http://localhost:{storage.port}/end"
        transport = Transport(RegistryOptions(ca_file=dual.ca, redirect_hosts=frozenset({
            f"localhost:{storage.port}"})), ProxyConfig())
        resp = transport.request("GET", f"https://127.0.0.1:{dual.port}/down", headers={"Authorization": "Bearer t"})
        assert (resp.status_code, resp.content) == (200, b"end over http")
        assert dual.seen == [("https", "/down", "Bearer t")]
        assert storage.seen == [("http", "/end", None)]  # the registry's token stayed with the registry
    finally:
        storage.stop()


def test_redirect_to_a_strange_scheme_is_refused(serve_redirect: Callable[[str], str]) -> None:
    url = serve_redirect("file:///etc/passwd")
    with pytest.raises(TransportError, match="unsupported URL"):
        Transport(RegistryOptions(), ProxyConfig()).request("GET", url)


@pytest.fixture
def serve_redirect() -> Iterator[Callable[[str], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(location: str) -> str:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/x"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


# ---- every connection `airgap verify` makes -------------------------------------------------------

@pytest.fixture
def airgap_connections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Ports of every TCP connection made by airgap's threads (the main thread and its pools), on top of
    the network guard. The test's own proxies connect from their request-handler threads: not counted."""
    ports: list[int] = []
    connect = socket.socket.connect

    def recording(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and \
                "process_request_thread" not in threading.current_thread().name:
            ports.append(int(address[1]))
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    return ports


def port_of(host: str) -> int:
    return int(host.rsplit(":", 1)[1])


def test_verify_connects_only_to_the_registry_in_the_ref(image: Image, pub: Path, registry: Registry,
                                                         airgap_connections: list[int]) -> None:
    out = run("verify", "--key", str(pub), "--insecure-ignore-tlog", f"{registry.host}/team/app:1.0")
    assert out.exit_code == 0, out.stdout
    assert airgap_connections and set(airgap_connections) == {port_of(registry.host)}


def test_verify_connects_only_to_the_alias_target(image: Image, pub: Path, registry: Registry,
                                                  airgap_connections: list[int]) -> None:
    out = run("verify", "--key", str(pub), "--insecure-ignore-tlog", "--registry-alias",
              f"127.0.0.1:31999={registry.host}", "127.0.0.1:31999/team/app:1.0")
    assert out.exit_code == 0, out.stdout
    assert airgap_connections and set(airgap_connections) == {port_of(registry.host)}  # never :31999


def test_verify_never_connects_to_where_a_registry_redirects(image: Image, pub: Path,
                                                             redirecting: tuple[FaultProxy, FaultProxy],
                                                             airgap_connections: list[int]) -> None:
    front, storage = redirecting
    out = run("verify", "--key", str(pub), "--insecure-ignore-tlog", f"{front.host}/team/app:1.0")
    assert out.exit_code == 1
    assert airgap_connections and set(airgap_connections) == {port_of(front.host)}
    airgap_connections.clear()
    out = run("verify", "--key", str(pub), "--insecure-ignore-tlog", "--allow-redirect", storage_name(storage),
              f"{front.host}/team/app:1.0")
    assert out.exit_code == 0
    assert set(airgap_connections) == {port_of(front.host), port_of(storage.host)}
