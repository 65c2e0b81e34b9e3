"""Keys: public-key loading, key ids, signature checks, and the :class:`Signer` interface.

Key ids are ``sha256:`` + hex SHA-256 of the SubjectPublicKeyInfo DER (what airgap's key manifest uses).
Signatures follow cosign: ECDSA signs SHA-256 (P-256) or SHA-384 (P-384) of the message, DER-encoded;
RSA uses PKCS#1 v1.5 with SHA-256 (PSS accepted on verify); Ed25519 signs the message itself.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Protocol

from airgap.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class Signer(Protocol):
    """Something that signs bytes with a private key it may not reveal (a file key, an HSM key)."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """Signature over ``data`` in cosign's encoding (see the module docstring)."""


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


def load_public_key(pem: bytes, what: str = "public key") -> PublicKey:
    """Parse an SPKI PEM (``PUBLIC KEY``) of ECDSA P-256/P-384/P-521, Ed25519 or RSA (>= 2048 bits)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: not a PEM public key ({str(exc).splitlines()[0]})") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise ConfigError(f"{what}: RSA keys under 2048 bits are not accepted")
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ConfigError(f"{what}: unsupported key type {type(key).__name__}")
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
        raise ConfigError(f"{what}: unsupported curve {key.curve.name}")
    return key


def _ec_hash(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> object:
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
            key.verify(signature, data, ec.ECDSA(_ec_hash(key)))  # type: ignore[arg-type]
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


class KeySigner:
    """A :class:`Signer` over a private key held in memory (decrypted from a key file or env)."""

    def __init__(self, private_key: PrivateKey) -> None:
        self._key = private_key

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(_ec_hash(self._key)))  # type: ignore[arg-type]
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        raise ConfigError(f"unsupported private key type {type(self._key).__name__}")
