"""A loopback "registry" that wastes a client's time on purpose, on real sockets.

Modes:
- ``silent``: accepts every connection and never sends a byte (not even to a TLS handshake);
- ``drip-headers``: answers a status line, then the header block one byte per ``interval``, for ever;
- ``drip-body``: answers complete headers of a 100 kB manifest, then its body one byte per ``interval``.

Except in ``silent`` mode, ``GET /v2/`` (the client's ping) is answered at once, as a registry that is slow
only on content would, and a TLS ClientHello (the client probing whether the registry speaks TLS) as a plain
HTTP server would answer it, by closing the connection. Every other HTTP request line received is recorded
in ``requests``.
"""

from __future__ import annotations

import socket
import threading

MODES = ("silent", "drip-headers", "drip-body")


class SlowServer:
    def __init__(self, mode: str, interval: float = 1.0) -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.interval = interval
        self.requests: list[str] = []
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _hang(self) -> None:
        self._stop.wait()

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.wait(self.interval):
                return
            conn.sendall(data[i:i + 1])

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                if self.mode == "silent":
                    self._hang()
                    return
                if conn.recv(1, socket.MSG_PEEK) == b"\x16":  # a TLS handshake: a plain HTTP server drops it
                    return
                buffer = b""
                while True:  # requests on this connection
                    while b"\r\n\r\n" not in buffer:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        buffer += chunk
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    if head.startswith(b"GET /v2/ "):
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                        continue
                    self.requests.append(head.split(b"\r\n", 1)[0].decode())
                    if self.mode == "drip-headers":
                        conn.sendall(b"HTTP/1.1 200 OK\r\n")
                        self._drip(conn, b"X-Slow: " + b"a" * 100_000 + b"\r\n\r\n")
                        return
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                                 b"Content-Length: 100000\r\n\r\n")
                    if not head.startswith(b"HEAD "):
                        self._drip(conn, b"{" + b" " * 99_999)
                        return
        except OSError:
            pass
