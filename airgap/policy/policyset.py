"""A policy file: ClusterImagePolicy documents as they are plus airgap's settings, and which policies apply.

A policy file is multi-document YAML holding any number of

* ``ClusterImagePolicy`` documents (``apiVersion: policy.sigstore.dev/v1beta1`` or ``v1alpha1``), with
  policy-controller's fields (see :mod:`airgap.policy.model` for how they combine), plus airgap's
  extensions: ``spec.dockerReference: strict|report``, ``spec.match: {authorities: N}`` (N-of-M; the list
  form of ``spec.match`` is policy-controller's resource selector, kept but not used offline),
  ``spec.policy: {type: cel, data: EXPR}``, ``key: {name: N}`` (a key named in the trust's key manifest)
  and ``ctlog: {disabled: true}``;
* ``kind: List`` / ``ClusterImagePolicyList`` documents (what ``kubectl get cip -o yaml`` prints), whose
  ``items`` are read as documents of their own (errors say ``document 1 item 3 (name)``);
* Kyverno ``ClusterPolicy``/``Policy`` documents (``kyverno.io/v1``, ``v2beta1``) whose rules are
  ``verifyImages`` rules, translated into the same model (see :mod:`airgap.policy.kyverno` for the mapping);
* policy-controller ``TrustRoot`` documents (``policy.sigstore.dev/v1alpha1``, the ``sigstoreKeys`` form; see
  :mod:`airgap.policy.trustroot`): trusted roots that authorities name in ``trustRootRef``;
* at most one ``kind: AirgapPolicy`` document (``apiVersion: airgap.dev/v1alpha1``) with airgap's global
  settings under ``spec``: ``noMatchPolicy: allow|warn|deny`` (default deny: an image no policy covers is
  refused), ``allow: [globs]`` (images admitted without signatures, like a ``static: pass`` policy),
  ``approvedRegistries: [host[/path]]`` (upstream registries an image must come from; empty: any) and
  ``mode: enforce|warn`` (default for policies that set none).

What is NOT supported offline raises a clear :class:`PolicyError` naming file, document and field: KMS keys,
CUE/Rego policies (use ``type: cel``), remote/configMap policies. Regexps (``issuerRegExp``,
``subjectRegExp``) are read in Go's RE2 syntax (:mod:`airgap.policy.regexp`: constructs RE2 lacks are refused)
and must match the WHOLE string, which is stricter than Go's ``MatchString`` used by cosign and
policy-controller (unanchored there): write ``.*foo.*`` for "contains". A regexp not written ``^...$`` loads
with a warning in :attr:`PolicySet.warnings` naming the policy and the field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from airgap.errors import PolicyError
from airgap.policy.cip import Doc, FileKeyResolver, KeyResolver, parse_cip
from airgap.policy.glob import Glob
from airgap.policy.kyverno import KYVERNO_API_VERSIONS, KYVERNO_KINDS, parse_kyverno
from airgap.policy.model import ImagePolicy, PreDecision
from airgap.policy.trustroot import TRUSTROOT_API_VERSIONS, parse_trustroot
from airgap.refs import Reference

if TYPE_CHECKING:
    from airgap.keys.public import PublicKey


CIP_API_VERSIONS = ("policy.sigstore.dev/v1beta1", "policy.sigstore.dev/v1alpha1")
AIRGAP_API_VERSIONS = ("airgap.dev/v1alpha1",)
LIST_KINDS = ("List", "ClusterImagePolicyList", "TrustRootList", "ClusterPolicyList", "PolicyList")


def _norm_registry(text: str) -> str:
    first, sep, rest = text.rstrip("/").partition("/")
    if first in ("index.docker.io", "registry-1.docker.io"):
        first = "docker.io"
    return f"{first}/{rest}" if sep else first


@dataclass
class PolicySet:
    """Everything one policy file says: the image policies and airgap's global settings."""

    policies: list[ImagePolicy] = field(default_factory=list)
    no_match: Literal["allow", "warn", "deny"] = "deny"
    allow: tuple[Glob, ...] = ()
    approved_registries: tuple[str, ...] = ()
    default_mode: Literal["enforce", "warn"] = "enforce"
    digest: str = ""
    where: str = ""
    # Things the file says that load but deserve a second look (an unanchored regexp: Go's meaning differs),
    # one line each; the CLI prints them to stderr (and in --json), the webhook logs them.
    warnings: list[str] = field(default_factory=list)
    # policy-controller TrustRoot documents, by metadata.name: trusted_root.json bytes that authorities reach
    # through trustRootRef (see airgap.policy.trustroot); never a default root.
    trust_roots: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, key_resolver: KeyResolver | None = None,
             keys_dir: str | os.PathLike[str] | None = None,
             keys: Mapping[str, PublicKey | Sequence[PublicKey]] | None = None) -> PolicySet:
        """Read a policy file.

        Without ``key_resolver``, ``key.secretRef`` resolves next to the file, then in ``keys_dir``, and
        ``key.name`` from ``keys`` (the trust's key manifest: name -> public key).
        """
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read policy file {p}: {getattr(exc, 'strerror', None) or exc}") from None
        if key_resolver is None:
            dirs = [p.parent] + ([Path(keys_dir)] if keys_dir is not None else [])
            key_resolver = FileKeyResolver(dirs, keys)
        return cls.from_yaml(text, str(path), key_resolver=key_resolver)

    @classmethod
    def from_yaml(cls, text: str, where: str = "policy", *, key_resolver: KeyResolver | None = None) -> PolicySet:
        from airgap.yamldoc import load_all

        docs = load_all(text, where, PolicyError)  # strict: a second `authorities:` is an error, not the winner
        out = cls(where=where)
        settings: str | None = None
        cips: list[tuple[Doc, dict[str, Any]]] = []
        roots: list[tuple[Doc, dict[str, Any]]] = []
        kyverno: list[tuple[Doc, dict[str, Any]]] = []
        canonical: list[Any] = []
        bodies: list[tuple[Doc, Any]] = []
        for index, raw in enumerate(docs, start=1):
            if raw is None:
                continue
            if isinstance(raw, dict) and raw.get("kind") in LIST_KINDS:  # `kubectl get cip -o yaml` output
                doc = Doc(where, index)
                listing = doc.fields(raw, "", ("apiVersion", "kind", "metadata", "items"))
                items = doc.list_(listing.get("items", []), "items")
                bodies.extend((Doc(where, index, item=i), item) for i, item in enumerate(items))
            else:
                bodies.append((Doc(where, index), raw))
        for doc, raw in bodies:
            body = doc.fields(raw, "", ("apiVersion", "kind", "metadata", "spec", "status"), ("kind",))
            meta = body.get("metadata") or {}
            if not isinstance(meta, dict):
                raise doc.err("metadata", f"expected a mapping, got {type(meta).__name__}")
            doc.name = str(meta["name"]) if meta.get("name") else None
            kind, api = body.get("kind"), body.get("apiVersion")
            canonical.append({k: body.get(k) for k in ("apiVersion", "kind", "spec")} | {"name": doc.name})
            if kind == "ClusterImagePolicy":
                doc.choice(api, "apiVersion", CIP_API_VERSIONS)
                if not doc.name:
                    raise doc.err("metadata.name", "required field missing")
                cips.append((doc, body))
            elif kind in KYVERNO_KINDS:
                doc.choice(api, "apiVersion", KYVERNO_API_VERSIONS)
                if not doc.name:
                    raise doc.err("metadata.name", "required field missing")
                kyverno.append((doc, body))
            elif kind == "TrustRoot":
                doc.choice(api, "apiVersion", TRUSTROOT_API_VERSIONS)
                if not doc.name:
                    raise doc.err("metadata.name", "required field missing")
                roots.append((doc, body))
            elif kind == "AirgapPolicy":
                doc.choice(api, "apiVersion", AIRGAP_API_VERSIONS)
                if settings is not None:
                    raise doc.err("kind", f"a second AirgapPolicy (the first is {settings})")
                settings = doc.label
                out._settings(doc, body.get("spec") or {})
            else:
                raise doc.err("kind", f"unknown kind {kind!r} (expected ClusterImagePolicy, TrustRoot, "
                                      "ClusterPolicy, Policy or AirgapPolicy)")
        seen: dict[str | None, str] = {}
        for d, _body in cips:
            if d.name in seen:
                raise d.err("metadata.name", f"duplicate policy name {d.name!r} (also {seen[d.name]})")
            seen[d.name] = d.label
        for d, body in cips:
            out.policies.append(parse_cip(d, body, out.default_mode, key_resolver))
            out._note(d)
        origins = {p.name: d.label for (d, _), p in zip(cips, out.policies, strict=True)}
        for d, body in kyverno:  # one image policy per attestor set of each verifyImages entry
            for policy in parse_kyverno(d, body, out.default_mode, key_resolver):
                if policy.name in origins:
                    raise d.err("metadata.name", f"policy name {policy.name!r} is taken (by {origins[policy.name]})")
                origins[policy.name] = d.label
                out.policies.append(policy)
            out._note(d)
        for d, body in roots:
            if d.name in out.trust_roots:
                first = next(other.label for other, _ in roots if other.name == d.name)
                raise d.err("metadata.name", f"duplicate TrustRoot name {d.name!r} (also {first})")
            out.trust_roots[str(d.name)] = parse_trustroot(d, body)
        out.digest = _digest(canonical, out.policies)
        return out

    def _note(self, doc: Doc) -> None:
        warning = doc.warning()
        if warning is not None:
            self.warnings.append(warning)

    def _settings(self, doc: Doc, spec: Any) -> None:
        s = doc.fields(spec, "spec", ("noMatchPolicy", "allow", "approvedRegistries", "mode"))
        self.no_match = doc.choice(s.get("noMatchPolicy", "deny"), "spec.noMatchPolicy",  # type: ignore[assignment]
                                   ("allow", "warn", "deny"))
        self.default_mode = doc.choice(s.get("mode", "enforce"), "spec.mode", ("enforce", "warn"))  # type: ignore[assignment]
        self.allow = tuple(doc.glob(g, f"spec.allow[{i}]")
                           for i, g in enumerate(doc.list_(s.get("allow", []), "spec.allow")))
        regs = []
        for i, r in enumerate(doc.list_(s.get("approvedRegistries", []), "spec.approvedRegistries")):
            text = doc.str_(r, f"spec.approvedRegistries[{i}]")
            if "*" in text or not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+(/[a-z0-9._\-]+)*/?", text):
                raise doc.err(f"spec.approvedRegistries[{i}]",
                              f"invalid registry {text!r}: expected HOST[:PORT][/PATH]")
            regs.append(_norm_registry(text))
        self.approved_registries = tuple(regs)

    def registry_approved(self, ref: Reference) -> bool:
        if not self.approved_registries:
            return True
        return any(ref.name == r or ref.name.startswith(r + "/") or ref.registry == r
                   for r in self.approved_registries)

    def pre_decision(self, upstream_ref: Reference) -> PreDecision | None:
        """Decide from the upstream ref alone: a registry outside ``approvedRegistries`` is refused (even if
        allow-listed), an allow-listed image is admitted without signatures; otherwise None (verify it)."""
        if not self.registry_approved(upstream_ref):
            return PreDecision(False, f"registry not approved: {upstream_ref.name} is not under "
                                      + ", ".join(self.approved_registries))
        for glob in self.allow:
            if glob.matches(upstream_ref):
                return PreDecision(True, f"allowed by allow-list glob {glob.text!r}")
        return None

    def select(self, upstream_ref: Reference) -> list[ImagePolicy]:
        """The policies whose globs match; the image must satisfy every one of them."""
        return [p for p in self.policies if p.matches(upstream_ref)]

    def pre_decision_for(self, upstreams: Sequence[Reference]) -> PreDecision | None:
        """:meth:`pre_decision` for an image with several upstream identities (a digest shipped under several
        tags): refused when any identity is from a registry not approved, admitted without signatures only
        when every identity is allow-listed, otherwise None (verify it)."""
        decisions = [self.pre_decision(u) for u in upstreams]
        refused = next((d for d in decisions if d is not None and not d.allowed), None)
        if refused is not None:
            return refused
        if decisions and all(d is not None and d.allowed for d in decisions):
            return decisions[0]
        return None

    def select_for(self, upstreams: Sequence[Reference]) -> list[ImagePolicy]:
        """The policies whose globs match ANY of the image's upstream identities: all of them apply."""
        return [p for p in self.policies if any(p.matches(u) for u in upstreams)]


def _digest(canonical: list[Any], policies: list[ImagePolicy]) -> str:
    """sha256 over the parsed documents (canonical JSON) and the key ids every authority resolved to."""
    from airgap.keys.public import key_id

    resolved = {p.name: {a.name: [key_id(k) for k in a.keys or ()] for a in p.authorities} for p in policies}
    blob = json.dumps({"documents": canonical, "keys": resolved}, sort_keys=True, separators=(",", ":"),
                      default=str, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
