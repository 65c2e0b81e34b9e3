"""One HTTP/1.1 connection on the standard library's :mod:`http.client`, every socket operation under the time
limits of its request (guarantee 9, every network operation has a deadline).

http.client frames the requests and responses (status lines and header blocks length-capped, bodies by
Content-Length, chunked encoding or connection close) and tunnels through proxies (``set_tunnel``). What it
lacks, this module adds: before every connect, send and receive, the socket timeout becomes the per-operation
timeout of :class:`~airgap.config.Limits` capped by the time the operation's deadline
(:mod:`airgap.oci.deadline`) leaves, so the deadline holds however the server spaces its bytes; and a stall
detector: once a response has started, every ``stall_seconds`` spent waiting for it must bring ``stall_bytes``,
or the read fails (a :class:`NetworkError`, retried like a reset), which bounds a transfer that has no deadline.

Pooling, redirects, proxies and TLS policy are :mod:`airgap.oci.transport`'s; responses :mod:`airgap.oci.response`'s.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from airgap.config import Limits
from airgap.errors import TransportError
from airgap.oci import deadline
from airgap.progress import check_interrupted, on_interrupt

if TYPE_CHECKING:
    import ssl

    from airgap.oci.proxy import Proxy

_BUFFER = 64 * 1024


class NetworkError(TransportError):
    """The connection failed or broke: refused, reset, closed early, timed out, stalled. Worth retrying."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause
        self.reason = why(cause)  # what broke, in a few words


class Stalled(TimeoutError):
    """A started response delivered less than the stall detector's minimum (see Limits.stall_bytes)."""


class LookupTimeout(TimeoutError):
    """The name lookup of a registry host took longer than the connect timeout (see :func:`lookup`)."""


def why(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, (Stalled, LookupTimeout)) else type(exc).__name__


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except OSError:
            pass
    return False


class Watch:
    """The time limits of one request: the operation's deadline, the per-operation timeouts and the stall
    detector. Every blocking socket call of the request asks it for its timeout first."""

    def __init__(self, what: str, limits: Limits) -> None:
        self.what = what  # "GET host:port/path", for messages
        self.limits = limits
        self.deadline = deadline.current()
        self.applied: float | None = None  # the timeout last set on the socket
        self.started = False  # a first response byte arrived: the stall detector runs
        self.waited = 0.0  # seconds spent waiting in recv in the current stall window
        self.got = 0  # bytes received in the current stall window

    def timeout(self, base: float) -> float:
        """``base`` capped by the time left; raises DeadlineExceeded when there is none."""
        if self.deadline is None:
            return base
        return min(base, self.deadline.check(self.what))

    def apply(self, sock: socket.socket, timeout: float) -> None:
        if timeout != self.applied:
            sock.settimeout(timeout)
            self.applied = timeout

    def recv_timeout(self) -> tuple[float, bool]:
        """The timeout for the next recv, and whether it is the stall window's end (so a timeout is a stall)."""
        timeout = self.timeout(self.limits.read_timeout)
        if self.started and self.got < self.limits.stall_bytes:
            window = max(self.limits.stall_seconds - self.waited, 0.001)
            if window < timeout:
                return window, True
        return timeout, False

    def stalled(self) -> Stalled:
        return Stalled(f"stalled: less than {self.limits.stall_bytes} bytes in "
                        f"{deadline.format_duration(self.limits.stall_seconds)}")

    def received(self, waited: float, n: int) -> None:
        """Account one recv; raises Stalled when a window of waiting brought too few bytes."""
        if not self.started:
            self.started = n > 0  # the first byte may take up to read_timeout; the window starts after it
            self.got = n
            return
        self.waited += waited
        self.got += n
        if self.waited >= self.limits.stall_seconds:
            if self.got < self.limits.stall_bytes:
                raise self.stalled()
            self.waited, self.got = 0.0, 0

    def timed_out(self) -> None:
        """After a socket timeout: the deadline's error when that is what passed (else the caller re-raises)."""
        if self.deadline is not None and self.deadline.remaining() <= 0:
            raise self.deadline.exceeded(self.what)


class _WatchedReader(io.RawIOBase):
    """The raw stream under a response: each recv obeys the request's :class:`Watch`. Holds the socket open
    (as ``socket.makefile`` does) until closed, so a response outlives a connection closed under it."""

    def __init__(self, sock: socket.socket, watch: Watch) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._watch = watch

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        watch = self._watch
        timeout, window_end = watch.recv_timeout()
        watch.apply(self._sock, timeout)
        started = time.monotonic()
        try:
            n = self._raw.readinto(buffer)
        except TimeoutError:
            watch.timed_out()
            if window_end:
                raise watch.stalled() from None
            raise
        watch.received(time.monotonic() - started, n or 0)
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _Response(http.client.HTTPResponse):
    """http.client's response reading through a :class:`_WatchedReader`."""

    def __init__(self, sock: socket.socket, watch: Watch, method: str | None) -> None:
        reader = io.BufferedReader(_WatchedReader(sock, watch), _BUFFER)
        super().__init__(_Prepared(reader), method=method)  # type: ignore[arg-type]


class _Prepared:
    """Hands http.client's response the reader we built (it calls ``sock.makefile("rb")``)."""

    def __init__(self, reader: io.BufferedReader) -> None:
        self._reader = reader

    def makefile(self, mode: str) -> io.BufferedReader:
        return self._reader


def lookup(host: str, port: int, timeout: float) -> list[tuple[Any, ...]]:
    """getaddrinfo within ``timeout`` (else TimeoutError): the system resolver has no timeout of ours, and an
    unreachable DNS server at a disconnected site holds it for resolv.conf's timeouts times its attempts times
    the search domains. An IP literal is parsed at once; a name is resolved in a daemon thread that is left to
    finish on its own when the time is up (:class:`LookupTimeout`). An ASCII name goes to getaddrinfo as
    bytes: the same lookup, without loading the idna codec (~1 ms of every command's start-up)."""
    name: Any = host.encode() if host.isascii() else host
    try:
        return socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except socket.gaierror:
        pass  # a name, not an address
    answer: list[Any] = []
    done = threading.Event()

    def resolve() -> None:
        try:
            answer.append(socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            answer.append(exc)
        finally:
            done.set()

    threading.Thread(target=resolve, name=f"resolve {host}", daemon=True).start()
    if not done.wait(timeout):
        raise LookupTimeout(f"resolving {host} took longer than {timeout:g}s")
    if isinstance(answer[0], BaseException):
        raise answer[0]
    return list(answer[0])


_LIVE: weakref.WeakSet[Connection] = weakref.WeakSet()


def _shut_down_live_connections() -> None:
    """On Ctrl-C/SIGTERM (:func:`airgap.progress.on_interrupt`): shut down every open connection's socket, so a
    thread blocked in a send or recv returns now rather than at its timeout (a registry that stopped answering
    is when a user presses Ctrl-C). The base socket's shutdown, even under TLS: it only wakes the waiter."""
    for conn in list(_LIVE):
        sock = conn.sock
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


on_interrupt(_shut_down_live_connections)


class Connection(http.client.HTTPConnection):
    """One connection to an origin (or through a proxy) whose connect, sends and receives obey ``watch``."""

    def __init__(self, scheme: str, netloc: str, hostname: str, port: int, proxy: Proxy | None,
                 context: ssl.SSLContext | None, limits: Limits) -> None:
        via = proxy.host if proxy is not None else hostport(hostname, port)
        super().__init__(via)
        if proxy is not None and context is not None:
            tunnel = {"Host": hostport(hostname, port)}
            if proxy.authorization:
                tunnel["Proxy-Authorization"] = proxy.authorization
            self.set_tunnel(hostname, port, headers=tunnel)
        self.scheme, self.netloc, self.hostname = scheme, netloc, hostname
        self.server_hostname: str | None = hostname  # SNI and the certificate's name
        self.proxy, self.context, self.limits = proxy, context, limits
        self.watch = Watch(f"connecting to {netloc}", limits)
        self._create_connection = self._open

    @property
    def absolute_form(self) -> bool:
        return self.proxy is not None and self.context is None

    def response_class(self, sock: socket.socket, debuglevel: int = 0,  # type: ignore[override]
                       method: str | None = None, url: str | None = None) -> _Response:
        return _Response(sock, self.watch, method)

    def _open(self, address: tuple[str, int], timeout: float, source: Any = None) -> socket.socket:
        """socket.create_connection, but the name lookup (:func:`lookup`) and each address tried get their own
        timeout capped by the deadline (not one timeout per address, which could add up past it)."""
        host, port = address
        error: OSError | None = None
        for family, kind, proto, _, addr in lookup(host, port, self.watch.timeout(self.limits.connect_timeout)):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.watch.timeout(self.limits.connect_timeout))
                sock.connect(addr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise error or OSError(f"no address for {host}")

    def connect(self) -> None:
        """TCP (and the CONNECT tunnel through a proxy) within the connect timeout, then the TLS handshake
        within another, all capped by the deadline."""
        check_interrupted()  # no new connection once the user interrupted
        watch = self.watch
        _LIVE.add(self)
        try:
            super().connect()
        except TimeoutError:
            watch.timed_out()
            raise
        except OSError as exc:
            if not str(exc).startswith("Tunnel connection failed"):
                raise
            proxy = self.proxy.host if self.proxy else f"{self.host}:{self.port}"
            raise TransportError(f"proxy {proxy} refused to tunnel to {self.netloc} "
                                 f"({str(exc).split(':', 1)[1].strip()})") from None
        watch.applied = None  # a new socket: set its timeout on first use
        if self.context is None:
            return
        assert self.sock is not None  # noqa: S101 - super().connect() set it
        try:
            self.sock.settimeout(watch.timeout(self.limits.connect_timeout))  # bounds the whole handshake
            self.sock = self.context.wrap_socket(self.sock, server_hostname=self.server_hostname)
        except TimeoutError:
            self.close()
            watch.timed_out()
            raise
        except BaseException:
            self.close()
            raise

    def send(self, data: Any) -> None:
        """Send bytes; the socket timeout (read_timeout, capped by the deadline) bounds the whole send."""
        if self.sock is None:
            self.connect()
        assert self.sock is not None  # noqa: S101 - connect() sets it or raises
        watch = self.watch
        watch.apply(self.sock, watch.timeout(self.limits.read_timeout))
        try:
            self.sock.sendall(data)
        except TimeoutError:
            watch.timed_out()
            raise

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
