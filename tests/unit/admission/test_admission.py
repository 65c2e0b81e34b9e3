"""AdmissionReview parsing, per-mode decisions, the deadline, the decision cache and fresh tag look-ups."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airgap.admission.cache import AsyncFreshLookup, DecisionCache, FreshLookup
from airgap.admission.decide import ImageVerdict, check_images, check_images_async, decide, decide_request, malformed
from airgap.admission.review import AdmissionRequest, ReviewError
from airgap.errors import TransportError

SPEC = {"initContainers": [{"name": "init", "image": "reg/init:1"}],
        "containers": [{"name": "app", "image": "reg/app:1"}, {"name": "side", "image": "reg/app:1"}],
        "ephemeralContainers": [{"name": "dbg", "image": "reg/debug:1"}]}
OBJECTS = {
    "Pod": {"spec": SPEC},
    "Deployment": {"spec": {"template": {"spec": SPEC}}},
    "ReplicaSet": {"spec": {"template": {"spec": SPEC}}},
    "StatefulSet": {"spec": {"template": {"spec": SPEC}}},
    "DaemonSet": {"spec": {"template": {"spec": SPEC}}},
    "Job": {"spec": {"template": {"spec": SPEC}}},
    "CronJob": {"spec": {"jobTemplate": {"spec": {"template": {"spec": SPEC}}}}},
}


def review(kind: str = "Pod", obj: Any = None, **request: Any) -> dict[str, Any]:
    req = {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": kind}, "operation": "CREATE",
           "namespace": "ns", "name": "n", "object": OBJECTS.get(kind) if obj is None else obj, **request}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_images_of_every_workload_kind(kind: str) -> None:
    req = AdmissionRequest.from_bytes(json.dumps(review(kind)).encode())
    assert (req.uid, req.kind, req.namespace, req.name) == ("u1", kind, "ns", "n")
    assert [(c.field, c.name) for c in req.images] == [("initContainers", "init"), ("containers", "app"),
                                                       ("containers", "side"), ("ephemeralContainers", "dbg")]
    assert req.unique_images == ["reg/init:1", "reg/app:1", "reg/debug:1"]


@pytest.mark.parametrize(("doc", "message"), [
    (b"{", "not JSON"),
    (b"[]", "not an AdmissionReview"),
    (json.dumps({**review(), "apiVersion": "admission.k8s.io/v1beta1"}).encode(), "not supported"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "has no request"),
    (json.dumps(review(uid="")).encode(), "has no uid"),
    (json.dumps({**review(), "request": {**review()["request"], "kind": {"x": 1}}}).encode(), "kind is missing"),
    (json.dumps(review(obj="x")).encode(), "carries no object"),
    (json.dumps(review("Deployment", {"spec": {}})).encode(), "no pod spec at spec.template.spec"),
    (json.dumps(review(obj={"spec": {"containers": {"a": 1}}})).encode(), "containers is not a list"),
    (json.dumps(review(obj={"spec": {"containers": [{"name": "a", "image": " "}]}})).encode(), "'a' has no image"),
])
def test_malformed_reviews_are_errors(doc: bytes, message: str) -> None:
    with pytest.raises(ReviewError, match=message):
        AdmissionRequest.from_bytes(doc)


def test_delete_connect_and_other_kinds_have_no_images() -> None:
    for op in ("DELETE", "CONNECT"):
        assert AdmissionRequest.from_json(review(operation=op, obj="ignored")).images == ()
    assert AdmissionRequest.from_json(review("ConfigMap", {"data": {}})).images == ()


def verdicts(**decisions: str) -> list[ImageVerdict]:
    return [ImageVerdict(img, d, reasons=(f"{img} is bad",) if d == "deny" else (),
                         warnings=(f"{img} is meh",) if d != "deny" else ()) for img, d in decisions.items()]


def test_modes() -> None:
    req = AdmissionRequest.from_json(review())
    vs = verdicts(a="allow", b="warn", c="deny")
    enforce = decide(req, vs, "enforce")
    assert not enforce.allowed and enforce.code == 403 and enforce.outcome == "deny"
    assert "1 of 3 image(s)" in enforce.message and "c: c is bad" in enforce.message
    assert enforce.warnings == ["airgap: b: b is meh"]  # policy-level warn passes through; allow's notes do not
    review_doc = enforce.review()["response"]
    assert review_doc["uid"] == "u1" and review_doc["status"]["code"] == 403
    warn = decide(req, vs, "warn")
    assert warn.allowed and warn.warnings[-1] == "airgap (warn mode) would deny c: c is bad"
    audit = decide(req, vs, "audit")
    assert audit.allowed and audit.audit_annotations == {"decision": "deny", "denied-images": "c: c is bad"}
    ok = decide(req, verdicts(a="allow"), "audit")
    assert ok.allowed and ok.review()["response"] == {"uid": "u1", "allowed": True,
                                                      "auditAnnotations": {"decision": "allow"}}
    assert decide(req, [], "enforce").allowed


def test_long_warnings_are_shortened() -> None:
    req = AdmissionRequest.from_json(review())
    long = [ImageVerdict("x", "deny", reasons=("y" * 1000,))]
    assert all(len(w) <= 240 for w in decide(req, long, "warn").warnings)


def test_malformed_answers_per_mode() -> None:
    assert not malformed("", "bad", "enforce").allowed
    assert malformed("", "bad", "warn").warnings == ["airgap (warn mode) would deny: bad"]
    assert malformed("u", "bad", "audit").review()["response"]["auditAnnotations"]["error"] == "bad"


def test_deadline_and_crashes_deny_without_waiting() -> None:
    release = threading.Event()

    def check(image: str) -> ImageVerdict:
        if image == "slow":
            release.wait(5)
        if image == "boom":
            raise RuntimeError("kaput")
        return ImageVerdict(image, "allow")

    with ThreadPoolExecutor(4) as pool:
        start = time.monotonic()
        out = check_images(["fast", "slow", "boom"], check, executor=pool, deadline=0.2)
        assert time.monotonic() - start < 1.0
        release.set()
    assert [v.decision for v in out] == ["allow", "deny", "deny"]
    assert "0.2s deadline" in out[1].why and out[1].error
    assert "RuntimeError: kaput" in out[2].why
    with ThreadPoolExecutor(2) as pool:
        d = decide_request(AdmissionRequest.from_json(review()), lambda i: ImageVerdict(i, "allow"), "enforce",
                           executor=pool, deadline=1)
    assert d.allowed and [v.image for v in d.verdicts] == ["reg/init:1", "reg/app:1", "reg/debug:1"]


def test_cache_ttl_and_size_bound() -> None:
    now = [0.0]
    cache: DecisionCache[str] = DecisionCache(ttl=10, max_entries=2, clock=lambda: now[0])
    k1, k2, k3 = (DecisionCache.key(f"r{i}", f"sha256:{i}", "p", "t") for i in range(3))
    cache.put(k1, "a")
    cache.put(k2, "b")
    assert cache.get(k1) == "a"  # k1 is now most recent
    cache.put(k3, "c")
    assert cache.get(k2) is None and cache.get(k1) == "a" and cache.evictions == 1
    now[0] = 10.0
    assert cache.get(k1) is None and len(cache) == 1
    assert cache.get(DecisionCache.key("r3", "sha256:3", "p", "other-trust")) is None
    off: DecisionCache[str] = DecisionCache(ttl=0)
    off.put(k1, "a")
    assert off.get(k1) is None


def test_fresh_lookup_coalesces_but_never_answers_stale() -> None:
    calls: list[int] = []
    gate = threading.Event()
    value = ["old"]

    def fetch(key: str) -> str:
        calls.append(1)
        seen = value[0]
        if len(calls) == 1:
            gate.wait(5)
        return seen

    lookup: FreshLookup[str] = FreshLookup(fetch)
    results: dict[int, str] = {}
    first = threading.Thread(target=lambda: results.__setitem__(0, lookup.get("tag")))
    first.start()
    while not calls:
        time.sleep(0.001)
    value[0] = "new"  # the tag moves while the first look-up is in flight
    later = [threading.Thread(target=lambda i=i: results.__setitem__(i, lookup.get("tag"))) for i in range(1, 6)]
    for t in later:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in [first, *later]:
        t.join(5)
    assert results[0] == "old"
    assert all(results[i] == "new" for i in range(1, 6)), results  # arrived after the move: never the old one
    assert len(calls) == 2  # five callers shared one fresh look-up


def test_fresh_lookup_passes_errors_to_callers() -> None:
    def fetch(key: str) -> str:
        raise KeyError(key)

    with pytest.raises(KeyError):
        FreshLookup(fetch).get("x")


def test_async_fresh_lookup_coalesces_but_never_answers_stale() -> None:
    calls: list[str] = []
    gate = threading.Event()
    value = ["old"]

    def fetch(key: str) -> str:
        seen = value[0]
        calls.append(seen)
        if len(calls) == 1:
            gate.wait(5)
        return seen

    async def scenario() -> list[str]:
        with ThreadPoolExecutor(4) as pool:
            lookup: AsyncFreshLookup[str] = AsyncFreshLookup(fetch, pool)
            first = asyncio.ensure_future(lookup.get("tag"))
            while not calls:
                await asyncio.sleep(0.001)
            value[0] = "new"  # the tag moves while the first look-up is in flight
            later = [asyncio.ensure_future(lookup.get("tag")) for _ in range(5)]
            impatient = asyncio.ensure_future(lookup.get("tag"))
            await asyncio.sleep(0.02)
            impatient.cancel()  # a caller past its deadline does not cancel the look-up the others share
            gate.set()
            return list(await asyncio.gather(first, *later))

    results = asyncio.run(scenario())
    assert results == ["old"] + ["new"] * 5  # arrived after the move: never the old one
    assert calls == ["old", "new"]  # the five later callers shared one fresh look-up


def test_async_fresh_lookup_passes_errors_and_shutdown_to_callers() -> None:
    def fetch(key: str) -> str:
        raise KeyError(key)

    async def scenario(pool: ThreadPoolExecutor) -> str:
        return await AsyncFreshLookup(fetch, pool).get("x")

    with ThreadPoolExecutor(1) as pool, pytest.raises(KeyError):
        asyncio.run(scenario(pool))
    with pytest.raises(TransportError, match="shutting down"):
        asyncio.run(scenario(pool))  # the pool is shut down


def test_async_deadline_and_crashes_deny_without_waiting() -> None:
    async def check(image: str) -> ImageVerdict:
        if image == "slow":
            await asyncio.sleep(5)
        if image == "boom":
            raise RuntimeError("kaput")
        return ImageVerdict(image, "allow")

    start = time.monotonic()
    out = asyncio.run(check_images_async(["fast", "slow", "boom"], check, deadline=0.2))
    assert time.monotonic() - start < 1.0
    assert [v.decision for v in out] == ["allow", "deny", "deny"]
    assert "0.2s deadline" in out[1].why and out[1].error
    assert "RuntimeError: kaput" in out[2].why
