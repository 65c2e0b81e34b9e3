"""Key references as cosign spells them: what ``--key`` (or ``COSIGN_KEY``) names, turned into keys.

A key reference is one of: a file path; ``env://VAR`` (the PEM is in an environment variable); a directory
holding a Kubernetes secret as mounted in a pod (``cosign.key``, ``cosign.password``, ``cosign.pub``); or a
``pkcs11:`` URI (RFC 7512, see :class:`airgap.keys.pkcs11.Pkcs11URI`). With no reference, ``COSIGN_KEY``
names the key. KMS references (``awskms://`` ...) need a network, so they are refused with a hint. The
passwords that unlock them come from :mod:`airgap.keys.passwords`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from airgap.errors import ConfigError
from airgap.keys.passwords import K8S_KEY, K8S_PUB, read_password, read_secret_file
from airgap.keys.private import KeySigner, decrypt_private_key, is_encrypted_private_key, is_private_key
from airgap.keys.public import load_public_keys_pem

if TYPE_CHECKING:
    from airgap.keys.private import PrivateKey, Signer
    from airgap.keys.public import PublicKey

KMS_SCHEMES = ("awskms://", "gcpkms://", "azurekms://", "hashivault://", "k8s://")


def resolve_keyref(keyref: str | None) -> str:
    """``keyref``, else ``COSIGN_KEY``, else a ConfigError saying how to name a key."""
    if keyref:
        return keyref
    default = os.environ.get("COSIGN_KEY", "")
    if not default:
        raise ConfigError("no key given: pass --key KEYREF or set COSIGN_KEY")
    return default


def _refuse_kms(keyref: str) -> None:
    for scheme in KMS_SCHEMES:
        if keyref.startswith(scheme):
            raise ConfigError(f"{scheme} KMS keys are not supported offline; export the public key "
                              f"(cosign public-key --key {keyref}) or use a key file or pkcs11: URI")


def read_key_source(keyref: str) -> tuple[bytes, str, Path | None]:
    """The PEM bytes a file/env/secret-dir reference points at: (data, description, secret dir or None).
    For a secret directory this is ``cosign.key``; callers wanting ``cosign.pub`` look there themselves."""
    _refuse_kms(keyref)
    if keyref.startswith("env://"):
        name = keyref.removeprefix("env://")
        value = os.environ.get(name, "") if name else ""
        if not value.strip():
            raise ConfigError(f"key reference {keyref}: environment variable {name or '?'} is unset or empty")
        return value.encode(), f"key in ${name}", None
    path = Path(keyref)
    if path.is_dir():
        key_path = path / K8S_KEY
        if not key_path.is_file():
            raise ConfigError(f"key directory {keyref} has no {K8S_KEY} (want a mounted cosign secret)")
        return read_secret_file(key_path, "key file", strip_newline=False), str(key_path), path
    if not path.exists():
        raise ConfigError(f"key file not found: {keyref}")
    return read_secret_file(path, "key file", strip_newline=False), keyref, None


def load_private_key(keyref: str, *, password_file: str | None = None) -> PrivateKey:
    """The in-memory private key a file/env/secret-dir reference names, decrypted when it needs to be."""
    data, what, secret_dir = read_key_source(keyref)
    if not is_private_key(data):
        raise ConfigError(f"{what} is not a private key (a signing key is needed)")
    password = None
    if is_encrypted_private_key(data):
        password = read_password(what, password_file=password_file, secret_dir=secret_dir)
    return decrypt_private_key(data, password, what)


def load_signer(keyref: str | None, *, password_file: str | None = None) -> Signer:
    """A :class:`~airgap.keys.private.Signer` for a key reference (``None``: ``COSIGN_KEY``)."""
    keyref = resolve_keyref(keyref)
    _refuse_kms(keyref)
    if keyref.startswith("pkcs11:"):
        from airgap.keys.pkcs11 import Pkcs11Signer, Pkcs11URI

        return Pkcs11Signer(Pkcs11URI.parse(keyref))
    return KeySigner(load_private_key(keyref, password_file=password_file))


def load_public_keys(keyref: str, *, password_file: str | None = None) -> list[PublicKey]:
    """The public keys a reference names: every key in a PEM file (``PUBLIC KEY`` or ``CERTIFICATE``
    blocks), ``env://``, a secret directory's ``cosign.pub``, a ``pkcs11:`` public object, or the public
    half of a private-key reference (which may ask for its password)."""
    _refuse_kms(keyref)
    if keyref.startswith("pkcs11:"):
        from airgap.keys.pkcs11 import Pkcs11URI, read_pkcs11_public_key

        return [read_pkcs11_public_key(Pkcs11URI.parse(keyref))]
    path = Path(keyref)
    if path.is_dir() and (path / K8S_PUB).is_file():
        pub_path = path / K8S_PUB
        return load_public_keys_pem(read_secret_file(pub_path, "key file", strip_newline=False),
                                         str(pub_path))
    data, what, _ = read_key_source(keyref)
    if is_private_key(data):
        return [load_private_key(keyref, password_file=password_file).public_key()]
    return load_public_keys_pem(data, what)
