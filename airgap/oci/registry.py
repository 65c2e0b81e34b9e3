"""The registry client (OCI distribution spec v1.1): with its bases in :mod:`airgap.oci.session` and
:mod:`airgap.oci.uploads`, the only code that speaks HTTP to registries.

Threat model: the registry is untrusted. Every manifest and blob we read is hashed while it streams and
rejected on a digest or size mismatch; manifests are size-capped before parsing; nothing is read whole into
memory except manifests. Transport faults (429, 5xx, resets) are retried a bounded number of times with
backoff, honouring ``Retry-After``, so a permanently failing registry fails in bounded time.

One :class:`RegistryClient` is shared by all threads of a process: its connection pool (see
:mod:`airgap.oci.transport`), scheme, auth and content caches are locked.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from airgap import digest as digests
from airgap.config import RegistryOptions
from airgap.errors import IntegrityError, NotFoundError, RegistryError, TransportError
from airgap.oci import mediatypes as mt
from airgap.oci.manifest import Descriptor, Manifest, build_index, referrers_tag
from airgap.oci.transport import NetworkError
from airgap.oci.uploads import BlobOpener, BlobUploads

if TYPE_CHECKING:
    from airgap.oci.blobcache import BlobLocations  # tempfile, shutil: only copy/load need it

__all__ = ["CACHE_BYTES", "CACHE_ENTRY_MAX", "BlobOpener", "RegistryClient"]

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


class RegistryClient(BlobUploads):
    """HTTP client for the OCI distribution API with verified streaming, retries and auth.

    Requests, retries and auth come from :class:`~airgap.oci.session.RegistrySession`, pushing blobs from
    :class:`~airgap.oci.uploads.BlobUploads`; this class reads and writes manifests, reads blobs, lists
    tags and keeps referrers."""

    def __init__(self, options: RegistryOptions | None = None, *,
                 locations: BlobLocations | None = None, cache_bytes: int = CACHE_BYTES) -> None:
        """``locations``: remember where blobs were seen and mount from there instead of uploading
        (see :mod:`airgap.oci.blobcache`); None disables that. ``cache_bytes``: the bound of the cache of
        verified content (counted in content bytes; a parsed manifest takes several times that)."""
        super().__init__(options, locations=locations)
        self._referrers_api: dict[str, bool] = {}
        self._content = _ContentCache(cache_bytes)

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
            except NetworkError as exc:
                if attempt == self.limits.retries:
                    raise TransportError(f"{what}: connection broke while reading the manifest ({exc.reason})"
                                         ) from None
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
                    raise TransportError(f"{what}: connection broke {failures} times ({exc.reason})") from None
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

    def blob_size(self, host: str, repo: str, digest: str) -> int | None:
        """HEAD a blob: the size the registry states for it in ``repo`` (unverified), None when absent."""
        resp = self.request("HEAD", host, f"/v2/{repo}/blobs/{digest}", scope=self._pull(repo))
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"{host}/{repo}@{digest}")
        length = resp.headers.get("Content-Length", "")
        if not length.isdigit():
            raise IntegrityError(f"{host}/{repo}@{digest}: HEAD answered without a size")
        return int(length)

    # ---- repositories, tags and referrers --------------------------------------------------------

    def list_repositories(self, host: str) -> list[str]:
        """Every repository the registry lists in ``/v2/_catalog`` (paginated with ``Link``), sorted."""
        return sorted(set(self._list_pages(host, "/v2/_catalog?n=1000", "registry:catalog:*", "repositories",
                                           f"listing the repositories of {host} (/v2/_catalog)",
                                           f"catalog of {host}")))

    def list_tags(self, host: str, repo: str) -> list[str]:
        """All tags of ``repo`` (paginated with ``Link``); empty when the repository does not exist."""
        return self._list_pages(host, f"/v2/{repo}/tags/list?n=1000", self._pull(repo), "tags",
                                f"listing tags of {host}/{repo}", f"tag list of {host}/{repo}", absent_ok=True)

    def _list_pages(self, host: str, path: str, scope: str, field: str, listing: str, doc: str, *,
                    absent_ok: bool = False) -> list[str]:
        """The strings in ``field`` over every page of a paginated list (``Link: <...>; rel="next"``), at most
        ``Limits.max_tag_pages`` pages; a 404 is an empty list when ``absent_ok``."""
        items: list[str] = []
        url: str | None = path
        for _ in range(self.limits.max_tag_pages):
            if url is None:
                return items
            resp = self.request("GET", host, url, scope=scope)
            if absent_ok and resp.status_code == 404:
                resp.close()
                return items
            if resp.status_code != 200:
                raise self._fail(resp, listing)
            body = self._get_json(resp, doc)
            page = body.get(field) if isinstance(body, dict) else None
            items.extend(x for x in (page or []) if isinstance(x, str))
            nxt = resp.links.get("next", {}).get("url")
            url = urljoin(resp.url, nxt) if nxt else None
        raise RegistryError(f"{listing}: more than {self.limits.max_tag_pages} pages")

    def referrers(self, host: str, repo: str, digest: str, *, max_items: int | None = None) -> list[Descriptor]:
        """Referrers of ``digest``: the Referrers API when served, else the ``sha256-<hex>`` fallback tag.
        ``max_items`` stops paging once that many are listed (a caller that refuses more needs no more)."""
        listed = self._referrers_api_list(host, repo, digest, max_items)
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

    def _referrers_api_list(self, host: str, repo: str, digest: str,
                            max_items: int | None = None) -> list[Descriptor] | None:
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
            url = urljoin(resp.url, nxt) if nxt and (max_items is None or len(out) < max_items) else None
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
