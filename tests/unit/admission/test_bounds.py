"""The webhook's resource bounds: the connection guard and the CLI's defaults."""

from __future__ import annotations

import asyncio
import dataclasses

from airgap.admission.guard import ACTIVE, IDLE, READING, WAITING, Guard
from airgap.admission.service import WebhookConfig

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
