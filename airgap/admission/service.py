"""The admission webhook without HTTP: :class:`AdmissionService` answers ``handle(method, path, body)``.

It owns the trust (reloaded when the directory changes), the shared :class:`airgap.verification.verifier.Verifier`, the
decision cache, the tag window, metrics and logs; :mod:`airgap.admission.server` puts it behind HTTP. Two
webhooks share it: ``POST /validate`` decides (validating webhook), ``POST /mutate`` pins verified digests
(mutating webhook, :mod:`airgap.admission.pin`); both verify through the same code and cache, so a pod costs
one verification per image however many times it is reviewed.

Threat model and failure behaviour: request bodies are untrusted (size-capped before parsing, parsed
strictly, see :mod:`airgap.admission.review`); the local registry is untrusted and may be slow, down or
hostile. Every review is answered within the internal deadline (shorter than the webhook's
``timeoutSeconds``): what is not verified by then is denied in enforce mode with a message saying so. Every
answer to ``POST /validate`` is HTTP 200 with an AdmissionReview (the API server treats any other status
as a failed call and leaves the verdict to ``failurePolicy``; ours is the verdict), with the request's uid
whenever it can be found, even in a body too large, too deep or too broken to parse.

Resources are bounded whatever the load: at most ``max_verifications`` verifications at once, each
reading at most ``max_signature_bytes`` / ``max_signature_layers`` (:mod:`airgap.admission.budget`); an
image still queued for a verification slot at the deadline is denied as "webhook busy". Bodies over
``PARSE_INLINE_MAX`` are parsed one at a time off the event loop, so a hostile multi-megabyte JSON
document neither stalls other reviews nor multiplies its parse memory. A trust directory that fails to
load keeps the previous trust (and is logged); with no trust at all ``/readyz`` fails and every review is
denied in enforce mode.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from airgap.admission import pin
from airgap.admission.cache import AsyncFreshLookup, CacheKey, DecisionCache, FreshLookup, TagWindow
from airgap.admission.decide import (
    Decision,
    ImageVerdict,
    Mode,
    check_images,
    check_images_async,
    decide,
    decide_request,
    malformed,
)
from airgap.admission.metrics import JsonLog, Metrics
from airgap.admission.review import AdmissionRequest, ReviewError, uid_hint
from airgap.errors import Error

if TYPE_CHECKING:
    import asyncio

    from airgap.admission.budget import Slots
    from airgap.config import RegistryOptions
    from airgap.oci.registry import RegistryClient
    from airgap.refs import Reference
    from airgap.refs.translate import Aliases
    from airgap.verification.trust import Trust
    from airgap.verification.verifier import Verifier

JSON = "application/json"
TEXT = "text/plain; version=0.0.4; charset=utf-8"
MiB = 1024 * 1024
# Bodies up to this size (real reviews are a few KiB) are parsed on the event loop; larger ones in one
# parser thread, one at a time: a hostile 3 MiB document costs ~0.4 s and ~80 MB while it is parsed.
PARSE_INLINE_MAX = 256 * 1024
# An image still waiting for a verification slot this long before the deadline is denied as busy (so
# the answer says why, instead of the generic deadline message).
BUSY_MARGIN = 0.05
# Parsed image references kept (a few hundred bytes each).
REF_CACHE_SIZE = 4096


@dataclass(frozen=True)
class WebhookConfig:
    """Knobs of one webhook process, with the reasons for their defaults (the memory arithmetic behind the
    bounds is in :mod:`airgap.admission.manifests`, next to the Deployment's limit)."""

    trust_dir: str
    mode: Mode = "enforce"
    # Shorter than the ValidatingWebhookConfiguration's timeoutSeconds (10 in our manifests), so the
    # API server always gets our clear denial instead of its own timeout.
    deadline: float = 8.0
    cache_ttl: float = 60.0
    cache_size: int = 10_000
    # How long the mutating webhook may reuse a tag resolution whose digest was allowed (see cache.TagWindow):
    # it pins that digest into the object, so a re-tag inside the window pins the previous, verified digest,
    # never unverified content. A burst of pods naming one tag then costs one registry round trip, not one
    # per pod; a re-tag is noticed within this many seconds. 0: every review resolves every tag.
    tag_reuse_window: float = 3.0
    # The API server accepts at most 3 MiB per write and etcd stores at most 1.5 MiB per object; a review
    # carries the object (and the old one on UPDATE): anything larger is not from the API server.
    max_body: int = 3 * MiB
    reload_interval: float = 2.0
    aliases: tuple[str, ...] = ()
    workers: int = 32  # threads for tag look-ups and verifications; blocked ones are bounded by registry timeouts
    registry: RegistryOptions | None = None
    # Distinct images one review may name (real pods have a handful; each costs a tag look-up).
    max_images: int = 256
    # Verifications at once, and what each may read: 4 x 16 MiB of signature data in flight at most.
    # 16 MiB leaves room for SBOM attestations; cosign reads at most 1,000 layers of a signature manifest.
    max_verifications: int = 4
    max_signature_bytes: int = 16 * MiB
    max_signature_layers: int = 1000
    # Slow clients (see airgap.admission.guard): the API server sends a review at once, so a connection
    # that has not sent its headers, or its body, within 10 s is not the API server.
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    # Idle keep-alive: shorter than the API server's 90 s idle timeout, as before.
    keepalive_timeout: float = 75.0
    # Connections held at once (~30 KiB each with TLS up, ~55 KiB mid-handshake, ~5 KiB before the first
    # byte); over it the slowest, then the idlest, are shed. The API servers keep a few dozen each.
    max_connections: int = 1024
    # Request bodies held across all connections; over it the oldest unfinished bodies are dropped.
    max_buffered_bytes: int = 16 * MiB


@dataclass(frozen=True)
class _State:
    """One loaded trust directory and the verifier over it; replaced whole on reload."""

    trust: Trust
    verifier: Verifier
    policy_digest: str
    fingerprint: tuple[Any, ...] = field(repr=False)


@functools.lru_cache(maxsize=REF_CACHE_SIZE)
def parse_ref(image: str) -> Reference:
    """``refs.parse`` memoized: a cluster names the same few hundred images over and over, and a parsed
    reference is immutable (an invalid one raises every time: errors are not cached)."""
    from airgap import refs

    return refs.parse(image)


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
        from airgap.admission.budget import WEBHOOK_CACHE_BYTES, BudgetedClient, Slots, webhook_limits
        from airgap.config import RegistryOptions
        from airgap.refs.translate import Aliases

        self.config = config
        self.log = log or JsonLog()
        self.metrics = Metrics()
        self.cache: DecisionCache[ImageVerdict] = DecisionCache(config.cache_ttl, config.cache_size)
        options = config.registry or RegistryOptions()
        # One slow registry request must not outlive the review; what one read may hold is capped (budget.py).
        self.client: RegistryClient = BudgetedClient(replace(options, limits=webhook_limits(options.limits,
                                                                                            config.deadline)),
                                                     cache_bytes=WEBHOOK_CACHE_BYTES)
        self.aliases: Aliases = Aliases.parse(list(config.aliases))
        self._tags: FreshLookup[str | None] = FreshLookup(self._resolve)
        self.pins = TagWindow(config.tag_reuse_window, config.cache_size)
        self.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="airgap-check")
        self.slots: Slots = Slots(config.max_verifications)
        # More metrics by name, registered by the HTTP layer (connections by phase, sheds, timeouts).
        self.gauges: dict[str, Callable[[], float]] = {}
        self.counters: dict[str, Callable[[], float]] = {}
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="airgap-parse")
        self._loop_tags: tuple[Any, AsyncFreshLookup[str | None]] | None = None
        self._loop_flights: tuple[Any, dict[CacheKey, asyncio.Future[ImageVerdict]]] | None = None
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
                verifier = Verifier(trust, None, self.client, self.aliases, timeout=self.config.deadline)
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
            for scope in (trust, *trust.scopes.values()):
                for warning in scope.policy.warnings if scope.policy is not None else ():
                    self.log("warning", "policy warning", trust_dir=self.config.trust_dir, warning=warning)
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
        self._parser.shutdown(wait=False, cancel_futures=True)

    # ---- one image ------------------------------------------------------------------------------

    def _resolve(self, key: tuple[str, str, str]) -> str | None:
        from airgap.oci.deadline import deadline

        with deadline(self.config.deadline):  # a review waits no longer; neither does its worker thread
            desc = self.client.head_manifest(*key)
        return desc.digest if desc is not None else None

    def _tag_key(self, ref: Reference) -> tuple[str, str, str]:
        from airgap import refs

        return refs.api_host(self.aliases.access_host(ref.registry)), ref.repository, ref.identifier

    @staticmethod
    def _cache_key(state: _State, ref: Reference, digest: str) -> CacheKey:
        # What the verifier is asked about is exactly ``ref@digest`` (normalized): ``repo:tag`` resolved to a
        # digest and the ``repo:tag@digest`` the mutating webhook pinned it to share one decision.
        return DecisionCache.key(str(ref.with_digest(digest)), digest, state.policy_digest, state.trust.digest)

    def _windowed(self, verdict: ImageVerdict, digest: str, window: tuple[tuple[str, str, str], float] | None
                  ) -> ImageVerdict:
        """Open the tag window for a fresh resolution whose digest was allowed (mutating reviews only)."""
        if window is not None and verdict.decision == "allow" and not verdict.error and verdict.digest == digest:
            self.pins.put(window[0], digest, window[1])
        return verdict

    def _check(self, state: _State, image: str, deadline_at: float, *, reuse: bool = False) -> ImageVerdict:
        """Resolve the tag now (or, with ``reuse``, from the tag window), then the cached decision or a fresh
        verification. Only the mutating webhook passes ``reuse``: it pins the digest it is given."""
        window = None
        try:
            ref = parse_ref(image)
            digest = ref.digest
            if digest is None:
                tag = self._tag_key(ref)
                digest = self.pins.get(tag) if reuse else None
                if digest is None:
                    asked = time.monotonic()
                    digest = self._tags.get(tag)
                    if digest is None:
                        return ImageVerdict(image, "deny", reasons=(f"{ref} is not in the local registry",))
                    window = (tag, asked) if reuse else None
        except Error as exc:
            return ImageVerdict(image, "deny", error=True, reasons=(str(exc),))
        key = self._cache_key(state, ref, digest)
        hit = self.cache.get(key)
        if hit is not None:
            return self._windowed(replace(hit, image=image, cached=True), digest, window)
        if not self.slots.acquire_blocking(deadline_at - time.monotonic() - BUSY_MARGIN):
            return self._busy(image)
        return self._windowed(self._verify_in_slot(state, image, ref, digest, key, deadline_at), digest, window)

    async def _check_async(self, state: _State, image: str, deadline_at: float, *,
                           reuse: bool = False) -> ImageVerdict:
        """:meth:`_check` on the event loop: only the tag look-up and a verification use a thread."""
        window = None
        try:
            ref = parse_ref(image)
            digest = ref.digest
            if digest is None:
                tag = self._tag_key(ref)
                digest = self.pins.get(tag) if reuse else None
                if digest is None:
                    asked = time.monotonic()
                    digest = await self._async_tags().get(tag)
                    if digest is None:
                        return ImageVerdict(image, "deny", reasons=(f"{ref} is not in the local registry",))
                    window = (tag, asked) if reuse else None
        except Error as exc:
            return ImageVerdict(image, "deny", error=True, reasons=(str(exc),))
        key = self._cache_key(state, ref, digest)
        hit = self.cache.get(key)
        if hit is not None:
            return self._windowed(replace(hit, image=image, cached=True), digest, window)
        return self._windowed(await self._verify_shared(state, image, ref, digest, key, deadline_at), digest, window)

    async def _verify_shared(self, state: _State, image: str, ref: Reference, digest: str, key: CacheKey,
                             deadline_at: float) -> ImageVerdict:
        """A fresh verification, shared by every review asking about the same key at the same time."""
        import asyncio

        # Concurrent reviews of the same image (same digest, policy and trust: the same answer) share one
        # verification, so a storm of pods naming one hostile image costs one slot, not one per review.
        flights = self._flights()
        flight = flights.get(key)
        if flight is None:
            flight = flights[key] = asyncio.ensure_future(self._fly(state, image, ref, digest, key, deadline_at))

            def landed(done: asyncio.Future[ImageVerdict]) -> None:
                flights.pop(key, None)
                if not done.cancelled():
                    done.exception()  # retrieved: every review still waiting gets it; none may be left

            flight.add_done_callback(landed)
        # A review past its deadline stops waiting; the flight (and the verification) is not cancelled.
        return replace(await asyncio.shield(flight), image=image)

    async def _fly(self, state: _State, image: str, ref: Reference, digest: str, key: CacheKey,
                   deadline_at: float) -> ImageVerdict:
        """Take a verification slot (or give up as busy at the deadline) and verify in a worker thread."""
        import asyncio

        if not await self.slots.acquire(deadline_at - time.monotonic() - BUSY_MARGIN):
            return self._busy(image)
        try:
            future = asyncio.get_running_loop().run_in_executor(self.executor, self._verify_in_slot, state, image,
                                                                ref, digest, key, deadline_at)
        except RuntimeError:  # the executor was shut down: the service is closing
            self.slots.release()
            raise
        # The thread keeps its slot until it ends: past the deadline its budget stops it at its next registry
        # call, so abandoned work never exceeds the bound.
        return await future

    def _flights(self) -> dict[CacheKey, asyncio.Future[ImageVerdict]]:
        """The verifications in flight on the running event loop (one loop serves the webhook)."""
        import asyncio

        loop = asyncio.get_running_loop()
        current = self._loop_flights
        if current is None or current[0] is not loop:
            current = self._loop_flights = (loop, {})
        return current[1]

    def _async_tags(self) -> AsyncFreshLookup[str | None]:
        """The tag look-ups of the running event loop (one loop serves the webhook; a new loop gets its own)."""
        import asyncio

        loop = asyncio.get_running_loop()
        current = self._loop_tags  # read once: another loop's thread may swap it meanwhile
        if current is None or current[0] is not loop:
            current = self._loop_tags = (loop, AsyncFreshLookup(self._resolve, self.executor))
        return current[1]

    def _busy(self, image: str) -> ImageVerdict:
        self.metrics.count("busy")
        return ImageVerdict(image, "deny", error=True, reasons=(
            f"webhook busy: all {self.slots.size} verification slots in use ({self.slots.queued} waiting); "
            f"not verified within the webhook's {self.config.deadline:g}s deadline, retry",))

    def _verify_in_slot(self, state: _State, image: str, ref: Reference, digest: str, key: CacheKey,
                        deadline_at: float) -> ImageVerdict:
        """:meth:`_verify` holding a verification slot (taken by the caller), released when it ends."""
        try:
            return self._verify(state, image, ref, digest, key, deadline_at)
        finally:
            self.slots.release()

    def _verify(self, state: _State, image: str, ref: Reference, digest: str, key: CacheKey,
                deadline_at: float) -> ImageVerdict:
        from airgap.admission.budget import Budget, spending

        # Verify exactly the digest the tag resolved to (fetched by digest, bytes checked), tag kept for
        # translation and policy globs: no second resolution, no window for a re-tag in between.
        budget = Budget(self.config.max_signature_bytes, self.config.max_signature_layers, deadline_at)
        with spending(budget):
            result = state.verifier.verify(str(ref.with_digest(digest)))
        verdict = ImageVerdict(image, result.decision, result.digest, tuple(result.reasons), tuple(result.warnings),
                               error=result.digest is None)
        if result.digest is not None:  # decided on the image's bytes (not a transport failure): cacheable
            self.cache.put(key, verdict)
        return verdict

    # ---- HTTP-independent request handling ------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes | None, *, prefix: bytes = b"") -> tuple[int, str, bytes]:
        """Answer one HTTP request; ``body`` is None when it was over ``max_body`` (not read; ``prefix``:
        its first bytes, if any were read, for the uid)."""
        path = path.split("?", 1)[0]
        if path in ("/validate", "/mutate"):
            if method != "POST":
                return 405, JSON, b'{"error":"POST an AdmissionReview v1"}'
            if path == "/mutate":
                return self.mutate(body, prefix=prefix)
            return self.validate(body, prefix=prefix)
        if method not in ("GET", "HEAD"):
            return 405, JSON, b'{"error":"method not allowed"}'
        if path == "/healthz":
            return 200, TEXT, b"ok\n"
        if path == "/readyz":
            return (200, TEXT, b"ready\n") if self.ready else (503, TEXT, b"trust not loaded\n")
        if path == "/metrics":
            counters = {"tag_window_hits": self.pins.hits, **{name: value() for name, value in self.counters.items()}}
            return 200, TEXT, self.metrics.render(self.cache, self.ready, self._gauges(), counters).encode()
        return 404, JSON, b'{"error":"not found"}'

    async def handle_async(self, method: str, path: str, body: bytes | None, *,
                           prefix: bytes = b"") -> tuple[int, str, bytes]:
        """:meth:`handle` for an asyncio server: reviews are decided on the loop, other paths as ``handle``."""
        route = path.split("?", 1)[0]
        if method == "POST" and route in ("/validate", "/mutate"):
            call = (self.mutate_async if route == "/mutate" else self.validate_async)(body, prefix=prefix)
            del body  # the call owns it (and drops it once parsed)
            return await call
        return self.handle(method, path, body)

    def _gauges(self) -> dict[str, float]:
        return {"verifications_in_flight": self.slots.in_use, "verifications_queued": self.slots.queued,
                "tag_window_entries": len(self.pins), **{name: value() for name, value in self.gauges.items()}}

    def validate(self, body: bytes | None, *, prefix: bytes = b"") -> tuple[int, str, bytes]:
        start = time.monotonic()
        deadline_at = start + self.config.deadline
        request: AdmissionRequest | None = None
        try:
            request, decision, state = self._parse(body, prefix)
            if decision is None:
                assert request is not None and state is not None  # noqa: S101 - _parse's contract
                decision = decide_request(request, lambda image: self._check(state, image, deadline_at),
                                          self.config.mode, executor=self.executor, deadline=self.config.deadline)
        except Exception as exc:  # noqa: BLE001 - fail closed with a clear message, never a traceback
            decision = self._crashed(request, exc)
        return self._answer(request, decision, start)

    async def validate_async(self, body: bytes | None, *, prefix: bytes = b"") -> tuple[int, str, bytes]:
        """:meth:`validate` on an event loop: no thread per request or per image, only per registry call.

        Owns ``body``: its last reference is dropped once it is parsed, so a review waiting for a
        verification slot holds its few images, not its bytes."""
        start = time.monotonic()
        deadline_at = start + self.config.deadline
        request: AdmissionRequest | None = None
        try:
            if body is not None and len(body) > PARSE_INLINE_MAX:
                request, decision, state = await self._parse_off_loop(body, deadline_at)
            else:
                request, decision, state = self._parse(body, prefix)
            del body
            if decision is None:
                assert request is not None and state is not None  # noqa: S101 - _parse's contract
                images = request.unique_images
                verdicts = await check_images_async(
                    images, lambda image: self._check_async(state, image, deadline_at),
                    deadline=self.config.deadline) if images else []
                decision = decide(request, verdicts, self.config.mode)
        except Exception as exc:  # noqa: BLE001 - fail closed with a clear message, never a traceback
            decision = self._crashed(request, exc)
        return self._answer(request, decision, start)

    # ---- the mutating webhook: pin verified digests (see airgap.admission.pin) ----------------------

    def mutate(self, body: bytes | None, *, prefix: bytes = b"") -> tuple[int, str, bytes]:
        """Answer ``POST /mutate``: always allowed, with a JSONPatch pinning every image verified by tag."""
        start = time.monotonic()
        deadline_at = start + self.config.deadline
        request: AdmissionRequest | None = None
        try:
            request, skipped, state = self._parse(body, prefix)
            verdicts: list[ImageVerdict] = []
            if skipped is None and self.config.mode != "audit":
                assert request is not None and state is not None  # noqa: S101 - _parse's contract
                images = pin.candidates(request)
                if images:
                    verdicts = check_images(images, lambda image: self._check(state, image, deadline_at, reuse=True),
                                            executor=self.executor, deadline=self.config.deadline)
            decision = self._mutation(request, skipped, verdicts)
        except Exception as exc:  # noqa: BLE001 - the object goes on unpatched; validation decides on it
            decision = self._mutation_crashed(request, exc)
        return self._answer_mutation(request, decision, start)

    async def mutate_async(self, body: bytes | None, *, prefix: bytes = b"") -> tuple[int, str, bytes]:
        """:meth:`mutate` on an event loop (owns ``body``, as :meth:`validate_async`)."""
        start = time.monotonic()
        deadline_at = start + self.config.deadline
        request: AdmissionRequest | None = None
        try:
            if body is not None and len(body) > PARSE_INLINE_MAX:
                request, skipped, state = await self._parse_off_loop(body, deadline_at)
            else:
                request, skipped, state = self._parse(body, prefix)
            del body
            verdicts: list[ImageVerdict] = []
            if skipped is None and self.config.mode != "audit":
                assert request is not None and state is not None  # noqa: S101 - _parse's contract
                images = pin.candidates(request)
                if images:
                    verdicts = await check_images_async(
                        images, lambda image: self._check_async(state, image, deadline_at, reuse=True),
                        deadline=self.config.deadline)
            decision = self._mutation(request, skipped, verdicts)
        except Exception as exc:  # noqa: BLE001 - the object goes on unpatched; validation decides on it
            decision = self._mutation_crashed(request, exc)
        return self._answer_mutation(request, decision, start)

    def _mutation(self, request: AdmissionRequest | None, skipped: Decision | None,
                  verdicts: list[ImageVerdict]) -> Decision:
        """Allowed, with a patch pinning each image whose verdict is ``allow`` (never anything else)."""
        if skipped is not None or request is None:
            # Unreadable, too many images, no trust: nothing is pinned; the validating webhook answers it.
            uid = request.uid if request is not None else (skipped.uid if skipped is not None else "")
            reason = (skipped.message or "; ".join(skipped.warnings) or skipped.audit_annotations.get("error", "")
                      ) if skipped is not None else ""
            return Decision(uid, True, "unchanged", message=reason.removeprefix("airgap: "))
        pins = {v.image: v.digest for v in verdicts if v.decision == "allow" and not v.error and v.digest}
        ops = pin.patch(request, pins)
        return Decision(request.uid, True, "pinned" if ops else "unchanged", verdicts=verdicts, patch=ops)

    def _mutation_crashed(self, request: AdmissionRequest | None, exc: Exception) -> Decision:
        self.log("error", "internal error", error=f"{type(exc).__name__}: {exc}")
        return Decision(request.uid if request else "", True, "unchanged",
                        message=f"internal error: {type(exc).__name__}: {exc}")

    def _answer_mutation(self, request: AdmissionRequest | None, decision: Decision,
                         start: float) -> tuple[int, str, bytes]:
        elapsed = time.monotonic() - start
        self.metrics.observe_mutation(elapsed, len(decision.patch))
        fields: dict[str, Any] = {"uid": decision.uid, "mode": self.config.mode, "result": decision.outcome,
                                  "ms": round(elapsed * 1000, 2)}
        if request is not None:
            fields.update(kind=request.kind, namespace=request.namespace, name=request.name,
                          operation=request.operation, dry_run=request.dry_run)
        if decision.patch:
            fields["pinned"] = [{"path": op["path"], "image": op["value"]} for op in decision.patch]
        left = [{"image": v.image, "digest": v.digest, "decision": v.decision, "cached": v.cached,
                 **({"reasons": list(v.reasons)} if v.reasons else {})}
                for v in decision.verdicts if v.decision != "allow" or v.error]
        if left:
            fields["not_pinned"] = left
        if decision.message:
            fields["message"] = decision.message
        self.log("info", "admission mutation", **fields)
        # Never the validation message in the answer: a mutating webhook's answer only carries its patch.
        answer = Decision(decision.uid, True, decision.outcome, patch=decision.patch)
        return 200, JSON, json.dumps(answer.review(), separators=(",", ":")).encode()

    async def _parse_off_loop(self, body: bytes, deadline_at: float
                              ) -> tuple[AdmissionRequest | None, Decision | None, _State | None]:
        """:meth:`_parse` of a large body in the parser thread, waiting for it no longer than the deadline."""
        import asyncio

        uid = uid_hint(body)
        future = asyncio.get_running_loop().run_in_executor(self._parser, self._parse, body, b"")
        del body
        try:
            return await asyncio.wait_for(future, max(0.0, deadline_at - time.monotonic()))
        except TimeoutError:
            self.metrics.count("busy")
            return None, malformed(uid, f"webhook busy: large request bodies are parsed one at a time and this "
                                        f"one was not parsed within the {self.config.deadline:g}s deadline, retry",
                                   self.config.mode, code=503), None

    def _parse(self, body: bytes | None, prefix: bytes) -> tuple[AdmissionRequest | None, Decision | None,
                                                                 _State | None]:
        """The request, and either the decision (malformed, no trust) or the state to decide in."""
        mode = self.config.mode
        if body is None:
            return None, malformed(uid_hint(prefix), f"request body is over the {self.config.max_body}-byte limit",
                                   mode, code=413), None
        try:
            request = AdmissionRequest.from_bytes(body)
        except ReviewError as exc:
            return None, malformed(exc.uid, str(exc), mode), None
        if len(request.images) > self.config.max_images and len(request.unique_images) > self.config.max_images:
            return request, malformed(request.uid, f"request {request.uid}: {len(request.unique_images)} distinct "
                                                   f"images; the webhook verifies at most {self.config.max_images} "
                                                   f"per request", mode), None
        state = self._state
        if state is None:
            return request, malformed(request.uid, "trust directory not loaded: cannot verify images", mode,
                                      code=503), None
        return request, None, state

    def _crashed(self, request: AdmissionRequest | None, exc: Exception) -> Decision:
        self.log("error", "internal error", error=f"{type(exc).__name__}: {exc}")
        return malformed(request.uid if request else "", f"internal error: {type(exc).__name__}: {exc}",
                         self.config.mode, code=500)

    def _answer(self, request: AdmissionRequest | None, decision: Decision, start: float) -> tuple[int, str, bytes]:
        # Always 200: the verdict (and its status code) is in the review. Any other HTTP status would be a
        # failed call to the API server, decided by failurePolicy instead of by us.
        elapsed = time.monotonic() - start
        deadline_hit = any(v.error and "deadline" in v.why for v in decision.verdicts)
        self.metrics.observe(decision.outcome, decision.allowed, elapsed, deadline_hit)
        self._log_decision(request, decision, elapsed)
        return 200, JSON, json.dumps(decision.review(), separators=(",", ":")).encode()

    def _log_decision(self, request: AdmissionRequest | None, decision: Decision, elapsed: float) -> None:
        fields: dict[str, Any] = {"uid": decision.uid, "mode": self.config.mode, "allowed": decision.allowed,
                                  "result": decision.outcome, "ms": round(elapsed * 1000, 2)}
        if request is not None:
            fields.update(kind=request.kind, namespace=request.namespace, name=request.name,
                          operation=request.operation, dry_run=request.dry_run)
        fields["images"] = [{"image": v.image, "digest": v.digest, "decision": v.decision, "cached": v.cached,
                             **({"reasons": list(v.reasons)} if v.reasons else {})} for v in decision.verdicts]
        if decision.message:
            fields["message"] = decision.message
        self.log("info" if decision.outcome == "allow" else "warning", "admission review", **fields)


