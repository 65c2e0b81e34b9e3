"""The Python API: ``verify_image(ref, trust) -> VerificationResult``, and many refs at once.

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
from airgap.errors import Error
from airgap.trust import Trust
from airgap.verify import VerificationResult

if TYPE_CHECKING:
    from airgap.discover import Repo
    from airgap.oci.registry import RegistryClient
    from airgap.policy import PolicySet
    from airgap.translate import Aliases


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
    spelled as the user sees them (local registry refs).
    """

    trust: Trust
    policy: PolicySet | None = None
    client: RegistryClient | None = None
    aliases: Aliases | None = None
    signature_repos: Sequence[str] = ()
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
        from airgap.discover import Repo

        ref = refs.parse(text, default_tag=None)
        host = self.aliases.access_host(ref.registry) if self.aliases else ref.registry
        return Repo(refs.api_host(host), ref.repository)

    def _source(self, upstream_repo: str) -> Repo:
        """A policy ``source.oci`` repo (upstream spelling) -> where it lives at the local registry."""
        from airgap import translate

        ref = refs.parse(upstream_repo, default_tag=None)
        local = translate.forward_repo(ref, self.trust.tmap) if self.trust.tmap else None
        return self._repo(str(local or ref))

    def verify(self, ref: str) -> VerificationResult:
        from airgap import cosign, discover, translate
        from airgap.verify import evaluate

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
            return list(pool.map(self.verify, images))


def verify_image(ref: str, trust: Trust, *, policy: PolicySet | None = None, client: RegistryClient | None = None,
                 aliases: Aliases | None = None, signature_repos: Sequence[str] | None = None
                 ) -> VerificationResult:
    """Decide offline whether the image ``ref`` (served by the local registry) may run; see the module doc.

    ``signature_repos`` defaults to ``COSIGN_REPOSITORY`` when that is set, as in cosign.
    """
    if signature_repos is None:
        env = os.environ.get("COSIGN_REPOSITORY")
        signature_repos = [env] if env else []
    return Verifier(trust, policy, client, aliases, signature_repos).verify(ref)


def _adhoc(trust: Trust, authority_kwargs: dict[str, object], label: str) -> PolicySet:
    import hashlib

    from airgap.policy import PolicySet
    from airgap.policy_glob import Glob
    from airgap.policy_model import Authority, ImagePolicy

    authority = Authority(name=label, **authority_kwargs)  # type: ignore[arg-type]
    policy = ImagePolicy(name=f"command-line {label}", globs=(Glob.compile("**"),), authorities=(authority,),
                         origin="command line")
    digest = "sha256:" + hashlib.sha256(repr((label, sorted(trust.keys), authority_kwargs.get("ctlog_disabled"),
                                              authority_kwargs.get("keyless"))).encode()).hexdigest()
    return PolicySet(policies=[policy], no_match="deny", digest=digest, where="command line")


def policy_for_keys(trust: Trust, *, require_tlog: bool) -> PolicySet:
    """``--key``: every image needs a signature by one of the trust's keys (cosign verify --key)."""
    return _adhoc(trust, {"keys": tuple(e.key for e in trust.keys.values()), "ctlog_disabled": not require_tlog},
                  "key")


def policy_for_identity(trust: Trust, *, identity: str | None, identity_regexp: str | None, issuer: str | None,
                        issuer_regexp: str | None, require_tlog: bool) -> PolicySet:
    """``--certificate-identity[-regexp]`` + ``--certificate-oidc-issuer[-regexp]`` (cosign's flags): every image
    needs a keyless signature from that identity, chained to the trusted root."""
    import re

    from airgap.checks import Identity
    from airgap.errors import ConfigError
    from airgap.policy_model import KeylessSpec

    if not (identity or identity_regexp) or not (issuer or issuer_regexp):
        raise ConfigError("keyless verification needs --certificate-identity (or -regexp) and "
                          "--certificate-oidc-issuer (or -regexp)")
    for flag, pattern in (("--certificate-identity-regexp", identity_regexp),
                          ("--certificate-oidc-issuer-regexp", issuer_regexp)):
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{flag}: invalid regexp {pattern!r}: {exc}") from None
    spec = KeylessSpec(identities=(Identity(issuer=issuer, subject=identity, issuer_regexp=issuer_regexp,
                                            subject_regexp=identity_regexp),))
    return _adhoc(trust, {"keyless": spec, "ctlog_disabled": not require_tlog}, "keyless")
