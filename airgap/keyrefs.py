"""Key references as cosign spells them, and the passwords and PINs that unlock them.

A key reference is one of: a file path; ``env://VAR`` (the PEM is in an environment variable); a directory
holding a Kubernetes secret as mounted in a pod (``cosign.key``, ``cosign.password``, ``cosign.pub``); or a
``pkcs11:`` URI (RFC 7512, see :class:`airgap.pkcs11.Pkcs11URI`, re-exported here). With no reference,
``COSIGN_KEY`` names the key. KMS references (``awskms://`` ...) need a network, so they are refused with a
hint.

Passwords, first found wins: ``--password-file`` (its content without one trailing newline), the secret
directory's ``cosign.password``, ``COSIGN_PASSWORD`` (even when empty, as cosign), a prompt on a terminal.
Without any of these we fail rather than hang waiting for input nobody will type.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from airgap.errors import ConfigError
from airgap.pkcs11 import Pkcs11Signer, Pkcs11URI, generate_pkcs11_keypair, read_pkcs11_public_key

if TYPE_CHECKING:
    from airgap.keys import PrivateKey, PublicKey, Signer

__all__ = ["K8S_KEY", "K8S_PASSWORD", "K8S_PUB", "KMS_SCHEMES", "MAX_KEY_FILE_BYTES", "Pkcs11Signer", "Pkcs11URI",
           "generate_pkcs11_keypair", "load_private_key", "load_public_keys", "load_signer", "prompt_secret",
           "read_key_source", "read_password", "read_pkcs11_public_key", "read_secret_file", "resolve_keyref"]

KMS_SCHEMES = ("awskms://", "gcpkms://", "azurekms://", "hashivault://", "k8s://")
K8S_KEY, K8S_PASSWORD, K8S_PUB = "cosign.key", "cosign.password", "cosign.pub"
# A PEM key file is a few KiB; anything much larger is a wrong path, not a key.
MAX_KEY_FILE_BYTES = 1024 * 1024


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


def read_secret_file(path: str | Path, what: str, *, strip_newline: bool = True) -> bytes:
    """A password or PIN file's bytes, without one trailing newline (``echo pw > file`` adds one)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError(f"{what} {path} is too large")
    if strip_newline:
        data = data.removesuffix(b"\n").removesuffix(b"\r")
    return data


def read_password(what: str, *, password_file: str | None = None, confirm: bool = False,
                  secret_dir: Path | None = None) -> bytes:
    """The password for ``what`` from the sources in the module docstring, in that order."""
    if password_file is not None:
        return read_secret_file(password_file, "password file")
    if secret_dir is not None and (secret_dir / K8S_PASSWORD).is_file():
        return read_secret_file(secret_dir / K8S_PASSWORD, "password file", strip_newline=False)
    env = os.environ.get("COSIGN_PASSWORD")
    if env is not None:
        return env.encode()
    return prompt_secret(f"Enter password for {what}: ", what=f"a password for {what}", confirm=confirm,
                         hint="set COSIGN_PASSWORD or pass --password-file")


def prompt_secret(prompt: str, *, what: str, hint: str, confirm: bool = False) -> bytes:
    """Ask on the terminal (no echo); without a terminal, fail with ``hint``."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise ConfigError(f"{what} is needed and there is no terminal to ask on: {hint}")
    import getpass

    value = getpass.getpass(prompt)
    if confirm and getpass.getpass("Enter again to confirm: ") != value:
        raise ConfigError("the passwords do not match")
    return value.encode()


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
    from airgap import keys

    data, what, secret_dir = read_key_source(keyref)
    if not keys.is_private_key(data):
        raise ConfigError(f"{what} is not a private key (a signing key is needed)")
    password = None
    if keys.is_encrypted_private_key(data):
        password = read_password(what, password_file=password_file, secret_dir=secret_dir)
    return keys.decrypt_private_key(data, password, what)


def load_signer(keyref: str | None, *, password_file: str | None = None) -> Signer:
    """A :class:`~airgap.keys.Signer` for a key reference (``None``: ``COSIGN_KEY``)."""
    keyref = resolve_keyref(keyref)
    _refuse_kms(keyref)
    if keyref.startswith("pkcs11:"):
        return Pkcs11Signer(Pkcs11URI.parse(keyref))
    from airgap.keys import KeySigner

    return KeySigner(load_private_key(keyref, password_file=password_file))


def load_public_keys(keyref: str, *, password_file: str | None = None) -> list[PublicKey]:
    """The public keys a reference names: every key in a PEM file (``PUBLIC KEY`` or ``CERTIFICATE``
    blocks), ``env://``, a secret directory's ``cosign.pub``, a ``pkcs11:`` public object, or the public
    half of a private-key reference (which may ask for its password)."""
    from airgap import keys

    _refuse_kms(keyref)
    if keyref.startswith("pkcs11:"):
        return [read_pkcs11_public_key(Pkcs11URI.parse(keyref))]
    path = Path(keyref)
    if path.is_dir() and (path / K8S_PUB).is_file():
        pub_path = path / K8S_PUB
        return keys.load_public_keys_pem(read_secret_file(pub_path, "key file", strip_newline=False),
                                         str(pub_path))
    data, what, _ = read_key_source(keyref)
    if keys.is_private_key(data):
        return [load_private_key(keyref, password_file=password_file).public_key()]
    return keys.load_public_keys_pem(data, what)
