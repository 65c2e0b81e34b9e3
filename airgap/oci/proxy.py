"""Proxy settings for :mod:`airgap.oci.transport`: ``HTTP(S)_PROXY``/``NO_PROXY`` read once, decided per URL.

As in Go's net/http (cosign, crane, skopeo), loopback destinations never go through a proxy. Only
``http://`` proxies are supported: plain HTTP goes in absolute form, HTTPS through a CONNECT tunnel.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from airgap.errors import TransportError
from airgap.refs import is_loopback_host


# NamedTuples, not dataclasses: these load on every command's start-up path, where a dataclass costs ~0.5 ms.
class Proxy(NamedTuple):
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


class ProxyConfig(NamedTuple):
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

