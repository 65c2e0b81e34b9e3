"""HTTP/1.1 on one socket: a connection (TCP, TLS, CONNECT tunnel), response framing and streaming bodies.

The wire half of :mod:`airgap.oci.transport` (which pools these connections, follows redirects and writes
requests). Bodies are framed by Content-Length, chunked encoding or connection close; reads are bounded and
streaming; a body that ends before its announced length is an error, never short data.

Threat model: the server is untrusted; status lines, header blocks and chunk-size lines are length-capped.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, overload

from airgap.errors import TransportError
from airgap.oci.proxy import Proxy

if TYPE_CHECKING:
    import ssl

# Bodies of responses nobody reads (errors, redirects) are drained up to this size to keep the
# connection; beyond it the connection is closed instead.
DRAIN_MAX = 64 * 1024
MAX_LINE = 65536  # a status line, header line or chunk-size line
_MAX_HEADERS = 200


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


class Connection:
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
            if not byte or len(head) > MAX_LINE:
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
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError("header line too long")
    return line


def read_head(rfile: BinaryIO, method: str) -> tuple[int, Headers, int | None, bool, bool]:
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

    def __init__(self, status: int, headers: Headers, url: str, conn: Connection, length: int | None,
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
        """The body parsed as JSON (strictly: an IntegrityError when it is not); with ``cap``, a body over
        ``cap`` bytes parses as ``null``."""
        from airgap.jsondoc import load_json

        return load_json((self.content if cap is None else self.body(cap)) or b"null", "response body")

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
        if self._chunked or self._left is None or self._left > DRAIN_MAX:
            self._finish(False)
            return
        try:
            rest = b"".join(self.iter_content(DRAIN_MAX))
        except NetworkError:
            return
        if self._content is None:
            self._content = rest

