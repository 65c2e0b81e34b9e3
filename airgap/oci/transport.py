"""HTTP(S) to registries on the standard library's :mod:`http.client`, with the policy that library leaves to us.

http.client does the HTTP/1.1 wire work (request and status lines, header blocks, bodies framed by
Content-Length, chunked encoding or connection close, CONNECT tunnels). Around it:
:mod:`airgap.oci.connection` puts every connect, send and receive under the request's time limits (guarantee 9:
the operation's deadline, per-operation timeouts, a stall detector), :mod:`airgap.oci.response` streams bodies
(short ones are errors, never short data), :mod:`airgap.oci.proxy` reads the proxy settings, and this module:

- pools keep-alive connections per (scheme, host, TLS mode), shared by all threads (a thread pool that comes and
  goes, as ``verify_many`` does per call, reuses them); a connection is checked out for one request and its
  response, and goes back only when the body was read to the end. An idle connection the server has closed is
  noticed before use (it polls readable) and replaced; a request that still meets a dead reused connection is
  replayed once on a fresh one when its body can be sent again.
- follows redirects (guarantee 10, connections go only where the user pointed) up to :data:`MAX_REDIRECTS`
  within the original host:port (compared normalised: lowercase, default ports explicit) and from http to https
  on the same host; to any other host, or from https to http, only when the user allowed the target host
  (``--allow-redirect``, :attr:`~airgap.config.RegistryOptions.redirect_hosts`), else :class:`RedirectRefused`.
  ``Authorization`` never leaves the original host.
- sets the TLS policy: the system CAs plus ``--ca-file``, verified hostnames; ``--insecure-registry`` hosts skip
  verification. Contexts are built on first HTTPS use only (loading the system CA store costs ~30 ms; http.client
  imports :mod:`ssl` itself).
- sends plain HTTP through an ``HTTP_PROXY`` in absolute form and HTTPS through a CONNECT tunnel; as in Go's
  net/http (cosign, crane, skopeo), loopback never goes through a proxy.

Retries, auth and digests are the caller's business: this layer only says whether a failure was the network
(:class:`NetworkError`, worth retrying) or final (:class:`~airgap.errors.TransportError`: TLS trust; and
:data:`FINAL`, which no retry loop repeats: a refused redirect, the deadline). Threat model: the server is
untrusted (status lines, header blocks and redirects included).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from airgap.config import RegistryOptions
from airgap.errors import ConfigError, TransportError
from airgap.oci.connection import Connection, NetworkError, Stalled, Watch, hostport, is_ip, why
from airgap.oci.deadline import DeadlineExceeded
from airgap.oci.proxy import ProxyConfig
from airgap.oci.response import Headers, Response

if TYPE_CHECKING:
    import ssl

__all__ = ["FINAL", "MAX_REDIRECTS", "Body", "Headers", "NetworkError", "ProxyConfig", "RedirectRefused",
           "Response", "Transport", "endpoint", "redirect_hosts"]

MAX_REDIRECTS = 10
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_IDLE_PER_KEY = 16  # idle connections kept per host; more in flight at once are closed when done
_DEFAULT_PORTS = {"http": 80, "https": 443}

Body = bytes | Iterable[bytes] | None


class RedirectRefused(TransportError):
    """A registry redirected us to a host the user did not point at (or from https to http). Final."""


# Transport errors no retry loop may repeat: the deadline passed, or the user's host policy said no.
FINAL: tuple[type[TransportError], ...] = (DeadlineExceeded, RedirectRefused)


def endpoint(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, normalised for comparison: lowercase host without IPv6
    brackets, the scheme's default port made explicit. Raises TransportError for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise TransportError(f"{url[:200]}: unsupported URL")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise TransportError(f"{url[:200]}: invalid port") from None
    return scheme, parts.hostname.lower().rstrip("."), port


def redirect_hosts(entries: Iterable[str]) -> frozenset[str]:
    """``--allow-redirect`` values normalised as :func:`endpoint` compares hosts: ``host:port``, lowercase,
    both default ports (80, 443) when none is given. Raises ConfigError for anything but HOST[:PORT]."""
    out: set[str] = set()
    for entry in entries:
        text = entry.strip()
        parts = urlsplit(f"//{text}")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not text or any(c in text for c in "/@?#") or not parts.hostname or port == -1 or port == 0:
            raise ConfigError(f"--allow-redirect {entry!r}: give HOST or HOST:PORT")
        host = parts.hostname.lower().rstrip(".")
        out.update(hostport(host, p) for p in ((port,) if port else (80, 443)))
    return frozenset(out)


class Transport:
    """Pooled HTTP(S) connections with the TLS, proxy and redirect settings of one RegistryOptions;
    thread-safe."""

    def __init__(self, options: RegistryOptions, proxies: ProxyConfig | None = None) -> None:
        self.options = options
        self.limits = options.limits
        self.redirect_hosts = redirect_hosts(options.redirect_hosts)
        self.proxies = ProxyConfig.from_env() if proxies is None else proxies
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, bool], list[Connection]] = {}
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

    def _new(self, scheme: str, netloc: str, insecure: bool) -> Connection:
        parts = urlsplit(f"//{netloc}")
        try:
            port = parts.port or _DEFAULT_PORTS[scheme]
        except ValueError:
            raise TransportError(f"invalid host {netloc!r}") from None
        hostname = parts.hostname or netloc
        proxy = self.proxies.for_url(scheme, hostname, port)
        context = self._context(insecure) if scheme == "https" else None
        try:
            return Connection(scheme, netloc, hostname, port, proxy, context, self.limits)
        except http.client.InvalidURL:
            raise TransportError(f"invalid host {netloc!r}") from None

    def _checkout(self, key: tuple[str, str, bool]) -> tuple[Connection, bool]:
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

    def _checkin(self, key: tuple[str, str, bool], conn: Connection, reusable: bool) -> None:
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
        conn.watch = Watch(f"probing TLS at {netloc}", self.limits)
        if is_ip(conn.hostname):
            # No SNI is sent for an address anyway; None spares ssl encoding it with the idna codec (~1 ms
            # at start-up). Nothing is verified in a probe, so no name is needed.
            conn.server_hostname = None
        try:
            conn.connect()
            return True
        except (OSError, http.client.HTTPException):  # ssl.SSLError (plain HTTP bytes), reset, refused, timeout
            return False
        finally:
            conn.close()

    # ---- requests ---------------------------------------------------------------------------------

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, body: Body = None,
                length: int | None = None, insecure: bool | None = None, redirects: bool = True) -> Response:
        """Send one request, following the redirects the host policy allows (none with ``redirects=False``);
        return the response with its body unread.

        ``body`` is bytes, or an iterable of chunks with their total ``length`` (sent with Content-Length,
        each chunk handed to the socket whole). ``insecure`` defaults to whether the URL's host is an
        ``--insecure-registry``; it applies to the whole redirect chain, as requests does.
        """
        hdrs = dict(headers or {})
        if insecure is None:
            insecure = urlsplit(url).netloc in self.options.insecure
        origin = endpoint(url)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._send(method, url, hdrs, body, length, insecure)
            location = resp.headers.get("Location")
            if resp.status_code not in _REDIRECTS or not location or not redirects:
                return resp
            if method not in ("GET", "HEAD") and resp.status_code in (301, 302, 303):
                method, body, length = "GET", None, None
            elif body is not None and not isinstance(body, bytes):
                return resp  # a one-shot stream cannot be sent again: let the caller see the redirect
            resp.close()
            target = urljoin(url, location)
            if not self._same_host(origin, target, method, url):
                # Never hand the registry's credentials to another host (blob storage, a CDN).
                hdrs = {k: v for k, v in hdrs.items() if k.lower() != "authorization"}
            url = target
        raise TransportError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")

    def _same_host(self, origin: tuple[str, str, int], target: str, method: str, current: str) -> bool:
        """Whether a redirect to ``target`` stays on the original host; raises RedirectRefused when it goes
        where the user did not point (another host not in ``redirect_hosts``, or from https to http)."""
        scheme, host, port = endpoint(target)
        here_scheme, here_host, here_port = endpoint(current)
        same = (host, port) == origin[1:] or (
            # http -> https on the same host, default ports (the usual upgrade redirect)
            host == origin[1] and (origin[0], origin[2], scheme, port) == ("http", 80, "https", 443))
        allowed = hostport(host, port) in self.redirect_hosts
        where = f"{method} {hostport(here_host, here_port)}{urlsplit(current).path}"
        if here_scheme == "https" and scheme == "http" and not allowed:
            raise RedirectRefused(
                f"{where}: redirect from https to http://{hostport(host, port)} refused (TLS downgrade); "
                f"pass --allow-redirect {hostport(host, port)} to follow it")
        if not same and not allowed:
            raise RedirectRefused(
                f"{where}: redirect from {hostport(*origin[1:])} to {hostport(host, port)} refused "
                f"(another host); pass --allow-redirect {hostport(host, port)} to follow it")
        return same

    def _send(self, method: str, url: str, headers: dict[str, str], body: Body, length: int | None,
              insecure: bool) -> Response:
        parts = urlsplit(url)
        scheme, netloc = parts.scheme, parts.netloc
        if scheme not in ("http", "https") or not netloc:
            raise TransportError(f"{url[:200]}: unsupported URL")
        key = (scheme, netloc, insecure and scheme == "https")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        replayable = body is None or isinstance(body, bytes)
        what = f"{method} {netloc}{parts.path or '/'}"
        while True:
            conn, reused = self._checkout(key)
            conn.watch = Watch(what, self.limits)
            try:
                if conn.sock is None:
                    conn.connect()
                    with self._lock:
                        self.connections_opened += 1
                self._write(conn, method, target, netloc, headers, body, length)
                raw = conn.getresponse()
            except TransportError:
                conn.close()
                raise
            except (OSError, ValueError, http.client.HTTPException) as exc:
                conn.close()
                if scheme == "https":
                    import ssl

                    if isinstance(exc, ssl.SSLCertVerificationError):
                        raise TransportError(
                            f"TLS certificate of {netloc} is not trusted (pass --ca-file with its CA, or "
                            f"--insecure-registry {netloc})") from None
                    if isinstance(exc, ssl.SSLError):
                        raise TransportError(f"TLS error talking to {netloc}: {exc.reason or exc}") from None
                if reused and replayable and not isinstance(exc, Stalled):
                    continue  # the server dropped an idle connection as we used it: once more, fresh
                raise NetworkError(f"{method} {url}: {why(exc)}", exc) from None
            except BaseException:
                conn.close()  # the body source failed mid-request: the connection is in an unknown state
                raise

            def release(reusable: bool, conn: Connection = conn) -> None:
                self._checkin(key, conn, reusable)

            return Response(raw, url, release)

    def _write(self, conn: Connection, method: str, target: str, netloc: str, headers: dict[str, str],
               body: Body, length: int | None) -> None:
        if conn.absolute_form:
            target = f"http://{netloc}{target}"
        fields = [("Host", netloc), ("User-Agent", self.options.user_agent)]
        if conn.absolute_form and conn.proxy is not None and conn.proxy.authorization:
            fields.append(("Proxy-Authorization", conn.proxy.authorization))
        fields += headers.items()
        if isinstance(body, bytes):
            fields.append(("Content-Length", str(len(body))))
        elif body is not None:
            fields.append(("Content-Length", str(length or 0)))
        elif method in ("POST", "PUT", "PATCH"):
            fields.append(("Content-Length", "0"))
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in fields:
                conn.putheader(name, value)
        except (ValueError, UnicodeEncodeError, http.client.InvalidURL):
            conn.close()
            raise TransportError(f"{method} {target[:200]}: a header or the target contains a line break or "
                                 "is not ISO-8859-1 text") from None
        if isinstance(body, bytes) and len(body) <= 65536:
            conn.endheaders(body)
            return
        conn.endheaders()
        if isinstance(body, bytes):
            conn.send(body)
        elif body is not None:
            for chunk in body:
                conn.send(chunk)
