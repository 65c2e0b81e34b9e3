"""The HTTP transport under the registry client: keep-alive reuse, servers that drop idle connections,
redirects that must not leak credentials, forward proxies (HTTP and CONNECT) from the environment, and the
cache of verified immutable content. Real registries where the behaviour is the registry's; tiny loopback
servers where a misbehaviour has to be staged."""

from __future__ import annotations

import hashlib
import select
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from support.images import Image
from support.registries import Registry

from airgap.config import RegistryOptions
from airgap.errors import TransportError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor
from airgap.oci.registry import RegistryClient
from airgap.oci.transport import ProxyConfig, Transport

# ---- tiny loopback servers -----------------------------------------------------------------------


class Server:
    """A ThreadingHTTPServer whose handler is a plain function; records (connection id, method, path, headers)."""

    def __init__(self, handle: Callable[[BaseHTTPRequestHandler, int], None]) -> None:
        self.seen: list[tuple[int, str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                conn_id = int(self.client_address[1])  # the client port names the connection
                server.seen.append((conn_id, self.command, self.path, dict(self.headers.items())))
                handle(self, sum(1 for c, *_ in server.seen if c == conn_id))

            do_GET = do_HEAD = do_POST = do_PUT = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def connections(self) -> int:
        return len({c for c, *_ in self.seen})

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler, int], None]], Server]]:
    servers: list[Server] = []

    def start(handle: Callable[[BaseHTTPRequestHandler, int], None]) -> Server:
        servers.append(Server(handle))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def plain_transport(**kwargs: Any) -> Transport:
    return Transport(RegistryOptions(**kwargs), ProxyConfig())


# ---- keep-alive ----------------------------------------------------------------------------------

def test_keep_alive_reuses_one_connection_per_host(registry: Registry, make_image: Callable[..., Image]) -> None:
    img = make_image(registry, "ka/app", "1.0", layer_sizes=(5000,))
    client = RegistryClient()
    for _ in range(5):
        assert client.get_manifest(registry.host, "ka/app", "1.0").digest == img.digest
        for digest, size in img.blobs.items():
            data = b"".join(client.open_blob(registry.host, "ka/app", Descriptor(mt.OCI_LAYER, digest, size)))
            assert hashlib.sha256(data).hexdigest() == digest.split(":")[1]
        client.head_manifest(registry.host, "ka/app", "1.0")
    assert client.transport.connections_opened == 1


def test_pool_outlives_the_threads_that_filled_it(registry: Registry, make_image: Callable[..., Image]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    img = make_image(registry, "ka/threads", "1.0", layer_sizes=(100,))
    client = RegistryClient()
    for _ in range(3):  # as verify_many does: a fresh thread pool per call
        with ThreadPoolExecutor(4) as pool:
            digests = set(pool.map(lambda _: client.get_manifest(registry.host, "ka/threads", "1.0").digest,
                                   range(16)))
        assert digests == {img.digest}
    assert client.transport.connections_opened <= 4


def test_idle_connection_closed_by_the_server_is_replaced(serve: Callable[..., Server]) -> None:
    # Answers, then closes the connection without announcing it (no "Connection: close").
    def handle(h: BaseHTTPRequestHandler, nth: int) -> None:
        reply(h, 200, b"ok")
        h.close_connection = True

    server = serve(handle)
    transport = plain_transport()
    for _ in range(3):
        resp = transport.request("GET", f"http://127.0.0.1:{server.port}/x")
        assert (resp.status_code, resp.content) == (200, b"ok")
    assert len(server.seen) == 3 and server.connections == 3


def test_connection_dropped_as_it_is_reused_is_retried_once_fresh(serve: Callable[..., Server]) -> None:
    # The race the idle check cannot see: the server reads the second request of a connection, then hangs up.
    def handle(h: BaseHTTPRequestHandler, nth: int) -> None:
        if nth == 2:
            h.close_connection = True
            return
        reply(h, 200, b"ok")

    server = serve(handle)
    transport = plain_transport()
    for _ in range(2):
        resp = transport.request("GET", f"http://127.0.0.1:{server.port}/x")
        assert (resp.status_code, resp.content) == (200, b"ok")
    assert [nth_path for _, _, nth_path, _ in server.seen] == ["/x", "/x", "/x"]
    assert server.connections == 2


def test_unread_large_body_closes_instead_of_poisoning_the_pool(serve: Callable[..., Server]) -> None:
    big = b"x" * 200_000

    def handle(h: BaseHTTPRequestHandler, nth: int) -> None:
        reply(h, 200, big if h.path == "/big" else b"small")

    server = serve(handle)
    transport = plain_transport()
    resp = transport.request("GET", f"http://127.0.0.1:{server.port}/big")
    assert resp.read(10) == b"x" * 10
    resp.close()
    assert transport.request("GET", f"http://127.0.0.1:{server.port}/s").content == b"small"
    assert server.connections == 2


def test_body_cut_short_is_an_error_not_short_data(serve: Callable[..., Server]) -> None:
    def handle(h: BaseHTTPRequestHandler, nth: int) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"y" * 400)
        h.close_connection = True

    server = serve(handle)
    resp = plain_transport().request("GET", f"http://127.0.0.1:{server.port}/")
    with pytest.raises(TransportError, match="IncompleteRead"):
        b"".join(resp.iter_content(256))


def test_chunked_and_read_until_close_bodies(serve: Callable[..., Server]) -> None:
    def handle(h: BaseHTTPRequestHandler, nth: int) -> None:
        h.send_response(200)
        if h.path == "/chunked":
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                h.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            h.wfile.write(b"0\r\nX-Trailer: t\r\n\r\n")
        else:  # neither length nor chunking: the body ends when the server closes
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b"until close")
            h.close_connection = True

    server = serve(handle)
    transport = plain_transport()
    base = f"http://127.0.0.1:{server.port}"
    for _ in range(2):  # the chunked response leaves the connection reusable
        resp = transport.request("GET", f"{base}/chunked")
        assert list(resp.iter_content(4)) == [b"hell", b"o ", b"chun", b"ked ", b"worl", b"d"]
    assert server.connections == 1
    assert transport.request("GET", f"{base}/close").content == b"until close"  # on the pooled connection
    assert transport.request("GET", f"{base}/chunked").content == b"hello chunked world"  # on a new one
    assert server.connections == 2


# ---- redirects -----------------------------------------------------------------------------------

def test_blob_redirect_to_storage_drops_authorization(serve: Callable[..., Server]) -> None:
    data = b"layer bytes" * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    storage = serve(lambda h, n: reply(h, 200, data))

    def registry(h: BaseHTTPRequestHandler, nth: int) -> None:
        if h.headers.get("Authorization") != "Basic dTpw":
            reply(h, 401, b"{}", {"WWW-Authenticate": 'Basic realm="test"'})
        elif "/blobs/" in h.path:
            # Another host name for the same loopback address: a different host to the client.
            reply(h, 307, headers={"Location": f"http://localhost:{storage.port}/store/{digest}?sig=1"})
        else:
            reply(h, 404)

    reg = serve(registry)
    host = f"127.0.0.1:{reg.port}"
    # The storage host is allowed (--allow-redirect): the legitimate case of a redirect to another host.
    client = RegistryClient(RegistryOptions(redirect_hosts=frozenset({f"localhost:{storage.port}"})))
    client.auth.set_credentials(host, "u", "p")
    got = b"".join(client.open_blob(host, "team/app", Descriptor(mt.OCI_LAYER, digest, len(data))))
    assert got == data
    # (After the scheme ping, GET /v2/, which this "registry" answers 401: plain HTTP.)
    assert [(p, h.get("Authorization")) for _, _, p, h in reg.seen] == [
        ("/v2/", None), (f"/v2/team/app/blobs/{digest}", None), (f"/v2/team/app/blobs/{digest}", "Basic dTpw")]
    assert storage.seen[0][2] == f"/store/{digest}?sig=1"
    assert "Authorization" not in storage.seen[0][3]


def test_same_host_redirect_keeps_authorization_and_303_becomes_get(serve: Callable[..., Server]) -> None:
    def handle(h: BaseHTTPRequestHandler, nth: int) -> None:
        if h.path == "/start":
            length = int(h.headers.get("Content-Length") or 0)
            h.rfile.read(length)
            reply(h, 303, headers={"Location": "/end"})
        else:
            reply(h, 200, h.command.encode())

    server = serve(handle)
    resp = plain_transport().request("POST", f"http://127.0.0.1:{server.port}/start", body=b"payload",
                                     headers={"Authorization": "Bearer t"})
    assert resp.content == b"GET"
    assert [(m, p, h.get("Authorization")) for _, m, p, h in server.seen] == [
        ("POST", "/start", "Bearer t"), ("GET", "/end", "Bearer t")]


def test_redirect_loop_fails_in_bounded_steps(serve: Callable[..., Server]) -> None:
    server = serve(lambda h, n: reply(h, 302, headers={"Location": "/again"}))
    with pytest.raises(TransportError, match="redirects"):
        plain_transport().request("GET", f"http://127.0.0.1:{server.port}/")
    assert len(server.seen) == 11


# ---- proxies -------------------------------------------------------------------------------------

class ForwardProxy:
    """A loopback forward proxy: absolute-form HTTP requests and CONNECT tunnels. Names in ``hosts`` are
    mapped to loopback addresses, so the client never resolves them (the network guard would fail it)."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = hosts
        self.log: list[tuple[str, str, str | None]] = []  # (method, target, Proxy-Authorization)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _upstream(self, netloc: str) -> socket.socket:
        host, port = self.hosts[netloc].rsplit(":", 1)
        return socket.create_connection((host, int(port)))

    def _serve(self, client: socket.socket) -> None:
        f = client.makefile("rb")
        try:
            while True:
                line = f.readline().decode()
                if not line:
                    return
                method, target, _ = line.split(" ", 2)
                headers = []
                while (h := f.readline()) not in (b"\r\n", b""):
                    headers.append(h)
                auth = next((h.decode().split(":", 1)[1].strip() for h in headers
                             if h.lower().startswith(b"proxy-authorization:")), None)
                self.log.append((method, target, auth))
                if method == "CONNECT":
                    upstream = self._upstream(target)
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self._pipe(client, upstream)
                    return
                netloc = target.split("/", 3)[2]
                upstream = self._upstream(netloc)
                path = "/" + target.split("/", 3)[3]
                kept = b"".join(h for h in headers if not h.lower().startswith(b"proxy-"))
                upstream.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + kept + b"Connection: close\r\n\r\n")
                response = b""
                while chunk := upstream.recv(65536):
                    response += chunk
                upstream.close()
                client.sendall(response.replace(b"Connection: close\r\n", b""))
                client.close()
                return
        except OSError:
            return

    @staticmethod
    def _pipe(client: socket.socket, upstream: socket.socket) -> None:
        # The client sends nothing before the 200, so nothing is left in the line reader's buffer.
        socks = [client, upstream]
        while True:
            ready, _, _ = select.select(socks, [], [], 30)
            if not ready:
                return
            for s in ready:
                data = s.recv(65536)
                if not data:
                    client.close()
                    upstream.close()
                    return
                (upstream if s is client else client).sendall(data)

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy_for() -> Iterator[Callable[[dict[str, str]], ForwardProxy]]:
    proxies: list[ForwardProxy] = []

    def make(hosts: dict[str, str]) -> ForwardProxy:
        proxies.append(ForwardProxy(hosts))
        return proxies[-1]

    yield make
    for p in proxies:
        p.stop()


def test_proxy_from_environment_http_and_connect(
    registry: Registry, make_image: Callable[..., Image], proxy_for: Callable[[dict[str, str]], ForwardProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    img = make_image(registry, "px/app", "1.0", layer_sizes=(3000,))
    proxy = proxy_for({"registry.test:5000": registry.host})
    monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://user:pw@"))
    monkeypatch.setenv("https_proxy", proxy.url.replace("http://", "http://user:pw@"))
    monkeypatch.setenv("NO_PROXY", "example.org,.internal")
    client = RegistryClient(RegistryOptions(insecure=frozenset({"registry.test:5000"})))
    # The TLS probe goes through a CONNECT tunnel; the plain-HTTP requests in absolute form.
    assert client.scheme("registry.test:5000") == "http"
    assert client.get_manifest("registry.test:5000", "px/app", "1.0").digest == img.digest
    assert proxy.log[0] == ("CONNECT", "registry.test:5000", "Basic dXNlcjpwdw==")
    assert proxy.log[1] == ("GET", "http://registry.test:5000/v2/px/app/manifests/1.0", "Basic dXNlcjpwdw==")


def test_https_through_connect_tunnel_verifies_the_registry_certificate(
    tls_auth_registry: Registry, make_image: Callable[..., Image],
    proxy_for: Callable[[dict[str, str]], ForwardProxy],
) -> None:
    reg = tls_auth_registry
    assert reg.tls is not None and reg.username and reg.password
    img = make_image(reg, "px/tls", "1.0", layer_sizes=(1000,))
    proxy = proxy_for({"registry.test:443": reg.host})
    proxies = ProxyConfig(https=proxy.url)
    # The certificate names localhost/127.0.0.1, not registry.test: verification must fail, in one line.
    client = RegistryClient(RegistryOptions(ca_file=str(reg.tls.ca_pem)))
    client.transport = Transport(client.options, proxies)
    with pytest.raises(TransportError, match=r"^TLS certificate of registry\.test is not trusted"):
        client.get_manifest("registry.test", "px/tls", "1.0")
    # --insecure-registry for that name: the tunnel carries TLS, basic auth answers the 401.
    client = RegistryClient(RegistryOptions(insecure=frozenset({"registry.test"})))
    client.transport = Transport(client.options, proxies)
    client.auth.set_credentials("registry.test", reg.username, reg.password)
    assert client.get_manifest("registry.test", "px/tls", "1.0").digest == img.digest
    assert {m for m, *_ in proxy.log} == {"CONNECT"}


@pytest.mark.parametrize(("no_proxy", "host", "proxied"), [
    ("", "registry.example:5000", True),
    ("*", "registry.example:5000", False),
    ("ample", "registry.example:5000", True),  # a suffix matches whole labels only
    ("example", "registry.example:5000", False),
    ("registry.example", "registry.example:5000", False),
    (".example", "registry.example:5000", False),
    ("example:443", "registry.example:5000", True),
    ("registry.example:5000", "registry.example:5000", False),
    ("10.0.0.0/8", "10.1.2.3:5000", False),
    ("10.0.0.0/8", "11.1.2.3:5000", True),
    ("", "127.0.0.1:5000", False),  # loopback is never proxied (as Go's net/http)
    ("", "localhost:5000", False),
    ("", "[::1]:5000", False),
])
def test_no_proxy_rules(no_proxy: str, host: str, proxied: bool) -> None:
    config = ProxyConfig.from_env({"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": no_proxy})
    hostname, port = host.rsplit(":", 1)
    assert (config.for_url("https", hostname.strip("[]"), int(port)) is not None) is proxied


def test_proxy_variables_lower_case_wins_and_https_proxy_is_refused() -> None:
    config = ProxyConfig.from_env({"http_proxy": "http://a:1", "HTTP_PROXY": "http://b:2"})
    proxy = config.for_url("http", "registry.example", 80)
    assert proxy is not None and proxy.host == "a:1"
    assert config.for_url("https", "registry.example", 443) is None
    with pytest.raises(TransportError, match="only http:// proxies"):
        ProxyConfig(https="https://p:1").for_url("https", "registry.example", 443)


# ---- cache of verified immutable content ---------------------------------------------------------

def test_cached_reads_skip_the_registry_only_for_digests(
    registry: Registry, make_image: Callable[..., Image],
) -> None:
    img = make_image(registry, "cache/app", "1.0", layer_sizes=(2000,))
    client = RegistryClient()
    sent: list[str] = []
    original = client.transport.request

    def counting(method: str, url: str, **kwargs: Any) -> Any:
        sent.append(f"{method} {url.split('/v2/', 1)[1]}")
        return original(method, url, **kwargs)

    client.transport.request = counting  # type: ignore[method-assign]
    layer = next(d for d in img.blobs if img.blobs[d] == 2000)
    desc = Descriptor(mt.OCI_LAYER, layer, 2000)
    for _ in range(3):
        client.get_manifest(registry.host, "cache/app", "1.0", cached=True)  # a tag: always asked
        client.get_manifest(registry.host, "cache/app", img.digest, cached=True)
        client.read_blob(registry.host, "cache/app", desc, cached=True)
    assert sent.count("GET cache/app/manifests/1.0") == 3
    assert sent.count(f"GET cache/app/manifests/{img.digest}") == 1
    assert sent.count(f"GET cache/app/blobs/{layer}") == 1
    # Another repository is another key: never answered from this repository's content.
    with pytest.raises(Exception, match="not found|unknown|404"):
        client.read_blob(registry.host, "cache/other", desc, cached=True)


# ---- TLS stays lazy --------------------------------------------------------------------------------

def test_plain_http_loopback_never_builds_a_tls_context(registry: Registry, make_image: Callable[..., Image],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """http.client imports ssl, but no TLS context (OpenSSL's set-up; for a verifying one, the system CA store:
    ~30 ms) is built for a loopback registry that answers the plain ``GET /v2/`` ping."""
    import ssl

    built: list[str] = []
    real_default, real_context = ssl.create_default_context, ssl.SSLContext

    class Recording(real_context):  # type: ignore[misc, valid-type]
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            built.append("context")
            return real_context.__new__(cls, *args, **kwargs)

    def default(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append("default")
        return real_default(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", default)
    monkeypatch.setattr(ssl, "SSLContext", Recording)
    img = make_image(registry, "lazy/app", "1.0")
    client = RegistryClient()
    assert client.get_manifest(registry.host, "lazy/app", "1.0").digest == img.digest
    assert client.scheme(registry.host) == "http" and built == []
    assert client.transport.connections_opened == 1  # the ping's connection serves the requests after it


def test_loopback_tls_registry_is_still_found(tls_auth_registry: Registry) -> None:
    """A TLS port answers the plain ping with 400 (Go) or hangs up: the handshake probe then says https."""
    assert RegistryClient().scheme(tls_auth_registry.host) == "https"
