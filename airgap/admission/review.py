"""Kubernetes ``AdmissionReview`` v1 (``admission.k8s.io/v1``): parse the request, then trust it.

The body is untrusted (the API server sends well-formed reviews, but anything in the cluster network can
reach the webhook's port), and the webhook fails closed on what it cannot read: every way a body can fail
to be an AdmissionReview the webhook understands raises :class:`ReviewError`, which the webhook turns into
a denial in enforce mode (a warning in warn mode, an audit annotation in audit mode), never an "allowed".

What is understood, keyed by the ``request.kind`` group/version/kind the API server sends (with our
``matchPolicy: Equivalent`` registration it always converts to the ``v1`` we registered):

* the pod spec of a core/v1 ``Pod`` (the resource and every subresource that carries a Pod: the
  ``ephemeralcontainers`` subresource since Kubernetes 1.22, ``status``), and the pod template of
  core/v1 ``ReplicationController``, apps/v1 ``Deployment``, ``ReplicaSet``, ``StatefulSet``,
  ``DaemonSet``, batch/v1 ``Job`` and ``CronJob`` (``spec.jobTemplate.spec.template``): the images of
  ``initContainers``, ``containers`` (required, non-empty: the API server never sends a pod without
  one) and ``ephemeralContainers``;
* core/v1 ``EphemeralContainers``, what the ``pods/ephemeralcontainers`` subresource sent before
  Kubernetes 1.22: the images of its top-level ``ephemeralContainers``;
* autoscaling/v1 ``Scale`` (a ``*/scale`` subresource): it changes a replica count and can start no
  new image, so it is allowed.

Anything else on CREATE or UPDATE is denied: a kind (or group, or version) outside that table, even when
its object looks like it carries a pod spec (a custom resource's template is not ours to interpret), an
object that is missing, not an object, of another kind than the request says, or whose pod spec is not
the shape Kubernetes defines. DELETE and CONNECT start nothing and are allowed whatever the kind (the
object is not read); any other operation is denied. Dry-run requests (``dryRun: true``, e.g.
``kubectl apply --dry-run=server``) are decided exactly like real ones (the webhook has no side effects,
``sideEffects: None``), so a dry run previews the real verdict.

Each image comes with its JSON Pointer in the object (what the mutating webhook's patch names), and on UPDATE
the old object's images are read too, leniently (only to leave unchanged images unpinned).

Hostile bodies: JSON nested deeper than Python's parser allows (a depth bomb, wherever it sits) is
refused with a one-line reason in bounded time, and the uid is then recovered from the start of the
body (:func:`uid_hint`) so the API server still shows that reason.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from airgap.errors import IntegrityError
from airgap.jsondoc import load_json

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
GVK = tuple[str, str, str]  # (group, version, kind) as in request.kind; the core group is ""

# Where each understood workload keeps its pod spec, as a path of keys from the object.
POD_SPEC_PATHS: dict[GVK, tuple[str, ...]] = {
    ("", "v1", "Pod"): ("spec",),
    ("", "v1", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "v1", "Deployment"): ("spec", "template", "spec"),
    ("apps", "v1", "ReplicaSet"): ("spec", "template", "spec"),
    ("apps", "v1", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "v1", "DaemonSet"): ("spec", "template", "spec"),
    ("batch", "v1", "Job"): ("spec", "template", "spec"),
    ("batch", "v1", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
# pods/ephemeralcontainers before Kubernetes 1.22: no pod spec, the list itself at the top level.
LEGACY_EPHEMERAL: GVK = ("", "v1", "EphemeralContainers")
# Understood kinds that cannot start an image (the */scale subresource).
NO_IMAGES: frozenset[GVK] = frozenset({("autoscaling", "v1", "Scale")})
# Operations that never start a container: answered "allowed" without looking at the object.
PASS_OPERATIONS = frozenset({"DELETE", "CONNECT"})
CHECK_OPERATIONS = frozenset({"CREATE", "UPDATE"})
# A uid is echoed only when it looks like one (the API server sends UUIDs).
_UID = re.compile(rb'"uid"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')
UID_HINT_BYTES = 4096


class ReviewError(IntegrityError):
    """The request body is not an AdmissionReview v1 the webhook can decide on; ``uid`` is the request's
    uid when it could be read (echoed in the answer), else ''."""

    def __init__(self, message: str, uid: str = "") -> None:
        super().__init__(message)
        self.uid = uid


@dataclass(frozen=True)
class ContainerImage:
    """One container of the workload: which list it is in, its name and the image it asks for."""

    field: str  # containers | initContainers | ephemeralContainers
    name: str
    image: str
    pointer: str = ""  # JSON Pointer (RFC 6901) to this ``image`` in the request's object (what a patch names)


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of ``request`` the webhook decides on; ``images`` is empty when there is nothing to run."""

    uid: str
    kind: str
    namespace: str
    name: str
    operation: str
    images: tuple[ContainerImage, ...]
    dry_run: bool = False
    # UPDATE: the images of ``oldObject`` where it has the same shape (else empty); the mutating webhook
    # leaves an image the update did not change as it is.
    old_images: tuple[ContainerImage, ...] = ()

    @property
    def unique_images(self) -> list[str]:
        """Each distinct image once, in first-seen order (init containers first)."""
        return list(dict.fromkeys(c.image for c in self.images))

    @classmethod
    def from_bytes(cls, data: bytes) -> AdmissionRequest:
        # Strict (duplicate keys, depth checked by a linear scan before parsing: a depth bomb costs microseconds)
        doc = load_json(data, "AdmissionReview", lambda message: ReviewError(message, uid_hint(data)),
                        invalid="request body is not JSON (expected an AdmissionReview v1)")
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: Any) -> AdmissionRequest:
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ReviewError("request body is not an AdmissionReview")
        if doc.get("apiVersion") != API_VERSION:
            raise ReviewError(f"AdmissionReview apiVersion {_show(doc.get('apiVersion'))} is not supported "
                              f"(set admissionReviewVersions: [v1])")
        req = doc.get("request")
        if not isinstance(req, dict):
            raise ReviewError("AdmissionReview has no request")
        uid = req.get("uid")
        if not isinstance(uid, str) or not uid:
            raise ReviewError("AdmissionReview request has no uid")
        if len(uid) > 128 or not uid.isprintable():
            raise ReviewError("AdmissionReview request uid is not a Kubernetes uid")
        gvk = _gvk(req.get("kind"))
        if gvk is None:
            raise ReviewError(f"request {uid}: kind is missing", uid)
        kind = gvk[2]
        operation = req.get("operation")
        if not isinstance(operation, str):
            raise ReviewError(f"request {uid}: operation is missing", uid)
        # Shown in messages and logs: printable and at most as long as Kubernetes allows a name to be.
        namespace = _text(_str(req.get("namespace")), 253)
        name = _text(_str(req.get("name")), 253)
        dry_run = req.get("dryRun") is True
        if operation in PASS_OPERATIONS:
            return cls(uid, kind, namespace, name, operation, (), dry_run)
        if operation not in CHECK_OPERATIONS:
            raise ReviewError(f"request {uid}: operation {_show(operation)} is not an admission operation "
                              f"(CREATE, UPDATE, DELETE, CONNECT)", uid)
        understood = gvk in POD_SPEC_PATHS or gvk == LEGACY_EPHEMERAL or gvk in NO_IMAGES
        if not understood:
            raise ReviewError(f"request {uid}: {_gvk_text(gvk)} is not a kind the webhook can verify "
                              f"(pods and pod-template workloads only): denied rather than guessed", uid)
        obj = req.get("object")
        if not isinstance(obj, dict):
            raise ReviewError(f"request {uid}: {kind} {operation} carries no object", uid)
        if "kind" in obj and obj["kind"] != kind:
            raise ReviewError(f"request {uid}: the object is a {_show(obj['kind'])}, the request says {kind}",
                              uid)
        meta = obj.get("metadata")
        if not name and isinstance(meta, dict):
            name = _text(_str(meta.get("name")) or _str(meta.get("generateName")), 253)
        if gvk in NO_IMAGES:
            return cls(uid, kind, namespace, name, operation, (), dry_run)
        images = _object_images(uid, gvk, obj)
        old_images: tuple[ContainerImage, ...] = ()
        if operation == "UPDATE" and isinstance(req.get("oldObject"), dict):
            try:
                old_images = _object_images(uid, gvk, req["oldObject"])
            except ReviewError:
                pass  # only ever used to leave unchanged images alone: an unreadable old object changes nothing
        return cls(uid, kind, namespace, name, operation, images, dry_run, old_images)


def uid_hint(body: bytes | None) -> str:
    """The request uid of a body we could not (or would not) parse, found in its first bytes, else ''.

    The API server's encoder writes ``request.uid`` first, within the first few hundred bytes; echoing
    it lets the API server show our reason instead of a uid mismatch. Never trusted for anything else:
    a wrong uid only makes the API server reject our answer, which fails closed all the same."""
    match = _UID.search(body[:UID_HINT_BYTES]) if body else None
    return match.group(1).decode() if match else ""


def _gvk(value: Any) -> GVK | None:
    if not isinstance(value, dict):
        return None
    parts = value.get("group", ""), value.get("version"), value.get("kind")
    if not all(isinstance(p, str) for p in parts) or not parts[2]:
        return None
    return parts  # type: ignore[return-value]


def _gvk_text(gvk: GVK) -> str:
    group, version, kind = (_text(p) for p in gvk)
    return f"{group}/{version} {kind}" if group else f"{version} {kind}"


def _text(value: str, limit: int = 64) -> str:
    """Untrusted text in a message: printable characters only, and short."""
    text = "".join(c if c.isprintable() else "?" for c in value[:limit])
    return text if len(value) <= limit else text[: limit - 3] + "..."


def _show(value: Any, limit: int = 64) -> str:
    """An untrusted value of any type in a message: repr'd (no control characters) and short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object_images(uid: str, gvk: GVK, obj: dict[str, Any]) -> tuple[ContainerImage, ...]:
    """The container images of an object of an understood kind (not ``NO_IMAGES``), with their pointers."""
    if gvk == LEGACY_EPHEMERAL:
        return _containers(uid, obj, ("ephemeralContainers",), "ephemeralContainers", "object", "")
    spec: Any = obj
    for key in POD_SPEC_PATHS[gvk]:
        spec = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        path = ".".join(POD_SPEC_PATHS[gvk])
        raise ReviewError(f"request {uid}: {gvk[2]} has no pod spec at {path}", uid)
    base = "".join(f"/{key}" for key in POD_SPEC_PATHS[gvk])
    return _containers(uid, spec, CONTAINER_FIELDS, "containers", "pod spec", base)


def _containers(uid: str, spec: dict[str, Any], fields: tuple[str, ...], required: str,
                where: str, base: str) -> tuple[ContainerImage, ...]:
    """The images of ``fields`` of ``spec`` (found at JSON Pointer ``base`` in the object); ``required`` must be
    a non-empty list (the API server never sends a pod spec without containers), the others lists when present."""
    out: list[ContainerImage] = []
    for field_name in fields:
        items = spec.get(field_name)
        if field_name == required and (items is None or items == []):
            raise ReviewError(f"request {uid}: the {where} has no {field_name}", uid)
        if items is None:
            continue
        if not isinstance(items, list):
            raise ReviewError(f"request {uid}: {field_name} is not a list", uid)
        for index, item in enumerate(items):
            image = item.get("image") if isinstance(item, dict) else None
            label = _str(item.get("name")) if isinstance(item, dict) else ""
            if not isinstance(image, str) or not image.strip():
                raise ReviewError(f"request {uid}: {field_name}[{index}] {_show(label)} has no image", uid)
            out.append(ContainerImage(field_name, label or f"#{index}", image.strip(),
                                      f"{base}/{field_name}/{index}/image"))
    return tuple(out)


def response(uid: str, *, allowed: bool, message: str = "", code: int | None = None,
             warnings: list[str] | None = None, audit_annotations: dict[str, str] | None = None,
             patch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The AdmissionReview v1 the API server expects back (``uid`` echoed); ``patch``: JSONPatch operations
    (RFC 6902) for a mutating webhook, sent base64-encoded as ``patchType: JSONPatch``."""
    body: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if patch:
        body["patchType"] = "JSONPatch"
        body["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode("ascii")
    if message or code is not None:
        status: dict[str, Any] = {"code": code or (200 if allowed else 403), "message": message}
        if not allowed:
            status["reason"] = "Forbidden"
        body["status"] = status
    if warnings:
        body["warnings"] = warnings
    if audit_annotations:
        body["auditAnnotations"] = audit_annotations
    return {"apiVersion": API_VERSION, "kind": KIND, "response": body}
