"""Key files in cosign's format, key references, password sources, and `airgap key` (no peers needed)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from airgap.cli import cli
from airgap.errors import ConfigError
from airgap.keys.passwords import WrongPasswordError
from airgap.keys.pem import pem_blocks, pem_encode
from airgap.keys.pkcs11 import Pkcs11URI
from airgap.keys.private import (
    COSIGN_PEM_TYPE,
    SIGSTORE_PEM_TYPE,
    KeySigner,
    Signer,
    decrypt_private_key,
    encrypt_private_key,
    generate_keypair,
    is_encrypted_private_key,
    is_private_key,
)
from airgap.keys.public import key_id, load_public_key, load_public_keys_pem, public_pem, verify_signature
from airgap.keys.references import load_public_keys, load_signer

if TYPE_CHECKING:
    from airgap.keys.private import PrivateKey

PASSWORD = b"correct horse"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's cosign settings."""
    for name in ("COSIGN_PASSWORD", "COSIGN_KEY", "COSIGN_PKCS11_MODULE_PATH", "COSIGN_PKCS11_PIN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    """One cosign-format key pair (scrypt is deliberately slow; share it)."""
    return generate_keypair(PASSWORD)


def _pem(key: PrivateKey, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _body(pem: bytes) -> dict[str, object]:
    [(_, der)] = pem_blocks(pem)
    doc: dict[str, object] = json.loads(der)
    return doc


# ---- the encrypted format ------------------------------------------------------------------------

def test_generate_writes_cosign_format_and_round_trips(keypair: tuple[bytes, bytes]) -> None:
    private_pem, pub_pem = keypair
    assert private_pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert pub_pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    doc = _body(private_pem)
    assert doc["kdf"] == {"name": "scrypt", "params": {"N": 65536, "r": 8, "p": 1},
                          "salt": doc["kdf"]["salt"]}  # type: ignore[index]
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32  # type: ignore[index]
    assert doc["cipher"]["name"] == "nacl/secretbox"  # type: ignore[index]
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24  # type: ignore[index]
    assert set(doc) == {"kdf", "cipher", "ciphertext"}
    key = decrypt_private_key(private_pem, PASSWORD)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert public_pem(key.public_key()) == pub_pem
    signer = KeySigner(key)
    assert verify_signature(load_public_key(pub_pem), signer.sign(b"data"), b"data")


def test_wrong_password_is_one_clear_config_error(keypair: tuple[bytes, bytes]) -> None:
    with pytest.raises(WrongPasswordError, match="^wrong password for cosign.key$") as info:
        decrypt_private_key(keypair[0], b"nope", "cosign.key")
    assert isinstance(info.value, ConfigError)
    with pytest.raises(ConfigError, match="password is needed"):
        decrypt_private_key(keypair[0], None)


def test_tampered_ciphertext_is_refused(keypair: tuple[bytes, bytes]) -> None:
    doc = _body(keypair[0])
    sealed = bytearray(base64.b64decode(doc["ciphertext"]))  # type: ignore[arg-type]
    sealed[-1] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    pem = pem_encode(SIGSTORE_PEM_TYPE, json.dumps(doc).encode())
    with pytest.raises(WrongPasswordError):
        decrypt_private_key(pem, PASSWORD)


@pytest.mark.parametrize("params, message", [
    ({"N": 1 << 30, "r": 8, "p": 1}, "too costly"),
    ({"N": 1000, "r": 8, "p": 1}, "invalid"),
    ({"N": "65536", "r": 8, "p": 1}, "not a int"),
])
def test_hostile_scrypt_parameters_are_refused_before_any_work(params: dict[str, object], message: str,
                                                               keypair: tuple[bytes, bytes]) -> None:
    doc = _body(keypair[0])
    doc["kdf"]["params"] = params  # type: ignore[index]
    with pytest.raises(ConfigError, match=message):
        decrypt_private_key(pem_encode(SIGSTORE_PEM_TYPE, json.dumps(doc).encode()), PASSWORD)


def test_legacy_cosign_pem_type_is_read() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = encrypt_private_key(key, b"", pem_type=COSIGN_PEM_TYPE)
    assert pem.startswith(b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----")
    assert key_id(decrypt_private_key(pem, b"").public_key()) == key_id(key.public_key())


def test_old_scrypt_cost_is_honoured() -> None:
    """cosign v1 / go-tuf wrote N=32768: we read whatever (bounded) parameters the file names."""
    import hashlib

    import nacl.secret

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    box = nacl.secret.SecretBox(hashlib.scrypt(b"old", salt=salt, n=32768, r=8, p=1, dklen=32, maxmem=64 << 20))
    b64 = base64.b64encode
    doc = {"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1}, "salt": b64(salt).decode()},
           "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce).decode()},
           "ciphertext": b64(box.encrypt(der, nonce).ciphertext).decode()}
    pem = pem_encode(COSIGN_PEM_TYPE, json.dumps(doc).encode())
    assert key_id(decrypt_private_key(pem, b"old").public_key()) == key_id(key.public_key())


@pytest.mark.parametrize("make, fmt", [
    (lambda: ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8),
    (lambda: ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL),
    (lambda: rsa.generate_private_key(65537, 2048), serialization.PrivateFormat.TraditionalOpenSSL),
    (lambda: ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8),
], ids=["pkcs8-ec", "sec1-ec", "pkcs1-rsa", "pkcs8-ed25519"])
def test_plain_pems_load_without_a_password(make: object, fmt: serialization.PrivateFormat) -> None:
    key = make()  # type: ignore[operator]
    pem = _pem(key, fmt)
    assert not is_encrypted_private_key(pem) and is_private_key(pem)
    loaded = decrypt_private_key(pem)
    assert key_id(loaded.public_key()) == key_id(key.public_key())


@pytest.mark.parametrize("make, message", [
    (lambda: _pem(ed448.Ed448PrivateKey.generate()), "unsupported"),  # type: ignore[arg-type]
    (lambda: _pem(dsa.generate_private_key(2048)), "unsupported"),  # type: ignore[arg-type]
    (lambda: _pem(ec.generate_private_key(ec.SECP224R1())), "unsupported curve"),
    (lambda: _pem(rsa.generate_private_key(65537, 1024)), "under 2048 bits"),  # noqa: S505
    (lambda: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "unsupported PEM type"),
    (lambda: b"not a pem at all", "no PEM block"),
], ids=["ed448", "dsa", "p224", "rsa1024", "certificate", "garbage"])
def test_unknown_or_weak_private_keys_are_refused(make: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        decrypt_private_key(make())  # type: ignore[operator]


def test_encrypting_an_unsupported_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="unsupported"):
        encrypt_private_key(ed448.Ed448PrivateKey.generate(), b"x")  # type: ignore[arg-type]


def test_public_key_files_with_several_keys_and_certificates(tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    a, b, c = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(c.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(c, hashes.SHA256()))
    path = tmp_path / "keys.pem"
    path.write_bytes(b"comment\n" + public_pem(a.public_key()) + public_pem(b.public_key())
                     + cert.public_bytes(serialization.Encoding.PEM))
    found = load_public_keys(str(path))
    assert [key_id(k) for k in found] == [key_id(k.public_key()) for k in (a, b, c)]
    with pytest.raises(ConfigError, match="no PEM public key"):
        load_public_keys_pem(b"nothing here")


# ---- key references and passwords ----------------------------------------------------------------

@pytest.fixture
def key_files(tmp_path: Path, keypair: tuple[bytes, bytes]) -> tuple[Path, Path]:
    (tmp_path / "cosign.key").write_bytes(keypair[0])
    (tmp_path / "cosign.pub").write_bytes(keypair[1])
    return tmp_path / "cosign.key", tmp_path / "cosign.pub"


def _signs_for(signer: Signer, pub_pem: bytes) -> bool:
    return verify_signature(load_public_key(pub_pem), signer.sign(b"payload"), b"payload")


def test_file_keyref_with_cosign_password(key_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD.decode())
    assert _signs_for(load_signer(str(key_files[0])), key_files[1].read_bytes())
    # the public half of a private-key reference
    [pub] = load_public_keys(str(key_files[0]))
    assert public_pem(pub) == key_files[1].read_bytes()
    assert load_signer is not None and load_public_keys(str(key_files[1]))  # re-exports work


def test_password_file_wins_and_loses_one_trailing_newline(key_files: tuple[Path, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "wrong")
    pw = tmp_path / "pw"
    pw.write_bytes(PASSWORD + b"\n")
    assert _signs_for(load_signer(str(key_files[0]), password_file=str(pw)), key_files[1].read_bytes())
    pw.write_bytes(PASSWORD + b"\n\n")
    with pytest.raises(WrongPasswordError, match=f"wrong password for {key_files[0]}"):
        load_signer(str(key_files[0]), password_file=str(pw))


def test_no_password_and_no_terminal_fails_clearly(key_files: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="no terminal to ask on: set COSIGN_PASSWORD or pass --password-file"):
        load_signer(str(key_files[0]))


def test_plain_key_needs_no_password(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "plain.pem").write_bytes(_pem(key))
    signer = load_signer(str(tmp_path / "plain.pem"))  # no COSIGN_PASSWORD, no TTY: not asked
    assert key_id(signer.public_key) == key_id(key.public_key())


def test_env_keyref(keypair: tuple[bytes, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", keypair[0].decode())
    monkeypatch.setenv("MY_PUB", keypair[1].decode())
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD.decode())
    assert _signs_for(load_signer("env://MY_KEY"), keypair[1])
    assert [public_pem(k) for k in load_public_keys("env://MY_PUB")] == [keypair[1]]
    with pytest.raises(ConfigError, match="environment variable NOT_SET is unset or empty"):
        load_signer("env://NOT_SET")
    with pytest.raises(ConfigError, match="not a private key"):
        load_signer("env://MY_PUB")


def test_kubernetes_secret_directory(tmp_path: Path, keypair: tuple[bytes, bytes],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "cosign.key").write_bytes(keypair[0])
    (secret / "cosign.password").write_bytes(PASSWORD)  # as kubectl mounts it: exact bytes
    (secret / "cosign.pub").write_bytes(keypair[1])
    monkeypatch.setenv("COSIGN_PASSWORD", "not this one")
    assert _signs_for(load_signer(str(secret)), keypair[1])
    assert [public_pem(k) for k in load_public_keys(str(secret))] == [keypair[1]]
    (secret / "cosign.pub").unlink()  # falls back to the private key's public half
    assert [public_pem(k) for k in load_public_keys(str(secret))] == [keypair[1]]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="has no cosign.key"):
        load_signer(str(empty))


@pytest.mark.parametrize("ref", ["awskms://alias/k", "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
                                 "azurekms://vault.example/k", "hashivault://transit-key", "k8s://ns/secret"])
def test_kms_references_are_refused_offline(ref: str) -> None:
    for load in (load_signer, load_public_keys):
        with pytest.raises(ConfigError, match="KMS keys are not supported offline; export the public key"):
            load(ref)


def test_cosign_key_env_is_the_default(key_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no key given: pass --key KEYREF or set COSIGN_KEY"):
        load_signer(None)
    monkeypatch.setenv("COSIGN_KEY", str(key_files[0]))
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD.decode())
    assert _signs_for(load_signer(None), key_files[1].read_bytes())


def test_missing_key_file() -> None:
    with pytest.raises(ConfigError, match="key file not found: /no/such/key"):
        load_public_keys("/no/such/key")


# ---- pkcs11: URIs --------------------------------------------------------------------------------

def test_pkcs11_uri_parsing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    uri = Pkcs11URI.parse("pkcs11:token=my%20token;object=sign%3bkey;id=%01%ff;type=private"
                                  "?module-path=/usr/lib/x.so&pin-value=12%2634")
    assert (uri.token, uri.object, uri.id, uri.module_path, uri.pin(ask=False)) == (
        "my token", "sign;key", b"\x01\xff", "/usr/lib/x.so", "12&34")
    assert Pkcs11URI.parse(str(uri)).id == b"\x01\xff"
    assert "12&34" not in repr(uri)
    pin = tmp_path / "pin"
    pin.write_text("9999\n")
    monkeypatch.setenv("COSIGN_PKCS11_MODULE_PATH", "/env/module.so")
    uri = Pkcs11URI.parse(f"pkcs11:slot-id=3;id=%aa?pin-source=file://{pin}")
    assert (uri.slot_id, uri.module_path, uri.pin(ask=False)) == (3, "/env/module.so", "9999")
    monkeypatch.setenv("COSIGN_PKCS11_PIN", "4242")
    assert Pkcs11URI.parse("pkcs11:slot-id=3;id=%aa").pin(ask=False) == "4242"


@pytest.mark.parametrize("text, message", [
    ("pkcs11:token=t;object=k", "module-path"),
    ("pkcs11:object=k?module-path=/m.so", "token= or slot-id="),
    ("pkcs11:token=t?module-path=/m.so", "object= or id="),
    ("pkcs11:slot-id=x;object=k?module-path=/m.so", "slot-id 'x' is not a number"),
    ("pkcs11:token=t;token=u;object=k?module-path=/m.so", "repeats attribute 'token'"),
    ("pkcs11:token;object=k?module-path=/m.so", "has no value"),
])
def test_bad_pkcs11_uris(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Pkcs11URI.parse(text)


def test_pkcs11_missing_module_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PKCS#11 module not found: /no/such/module.so"):
        load_signer("pkcs11:token=t;object=k?module-path=/no/such/module.so&pin-value=1")


# ---- airgap key ... ------------------------------------------------------------------------------

def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return runner.invoke(cli, args, env=env)
    finally:
        os.chdir(old)


def test_cli_generate_modes_and_no_overwrite(tmp_path: Path) -> None:
    env = {"COSIGN_PASSWORD": "pw"}
    result = _run(["key", "generate"], tmp_path, env)
    assert result.exit_code == 0, result.output
    key_path, pub_path = tmp_path / "cosign.key", tmp_path / "cosign.pub"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub_path.stat().st_mode) == 0o644
    pub = load_public_key(pub_path.read_bytes())
    assert f"key id: {key_id(pub)}" in result.stdout
    assert key_id(decrypt_private_key(key_path.read_bytes(), b"pw").public_key()) == key_id(pub)

    before = key_path.read_bytes()
    result = _run(["key", "generate"], tmp_path, env)
    assert result.exit_code == 2
    assert "cosign.key and cosign.pub already exist; pass --force" in result.stderr
    assert key_path.read_bytes() == before
    result = _run(["key", "generate", "--force", "--json"], tmp_path, env)
    assert result.exit_code == 0 and key_path.read_bytes() != before
    doc = json.loads(result.stdout)
    assert doc["algorithm"] == "ecdsa-p256" and doc["private_key"] == "cosign.key"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_generate_with_password_file_and_prefix(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "sub").mkdir()
    result = _run(["key", "generate", "--output-prefix", "sub/release", "--password-file", "pw"], tmp_path)
    assert result.exit_code == 0, result.output
    decrypt_private_key((tmp_path / "sub/release.key").read_bytes(), b"s3cret")


def test_cli_generate_without_password_or_terminal(tmp_path: Path) -> None:
    result = _run(["key", "generate"], tmp_path)
    assert result.exit_code == 2
    assert "no terminal to ask on" in result.stderr
    assert not (tmp_path / "cosign.key").exists()


def test_cli_public_and_import(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "plain.pem").write_bytes(_pem(key, serialization.PrivateFormat.TraditionalOpenSSL))
    result = _run(["key", "import", "plain.pem"], tmp_path, {"COSIGN_PASSWORD": "pw2"})
    assert result.exit_code == 0, result.output
    imported = (tmp_path / "import-cosign.key").read_bytes()
    assert imported.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    assert stat.S_IMODE((tmp_path / "import-cosign.key").stat().st_mode) == 0o600
    assert key_id(decrypt_private_key(imported, b"pw2").public_key()) == key_id(key.public_key())

    result = _run(["key", "import", "import-cosign.key", "--output-prefix", "again"], tmp_path,
                  {"COSIGN_PASSWORD": "x"})
    assert result.exit_code == 2 and "already encrypted" in result.stderr

    result = _run(["key", "public", "import-cosign.key"], tmp_path, {"COSIGN_PASSWORD": "pw2"})
    assert result.exit_code == 0, result.output
    assert result.stdout == public_pem(key.public_key()).decode()
    assert f"key id: {key_id(key.public_key())}" in result.stderr

    result = _run(["key", "public", "--json", "import-cosign.pub"], tmp_path)
    doc = json.loads(result.stdout)
    assert doc == {"keys": [{"key_id": key_id(key.public_key()), "algorithm": "ecdsa-p256",
                             "pem": public_pem(key.public_key()).decode()}]}

    result = _run(["key", "public", "import-cosign.key"], tmp_path, {"COSIGN_PASSWORD": "bad"})
    assert result.exit_code == 2
    assert result.stderr == "error: wrong password for import-cosign.key\n"
    result = _run(["key", "public", "awskms://alias/x"], tmp_path)
    assert result.exit_code == 2 and "not supported offline" in result.stderr
