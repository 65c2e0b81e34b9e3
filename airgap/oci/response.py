"""A response whose body streams from its pooled connection: the shape the registry client reads (status,
case-insensitive headers, bounded streaming reads, ``Link`` pagination), over :mod:`http.client`'s framing.

A body that ends before its announced length is an error (:class:`~airgap.oci.connection.NetworkError`), never
short data. The connection goes back to the pool only when the body was read to the end (or a small rest
drained); anything else closes it.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from typing import Any, overload

from airgap.errors import TransportError
from airgap.oci.connection import NetworkError, why

__all__ = ["DRAIN_MAX", "Headers", "Response"]

# Bodies of responses nobody reads (errors, redirects) are drained up to this size to keep the connection;
# beyond it the connection is closed instead.
DRAIN_MAX = 64 * 1024


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


class Response:
    """A response whose body streams from its connection; the connection returns to the pool once the body
    has been read to the end (or drained by :meth:`close`)."""

    def __init__(self, raw: http.client.HTTPResponse, url: str, release: Callable[[bool], None]) -> None:
        self.status_code = raw.status
        self.headers = Headers(raw.msg.items())
        self.url = url
        self._raw = raw
        self._release: Callable[[bool], None] | None = release
        self._content: bytes | None = None
        if raw.length == 0:
            raw.read()  # HEAD, 204, 304, Content-Length: 0: done already
            self._finish(True)

    def _finish(self, reusable: bool) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(reusable and not self._raw.will_close)
        if not reusable:
            self._raw.close()  # a will_close response holds its socket itself

    def _fail(self, exc: BaseException) -> NetworkError:
        self._finish(False)
        return NetworkError(f"connection broke while reading {self.url}: {why(exc)}", exc)

    def read(self, amt: int) -> bytes:
        """Up to ``amt`` bytes (fewer only at chunk boundaries and the end); b"" at the end. Raises
        NetworkError when the connection breaks, stalls or the body ends before its announced length."""
        if self._release is None or amt <= 0:
            return b""
        raw = self._raw
        try:
            if raw.chunked:
                data = raw.read1(amt)  # to the end of the current chunk at most
                while data and len(data) < amt and raw.chunk_left:
                    data += raw.read1(amt - len(data))
            else:
                data = raw.read(amt)
                if not data and raw.length:
                    raise http.client.IncompleteRead(b"", raw.length)
        except TransportError:
            self._finish(False)
            raise
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise self._fail(exc) from None
        if raw.isclosed():
            self._finish(True)
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
        """The body parsed as JSON by the strict loader (the server is untrusted: duplicate keys, depth bombs
        and malformed text are airgap Errors); with ``cap``, a body over ``cap`` bytes parses as ``null``."""
        from airgap.jsondoc import load_json

        return load_json((self.content if cap is None else self.body(cap)) or b"null", f"response from {self.url}")

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
        raw = self._raw
        if raw.chunked or raw.length is None or raw.length > DRAIN_MAX:
            self._finish(False)
            return
        try:
            rest = b"".join(self.iter_content(DRAIN_MAX))
        except TransportError:
            return
        if self._content is None:
            self._content = rest
