"""The admission webhook server: ``POST /validate`` (AdmissionReview v1), ``/healthz``, ``/readyz``, ``/metrics``.

Two layers. :class:`~airgap.admission.service.AdmissionService` is the whole webhook without HTTP:
``handle(method, path, body)`` returns ``(status, content type, bytes)``; it owns the trust, the verifier,
the decision cache, metrics and logs (see :mod:`airgap.admission.service` for the threat model and failure
behaviour). This module is the HTTP layer: :func:`asgi_app` puts the service behind any ASGI server;
:func:`serve` runs it on uvicorn (httptools + uvloop) with TLS and HTTP/1.1 keep-alive, the stack
scripts/bench_webhook.py measured fastest for this workload.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from airgap.admission.metrics import BUCKETS, JsonLog, Metrics
from airgap.admission.service import JSON, TEXT, AdmissionService, WebhookConfig, fingerprint
from airgap.errors import Error

__all__ = ["BUCKETS", "JSON", "TEXT", "AdmissionService", "JsonLog", "Metrics", "Running", "WebhookConfig",
           "asgi_app", "fingerprint", "serve", "start"]

ASGIApp = Any


def asgi_app(service: AdmissionService) -> ASGIApp:
    """An ASGI 3 app over ``service``: reads the body (capped), decides on the event loop.

    Reviews are decided on the loop (:meth:`AdmissionService.handle_async`): a review costs no thread
    hand-off except for its registry calls and verifications, which run in the service's executor. On
    2 cores the hand-offs, not the work, were most of the webhook's CPU (scripts/bench_webhook.py).
    """
    cap = service.config.max_body

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
        if method == "POST":
            declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > cap:
                body = None  # not read at all: the server closes the connection after answering
            else:
                chunks: list[bytes] = []
                size = 0
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > cap:
                        chunks = []
                        break
                    chunks.append(chunk)
                    more = message.get("more_body", False)
                body = b"".join(chunks) if size <= cap else None
        status, ctype, payload = await service.handle_async(method, path, body)
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(payload)).encode())]
        if body is None and method == "POST":
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload if method != "HEAD" else b""})

    return app


@dataclass
class Running:
    """A webhook serving in a background thread (tests, benchmarks): ``url`` and ``stop()``."""

    service: AdmissionService
    port: int
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # do not wait for idle keep-alive clients
        self._thread.join(timeout=10)
        self.service.close()


def _uvicorn(service: AdmissionService, cert: str, key: str) -> Any:
    import uvicorn

    config = uvicorn.Config(asgi_app(service), ssl_certfile=cert, ssl_keyfile=key, loop="uvloop", http="httptools",
                            lifespan="on", log_level="warning", access_log=False, timeout_keep_alive=75,
                            limit_concurrency=2048, server_header=False, date_header=False,
                            timeout_graceful_shutdown=3)
    return uvicorn.Server(config)


def _listen(host: str, port: int) -> Any:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def start(config: WebhookConfig, cert: str, key: str, *, host: str = "127.0.0.1", port: int = 0,
          log: JsonLog | None = None) -> Running:
    """Serve in a background thread on ``host:port`` (0: any free port); returns once it accepts."""
    service = AdmissionService(config, log=log)
    sock = _listen(host, port)
    server = _uvicorn(service, cert, key)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="airgap-webhook", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        service.close()
        raise Error("webhook server did not start")
    return Running(service, sock.getsockname()[1], server, thread)


def serve(config: WebhookConfig, cert: str, key: str, *, host: str = "0.0.0.0", port: int = 8443) -> None:  # noqa: S104
    """Serve until SIGTERM/SIGINT (the foreground ``airgap webhook serve``)."""
    service = AdmissionService(config)
    service.log("info", "serving", address=f"{host}:{port}", mode=config.mode, deadline=config.deadline)
    try:
        _uvicorn(service, cert, key).run(sockets=[_listen(host, port)])
    finally:
        service.close()
