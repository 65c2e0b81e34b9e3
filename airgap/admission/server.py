"""The admission webhook server: ``POST /validate`` and ``POST /mutate`` (AdmissionReview v1), ``/healthz``,
``/readyz``, ``/metrics``.

Two layers. :class:`~airgap.admission.service.AdmissionService` is the whole webhook without HTTP:
``handle(method, path, body)`` returns ``(status, content type, bytes)``; it owns the trust, the verifier,
the decision cache, metrics and logs (see :mod:`airgap.admission.service` for the threat model and failure
behaviour). This module is the HTTP layer: :func:`asgi_app` puts the service behind any ASGI server;
:func:`serve` runs it on uvicorn (httptools + uvloop) with TLS and HTTP/1.1 keep-alive, the stack
scripts/bench_webhook.py measured fastest for this workload, under the slow-client guard of
:mod:`airgap.admission.guard` (header, body and idle timeouts, a connection limit that sheds the slowest
connections, a cap on buffered bodies). At start-up the soft limit on open files is raised to the hard
limit, so ``max_connections`` sockets fit (the limit is lowered, and logged, if they cannot).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airgap.admission.metrics import BUCKETS, JsonLog, Metrics
from airgap.admission.review import UID_HINT_BYTES
from airgap.admission.service import JSON, TEXT, AdmissionService, WebhookConfig, fingerprint
from airgap.errors import ConfigError, Error

if TYPE_CHECKING:
    from airgap.admission.guard import Guard

__all__ = ["BUCKETS", "JSON", "TEXT", "AdmissionService", "JsonLog", "Metrics", "Running", "WebhookConfig",
           "asgi_app", "fingerprint", "raise_open_files_limit", "serve", "start"]

ASGIApp = Any
# File descriptors kept for everything but client connections (registry pool, trust files, logs).
RESERVED_FDS = 256


def asgi_app(service: AdmissionService) -> ASGIApp:
    """An ASGI 3 app over ``service``: reads the body (capped, timed), decides on the event loop.

    Reviews are decided on the loop (:meth:`AdmissionService.handle_async`): a review costs no thread
    hand-off except for its registry calls and verifications, which run in the service's executor. On
    2 cores the hand-offs, not the work, were most of the webhook's CPU (scripts/bench_webhook.py).
    A body not complete within ``body_timeout`` seconds of its headers is answered 408 and the connection
    closed; a body over ``max_body`` is not read past its first bytes (kept for the uid) and answered
    (a denial) with the connection closed.
    """
    cap = service.config.max_body
    body_timeout = service.config.body_timeout
    late = (b'{"error":"request body not received within %gs"}' % body_timeout)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        body: bytes | None = None
        prefix = b""
        if method == "POST":
            try:
                async with asyncio.timeout(body_timeout):
                    got = await _read_body(scope, receive, cap)
            except TimeoutError:
                await _respond(send, 408, JSON, late, method, close=True)
                return
            if got is None:
                return  # the client went away
            body, prefix = got
        call = service.handle_async(method, path, body, prefix=prefix)
        too_large, body = body is None and method == "POST", None  # the service owns the bytes now
        status, ctype, payload = await call
        await _respond(send, status, ctype, payload, method, close=too_large)

    return app


async def _read_body(scope: dict[str, Any], receive: Any, cap: int) -> tuple[bytes | None, bytes] | None:
    """``(body, b"")``, or ``(None, first bytes)`` when it is over ``cap``; None when the client left."""
    declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
    over = declared.isdigit() and int(declared) > cap
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if over or size + len(chunk) > cap:
            over = True
            if size < UID_HINT_BYTES:  # keep reading only as far as the uid could be
                chunks.append(chunk[: UID_HINT_BYTES - size])
                size += len(chunks[-1])
            if size >= UID_HINT_BYTES or not more:
                return None, b"".join(chunks)
            continue
        chunks.append(chunk)
        size += len(chunk)
        if not more:
            return b"".join(chunks), b""


async def _respond(send: Any, status: int, ctype: str, payload: bytes, method: str, *, close: bool) -> None:
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload if method != "HEAD" else b""})


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (containers often start at 1024 soft);
    return the soft limit in force afterwards."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    targets = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 1 << 16]
    for target in targets:
        if target <= soft:
            return soft
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            continue
    return soft


@dataclass
class Running:
    """A webhook serving in a background thread (tests, benchmarks): ``url`` and ``stop()``."""

    service: AdmissionService
    port: int
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    guard: Guard | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # do not wait for idle keep-alive clients
        self._thread.join(timeout=10)
        self.service.close()


def _uvicorn(service: AdmissionService, cert: str, key: str) -> tuple[Any, Guard]:
    """A uvicorn server over ``service`` with TLS per connection under the slow-client guard."""
    import ssl

    import uvicorn

    from airgap.admission.guard import Guard, protocol_class

    cfg = service.config
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the serving certificate {cert} / key {key}: {exc}") from None
    files = raise_open_files_limit()
    max_connections = min(cfg.max_connections, max(64, files - RESERVED_FDS))
    if max_connections < cfg.max_connections:
        service.log("warning", "open-files limit too low for max_connections; lowered", max_connections=max_connections,
                    requested=cfg.max_connections, nofile=files)
    guard = Guard(header_timeout=cfg.header_timeout, body_timeout=cfg.body_timeout,
                  keepalive_timeout=cfg.keepalive_timeout, max_connections=max_connections,
                  max_buffered_bytes=cfg.max_buffered_bytes)
    for phase in ("waiting", "reading", "active", "idle"):
        service.gauges[f"connections_{phase}"] = lambda phase=phase: guard.counts()[phase]  # type: ignore[misc]
    service.gauges["request_body_bytes_buffered"] = lambda: guard.buffered
    for name in guard.counters:
        service.counters[f"connections_{name}"] = lambda name=name: guard.counters[name]  # type: ignore[misc]
    # No limit_concurrency (it answers 503 once slow connections pile up: the guard sheds them instead);
    # no lifespan (nothing to start or stop).
    config = uvicorn.Config(asgi_app(service), loop="uvloop", http=protocol_class(guard, context), lifespan="off",
                            log_level="warning", access_log=False,
                            timeout_keep_alive=max(1, math.ceil(cfg.keepalive_timeout)), limit_concurrency=None,
                            server_header=False, date_header=False, timeout_graceful_shutdown=3,
                            backlog=_backlog(max_connections))
    return uvicorn.Server(config), guard


def _backlog(max_connections: int) -> int:
    return max(1024, min(max_connections, 4096))


def _listen(host: str, port: int) -> Any:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(_backlog(4096))
    sock.set_inheritable(True)
    return sock


def start(config: WebhookConfig, cert: str, key: str, *, host: str = "127.0.0.1", port: int = 0,
          log: JsonLog | None = None) -> Running:
    """Serve in a background thread on ``host:port`` (0: any free port); returns once it accepts."""
    service = AdmissionService(config, log=log)
    try:
        server, guard = _uvicorn(service, cert, key)
        sock = _listen(host, port)
    except BaseException:
        service.close()
        raise
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="airgap-webhook", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        service.close()
        raise Error("webhook server did not start")
    return Running(service, sock.getsockname()[1], server, thread, guard)


def serve(config: WebhookConfig, cert: str, key: str, *, host: str = "0.0.0.0", port: int = 8443) -> None:  # noqa: S104
    """Serve until SIGTERM/SIGINT (the foreground ``airgap webhook serve``), then return: uvicorn finishes the
    reviews in flight, and a stop asked for (Kubernetes sends SIGTERM) is no failure, so the command exits 0.
    (uvicorn passes the signal on to the CLI's handler once it has shut down: that is the KeyboardInterrupt.)"""
    service = AdmissionService(config)
    try:
        server, guard = _uvicorn(service, cert, key)
        service.log("info", "serving", address=f"{host}:{port}", mode=config.mode, deadline=config.deadline,
                    max_connections=guard.max_connections, max_verifications=config.max_verifications)
        try:
            server.run(sockets=[_listen(host, port)])
        except KeyboardInterrupt:
            pass
        service.log("info", "stopped")
    finally:
        service.close()
