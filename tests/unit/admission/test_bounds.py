"""The webhook's resource bounds: verification slots, the per-image budget, the connection guard, the
CLI's defaults and the memory arithmetic behind the Deployment's limit."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest

from airgap.admission.budget import Budget, Slots
from airgap.admission.guard import ACTIVE, IDLE, READING, WAITING, Guard
from airgap.admission.manifests import MEMORY_LIMIT, memory_budget
from airgap.admission.service import WebhookConfig
from airgap.errors import IntegrityError, TransportError

MiB = 1024 * 1024

# ---- slots --------------------------------------------------------------------------------------------


def test_slots_are_first_come_first_served_and_time_out() -> None:
    async def scenario() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        assert await slots.acquire(0)

        async def wait(name: str, timeout: float) -> None:
            if await slots.acquire(timeout):
                order.append(name)
                await asyncio.sleep(0.01)
                slots.release()
            else:
                order.append(f"{name} gave up")

        tasks = [asyncio.ensure_future(wait(n, 1.0)) for n in ("a", "b")]
        tasks.append(asyncio.ensure_future(wait("late", 0.01)))
        await asyncio.sleep(0.05)
        assert slots.in_use == 1 and slots.queued == 2
        slots.release()  # handed straight to "a", then "a" hands to "b"
        await asyncio.gather(*tasks)
        assert slots.in_use == 0 and slots.queued == 0
        return order

    assert asyncio.run(scenario()) == ["late gave up", "a", "b"]


def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    async def scenario() -> None:
        slots = Slots(1)
        assert await slots.acquire(0)
        first = asyncio.ensure_future(slots.acquire(5))
        second = asyncio.ensure_future(slots.acquire(5))
        await asyncio.sleep(0.01)
        slots.release()  # granted to first ...
        first.cancel()  # ... which is cancelled (its review hit the deadline) before it runs
        assert await second is True
        assert slots.in_use == 1
        slots.release()
        assert slots.in_use == 0

    asyncio.run(scenario())


def test_slots_released_from_threads_wake_the_loop_and_threads() -> None:
    slots = Slots(2)
    assert slots.acquire_blocking(0) and slots.acquire_blocking(0)
    assert not slots.acquire_blocking(0.01)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(slots.acquire_blocking(5)))
    waiter.start()

    async def on_loop() -> bool:
        pending = asyncio.ensure_future(slots.acquire(5))
        await asyncio.sleep(0.02)
        threading.Timer(0.01, slots.release).start()  # released by a worker thread
        threading.Timer(0.05, slots.release).start()
        return await pending

    assert asyncio.run(on_loop()) is True
    waiter.join(5)
    assert got == [True] and slots.in_use == 2


# ---- per-image budget ----------------------------------------------------------------------------------


def test_budget_counts_bytes_layers_and_time() -> None:
    budget = Budget(max_bytes=10 * MiB, max_layers=3, deadline=time.monotonic() + 60)
    budget.reserve_blob(4 * MiB)
    budget.reserve_blob(4 * MiB)
    with pytest.raises(IntegrityError, match="per-image limit of 10 MiB"):
        budget.reserve_blob(4 * MiB)  # refused before it is read
    layers = Budget(max_bytes=10 * MiB, max_layers=3, deadline=time.monotonic() + 60)
    for _ in range(3):
        layers.reserve_blob(10)
    with pytest.raises(IntegrityError, match="more than 3 signature layers"):
        layers.reserve_blob(10)
    spent = Budget(max_bytes=MiB, max_layers=3, deadline=time.monotonic() + 60)
    with pytest.raises(IntegrityError, match="manifests and signatures over"):
        spent.spend(2 * MiB)
    late = Budget(max_bytes=MiB, max_layers=3, deadline=time.monotonic() - 1)
    with pytest.raises(TransportError, match="stopped at the webhook's deadline"):
        late.reserve_blob(1)


# ---- connection guard -----------------------------------------------------------------------------------


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.aborted = False

    def abort_connection(self) -> None:
        self.aborted = True

    def __repr__(self) -> str:
        return self.name


def guard(now: list[float], **kwargs: float) -> Guard:
    settings = {"header_timeout": 10.0, "body_timeout": 10.0, "keepalive_timeout": 75.0, "max_connections": 4,
                "max_buffered_bytes": 100, **kwargs}
    return Guard(clock=lambda: now[0], **settings)  # type: ignore[arg-type]


def test_over_the_limit_the_slowest_is_shed_then_the_idlest_never_the_active() -> None:
    async def scenario() -> None:
        now = [0.0]
        g = guard(now)
        idle, reading, waiting, active = (Conn(n) for n in ("idle", "reading", "waiting", "active"))
        for conn in (idle, reading, waiting, active):
            assert g.opened(conn)
            now[0] += 1
        g.move(idle, IDLE)
        now[0] += 1
        g.move(reading, READING)  # reading since 5: slow for less long than waiting (since 2)
        g.move(active, ACTIVE)
        assert g.counts() == {WAITING: 1, READING: 1, ACTIVE: 1, IDLE: 1}
        newcomers = []
        for expected in (waiting, reading, idle):
            now[0] += 1
            newcomer = Conn(f"new{len(newcomers)}")
            assert g.opened(newcomer)
            assert expected.aborted, expected
            g.move(newcomer, ACTIVE)  # the newcomer is answered: it is not slow
            newcomers.append(newcomer)
        assert not active.aborted and g.counters["shed"] == 3 and len(g) == 4
        assert not g.opened(Conn("refused")) and g.counters["refused"] == 1  # all four are answering
        g.close()

    asyncio.run(scenario())


def test_timeouts_by_phase() -> None:
    async def scenario() -> None:
        now = [0.0]
        g = guard(now, max_connections=100)
        waiting, reading, idle, active = (Conn(n) for n in ("waiting", "reading", "idle", "active"))
        for conn in (waiting, reading, idle, active):
            g.opened(conn)
        g.move(reading, READING)
        g.move(idle, IDLE)
        g.move(active, ACTIVE)
        now[0] = 10.5
        g._expire()
        assert waiting.aborted and not reading.aborted  # the app answers 408 first; the guard is a backstop
        now[0] = 11.5
        g._expire()
        assert reading.aborted and not idle.aborted
        now[0] = 1000
        g._expire()
        assert idle.aborted and not active.aborted
        assert {k: v for k, v in g.counters.items() if v} == {"header_timeouts": 1, "body_timeouts": 1,
                                                               "idle_timeouts": 1}
        g.close()

    asyncio.run(scenario())


def test_buffered_bodies_are_capped_by_dropping_the_oldest() -> None:
    async def scenario() -> None:
        now = [0.0]
        g = guard(now, max_connections=100, max_buffered_bytes=100)
        first, second, answering = Conn("first"), Conn("second"), Conn("answering")
        for conn in (first, second, answering):
            g.opened(conn)
            g.move(conn, READING)
            now[0] += 1
        g.body(answering, 40)
        g.move(answering, ACTIVE)
        g.body(first, 30)
        g.body(second, 20)
        assert g.buffered == 90 and not first.aborted
        g.body(second, 20)  # 110 > 100: the oldest unfinished body goes
        assert first.aborted and not second.aborted and g.buffered == 80
        g.request_done(answering)
        assert g.buffered == 40 and g.counters["shed_for_memory"] == 1
        g.close()

    asyncio.run(scenario())


# ---- configuration and memory arithmetic -----------------------------------------------------------------


def test_cli_defaults_are_the_config_defaults() -> None:
    from airgap.commands.webhook import LIMITS

    defaults = {f.name: f.default for f in dataclasses.fields(WebhookConfig)}
    defaults["max_body_bytes"] = defaults["max_body"]
    assert LIMITS == {k: defaults[k] for k in LIMITS}


def test_worst_case_memory_fits_the_deployment_limit() -> None:
    limit = int(MEMORY_LIMIT.removesuffix("Mi")) * MiB
    budget = memory_budget()
    assert budget["total"] == sum(v for k, v in budget.items() if k != "total")
    # What is left is the allocator's slack (the Deployment sets MALLOC_ARENA_MAX=2 to keep it small).
    assert budget["total"] + 40 * MiB <= limit, {k: round(v / MiB) for k, v in budget.items()}
    # Every bound counts: doubling the connections or the verification slots needs a larger limit.
    assert memory_budget(WebhookConfig(trust_dir="", max_connections=4096))["total"] > limit
    assert memory_budget(WebhookConfig(trust_dir="", max_verifications=8))["total"] > limit
