"""From an admission request to an answer: which images, what the verifier says of each, what the mode does.

Pure given a ``check(image) -> ImageVerdict`` function (the server passes one that resolves tags at the
local registry, consults the cache and calls the shared :class:`airgap.verification.verifier.Verifier`; tests
pass their own).
Per image the verifier applies allow-list -> approved registries -> matching policies -> ``noMatchPolicy``;
this module only combines the verdicts and applies the webhook's mode to a denial:

* ``enforce``: any denied image denies the request (HTTP 403 in the review), naming each image and why;
* ``warn``: the request is allowed, each denial becomes a ``warnings`` entry for kubectl to show;
* ``audit``: the request is allowed, denials go to ``auditAnnotations`` (the API server's audit log).

Warnings the verifier itself produced (a policy in ``mode: warn``, ``noMatchPolicy: warn``) are passed on
in every mode. Fail closed: an image not decided within the deadline, or whose check raised, is a denial.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from airgap.admission.review import AdmissionRequest, response

Mode = Literal["enforce", "warn", "audit"]
MODES: tuple[Mode, ...] = ("enforce", "warn", "audit")
# The API server truncates long warnings; keep each one short enough to survive intact.
MAX_WARNING = 240
# A denial names every failing image and why; a review can name hundreds, so the message is capped.
MAX_MESSAGE = 4096
_RANK = {"allow": 0, "warn": 1, "deny": 2}


@dataclass(frozen=True)
class ImageVerdict:
    """What the verifier said about one image (``error``: it could not decide, e.g. registry down)."""

    image: str
    decision: str  # allow | warn | deny
    digest: str | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    cached: bool = False
    error: bool = False

    @property
    def why(self) -> str:
        return "; ".join(self.reasons) or "denied"


Check = Callable[[str], ImageVerdict]


@dataclass
class Decision:
    """The webhook's answer to one request, before it is turned into an AdmissionReview."""

    uid: str
    allowed: bool
    outcome: str  # the worst image verdict: allow | warn | deny (before the mode is applied)
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    audit_annotations: dict[str, str] = field(default_factory=dict)
    verdicts: list[ImageVerdict] = field(default_factory=list)
    code: int | None = None
    patch: list[dict[str, Any]] = field(default_factory=list)  # JSONPatch operations (the mutating webhook)

    def review(self) -> dict[str, Any]:
        return response(self.uid, allowed=self.allowed, message=self.message, code=self.code,
                        warnings=self.warnings, audit_annotations=self.audit_annotations, patch=self.patch)


def check_images(images: Sequence[str], check: Check, *, executor: Executor, deadline: float) -> list[ImageVerdict]:
    """Run ``check`` on every image at once; whatever is not done within ``deadline`` seconds is denied.

    Never waits longer than the deadline: a check stuck on a slow registry keeps its worker thread (the
    registry client's own timeouts end it) but no longer holds up the answer.
    """
    futures: list[Future[ImageVerdict]] = [executor.submit(check, image) for image in images]
    wait(futures, timeout=deadline)
    out = []
    for image, future in zip(images, futures, strict=True):
        if not future.done():
            future.cancel()
            out.append(_late(image, deadline))
            continue
        exc = future.exception()
        if exc is not None:
            out.append(_crashed(image, exc))
        else:
            out.append(future.result())
    return out


async def check_images_async(images: Sequence[str], check: Callable[[str], Awaitable[ImageVerdict]], *,
                             deadline: float) -> list[ImageVerdict]:
    """:func:`check_images` on an event loop: ``check`` is a coroutine function, run for all images at once."""
    import asyncio

    tasks = [asyncio.ensure_future(check(image)) for image in images]
    await asyncio.wait(tasks, timeout=deadline)
    out = []
    for image, task in zip(images, tasks, strict=True):
        if not task.done():
            task.cancel()
            out.append(_late(image, deadline))
        elif (exc := task.exception()) is not None:
            out.append(_crashed(image, exc))
        else:
            out.append(task.result())
    return out


def _late(image: str, deadline: float) -> ImageVerdict:
    return ImageVerdict(image, "deny", error=True, reasons=(
        f"not verified within the webhook's {deadline:g}s deadline (registry slow or unreachable, or webhook busy)",))


def _crashed(image: str, exc: BaseException) -> ImageVerdict:
    return ImageVerdict(image, "deny", error=True, reasons=(f"internal error: {type(exc).__name__}: {exc}",))


def _short(text: str, limit: int = MAX_WARNING) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decide(request: AdmissionRequest, verdicts: Sequence[ImageVerdict], mode: Mode) -> Decision:
    """Combine the image verdicts of ``request`` under ``mode`` (see the module docstring)."""
    outcome = max((v.decision for v in verdicts), key=lambda d: _RANK.get(d, 2), default="allow")
    decision = Decision(request.uid, True, outcome, verdicts=list(verdicts))
    denied = [v for v in verdicts if v.decision not in ("allow", "warn")]
    # Only "warn" verdicts carry warnings meant for the user; an "allow" verdict's notes (e.g. "allowed by
    # allow-list glob") are informational and stay in the logs.
    decision.warnings = [_short(f"airgap: {v.image}: {w}") for v in verdicts if v.decision == "warn"
                         for w in v.warnings]
    if not denied:
        if mode == "audit":
            decision.audit_annotations["decision"] = outcome
        return decision
    lines = [f"{v.image}: {v.why}" for v in denied]
    if mode == "enforce":
        decision.allowed = False
        decision.code = 403
        decision.message = _short(f"airgap denied {request.kind} {request.namespace}/{request.name}: "
                                  f"{len(denied)} of {len(verdicts)} image(s) failed verification: " + "; ".join(lines),
                                  MAX_MESSAGE)
    elif mode == "warn":
        decision.warnings += [_short(f"airgap (warn mode) would deny {line}") for line in lines]
    else:
        decision.audit_annotations.update({"decision": "deny", "denied-images": _short("; ".join(lines), MAX_MESSAGE)})
    return decision


def decide_request(request: AdmissionRequest, check: Check, mode: Mode, *, executor: Executor,
                   deadline: float) -> Decision:
    """Check every image of ``request`` (bounded by ``deadline``) and decide."""
    images = request.unique_images
    verdicts = check_images(images, check, executor=executor, deadline=deadline) if images else []
    return decide(request, verdicts, mode)


def malformed(uid: str, reason: str, mode: Mode, *, code: int = 400) -> Decision:
    """The answer to a request the webhook cannot decide on (unreadable, not understood, too large, no
    trust, busy): denied in enforce, allowed with a warning in warn, allowed with audit annotations in audit."""
    reason = _short(reason, MAX_MESSAGE - len("airgap: "))
    if mode == "enforce":
        return Decision(uid, False, "deny", message=f"airgap: {reason}", code=code)
    if mode == "warn":
        return Decision(uid, True, "deny", warnings=[_short(f"airgap (warn mode) would deny: {reason}")])
    return Decision(uid, True, "deny", audit_annotations={"decision": "deny", "error": reason})
