"""Keys: cosign key files, public-key loading, key ids, signature checks, and the :class:`Signer` interface.

Key ids are ``sha256:`` + hex SHA-256 of the SubjectPublicKeyInfo DER (what airgap's key manifest uses).
Signatures follow cosign: ECDSA signs SHA-256 (P-256) or SHA-384 (P-384) of the message, DER-encoded;
RSA uses PKCS#1 v1.5 with SHA-256 (PSS accepted on verify); Ed25519 signs the message itself.

Private key files use cosign's format: PEM type ``ENCRYPTED SIGSTORE PRIVATE KEY`` (cosign v1 wrote
``ENCRYPTED COSIGN PRIVATE KEY``; both are read) whose body is go-securesystemslib's ``encrypted`` JSON:
``{"kdf":{"name":"scrypt","params":{"N":..,"r":..,"p":..},"salt":B64},"cipher":{"name":"nacl/secretbox",
"nonce":B64},"ciphertext":B64}``, a NaCl secretbox over the PKCS#8 DER keyed by scrypt(password, salt).
cosign v2.4.1 writes N=65536 (r=8, p=1); older versions wrote N=32768. We write what cosign v2.4.1 writes
and read any parameters within :data:`MAX_SCRYPT_BYTES`. Where keys come from (files, env, tokens,
passwords) is :mod:`airgap.keyrefs`; this module only turns bytes into keys and back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from typing import TYPE_CHECKING, Any, Protocol

from airgap.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes
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

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: not a PEM public key ({_first_line(exc)})") from None
    return check_public_key(key, what)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


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


# ---- cosign's encrypted private key files --------------------------------------------------------

SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
ENCRYPTED_PEM_TYPES = (SIGSTORE_PEM_TYPE, COSIGN_PEM_TYPE)
# What cosign v2.4.1 writes (go-securesystemslib's "standard" scrypt parameters).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 65536, 8, 1
# scrypt needs 128*N*r bytes; a key file asking for more than this is refused rather than obeyed
# (a hostile file must not be able to make us allocate gigabytes). cosign's own files need 64 MiB.
MAX_SCRYPT_BYTES = 512 * 1024 * 1024
_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


class WrongPasswordError(ConfigError):
    """The password does not open an encrypted private key (or the file was altered)."""


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block in ``data`` as (type, DER bytes), in order. Headers inside a block are refused."""
    blocks = []
    for match in _PEM_RE.finditer(data):
        body = match.group(2)
        if b":" in body:
            raise ConfigError(f"PEM block {match.group(1).decode()} has headers; re-export it without them")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except binascii.Error:
            raise ConfigError(f"PEM block {match.group(1).decode()} is not valid base64") from None
        blocks.append((match.group(1).decode(), der))
    return blocks


def pem_encode(pem_type: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"".join([f"-----BEGIN {pem_type}-----\n".encode(), *(line + b"\n" for line in lines),
                     f"-----END {pem_type}-----\n".encode()])


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

    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{what}: encrypted key body is not JSON") from None
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
        raise ConfigError(f"{what}: cannot parse private key ({_first_line(exc)})") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for unknown key types
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{what}: unsupported private key ({_first_line(exc)})") from None
    public = getattr(key, "public_key", None)
    if public is None:
        raise ConfigError(f"{what}: unsupported private key type {type(key).__name__.lstrip('_')}")
    check_public_key(public(), what)
    return key  # type: ignore[return-value]


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
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{what}: cannot parse {pem_type} ({_first_line(exc)})") from None
    if not keys:
        raise ConfigError(f"{what}: no PEM public key found")
    return keys


# ---- key references (implemented in airgap.keyrefs; re-exported because callers look here) ----------

def load_signer(keyref: str | None, *, password_file: str | None = None) -> Signer:
    """See :func:`airgap.keyrefs.load_signer`."""
    from airgap import keyrefs

    return keyrefs.load_signer(keyref, password_file=password_file)


def load_public_keys(keyref: str, *, password_file: str | None = None) -> list[PublicKey]:
    """See :func:`airgap.keyrefs.load_public_keys`."""
    from airgap import keyrefs

    return keyrefs.load_public_keys(keyref, password_file=password_file)
