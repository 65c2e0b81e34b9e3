"""A bounded, expiring cache of per-image decisions, safe to share between request threads.

Keys are ``(ref@digest, image digest, policy digest, trust digest)``, the ref normalized and pinned to the
digest it was resolved to: exactly what the verifier is asked about, so ``repo:tag`` resolved to a digest and
the ``repo:tag@digest`` the mutating webhook pinned it to share one decision. The digest is the one the tag
resolves to *now* (the validating webhook re-resolves every tag on every request), so a re-tagged image
misses the cache and is verified afresh; a new policy or trust directory changes the key, so a reload
never serves a decision made under the old trust. The ref is part of the key because the same digest
under another repository may match other policies (globs match the name, not the content).

:class:`TagWindow` is the one place a tag resolution is reused: by the mutating webhook only, which pins the
digest it hands out into the object (``repo:tag@sha256:...``), so what runs is exactly what was verified
whichever digest the tag names by then. It holds only resolutions whose digest was then allowed, for a
short window counted from when the look-up was asked for (never extended by use): a re-tag inside the
window pins the previous, verified digest; after it, the tag is resolved (and its new digest verified)
afresh. The validating webhook never uses it: a tag it admits unpinned is pulled by name, so it must
resolve every tag on every review.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from airgap.errors import TransportError

if TYPE_CHECKING:
    import asyncio

V = TypeVar("V")
CacheKey = tuple[str, str, str, str]


class DecisionCache(Generic[V]):
    """LRU with a TTL: at most ``max_entries`` entries, each valid for ``ttl`` seconds after it was stored."""

    def __init__(self, ttl: float = 60.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0 or max_entries < 0:
            raise ValueError("cache ttl and size must not be negative")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[CacheKey, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    @staticmethod
    def key(ref: str, digest: str, policy_digest: str, trust_digest: str) -> CacheKey:
        return (ref, digest, policy_digest, trust_digest)

    def get(self, key: CacheKey) -> V | None:
        now = self._clock()
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= now:
                if item is not None:
                    del self._items[key]
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[1]

    def put(self, key: CacheKey, value: V) -> None:
        if self.max_entries == 0 or self.ttl == 0:
            return
        expires = self._clock() + self.ttl
        with self._lock:
            self._items[key] = (expires, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class TagWindow:
    """``(host, repository, tag) -> digest`` for ``window`` seconds from ``since``; at most ``max_entries``
    (least recently stored dropped first). Thread-safe. A window of 0 keeps nothing."""

    def __init__(self, window: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if window < 0 or max_entries < 0:
            raise ValueError("tag window and size must not be negative")
        self.window = window
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[tuple[str, str, str], tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: tuple[str, str, str]) -> str | None:
        """The digest stored for ``key`` if its window is still open, else None."""
        item = self._items.get(key)  # a dict read is atomic; only writers take the lock
        if item is None:
            return None
        if item[0] <= self._clock():
            with self._lock:
                if self._items.get(key) is item:
                    del self._items[key]
            return None
        self.hits += 1
        return item[1]

    def put(self, key: tuple[str, str, str], digest: str, since: float) -> None:
        """Remember ``digest`` for ``key`` until ``since + window`` (``since``: when its look-up was asked for)."""
        expires = since + self.window
        if self.max_entries == 0 or expires <= self._clock():
            return
        with self._lock:
            current = self._items.get(key)
            if current is not None and current[0] >= expires:
                return  # a later look-up already stored its answer: keep the newer one
            self._items[key] = (expires, digest)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class _Flight(Generic[V]):
    def __init__(self) -> None:
        self.started = False
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class FreshLookup(Generic[V]):
    """Coalesce concurrent look-ups of one key (tag -> digest) without ever answering with a stale one.

    A caller never reuses a look-up that was sent before it arrived: while one is in flight, callers that
    arrive queue for the *next* one, which starts when the current one ends and answers all of them. So
    every answer was fetched after its caller asked (a re-tag is always seen), yet a tag asked for by many
    requests at once costs one registry round trip per round trip time, not one per request.
    """

    def __init__(self, fetch: Callable[[Any], V]) -> None:
        self._fetch = fetch
        self._lock = threading.Lock()
        self._current: dict[Any, _Flight[V]] = {}
        self._next: dict[Any, _Flight[V]] = {}

    def get(self, key: Any) -> V:
        with self._lock:
            current = self._current.get(key)
            if current is None:
                flight: _Flight[V] = _Flight()
                flight.started = lead = True
                self._current[key] = flight
            else:
                flight = self._next.setdefault(key, _Flight())
                lead = False
        if current is not None:
            current.done.wait()  # it ends by promoting our flight to current; one of us runs it
            with self._lock:
                if not flight.started:
                    flight.started = lead = True
        if not lead:
            flight.done.wait()
        else:
            try:
                flight.value = self._fetch(key)
            except BaseException as exc:  # noqa: B036 - handed to every caller of this flight, re-raised there
                flight.error = exc
            finally:
                with self._lock:
                    if self._current.get(key) is flight:
                        del self._current[key]
                        promoted = self._next.pop(key, None)
                        if promoted is not None:
                            self._current[key] = promoted
                flight.done.set()
        if flight.error is not None:
            raise flight.error
        return flight.value  # type: ignore[return-value]


class AsyncFreshLookup(Generic[V]):
    """:class:`FreshLookup` for callers on one asyncio event loop: the same rule, no thread per waiter.

    Waiters are futures on the loop; only the look-up itself runs in ``executor`` (it blocks on the
    registry). A look-up in flight answers the callers that arrived before it was sent; callers that arrive
    while it is in flight share the next one, sent when it ends. Not thread-safe: call from the loop only.
    """

    def __init__(self, fetch: Callable[[Any], V], executor: Executor) -> None:
        self._fetch = fetch
        self._executor = executor
        self._current: dict[Any, asyncio.Future[V]] = {}
        self._next: dict[Any, asyncio.Future[V]] = {}

    async def get(self, key: Any) -> V:
        import asyncio

        loop = asyncio.get_running_loop()
        if key in self._current:
            flight = self._next.get(key)
            if flight is None:
                flight = self._next[key] = loop.create_future()
        else:
            flight = self._start(loop, key, loop.create_future())
        # A cancelled caller (deadline) must not cancel the look-up the other callers share.
        return await asyncio.shield(flight)

    def _start(self, loop: asyncio.AbstractEventLoop, key: Any, flight: asyncio.Future[V]) -> asyncio.Future[V]:
        self._current[key] = flight
        try:
            sent = loop.run_in_executor(self._executor, self._fetch, key)
        except RuntimeError:  # the executor was shut down: the service is closing
            del self._current[key]
            flight.set_exception(TransportError("registry look-up cancelled: the webhook is shutting down"))
            return flight
        sent.add_done_callback(lambda result: self._landed(loop, key, flight, result))
        return flight

    def _landed(self, loop: asyncio.AbstractEventLoop, key: Any, flight: asyncio.Future[V],
                result: asyncio.Future[V]) -> None:
        del self._current[key]
        promoted = self._next.pop(key, None)
        if promoted is not None:
            self._start(loop, key, promoted)
        if result.cancelled():  # the executor was shut down: the service is closing
            flight.set_exception(TransportError("registry look-up cancelled: the webhook is shutting down"))
        elif (exc := result.exception()) is not None:
            flight.set_exception(exc)
        else:
            flight.set_result(result.result())
