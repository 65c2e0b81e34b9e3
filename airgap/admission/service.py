"""The admission webhook without HTTP: :class:`AdmissionService` answers ``handle(method, path, body)``.

It owns the trust (reloaded when the directory changes), the shared :class:`airgap.verification.verifier.Verifier`, the
decision cache, metrics and logs; :mod:`airgap.admission.server` puts it behind HTTP.

Threat model and failure behaviour: request bodies are untrusted (size-capped before parsing, parsed
strictly); the local registry is untrusted and may be slow or down. Every review is answered within the
internal deadline (shorter than the webhook's ``timeoutSeconds``): what is not verified by then is denied
in enforce mode with a message saying so. A trust directory that fails to load keeps the previous trust
(and is logged); with no trust at all ``/readyz`` fails and every review is denied in enforce mode.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from airgap.admission.cache import AsyncFreshLookup, CacheKey, DecisionCache, FreshLookup
from airgap.admission.decide import Decision, ImageVerdict, Mode, check_images_async, decide, decide_request, malformed
from airgap.admission.metrics import JsonLog, Metrics
from airgap.admission.review import AdmissionRequest, ReviewError
from airgap.errors import Error
from airgap.jsondoc import load_json

if TYPE_CHECKING:
    from airgap.config import RegistryOptions
    from airgap.oci.registry import RegistryClient
    from airgap.refs import Reference
    from airgap.refs.translate import Aliases
    from airgap.verification.trust import Trust
    from airgap.verification.verifier import Verifier

JSON = "application/json"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class WebhookConfig:
    """Knobs of one webhook process, with the reasons for their defaults."""

    trust_dir: str
    mode: Mode = "enforce"
    # Shorter than the ValidatingWebhookConfiguration's timeoutSeconds (10 in our manifests), so the
    # API server always gets our clear denial instead of its own timeout.
    deadline: float = 8.0
    cache_ttl: float = 60.0
    cache_size: int = 10_000
    # An AdmissionReview holds the object (and oldObject on UPDATE); etcd caps objects at 1.5 MiB.
    max_body: int = 4 * 1024 * 1024
    reload_interval: float = 2.0
    aliases: tuple[str, ...] = ()
    workers: int = 32  # image checks at once (threads); blocked ones are bounded by the registry timeouts
    registry: RegistryOptions | None = None


@dataclass(frozen=True)
class _State:
    """One loaded trust directory and the verifier over it; replaced whole on reload."""

    trust: Trust
    verifier: Verifier
    policy_digest: str
    fingerprint: tuple[Any, ...] = field(repr=False)


def fingerprint(directory: str) -> tuple[Any, ...]:
    """Cheap change detector for a mounted ConfigMap/Secret (symlink swaps included): names, sizes, mtimes."""
    out: list[Any] = []
    for root, dirs, files in os.walk(directory, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            out.append((os.path.relpath(os.path.join(root, name), directory), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


class AdmissionService:
    """The webhook without HTTP; thread-safe. See the module docstring."""

    def __init__(self, config: WebhookConfig, *, log: JsonLog | None = None) -> None:
        from airgap.config import RegistryOptions
        from airgap.oci.registry import RegistryClient
        from airgap.refs.translate import Aliases

        self.config = config
        self.log = log or JsonLog()
        self.metrics = Metrics()
        self.cache: DecisionCache[ImageVerdict] = DecisionCache(config.cache_ttl, config.cache_size)
        options = config.registry or RegistryOptions()
        # One slow registry request must not outlive the review: bound it by the deadline, retry once.
        base = options.limits
        limits = replace(base, connect_timeout=min(base.connect_timeout, config.deadline),
                         read_timeout=min(base.read_timeout, config.deadline), retries=min(base.retries, 1),
                         backoff_max=min(base.backoff_max, 0.5))
        self.client: RegistryClient = RegistryClient(replace(options, limits=limits))
        self.aliases: Aliases = Aliases.parse(list(config.aliases))
        self._tags: FreshLookup[str | None] = FreshLookup(self._resolve)
        self.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="airgap-check")
        self._loop_tags: tuple[Any, AsyncFreshLookup[str | None]] | None = None
        self._state: _State | None = None
        self._stop = threading.Event()
        self._reload_lock = threading.Lock()
        self.reload()
        self._watcher = threading.Thread(target=self._watch, name="airgap-trust-watch", daemon=True)
        self._watcher.start()

    # ---- trust ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._state is not None

    def reload(self) -> bool:
        """Load the trust directory if it changed; keep serving the old one if the new one is broken."""
        from airgap.verification.trust import Trust
        from airgap.verification.verifier import Verifier

        with self._reload_lock:
            current = self._state
            seen = fingerprint(self.config.trust_dir)
            if current is not None and seen == current.fingerprint:
                return False
            try:
                trust = Trust.load(self.config.trust_dir)
                verifier = Verifier(trust, None, self.client, self.aliases)
            except Error as exc:
                self.metrics.reload_failures += 1
                self.log("error", "trust not loaded; keeping the previous trust" if current else "trust not loaded",
                         trust_dir=self.config.trust_dir, error=str(exc))
                # Remember the broken fingerprint so we do not retry (and log) every interval.
                if current is not None:
                    self._state = replace(current, fingerprint=seen)
                return False
            policy_digest = trust.policy.digest if trust.policy is not None else ""
            self._state = _State(trust, verifier, policy_digest, seen)
            if current is not None:
                self.metrics.reloads += 1
            self.log("info", "trust loaded", trust_dir=self.config.trust_dir, trust_digest=trust.digest,
                     policy_digest=policy_digest, keys=sorted(trust.keys))
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.config.reload_interval):
            try:
                self.reload()
            except Exception as exc:  # noqa: BLE001 - the watcher must survive anything a reload throws
                self.log("error", "trust reload crashed", error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._stop.set()
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---- one image ------------------------------------------------------------------------------

    def _resolve(self, key: tuple[str, str, str]) -> str | None:
        desc = self.client.head_manifest(*key)
        return desc.digest if desc is not None else None

    def _check(self, state: _State, image: str) -> ImageVerdict:
        """Resolve the tag now (never from cache), then the cached decision or a fresh verification."""
        from airgap import refs

        try:
            ref = refs.parse(image)
            digest = ref.digest
            if digest is None:
                host = refs.api_host(self.aliases.access_host(ref.registry))
                digest = self._tags.get((host, ref.repository, ref.identifier))
                if digest is None:
                    return ImageVerdict(image, "deny", reasons=(f"{ref} is not in the local registry",))
        except Error as exc:
            return ImageVerdict(image, "deny", error=True, reasons=(str(exc),))
        key = DecisionCache.key(image, digest, state.policy_digest, state.trust.digest)
        hit = self.cache.get(key)
        return replace(hit, cached=True) if hit is not None else self._verify(state, image, ref, digest, key)

    async def _check_async(self, state: _State, image: str) -> ImageVerdict:
        """:meth:`_check` on the event loop: only the tag look-up and a verification use a thread."""
        import asyncio

        from airgap import refs

        try:
            ref = refs.parse(image)
            digest = ref.digest
            if digest is None:
                host = refs.api_host(self.aliases.access_host(ref.registry))
                digest = await self._async_tags().get((host, ref.repository, ref.identifier))
                if digest is None:
                    return ImageVerdict(image, "deny", reasons=(f"{ref} is not in the local registry",))
        except Error as exc:
            return ImageVerdict(image, "deny", error=True, reasons=(str(exc),))
        key = DecisionCache.key(image, digest, state.policy_digest, state.trust.digest)
        hit = self.cache.get(key)
        if hit is not None:
            return replace(hit, cached=True)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._verify, state, image, ref,
                                                                digest, key)

    def _async_tags(self) -> AsyncFreshLookup[str | None]:
        """The tag look-ups of the running event loop (one loop serves the webhook; a new loop gets its own)."""
        import asyncio

        loop = asyncio.get_running_loop()
        current = self._loop_tags  # read once: another loop's thread may swap it meanwhile
        if current is None or current[0] is not loop:
            current = self._loop_tags = (loop, AsyncFreshLookup(self._resolve, self.executor))
        return current[1]

    def _verify(self, state: _State, image: str, ref: Reference, digest: str, key: CacheKey) -> ImageVerdict:
        # Verify exactly the digest the tag resolved to (fetched by digest, bytes checked), tag kept for
        # translation and policy globs: no second resolution, no window for a re-tag in between.
        result = state.verifier.verify(str(ref.with_digest(digest)))
        verdict = ImageVerdict(image, result.decision, result.digest, tuple(result.reasons), tuple(result.warnings),
                               error=result.digest is None)
        if result.digest is not None:  # decided on the image's bytes (not a transport failure): cacheable
            self.cache.put(key, verdict)
        return verdict

    # ---- HTTP-independent request handling ------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes | None) -> tuple[int, str, bytes]:
        """Answer one HTTP request; ``body`` is None when it was over ``max_body`` (not read)."""
        path = path.split("?", 1)[0]
        if path == "/validate":
            if method != "POST":
                return 405, JSON, b'{"error":"POST an AdmissionReview v1"}'
            return self.validate(body)
        if method not in ("GET", "HEAD"):
            return 405, JSON, b'{"error":"method not allowed"}'
        if path == "/healthz":
            return 200, TEXT, b"ok\n"
        if path == "/readyz":
            return (200, TEXT, b"ready\n") if self.ready else (503, TEXT, b"trust not loaded\n")
        if path == "/metrics":
            return 200, TEXT, self.metrics.render(self.cache, self.ready).encode()
        return 404, JSON, b'{"error":"not found"}'

    async def handle_async(self, method: str, path: str, body: bytes | None) -> tuple[int, str, bytes]:
        """:meth:`handle` for an asyncio server: reviews are decided on the loop, other paths as ``handle``."""
        if method == "POST" and path.split("?", 1)[0] == "/validate":
            return await self.validate_async(body)
        return self.handle(method, path, body)

    def validate(self, body: bytes | None) -> tuple[int, str, bytes]:
        start = time.monotonic()
        request: AdmissionRequest | None = None
        status = 200
        try:
            status, request, decision, state = self._parse(body)
            if decision is None:
                assert request is not None and state is not None  # noqa: S101 - _parse's contract
                decision = decide_request(request, lambda image: self._check(state, image), self.config.mode,
                                          executor=self.executor, deadline=self.config.deadline)
        except Exception as exc:  # noqa: BLE001 - fail closed with a clear message, never a traceback
            decision = self._crashed(request, body, exc)
        return self._answer(status, request, decision, start)

    async def validate_async(self, body: bytes | None) -> tuple[int, str, bytes]:
        """:meth:`validate` on an event loop: no thread per request or per image, only per registry call."""
        start = time.monotonic()
        request: AdmissionRequest | None = None
        status = 200
        try:
            status, request, decision, state = self._parse(body)
            if decision is None:
                assert request is not None and state is not None  # noqa: S101 - _parse's contract
                images = request.unique_images
                verdicts = await check_images_async(images, lambda image: self._check_async(state, image),
                                                    deadline=self.config.deadline) if images else []
                decision = decide(request, verdicts, self.config.mode)
        except Exception as exc:  # noqa: BLE001 - fail closed with a clear message, never a traceback
            decision = self._crashed(request, body, exc)
        return self._answer(status, request, decision, start)

    def _parse(self, body: bytes | None) -> tuple[int, AdmissionRequest | None, Decision | None, _State | None]:
        """The HTTP status, the request, and either the decision (malformed, no trust) or the state to decide in."""
        mode = self.config.mode
        if body is None:
            return 413, None, malformed("", f"request body is over the {self.config.max_body}-byte limit", mode,
                                        code=413), None
        try:
            request = AdmissionRequest.from_bytes(body)
        except ReviewError as exc:
            return 400, None, malformed(_uid_of(body), str(exc), mode), None
        state = self._state
        if state is None:
            return 200, request, malformed(request.uid, "trust directory not loaded: cannot verify images", mode,
                                           code=503), None
        return 200, request, None, state

    def _crashed(self, request: AdmissionRequest | None, body: bytes | None, exc: Exception) -> Decision:
        self.log("error", "internal error", error=f"{type(exc).__name__}: {exc}")
        return malformed(request.uid if request else _uid_of(body), f"internal error: {type(exc).__name__}: {exc}",
                         self.config.mode, code=500)

    def _answer(self, status: int, request: AdmissionRequest | None, decision: Decision,
                start: float) -> tuple[int, str, bytes]:
        if decision.allowed and status != 200:
            status = 200  # warn/audit: answer a well-formed "allowed" review even to a broken request
        elapsed = time.monotonic() - start
        deadline_hit = any(v.error and "deadline" in v.why for v in decision.verdicts)
        self.metrics.observe(decision.outcome, decision.allowed, elapsed, deadline_hit)
        self._log_decision(request, decision, elapsed)
        return status, JSON, json.dumps(decision.review(), separators=(",", ":")).encode()

    def _log_decision(self, request: AdmissionRequest | None, decision: Decision, elapsed: float) -> None:
        fields: dict[str, Any] = {"uid": decision.uid, "mode": self.config.mode, "allowed": decision.allowed,
                                  "result": decision.outcome, "ms": round(elapsed * 1000, 2)}
        if request is not None:
            fields.update(kind=request.kind, namespace=request.namespace, name=request.name,
                          operation=request.operation)
        fields["images"] = [{"image": v.image, "digest": v.digest, "decision": v.decision, "cached": v.cached,
                             **({"reasons": list(v.reasons)} if v.reasons else {})} for v in decision.verdicts]
        if decision.message:
            fields["message"] = decision.message
        self.log("info" if decision.outcome == "allow" else "warning", "admission review", **fields)


def _uid_of(body: bytes | None) -> str:
    """The request uid of a review we could not fully parse (echoed when it is there), else ''."""
    try:
        uid = load_json(body or b"", "AdmissionReview")["request"]["uid"]
        return uid if isinstance(uid, str) else ""
    except (Error, KeyError, TypeError):
        return ""
