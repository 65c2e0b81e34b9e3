"""How many verifications the webhook runs at once, and how much one verification may fetch.

Memory: a verification holds what it read from the registry (signature manifests, layers, bundles) until
it ends, so the webhook's concurrency must not multiply a per-image budget past the Deployment's memory
limit (see :mod:`airgap.admission.manifests` for the arithmetic). Two bounds:

* :class:`Slots`: at most ``max_verifications`` verifications run at once (the thread pool is larger:
  it also serves tag look-ups). The rest queue first come, first served, until the review's deadline,
  then are denied as "webhook busy" (never a 500, never a late answer). A slot is held until the
  verification's thread really ends, not until its review stops waiting, so work abandoned at a deadline
  cannot pile up past the bound.
* :class:`Budget`, one per verification (thread-local), charged by :class:`BudgetedClient`, the webhook's
  registry client: what the verifier reads counts against ``max_signature_bytes`` at the memory it takes
  (a blob at its size, a manifest at :data:`MANIFEST_OBJECT_FACTOR` times its size: its bytes and its
  parsed descriptors; a referrers list per descriptor) and every blob read against
  ``max_signature_layers``; over either, or past the review's deadline, the next read raises our Error,
  which the verifier reports as a denial of that image. The deadline check stops a verification whose
  review was already answered at its next registry call instead of letting it run on.

The webhook's client also reads less in one go than the CLI's (:func:`webhook_limits`): JSON documents
(referrers pages) of at most 1 MiB, at most 8 pages, and a content cache of 8 MiB, since each of those
is held as parsed objects several times its size.

Verification's own per-image caps (``config.Limits``: signature layers, layer size, bytes per image, referrers)
apply here too; these are the webhook's, sized from its memory limit and counting memory as parsed objects take
it, and stay in force whatever those caps are.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from airgap.config import Limits
from airgap.errors import IntegrityError, TransportError
from airgap.oci.registry import RegistryClient

if TYPE_CHECKING:
    from airgap.oci.manifest import Descriptor, Manifest

MiB = 1024 * 1024
# Memory per byte read, measured on CPython 3.11: a manifest's bytes plus its parsed descriptors (a 4 MiB
# manifest of 28,000 layers: 18 MB of objects), and the worst JSON for the parser (3 MiB of "[[],[],...]":
# 78 MB of lists); a referrers descriptor as parsed.
MANIFEST_OBJECT_FACTOR = 6
JSON_OBJECT_FACTOR = 26
DESCRIPTOR_BYTES = 512
# What the webhook's registry client reads at once (see webhook_limits).
WEBHOOK_MAX_JSON_BYTES = 1 * MiB
WEBHOOK_MAX_PAGES = 8
WEBHOOK_CACHE_BYTES = 8 * MiB


@dataclass
class _Waiter:
    wake: Callable[[], None]  # thread-safe and non-blocking
    granted: bool = False


class Slots:
    """A counting semaphore shared by threads and one event loop, first come first served, with timeouts.

    ``acquire`` (coroutine, on the loop) and ``acquire_blocking`` (threads) take a slot or give up after
    ``timeout`` seconds; ``release`` may be called from any thread and hands the slot straight to the
    oldest waiter. A waiter that gives up after being handed a slot passes it on, so no slot is lost.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one verification slot is needed")
        self.size = size
        self._free = size
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _take(self) -> bool:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
                waiter.wake()
            else:
                self._free += 1

    def _give_up(self, waiter: _Waiter) -> bool:
        """After a wait ended without seeing the grant: True if the slot was granted meanwhile (keep it)."""
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    async def acquire(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._take():
                return True
            future: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                def resolve() -> None:
                    if not future.done():
                        future.set_result(None)
                try:
                    loop.call_soon_threadsafe(resolve)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass

            waiter = _Waiter(wake)
            self._waiters.append(waiter)
        try:
            # asyncio.wait, not wait_for: it never swallows the caller's cancellation (3.11's wait_for can).
            await asyncio.wait((future,), timeout=max(0.0, timeout))
        except asyncio.CancelledError:
            if self._give_up(waiter):
                self.release()  # granted to a caller that is gone: pass it on
            raise
        return self._give_up(waiter)

    def acquire_blocking(self, timeout: float) -> bool:
        event = threading.Event()
        with self._lock:
            if self._take():
                return True
            waiter = _Waiter(event.set)
            self._waiters.append(waiter)
        event.wait(max(0.0, timeout))
        return self._give_up(waiter)


class Budget:
    """What one verification may still read: bytes, blob reads, and until when (a monotonic time)."""

    def __init__(self, max_bytes: int, max_layers: int, deadline: float) -> None:
        self.max_bytes = max_bytes
        self.max_layers = max_layers
        self.deadline = deadline
        self.bytes = 0
        self.layers = 0
        self.nested = False

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TransportError("verification stopped at the webhook's deadline")

    def reserve_blob(self, size: int) -> None:
        self.check_time()
        self.layers += 1
        if self.layers > self.max_layers:
            raise IntegrityError(f"more than {self.max_layers} signature layers to read "
                                 f"(the webhook's per-image limit, --max-signature-layers)")
        if self.bytes + size > self.max_bytes:
            raise IntegrityError(f"signatures over the webhook's per-image limit of {_size(self.max_bytes)} "
                                 f"(--max-signature-bytes)")
        self.bytes += size

    def spend(self, size: int) -> None:
        """Charge ``size`` bytes of memory already taken (a parsed manifest, a referrers list)."""
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise IntegrityError(f"manifests and signatures over the webhook's per-image limit of "
                                 f"{_size(self.max_bytes)} (--max-signature-bytes)")


def _size(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n} bytes"


_local = threading.local()


def current() -> Budget | None:
    budget: Budget | None = getattr(_local, "budget", None)
    return budget


@contextmanager
def spending(budget: Budget) -> Iterator[Budget]:
    """Charge this thread's registry reads to ``budget`` while the block runs."""
    previous = current()
    _local.budget = budget
    try:
        yield budget
    finally:
        _local.budget = previous


class BudgetedClient(RegistryClient):
    """The webhook's registry client: reads made inside :func:`spending` are charged to that budget.

    Outside a budget (tag look-ups, other callers) it is the plain client. A blob is charged by its
    declared size before it is fetched (the client checks the bytes against that size), so an oversized
    layer is refused without reading it; a manifest is charged once it is read (its size is only known
    then; the client caps it at ``Limits.max_manifest_bytes``). Content served from the client's cache
    is charged too: the verification holds it either way.
    """

    def get_manifest(self, host: str, repo: str, reference: str, *, cached: bool = False) -> Manifest:
        budget = current()
        if budget is None or budget.nested:  # a cached read calls back in for the fetch: charge it once
            return super().get_manifest(host, repo, reference, cached=cached)
        budget.check_time()
        budget.nested = True
        try:
            manifest = super().get_manifest(host, repo, reference, cached=cached)
        finally:
            budget.nested = False
        budget.spend(len(manifest.data) * MANIFEST_OBJECT_FACTOR)
        return manifest

    def read_blob(self, host: str, repo: str, desc: Descriptor, *, cached: bool = False) -> bytes:
        budget = current()
        if budget is not None:
            budget.reserve_blob(desc.size)
        return super().read_blob(host, repo, desc, cached=cached)

    def referrers(self, host: str, repo: str, digest: str, *, max_items: int | None = None) -> list[Descriptor]:
        budget = current()
        if budget is None or budget.nested:
            return super().referrers(host, repo, digest, max_items=max_items)
        budget.check_time()
        budget.nested = True  # the fallback tag is a manifest: charged here, once, as a list
        try:
            found = super().referrers(host, repo, digest, max_items=max_items)
        finally:
            budget.nested = False
        budget.spend(len(found) * DESCRIPTOR_BYTES)
        return found


def webhook_limits(base: Limits, deadline: float) -> Limits:
    """``base`` for the webhook's client: one registry request never outlives a review (timeouts bounded by
    the deadline, one retry, short back-off), and JSON pages and their count are capped as above."""
    return replace(base, connect_timeout=min(base.connect_timeout, deadline),
                   read_timeout=min(base.read_timeout, deadline), retries=min(base.retries, 1),
                   backoff_max=min(base.backoff_max, 0.5),
                   max_json_bytes=min(base.max_json_bytes, WEBHOOK_MAX_JSON_BYTES),
                   max_tag_pages=min(base.max_tag_pages, WEBHOOK_MAX_PAGES))


def worst_verification_bytes(max_signature_bytes: int, limits: Limits) -> int:
    """The most memory one verification can hold at a moment: its budget, plus the one read that takes it
    over (the largest manifest parsed, a JSON page parsed, or a blob being joined from its chunks)."""
    overshoot = max(limits.max_manifest_bytes * MANIFEST_OBJECT_FACTOR, limits.max_json_bytes * JSON_OBJECT_FACTOR,
                    2 * limits.max_signature_layer_bytes)
    return max_signature_bytes + overshoot
