"""Digest pinning, pure parts: where each image sits in the object (JSON Pointers), which images are pinned, the
JSONPatch, the answer's encoding, and the tag window's clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from airgap.admission import pin
from airgap.admission.cache import TagWindow
from airgap.admission.review import AdmissionRequest, response

from .test_admission import OBJECTS, review

DIGEST = "sha256:" + "a" * 64
BASES = {"Pod": "/spec", "CronJob": "/spec/jobTemplate/spec/template/spec"}


def request(doc: dict[str, Any]) -> AdmissionRequest:
    return AdmissionRequest.from_bytes(json.dumps(doc).encode())


@pytest.mark.parametrize("kind", sorted(OBJECTS))
def test_pointers_name_each_image_in_the_object(kind: str) -> None:
    req = request(review(kind))
    base = BASES.get(kind, "/spec/template/spec")
    assert [c.pointer for c in req.images] == [f"{base}/initContainers/0/image", f"{base}/containers/0/image",
                                               f"{base}/containers/1/image", f"{base}/ephemeralContainers/0/image"]
    for c in req.images:  # the pointer leads to the image, in the object as sent
        node: Any = OBJECTS[kind]
        for part in c.pointer.split("/")[1:]:
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert node == c.image


def test_legacy_ephemeral_containers_pointer() -> None:
    obj = {"ephemeralContainers": [{"name": "dbg", "image": "reg/debug:1"}]}
    req = request(review("EphemeralContainers", obj, operation="UPDATE"))
    assert [c.pointer for c in req.images] == ["/ephemeralContainers/0/image"]


def test_candidates_and_patch() -> None:
    spec = {"initContainers": [{"name": "i", "image": "reg/init:1"}],
            "containers": [{"name": "a", "image": "reg/app:1"}, {"name": "b", "image": "reg/app:1"},
                           {"name": "c", "image": f"reg/app:1@{DIGEST}"}, {"name": "d", "image": "reg/other:2"}]}
    req = request(review("Pod", {"spec": spec}))
    assert pin.candidates(req) == ["reg/init:1", "reg/app:1", "reg/other:2"]  # the pinned one is left alone
    ops = pin.patch(req, {"reg/app:1": DIGEST, f"reg/app:1@{DIGEST}": DIGEST})
    assert ops == [{"op": "replace", "path": f"/spec/containers/{i}/image", "value": f"reg/app:1@{DIGEST}"}
                   for i in (0, 1)]
    assert pin.patch(req, {}) == []


def test_update_leaves_what_it_did_not_change() -> None:
    old = {"spec": {"containers": [{"name": "a", "image": "reg/app:1"}, {"name": "b", "image": "reg/side:1"}]}}
    new = {"spec": {"containers": [{"name": "a", "image": "reg/app:1"}, {"name": "b", "image": "reg/side:2"},
                                   {"name": "c", "image": "reg/app:1"}]}}
    req = request(review("Pod", new, operation="UPDATE", oldObject=old))
    assert [c.image for c in req.old_images] == ["reg/app:1", "reg/side:1"]
    assert pin.candidates(req) == ["reg/side:2", "reg/app:1"]  # reg/app:1 is new at containers/2
    ops = pin.patch(req, {"reg/app:1": DIGEST, "reg/side:2": DIGEST})
    assert [op["path"] for op in ops] == ["/spec/containers/1/image", "/spec/containers/2/image"]
    # A CREATE has no old object; an unreadable old object leaves nothing out.
    assert request(review("Pod", new, oldObject=old)).old_images == ()
    assert request(review("Pod", new, operation="UPDATE", oldObject={"spec": 1})).old_images == ()


def test_the_answer_carries_the_patch_base64() -> None:
    ops = [{"op": "replace", "path": "/spec/containers/0/image", "value": f"r/a:1@{DIGEST}"}]
    body = response("u", allowed=True, patch=ops)["response"]
    assert body["patchType"] == "JSONPatch" and json.loads(base64.b64decode(body["patch"])) == ops
    assert response("u", allowed=True, patch=[])["response"] == {"uid": "u", "allowed": True}


def test_pinned_keeps_the_image_as_written() -> None:
    assert pin.pinned("reg:5000/team/app:1.0", DIGEST) == f"reg:5000/team/app:1.0@{DIGEST}"
    assert pin.pinned("nginx", DIGEST) == f"nginx@{DIGEST}"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_tag_window_counts_from_the_look_up_and_never_extends() -> None:
    clock = Clock()
    window = TagWindow(3.0, clock=clock)
    key = ("reg", "team/app", "1.0")
    window.put(key, DIGEST, since=99.0)  # asked at 99: open until 102
    clock.now = 101.9
    assert window.get(key) == DIGEST and window.hits == 1
    clock.now = 102.0
    assert window.get(key) is None and len(window) == 0
    window.put(key, DIGEST, since=98.0)  # already over: not stored
    assert len(window) == 0
    window.put(key, DIGEST, since=101.0)
    window.put(key, "sha256:" + "b" * 64, since=100.5)  # an older look-up landing late does not win
    assert window.get(key) == DIGEST


def test_tag_window_is_bounded_and_zero_keeps_nothing() -> None:
    clock = Clock()
    window = TagWindow(10.0, max_entries=2, clock=clock)
    for i in range(3):
        window.put(("reg", f"r{i}", "1"), DIGEST, since=100.0)
    assert len(window) == 2 and window.get(("reg", "r0", "1")) is None
    off = TagWindow(0.0, clock=clock)
    off.put(("reg", "r", "1"), DIGEST, since=100.0)
    assert off.get(("reg", "r", "1")) is None
    with pytest.raises(ValueError):
        TagWindow(-1)
