"""One registry API session: authenticated requests with bounded retries, and errors as one-line messages.

The plumbing under :class:`airgap.oci.registry.RegistryClient`: which scheme a host speaks, auth (see
:mod:`airgap.oci.auth`), retries of transport faults (429, 5xx, resets) with backoff honouring
``Retry-After`` so a permanently failing registry fails in bounded time, turning a registry's error answer
into an :class:`~airgap.errors.Error`, and size-capped reads (the registry is untrusted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from airgap.config import RegistryOptions
from airgap.errors import AuthError, Error, IntegrityError, NotFoundError, RegistryError, TransportError
from airgap.jsondoc import load_json
from airgap.oci import deadline
from airgap.oci.auth import Authenticator
from airgap.oci.transport import FINAL, NetworkError, Response, Transport
from airgap.progress import check_interrupted
from airgap.refs import is_loopback_host

if TYPE_CHECKING:
    from airgap.oci.blobcache import BlobLocations  # tempfile, shutil: only copy/load need it

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RegistrySession:
    """Requests to registries with auth and bounded retries; thread-safe (one per process is typical)."""

    def __init__(self, options: RegistryOptions | None = None, *,
                 locations: BlobLocations | None = None) -> None:
        """``locations``: remember where blobs were seen and mount from there instead of uploading
        (see :mod:`airgap.oci.blobcache`); None disables that."""
        self.options = options or RegistryOptions()
        self.locations = locations
        self.limits = self.options.limits
        self._lock = threading.Lock()
        self._schemes: dict[str, str] = {}
        self._probes: dict[str, threading.Lock] = {}
        self.auth = Authenticator(self.options.auth_configs, self.limits.credential_helper_timeout)
        self.transport = Transport(self.options)

    def scheme(self, host: str) -> str:
        """``https`` unless the host is loopback or ``--insecure-registry`` and does not speak TLS.

        Like crane and cosign (which ping both schemes of such a host at once): a loopback host is first asked
        ``GET /v2/`` in plain HTTP, and a registry's answer to it (200, or 401 asking for credentials) means
        plain HTTP; a TLS port cannot give that answer (Go's TLS servers say 400, others hang up). Otherwise,
        and for ``--insecure-registry`` hosts, a bare TLS handshake decides: plain HTTP only when the server
        answers it with non-TLS bytes (or not at all). The probe checks nothing; the certificate is verified
        on every real request (an untrusted one fails there, with a hint to pass ``--ca-file``). The plain
        ping first spares a plain loopback registry the OpenSSL set-up a handshake costs (~2 ms of a cold
        ``airgap verify``), and its connection is kept for the requests that follow.
        """
        with self._lock:
            if host in self._schemes:
                return self._schemes[host]
            probing = self._probes.setdefault(host, threading.Lock())
        with probing:  # one probe per host: concurrent first requests wait for it instead of probing too
            with self._lock:
                if host in self._schemes:
                    return self._schemes[host]
            scheme = "https"
            loopback = is_loopback_host(host)
            if loopback and self._answers_plain_http(host):
                scheme = "http"
            elif (loopback or host in self.options.insecure) and not self._speaks_tls(host):
                scheme = "http"
            with self._lock:
                self._schemes[host] = scheme
        return scheme

    def _answers_plain_http(self, host: str) -> bool:
        """Whether ``GET /v2/`` in plain HTTP gets a registry's answer (200 or 401; redirects not followed)."""
        try:
            resp = self.transport.request("GET", f"http://{host}/v2/", redirects=False)
        except FINAL:
            raise
        except TransportError:
            return False  # refused, reset, a TLS server hanging up: the handshake probe decides
        resp.close()
        return resp.status_code in (200, 401)

    def _speaks_tls(self, host: str) -> bool:
        # A raw handshake costs a millisecond; a verifying context would load the system CAs (~30 ms).
        return self.transport.speaks_tls(host)

    def url(self, host: str, path: str) -> str:
        return f"{self.scheme(host)}://{host}{path}"

    def _sleep_before_retry(self, attempt: int, resp: Response | None) -> None:
        delay = min(self.limits.backoff_base * (2**attempt), self.limits.backoff_max)
        import random  # only when retrying

        delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not crypto
        if resp is not None and resp.headers.get("Retry-After"):
            try:
                delay = min(float(resp.headers["Retry-After"]), self.limits.retry_after_max)
            except ValueError:
                pass
        limit = deadline.current()
        if limit is not None:  # never wait past the operation's deadline: the next attempt reports it
            delay = min(delay, max(limit.remaining(), 0.0))
        time.sleep(delay)

    def request(
        self,
        method: str,
        host: str,
        path_or_url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        data: bytes | Iterable[bytes] | None = None,
        length: int | None = None,
        replayable: bool = True,
    ) -> Response:
        """Send one request with auth and bounded retries; return the final response (any status), its
        body unread (stream it, or ``close()`` it to give the connection back).

        ``data`` is bytes or, with ``length``, an iterable of chunks. ``replayable=False`` (a one-shot
        streaming body) disables retries: the caller restarts the whole transfer instead. ``scope`` is the
        token scope, e.g. ``repository:team/app:pull``.
        """
        url = path_or_url if "://" in path_or_url else self.url(host, path_or_url)
        if params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(params)
        insecure = host in self.options.insecure
        attempts = self.limits.retries + 1 if replayable else 1
        reauthed = False
        attempt = 0
        while True:
            hdrs = dict(headers or {})
            cached = self.auth.cached_header(host, scope)
            if cached:
                hdrs["Authorization"] = cached
            try:
                resp = self.transport.request(method, url, headers=hdrs, body=data, length=length,
                                              insecure=insecure)
            except NetworkError as exc:
                check_interrupted()  # a connection broken by the interruption is not retried
                attempt += 1
                if attempt >= attempts:
                    raise TransportError(f"{method} {url} failed after {attempt} attempt(s): {exc.reason}") from None
                self._sleep_before_retry(attempt - 1, None)
                continue
            if resp.status_code == 401 and not reauthed and resp.headers.get("WWW-Authenticate"):
                challenge = resp.headers["WWW-Authenticate"]
                resp.close()
                self.auth.authorize(self.transport, host, scope, challenge, insecure)
                reauthed = True
                if replayable:
                    continue
                return resp
            if resp.status_code in RETRY_STATUS:
                attempt += 1
                if attempt < attempts:
                    resp.close()
                    self._sleep_before_retry(attempt - 1, resp)
                    continue
            return resp

    def _fail(self, resp: Response, what: str) -> RegistryError:
        """Turn an unexpected response into a one-line error (registry error code included)."""
        code = None
        detail = ""
        try:
            body = resp.json(65536)
            errs = body.get("errors") if isinstance(body, dict) else None
            if errs and isinstance(errs, list) and isinstance(errs[0], dict):
                code = errs[0].get("code")
                detail = f": {str(code)[:80]} {str(errs[0].get('message', ''))[:240]}".rstrip()  # untrusted
        except (ValueError, Error):
            pass
        finally:
            resp.close()
        status = resp.status_code
        if status in (401, 403):
            return AuthError(f"{what}: access denied ({status}{detail})", status, code)
        if status == 404:
            return NotFoundError(f"{what}: not found{detail}", status, code)
        return RegistryError(f"{what}: registry answered {status}{detail}", status, code)

    @staticmethod
    def _pull(repo: str) -> str:
        return f"repository:{repo}:pull"

    @staticmethod
    def _push(repo: str) -> str:
        return f"repository:{repo}:pull,push"

    def _read_capped(self, resp: Response, cap: int, what: str) -> bytes:
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > cap:
            resp.close()
            raise IntegrityError(f"{what}: {length} bytes is over the {cap}-byte limit")
        out = bytearray()
        for chunk in resp.iter_content(65536):
            out += chunk
            if len(out) > cap:
                resp.close()
                raise IntegrityError(f"{what}: over the {cap}-byte limit")
        return bytes(out)

    def _get_json(self, resp: Response, what: str) -> Any:
        data = self._read_capped(resp, self.limits.max_json_bytes, what)
        return load_json(data, what, invalid="{what}: response is not JSON ({detail})")

