"""The mutating webhook (``POST /mutate``): real HTTPS AdmissionReviews to a served webhook over a real registry.

Each verified tag is pinned to the digest that was verified (``repo:tag@sha256:...``), nothing unverified is ever
written, and a tag resolution is reused only within the tag window: a re-tag inside it pins the previous, verified
digest (never the new content), after it the new content is resolved and verified afresh.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.images import Pusher, push_image
from test_webhook import KINDS, OTHER, RELEASE, Client, Site, admission, make_site, pod_spec, serve, write_trust

from airgap.admission.server import Running
from airgap.keys.public import public_pem
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = make_site(tmp_path_factory.mktemp("pin-site"))
    yield s
    s.reg.stop()


@pytest.fixture(scope="module")
def servers(site: Site) -> Iterator[dict[str, Running]]:
    running = {mode: serve(site, mode) for mode in ("enforce", "warn", "audit")}
    yield running
    for r in running.values():
        r.stop()


@pytest.fixture
def enforce(servers: dict[str, Running], site: Site) -> Client:
    return Client(servers["enforce"], site.tls.ca_pem)


def mutate(client: Client, doc: dict[str, Any] | bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The mutating answer and its decoded JSONPatch ([] when there is none)."""
    status, data = client.call("POST", "/mutate", doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    assert status == 200, data
    resp = json.loads(data)["response"]
    assert resp["allowed"] is True, resp
    if "patch" not in resp:
        assert "patchType" not in resp
        return resp, []
    assert resp["patchType"] == "JSONPatch"
    return resp, json.loads(base64.b64decode(resp["patch"]))


def apply(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply JSONPatch ``replace`` operations to the review's object (what the API server does)."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] == "replace"
        *parents, last = [part for part in op["path"].split("/")[1:]]
        node: Any = out["request"]["object"]
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert last in node, op
        node[last] = op["value"]
    return out


def digest_of(site: Site, ref: str) -> str:
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    desc = RegistryClient().head_manifest(host, repo, tag)
    assert desc is not None
    return desc.digest


# ---- what is pinned, and what never is ---------------------------------------------------------------

def test_verified_tags_are_pinned_and_nothing_else(enforce: Client, site: Site) -> None:
    signed_digest = digest_of(site, site.signed)
    already = f"{site.reg.host}/team/app@{signed_digest}"
    spec = pod_spec([site.signed, site.unsigned, site.wrong, already], init=[site.allowed],
                    ephemeral=[site.unapproved, f"{site.reg.host}/team/missing:1.0"])
    doc = admission("Pod", spec, uid="pin-1")
    resp, ops = mutate(enforce, doc)
    assert resp["uid"] == "pin-1"
    assert ops == [
        {"op": "replace", "path": "/spec/initContainers/0/image",
         "value": f"{site.allowed}@{digest_of(site, site.allowed)}"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": f"{site.signed}@{signed_digest}"},
    ]
    # The validating webhook then sees the pinned images and decides as before on the rest.
    status, verdict = enforce.review(apply(doc, ops))
    assert status == 200 and verdict["allowed"] is False
    message = verdict["status"]["message"]
    assert f"{site.signed}@{signed_digest}:" not in message and site.unsigned in message
    status, verdict = enforce.review(apply(admission("Pod", pod_spec([site.signed, already], init=[site.allowed])),
                                           mutate(enforce, admission("Pod", pod_spec([site.signed, already],
                                                                                     init=[site.allowed])))[1]))
    assert verdict["allowed"] is True


@pytest.mark.parametrize("kind", KINDS)
def test_every_workload_kind_is_pinned_in_its_template(enforce: Client, site: Site, kind: str) -> None:
    doc = admission(kind, pod_spec([site.signed, site.signed], init=[site.unsigned]))
    _, ops = mutate(enforce, doc)
    base = {"Pod": "/spec", "CronJob": "/spec/jobTemplate/spec/template/spec"}.get(kind, "/spec/template/spec")
    pinned = f"{site.signed}@{digest_of(site, site.signed)}"
    assert ops == [{"op": "replace", "path": f"{base}/containers/{i}/image", "value": pinned} for i in (0, 1)]
    patched = apply(doc, ops)
    assert enforce.review(patched)[1]["allowed"] is False  # the unsigned init container is still refused
    fixed = apply(admission(kind, pod_spec([site.signed, site.signed])), ops)
    assert enforce.review(fixed)[1]["allowed"] is True


def test_the_validating_webhook_reuses_the_mutating_webhooks_verification(servers: dict[str, Running],
                                                                          site: Site) -> None:
    running = serve(site, "enforce")
    try:
        client = Client(running, site.tls.ca_pem)
        doc = admission("Pod", pod_spec([site.signed]))
        _, ops = mutate(client, doc)
        misses = running.service.cache.misses
        assert client.review(apply(doc, ops))[1]["allowed"] is True
        assert running.service.cache.misses == misses, "validation verified the pinned digest again"
    finally:
        running.stop()


def test_warn_mode_pins_and_audit_mode_never_patches(servers: dict[str, Running], site: Site) -> None:
    doc = admission("Deployment", pod_spec([site.signed, site.unsigned]))
    _, ops = mutate(Client(servers["warn"], site.tls.ca_pem), doc)
    assert [op["path"] for op in ops] == ["/spec/template/spec/containers/0/image"]
    resp, ops = mutate(Client(servers["audit"], site.tls.ca_pem), doc)
    assert ops == [] and set(resp) == {"uid", "allowed"}


def test_update_pins_only_what_it_changes(enforce: Client, site: Site) -> None:
    old = admission("Deployment", pod_spec([site.signed, site.allowed]))["request"]["object"]
    doc = admission("Deployment", pod_spec([site.signed, site.signed]), operation="UPDATE")
    doc["request"]["oldObject"] = old
    _, ops = mutate(enforce, doc)
    # containers[0] ran site.signed before: left alone (pinning it would roll the Deployment); [1] changed.
    assert [op["path"] for op in ops] == ["/spec/template/spec/containers/1/image"]
    doc["request"]["oldObject"] = "not an object"
    assert len(mutate(enforce, doc)[1]) == 2


@pytest.mark.parametrize("body", [b"{", b"[]", json.dumps(admission("Pod", {}, uid="nocontainers")).encode(),
                                  json.dumps(admission("Pod", pod_spec(["UPPER/Case:1"]), uid="badref")).encode()])
def test_what_the_mutating_webhook_cannot_read_goes_on_unpatched(enforce: Client, body: bytes) -> None:
    # Never a denial from /mutate: the validating webhook refuses these with its reason.
    resp, ops = mutate(enforce, body)
    assert ops == [] and set(resp) == {"uid", "allowed"}
    for uid in ("nocontainers", "badref"):
        if uid.encode() in body:
            assert resp["uid"] == uid
            assert enforce.review(body)[1]["allowed"] is False


def test_delete_and_scale_are_not_patched(enforce: Client) -> None:
    assert mutate(enforce, admission("Pod", {}, operation="DELETE", uid="d"))[0] == {"uid": "d", "allowed": True}


# ---- the tag window: a re-tag inside it pins the previous, verified digest; never unverified content ------

def push(site: Site, repo: str, seed: str, *, signer: Any = None) -> str:
    image = push_image(Pusher(site.reg.url), repo, "1.0", seed=seed)
    if signer is not None:
        sign_image(f"{site.reg.host}/{repo}:1.0", signer, client=RegistryClient())
    return image.digest


def test_retag_inside_and_after_the_window(site: Site) -> None:
    window = 3.0
    running = serve(site, "enforce", tag_reuse_window=window)
    client = Client(running, site.tls.ca_pem)
    ref = f"{site.reg.host}/team/window:1.0"
    try:
        good = push(site, "team/window", "good", signer=RELEASE)
        doc = admission("Pod", pod_spec([ref]))
        started = time.monotonic()  # the window opens after this (the tag's look-up)...
        _, ops = mutate(client, doc)
        looked_up = time.monotonic()  # ...and before this
        assert ops[0]["value"] == f"{ref}@{good}"

        # Inside the window: the tag now names unsigned content. The mutating webhook pins the digest it
        # verified, so the pod runs verified content; the validating webhook admits that digest.
        evil = push(site, "team/window", "evil")
        assert evil != good
        _, ops = mutate(client, doc)
        assert time.monotonic() - started < window, "the machine was too slow to test inside the window"
        assert ops[0]["value"] == f"{ref}@{good}"
        assert client.review(apply(doc, ops))[1]["allowed"] is True
        # The tag itself, unpinned, is resolved afresh by the validating webhook: refused.
        refused = client.review(doc)[1]
        assert refused["allowed"] is False and "no signatures found" in refused["status"]["message"]
        assert running.service.pins.hits >= 1

        # After the window: the unsigned content is resolved, verified, refused, and never pinned.
        time.sleep(max(0.0, looked_up + window - time.monotonic()) + 0.1)
        _, ops = mutate(client, doc)
        assert ops == []
        assert client.review(doc)[1]["allowed"] is False

        # A re-tag to newly signed content is pinned once the window of the refused resolution is over
        # (a refused resolution opens no window: it is looked up again at once).
        better = push(site, "team/window", "better", signer=RELEASE)
        _, ops = mutate(client, doc)
        assert ops[0]["value"] == f"{ref}@{better}"
        assert client.review(apply(doc, ops))[1]["allowed"] is True
    finally:
        running.stop()


def test_a_window_of_zero_resolves_every_time(site: Site) -> None:
    running = serve(site, "enforce", tag_reuse_window=0)
    client = Client(running, site.tls.ca_pem)
    ref = f"{site.reg.host}/team/nowindow:1.0"
    try:
        good = push(site, "team/nowindow", "good", signer=RELEASE)
        doc = admission("Pod", pod_spec([ref]))
        assert mutate(client, doc)[1][0]["value"] == f"{ref}@{good}"
        push(site, "team/nowindow", "evil")
        assert mutate(client, doc)[1] == []
        assert running.service.pins.hits == 0
    finally:
        running.stop()


def test_a_trust_change_inside_the_window_is_honoured(site: Site, tmp_path: Path) -> None:
    trust = write_trust(tmp_path / "trust", site.reg.host)
    running = serve(site, "enforce", trust=trust, tag_reuse_window=30, reload_interval=0.05)
    client = Client(running, site.tls.ca_pem)
    try:
        doc = admission("Pod", pod_spec([site.signed]))
        assert len(mutate(client, doc)[1]) == 1
        before = running.service.metrics.reloads
        (trust / "keys" / "release.pub").write_bytes(public_pem(OTHER.public_key))  # the release key is revoked
        deadline = time.monotonic() + 10
        while running.service.metrics.reloads == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.service.metrics.reloads == before + 1
        # The tag's digest is still in the window, but it no longer verifies: it is not pinned.
        assert mutate(client, doc)[1] == []
    finally:
        running.stop()


def test_metrics_count_pins(enforce: Client, servers: dict[str, Running], site: Site) -> None:
    mutate(enforce, admission("Pod", pod_spec([site.signed])))
    text = enforce.call("GET", "/metrics")[1].decode()
    assert 'airgap_webhook_mutations_total{result="patched"}' in text
    assert "airgap_webhook_pinned_images_total" in text and "airgap_webhook_tag_window_hits_total" in text
    assert 'airgap_webhook_mutation_seconds_bucket{le="+Inf"}' in text
