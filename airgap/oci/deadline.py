"""Deadlines: one overall time limit for a whole network operation, not only for each read.

A per-read timeout does not bound an operation: a registry that drips one byte a second, or answers each of a
hundred requests just before the timeout, keeps a client busy for ever. So an operation (a command, one
``verify_image``, one admission review's registry calls) runs under a :class:`Deadline` held in a context
variable; :mod:`airgap.oci.transport` consults it before every connect, send and receive (the socket timeout is
the smaller of the per-operation timeout and the time left), and the retry loops of
:mod:`airgap.oci.session` never sleep past it. When it passes, :class:`DeadlineExceeded` names the host and the
request that was under way, and nothing retries it.

Context variables do not follow work into a thread pool on their own: hand pools ``carry(fn)`` instead of
``fn``. Nested deadlines keep the earlier one.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from airgap.errors import TransportError

__all__ = ["Deadline", "DeadlineExceeded", "carry", "current", "deadline", "format_duration", "parse_duration"]

R = TypeVar("R")


class DeadlineExceeded(TransportError):
    """The operation's overall deadline passed. Final: never retried."""


class Deadline:
    """An instant (``time.monotonic()``) by which the operation must be done, and its budget in seconds."""

    __slots__ = ("at", "seconds")  # a plain class: this module loads on every command's start-up path

    def __init__(self, at: float, seconds: float) -> None:
        self.at = at
        self.seconds = seconds  # as given, for messages

    def __repr__(self) -> str:
        return f"Deadline(in {self.remaining():.3f}s of {format_duration(self.seconds)})"

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def exceeded(self, what: str) -> DeadlineExceeded:
        return DeadlineExceeded(f"deadline of {format_duration(self.seconds)} exceeded while {what}")

    def check(self, what: str) -> float:
        """The seconds left; raises :class:`DeadlineExceeded` (naming ``what``) when none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise self.exceeded(what)
        return left


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("airgap_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the operation running in this context, if any."""
    return _CURRENT.get()


@contextmanager
def deadline(seconds: float | None) -> Iterator[Deadline | None]:
    """Run the block under a deadline ``seconds`` from now; None adds no limit. An enclosing deadline that
    ends earlier stays in force."""
    outer = _CURRENT.get()
    if seconds is None:
        yield outer
        return
    new = Deadline(time.monotonic() + seconds, seconds)
    if outer is not None and outer.at <= new.at:
        new = outer
    token = _CURRENT.set(new)
    try:
        yield new
    finally:
        _CURRENT.reset(token)


def carry(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn`` bound to the caller's context (its deadline included), to hand to a thread pool; each call runs
    in its own copy, so one wrapped function may run in many threads at once."""
    context = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return run


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"  # compiled on first use (re's cache)


def parse_duration(text: str) -> float:
    """Seconds from a Go duration as cosign's ``--timeout`` takes it (``30s``, ``3m``, ``1h30m``, ``1.5s``,
    ``500ms``) or a bare number of seconds (``90``). Raises ValueError on anything else, or on zero."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        while pos < len(value):
            match = re.compile(_PART).match(value, pos)
            if match is None:
                raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 3m, 1h30m or seconds)") from None
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if not value:
            raise ValueError("empty duration") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """``30`` -> ``30s``, ``180`` -> ``3m``, ``90`` -> ``1m30s``, ``0.5`` -> ``0.5s`` (as cosign prints them)."""
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
