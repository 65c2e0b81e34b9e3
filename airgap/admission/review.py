"""Kubernetes ``AdmissionReview`` v1 (``admission.k8s.io/v1``): parse the request, then trust it.

The API server is trusted to send well-formed reviews, but the webhook fails closed on anything else: a
body that is not an AdmissionReview v1, a request without a uid, or a workload whose pod spec is not the
shape Kubernetes defines raises :class:`ReviewError` (a denial in enforce mode), never a crash.

Which images a request asks to run: the pod spec of a ``Pod`` (also its ``ephemeralcontainers``
subresource) and the pod template of ``Deployment``, ``ReplicaSet``, ``StatefulSet``, ``DaemonSet``,
``Job``, ``ReplicationController`` and ``CronJob`` (``spec.jobTemplate.spec.template``), from
``containers``, ``initContainers`` and ``ephemeralContainers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airgap.errors import IntegrityError
from airgap.jsondoc import load_json

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")

# Where each workload kind keeps its pod spec, as a path of keys from the object.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
# Operations that never start a container: answered "allowed" without looking at the object.
PASS_OPERATIONS = frozenset({"DELETE", "CONNECT"})


class ReviewError(IntegrityError):
    """The request body is not an AdmissionReview v1 the webhook can decide on."""


@dataclass(frozen=True)
class ContainerImage:
    """One container of the workload: which list it is in, its name and the image it asks for."""

    field: str  # containers | initContainers | ephemeralContainers
    name: str
    image: str


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

    @property
    def unique_images(self) -> list[str]:
        """Each distinct image once, in first-seen order (init containers first)."""
        return list(dict.fromkeys(c.image for c in self.images))

    @classmethod
    def from_bytes(cls, data: bytes) -> AdmissionRequest:
        doc = load_json(data, "AdmissionReview", ReviewError,
                        invalid="request body is not JSON (expected an AdmissionReview v1)")
        return cls.from_json(doc)

    @classmethod
    def from_json(cls, doc: Any) -> AdmissionRequest:
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            raise ReviewError("request body is not an AdmissionReview")
        if doc.get("apiVersion") != API_VERSION:
            raise ReviewError(f"AdmissionReview apiVersion {doc.get('apiVersion')!r} is not supported "
                              f"(set admissionReviewVersions: [v1])")
        req = doc.get("request")
        if not isinstance(req, dict):
            raise ReviewError("AdmissionReview has no request")
        uid = req.get("uid")
        if not isinstance(uid, str) or not uid:
            raise ReviewError("AdmissionReview request has no uid")
        kind_obj = req.get("kind")
        kind = kind_obj.get("kind") if isinstance(kind_obj, dict) else None
        if not isinstance(kind, str):
            raise ReviewError(f"request {uid}: kind is missing")
        operation = req.get("operation")
        if not isinstance(operation, str):
            raise ReviewError(f"request {uid}: operation is missing")
        namespace = _str(req.get("namespace"))
        name = _str(req.get("name"))
        dry_run = req.get("dryRun") is True
        if operation in PASS_OPERATIONS or kind not in POD_SPEC_PATHS:
            return cls(uid, kind, namespace, name, operation, (), dry_run)
        obj = req.get("object")
        if not isinstance(obj, dict):
            raise ReviewError(f"request {uid}: {kind} {operation} carries no object")
        name = name or _str((obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict)
                            else None)
        spec: Any = obj
        for key in POD_SPEC_PATHS[kind]:
            spec = spec.get(key) if isinstance(spec, dict) else None
        if not isinstance(spec, dict):
            raise ReviewError(f"request {uid}: {kind} has no pod spec at {'.'.join(POD_SPEC_PATHS[kind])}")
        return cls(uid, kind, namespace, name, operation, _containers(uid, spec), dry_run)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _containers(uid: str, spec: dict[str, Any]) -> tuple[ContainerImage, ...]:
    out: list[ContainerImage] = []
    for field_name in CONTAINER_FIELDS:
        items = spec.get(field_name)
        if items is None:
            continue
        if not isinstance(items, list):
            raise ReviewError(f"request {uid}: {field_name} is not a list")
        for index, item in enumerate(items):
            image = item.get("image") if isinstance(item, dict) else None
            label = _str(item.get("name")) if isinstance(item, dict) else ""
            if not isinstance(image, str) or not image.strip():
                raise ReviewError(f"request {uid}: {field_name}[{index}] {label!r} has no image")
            out.append(ContainerImage(field_name, label or f"#{index}", image.strip()))
    return tuple(out)


def response(uid: str, *, allowed: bool, message: str = "", code: int | None = None,
             warnings: list[str] | None = None, audit_annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The AdmissionReview v1 the API server expects back (``uid`` echoed)."""
    body: dict[str, Any] = {"uid": uid, "allowed": allowed}
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
