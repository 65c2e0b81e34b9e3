"""Signing fixtures other tests can reuse: key pairs on disk and images signed by airgap.

Import the fixtures into a test module (``from support.signing import keypair, signed_image``) to use them:

- ``keypair(name="k1", kind="ecdsa-p256", password=None)`` -> :class:`KeyPair`: a private key file
  (unencrypted PKCS#8, or cosign's encrypted format when ``password`` is given), its public PEM file, and a
  :class:`airgap.keys.private.KeySigner`.
- ``signed_image(reg, repo, key=None, platforms=("linux/amd64",), fmt="legacy", recursive=False, ...)`` ->
  :class:`SignedImage`: an image pushed with ``make_image`` and signed by airgap's library.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from support.images import Image, push_image  # noqa: E402
from support.registries import Registry  # noqa: E402

if TYPE_CHECKING:
    from airgap.keys.private import KeySigner
    from airgap.signing.targets import SignSummary


@dataclass
class KeyPair:
    name: str
    private_path: Path
    public_path: Path
    signer: KeySigner
    password: bytes | None = None

    @property
    def public_pem(self) -> bytes:
        return self.public_path.read_bytes()

    @property
    def key_id(self) -> str:
        from airgap.keys.public import key_id

        return key_id(self.signer.public_key)


def make_private_key(kind: str = "ecdsa-p256") -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key kind {kind}")


def write_keypair(directory: Path, name: str = "k1", kind: str = "ecdsa-p256",
                  password: bytes | None = None) -> KeyPair:
    """Write ``<name>.key`` and ``<name>.pub`` under ``directory``."""
    from cryptography.hazmat.primitives import serialization

    from airgap.keys.private import KeySigner
    from airgap.keys.public import public_pem

    key = make_private_key(kind)
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"{name}.key"
    public_path = directory / f"{name}.pub"
    if password is None:
        private_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    else:
        from airgap.keys.private import encrypt_private_key

        private_path.write_bytes(encrypt_private_key(key, password))
    private_path.chmod(0o600)
    public_path.write_bytes(public_pem(key.public_key()))
    return KeyPair(name, private_path, public_path, KeySigner(key), password)


@pytest.fixture
def keypair(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., KeyPair]:
    """``keypair(name="k1", kind="ecdsa-p256", password=None)`` -> :class:`KeyPair` in a fresh dir."""

    def make(name: str = "k1", kind: str = "ecdsa-p256", password: bytes | None = None) -> KeyPair:
        return write_keypair(tmp_path_factory.mktemp("keys"), name, kind, password)

    return make


@dataclass
class SignedImage:
    image: Image
    key: KeyPair
    summary: SignSummary
    ref: str  # registry/repo@digest

    @property
    def digest(self) -> str:
        return self.image.digest


def sign_pushed(reg: Registry, image: Image, key: KeyPair, **kwargs: Any) -> SignSummary:
    """Sign an already pushed image on ``reg`` with airgap's library (kwargs go to ``sign_image``).
    Plain-HTTP loopback registries only (the client gets no CA file or credentials)."""
    from airgap.oci.registry import RegistryClient
    from airgap.signing.sign import sign_image

    return sign_image(f"{reg.host}/{image.repo}@{image.digest}", key.signer, client=RegistryClient(), **kwargs)


@pytest.fixture
def signed_image(keypair: Callable[..., KeyPair]) -> Callable[..., SignedImage]:
    """``signed_image(reg, repo="team/app", key=None, tag="1.0", platforms=(...), fmt="legacy",
    recursive=False, annotations=None, signature_repo=None)`` -> :class:`SignedImage`."""

    def make(reg: Registry, repo: str = "team/app", key: KeyPair | None = None, tag: str | None = "1.0",
             platforms: tuple[str, ...] = ("linux/amd64",), **sign_kwargs: Any) -> SignedImage:
        from support.images import Pusher

        key = key or keypair()
        auth = (reg.username, reg.password) if reg.username and reg.password else None
        pusher = Pusher(reg.url, auth=auth, verify=str(reg.tls.ca_pem) if reg.tls else True)
        image = push_image(pusher, repo, tag, platforms=platforms)
        summary = sign_pushed(reg, image, key, **sign_kwargs)
        return SignedImage(image, key, summary, f"{reg.host}/{repo}@{image.digest}")

    return make
