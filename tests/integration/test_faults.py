"""Faults between airgap and a real registry, injected by a loopback proxy: wrong bytes are detected and
nothing is tagged; transient errors and resets are retried; permanent errors fail in bounded time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner
from conftest import pusher_for
from support.faultproxy import FaultProxy, count
from support.images import Image
from support.registries import Registry

from airgap.cli import cli


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[Registry], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(reg: Registry) -> FaultProxy:
        proxies.append(FaultProxy(reg.host).start())
        return proxies[-1]

    yield make
    for p in proxies:
        p.stop()


@pytest.fixture
def image(registry: Registry, make_image: Callable[..., Image]) -> Image:
    return make_image(registry, "team/app", "1.0", platforms=("linux/amd64", "linux/arm64"),
                      layer_sizes=(3_000_000,), base_sizes=(2000,))


def biggest_layer(img: Image) -> str:
    return max(img.blobs, key=lambda d: img.blobs[d])


def copy(src: str, dst: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["copy", src, dst], catch_exceptions=False)
    return result.exit_code, result.stderr


def assert_untouched(reg: Registry, repo: str) -> None:
    assert pusher_for(reg).tags(repo) == [], "a tag was written although the copy failed"


@pytest.mark.parametrize("target", ["blob", "child-manifest", "tagged-manifest"])
def test_wrong_bytes_are_detected_and_nothing_is_tagged(
    registry: Registry, registry2: Registry, image: Image, proxy_factory: Callable[[Registry], FaultProxy],
    target: str,
) -> None:
    proxy = proxy_factory(registry)
    match = {
        "blob": f"/blobs/{biggest_layer(image)}",
        "child-manifest": f"/manifests/{image.children['linux/arm64']}",
        "tagged-manifest": "/manifests/1.0",
    }[target]
    proxy.add("corrupt", match, times=None)
    code, err = copy(f"{proxy.host}/team/app:1.0", f"{registry2.host}/dst/app:1.0")
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "does not match" in err or "announced digest" in err
    assert_untouched(registry2, "dst/app")


def test_transient_503s_on_both_sides_are_retried(
    registry: Registry, registry2: Registry, image: Image, proxy_factory: Callable[[Registry], FaultProxy]
) -> None:
    src, dst = proxy_factory(registry), proxy_factory(registry2)
    layer = biggest_layer(image)
    src.add("status", f"/blobs/{layer}", times=2, status=503)
    src.add("status", "/manifests/1.0", times=1, status=502)
    dst.add("status", "/blobs/uploads/", methods=("POST",), times=2, status=503)
    dst.add("status", "/manifests/", methods=("PUT",), times=1, status=500)
    code, err = copy(f"{src.host}/team/app:1.0", f"{dst.host}/dst/app:1.0")
    assert code == 0, err
    assert count(src.log, lambda m, p, s: s == 503 and layer in p) == 2
    assert count(dst.log, lambda m, p, s: m == "POST" and s == 503) == 2
    assert pusher_for(registry2).get_manifest("dst/app", "1.0")[0] == image.manifest


def test_connection_reset_mid_blob_resumes(
    registry: Registry, registry2: Registry, image: Image, proxy_factory: Callable[[Registry], FaultProxy]
) -> None:
    proxy = proxy_factory(registry)
    layer = biggest_layer(image)
    proxy.add("reset", f"/blobs/{layer}", times=2)
    code, err = copy(f"{proxy.host}/team/app:1.0", f"{registry2.host}/dst/app:1.0")
    assert code == 0, err
    gets = [e for e in proxy.log if e[0] == "GET" and layer in e[1]]
    # Two broken reads, then the rest by a Range request from the last whole chunk received.
    assert len(gets) == 3 and gets[-1][2] == 206, gets
    assert pusher_for(registry2).get_manifest("dst/app", "1.0")[0] == image.manifest


def test_retry_after_is_honoured(
    registry: Registry, registry2: Registry, image: Image, proxy_factory: Callable[[Registry], FaultProxy]
) -> None:
    proxy = proxy_factory(registry)
    proxy.add("status", "/manifests/1.0", times=1, status=429, retry_after="1")
    started = time.monotonic()
    code, err = copy(f"{proxy.host}/team/app:1.0", f"{registry2.host}/dst/app:1.0")
    assert code == 0, err
    assert time.monotonic() - started >= 1.0


def test_permanent_500_fails_in_bounded_time(
    registry: Registry, registry2: Registry, image: Image, proxy_factory: Callable[[Registry], FaultProxy]
) -> None:
    proxy = proxy_factory(registry)
    proxy.add("status", f"/blobs/{biggest_layer(image)}", times=None, status=500)
    started = time.monotonic()
    code, err = copy(f"{proxy.host}/team/app:1.0", f"{registry2.host}/dst/app:1.0")
    elapsed = time.monotonic() - started
    assert code == 1 and "answered 500" in err, err
    assert elapsed < 30, f"gave up only after {elapsed:.1f}s"
    assert_untouched(registry2, "dst/app")
