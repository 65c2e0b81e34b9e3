"""Deadlines (airgap/oci/deadline.py): durations as cosign spells them, nesting, and threads that inherit them;
and the redirect host list (--allow-redirect) as the transport compares it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from airgap.errors import ConfigError, TransportError
from airgap.oci import deadline
from airgap.oci.transport import endpoint, redirect_hosts


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("3m", 180.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("500ms", 0.5), ("90", 90.0), ("0.25", 0.25),
    ("2m30s", 150.0), (" 10s ", 10.0),
])
def test_durations_as_cosign_takes_them(text: str, seconds: float) -> None:
    assert deadline.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5s", "0", "0s", "3 m", "m", "inf", "nan"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        deadline.parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [(30, "30s"), (180, "3m"), (90, "1m30s"), (0.5, "0.5s"),
                                               (3600, "1h"), (2.5, "2.5s")])
def test_durations_print_as_cosign_prints_them(seconds: float, text: str) -> None:
    assert deadline.format_duration(seconds) == text


def test_no_deadline_by_default_and_nested_deadlines_keep_the_earlier() -> None:
    assert deadline.current() is None
    with deadline.deadline(10) as outer:
        assert outer is not None and 9 < outer.remaining() <= 10
        with deadline.deadline(100) as inner:
            assert inner is outer  # a later deadline does not extend an earlier one
        with deadline.deadline(1) as inner:
            assert inner is not None and inner.remaining() <= 1
        with deadline.deadline(None) as same:
            assert same is outer
        assert deadline.current() is outer
    assert deadline.current() is None


def test_exceeded_names_the_budget_and_the_operation() -> None:
    with deadline.deadline(0.01) as limit:
        assert limit is not None
        time.sleep(0.02)
        with pytest.raises(deadline.DeadlineExceeded, match=r"^deadline of 0\.01s exceeded while GET h:1/v2/$"):
            limit.check("GET h:1/v2/")
    assert issubclass(deadline.DeadlineExceeded, TransportError)


def test_carry_hands_the_deadline_to_pool_threads() -> None:
    def seen(_: int) -> float | None:
        limit = deadline.current()
        return limit.at if limit is not None else None

    with ThreadPoolExecutor(4) as pool, deadline.deadline(30) as limit:
        assert limit is not None
        assert set(pool.map(seen, range(8))) == {None}  # a plain pool thread knows nothing of it
        assert set(pool.map(deadline.carry(seen), range(8))) == {limit.at}  # one wrapper, many threads


def test_endpoints_are_compared_normalised() -> None:
    assert endpoint("https://Registry.Example/v2/") == ("https", "registry.example", 443)
    assert endpoint("http://registry.example/v2/") == ("http", "registry.example", 80)
    assert endpoint("http://[::1]:5000/x") == ("http", "::1", 5000)
    with pytest.raises(TransportError, match="unsupported URL"):
        endpoint("ftp://registry.example/")


def test_allowed_redirect_hosts() -> None:
    assert redirect_hosts(["Storage.Example", "cdn.example:8443", "[::1]:9000"]) == {
        "storage.example:80", "storage.example:443", "cdn.example:8443", "[::1]:9000"}
    for bad in ["", "https://storage.example", "storage.example/path", "user@host", "host:notaport", "host:0"]:
        with pytest.raises(ConfigError, match="--allow-redirect"):
            redirect_hosts([bad])
