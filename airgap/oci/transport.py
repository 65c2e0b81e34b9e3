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

Retries, auth and digests are the caller's business: this layer only says whether a failure was the
network (:class:`NetworkError`, worth retrying) or TLS trust (:class:`~airgap.errors.TransportError`, not).
Threat model: the server is untrusted; status lines, header blocks and chunk-size lines are length-capped.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, overload
from urllib.parse import unquote, urljoin, urlsplit

from airgap.config import RegistryOptions
from airgap.errors import TransportError
from airgap.refs import is_loopback_host

if TYPE_CHECKING:
    import ssl

MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Bodies of responses nobody reads (errors, redirects) are drained up to this size to keep the
# connection; beyond it the connection is closed instead.
_DRAIN_MAX = 64 * 1024
_IDLE_PER_KEY = 16  # idle connections kept per host; more in flight at once are closed when done
_MAX_LINE = 65536  # a status line, header line or chunk-size line
_MAX_HEADERS = 200

Body = bytes | Iterable[bytes] | None


class NetworkError(TransportError):
    """The connection failed or broke: refused, reset, closed early, timed out. Worth retrying."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class ProtocolError(OSError):
    """The peer broke HTTP/1.1 framing (or closed the connection where a response was due)."""


class IncompleteRead(ProtocolError):
    """The body ended before its announced length."""


class RemoteDisconnected(ProtocolError):
    """The server closed the connection without sending a response."""


@dataclass(frozen=True)
class Proxy:
    host: str  # host:port of the proxy
    authorization: str | None  # a Proxy-Authorization value from the proxy URL's userinfo


def _proxy_from_url(url: str) -> Proxy:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise TransportError(f"proxy {parts.scheme}://{parts.hostname}: only http:// proxies are supported")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return Proxy(f"{host}:{parts.port or 80}", auth)


@dataclass(frozen=True)
class ProxyConfig:
    """``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` as read once (lower case wins, as in curl/requests)."""

    http: str | None = None
    https: str | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name.lower()) or env.get(name.upper()) or None

        no_proxy = tuple(e.strip().lower() for e in (get("no_proxy") or "").split(",") if e.strip())
        return cls(get("http_proxy"), get("https_proxy"), no_proxy)

    def for_url(self, scheme: str, hostname: str, port: int) -> Proxy | None:
        url = self.https if scheme == "https" else self.http
        if not url or is_loopback_host(hostname) or hostname == "::1" or self._bypass(hostname, port):
            return None
        return _proxy_from_url(url)

    def _bypass(self, hostname: str, port: int) -> bool:
        name = hostname.lower().strip("[]")
        for entry in self.no_proxy:
            if entry == "*":
                return True
            if "/" in entry:
                import ipaddress

                try:
                    if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    pass
                continue
            host_part, _, port_part = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if port_part and port_part != str(port):
                continue
            suffix = host_part.lstrip(".")
            if name == suffix or name.endswith("." + suffix):
                return True
        return False


class Headers:
    """Response headers: case-insensitive; repeated fields joined with ", " (as requests), all kept."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._map: dict[str, str] = {}
        for name, value in fields:
            key = name.lower()
            self._map[key] = f"{self._map[key]}, {value}" if key in self._map else value

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._map.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._fields if n.lower() == key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)


class _Conn:
    """One TCP (or TLS) connection to an origin or through a proxy; connects lazily."""

    def __init__(self, scheme: str, netloc: str, hostname: str, port: int, proxy: Proxy | None,
                 context: ssl.SSLContext | None) -> None:
        self.scheme, self.netloc, self.hostname, self.port = scheme, netloc, hostname, port
        self.proxy = proxy
        self.context = context
        self.sock: socket.socket | None = None
        self.rfile: BinaryIO | None = None

    @property
    def absolute_form(self) -> bool:
        return self.proxy is not None and self.scheme == "http"

    def connect(self, connect_timeout: float, read_timeout: float) -> None:
        if self.proxy is not None:
            host, _, port = self.proxy.host.rpartition(":")
            sock = socket.create_connection((host.strip("[]"), int(port)), timeout=connect_timeout)
        else:
            sock = socket.create_connection((self.hostname, self.port), timeout=connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:  # https
                if self.proxy is not None:
                    self._tunnel(sock, self.proxy)
                sock = self.context.wrap_socket(sock, server_hostname=self.hostname)
            sock.settimeout(read_timeout)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def _tunnel(self, sock: socket.socket, proxy: Proxy) -> None:
        target = f"{self.hostname if ':' not in self.hostname else f'[{self.hostname}]'}:{self.port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        # Read the proxy's answer a byte at a time: nothing past its blank line may be consumed here
        # (the TLS handshake follows on the same socket). A few hundred bytes, once per connection.
        head = b""
        while not head.endswith(b"\r\n\r\n") and not head.endswith(b"\n\n"):
            byte = sock.recv(1)
            if not byte or len(head) > _MAX_LINE:
                raise RemoteDisconnected(f"proxy {proxy.host} closed the CONNECT tunnel")
            head += byte
        status = head.split(b"\n", 1)[0].split(None, 2)
        if len(status) < 2 or status[1] != b"200":
            code = status[1].decode("latin-1") if len(status) > 1 else "?"
            raise TransportError(f"proxy {proxy.host} refused to tunnel to {target} ({code})")

    def reader(self) -> BinaryIO:
        if self.rfile is None:
            raise RemoteDisconnected("not connected")
        return self.rfile

    def writer(self) -> socket.socket:
        if self.sock is None:
            raise RemoteDisconnected("not connected")
        return self.sock

    def close(self) -> None:
        rfile, sock = self.rfile, self.sock
        self.rfile = self.sock = None
        if rfile is not None:
            rfile.close()
        if sock is not None:
            sock.close()

    def dead(self) -> bool:
        """True when an idle keep-alive connection is unusable: readable means EOF (closed) or junk."""
        if self.sock is None:
            return False  # not connected: the next request connects
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True


def _readline(rfile: BinaryIO) -> bytes:
    line = rfile.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise ProtocolError("header line too long")
    return line


def _read_head(rfile: BinaryIO, method: str) -> tuple[int, Headers, int | None, bool, bool]:
    """Status line and headers (1xx skipped); return status, headers, length, chunked, will_close.
    ``length`` None with chunked False means: the body runs until the server closes the connection."""
    while True:
        line = _readline(rfile)
        if not line:
            raise RemoteDisconnected("the server closed the connection without a response")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"malformed status line {line[:40]!r}")
        version, status = parts[0], int(parts[1])
        fields: list[tuple[str, str]] = []
        while True:
            h = _readline(rfile)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise IncompleteRead("the connection closed inside the response headers")
            if len(fields) >= _MAX_HEADERS:
                raise ProtocolError("too many header fields")
            name, sep, value = h.decode("latin-1").partition(":")
            if sep and name.strip():
                fields.append((name.strip(), value.strip()))
        if status >= 200 or status == 101:
            break
    headers = Headers(fields)
    connection = (headers.get("Connection") or "").lower()
    will_close = "close" in connection or (version == b"HTTP/1.0" and "keep-alive" not in connection)
    chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
    length: int | None = None
    if method == "HEAD" or status in (204, 304):
        length, chunked = 0, False
    elif not chunked:
        raw = headers.get("Content-Length")
        if raw is not None:
            if not raw.strip().isdigit():
                raise ProtocolError(f"invalid Content-Length {raw[:20]!r}")
            length = int(raw)
        else:
            will_close = True
    return status, headers, length, chunked, will_close


class Response:
    """A response whose body streams from its connection; the connection returns to the pool once the
    body has been read to the end (or drained by :meth:`close`)."""

    def __init__(self, status: int, headers: Headers, url: str, conn: _Conn, length: int | None,
                 chunked: bool, release: Any) -> None:
        self.status_code = status
        self.headers = headers
        self.url = url
        self._conn = conn
        self._left = length  # bytes left (Content-Length) or in the current chunk; None: until close
        self._chunked = chunked
        self._chunk_started = False
        self._release = release  # callable(reusable: bool); None once released
        self._content: bytes | None = None
        if length == 0 and not chunked:
            self._finish(True)

    def _finish(self, reusable: bool) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(reusable)

    def _fail(self, exc: BaseException) -> NetworkError:
        self._finish(False)
        return NetworkError(f"connection broke while reading {self.url}: {type(exc).__name__}", exc)

    def read(self, amt: int) -> bytes:
        """Up to ``amt`` bytes (fewer only at chunk boundaries and the end); b"" at the end.
        Raises NetworkError when the connection breaks or the body ends before its announced length."""
        if self._release is None or amt <= 0:
            return b""
        try:
            rfile = self._conn.reader()
            if self._chunked:
                return self._read_chunked(rfile, amt)
            if self._left is None:  # until close
                data = rfile.read(amt)
                if not data:
                    self._finish(False)
                return data
            data = rfile.read(min(amt, self._left))
            if not data:
                raise IncompleteRead(f"{self._left} bytes missing")
            self._left -= len(data)
            if not self._left:
                self._finish(True)
            return data
        except (OSError, ValueError) as exc:
            raise self._fail(exc) from None

    def _read_chunked(self, rfile: BinaryIO, amt: int) -> bytes:
        if not self._left:
            if self._chunk_started:
                if _readline(rfile) not in (b"\r\n", b"\n"):  # the CRLF after the previous chunk's data
                    raise ProtocolError("malformed chunk")
            self._chunk_started = True
            size_line = _readline(rfile)
            if not size_line:
                raise IncompleteRead("the connection closed inside a chunked body")
            self._left = int(size_line.split(b";", 1)[0].strip(), 16)
            if self._left == 0:
                while _readline(rfile) not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                self._finish(True)
                return b""
        data = rfile.read(min(amt, self._left or 0))
        if not data:
            raise IncompleteRead("the connection closed inside a chunk")
        self._left = (self._left or 0) - len(data)
        return data

    def iter_content(self, size: int) -> Iterator[bytes]:
        while True:
            chunk = self.read(size)
            if not chunk:
                return
            yield chunk

    def body(self, cap: int) -> bytes:
        """The whole body when it is at most ``cap`` bytes, else b"" (and the connection is dropped)."""
        if self._content is not None:
            return self._content if len(self._content) <= cap else b""
        out = bytearray()
        try:
            for chunk in self.iter_content(65536):
                out += chunk
                if len(out) > cap:
                    self.close()
                    return b""
        except NetworkError:
            return b""
        return bytes(out)

    @property
    def content(self) -> bytes:
        """The whole body, read once (as requests' ``Response.content``; callers bound it themselves)."""
        if self._content is None:
            self._content = b"".join(self.iter_content(65536))
        return self._content

    def json(self, cap: int | None = None) -> Any:
        """The body parsed as JSON; with ``cap``, a body over ``cap`` bytes parses as ``null``."""
        import json

        return json.loads((self.content if cap is None else self.body(cap)) or b"null")

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """RFC 8288 ``Link`` header: rel -> {"url": ...} (the shape requests gives)."""
        out: dict[str, dict[str, str]] = {}
        for value in self.headers.get_all("Link"):
            for part in value.split(","):
                url, _, params = part.strip().partition(";")
                if not url.startswith("<") or not url.endswith(">"):
                    continue
                link = {"url": url[1:-1]}
                for param in params.split(";"):
                    key, _, val = param.strip().partition("=")
                    if key:
                        link[key.strip().lower()] = val.strip().strip('"')
                out[link.get("rel", link["url"])] = link
        return out

    def close(self) -> None:
        """Release the connection: a small unread rest is drained (and kept: an error body stays readable
        through :attr:`content`) and the connection reused; a large or unknown-length rest closes it."""
        if self._release is None:
            return
        if self._chunked or self._left is None or self._left > _DRAIN_MAX:
            self._finish(False)
            return
        try:
            rest = b"".join(self.iter_content(_DRAIN_MAX))
        except NetworkError:
            return
        if self._content is None:
            self._content = rest


class Transport:
    """Pooled HTTP(S) connections with the TLS and proxy settings of one RegistryOptions; thread-safe."""

    def __init__(self, options: RegistryOptions, proxies: ProxyConfig | None = None) -> None:
        self.options = options
        self.proxies = ProxyConfig.from_env() if proxies is None else proxies
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, bool], list[_Conn]] = {}
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

    def _new(self, scheme: str, netloc: str, insecure: bool) -> _Conn:
        parts = urlsplit(f"//{netloc}")
        try:
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError:
            raise TransportError(f"invalid host {netloc!r}") from None
        hostname = parts.hostname or netloc
        proxy = self.proxies.for_url(scheme, hostname, port)
        context = self._context(insecure) if scheme == "https" else None
        return _Conn(scheme, netloc, hostname, port, proxy, context)

    def _checkout(self, key: tuple[str, str, bool]) -> tuple[_Conn, bool]:
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

    def _checkin(self, key: tuple[str, str, bool], conn: _Conn, reusable: bool) -> None:
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
                status, hdrs, size, chunked, will_close = _read_head(conn.reader(), method)
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

            def release(ok: bool, conn: _Conn = conn, keep: bool = not will_close) -> None:
                self._checkin(key, conn, ok and keep)

            return Response(status, hdrs, url, conn, size, chunked, release)

    def _write(self, conn: _Conn, method: str, target: str, netloc: str, headers: dict[str, str], body: Body,
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
