"""Parsing ClusterImagePolicy documents into the typed model (see :mod:`airgap.policy.policyset` for the format).

Every error names the file, the document (1-based index and ``metadata.name``) and the field path, e.g.
``policy.yaml: document 2 (team-a): spec.authorities[0].keyless.identities[0].subjectRegExp: invalid
regexp '(': missing ), unterminated subpattern``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap.errors import ConfigError, Error, PolicyError
from airgap.policy.glob import Glob
from airgap.policy.model import AttestationSpec, Authority, ImagePolicy, KeylessSpec
from airgap.schema import check_fields
from airgap.schema import type_name as _type

if TYPE_CHECKING:
    from airgap.keys.public import PublicKey
    from airgap.policy.cel import CelCondition

KeyResolver = Callable[[str, str], "tuple[PublicKey, ...]"]
"""``resolver(kind, name)`` with kind ``"secretRef"`` or ``"name"``; returns keys or raises an airgap Error."""

_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_HASHES = ("sha224", "sha256", "sha384", "sha512")


class FileKeyResolver:
    """Resolves ``key.secretRef.name`` as files and ``key.name`` from a name -> key mapping.

    A secret named ``S`` is looked up in each directory in turn as ``S/`` (a Kubernetes secret mounted or
    exported as a directory: exactly one data file, as policy-controller requires; dotfiles such as
    ``..data`` are skipped), ``S.pub``, then ``S`` (a PEM file).
    """

    def __init__(self, dirs: Sequence[str | os.PathLike[str]] = (),
                 named: Mapping[str, PublicKey | Sequence[PublicKey]] | None = None) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.named = dict(named or {})

    def __call__(self, kind: str, name: str) -> tuple[PublicKey, ...]:
        if kind == "name":
            if name not in self.named:
                known = ", ".join(sorted(self.named)) or "none"
                raise ConfigError(f"no key named {name!r} in the key manifest (known: {known})")
            found = self.named[name]
            return tuple(found) if isinstance(found, Sequence) else (found,)
        if not _K8S_NAME.match(name):
            raise ConfigError(f"invalid secret name {name!r}")
        from airgap.keys.public import load_public_key

        for d in self.dirs:
            path = d / name
            if path.is_dir():
                files = [f for f in sorted(path.iterdir()) if not f.name.startswith(".") and f.is_file()]
                if len(files) != 1:
                    raise ConfigError(
                        f"secret directory {path} has {len(files)} data files; exactly one public key is supported")
                return (load_public_key(files[0].read_bytes(), str(files[0])),)
            for cand in (d / f"{name}.pub", path):
                if cand.is_file():
                    return (load_public_key(cand.read_bytes(), str(cand)),)
        where = ", ".join(str(d) for d in self.dirs) or "no directories"
        raise ConfigError(f"secret {name!r} not found (looked for {name}/, {name}.pub, {name} in {where})")


class Doc:
    """Error context while parsing one YAML document."""

    def __init__(self, where: str, index: int, name: str | None = None, item: int | None = None) -> None:
        self.where, self.index, self.name, self.item = where, index, name, item
        self.unanchored: list[tuple[str, str]] = []  # (field path, regexp) whose Go meaning differs from ours

    @property
    def label(self) -> str:
        item = f" item {self.item}" if self.item is not None else ""
        return f"document {self.index}{item}" + (f" ({self.name})" if self.name else "")

    def err(self, path: str, msg: str) -> PolicyError:
        return PolicyError(f"{self.where}: {self.label}: {path}: {msg}")

    def fields(self, obj: Any, path: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
        return check_fields(obj, path, allowed, required, self.err)

    def str_(self, obj: Any, path: str, *, empty: bool = False) -> str:
        if not isinstance(obj, str) or (not empty and not obj):
            raise self.err(path, f"expected a non-empty string, got {_type(obj)}")
        return obj

    def list_(self, obj: Any, path: str) -> list[Any]:
        if not isinstance(obj, list):
            raise self.err(path, f"expected a list, got {_type(obj)}")
        return obj

    def bool_(self, obj: Any, path: str) -> bool:
        if not isinstance(obj, bool):
            raise self.err(path, f"expected true or false, got {_type(obj)}")
        return obj

    def choice(self, obj: Any, path: str, choices: Sequence[str]) -> str:
        if obj not in choices:
            raise self.err(path, f"invalid value {obj!r} (expected one of: {', '.join(choices)})")
        return str(obj)

    def regexp(self, obj: Any, path: str) -> str:
        """A regexp in Go's syntax (RE2, see :mod:`airgap.policy.regexp`), returned as the Python pattern that
        matches the same whole strings; an unanchored one is noted for :meth:`warning`."""
        from airgap.policy.regexp import compile_go

        text = self.str_(obj, path)
        try:
            compiled = compile_go(text)
        except PolicyError as exc:
            raise self.err(path, exc.message) from None
        if not compiled.anchored:
            self.unanchored.append((path, text))
        return compiled.python

    def warning(self) -> str | None:
        """One line for this document's unanchored regexps (None when there are none): airgap matches the whole
        string, Go's ``MatchString`` (policy-controller, Kyverno, cosign) a match anywhere in it."""
        if not self.unanchored:
            return None
        fields = ", ".join(f"{path} {text!r}" for path, text in self.unanchored)
        return (f"{self.where}: {self.label}: regexp not anchored with ^...$: {fields}; airgap matches the whole "
                "string (as if written ^(?:...)$), policy-controller, Kyverno and cosign (Go) accept a match anywhere "
                "in it")

    def glob(self, obj: Any, path: str) -> Glob:
        try:
            return Glob.compile(self.str_(obj, path))
        except PolicyError as exc:
            raise self.err(path, exc.message) from None

    def cel(self, policy: Any, path: str) -> CelCondition:
        from airgap.policy.cel import CelCondition

        p = self.fields(policy, path, ("type", "data", "remote", "configMapRef", "fetchConfigFile", "includeSpec",
                                       "includeObjectMeta", "includeTypeMeta"), ("type",))
        kind = p["type"]
        if kind in ("cue", "rego"):
            raise self.err(f"{path}.type", f"{kind} policies are not supported; use type: cel")
        if kind != "cel":
            raise self.err(f"{path}.type", f"invalid value {kind!r} (expected cel)")
        for extra in ("remote", "configMapRef"):
            if extra in p:
                raise self.err(f"{path}.{extra}", "not supported offline; inline the expression in data")
        for extra in ("fetchConfigFile", "includeSpec", "includeObjectMeta", "includeTypeMeta"):
            if p.get(extra):
                raise self.err(f"{path}.{extra}", "not supported offline")
        try:
            return CelCondition.compile(self.str_(p.get("data"), f"{path}.data"))
        except PolicyError as exc:
            raise self.err(f"{path}.data", exc.message) from None


def _key(doc: Doc, obj: Any, path: str, resolver: KeyResolver | None) -> tuple[tuple[PublicKey, ...], str, str]:
    from airgap.keys.public import load_public_key

    k = doc.fields(obj, path, ("data", "secretRef", "kms", "name", "hashAlgorithm"))
    given = [f for f in ("data", "secretRef", "kms", "name") if k.get(f) not in (None, "")]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise doc.err(path, f"expected exactly one of data, secretRef, kms, name (got {what})")
    hash_alg = doc.choice(k.get("hashAlgorithm", "sha256"), f"{path}.hashAlgorithm", _HASHES)
    src = given[0]
    if src == "kms":
        raise doc.err(f"{path}.kms", "KMS keys are not supported offline; export the public key "
                                     "(cosign public-key --key KMS_URI) and use key.data or key.secretRef")
    if src == "data":
        try:
            return (load_public_key(doc.str_(k["data"], f"{path}.data").encode(), "key"),), hash_alg, "data"
        except ConfigError as exc:
            raise doc.err(f"{path}.data", exc.message) from None
    if src == "secretRef":
        ref = doc.fields(k["secretRef"], f"{path}.secretRef", ("name", "namespace"), ("name",))
        kind, name = "secretRef", doc.str_(ref["name"], f"{path}.secretRef.name")
    else:
        kind, name = "name", doc.str_(k["name"], f"{path}.name")
    if resolver is None:
        raise doc.err(f"{path}.{src}", "no key resolver given to look up keys by reference")
    try:
        keys = resolver(kind, name)
    except Error as exc:
        raise doc.err(f"{path}.{src}", exc.message) from None
    if not keys:
        raise doc.err(f"{path}.{src}", f"no key found for {name!r}")
    return tuple(keys), hash_alg, f"{kind}:{name}"


def _keyless(doc: Doc, obj: Any, path: str) -> KeylessSpec:
    from airgap.checks.keyless import Identity

    k = doc.fields(obj, path, ("url", "identities", "ca-cert", "trustRootRef", "insecureIgnoreSCT"), ("identities",))
    identities = []
    for i, item in enumerate(doc.list_(k["identities"], f"{path}.identities")):
        ipath = f"{path}.identities[{i}]"
        ident = doc.fields(item, ipath, ("issuer", "subject", "issuerRegExp", "subjectRegExp"))
        for exact, rx in (("issuer", "issuerRegExp"), ("subject", "subjectRegExp")):
            if ident.get(exact) and ident.get(rx):
                raise doc.err(ipath, f"expected only one of {exact}, {rx}")
            if not ident.get(exact) and not ident.get(rx):
                raise doc.err(ipath, f"expected one of {exact}, {rx}")
        identities.append(Identity(
            issuer=doc.str_(ident["issuer"], f"{ipath}.issuer") if ident.get("issuer") else None,
            subject=doc.str_(ident["subject"], f"{ipath}.subject") if ident.get("subject") else None,
            issuer_regexp=doc.regexp(ident["issuerRegExp"], f"{ipath}.issuerRegExp") if ident.get("issuerRegExp")
            else None,
            subject_regexp=doc.regexp(ident["subjectRegExp"], f"{ipath}.subjectRegExp")
            if ident.get("subjectRegExp") else None,
        ))
    if not identities:
        raise doc.err(f"{path}.identities", "required field missing")
    ca_pem = None
    if k.get("ca-cert") is not None:
        ca = doc.fields(k["ca-cert"], f"{path}.ca-cert", ("data", "secretRef", "kms", "hashAlgorithm"))
        if not ca.get("data"):
            raise doc.err(f"{path}.ca-cert", "only inline data (a PEM certificate) is supported offline")
        ca_pem = doc.str_(ca["data"], f"{path}.ca-cert.data").encode()
    return KeylessSpec(
        identities=tuple(identities),
        trust_root_ref=doc.str_(k["trustRootRef"], f"{path}.trustRootRef") if k.get("trustRootRef") else None,
        url=doc.str_(k["url"], f"{path}.url") if k.get("url") else None,
        ca_cert_pem=ca_pem,
        insecure_ignore_sct=doc.bool_(k.get("insecureIgnoreSCT", False), f"{path}.insecureIgnoreSCT"),
    )


def _authority(doc: Doc, obj: Any, i: int, resolver: KeyResolver | None) -> Authority:
    from airgap.checks.cosign import PREDICATE_TYPES

    path = f"spec.authorities[{i}]"
    a = doc.fields(obj, path, ("name", "key", "keyless", "static", "source", "ctlog", "attestations",
                               "rfc3161timestamp", "signatureFormat"))
    name = doc.str_(a["name"], f"{path}.name") if a.get("name") else f"authority-{i}"
    kinds = [k for k in ("key", "keyless", "static") if a.get(k) is not None]
    if len(kinds) != 1:
        raise doc.err(path, "expected exactly one of key, keyless, static (got "
                      + (" and ".join(kinds) or "none") + ")")
    out: dict[str, Any] = {"name": name}
    if "key" in kinds:
        out["keys"], out["hash_algorithm"], ref = _key(doc, a["key"], f"{path}.key", resolver)
        out["key_refs"] = (ref,)
    elif "keyless" in kinds:
        out["keyless"] = _keyless(doc, a["keyless"], f"{path}.keyless")
    else:
        s = doc.fields(a["static"], f"{path}.static", ("action", "message"), ("action",))
        out["static"] = doc.choice(s["action"], f"{path}.static.action", ("pass", "fail"))
        out["static_message"] = doc.str_(s.get("message", ""), f"{path}.static.message", empty=True)
        for other in ("attestations", "source", "ctlog", "rfc3161timestamp"):
            if a.get(other):
                raise doc.err(path, f"expected only one of static, {other}")
    sources: list[str] = []
    for j, item in enumerate(doc.list_(a.get("source", []), f"{path}.source")):
        spath = f"{path}.source[{j}]"
        s = doc.fields(item, spath, ("oci", "signaturePullSecrets", "tagPrefix"))
        if s.get("oci"):
            oci = doc.str_(s["oci"], f"{spath}.oci").rstrip("/")
            if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+(/[a-z0-9._\-]+)*", oci):
                raise doc.err(f"{spath}.oci", f"invalid repository {oci!r}")
            sources.append(oci)
        if s.get("tagPrefix") is not None:
            out["tag_prefix"] = doc.str_(s["tagPrefix"], f"{spath}.tagPrefix", empty=True)
        doc.list_(s.get("signaturePullSecrets", []), f"{spath}.signaturePullSecrets")
    out["sources"] = tuple(sources)
    if a.get("ctlog") is not None:
        c = doc.fields(a["ctlog"], f"{path}.ctlog", ("url", "trustRootRef", "disabled"))
        out["ctlog_disabled"] = doc.bool_(c.get("disabled", False), f"{path}.ctlog.disabled")
        out["ctlog_url"] = doc.str_(c["url"], f"{path}.ctlog.url") if c.get("url") else None
        out["ctlog_trust_root_ref"] = (doc.str_(c["trustRootRef"], f"{path}.ctlog.trustRootRef")
                                       if c.get("trustRootRef") else None)
    if a.get("rfc3161timestamp") is not None:
        t = doc.fields(a["rfc3161timestamp"], f"{path}.rfc3161timestamp", ("trustRootRef",))
        out["rfc3161_trust_root_ref"] = (doc.str_(t["trustRootRef"], f"{path}.rfc3161timestamp.trustRootRef")
                                         if t.get("trustRootRef") else "")
    if a.get("signatureFormat"):
        out["signature_format"] = doc.choice(a["signatureFormat"], f"{path}.signatureFormat", ("legacy", "bundle"))
    atts = []
    for j, item in enumerate(doc.list_(a.get("attestations", []), f"{path}.attestations")):
        apath = f"{path}.attestations[{j}]"
        att = doc.fields(item, apath, ("name", "predicateType", "policy"), ("name", "predicateType"))
        ptype = doc.str_(att["predicateType"], f"{apath}.predicateType")
        atts.append(AttestationSpec(
            name=doc.str_(att["name"], f"{apath}.name"),
            predicate_type=PREDICATE_TYPES.get(ptype, ptype),
            condition=doc.cel(att["policy"], f"{apath}.policy") if att.get("policy") is not None else None,
        ))
    out["attestations"] = tuple(atts)
    return Authority(**out)


def parse_cip(doc: Doc, raw: dict[str, Any], default_mode: str | None, resolver: KeyResolver | None) -> ImagePolicy:
    spec = doc.fields(raw.get("spec"), "spec", ("images", "authorities", "policy", "mode", "match",
                                                "dockerReference"), ("images",))
    globs = []
    for i, item in enumerate(doc.list_(spec["images"], "spec.images")):
        img = doc.fields(item, f"spec.images[{i}]", ("glob",), ("glob",))
        globs.append(doc.glob(img["glob"], f"spec.images[{i}].glob"))
    auths = [_authority(doc, a, i, resolver) for i, a in enumerate(doc.list_(spec.get("authorities"),
                                                                             "spec.authorities"))]
    if not auths:
        raise doc.err("spec.authorities", "required field missing (a policy without authorities admits nothing)")
    names = [a.name for a in auths]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise doc.err("spec.authorities", f"duplicate authority name {dupes[0]!r}")
    threshold = None
    resource_match: tuple[Any, ...] = ()
    match = spec.get("match")
    if isinstance(match, dict):
        m = doc.fields(match, "spec.match", ("authorities",), ("authorities",))
        n = m["authorities"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(auths):
            raise doc.err("spec.match.authorities", f"expected a number from 1 to {len(auths)}, got {n!r}")
        threshold = n
    elif match is not None:
        resource_match = tuple(doc.list_(match, "spec.match"))
    mode = spec.get("mode") or default_mode or "enforce"
    return ImagePolicy(
        name=doc.name or f"document-{doc.index}",
        globs=tuple(globs),
        authorities=tuple(auths),
        mode=doc.choice(mode, "spec.mode", ("enforce", "warn")),  # type: ignore[arg-type]
        policy=doc.cel(spec["policy"], "spec.policy") if spec.get("policy") is not None else None,
        threshold=threshold,
        docker_reference_strict=doc.choice(spec.get("dockerReference", "report"), "spec.dockerReference",
                                           ("strict", "report")) == "strict",
        resource_match=resource_match,
        origin=f"{doc.where}: {doc.label}",
    )
