"""Slow and idle clients: the webhook keeps answering while thousands of connections never finish.

uvicorn (0.54, httptools) arms no timer on a fresh connection: one that sends nothing, drips its request
headers or its body holds a socket and memory for ever, and ``limit_concurrency`` then answers every new
request 503, the worst failure for a webhook registered with ``failurePolicy: Fail`` (every pod create in
the cluster fails). So the webhook runs uvicorn's HTTP protocol under a :class:`Guard` that sees each
connection from the moment it is accepted:

* TLS is layered per connection under the HTTP protocol (the loop's own TLS protocol, installed as the
  connection is accepted), so a connection is tracked, and can be closed, before and during its
  handshake, not only once it speaks HTTP;
* each connection is in one phase: ``waiting`` (TLS handshake, request line, headers), ``reading``
  (the request body), ``active`` (a complete request being decided: never timed out or shed here, the
  review has its own deadline) or ``idle`` (keep-alive between requests);
* a connection still ``waiting`` ``header_timeout`` s after it was accepted, or after the first byte of
  its next request, is closed; a body not complete ``body_timeout`` s after its headers is answered 408
  by the app (:func:`airgap.admission.server.asgi_app`), with a backstop here; an ``idle`` connection is
  closed after ``keepalive_timeout`` s (uvicorn's own timer, backstop here);
* at most ``max_connections``: a connection accepted over the limit sheds the one that has been slow
  (``waiting`` or ``reading``) the longest, else the longest ``idle`` one, never an ``active`` one; only
  when every connection is answering a request is the new one refused;
* request bodies held across all connections are capped at ``max_buffered_bytes``: over it, the oldest
  unfinished bodies are dropped with their connections.

Closed here means aborted: no TLS close_notify exchange that a slow peer could stretch out. Everything runs
on the event loop (no locks); a timer every ``tick`` seconds expires connections in O(expired) (each phase
is kept in order of entry).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    import ssl

WAITING, READING, ACTIVE, IDLE = "waiting", "reading", "active", "idle"
PHASES = (WAITING, READING, ACTIVE, IDLE)
# A closing TLS connection waits this long for the peer's close_notify (asyncio's default is 30 s).
SSL_SHUTDOWN_TIMEOUT = 2.0
# Backstops fire this long after the timer that should have closed a connection first.
GRACE = 1.0


class Connection(Protocol):
    def abort_connection(self) -> None: ...


class Guard:
    """Phases, timeouts and shedding of every connection of one server (see the module docstring)."""

    def __init__(self, *, header_timeout: float, body_timeout: float, keepalive_timeout: float,
                 max_connections: int, max_buffered_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.keepalive_timeout = keepalive_timeout
        self.max_connections = max_connections
        self.max_buffered_bytes = max_buffered_bytes
        self.tick = max(0.05, min(0.5, header_timeout / 4))
        self._clock = clock
        # Each phase in order of entry, so the oldest is first; ACTIVE needs no order.
        self._phases: dict[str, OrderedDict[Connection, float]] = {p: OrderedDict() for p in PHASES}
        self._phase: dict[Connection, str] = {}
        self._body: dict[Connection, int] = {}
        self.buffered = 0
        self.counters = {"shed": 0, "refused": 0, "shed_for_memory": 0, "header_timeouts": 0,
                         "body_timeouts": 0, "idle_timeouts": 0}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._phase)

    def counts(self) -> dict[str, int]:
        return {p: len(self._phases[p]) for p in PHASES}

    def phase(self, conn: Connection) -> str | None:
        return self._phase.get(conn)

    # ---- transitions (called by the protocol) ---------------------------------------------------

    def opened(self, conn: Connection) -> bool:
        """Track a new connection (``waiting``); False when it must be refused: every other is active."""
        self._arm()
        while len(self._phase) >= self.max_connections:
            victim = self._oldest_slow() or self._oldest(IDLE)
            if victim is None:
                self.counters["refused"] += 1
                return False
            self.counters["shed"] += 1
            self.abort(victim)
        self._enter(conn, WAITING)
        return True

    def move(self, conn: Connection, phase: str) -> None:
        old = self._phase.get(conn)
        if old is None or old == phase:
            return
        del self._phases[old][conn]
        self._enter(conn, phase)

    def body(self, conn: Connection, size: int) -> None:
        """``size`` more body bytes arrived on ``conn``; drop the oldest unfinished bodies while over the cap."""
        if conn not in self._phase:
            return
        self._body[conn] = self._body.get(conn, 0) + size
        self.buffered += size
        while self.buffered > self.max_buffered_bytes:
            victim = self._oldest(READING)
            if victim is None:
                break  # what is left belongs to requests being answered: they end within the deadline
            self.counters["shed_for_memory"] += 1
            self.abort(victim)

    def request_done(self, conn: Connection) -> None:
        """The response went out: the request's body no longer counts."""
        self.buffered -= self._body.pop(conn, 0)

    def closed(self, conn: Connection) -> None:
        phase = self._phase.pop(conn, None)
        if phase is not None:
            self._phases[phase].pop(conn, None)
        self.buffered -= self._body.pop(conn, 0)

    def abort(self, conn: Connection) -> None:
        self.closed(conn)
        conn.abort_connection()

    def close(self) -> None:
        """Stop the timer and abort every connection (the server is shutting down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in list(self._phase):
            self.abort(conn)

    # ---- internals ------------------------------------------------------------------------------

    def _enter(self, conn: Connection, phase: str) -> None:
        self._phase[conn] = phase
        self._phases[phase][conn] = self._clock()

    def _oldest(self, phase: str) -> Connection | None:
        return next(iter(self._phases[phase]), None)

    def _oldest_slow(self) -> Connection | None:
        waiting, reading = self._oldest(WAITING), self._oldest(READING)
        if waiting is None or reading is None:
            return waiting or reading
        return waiting if self._phases[WAITING][waiting] <= self._phases[READING][reading] else reading

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.tick, self._expire)

    def _expire(self) -> None:
        now = self._clock()
        for phase, limit, counter in ((WAITING, self.header_timeout, "header_timeouts"),
                                      (READING, self.body_timeout + GRACE, "body_timeouts"),
                                      (IDLE, self.keepalive_timeout + GRACE, "idle_timeouts")):
            entries = self._phases[phase]
            while entries:
                conn, since = next(iter(entries.items()))
                if since + limit > now:
                    break
                self.counters[counter] += 1
                self.abort(conn)
        self._timer = asyncio.get_running_loop().call_later(self.tick, self._expire) if self._phase else None


def _ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The TLS protocol of ``loop``'s own implementation (what its ``start_tls`` and ``create_server(ssl=)``
    use; uvloop's is native and takes only a uvloop loop). Both take the same arguments."""
    import asyncio.sslproto

    try:
        import uvloop
        import uvloop.loop
    except ImportError:
        return asyncio.sslproto.SSLProtocol
    if isinstance(loop, uvloop.Loop):
        return uvloop.loop.SSLProtocol  # type: ignore[attr-defined]
    return asyncio.sslproto.SSLProtocol


def protocol_class(guard: Guard, context: ssl.SSLContext) -> Any:
    """uvicorn's httptools protocol with TLS started per connection and every phase reported to ``guard``.

    uvicorn builds one instance per accepted connection (``Config(http=...)``) and calls it with the
    plain TCP transport (the server itself is created without TLS); the instance puts the TLS protocol
    under itself, which calls ``connection_made`` again with the TLS transport after the handshake."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._raw: asyncio.Transport | None = None
            self._tls: Any = None
            self._speaking = False  # TLS is up and uvicorn's connection_made ran
            self._gone = False

        # ---- connection lifetime ----------------------------------------------------------------

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if self._raw is not None:  # second call: from the TLS layer, once the handshake is done
                if self._gone:
                    transport.abort()  # type: ignore[attr-defined]
                    return
                super().connection_made(transport)  # type: ignore[arg-type]
                self._speaking = True
                return
            # A stream server's transport (uvloop's does not subclass asyncio.Transport, hence no isinstance).
            raw = self._raw = cast(asyncio.Transport, transport)
            if not guard.opened(self):
                self._gone = True
                raw.abort()
                return
            self.connections.add(self)  # uvicorn's shutdown reaches it even before TLS is up
            # TLS starts with the first byte (see data_received): until then a connection costs a socket and
            # this object, not a TLS session (~50 KiB while a handshake is pending).

        def data_received(self, data: bytes) -> None:
            if self._speaking:
                super().data_received(data)
            elif self._tls is None and not self._gone:
                self._start_tls(data)

        def _start_tls(self, hello: bytes) -> None:
            """Put the loop's TLS protocol under this one and hand it the bytes read so far (the ClientHello).

            Installed synchronously, so no later byte can reach the plain protocol (``loop.start_tls``
            swaps protocols an iteration later and loses bytes read before that)."""
            raw = cast(asyncio.Transport, self._raw)
            waiter = self.loop.create_future()
            waiter.add_done_callback(self._handshake_done)
            tls = self._tls = _ssl_protocol_class(self.loop)(
                self.loop, self, context, waiter, server_side=True, call_connection_made=True,
                ssl_handshake_timeout=guard.header_timeout, ssl_shutdown_timeout=SSL_SHUTDOWN_TIMEOUT)
            raw.set_protocol(tls)
            tls.connection_made(raw)
            view = memoryview(hello)
            while view and not self._gone:
                buffer = tls.get_buffer(len(view))
                size = min(len(buffer), len(view))
                buffer[:size] = view[:size]
                tls.buffer_updated(size)
                view = view[size:]

        def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
            if waiter.cancelled() or waiter.exception() is not None:  # reset, bad hello, timeout: forget it
                self._drop()

        def connection_lost(self, exc: Exception | None) -> None:
            self._drop()
            if self._speaking:
                super().connection_lost(exc)

        def _drop(self) -> None:
            self._gone = True
            guard.closed(self)
            self.connections.discard(self)

        def abort_connection(self) -> None:
            self._gone = True
            if self._speaking:
                self.transport.abort()
            elif self._raw is not None:
                self._raw.abort()

        def shutdown(self) -> None:
            if self._speaking:
                super().shutdown()
            else:
                guard.abort(self)

        # ---- request phases -----------------------------------------------------------------------

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if guard.phase(self) == IDLE:
                guard.move(self, WAITING)  # the next request's headers are timed from its first byte

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            if guard.phase(self) == WAITING:
                guard.move(self, READING)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            guard.body(self, len(body))

        def on_message_complete(self) -> None:
            super().on_message_complete()
            if guard.phase(self) == READING:
                guard.move(self, ACTIVE)

        def on_response_complete(self) -> None:
            pipelined = bool(self.pipeline)
            super().on_response_complete()
            guard.request_done(self)
            if not self.transport.is_closing():
                guard.move(self, ACTIVE if pipelined else IDLE)

    return GuardedHttpProtocol
