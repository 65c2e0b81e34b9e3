"""A small HTTP/1.1 client on plain sockets: what :mod:`airgap.oci.registry` needs and nothing more.

Why not requests: importing it costs ~50 ms per process and every request pays ~0.5 ms re-reading proxy
settings from the environment. Why not :mod:`http.client` either: its import costs ~15 ms (the email
parser, and ssl even for plain HTTP) and its header parsing ~0.14 ms per response; a verification is
three small GETs on loopback and a cold ``airgap verify`` has a 150 ms budget, so both show. The
protocol subset registries use is small; this module keeps what matters:

- keep-alive: idle connections are pooled per (scheme, host, TLS mode) and shared by all threads (a
  thread pool that comes and goes, as ``verify_many`` does per call, reuses them); a connection is checked
  out for one request and its response, and goes back only when the body was read to the end.
  An idle connection the server has closed is noticed before use (it polls readable) and replaced; a
  request that still meets a dead reused connection is replayed once on a fresh one when its body can be
  sent again.
- bodies framed by Content-Length, chunked encoding or connection close; bounded streaming reads; a body
  that ends before its announced length is an error, never short data.
- redirects (blob GETs are redirected to storage): followed up to :data:`MAX_REDIRECTS`; ``Authorization``
  is dropped when the host changes, so a registry token never reaches the storage host.
- TLS: the system CAs plus ``--ca-file``, verified hostnames; ``--insecure-registry`` hosts skip verification.
  :mod:`ssl` is imported and contexts built on first HTTPS use only (the system CA bundle costs ~30 ms).
- proxies: ``HTTP(S)_PROXY``/``NO_PROXY`` (either case), read once per :class:`Transport`; plain HTTP in
  absolute form, HTTPS through a CONNECT tunnel. As in Go's net/http (cosign, crane, skopeo), loopback
  destinations never go through a proxy.
- timeouts: connect and read timeouts from :class:`~airgap.config.Limits`.

The connection and response framing live in :mod:`airgap.oci.http1`, proxy settings in
:mod:`airgap.oci.proxy`; this module pools, redirects and writes requests, and re-exports what callers use.

Retries, auth and digests are the caller's business: this layer only says whether a failure was the
network (:class:`NetworkError`, worth retrying) or TLS trust (:class:`~airgap.errors.TransportError`, not).
Threat model: the server is untrusted; status lines, header blocks and chunk-size lines are length-capped.
"""


from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from airgap.config import RegistryOptions
from airgap.errors import TransportError
from airgap.oci.http1 import Connection, Headers, NetworkError, Response, read_head
from airgap.oci.proxy import ProxyConfig

if TYPE_CHECKING:
    import ssl

__all__ = ["MAX_REDIRECTS", "Body", "Headers", "NetworkError", "ProxyConfig", "Response", "Transport"]

MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_IDLE_PER_KEY = 16  # idle connections kept per host; more in flight at once are closed when done

Body = bytes | Iterable[bytes] | None


class Transport:
    """Pooled HTTP(S) connections with the TLS and proxy settings of one RegistryOptions; thread-safe."""

    def __init__(self, options: RegistryOptions, proxies: ProxyConfig | None = None) -> None:
        self.options = options
        self.proxies = ProxyConfig.from_env() if proxies is None else proxies
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, bool], list[Connection]] = {}
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self.connections_opened = 0  # for tests and benchmarks: how often a socket was connected

    # ---- TLS --------------------------------------------------------------------------------------

    def _context(self, insecure: bool) -> ssl.SSLContext:
        with self._lock:
            context = self._contexts.get(insecure)
        if context is None:
            import ssl

            if insecure:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # --insecure-registry: the user opted out
            else:
                context = ssl.create_default_context()
                if self.options.ca_file:
                    try:
                        context.load_verify_locations(cafile=self.options.ca_file)
                    except (OSError, ssl.SSLError) as exc:
                        raise TransportError(f"--ca-file {self.options.ca_file}: cannot load it ({exc})"
                                             ) from None
            with self._lock:
                context = self._contexts.setdefault(insecure, context)
        return context

    # ---- the pool ---------------------------------------------------------------------------------

    def _new(self, scheme: str, netloc: str, insecure: bool) -> Connection:
        parts = urlsplit(f"//{netloc}")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise TransportError(f"invalid host {netloc!r}") from None
        hostname = parts.hostname or netloc
        proxy = self.proxies.for_url(scheme, hostname, port)
        context = self._context(insecure) if scheme == "https" else None
        return Connection(scheme, netloc, hostname, port, proxy, context)

    def _checkout(self, key: tuple[str, str, bool]) -> tuple[Connection, bool]:
        """An idle live connection for ``key`` (reused=True), else a new unconnected one."""
        while True:
            with self._lock:
                pool = self._idle.get(key)
                conn = pool.pop() if pool else None
            if conn is None:
                return self._new(*key), False
            if not conn.dead():
                return conn, True
            conn.close()

    def _checkin(self, key: tuple[str, str, bool], conn: Connection, reusable: bool) -> None:
        if reusable and conn.sock is not None:
            with self._lock:
                pool = self._idle.setdefault(key, [])
                if len(pool) < _IDLE_PER_KEY:
                    pool.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            pools, self._idle = list(self._idle.values()), {}
        for pool in pools:
            for conn in pool:
                conn.close()

    def speaks_tls(self, netloc: str) -> bool:
        """Whether ``netloc`` completes a TLS handshake (through the proxy when one applies). A bare probe:
        nothing is verified and no request is sent; real requests verify the certificate."""
        conn = self._new("https", netloc, insecure=True)
        try:
            conn.connect(self.options.limits.connect_timeout, self.options.limits.connect_timeout)
            return True
        except OSError:  # ssl.SSLError (plain HTTP bytes), reset, refused, timeout
            return False
        finally:
            conn.close()

    # ---- requests ---------------------------------------------------------------------------------

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: Body = None,
                length: int | None = None, insecure: bool | None = None) -> Response:
        """Send one request, following redirects; return the response with its body unread.

        ``body`` is bytes, or an iterable of chunks with their total ``length`` (sent with Content-Length,
        each chunk handed to the socket whole). ``insecure`` defaults to whether the URL's host is an
        ``--insecure-registry``; it applies to the whole redirect chain, as requests does.
        """
        hdrs = dict(headers or {})
        if insecure is None:
            insecure = urlsplit(url).netloc in self.options.insecure
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._send(method, url, hdrs, body, length, insecure)
            location = resp.headers.get("Location")
            if resp.status_code not in _REDIRECTS or not location:
                return resp
            if method not in ("GET", "HEAD") and resp.status_code in (301, 302, 303):
                method, body, length = "GET", None, None
            elif body is not None and not isinstance(body, bytes):
                return resp  # a one-shot stream cannot be sent again: let the caller see the redirect
            resp.close()
            target = urljoin(url, location)
            if urlsplit(target).netloc != urlsplit(url).netloc:
                # Never hand the registry's credentials to another host (blob storage, a CDN).
                hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
            url = target
        raise TransportError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")

    def _send(self, method: str, url: str, headers: dict[str, str], body: Body, length: int | None,
              insecure: bool) -> Response:
        parts = urlsplit(url)
        scheme, netloc = parts.scheme, parts.netloc
        if scheme not in ("http", "https") or not netloc:
            raise TransportError(f"{url}: unsupported URL")
        key = (scheme, netloc, insecure and scheme == "https")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        replayable = body is None or isinstance(body, bytes)
        while True:
            conn, reused = self._checkout(key)
            try:
                if conn.sock is None:
                    conn.connect(self.options.limits.connect_timeout, self.options.limits.read_timeout)
                    with self._lock:
                        self.connections_opened += 1
                self._write(conn, method, target, netloc, headers, body, length)
                status, hdrs, size, chunked, will_close = read_head(conn.reader(), method)
            except TransportError:
                conn.close()
                raise
            except (OSError, ValueError) as exc:
                conn.close()
                if conn.scheme == "https":
                    import ssl

                    if isinstance(exc, ssl.SSLCertVerificationError):
                        raise TransportError(
                            f"TLS certificate of {netloc} is not trusted (pass --ca-file with its CA, or "
                            f"--insecure-registry {netloc})") from None
                    if isinstance(exc, ssl.SSLError):
                        raise TransportError(f"TLS error talking to {netloc}: {exc.reason or exc}") from None
                if reused and replayable:
                    continue  # the server dropped an idle connection as we used it: once more, fresh
                raise NetworkError(f"{method} {url}: {type(exc).__name__}", exc) from None
            except BaseException:
                conn.close()  # the body source failed mid-request: the connection is in an unknown state
                raise

            def release(ok: bool, conn: Connection = conn, keep: bool = not will_close) -> None:
                self._checkin(key, conn, ok and keep)

            return Response(status, hdrs, url, conn, size, chunked, release)

    def _write(self, conn: Connection, method: str, target: str, netloc: str, headers: dict[str, str], body: Body,
               length: int | None) -> None:
        if conn.absolute_form:
            target = f"http://{netloc}{target}"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}", f"User-Agent: {self.options.user_agent}"]
        if conn.absolute_form and conn.proxy is not None and conn.proxy.authorization:
            lines.append(f"Proxy-Authorization: {conn.proxy.authorization}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}")
        elif body is not None:
            lines.append(f"Content-Length: {length or 0}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        if any("\r" in line or "\n" in line for line in lines):
            raise TransportError(f"{method} {target}: a header or the target contains a line break")
        try:
            data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError:
            raise TransportError(f"{method} {target}: a header is not ISO-8859-1 text") from None
        sock = conn.writer()
        if isinstance(body, bytes) and len(body) <= 65536:
            sock.sendall(data + body)  # headers and a small body in one segment
            return
        sock.sendall(data)
        if isinstance(body, bytes):
            sock.sendall(body)
        elif body is not None:
            for chunk in body:
                sock.sendall(chunk)
