"""Pushing blobs: skip what the registry has, mount across repositories, upload whole or in chunks.

A transport fault restarts the upload from a fresh source stream (never a half-consumed one); an error
raised by the source itself (a digest mismatch, a read error) passes through unretried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urljoin, urlsplit

from airgap.errors import AuthError, RegistryError, TransportError
from airgap.oci.manifest import Descriptor
from airgap.oci.session import RETRY_STATUS, RegistrySession
from airgap.oci.transport import FINAL

BlobOpener = Callable[[], Iterable[bytes]]


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


class BlobUploads(RegistrySession):
    """The blob-pushing half of :class:`airgap.oci.registry.RegistryClient`."""

    def blob_exists(self, host: str, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", host, f"/v2/{repo}/blobs/{digest}", scope=self._pull(repo))
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._fail(resp, f"{host}/{repo}@{digest}")

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
            except FINAL:  # the deadline passed, or a redirect went where the user did not point
                raise
            except TransportError:
                failures += 1
                if failures > self.limits.retries:
                    raise
                self._sleep_before_retry(failures - 1, None)
            except RegistryError as exc:
                if exc.status not in RETRY_STATUS:
                    raise
                failures += 1
                if failures > self.limits.retries:
                    raise
                self._sleep_before_retry(failures - 1, None)

