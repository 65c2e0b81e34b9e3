"""Policies built from command-line flags, for verification without a policy file: ``--key`` (any of these
keys, like ``cosign verify --key``) and ``--certificate-identity``/``--certificate-oidc-issuer`` (keyless)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airgap.verification.trust import Trust

if TYPE_CHECKING:
    from airgap.policy.policyset import PolicySet


def _adhoc(trust: Trust, authority_kwargs: dict[str, object], label: str) -> PolicySet:
    import hashlib

    from airgap.policy.glob import Glob
    from airgap.policy.model import Authority, ImagePolicy
    from airgap.policy.policyset import PolicySet

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
                        issuer_regexp: str | None, require_tlog: bool, certificate_chain: bytes | None = None,
                        require_sct: bool = True) -> PolicySet:
    """``--certificate-identity[-regexp]`` + ``--certificate-oidc-issuer[-regexp]`` (cosign's flags): every image
    needs a keyless signature from that identity, chained to the trusted root; with ``certificate_chain``
    (``--certificate-chain``, PEM, root last) chained to that chain alone (the trusted root's CAs are not
    anchors then; its transparency and CT logs still are). ``require_sct=False``: ``--insecure-ignore-sct``."""
    from airgap.checks.keyless import Identity
    from airgap.errors import ConfigError, PolicyError
    from airgap.policy.model import KeylessSpec
    from airgap.policy.regexp import compile_go

    if not (identity or identity_regexp) or not (issuer or issuer_regexp):
        raise ConfigError("keyless verification needs --certificate-identity (or -regexp) and "
                          "--certificate-oidc-issuer (or -regexp)")
    python: dict[str, str | None] = {}
    unanchored = []
    for flag, pattern in (("--certificate-identity-regexp", identity_regexp),
                          ("--certificate-oidc-issuer-regexp", issuer_regexp)):
        python[flag] = None
        if pattern is not None:  # Go's syntax, as cosign reads these flags; matched against the whole string
            try:
                compiled = compile_go(pattern)
            except PolicyError as exc:
                raise ConfigError(f"{flag}: {exc.message}") from None
            python[flag] = compiled.python
            if not compiled.anchored:
                unanchored.append(f"{flag} {pattern!r}")
    if certificate_chain is not None:
        trust.trusted_root(None).with_fulcio_ca(certificate_chain, "--certificate-chain")  # refuse a bad file now
    spec = KeylessSpec(identities=(Identity(issuer=issuer, subject=identity,
                                            issuer_regexp=python["--certificate-oidc-issuer-regexp"],
                                            subject_regexp=python["--certificate-identity-regexp"]),),
                       ca_cert_pem=certificate_chain, insecure_ignore_sct=not require_sct)
    policies = _adhoc(trust, {"keyless": spec, "ctlog_disabled": not require_tlog}, "keyless")
    if unanchored:
        policies.warnings.append(f"command line: regexp not anchored with ^...$: {', '.join(unanchored)}; airgap "
                                 "matches the whole string (as if written ^(?:...)$), cosign (Go) accepts a match "
                                 "anywhere in it")
    return policies
