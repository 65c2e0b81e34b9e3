"""What ``airgap pack`` ships for each image, found at its source registry, and its verification there.

An image is resolved to a digest and its graph collected (every platform, or the one the spec asks for), with
cosign's ``.sig/.att/.sbom`` tags and referrers, also in a policy's separate signature repository
(``airgap.oci.copy``'s planner does the walking). Every manifest is digest-verified by the registry client; blob
bytes are not read here, only their descriptors and where to read them from.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airgap import refs
from airgap.errors import ConfigError, PolicyError
from airgap.oci.manifest import Descriptor, Manifest, referrers_tag
from airgap.oci.store import RegistryRepo

if TYPE_CHECKING:
    from airgap.oci.copy import Plan
    from airgap.oci.registry import RegistryClient
    from airgap.policy.policyset import PolicySet
    from airgap.verification.trust import Trust

_KINDS = {".sig": "signature", ".att": "attestation", ".sbom": "sbom"}


class ListedRepo(RegistryRepo):
    """A source repository whose tag list is fetched once and then answers the referrers fallback lookups.

    On a registry without the Referrers API, a subject's referrers live under the ``sha256-<hex>`` tag; the
    planner asks for it for every subject and attachment, and each miss is a round trip (and ~1 ms of the
    registry's CPU). The complete tag list (``list_tags`` raises rather than truncate) already says whether that
    tag exists, so an absent one answers "no referrers" without a request, exactly as the companion
    ``.sig/.att/.sbom`` tags are found. A present tag is still fetched and digest-verified as before."""

    def __init__(self, client: RegistryClient, host: str, repo: str) -> None:
        super().__init__(client, host, repo)
        self._tags: frozenset[str] | None = None
        self._lock = threading.Lock()

    def list_tags(self) -> list[str]:
        tags = super().list_tags()
        with self._lock:
            self._tags = frozenset(tags)
        return tags

    def referrers(self, digest: str) -> list[Descriptor]:
        with self._lock:
            tags = self._tags
        absent = tags is not None and referrers_tag(digest) not in tags
        if absent and not self.client.supports_referrers(self.host, self.repo):
            return []
        return super().referrers(digest)


@dataclass
class Attachment:
    kind: str  # signature | attestation | sbom | referrer
    tag: str | None
    manifest: Manifest
    subject: str
    repo: str  # upstream "registry/repository" it was found in


@dataclass
class Collected:
    """One image as found at its source: the graph, what hangs off it, and where each blob is read from."""

    upstream: refs.Reference
    root: Manifest
    manifests: list[Manifest]  # children first, root last
    attachments: list[Attachment]
    extra_manifests: list[Manifest]  # children of attachment indexes (pushed before the attachment)
    blob_sources: dict[str, tuple[RegistryRepo, Descriptor]]  # digest -> where to read it
    signature_repo: str | None = None

    @property
    def platforms(self) -> list[dict[str, str]]:
        return [{"platform": c.platform, "digest": c.digest} for c in self.root.manifests if c.platform]


# ---- collection -------------------------------------------------------------------------------------


def _select_platforms(store: RegistryRepo, root: Manifest, platforms: tuple[str, ...] | None,
                      text: str) -> Manifest:
    """Apply a spec's ``platforms``: all (None), or one platform of an index (the image becomes that
    platform's manifest, as ``crane pull --platform`` does). A partial index cannot be shipped: registries
    refuse an index whose children are missing, and rewriting it would break every signature over it."""
    if not platforms or not root.is_index:
        return root
    have = {c.platform: c for c in root.manifests if c.platform}
    missing = [p for p in platforms if p not in have]
    if missing:
        raise ConfigError(f"{text}: no platform {', '.join(missing)} (has {', '.join(sorted(have)) or 'none'})")
    if set(platforms) >= set(have):
        return root
    if len(platforms) > 1:
        raise ConfigError(f"{text}: platforms must be one platform or all of {', '.join(sorted(have))} "
                          "(a partial index cannot be pushed or verified)")
    return store.resolve(have[platforms[0]].digest)


def _attachments(plan: Plan, store: RegistryRepo, repo_name: str, known: set[str]) -> list[Attachment]:
    out = []
    for tag, manifest in plan.companions:
        if manifest.digest in known:
            continue
        known.add(manifest.digest)
        kind = next(k for s, k in _KINDS.items() if tag.endswith(s))
        alg, rest = tag.split("-", 1)
        out.append(Attachment(kind, tag, manifest, f"{alg}:{rest.rsplit('.', 1)[0]}", repo_name))
    for referrer in plan.referrers:
        if referrer.digest in known or referrer.subject is None:
            continue
        known.add(referrer.digest)
        out.append(Attachment("referrer", None, referrer, referrer.subject.digest, repo_name))
    return out


def collect_image(client: RegistryClient, text: str, platforms: tuple[str, ...] | None,
                  policy: PolicySet | None) -> Collected:
    """Resolve ``text`` and find everything to ship with it (see the module docstring)."""
    from airgap.oci.copy import Plan, collect_graph, plan_attachments

    upstream = refs.parse(text)
    store = ListedRepo(client, refs.api_host(upstream.registry), upstream.repository)
    root = _select_platforms(store, store.resolve(upstream.identifier), platforms, text)
    depth = client.limits.max_referrer_depth
    plan = Plan()
    collect_graph(store, root, plan, max_depth=client.limits.max_index_depth)
    image_manifests = list(plan.manifests.values())
    plan_attachments(store, root, plan, depth)
    known = {m.digest for m in image_manifests}
    attachments = _attachments(plan, store, upstream.name, known)
    sources: dict[str, tuple[RegistryRepo, Descriptor]] = {d: (store, b) for d, b in plan.blobs.items()}
    extra = [m for d, m in plan.manifests.items() if d not in known and d not in
             {a.manifest.digest for a in attachments}]
    signature_repo = None
    for repo_text in _signature_repos(policy, upstream):
        sig_ref = refs.parse(repo_text.removeprefix("oci://"), default_tag=None)
        if sig_ref.name == upstream.name:
            continue
        sig_store = ListedRepo(client, refs.api_host(sig_ref.registry), sig_ref.repository)
        sig_plan = Plan(manifests={m.digest: m for m in image_manifests})
        plan_attachments(sig_store, root, sig_plan, depth)
        found = _attachments(sig_plan, sig_store, sig_ref.name, known)
        if not found:
            continue
        signature_repo = signature_repo or sig_ref.name
        attachments += found
        for d, b in sig_plan.blobs.items():
            sources.setdefault(d, (sig_store, b))
        extra += [m for d, m in sig_plan.manifests.items() if d not in known and d not in
                  {a.manifest.digest for a in attachments} and m not in extra]
    return Collected(upstream, root, image_manifests, attachments, extra, sources, signature_repo)


def _signature_repos(policy: PolicySet | None, upstream: refs.Reference) -> list[str]:
    """Upstream repositories the policies matching ``upstream`` look for its signatures in."""
    if policy is None:
        return []
    out: list[str] = []
    for image_policy in policy.select(upstream):
        for authority in image_policy.authorities:
            out += [s for s in authority.sources if s not in out]
    return out


# ---- verification at the source --------------------------------------------------------------------


def verify_at_source(images: list[Collected], trust: Trust, client: RegistryClient, jobs: int) -> None:
    """Verify every image against the bundled policy at its source registry; raise one PolicyError
    naming every failure."""
    from airgap.verification.verifier import Verifier

    verifier = Verifier(trust, client=client)
    refs_ = [str(c.upstream.with_digest(c.root.digest)) for c in images]
    failures = [f"{r.ref}: {'; '.join(r.reasons)}" for r in verifier.verify_many(refs_, jobs=jobs) if not r]
    if failures:
        raise PolicyError(f"{len(failures)} of {len(images)} image(s) failed verification (pack with "
                          f"--no-verify to ship them anyway): " + " | ".join(failures))


