"""Private keys: cosign's encrypted key files, in-memory signers, and the :class:`Signer` interface.

Private key files use cosign's format: PEM type ``ENCRYPTED SIGSTORE PRIVATE KEY`` (cosign v1 wrote
``ENCRYPTED COSIGN PRIVATE KEY``; both are read) whose body is go-securesystemslib's ``encrypted`` JSON:
``{"kdf":{"name":"scrypt","params":{"N":..,"r":..,"p":..},"salt":B64},"cipher":{"name":"nacl/secretbox",
"nonce":B64},"ciphertext":B64}``, a NaCl secretbox over the PKCS#8 DER keyed by scrypt(password, salt).
cosign v2.4.1 writes N=65536 (r=8, p=1); older versions wrote N=32768. We write what cosign v2.4.1 writes
and read any parameters within :data:`MAX_SCRYPT_BYTES`. Where keys come from (files, env, tokens,
passwords) is :mod:`airgap.keys.references`; this module only turns bytes into keys and back. Signatures
are made in cosign's encodings (see :mod:`airgap.keys.public`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from typing import TYPE_CHECKING, Any, Protocol

from airgap.errors import ConfigError, first_line
from airgap.jsondoc import load_json
from airgap.keys.passwords import WrongPasswordError
from airgap.keys.pem import pem_blocks, pem_encode
from airgap.keys.public import check_public_key, ec_hash, public_pem

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from airgap.keys.public import PublicKey

    PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class Signer(Protocol):
    """Something that signs bytes with a private key it may not reveal (a file key, an HSM key)."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes) -> bytes:
        """Signature over ``data`` in cosign's encoding (see the module docstring)."""


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
            # RFC 6979 deterministic nonces: the same key and bytes give the same signature, so a signed
            # bundle packs byte-identically, and no signature depends on the quality of a nonce RNG.
            return self._key.sign(data, ec.ECDSA(ec_hash(self._key), deterministic_signing=True))
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        raise ConfigError(f"unsupported private key type {type(self._key).__name__}")


SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"


COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"


ENCRYPTED_PEM_TYPES = (SIGSTORE_PEM_TYPE, COSIGN_PEM_TYPE)


# What cosign v2.4.1 writes (go-securesystemslib's "standard" scrypt parameters).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 65536, 8, 1


# scrypt needs 128*N*r bytes; a key file asking for more than this is refused rather than obeyed
# (a hostile file must not be able to make us allocate gigabytes). cosign's own files need 64 MiB.
MAX_SCRYPT_BYTES = 512 * 1024 * 1024



def is_encrypted_private_key(pem: bytes) -> bool:
    """True when the first PEM block in ``pem`` needs a password (cosign format or PKCS#8 encrypted)."""
    blocks = pem_blocks(pem)
    return bool(blocks) and blocks[0][0] in (*ENCRYPTED_PEM_TYPES, "ENCRYPTED PRIVATE KEY")


def is_private_key(pem: bytes) -> bool:
    """True when the first PEM block in ``pem`` is a private key of any kind we read."""
    blocks = pem_blocks(pem)
    return bool(blocks) and blocks[0][0].endswith("PRIVATE KEY")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=MAX_SCRYPT_BYTES + 1024 * 1024)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def encrypt_private_key(key: PrivateKey, password: bytes, *, pem_type: str = SIGSTORE_PEM_TYPE) -> bytes:
    """``key`` as cosign's encrypted PEM (a fresh 32-byte salt and 24-byte nonce each time)."""
    import nacl.secret
    from cryptography.hazmat.primitives import serialization

    check_public_key(key.public_key(), "private key")
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    box = nacl.secret.SecretBox(_scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P))
    sealed = box.encrypt(der, nonce).ciphertext
    doc = {"kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}, "salt": _b64(salt)},
           "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)}, "ciphertext": _b64(sealed)}
    return pem_encode(pem_type, json.dumps(doc, separators=(",", ":")).encode())


def generate_keypair(password: bytes) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair as cosign writes it: (encrypted private PEM, public SPKI PEM)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return encrypt_private_key(key, password), public_pem(key.public_key())


def _field(doc: Any, *path: str, kind: type = str) -> Any:
    for name in path:
        if not isinstance(doc, dict) or name not in doc:
            raise ConfigError(f"encrypted private key: missing field {'.'.join(path)}")
        doc = doc[name]
    if not isinstance(doc, kind) or isinstance(doc, bool):
        raise ConfigError(f"encrypted private key: field {'.'.join(path)} is not a {kind.__name__}")
    return doc


def _b64_field(doc: Any, *path: str, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(_field(doc, *path), validate=True)
    except binascii.Error:
        raise ConfigError(f"encrypted private key: field {'.'.join(path)} is not base64") from None
    if size is not None and len(raw) != size:
        raise ConfigError(f"encrypted private key: field {'.'.join(path)} must be {size} bytes")
    return raw


def _decrypt_cosign(body: bytes, password: bytes, what: str) -> bytes:
    """PKCS#8 DER from go-securesystemslib's encrypted JSON (the body of cosign's PEM)."""
    import nacl.exceptions
    import nacl.secret

    doc = load_json(body, f"{what}: encrypted key body", ConfigError, invalid="{what} is not JSON")
    if _field(doc, "kdf", "name") != "scrypt" or _field(doc, "cipher", "name") != "nacl/secretbox":
        raise ConfigError(f"{what}: unsupported key encryption (want scrypt + nacl/secretbox)")
    n, r, p = (_field(doc, "kdf", "params", k, kind=int) for k in ("N", "r", "p"))
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * n * r * p > MAX_SCRYPT_BYTES:
        raise ConfigError(f"{what}: scrypt parameters N={n} r={r} p={p} are invalid or too costly")
    salt = _b64_field(doc, "kdf", "salt")
    nonce = _b64_field(doc, "cipher", "nonce", size=nacl.secret.SecretBox.NONCE_SIZE)
    sealed = _b64_field(doc, "ciphertext")
    box = nacl.secret.SecretBox(_scrypt(password, salt, n, r, p))
    try:
        return bytes(box.decrypt(sealed, nonce))
    except nacl.exceptions.CryptoError:
        raise WrongPasswordError(f"wrong password for {what}") from None


def decrypt_private_key(pem: bytes, password: bytes | None = None, what: str = "private key") -> PrivateKey:
    """The private key in ``pem``: cosign's encrypted formats (``password`` required), or plain PKCS#8
    ``PRIVATE KEY``, SEC1 ``EC PRIVATE KEY``, PKCS#1 ``RSA PRIVATE KEY``, PKCS#8 ``ENCRYPTED PRIVATE KEY``.
    Key types and sizes are those :func:`load_public_key` accepts."""
    from cryptography.hazmat.primitives import serialization

    blocks = pem_blocks(pem)
    if not blocks:
        raise ConfigError(f"{what}: no PEM block found")
    pem_type, der = blocks[0]
    try:
        if pem_type in ENCRYPTED_PEM_TYPES:
            if password is None:
                raise ConfigError(f"{what}: a password is needed to decrypt it")
            key: object = serialization.load_der_private_key(_decrypt_cosign(der, password, what), None)
        elif pem_type in ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"):
            key = serialization.load_pem_private_key(pem_encode(pem_type, der), None)
        elif pem_type == "ENCRYPTED PRIVATE KEY":
            if password is None:
                raise ConfigError(f"{what}: a password is needed to decrypt it")
            key = serialization.load_pem_private_key(pem_encode(pem_type, der), password)
        else:
            raise ConfigError(f"{what}: unsupported PEM type {pem_type!r} (want a private key)")
    except (ValueError, TypeError) as exc:
        if pem_type == "ENCRYPTED PRIVATE KEY" and "password" in str(exc).lower():
            raise WrongPasswordError(f"wrong password for {what}") from None
        raise ConfigError(f"{what}: cannot parse private key ({first_line(exc)})") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for unknown key types
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{what}: unsupported private key ({first_line(exc)})") from None
    public = getattr(key, "public_key", None)
    if public is None:
        raise ConfigError(f"{what}: unsupported private key type {type(key).__name__.lstrip('_')}")
    check_public_key(public(), what)
    return key  # type: ignore[return-value]

