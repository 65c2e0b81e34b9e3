"""The only module that speaks HTTP to registries (OCI distribution spec v1.1).

Threat model: the registry is untrusted. Every manifest and blob we read is hashed while it streams and
rejected on a digest or size mismatch; manifests are size-capped before parsing; nothing is read whole into
memory except manifests. Transport faults (429, 5xx, resets) are retried a bounded number of times with
backoff, honouring ``Retry-After``, so a permanently failing registry fails in bounded time.

One :class:`RegistryClient` is shared by all threads of a process: its connection pool (see
:mod:`airgap.oci.transport`), scheme, auth and content caches are locked.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

from airgap.config import RegistryOptions
from airgap.errors import (
    AuthError,
    IntegrityError,
    NotFoundError,
    RegistryError,
    TransportError,
)
from airgap.oci import digest as digests
from airgap.oci import mediatypes as mt
from airgap.oci.auth import Authenticator
from airgap.oci.manifest import Descriptor, Manifest, build_index, referrers_tag
from airgap.oci.transport import NetworkError, Response, Transport
from airgap.refs import is_loopback_host

if TYPE_CHECKING:
    from airgap.oci.blobcache import BlobLocations  # tempfile, shutil: only copy/load need it

_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

BlobOpener = Callable[[], Iterable[bytes]]
# Verified immutable content kept per client (see RegistryClient.cached): bounded in bytes and per entry.
CACHE_BYTES = 32 * 1024 * 1024
CACHE_ENTRY_MAX = 4 * 1024 * 1024


class _ContentCache:
    """Least-recently-used map of (host, repo, digest) -> verified manifest or blob, bounded in bytes.

    Only content fetched *by digest* and checked against it goes in: such content cannot change, so a hit
    is exactly what the registry would serve (minus the round trip). Keyed by repository too, so a
    hit never answers for content some other repository holds."""

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[tuple[str, str, str], tuple[Manifest | bytes, int]] = OrderedDict()
        self._size = 0
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> Manifest | bytes | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            self._items.move_to_end(key)
            return entry[0]

    def put(self, key: tuple[str, str, str], value: Manifest | bytes, size: int) -> None:
        if size > CACHE_ENTRY_MAX:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (value, size)
            self._size += size
            while self._size > self._limit:
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= dropped


class _SourceFailed(Exception):
    """Carries an error raised by the *source* of an upload out through the transport, so push_blob does
    not retry (again) what the source already retried, and re-raises the original."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _guard_source(chunks: Iterable[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except Exception as exc:
        raise _SourceFailed(exc) from exc


def _take(chunks: Iterator[bytes], limit: int, carry: list[bytes]) -> Iterator[bytes]:
    """Yield at most ``limit`` bytes from ``chunks``; the excess of the last chunk goes to ``carry``."""
    left = limit
    while left > 0:
        if carry:
            chunk = carry.pop()
        else:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
        if len(chunk) > left:
            carry.append(chunk[left:])
            chunk = chunk[:left]
        left -= len(chunk)
        yield chunk


class RegistryClient:
    """HTTP client for the OCI distribution API with verified streaming, retries and auth."""

    def __init__(self, options: RegistryOptions | None = None, *,
                 locations: BlobLocations | None = None) -> None:
        """``locations``: remember where blobs were seen and mount from there instead of uploading
        (see :mod:`airgap.oci.blobcache`); None disables that."""
        self.options = options or RegistryOptions()
        self.locations = locations
        self.limits = self.options.limits
        self._local = threading.local()
        self._lock = threading.Lock()
        self._schemes: dict[str, str] = {}
        self._referrers_api: dict[str, bool] = {}
        self.auth = Authenticator(self.options.auth_configs)
        self.transport = Transport(self.options)
        self._content = _ContentCache(CACHE_BYTES)

    # ---- plumbing -------------------------------------------------------------------------------

    def scheme(self, host: str) -> str:
        """``https`` unless the host is loopback or ``--insecure-registry`` and does not speak TLS.

        Like crane and cosign: loopback and insecure hosts are probed over HTTPS first and fall back to
        plain HTTP only when the server answers the TLS handshake with non-TLS bytes (or not at all).
        The probe is a bare handshake that checks nothing; the certificate is verified on every real
        request (an untrusted one fails there, with a hint to pass ``--ca-file``).
        """
        with self._lock:
            if host in self._schemes:
                return self._schemes[host]
        scheme = "https"
        if (is_loopback_host(host) or host in self.options.insecure) and not self._speaks_tls(host):
            scheme = "http"
        with self._lock:
            self._schemes[host] = scheme
        return scheme

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
                attempt += 1
                if attempt >= attempts:
                    raise TransportError(
                        f"{method} {url} failed after {attempt} attempt(s): {type(exc.cause).__name__}"
                    ) from None
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
            if resp.status_code in _RETRY_STATUS:
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
                detail = f": {code} {errs[0].get('message', '')}".rstrip()
        except ValueError:
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

    # ---- manifests ------------------------------------------------------------------------------

    def get_manifest(self, host: str, repo: str, reference: str, *, cached: bool = False) -> Manifest:
        """GET a manifest by tag or digest; verify it hashes to the digest asked for (or announced).

        ``cached``: when ``reference`` is a digest, answer from (and fill) this client's cache of verified
        immutable content; a tag is always fetched (tags move)."""
        by_digest = reference.startswith("sha256:") and len(reference) == 71
        if cached and by_digest:
            hit = self._content.get((host, repo, reference))
            if isinstance(hit, Manifest):
                return hit
            manifest = self.get_manifest(host, repo, reference)
            self._content.put((host, repo, reference), manifest, len(manifest.data))
            return manifest
        what = f"{host}/{repo}{'@' if reference.startswith('sha') and ':' in reference else ':'}{reference}"
        for attempt in range(self.limits.retries + 1):
            resp = self.request(
                "GET", host, f"/v2/{repo}/manifests/{reference}", scope=self._pull(repo),
                headers={"Accept": mt.MANIFEST_ACCEPT},
            )
            if resp.status_code != 200:
                raise self._fail(resp, what)
            try:
                data = self._read_capped(resp, self.limits.max_manifest_bytes, what)
                break
            except NetworkError:
                if attempt == self.limits.retries:
                    raise TransportError(f"{what}: connection broke while reading the manifest") from None
                self._sleep_before_retry(attempt, None)
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if ":" in reference and reference.split(":", 1)[0] in ("sha256", "sha512"):
            expected = digests.validate(reference)
        else:
            expected = digests.of_bytes(data)
            announced = resp.headers.get("Docker-Content-Digest")
            if announced and announced.startswith("sha256:") and announced != expected:
                raise IntegrityError(
                    f"{what}: registry announced digest {announced} but the bytes hash to {expected}"
                )
        return Manifest.from_bytes(data, media_type, expected, what)

    def head_manifest(self, host: str, repo: str, reference: str) -> Descriptor | None:
        """HEAD a manifest: its descriptor as the registry states it (unverified), or None if absent."""
        resp = self.request(
            "HEAD", host, f"/v2/{repo}/manifests/{reference}", scope=self._pull(repo),
            headers={"Accept": mt.MANIFEST_ACCEPT},
        )
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"{host}/{repo}:{reference}")
        digest = resp.headers.get("Docker-Content-Digest") or (
            reference if reference.startswith("sha256:") else ""
        )
        return Descriptor(
            resp.headers.get("Content-Type", "").split(";")[0].strip(),
            digests.validate(digest),
            int(resp.headers.get("Content-Length") or 0),
        )

    def put_manifest(self, host: str, repo: str, reference: str, manifest: Manifest) -> bool:
        """PUT exact manifest bytes under a tag or digest; return True when the registry reports
        ``OCI-Subject`` (it indexed the subject for the Referrers API)."""
        what = f"{host}/{repo}:{reference}"
        resp = self.request(
            "PUT", host, f"/v2/{repo}/manifests/{reference}", scope=self._push(repo),
            headers={"Content-Type": manifest.media_type}, data=manifest.data,
        )
        resp.close()
        if resp.status_code not in (200, 201, 202):
            raise self._fail(resp, f"pushing manifest {what}")
        stored = resp.headers.get("Docker-Content-Digest")
        if stored and stored != manifest.digest:
            raise IntegrityError(f"pushing {what}: registry stored digest {stored}, expected {manifest.digest}")
        return bool(resp.headers.get("OCI-Subject"))

    def delete_manifest(self, host: str, repo: str, digest: str) -> None:
        resp = self.request("DELETE", host, f"/v2/{repo}/manifests/{digest}", scope=self._push(repo))
        resp.close()
        if resp.status_code not in (200, 202, 404):
            raise self._fail(resp, f"deleting {host}/{repo}@{digest}")

    # ---- blobs ----------------------------------------------------------------------------------

    def blob_exists(self, host: str, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", host, f"/v2/{repo}/blobs/{digest}", scope=self._pull(repo))
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._fail(resp, f"{host}/{repo}@{digest}")

    def _raw_blob(self, host: str, repo: str, desc: Descriptor) -> Iterator[bytes]:
        """Stream a blob's bytes, resuming with a Range request when the connection breaks mid-way."""
        what = f"blob {desc.digest} from {host}/{repo}"
        received = 0
        failures = 0
        while True:
            headers = {"Range": f"bytes={received}-"} if received else {}
            resp = self.request("GET", host, f"/v2/{repo}/blobs/{desc.digest}", scope=self._pull(repo),
                                headers=headers)
            if resp.status_code not in (200, 206):
                raise self._fail(resp, what)
            skip = received if resp.status_code == 200 else 0  # server ignored Range: re-read, discard
            try:
                for chunk in resp.iter_content(self.limits.chunk_bytes):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk, skip = chunk[skip:], 0
                    received += len(chunk)
                    yield chunk
                return
            except NetworkError as exc:
                resp.close()
                failures += 1
                if failures > self.limits.retries:
                    raise TransportError(f"{what}: connection broke {failures} times "
                                         f"({type(exc.cause).__name__})") from None
                self._sleep_before_retry(failures - 1, None)

    def read_blob(self, host: str, repo: str, desc: Descriptor, *, cached: bool = False) -> bytes:
        """A small blob's verified bytes, whole (signature payloads, bundles); ``cached`` as get_manifest."""
        key = (host, repo, desc.digest)
        hit = self._content.get(key) if cached else None
        if isinstance(hit, bytes):
            return hit
        data = b"".join(self.open_blob(host, repo, desc))
        if cached:
            self._content.put(key, data, len(data))
        return data

    def open_blob(self, host: str, repo: str, desc: Descriptor) -> Iterator[bytes]:
        """Stream a blob, verified: raises IntegrityError (before the last chunk) on a mismatch."""
        stream = digests.verified_stream(
            self._raw_blob(host, repo, desc), desc.digest, desc.size, f"blob {desc.digest} from {host}/{repo}"
        )
        return stream if self.locations is None else self._recorded(stream, host, repo, desc.digest)

    def _recorded(self, stream: Iterator[bytes], host: str, repo: str, digest: str) -> Iterator[bytes]:
        yield from stream
        if self.locations is not None:
            self.locations.record(host, repo, digest)

    def mount_blob(self, host: str, repo: str, digest: str, from_repo: str) -> str | None:
        """Try a cross-repository mount; None when mounted, else the upload URL the registry opened."""
        resp = self.request(
            "POST", host, f"/v2/{repo}/blobs/uploads/",
            scope=f"{self._push(repo)} {self._pull(from_repo)}",
            params={"mount": digest, "from": from_repo},
        )
        resp.close()
        if resp.status_code == 201:
            return None
        if resp.status_code == 202 and resp.headers.get("Location"):
            return urljoin(resp.url, str(resp.headers["Location"]))
        raise self._fail(resp, f"mounting {digest} into {host}/{repo}")

    def _start_upload(self, host: str, repo: str) -> str:
        resp = self.request("POST", host, f"/v2/{repo}/blobs/uploads/", scope=self._push(repo))
        resp.close()
        if resp.status_code != 202 or not resp.headers.get("Location"):
            raise self._fail(resp, f"starting an upload to {host}/{repo}")
        return urljoin(resp.url, str(resp.headers["Location"]))

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if urlsplit(location).query else '?'}digest={digest}"

    def _upload_once(self, host: str, repo: str, desc: Descriptor, chunks: Iterable[bytes],
                     location: str) -> None:
        scope = self._push(repo)
        what = f"uploading {desc.digest} to {host}/{repo}"
        if desc.size <= self.limits.monolithic_upload_max:
            resp = self.request(
                "PUT", host, self._with_digest(location, desc.digest), scope=scope,
                headers={"Content-Type": "application/octet-stream"},
                data=chunks, length=desc.size, replayable=False,
            )
        else:
            it = iter(chunks)
            carry: list[bytes] = []
            offset = 0
            step = self.limits.upload_chunk_bytes
            while offset < desc.size:
                n = min(step, desc.size - offset)
                resp = self.request(
                    "PATCH", host, location, scope=scope, replayable=False,
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{offset + n - 1}"},
                    data=_take(it, n, carry), length=n,
                )
                resp.close()
                if resp.status_code != 202 or not resp.headers.get("Location"):
                    raise self._fail(resp, what)
                location = urljoin(resp.url, resp.headers["Location"])
                offset += n
            for _ in it:  # drain: lets a verifying source raise on a digest mismatch
                pass
            resp = self.request("PUT", host, self._with_digest(location, desc.digest), scope=scope,
                                replayable=False)
        resp.close()
        if resp.status_code != 201:
            raise self._fail(resp, what)

    def _open_upload(self, host: str, repo: str, digest: str, mount_from: str | None, hint: str | None,
                     check_exists: bool) -> str | None:
        """Mount (from ``mount_from``, else from ``hint``, where ``locations`` last saw the blob on this
        host) or open a plain upload; None when the blob is in place. A failed mount answers with an upload
        session, so a stale hint costs nothing; and a mount answers 201 when ``repo`` already has the blob,
        so with a hint the HEAD probe is skipped."""
        if mount_from:
            return self.mount_blob(host, repo, digest, mount_from)
        if hint:
            try:
                return self.mount_blob(host, repo, digest, hint)
            except AuthError:  # no pull access to the hinted repository: upload instead
                if check_exists and self.blob_exists(host, repo, digest):
                    return None
        return self._start_upload(host, repo)

    def push_blob(
        self, host: str, repo: str, desc: Descriptor, opener: BlobOpener, *, mount_from: str | None = None,
        check_exists: bool = True,
    ) -> bool:
        """Upload a blob unless the registry has it; return True when bytes were sent.

        ``opener`` returns a fresh (verified) chunk stream; it is called again when a transport fault
        forces the upload to restart, so retries never resend a half-consumed stream.
        """
        hints = self.locations.candidates(host, desc.digest, exclude=repo) if self.locations else []
        hint = None if mount_from or not hints else hints[0]
        if check_exists and hint is None and self.blob_exists(host, repo, desc.digest):
            if self.locations is not None:
                self.locations.record(host, repo, desc.digest)
            return False
        failures = 0
        while True:
            try:
                location = self._open_upload(host, repo, desc.digest, mount_from, hint, check_exists)
                if location is not None:
                    self._upload_once(host, repo, desc, _guard_source(opener()), location)
                if self.locations is not None:
                    self.locations.record(host, repo, desc.digest)
                return location is not None
            except _SourceFailed as failed:
                raise failed.error from None
            except TransportError:
                failures += 1
                if failures > self.limits.retries:
                    raise
                self._sleep_before_retry(failures - 1, None)
            except RegistryError as exc:
                if exc.status not in _RETRY_STATUS:
                    raise
                failures += 1
                if failures > self.limits.retries:
                    raise
                self._sleep_before_retry(failures - 1, None)

    # ---- tags and referrers ---------------------------------------------------------------------

    def _get_json(self, resp: Response, what: str) -> Any:
        data = self._read_capped(resp, self.limits.max_json_bytes, what)
        try:
            return json.loads(data)
        except ValueError:
            raise IntegrityError(f"{what}: response is not JSON") from None

    def list_tags(self, host: str, repo: str) -> list[str]:
        """All tags of ``repo`` (paginated with ``Link``); empty when the repository does not exist."""
        tags: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list?n=1000"
        for _ in range(self.limits.max_tag_pages):
            if url is None:
                return tags
            resp = self.request("GET", host, url, scope=self._pull(repo))
            if resp.status_code == 404:
                resp.close()
                return tags
            if resp.status_code != 200:
                raise self._fail(resp, f"listing tags of {host}/{repo}")
            body = self._get_json(resp, f"tag list of {host}/{repo}")
            page = body.get("tags") if isinstance(body, dict) else None
            tags.extend(t for t in (page or []) if isinstance(t, str))
            nxt = resp.links.get("next", {}).get("url")
            url = urljoin(resp.url, nxt) if nxt else None
        raise RegistryError(f"listing tags of {host}/{repo}: more than {self.limits.max_tag_pages} pages")

    def referrers(self, host: str, repo: str, digest: str) -> list[Descriptor]:
        """Referrers of ``digest``: the Referrers API when served, else the ``sha256-<hex>`` fallback tag."""
        listed = self._referrers_api_list(host, repo, digest)
        if listed is not None:
            return listed
        try:
            index = self.get_manifest(host, repo, referrers_tag(digest))
        except NotFoundError:
            return []
        return list(index.manifests) if index.is_index else []

    def supports_referrers(self, host: str, repo: str) -> bool:
        with self._lock:
            known = self._referrers_api.get(host)
        if known is None:
            probe = "sha256:" + "0" * 64
            known = self._referrers_api_list(host, repo, probe) is not None
        return known

    def _referrers_api_list(self, host: str, repo: str, digest: str) -> list[Descriptor] | None:
        with self._lock:
            if self._referrers_api.get(host) is False:
                return None
        out: list[Descriptor] = []
        url: str | None = f"/v2/{repo}/referrers/{digest}"
        for _ in range(self.limits.max_tag_pages):
            if url is None:
                break
            resp = self.request("GET", host, url, scope=self._pull(repo))
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
            if resp.status_code == 404 and ctype != mt.OCI_INDEX:
                resp.close()
                # distribution 2.8 and other pre-1.1 registries: no such route.
                with self._lock:
                    self._referrers_api[host] = False
                return None
            if resp.status_code != 200:
                raise self._fail(resp, f"referrers of {host}/{repo}@{digest}")
            body = self._get_json(resp, f"referrers of {host}/{repo}@{digest}")
            items = body.get("manifests") if isinstance(body, dict) else None
            if not isinstance(items, list):
                raise IntegrityError(f"referrers of {host}/{repo}@{digest}: not an index")
            out += [Descriptor.from_json(d, f"referrers of {digest}") for d in items]
            nxt = resp.links.get("next", {}).get("url")
            url = urljoin(resp.url, nxt) if nxt else None
        with self._lock:
            self._referrers_api[host] = True
        return out

    def add_referrer(self, host: str, repo: str, manifest: Manifest) -> None:
        """Push a manifest that has a ``subject``; maintain the fallback tag index when the registry
        does not index referrers itself (pre-OCI-1.1 registries)."""
        if manifest.subject is None:
            raise IntegrityError(f"referrer {manifest.digest} has no subject")
        indexed = self.put_manifest(host, repo, manifest.digest, manifest)
        if indexed or self.supports_referrers(host, repo):
            return
        tag = referrers_tag(manifest.subject.digest)
        try:
            existing = list(self.get_manifest(host, repo, tag).manifests)
        except NotFoundError:
            existing = []
        if any(d.digest == manifest.digest for d in existing):
            return
        desc = Descriptor(
            manifest.media_type, manifest.digest, len(manifest.data),
            artifact_type=manifest.artifact_type, annotations=manifest.annotations,
        )
        data = build_index([*existing, desc])
        self.put_manifest(host, repo, tag, Manifest.from_bytes(data, mt.OCI_INDEX))
