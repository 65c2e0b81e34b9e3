"""A loopback HTTP proxy in front of a real registry that injects faults: wrong bytes, error statuses
(with Retry-After), connections reset mid-body, redirects elsewhere, and answers held back (``delay``: the
registry is slow to acknowledge). Used to prove the client detects and survives them (or refuses them).

``answered`` records, for every request forwarded to the registry, the moment its answer was about to be sent
back to the client (``time.monotonic()``, comparable across processes), with the method, path, status and the
request body's length: what the registry had acknowledged by a given moment."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    """Applies to requests whose method is in ``methods`` and whose path contains ``match``."""

    kind: str  # "corrupt" | "status" | "reset" | "redirect" | "delay"
    match: str
    methods: tuple[str, ...] = ("GET",)
    times: int | None = None  # None: forever
    status: int = 503
    retry_after: str | None = None
    location: str | None = None  # "redirect": scheme://host:port the request is sent to (path kept), with `status`
    seconds: float = 0.0  # "delay": the registry's answer is held back this long
    hits: int = 0

    def applies(self, method: str, path: str) -> bool:
        return method in self.methods and self.match in path and (self.times is None or self.hits < self.times)


@dataclass
class FaultProxy:
    upstream: str  # host:port of the real registry (plain HTTP)
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    answered: list[tuple[float, str, str, int, int]] = field(default_factory=list)  # (when, method, path, status, body)
    server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def add(self, kind: str, match: str, **kwargs: object) -> Fault:
        fault = Fault(kind, match, **kwargs)  # type: ignore[arg-type]
        self.faults.append(fault)
        return fault

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                fault = next((f for f in proxy.faults if f.applies(self.command, self.path)), None)
                if fault is not None:
                    fault.hits += 1
                if fault is not None and fault.kind == "redirect":
                    proxy.log.append((self.command, self.path, fault.status))
                    self.send_response(fault.status)
                    self.send_header("Location", f"{fault.location}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault is not None and fault.kind == "status":
                    proxy.log.append((self.command, self.path, fault.status))
                    payload = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
                    self.send_response(fault.status)
                    if fault.retry_after:
                        self.send_header("Retry-After", fault.retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding",)}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read() if self.command != "HEAD" else b""
                proxy.log.append((self.command, self.path, resp.status))
                if fault is not None and fault.kind == "delay":
                    time.sleep(fault.seconds)
                proxy.answered.append((time.monotonic(), self.command, self.path, resp.status, len(body)))
                if fault is not None and fault.kind == "corrupt" and data:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.end_headers()
                if fault is not None and fault.kind == "reset" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def count(log: list[tuple[str, str, int]], pred: Callable[[str, str, int], bool]) -> int:
    return sum(1 for entry in log if pred(*entry))
