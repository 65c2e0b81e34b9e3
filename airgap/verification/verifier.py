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
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    from airgap.verification.discover import Repo


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
    """

    trust: Trust
    policy: PolicySet | None = None
    client: RegistryClient | None = None
    aliases: Aliases | None = None
    signature_repos: Sequence[str] = ()
    timeout: float | None = Limits.timeout
    _policy: PolicySet = field(init=False, repr=False)
    _client: RegistryClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._client = self.client or default_client()
        policy = self.policy or self.trust.policy
        if policy is None:
            from airgap.errors import ConfigError

            raise ConfigError(f"trust {self.trust.source} has no policy.yaml, and no --key or "
                              "--certificate-identity was given: nothing to verify against")
        self._policy = policy

    def _repo(self, text: str) -> Repo:
        from airgap.verification.discover import Repo

        ref = refs.parse(text, default_tag=None)
        host = self.aliases.access_host(ref.registry) if self.aliases else ref.registry
        return Repo(refs.api_host(host), ref.repository)

    def _source(self, upstream_repo: str) -> Repo:
        """A policy ``source.oci`` repo (upstream spelling) -> where it lives at the local registry."""
        from airgap.refs import translate

        ref = refs.parse(upstream_repo, default_tag=None)
        local = translate.forward_repo(ref, self.trust.tmap) if self.trust.tmap else None
        return self._repo(str(local or ref))

    def verify(self, ref: str) -> VerificationResult:
        with deadline.deadline(self.timeout):
            return self._verify(ref)

    def _verify(self, ref: str) -> VerificationResult:
        from airgap.checks import cosign
        from airgap.refs import translate
        from airgap.verification import discover
        from airgap.verification.evaluate import evaluate

        try:
            local = refs.parse(ref)
            repo = self._repo(local.name)
            artifacts = discover.resolve(self._client, repo, local.identifier)
            if self.signature_repos:
                artifacts.signature_repos = tuple(self._repo(r) for r in self.signature_repos)
            upstream, how = translate.reverse(local.with_digest(artifacts.digest), tmap=self.trust.tmap,
                                              digest=artifacts.digest)
            if upstream is None and self.trust.tmap is None:
                upstream, how = local.with_digest(artifacts.digest), "no translation configured: verified as named"
            names = [(local.registry, local.repository), (repo.host, repo.repository)]
            if upstream is not None:
                names.append((upstream.registry, upstream.repository))
            artifacts.signed_names = tuple(dict.fromkeys(cosign.docker_reference(*n) for n in names))
            return evaluate(ref, artifacts, upstream, how, self._policy, self.trust, resolve_source=self._source)
        except Error as exc:
            # Fail closed: anything we could not fetch or parse is a denial with the reason, not a crash.
            return VerificationResult(ref=ref, digest=None, upstream=None, upstream_source="", allowed=False,
                                      decision="deny", reasons=[str(exc)], policy_digest=self._policy.digest,
                                      trust_digest=self.trust.digest)

    def verify_many(self, images: Sequence[str], jobs: int = 8) -> list[VerificationResult]:
        """Verify several refs concurrently over one connection pool; results in input order."""
        if len(images) <= 1:
            return [self.verify(r) for r in images]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(images)))) as pool:
            return list(pool.map(deadline.carry(self.verify), images))  # under the caller's deadline too


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
