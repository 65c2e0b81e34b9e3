"""AdmissionReview parsing, per-mode decisions, the deadline, the decision cache and fresh tag look-ups."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airgap.admission.cache import AsyncFreshLookup, DecisionCache, FreshLookup
from airgap.admission.decide import ImageVerdict, check_images, check_images_async, decide, decide_request, malformed
from airgap.admission.review import AdmissionRequest, ReviewError, uid_hint
from airgap.errors import TransportError

SPEC = {"initContainers": [{"name": "init", "image": "reg/init:1"}],
        "containers": [{"name": "app", "image": "reg/app:1"}, {"name": "side", "image": "reg/app:1"}],
        "ephemeralContainers": [{"name": "dbg", "image": "reg/debug:1"}]}
TEMPLATE = {"spec": {"template": {"spec": SPEC}}}
OBJECTS = {
    "Pod": {"spec": SPEC},
    "ReplicationController": TEMPLATE,
    "Deployment": TEMPLATE,
    "ReplicaSet": TEMPLATE,
    "StatefulSet": TEMPLATE,
    "DaemonSet": TEMPLATE,
    "Job": TEMPLATE,
    "CronJob": {"spec": {"jobTemplate": {"spec": {"template": {"spec": SPEC}}}}},
}
GROUPS = {"Pod": "", "ReplicationController": "", "Deployment": "apps", "ReplicaSet": "apps", "StatefulSet": "apps",
          "DaemonSet": "apps", "Job": "batch", "CronJob": "batch", "EphemeralContainers": "", "Scale": "autoscaling"}


def review(kind: str = "Pod", obj: Any = None, *, group: str | None = None, version: str = "v1",
           **request: Any) -> dict[str, Any]:
    gvk = {"group": GROUPS.get(kind, "") if group is None else group, "version": version, "kind": kind}
    req = {"uid": "u1", "kind": gvk, "operation": "CREATE", "namespace": "ns", "name": "n",
           "object": OBJECTS.get(kind) if obj is None else obj, **request}
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
    (json.dumps(review(uid="u" * 200)).encode(), "not a Kubernetes uid"),
    (json.dumps({**review(), "request": {**review()["request"], "kind": {"x": 1}}}).encode(), "kind is missing"),
    (json.dumps(review(obj="x")).encode(), "carries no object"),
    (json.dumps(review("Deployment", {"spec": {}})).encode(), "no pod spec at spec.template.spec"),
    (json.dumps(review(obj={"spec": {"containers": {"a": 1}}})).encode(), "containers is not a list"),
    (json.dumps(review(obj={"spec": {"containers": [{"name": "a", "image": " "}]}})).encode(), "'a' has no image"),
])
def test_malformed_reviews_are_errors(doc: bytes, message: str) -> None:
    with pytest.raises(ReviewError, match=message):
        AdmissionRequest.from_bytes(doc)


# ---- guarantee 12: what the webhook does not understand is denied, never allowed -------------------------

@pytest.mark.parametrize(("doc", "message"), [
    # kinds outside the table, even with a pod spec where a workload keeps one
    (review("ConfigMap", {"data": {}}), "v1 ConfigMap is not a kind the webhook can verify"),
    (review("Rollout", TEMPLATE, group="argoproj.io", version="v1alpha1"),
     "argoproj.io/v1alpha1 Rollout is not a kind"),
    (review("PodTemplate", {"template": {"spec": SPEC}}), "v1 PodTemplate is not a kind"),
    (review("Deployment", group="extensions", version="v1beta1"), "extensions/v1beta1 Deployment is not a kind"),
    (review("Deployment", group="apps", version="v1beta2"), "apps/v1beta2 Deployment is not a kind"),
    (review("Deployment", group="example.com"), "example.com/v1 Deployment is not a kind"),
    (review("Pod", group="apps"), "apps/v1 Pod is not a kind"),
    (review("Binding", {"target": {"name": "node"}}, subResource="binding"), "v1 Binding is not a kind"),
    (review("Pod\n", {"spec": SPEC}), "v1 Pod? is not a kind"),  # never echoed raw
    # objects missing or of the wrong shape
    (review(obj=None) | {"request": {**review()["request"], "object": None}}, "Pod CREATE carries no object"),
    (review(obj=[SPEC]), "carries no object"),
    (review(obj={"kind": "Deployment", **TEMPLATE}), "the object is a 'Deployment', the request says Pod"),
    (review(obj={"spec": {"initContainers": [{"name": "i", "image": "reg/i:1"}]}}), "the pod spec has no containers"),
    (review(obj={"spec": {"containers": []}}), "the pod spec has no containers"),
    (review(obj={"spec": {"containers": [{"name": "a"}]}}), "containers[0] 'a' has no image"),
    (review(obj={"spec": {"containers": [{"name": "a", "image": 7}]}}), "has no image"),
    (review(obj={"spec": {"containers": ["reg/app:1"]}}), "containers[0] '' has no image"),
    (review(obj={"spec": SPEC | {"ephemeralContainers": {"dbg": "x"}}}), "ephemeralContainers is not a list"),
    (review("EphemeralContainers", {"ephemeralContainers": None}), "the object has no ephemeralContainers"),
    (review("EphemeralContainers", {"ephemeralContainers": "x"}), "ephemeralContainers is not a list"),
    (review(operation="PATCH"), "operation 'PATCH' is not an admission operation"),
    (review(operation=None), "operation is missing"),
])
def test_what_is_not_understood_is_an_error(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ReviewError, match=re.escape(message)) as info:
        AdmissionRequest.from_json(doc)
    assert info.value.uid == "u1"  # echoed, so the API server shows this reason


@pytest.mark.parametrize("kind", ["ConfigMap", "Pod", "Rollout", "Secret"])
def test_delete_and_connect_start_nothing_whatever_the_kind(kind: str) -> None:
    for op in ("DELETE", "CONNECT"):
        req = AdmissionRequest.from_json(review(kind, "ignored", group="anything", operation=op))
        assert req.images == () and req.operation == op


def test_legacy_ephemeral_containers_and_scale() -> None:
    legacy = AdmissionRequest.from_json(review("EphemeralContainers", {
        "kind": "EphemeralContainers", "metadata": {"name": "web"},
        "ephemeralContainers": [{"name": "dbg", "image": "reg/debug:1"}]}, name="", subResource="ephemeralcontainers"))
    assert legacy.unique_images == ["reg/debug:1"] and legacy.name == "web"
    # pods/ephemeralcontainers since 1.22 sends the whole Pod: every image is checked
    modern = AdmissionRequest.from_json(review(obj={"kind": "Pod", "spec": SPEC}, operation="UPDATE",
                                               subResource="ephemeralcontainers"))
    assert modern.unique_images == ["reg/init:1", "reg/app:1", "reg/debug:1"]
    scale = AdmissionRequest.from_json(review("Scale", {"kind": "Scale", "spec": {"replicas": 3}}, operation="UPDATE",
                                              subResource="scale"))
    assert scale.images == () and scale.kind == "Scale"


def test_dry_run_is_decided_like_the_real_request() -> None:
    real = AdmissionRequest.from_json(review())
    dry = AdmissionRequest.from_json(review(dryRun=True))
    assert dry.dry_run and not real.dry_run and dry.images == real.images
    vs = verdicts(**{"reg/init:1": "allow", "reg/app:1": "deny", "reg/debug:1": "allow"})
    assert decide(dry, vs, "enforce").review()["response"] == decide(real, vs, "enforce").review()["response"]


def test_untrusted_names_are_printable_and_short() -> None:
    req = AdmissionRequest.from_json(review(name="a\x1b[31m" + "n" * 1000, namespace="ns\n"))
    assert len(req.name) == 253 and req.name.startswith("a?[31m") and req.namespace == "ns?"


# ---- guarantee 7: depth bombs and junk are denied in bounded time, with the uid when it can be found ------

def nested(depth: int, leaf: bytes = b"1") -> bytes:
    return b"[" * depth + leaf + b"]" * depth


@pytest.mark.parametrize("where", ["annotation", "pod spec", "request"])
def test_depth_bombs_are_denied_quickly_with_the_uid(where: str) -> None:
    bomb = nested(100_000).decode()
    doc = json.dumps(review(obj={"metadata": {"annotations": {"a": "__BOMB__"}}, "spec": SPEC}))
    if where == "pod spec":
        doc = json.dumps(review(obj={"spec": {**SPEC, "containers": [{"name": "a", "image": "r/a:1",
                                                                        "env": "__BOMB__"}]}}))
    elif where == "request":
        doc = json.dumps(review(options="__BOMB__"))
    body = doc.replace('"__BOMB__"', bomb).encode()
    start = time.monotonic()
    with pytest.raises(ReviewError, match="nested deeper than") as info:
        AdmissionRequest.from_bytes(body)
    assert time.monotonic() - start < 1.0
    assert info.value.uid == "u1"


def test_uid_hint_reads_only_the_start_and_only_uids() -> None:
    assert uid_hint(json.dumps(review()).encode()[:300]) == "u1"
    assert uid_hint(b'{"request": {"uid": "123e4567-e89b-12d3-a456-426614174000", ' + nested(50_000)) == \
        "123e4567-e89b-12d3-a456-426614174000"
    assert uid_hint(b" " * 5000 + b'{"request": {"uid": "late"}}') == ""  # not within the first bytes
    assert uid_hint(b'{"request": {"uid": "bad uid\\n"}}') == "" and uid_hint(None) == "" and uid_hint(b"") == ""


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
    enforce = malformed("u", "bad", "enforce").review()["response"]
    assert enforce == {"uid": "u", "allowed": False,
                       "status": {"code": 400, "message": "airgap: bad", "reason": "Forbidden"}}
    assert malformed("", "bad", "warn").review()["response"] == {
        "uid": "", "allowed": True, "warnings": ["airgap (warn mode) would deny: bad"]}
    assert malformed("u", "bad", "audit").review()["response"] == {
        "uid": "u", "allowed": True, "auditAnnotations": {"decision": "deny", "error": "bad"}}
    assert len(malformed("u", "x" * 100_000, "enforce").message) <= 4096


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
