"""policy-controller's ``TrustRoot`` documents (``policy.sigstore.dev/v1alpha1``) as Sigstore trusted roots.

A ``TrustRoot`` in a policy file is a trusted root that authorities name by its ``metadata.name``: in
``keyless.trustRootRef`` (its certificate authorities and CT logs), ``ctlog.trustRootRef`` (its transparency
logs) and ``rfc3161timestamp.trustRootRef`` (its timestamp authorities). Only the ``sigstoreKeys`` form ("bring
your own keys") is usable offline; the ``remote`` (a TUF mirror) and ``repository`` (a serialized TUF repository)
forms are refused with an error that says what to do instead.

``sigstoreKeys`` is read as policy-controller's API writes it: every ``certChain`` and ``publicKey`` is the base64
of PEM (a Kubernetes ``[]byte``; newlines inside the base64 are allowed, as Go's decoder allows them), chains are
leaf-most first with the root last, ``hashAlgorithm`` is ``sha-256``/``sha256`` (``-384``, ``-512``). It becomes a
``trusted_root.json`` the way policy-controller converts it (``pkg/apis/config/sigstore_keys.go``): every CA, log
and TSA valid from the epoch on, each log's id the SHA-256 of its key's DER SubjectPublicKeyInfo (the standard
``trusted_root.json`` log id; policy-controller stores the hex text of that digest instead). The result is checked
by :class:`~airgap.checks.roots.TrustedRoot` before the policy file is accepted. A TrustRoot is never a default:
an authority without ``trustRootRef`` keeps using the trust directory's ``trusted_root.json``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import TYPE_CHECKING, Any

from airgap.errors import ConfigError

if TYPE_CHECKING:
    from airgap.policy.cip import Doc

TRUSTROOT_API_VERSIONS = ("policy.sigstore.dev/v1alpha1",)
_EPOCH = {"start": "1970-01-01T00:00:00Z"}
_HASHES = {"sha-256": "SHA2_256", "sha256": "SHA2_256", "sha-384": "SHA2_384", "sha384": "SHA2_384",
           "sha-512": "SHA2_512", "sha512": "SHA2_512"}


def parse_trustroot(doc: Doc, raw: dict[str, Any]) -> bytes:
    """The ``trusted_root.json`` bytes a TrustRoot document stands for; errors name file, document and field."""
    spec = doc.fields(raw.get("spec"), "spec", ("remote", "repository", "sigstoreKeys"))
    given = [k for k in ("remote", "repository", "sigstoreKeys") if spec.get(k) is not None]
    if len(given) != 1:
        raise doc.err("spec", "expected exactly one of remote, repository, sigstoreKeys (got "
                      + (" and ".join(given) or "none") + ")")
    if "remote" in spec:
        raise doc.err("spec.remote", "a TUF mirror cannot be reached offline; give the keys as spec.sigstoreKeys, "
                                     "or ship its trusted_root.json in the trust directory (trusted_roots/NAME.json)")
    if "repository" in spec:
        raise doc.err("spec.repository", "serialized TUF repositories are not supported; give the keys as "
                                         "spec.sigstoreKeys, or ship the trusted_root.json it holds in the trust "
                                         "directory (trusted_roots/NAME.json)")
    keys = doc.fields(spec["sigstoreKeys"], "spec.sigstoreKeys",
                      ("certificateAuthorities", "tLogs", "ctLogs", "timestampAuthorities"))
    path = "spec.sigstoreKeys"
    cas = [_authority(doc, item, f"{path}.certificateAuthorities[{i}]") for i, item in
           enumerate(doc.list_(keys.get("certificateAuthorities") or [], f"{path}.certificateAuthorities"))]
    tsas = [_authority(doc, item, f"{path}.timestampAuthorities[{i}]", tsa=True) for i, item in
            enumerate(doc.list_(keys.get("timestampAuthorities") or [], f"{path}.timestampAuthorities"))]
    if not cas and not tsas:
        raise doc.err(path, "expected certificateAuthorities or timestampAuthorities (none given)")
    root = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "certificateAuthorities": cas,
        "tlogs": [_log(doc, item, f"{path}.tLogs[{i}]")
                  for i, item in enumerate(doc.list_(keys.get("tLogs") or [], f"{path}.tLogs"))],
        "ctlogs": [_log(doc, item, f"{path}.ctLogs[{i}]")
                   for i, item in enumerate(doc.list_(keys.get("ctLogs") or [], f"{path}.ctLogs"))],
        "timestampAuthorities": tsas,
    }
    data = json.dumps(root, sort_keys=True, separators=(",", ":")).encode()
    from airgap.checks.roots import TrustedRoot

    try:
        TrustedRoot.from_bytes(data, "trusted root")
    except ConfigError as exc:
        raise doc.err(path, exc.message) from None
    return data


def _pem(doc: Doc, obj: Any, path: str) -> bytes:
    """A Kubernetes ``[]byte``: base64 (line breaks allowed) of PEM text."""
    text = doc.str_(obj, path)
    compact = "".join(text.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        hint = " (the PEM itself was given; policy-controller's API wants it base64-encoded)" \
            if text.lstrip().startswith("-----BEGIN") else ""
        raise doc.err(path, f"not base64{hint}") from None
    if b"-----BEGIN " not in data:
        raise doc.err(path, "the base64 does not hold PEM")
    return data


def _authority(doc: Doc, obj: Any, path: str, *, tsa: bool = False) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    ca = doc.fields(obj, path, ("subject", "uri", "certChain"), ("subject", "uri", "certChain"))
    subject = doc.fields(ca["subject"], f"{path}.subject", ("organization", "commonName"),
                         ("organization", "commonName"))
    try:
        certs = x509.load_pem_x509_certificates(_pem(doc, ca["certChain"], f"{path}.certChain"))
    except ValueError:
        raise doc.err(f"{path}.certChain", "not a PEM certificate chain") from None
    if tsa:
        leaves = [c for c in certs if not _is_ca(c)]
        if len(leaves) > 1:
            raise doc.err(f"{path}.certChain", "certificate chain must contain at most one TSA certificate")
    return {
        "subject": {"organization": doc.str_(subject["organization"], f"{path}.subject.organization"),
                    "commonName": doc.str_(subject["commonName"], f"{path}.subject.commonName")},
        "uri": doc.str_(ca["uri"], f"{path}.uri"),
        "certChain": {"certificates": [{"rawBytes": base64.b64encode(c.public_bytes(Encoding.DER)).decode()}
                                       for c in certs]},
        "validFor": dict(_EPOCH),
    }


def _is_ca(cert: Any) -> bool:
    from cryptography import x509

    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _log(doc: Doc, obj: Any, path: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    log = doc.fields(obj, path, ("baseURL", "hashAlgorithm", "publicKey"), ("baseURL", "hashAlgorithm", "publicKey"))
    hash_name = doc.choice(log["hashAlgorithm"], f"{path}.hashAlgorithm", tuple(_HASHES))
    try:
        key = serialization.load_pem_public_key(_pem(doc, log["publicKey"], f"{path}.publicKey"))
    except (ValueError, TypeError):
        raise doc.err(f"{path}.publicKey", "not a PEM public key") from None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1", "secp521r1"):
        details = {"secp256r1": "PKIX_ECDSA_P256_SHA_256", "secp384r1": "PKIX_ECDSA_P384_SHA_384",
                   "secp521r1": "PKIX_ECDSA_P521_SHA_512"}[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PublicKey):
        details = "PKIX_ED25519"
    elif isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 3072, 4096):
        details = f"PKIX_RSA_PKCS1V15_{key.key_size}_SHA256"
    else:
        raise doc.err(f"{path}.publicKey", "unsupported key type (expected ECDSA P-256/384/521, Ed25519 or "
                                           "RSA 2048/3072/4096)")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "baseUrl": doc.str_(log["baseURL"], f"{path}.baseURL"),
        "hashAlgorithm": _HASHES[hash_name],
        "publicKey": {"rawBytes": base64.b64encode(der).decode(), "keyDetails": details, "validFor": dict(_EPOCH)},
        "logId": {"keyId": base64.b64encode(hashlib.sha256(der).digest()).decode()},
    }
