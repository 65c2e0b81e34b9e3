"""Kyverno attestor entries (``keys``, ``certificates``, ``keyless``) as airgap authorities; see
:mod:`airgap.policy.kyverno` for the mapping and what is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airgap.errors import ConfigError, Error
from airgap.policy.model import AttestationSpec, Authority, KeylessSpec
from airgap.policy.regexp import wildcard_regexp

if TYPE_CHECKING:
    from airgap.keys.public import PublicKey
    from airgap.policy.cip import Doc, KeyResolver

_HASHES = ("sha224", "sha256", "sha384", "sha512")
_PEM_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", re.DOTALL)


@dataclass
class AttestorContext:
    """What the entries of one verifyImages item share while they are translated: the document, the key
    resolver, the item's path and its ``repository``."""

    doc: Doc
    resolver: KeyResolver | None
    path: str
    repository: str | None


def signature_repository(doc: Doc, obj: Any, path: str) -> str:
    """A ``repository`` (where signatures are kept, like cosign's ``COSIGN_REPOSITORY``): ``HOST[:PORT]/PATH``."""
    repo = doc.str_(obj, path).rstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+(/[a-z0-9._\-]+)+", repo):
        raise doc.err(path, f"invalid repository {repo!r} (expected HOST[:PORT]/PATH)")
    return repo


def fields(doc: Doc, obj: Any, path: str, allowed: tuple[str, ...], refused: dict[str, str],
           required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``obj`` as a mapping of ``allowed`` keys; a key in ``refused`` fails with its own reason."""
    if isinstance(obj, dict):
        for key in obj:
            if key in refused:
                raise doc.err(f"{path}.{key}", refused[key])
    return doc.fields(obj, path, allowed, required)


def entry_authorities(rule: AttestorContext, obj: Any, path: str, name: str,
                      attestation: AttestationSpec | None) -> list[Authority]:
    """The authorities of one ``entries[]`` item (several for a ``publicKeys`` with several keys)."""
    doc = rule.doc
    entry = fields(doc, obj, path, ("keys", "certificates", "keyless", "repository", "signatureAlgorithm"), {
        "attestor": "nested attestor sets are not supported; list the entries in one set with count",
        "annotations": "not supported (airgap does not check signature annotations)"})
    kinds = [k for k in ("keys", "certificates", "keyless") if entry.get(k) is not None]
    if len(kinds) != 1:
        raise doc.err(path, "expected exactly one of keys, certificates, keyless (got "
                      + (" and ".join(kinds) or "none") + ")")
    repository = (signature_repository(doc, entry["repository"], f"{path}.repository") if entry.get("repository")
                  else rule.repository)
    common: dict[str, Any] = {"sources": (repository,) if repository else (),
                              "attestations": (attestation,) if attestation else ()}
    hash_alg = doc.choice(entry["signatureAlgorithm"], f"{path}.signatureAlgorithm", _HASHES) \
        if entry.get("signatureAlgorithm") else None
    kind, kpath = kinds[0], f"{path}.{kinds[0]}"
    if kind == "keys":
        return _keys(rule, entry["keys"], kpath, name, hash_alg, common)
    if kind == "certificates":
        return [_certificates(rule, entry["certificates"], kpath, name, common)]
    return [_keyless(rule, entry["keyless"], kpath, name, common)]


def _tlog(doc: Doc, obj: Any, path: str, out: dict[str, Any], *, url_required: bool = False) -> None:
    """``rekor``: absent, or a url, means a verified Rekor entry is required; ``ignoreTlog: true`` turns that off."""
    if obj is None:
        return
    rekor = fields(doc, obj, path, ("url", "ignoreTlog"), {
        "pubkey": "a custom Rekor key is not supported here; put it in the trust directory's trusted root "
                  "(or a TrustRoot) instead"})
    if url_required and not rekor.get("url"):
        raise doc.err(f"{path}.url", "required field missing (Kyverno requires a url with rekor)")
    if rekor.get("url"):
        out["ctlog_url"] = doc.str_(rekor["url"], f"{path}.url")
    out["ctlog_disabled"] = doc.bool_(rekor.get("ignoreTlog", False), f"{path}.ignoreTlog")


def _sct(doc: Doc, obj: Any, path: str) -> bool:
    """``ctlog``: whether ``ignoreSCT: true`` was asked for."""
    if obj is None:
        return False
    ctlog = fields(doc, obj, path, ("ignoreSCT",), {
        "pubkey": "a custom CT log key is not supported here; put it in the trust directory's trusted root "
                  "(or a TrustRoot) instead",
        "tsaCertChain": "a TSA chain is not supported here; put the TSA in the trust directory's trusted root "
                        "(or a TrustRoot)"})
    return doc.bool_(ctlog.get("ignoreSCT", False), f"{path}.ignoreSCT")


def _keys(rule: AttestorContext, obj: Any, path: str, name: str, hash_alg: str | None, common: dict[str, Any]
          ) -> list[Authority]:
    from airgap.keys.public import load_public_key

    doc = rule.doc
    k = fields(doc, obj, path, ("publicKeys", "signatureAlgorithm", "secret", "rekor", "ctlog"), {
        "kms": "KMS keys are not supported offline; export the public key (cosign public-key --key KMS_URI) "
               "and use publicKeys"})
    given = [f for f in ("publicKeys", "secret") if k.get(f)]
    if len(given) != 1:
        raise doc.err(path, "expected exactly one of publicKeys, secret (got " + (" and ".join(given) or "none") + ")")
    if k.get("signatureAlgorithm"):
        own = doc.choice(k["signatureAlgorithm"], f"{path}.signatureAlgorithm", _HASHES)
        if hash_alg is not None and own != hash_alg:
            raise doc.err(f"{path}.signatureAlgorithm", f"{own} differs from the attestor's {hash_alg}")
        hash_alg = own
    out: dict[str, Any] = dict(common, hash_algorithm=hash_alg or "sha256")
    _tlog(doc, k.get("rekor"), f"{path}.rekor", out)
    _sct(doc, k.get("ctlog"), f"{path}.ctlog")  # validated; a key signature has no certificate
    keys: list[tuple[PublicKey, str]] = []
    if k.get("secret"):
        secret = doc.fields(k["secret"], f"{path}.secret", ("name", "namespace"), ("name",))
        keys += _secret(rule, doc.str_(secret["name"], f"{path}.secret.name"), f"{path}.secret")
    else:
        text = doc.str_(k["publicKeys"], f"{path}.publicKeys")
        if "{{" in text:
            raise doc.err(f"{path}.publicKeys", "variables ({{ }}) are not supported")
        if text.strip().startswith("k8s://"):
            ref = text.strip()[len("k8s://"):]
            if ref.count("/") != 1:
                raise doc.err(f"{path}.publicKeys", f"expected k8s://NAMESPACE/NAME, got {text.strip()!r}")
            keys += _secret(rule, ref.split("/")[1], f"{path}.publicKeys")
        else:
            blocks = _PEM_KEY.findall(text)
            if not blocks or _PEM_KEY.sub("", text).strip():
                raise doc.err(f"{path}.publicKeys", "expected PEM public keys (-----BEGIN PUBLIC KEY-----) or "
                                                    "k8s://NAMESPACE/NAME")
            for m, block in enumerate(blocks):
                try:
                    keys.append((load_public_key(block.encode(), "key"), "data"))
                except ConfigError as exc:
                    raise doc.err(f"{path}.publicKeys", f"key {m + 1}: {exc.message}") from None
    if len(keys) == 1:
        return [Authority(name=name, keys=(keys[0][0],), key_refs=(keys[0][1],), **out)]
    return [Authority(name=f"{name}.keys[{m}]", keys=(key,), key_refs=(ref,), **out)
            for m, (key, ref) in enumerate(keys)]


def _secret(rule: AttestorContext, name: str, path: str) -> list[tuple[PublicKey, str]]:
    if rule.resolver is None:
        raise rule.doc.err(path, "no key resolver given to look up keys by reference")
    try:
        found = rule.resolver("secretRef", name)
    except Error as exc:
        raise rule.doc.err(path, exc.message) from None
    return [(key, f"secretRef:{name}") for key in found]


def _certificates(rule: AttestorContext, obj: Any, path: str, name: str, common: dict[str, Any]) -> Authority:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from airgap.checks.keyless import Identity
    from airgap.keys.public import load_public_key

    doc = rule.doc
    c = doc.fields(obj, path, ("cert", "certChain", "rekor", "ctlog"))
    if not c.get("cert") and not c.get("certChain"):
        raise doc.err(path, "expected cert or certChain")
    out: dict[str, Any] = dict(common)
    _tlog(doc, c.get("rekor"), f"{path}.rekor", out)
    ignore_sct = _sct(doc, c.get("ctlog"), f"{path}.ctlog")
    chain: list[x509.Certificate] = []
    if c.get("certChain"):
        chain = _certs(doc, c["certChain"], f"{path}.certChain")
    if not c.get("cert"):  # the chain is the anchor for the signature's own certificate, whoever it names
        pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)
        keyless = KeylessSpec(identities=(Identity(subject_regexp=".*"),), ca_cert_pem=pem,
                              insecure_ignore_sct=ignore_sct)
        return Authority(name=name, keyless=keyless, **out)
    certs = _certs(doc, c["cert"], f"{path}.cert")
    if len(certs) != 1:
        raise doc.err(f"{path}.cert", f"expected one certificate, got {len(certs)}")
    if chain:
        _check_issued(doc, certs[0], chain, f"{path}.certChain")
    spki = certs[0].public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        key = load_public_key(spki, "certificate")
    except ConfigError as exc:
        raise doc.err(f"{path}.cert", exc.message) from None
    return Authority(name=name, keys=(key,), key_refs=("certificate",), **out)


def _certs(doc: Doc, obj: Any, path: str) -> list[Any]:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(doc.str_(obj, path).encode())
    except ValueError:
        raise doc.err(path, "not a PEM certificate") from None
    return certs


def _check_issued(doc: Doc, cert: Any, chain: list[Any], path: str) -> None:
    """The pinned certificate is issued, through CA certificates of ``chain``, by a self-signed root in it, all
    valid when the pinned certificate was issued (cosign checks the chain at that time too)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    at = cert.not_valid_before_utc
    current, seen = cert, 0
    while current.issuer != current.subject or current is cert:
        issuer = None
        for candidate in chain:
            try:
                current.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            issuer = candidate
            break
        if issuer is None:
            raise doc.err(path, "the certificate is not issued through this chain")
        try:
            is_ca = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca or not issuer.not_valid_before_utc <= at <= issuer.not_valid_after_utc:
            raise doc.err(path, f"{issuer.subject.rfc4514_string()} is not a CA valid when the certificate was "
                                "issued")
        if issuer.issuer == issuer.subject:
            return
        current, seen = issuer, seen + 1
        if seen > len(chain):
            break
    raise doc.err(path, "the chain does not end in a self-signed root")


def _keyless(rule: AttestorContext, obj: Any, path: str, name: str, common: dict[str, Any]) -> Authority:
    from cryptography import x509

    from airgap.checks.keyless import Identity

    doc = rule.doc
    k = fields(doc, obj, path, ("rekor", "ctlog", "issuer", "issuerRegExp", "subject", "subjectRegExp", "roots"), {
        "additionalExtensions": "not supported (airgap does not check certificate extensions)"})
    if k.get("rekor") is None and not k.get("roots"):
        raise doc.err(path, "expected rekor or roots (Kyverno requires one of them)")
    out: dict[str, Any] = dict(common)
    _tlog(doc, k.get("rekor"), f"{path}.rekor", out, url_required=True)
    subjects = _identity_patterns(doc, k, path, "subject")
    issuers = _identity_patterns(doc, k, path, "issuer")
    if not subjects:
        raise doc.err(path, "expected subject or subjectRegExp (airgap checks an identity; write "
                            "subjectRegExp: '^.*$' to accept any subject on purpose)")
    if not issuers:
        raise doc.err(path, "expected issuer or issuerRegExp (airgap checks the issuer; write issuerRegExp: '^.*$' "
                            "to accept any issuer on purpose)")
    exact_issuer = next((value for regexp, value in issuers if not regexp), None)
    issuer_regexps = [value for regexp, value in issuers if regexp]
    issuer_regexp = None
    if issuer_regexps:  # issuer and issuerRegExp must both match (Kyverno checks both)
        issuer_regexp = issuer_regexps[0] if len(issuer_regexps) == 1 else "".join(
            f"(?=(?:{p})\\Z)" for p in issuer_regexps[1:]) + f"(?:{issuer_regexps[0]})"
    identities: list[Identity] = []
    for regexp, value in subjects:  # subject and subjectRegExp: either may match (Kyverno's OR)
        identities.append(Identity(issuer=exact_issuer, issuer_regexp=issuer_regexp,
                                    subject=None if regexp else value, subject_regexp=value if regexp else None))
    ca_pem = None
    if k.get("roots"):
        ca_pem = doc.str_(k["roots"], f"{path}.roots").encode()
        try:
            if not x509.load_pem_x509_certificates(ca_pem):
                raise ValueError
        except ValueError:
            raise doc.err(f"{path}.roots", "not a PEM certificate chain") from None
    keyless = KeylessSpec(identities=tuple(identities), ca_cert_pem=ca_pem,
                          insecure_ignore_sct=_sct(doc, k.get("ctlog"), f"{path}.ctlog"))
    return Authority(name=name, keyless=keyless, **out)


def _identity_patterns(doc: Doc, k: dict[str, Any], path: str, field: str) -> list[tuple[bool, str]]:
    """(is a pattern, value) for ``subject``/``issuer`` (wildcards become a whole-string pattern) and their
    ``RegExp`` forms (Go syntax, translated; an unanchored one is noted for the load-time warning)."""
    out: list[tuple[bool, str]] = []
    if k.get(field):
        value = doc.str_(k[field], f"{path}.{field}")
        out.append((True, wildcard_regexp(value)) if "*" in value or "?" in value else (False, value))
    if k.get(f"{field}RegExp"):
        out.append((True, doc.regexp(k[f"{field}RegExp"], f"{path}.{field}RegExp")))
    return out
