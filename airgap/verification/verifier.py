"""The verifier, and the Python API on it: ``verify_image(ref, trust) -> VerificationResult``, and many refs at once.

Given a ref served by the LOCAL registry: resolve it to a digest there (bytes checked), translate it back
to its upstream identity (translation map, else reversed prefix rules; never guessed), select the policies
for that upstream ref, discover signatures at the local registry (or the translated signature repos), and
check them offline. The only network traffic is to the local registry (through access aliases).

    from airgap import Trust, verify_image
    result = verify_image("127.0.0.1:31999/library/nginx:1.25-zarf-3793515731", Trust.load("trust/"))
    if not result: print(result.reasons)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from airgap import refs
from airgap.config import Limits
from airgap.errors import Error
from airgap.oci import deadline
from airgap.verification.result import VerificationResult
from airgap.verification.trust import Trust

if TYPE_CHECKING:
    from airgap.oci.registry import RegistryClient
    from airgap.policy.policyset import PolicySet
    from airgap.refs.translate import Aliases
    from airgap.verification.discover import Artifacts, AttachedLookup, Repo


_DEFAULT_CLIENT: RegistryClient | None = None


def default_client() -> RegistryClient:
    """One process-wide client with default options, so repeated calls reuse pooled connections."""
    global _DEFAULT_CLIENT
    if _DEFAULT_CLIENT is None:
        from airgap.oci.registry import RegistryClient

        _DEFAULT_CLIENT = RegistryClient()
    return _DEFAULT_CLIENT


@dataclass
class Verifier:
    """Reusable verification context: one registry client (pooled connections), trust, policy, aliases.

    ``policy`` overrides the trust's own policy (the CLI's ``--key``/``--certificate-identity`` modes).
    ``signature_repos`` are extra places to look for signatures (``--signature-repo``/``COSIGN_REPOSITORY``),
    spelled as the user sees them (local registry refs). ``timeout``: seconds each :meth:`verify` may spend on
    the registry (three minutes, as cosign; None: only an enclosing deadline, see :mod:`airgap.oci.deadline`);
    an image not verified in time is denied with the reason.

    ``signature_dir``: take signatures from that directory instead (what ``sign --output-dir`` writes; see
    :mod:`airgap.verification.local`). ``local_images``: refs are OCI image layouts on disk (``oci:PATH[:TAG]``
    or a directory, cosign's ``--local-image``), verified without any registry; they have no registry name, so
    only a policy matching every image (the ``--key``/``--certificate-identity`` ones) can select them.
    ``annotations``: ``key: value`` pairs every accepted signature must carry (``-a``).
    """

    trust: Trust
    policy: PolicySet | None = None
    client: RegistryClient | None = None
    aliases: Aliases | None = None
    signature_repos: Sequence[str] = ()
    timeout: float | None = Limits.timeout
    signature_dir: Path | None = None
    local_images: bool = False
    annotations: Mapping[str, str] | None = None
    _policy: PolicySet = field(init=False, repr=False)
    _client: RegistryClient = field(init=False, repr=False)
    _site: bool = field(init=False, repr=False, default=False)

    def __post_init__(self) -> None:
        from airgap.policy.policyset import PolicySet

        self._client = self.client or default_client()
        # A site judges each image by the bundles that loaded it (unless a policy is given explicitly).
        self._site = self.policy is None and self.trust.site is not None
        policy = self.policy or self.trust.policy
        if policy is None and not self._site:
            from airgap.errors import ConfigError

            raise ConfigError(f"trust {self.trust.source} has no policy.yaml, and no --key or "
                              "--certificate-identity was given: nothing to verify against")
        self._policy = policy or PolicySet(digest=self.trust.digest, where=f"site {self.trust.source}")

    def _repo(self, text: str) -> Repo:
        from airgap.verification.discover import Repo

        ref = refs.parse(text, default_tag=None)
        host = self.aliases.access_host(ref.registry) if self.aliases else ref.registry
        return Repo(refs.api_host(host), ref.repository)

    def _source(self, upstream_repo: str, trust: Trust | None = None) -> Repo:
        """A policy ``source.oci`` repo (upstream spelling) -> where it lives at the local registry (through the
        translation map of ``trust``: the bundle whose policy names it, by default the verifier's)."""
        from airgap.refs import translate

        tmap = (trust or self.trust).tmap
        ref = refs.parse(upstream_repo, default_tag=None)
        local = translate.forward_repo(ref, tmap) if tmap else None
        return self._repo(str(local or ref))

    def verify(self, ref: str) -> VerificationResult:
        """Decide whether the image ``ref`` (served by the local registry) may run, with the evidence: resolved
        and hashed there, translated back to its upstream identities, judged by the policies that apply (on a
        site, those of the bundles that loaded it). Fails closed: anything that cannot be fetched, parsed or
        checked is a denial with its reason, never an exception."""
        with deadline.deadline(self.timeout):
            result = self._verify(ref)
        if self.annotations:
            result.require_annotations(self.annotations)
        return result

    def _verify(self, ref: str) -> VerificationResult:
        from airgap.checks import cosign
        from airgap.refs import translate
        from airgap.verification import discover
        from airgap.verification.evaluate import evaluate

        try:
            if self.local_images:
                return self._verify_layout(ref)
            local = refs.parse(ref)
            repo = self._repo(local.name)
            artifacts = discover.resolve(self._client, repo, local.identifier)
            if self.signature_repos:
                artifacts.signature_repos = tuple(self._repo(r) for r in self.signature_repos)
            if self.signature_dir is not None:
                return self._verify_with_dir(ref, local, repo, artifacts)
            if self._site:
                return self._verify_site(ref, local, repo, artifacts)
            # The ref as given (its tag, when it has one, selects policies) pinned to the digest just resolved.
            upstreams, how = translate.reverse_all(local.with_digest(artifacts.digest), tmap=self.trust.tmap,
                                                   digest=artifacts.digest)
            if not upstreams and self.trust.tmap is None:
                upstreams, how = (local.with_digest(artifacts.digest),), "no translation configured: verified as named"
            names = [(local.registry, local.repository), (repo.host, repo.repository)]
            names += [(u.registry, u.repository) for u in upstreams]
            artifacts.signed_names = tuple(dict.fromkeys(cosign.docker_reference(*n) for n in names))
            return evaluate(ref, artifacts, upstreams, how, self._policy, self.trust, resolve_source=self._source,
                            annotations=self.annotations)
        except Error as exc:
            # Fail closed: anything we could not fetch or parse is a denial with the reason, not a crash.
            return VerificationResult(ref=ref, digest=None, upstream=None, upstream_source="", allowed=False,
                                      decision="deny", reasons=[str(exc)], policy_digest=self._policy.digest,
                                      trust_digest=self.trust.digest)

    def _verify_with_dir(self, ref: str, local: refs.Reference, repo: Repo, found: Artifacts) -> VerificationResult:
        """The image resolved at the registry, its signatures from :attr:`signature_dir` (nothing else)."""
        from airgap.refs import translate
        from airgap.verification.evaluate import evaluate
        from airgap.verification.local import SignatureDir

        assert self.signature_dir is not None  # noqa: S101 - the caller checked
        artifacts = SignatureDir(self.signature_dir, found.manifest, self._client.limits)
        if self._site:
            return self._verify_site(ref, local, repo, artifacts)
        upstreams, how = translate.reverse_all(local.with_digest(found.digest), tmap=self.trust.tmap,
                                               digest=found.digest)
        if not upstreams and self.trust.tmap is None:
            upstreams, how = (local.with_digest(found.digest),), "no translation configured: verified as named"
        return evaluate(ref, artifacts, upstreams, how, self._policy, self.trust, resolve_source=self._source,
                        annotations=self.annotations)

    def _verify_layout(self, ref: str) -> VerificationResult:
        """An image in an OCI layout on disk, with the signatures the layout (or :attr:`signature_dir`) holds.
        It has no registry name: it is judged as ``oci-layout/image@DIGEST``, which only a policy for every
        image (``**``) selects, and reported without an upstream."""
        from airgap.verification.evaluate import evaluate
        from airgap.verification.local import SignatureDir, open_layout_image

        limits = self._client.limits
        found = open_layout_image(ref, limits)
        artifacts: AttachedLookup = (SignatureDir(self.signature_dir, found.manifest, limits)
                                     if self.signature_dir is not None else found)
        unnamed = refs.Reference("oci-layout", "image", digest=found.digest)
        result = evaluate(ref, artifacts, (unnamed,), "local OCI layout", self._policy, self.trust,
                          resolve_source=self._source, annotations=self.annotations)
        result.upstream, result.upstream_source, result.upstreams = None, "local OCI layout", []
        return result

    def _verify_site(self, ref: str, local: refs.Reference, repo: Repo,
                     artifacts: AttachedLookup) -> VerificationResult:
        """Judge an image of a site: by the policies of every bundle that loaded it (each with its own keys and
        roots), then by the site-wide policy on top, which can only add requirements (see
        :mod:`airgap.verification.scopes`). Every judgement must allow."""
        from dataclasses import replace
        from functools import partial

        from airgap.checks import cosign
        from airgap.refs import translate
        from airgap.verification.discover import Artifacts
        from airgap.verification.evaluate import evaluate

        pinned = local.with_digest(artifacts.digest)
        owned = []
        for name, scope in self.trust.scopes.items():
            ups, how = translate.reverse_all(pinned, tmap=scope.tmap, digest=artifacts.digest)
            if ups:
                owned.append((name, scope, ups, how))
        everyone = list(dict.fromkeys(u for *_, ups, _how in owned for u in ups))
        if not owned:
            return self._denied(ref, artifacts.digest, f"{pinned} was not loaded by any bundle of the site "
                                f"{self.trust.source} ({len(self.trust.scopes)} bundle(s) recorded)")
        names = [(local.registry, local.repository), (repo.host, repo.repository)]
        names += [(u.registry, u.repository) for u in everyone]
        if isinstance(artifacts, Artifacts):
            artifacts.signed_names = tuple(dict.fromkeys(cosign.docker_reference(*n) for n in names))
        judged: list[tuple[str, VerificationResult]] = []
        for name, scope, ups, how in owned:
            if scope.policy is None:
                judged.append((f"bundle {name}", self._denied(ref, artifacts.digest, "the bundle ships no policy")))
                continue
            judged.append((f"bundle {name}", evaluate(
                ref, artifacts, ups, how, scope.policy, scope,
                resolve_source=partial(self._source, trust=scope), annotations=self.annotations)))
        if self.trust.policy is not None:  # on top: only its matching policies and approved registries count
            additive = replace(self.trust.policy, no_match="allow", allow=())
            judged.append(("site policy", evaluate(ref, artifacts, everyone, "site", additive, self.trust,
                                                   resolve_source=self._source, annotations=self.annotations)))
        return _combine(ref, artifacts.digest, everyone, judged, self.trust.digest)

    def _denied(self, ref: str, digest: str | None, reason: str) -> VerificationResult:
        return VerificationResult(ref=ref, digest=digest, upstream=None, upstream_source="", allowed=False,
                                  decision="deny", reasons=[reason], policy_digest=self._policy.digest,
                                  trust_digest=self.trust.digest)

    async def averify(self, ref: str) -> VerificationResult:
        """:meth:`verify` for asyncio callers: the same code path, run on the loop's default executor (registry
        I/O and crypto are blocking), so the event loop stays free."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.verify, ref)

    def verify_many(self, images: Sequence[str], jobs: int = 8) -> list[VerificationResult]:
        """Verify several refs concurrently over one connection pool; results in input order."""
        if len(images) <= 1:
            return [self.verify(r) for r in images]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(images)))) as pool:
            return list(pool.map(deadline.carry(self.verify), images))  # under the caller's deadline too


async def verify_image_async(ref: str, trust: Trust, *, policy: PolicySet | None = None,
                             client: RegistryClient | None = None, aliases: Aliases | None = None,
                             signature_repos: Sequence[str] | None = None) -> VerificationResult:
    """:func:`verify_image` for asyncio callers (see :meth:`Verifier.averify`)."""
    if signature_repos is None:
        env = os.environ.get("COSIGN_REPOSITORY")
        signature_repos = [env] if env else []
    return await Verifier(trust, policy, client, aliases, signature_repos).averify(ref)


def _combine(ref: str, digest: str, upstreams: Sequence[refs.Reference],
             judged: Sequence[tuple[str, VerificationResult]], trust_digest: str) -> VerificationResult:
    """One result from the judgements of several scopes: allowed only when every one allows; reasons, warnings
    and policies say which scope they come from."""
    import hashlib

    allowed = all(r.allowed for _, r in judged)
    warned = any(r.decision == "warn" for _, r in judged)
    policy_digest = "sha256:" + hashlib.sha256("".join(f"{s}\0{r.policy_digest}\0" for s, r in judged)
                                               .encode()).hexdigest()
    out = VerificationResult(
        ref=ref, digest=digest, upstream=str(upstreams[0]) if upstreams else None,
        upstream_source="; ".join(f"{s}: {r.upstream_source}" for s, r in judged if r.upstream_source),
        allowed=allowed, decision="deny" if not allowed else ("warn" if warned else "allow"),
        policy_digest=policy_digest, trust_digest=trust_digest, upstreams=[str(u) for u in upstreams])
    for scope, result in judged:
        out.reasons += [f"{scope}: {r}" for r in result.reasons]
        out.warnings += [f"{scope}: {w}" for w in result.warnings]
        for policy in result.policies:
            policy.scope = scope
            out.policies.append(policy)
    return out


def verify_image(ref: str, trust: Trust, *, policy: PolicySet | None = None, client: RegistryClient | None = None,
                 aliases: Aliases | None = None, signature_repos: Sequence[str] | None = None,
                 timeout: float | None = Limits.timeout) -> VerificationResult:
    """Decide offline whether the image ``ref`` (served by the local registry) may run; see the module doc.

    ``signature_repos`` defaults to ``COSIGN_REPOSITORY`` when that is set, as in cosign. ``timeout``: seconds
    the registry may take in all (three minutes, as cosign); a registry that does not answer in time (or
    drips its answer) gives a denial naming the host and the request, never an exception.
    """
    if signature_repos is None:
        env = os.environ.get("COSIGN_REPOSITORY")
        signature_repos = [env] if env else []
    return Verifier(trust, policy, client, aliases, signature_repos, timeout).verify(ref)
