"""Public keys: loading (SPKI PEM, certificates), key ids, algorithm names, and cosign's signature checks.

Key ids are ``sha256:`` + hex SHA-256 of the SubjectPublicKeyInfo DER (what airgap's key manifest uses).
Signatures follow cosign: ECDSA signs SHA-256 (P-256) or SHA-384 (P-384) of the message, DER-encoded;
RSA uses PKCS#1 v1.5 with SHA-256 (PSS accepted on verify); Ed25519 signs the message itself.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from airgap.errors import ConfigError, first_line
from airgap.keys.pem import pem_blocks

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def spki_der(key: PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_pem(key: PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PublicKey) -> str:
    """``sha256:<hex>`` of the SubjectPublicKeyInfo DER."""
    return "sha256:" + hashlib.sha256(spki_der(key)).hexdigest()


def algorithm(key: PublicKey) -> str:
    """A short name for the key's algorithm: ``ecdsa-p256``, ``ecdsa-p384``, ``ed25519``, ``rsa-2048`` ..."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}.get(
            key.curve.name, f"ecdsa-{key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise ConfigError(f"unsupported public key type {type(key).__name__}")


def parse_errors() -> tuple[type[Exception], ...]:
    """What cryptography raises on a malformed key or certificate: ValueError and TypeError, and three that
    are neither (an unknown key algorithm, a bad certificate version, an extension twice). Untrusted keys
    and certificates are parsed under ``except parse_errors()``, so none of them escapes as a crash."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.x509 import DuplicateExtension, InvalidVersion

    return (ValueError, TypeError, UnsupportedAlgorithm, InvalidVersion, DuplicateExtension)


def load_public_key(pem: bytes, what: str = "public key") -> PublicKey:
    """Parse an SPKI PEM (``PUBLIC KEY``) of ECDSA P-256/P-384/P-521, Ed25519 or RSA (>= 2048 bits)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(pem)
    except parse_errors() as exc:
        raise ConfigError(f"{what}: not a PEM public key ({first_line(exc)})") from None
    return check_public_key(key, what)



def check_public_key(key: object, what: str) -> PublicKey:
    """``key`` if it is a public key type and size airgap (and cosign) accept, else a ConfigError."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise ConfigError(f"{what}: RSA keys under 2048 bits are not accepted")
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ConfigError(f"{what}: unsupported key type {type(key).__name__.lstrip('_')}")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise ConfigError(f"{what}: unsupported curve {key.curve.name}")
    return key


def ec_hash(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    """The hash cosign pairs with an ECDSA key's curve (SHA-256 for P-256)."""
    from cryptography.hazmat.primitives import hashes

    return {"secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}.get(key.curve.name, hashes.SHA256())


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` over ``data`` verifies with ``key`` (cosign's algorithms). Never raises
    for a bad signature: untrusted input is an answer, not an exception."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(ec_hash(key)))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, rsa.RSAPublicKey):
            try:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                key.verify(signature, data, padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO),
                           hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def load_public_keys_pem(data: bytes, what: str = "public key") -> list[PublicKey]:
    """Every public key in ``data``: ``PUBLIC KEY`` blocks and the keys of ``CERTIFICATE`` blocks."""
    from cryptography.hazmat.primitives import serialization

    keys: list[PublicKey] = []
    for pem_type, der in pem_blocks(data):
        try:
            if pem_type == "PUBLIC KEY":
                keys.append(check_public_key(serialization.load_der_public_key(der), what))
            elif pem_type == "CERTIFICATE":
                from cryptography import x509  # ~20 ms: only when a certificate is given

                keys.append(check_public_key(x509.load_der_x509_certificate(der).public_key(), what))
        except parse_errors() as exc:
            raise ConfigError(f"{what}: cannot parse {pem_type} ({first_line(exc)})") from None
    if not keys:
        raise ConfigError(f"{what}: no PEM public key found")
    return keys
