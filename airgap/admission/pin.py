"""The mutating webhook's part: which images to pin to a digest, and the JSONPatch that pins them.

``POST /mutate`` resolves each container image named by tag (containers, initContainers, ephemeralContainers
of a pod or of any pod template the validating webhook understands) to a digest, has that digest verified
exactly as ``/validate`` would (same verifier, same decision cache), and answers a JSONPatch that rewrites
``image: repo:tag`` to ``repo:tag@sha256:...`` for every image whose verdict was ``allow``. Kubernetes pulls
by the digest when both are given, so a re-tag after admission cannot change what runs, and the validating
webhook, called after every mutating one, then sees and decides on digests.

What is never patched:

* an image already pinned (``...@sha256:...``): left exactly as written, whatever its tag says (the
  validating webhook verifies that digest);
* an image whose verdict is not ``allow`` (denied, warned, not resolvable, not decided within the
  deadline): left as written, so nothing unverified is ever written into the object; the validating
  webhook denies it (or warns, or audits) with its reason;
* on UPDATE, an image the update did not change (same image at the same place in ``oldObject``): pinning it
  would change a running pod's container image (a restart) or a workload's template (a rollout) as a side
  effect of, say, a label change;
* anything at all in ``audit`` mode (the webhook must not change what it only observes), and any request
  the webhook cannot read (the validating webhook answers those).

The mutating webhook never denies: validation does. Its answers are always ``allowed`` with or without a patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airgap.admission.review import AdmissionRequest


def pinned(image: str, digest: str) -> str:
    """``image`` as written with ``@digest`` appended: ``repo:tag`` -> ``repo:tag@sha256:...``."""
    return f"{image}@{digest}"


def candidates(request: AdmissionRequest) -> list[str]:
    """The distinct images of ``request`` that pinning would change, in first-seen order: named without a
    digest, and (on UPDATE) not already at the same place in the old object."""
    unchanged = {(c.pointer, c.image) for c in request.old_images}
    return list(dict.fromkeys(c.image for c in request.images
                              if "@" not in c.image and (c.pointer, c.image) not in unchanged))


def patch(request: AdmissionRequest, pins: Mapping[str, str]) -> list[dict[str, Any]]:
    """JSONPatch ``replace`` operations pinning each container whose image is in ``pins`` (image -> verified
    digest) and that pinning is for (see :func:`candidates`)."""
    unchanged = {(c.pointer, c.image) for c in request.old_images}
    return [{"op": "replace", "path": c.pointer, "value": pinned(c.image, pins[c.image])}
            for c in request.images
            if c.image in pins and c.pointer and "@" not in c.image and (c.pointer, c.image) not in unchanged]
