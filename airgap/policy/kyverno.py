"""Kyverno ``ClusterPolicy``/``Policy`` ``verifyImages`` rules (``kyverno.io/v1``, ``kyverno.io/v2beta1``) as
airgap image policies.

Each ``verifyImages`` entry of each rule becomes one :class:`~airgap.policy.model.ImagePolicy` per attestor set
(``attestors[j]``) and one per attestor set of each attestation (``attestations[k].attestors[j]``), all with the
entry's images: an image must satisfy every one of them, as Kyverno requires every set. Within a set, ``count: N``
(default: every entry) becomes ``match: {authorities: N}``: N entries verified by N DISTINCT signers (Kyverno counts
entries; two entries naming one key count once here). The mapping:

=================================  ==========================================================================
Kyverno                            airgap
=================================  ==========================================================================
``imageReferences``                globs: ``*`` (any characters, ``/`` too) is ``**``; a ``docker.io/NAME...``
                                   pattern also covers ``docker.io/library/NAME...`` (Kyverno sees a pod's
                                   ``nginx`` as ``docker.io/nginx``); ``?`` has no glob form and is refused
``skipImageReferences``            Kyverno's wildcards, exactly; an image is skipped only when EVERY spelling
                                   Kyverno could have seen matches (``docker.io/x`` and ``docker.io/library/x``,
                                   ``:tag`` and ``@digest``)
``validationFailureAction``,       ``Audit`` -> ``mode: warn``, ``Enforce`` -> ``mode: enforce``; neither:
``verifyImages[].failureAction``   the AirgapPolicy's mode (enforce unless set; Kyverno's own default is Audit)
``keys.publicKeys``                key authorities, one per PEM key in the string (Kyverno splits them the
                                   same way, and ``count`` counts them); ``k8s://NS/NAME`` and ``secret`` are
                                   looked up like a ClusterImagePolicy ``secretRef``
``signatureAlgorithm``             ``hashAlgorithm``
``rekor`` absent or ``url``        a verified Rekor entry is required (``url`` is recorded)
``rekor.ignoreTlog: true``         ``ctlog: {disabled: true}``
``keyless.subject``/``issuer``     exact, or Kyverno wildcards (``*@example.com``) as a whole-string pattern
``subjectRegExp``/``issuerRegExp`` Go regexps (:mod:`airgap.policy.regexp`), whole string; subject and
                                   subjectRegExp together: either may match (as Kyverno)
``keyless.roots``                  ``ca-cert``: the only anchor
``ctlog.ignoreSCT: true``          ``insecureIgnoreSCT: true``
``certificates.cert``              the pinned signing certificate's key (with ``certChain``: checked at load
                                   time to be issued through that chain; the pinned certificate's SCT is not
                                   looked at)
``certificates.certChain`` alone   keyless with that chain as the only anchor, any identity
``repository``                     ``source: [{oci: REPO}]`` (an attestor's own ``repository`` wins)
``attestations[].type``            ``attestations[].predicateType`` (exact), with ``conditions`` translated to
                                   CEL (:mod:`airgap.policy.kyverno_conditions`); EVERY verified attestation
                                   of the type from the attestor must satisfy them, as in Kyverno
``mutateDigest``, ``verifyDigest``  accepted: airgap verifies digests and its webhook pins them
``required``, ``useCache``,        accepted: airgap verifies every matching image, from its own cache and
``imageRegistryCredentials``,      registry settings, and checks legacy signatures and referrers alike
``cosignOCI11``, ``match``,
``exclude``, ``background``, ...
=================================  ==========================================================================

A ``Policy`` (namespaced) applies to every image airgap verifies, whatever the namespace: stricter, never looser.
Anything else is refused with an error naming file, document, rule and field: rules without ``verifyImages``,
``type: Notary``/``SigstoreBundle``, nested ``attestor`` sets, ``annotations``, ``additionalExtensions``, KMS
keys, custom Rekor/CT/TSA keys (``pubkey``, ``tsaCertChain``: use a trust directory or a TrustRoot),
``validate``, ``context``, ``preconditions``, variables, the deprecated one-key fields and attestations
without attestors (Kyverno would accept any Sigstore signer for those).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airgap.errors import PolicyError
from airgap.policy.glob import Glob
from airgap.policy.kyverno_attestors import AttestorContext, entry_authorities, fields, signature_repository
from airgap.policy.model import AttestationSpec, Authority, ImagePolicy
from airgap.policy.regexp import wildcard_regexp

if TYPE_CHECKING:
    from airgap.policy.cip import Doc, KeyResolver
    from airgap.refs import Reference

KYVERNO_API_VERSIONS = ("kyverno.io/v1", "kyverno.io/v2beta1")
KYVERNO_KINDS = ("ClusterPolicy", "Policy")
_HUB = ("docker.io", "index.docker.io")
_HASHES = ("sha224", "sha256", "sha384", "sha512")
_PEM_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", re.DOTALL)
_NOT_HERE = "airgap translates verifyImages rules only"

_SPEC = ("rules", "validationFailureAction", "background", "failurePolicy", "webhookTimeoutSeconds", "admission",
         "schemaValidation", "emitWarning", "applyRules")
_SPEC_REFUSED = {
    "validationFailureActionOverrides": "per-namespace actions are not supported (airgap does not see namespaces)",
    "webhookConfiguration": "not supported (airgap runs its own webhook)",
    "generateExisting": _NOT_HERE, "generateExistingOnPolicyUpdate": _NOT_HERE,
    "mutateExistingOnPolicyUpdate": _NOT_HERE, "useServerSideApply": _NOT_HERE,
}
_RULE = ("name", "match", "exclude", "verifyImages", "skipBackgroundRequests", "reportProperties")
_RULE_REFUSED = {
    "context": "not supported (airgap evaluates no Kyverno variables)",
    "preconditions": "not supported (airgap evaluates no Kyverno variables)",
    "celPreconditions": "not supported", "imageExtractors": "not supported (airgap verifies image references)",
    "mutate": _NOT_HERE, "validate": _NOT_HERE, "generate": _NOT_HERE,
}
_VERIFY = ("failureAction", "type", "imageReferences", "skipImageReferences", "attestors", "attestations",
           "repository", "mutateDigest", "verifyDigest", "required", "imageRegistryCredentials", "useCache")
_VERIFY_V1 = (*_VERIFY, "image", "cosignOCI11")
_VERIFY_REFUSED = {
    "validate": "not supported (deny conditions over verified attestations)",
    "key": "the deprecated one-key form is not supported; write attestors: [{entries: [{keys: {publicKeys: ...}}]}]",
    "roots": "the deprecated one-key form is not supported; write attestors: [{entries: [{keyless: {roots: ...}}]}]",
    "subject": "the deprecated one-key form is not supported; write attestors: [{entries: [{keyless: ...}]}]",
    "issuer": "the deprecated one-key form is not supported; write attestors: [{entries: [{keyless: ...}]}]",
    "annotations": "not supported (airgap does not check signature annotations)",
    "additionalExtensions": "not supported (airgap does not check certificate extensions)",
}


@dataclass(frozen=True)
class SkipPattern:
    """One ``skipImageReferences`` pattern with Kyverno's wildcards (``*`` any run of characters, ``?`` one),
    matched against the strings Kyverno builds for an image (``registry/path:tag``, or ``@digest``)."""

    text: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, text: str) -> SkipPattern:
        return cls(text, re.compile(wildcard_regexp(text)))

    def matches(self, ref: Reference) -> bool:
        """True only when every spelling a pod could have used matches: skipping is the weaker choice."""
        return all(self.pattern.fullmatch(s) for s in spellings(ref))


def spellings(ref: Reference) -> list[str]:
    """The strings Kyverno could have matched for ``ref``: its names (Docker Hub's with and without ``library/``
    and ``index.``), each with ``:tag`` and/or ``@digest`` (``:latest`` when the ref has neither)."""
    names = [ref.name]
    if ref.registry == "docker.io":
        path = ref.repository
        short = path[len("library/"):] if path.startswith("library/") else None
        names = [f"{host}/{p}" for host in _HUB for p in ([path, short] if short else [path])]
    suffixes = ([f":{ref.tag}"] if ref.tag else []) + ([f"@{ref.digest}"] if ref.digest else []) or [":latest"]
    return [n + s for n in names for s in suffixes]


def image_globs(text: str) -> list[Glob]:
    """A Kyverno ``imageReferences`` pattern as globs that match at least what Kyverno's pattern matches."""
    if "?" in text:
        raise PolicyError(f"invalid image reference {text!r}: '?' has no glob equivalent (use *)")
    glob = re.sub(r"\*+", "**", text)
    first, sep, rest = glob.partition("/")
    forms = [glob]
    if sep and first in _HUB and "/" not in rest and not rest.startswith("library"):
        forms.append(f"{first}/library/{rest}")  # Kyverno spells a pod's `nginx` docker.io/nginx
    return [Glob.compile(g) for g in forms]


def parse_kyverno(doc: Doc, raw: dict[str, Any], default_mode: str | None,
                  resolver: KeyResolver | None) -> list[ImagePolicy]:
    """The image policies of one Kyverno ClusterPolicy or Policy document."""
    spec = fields(doc, raw.get("spec"), "spec", _SPEC, _SPEC_REFUSED, ("rules",))
    spec_action = spec.get("validationFailureAction")
    if spec_action is not None:
        doc.choice(spec_action, "spec.validationFailureAction", ("Audit", "Enforce", "audit", "enforce"))
    if spec.get("applyRules") is not None:
        doc.choice(spec["applyRules"], "spec.applyRules", ("All",))
    if spec.get("failurePolicy") is not None:
        doc.choice(spec["failurePolicy"], "spec.failurePolicy", ("Fail", "Ignore"))  # airgap always fails closed
    for flag in ("background", "admission", "schemaValidation", "emitWarning"):
        if spec.get(flag) is not None:
            doc.bool_(spec[flag], f"spec.{flag}")
    meta = raw.get("metadata") or {}
    base = doc.name or f"document-{doc.index}"
    if raw.get("kind") == "Policy":
        base = f"{meta.get('namespace') or 'default'}/{base}"
    v1 = raw.get("apiVersion") == "kyverno.io/v1"
    policies: list[ImagePolicy] = []
    for r, rule in enumerate(doc.list_(spec["rules"], "spec.rules")):
        rpath = f"spec.rules[{r}]"
        rdoc = copy.copy(doc)  # errors name the rule too; warnings still go to the document's list
        if isinstance(rule, dict) and isinstance(rule.get("name"), str) and rule["name"]:
            rdoc.name = f"{doc.name}, rule {rule['name']}"
        body = fields(rdoc, rule, rpath, _RULE, _RULE_REFUSED, ("name",))
        name = rdoc.str_(body["name"], f"{rpath}.name")
        if not body.get("verifyImages"):
            raise rdoc.err(f"{rpath}.verifyImages", f"no verifyImages; {_NOT_HERE}")
        for field in ("match", "exclude"):  # resource selection: airgap applies the rule to every image it checks
            if body.get(field) is not None and not isinstance(body[field], dict):
                raise rdoc.err(f"{rpath}.{field}", "expected a mapping")
        items = rdoc.list_(body["verifyImages"], f"{rpath}.verifyImages")
        for i, item in enumerate(items):
            prefix = f"{base}/{name}" + (f"/verifyImages[{i}]" if len(items) > 1 else "")
            policies += _verify_images(rdoc, item, f"{rpath}.verifyImages[{i}]", prefix, spec_action, default_mode,
                                       resolver, v1)
    return policies


def _verify_images(doc: Doc, item: Any, path: str, prefix: str, spec_action: Any, default_mode: str | None,
                   resolver: KeyResolver | None, v1: bool) -> list[ImagePolicy]:
    iv = fields(doc, item, path, _VERIFY_V1 if v1 else _VERIFY, _VERIFY_REFUSED)
    kind = iv.get("type", "Cosign")
    if kind != "Cosign":
        doc.choice(kind, f"{path}.type", ("Cosign", "Notary", "SigstoreBundle"))
        raise doc.err(f"{path}.type", f"{kind} verification is not supported (airgap verifies Cosign signatures "
                                      "and sigstore bundles with type Cosign)")
    for flag in ("mutateDigest", "verifyDigest", "required", "useCache", "cosignOCI11"):
        if iv.get(flag) is not None:
            doc.bool_(iv[flag], f"{path}.{flag}")
    if iv.get("imageRegistryCredentials") is not None and not isinstance(iv["imageRegistryCredentials"], dict):
        raise doc.err(f"{path}.imageRegistryCredentials", "expected a mapping")
    patterns = [(f"{path}.imageReferences[{n}]", p) for n, p in
                enumerate(doc.list_(iv.get("imageReferences") or [], f"{path}.imageReferences"))]
    if iv.get("image"):
        patterns.append((f"{path}.image", iv["image"]))
    if not patterns:
        raise doc.err(f"{path}.imageReferences", "required field missing")
    globs: list[Glob] = []
    for ppath, pattern in patterns:
        try:
            globs += image_globs(doc.str_(pattern, ppath))
        except PolicyError as exc:
            raise doc.err(ppath, exc.message) from None
    skip = tuple(SkipPattern.compile(doc.str_(p, f"{path}.skipImageReferences[{n}]")) for n, p in
                 enumerate(doc.list_(iv.get("skipImageReferences") or [], f"{path}.skipImageReferences")))
    action = iv.get("failureAction", spec_action)
    if "failureAction" in iv:
        doc.choice(action, f"{path}.failureAction", ("Audit", "Enforce"))
    mode = (default_mode or "enforce") if action is None else ("warn" if action.lower() == "audit" else "enforce")
    repository = signature_repository(doc, iv["repository"], f"{path}.repository") if iv.get("repository") else None
    sets = doc.list_(iv.get("attestors") or [], f"{path}.attestors")
    attestations = doc.list_(iv.get("attestations") or [], f"{path}.attestations")
    if not sets and not attestations:
        raise doc.err(path, "expected attestors or attestations (without either Kyverno verifies nothing)")
    rule = AttestorContext(doc, resolver, path, repository)
    made: list[tuple[str, tuple[Authority, ...], int | None]] = []
    for j, attestor_set in enumerate(sets):
        name = prefix + (f"/attestors[{j}]" if len(sets) > 1 else "")
        made.append((name, *_attestor_set(rule, attestor_set, f"{path}.attestors[{j}]", None)))
    for k, att in enumerate(attestations):
        apath = f"{path}.attestations[{k}]"
        spec, att_sets = _attestation(rule, att, apath, k)
        for j, attestor_set in enumerate(att_sets):
            name = f"{prefix}/attestations[{k}]" + (f"/attestors[{j}]" if len(att_sets) > 1 else "")
            made.append((name, *_attestor_set(rule, attestor_set, f"{apath}.attestors[{j}]", spec)))
    return [ImagePolicy(name=name, globs=tuple(globs), authorities=auths, mode=mode,  # type: ignore[arg-type]
                        threshold=threshold, origin=f"{doc.where}: {doc.label}: {path}", skip=skip)
            for name, auths, threshold in made]


def _attestation(rule: AttestorContext, obj: Any, path: str, k: int) -> tuple[AttestationSpec, list[Any]]:
    from airgap.policy.cel import CelCondition
    from airgap.policy.kyverno_conditions import conditions_cel

    doc = rule.doc
    att = doc.fields(obj, path, ("name", "type", "predicateType", "attestors", "conditions"))
    types = {doc.str_(att[f], f"{path}.{f}") for f in ("type", "predicateType") if att.get(f)}
    if len(types) != 1:
        raise doc.err(path, "expected type (or the deprecated predicateType)" if not types else
                      "type and predicateType differ; give one")
    sets = doc.list_(att.get("attestors") or [], f"{path}.attestors")
    if not sets:
        raise doc.err(f"{path}.attestors", "required by airgap: without attestors Kyverno accepts an attestation "
                                           "from any Sigstore signer")
    condition = None
    if att.get("conditions") is not None:
        source = conditions_cel(doc, att["conditions"], f"{path}.conditions")
        try:
            condition = CelCondition.compile(source)
        except PolicyError as exc:  # a translation bug: refuse, naming the field
            raise doc.err(f"{path}.conditions", exc.message) from None
    name = doc.str_(att["name"], f"{path}.name") if att.get("name") else f"attestations[{k}]"
    return AttestationSpec(name, types.pop(), condition, every=True), sets


def _attestor_set(rule: AttestorContext, obj: Any, path: str, attestation: AttestationSpec | None
                  ) -> tuple[tuple[Authority, ...], int | None]:
    doc = rule.doc
    aset = doc.fields(obj, path, ("count", "entries"), ("entries",))
    authorities: list[Authority] = []
    for n, entry in enumerate(doc.list_(aset["entries"], f"{path}.entries")):
        authorities += entry_authorities(rule, entry, f"{path}.entries[{n}]", f"entries[{n}]", attestation)
    count = aset.get("count")
    if count is None or count == 0:  # Kyverno: every entry (after splitting keys)
        required = len(authorities)
    elif isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(authorities):
        raise doc.err(f"{path}.count", f"expected a number from 1 to {len(authorities)}, got {count!r}")
    else:
        required = count
    return tuple(authorities), (required if required > 1 else None)
