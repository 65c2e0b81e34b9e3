"""Key files interoperate with real cosign: its keys open in airgap, airgap's keys work in cosign, and
signatures cross both ways (sign-blob / verify-blob, offline: no tlog)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require_tool

from airgap.cli import cli
from airgap.keys.passwords import WrongPasswordError
from airgap.keys.private import decrypt_private_key
from airgap.keys.public import key_id, load_public_key, public_pem, verify_signature
from airgap.keys.references import load_signer

PASSWORD = "interop-pw"


def _cosign_env(home: Path, password: str = PASSWORD) -> dict[str, str]:
    # A private HOME keeps cosign from reading or writing the developer's ~/.sigstore TUF cache.
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "COSIGN_PASSWORD": password,
            "TUF_ROOT": str(home / "tuf")}


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def airgap_keypair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`airgap key generate` output (airgap.key / airgap.pub) shared by the tests below."""
    work = tmp_path_factory.mktemp("airgap-key")
    runner = CliRunner()
    result = runner.invoke(cli, ["key", "generate", "--output-prefix", str(work / "airgap")],
                           env={"COSIGN_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    return work


@pytest.mark.parametrize("tool", ["cosign", "cosign3"])
def test_cosign_generated_key_opens_in_airgap(tool: str, tmp_path: Path) -> None:
    exe = require_tool(tool)
    out = _run([exe, "generate-key-pair"], tmp_path, _cosign_env(tmp_path))
    assert out.returncode == 0, out.stderr
    pem = (tmp_path / "cosign.key").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----")
    key = decrypt_private_key(pem, PASSWORD.encode())
    assert public_pem(key.public_key()) == (tmp_path / "cosign.pub").read_bytes()
    with pytest.raises(WrongPasswordError):
        decrypt_private_key(pem, b"not-it")
    # and through a key reference, as `airgap sign --key cosign.key` would
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    signer = load_signer(str(tmp_path / "cosign.key"), password_file=str(pw))
    assert key_id(signer.public_key) == key_id(key.public_key())


@pytest.mark.parametrize("tool", ["cosign", "cosign3"])
def test_cosign_reads_airgap_generated_key(tool: str, airgap_keypair: Path, tmp_path: Path) -> None:
    exe = require_tool(tool)
    out = _run([exe, "public-key", "--key", str(airgap_keypair / "airgap.key")], tmp_path, _cosign_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.encode() == (airgap_keypair / "airgap.pub").read_bytes()
    bad = _run([exe, "public-key", "--key", str(airgap_keypair / "airgap.key")], tmp_path,
               _cosign_env(tmp_path, "wrong"))
    assert bad.returncode != 0


def test_cosign_signs_with_airgap_key_and_verifies(airgap_keypair: Path, tmp_path: Path) -> None:
    exe = require_tool("cosign")
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"airgap interop payload\n")
    env = _cosign_env(tmp_path)
    out = _run([exe, "sign-blob", "--key", str(airgap_keypair / "airgap.key"), "--tlog-upload=false", "--yes",
                "--output-signature", "blob.sig", str(blob)], tmp_path, env)
    assert out.returncode == 0, out.stderr
    out = _run([exe, "verify-blob", "--key", str(airgap_keypair / "airgap.pub"), "--insecure-ignore-tlog",
                "--signature", "blob.sig", str(blob)], tmp_path, env)
    assert out.returncode == 0, out.stderr
    # ... and airgap's verifier accepts cosign's signature with the same public key
    signature = base64.b64decode((tmp_path / "blob.sig").read_text())
    pub = load_public_key((airgap_keypair / "airgap.pub").read_bytes())
    assert verify_signature(pub, signature, blob.read_bytes())
    assert not verify_signature(pub, signature, blob.read_bytes() + b"x")


def test_airgap_signer_signature_verifies_in_cosign(airgap_keypair: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    exe = require_tool("cosign")
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    signer = load_signer(str(airgap_keypair / "airgap.key"))
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(4096))
    (tmp_path / "good.sig").write_text(base64.b64encode(signer.sign(blob.read_bytes())).decode())
    (tmp_path / "other.sig").write_text(base64.b64encode(signer.sign(b"something else")).decode())
    env = _cosign_env(tmp_path)
    verify = [exe, "verify-blob", "--key", str(airgap_keypair / "airgap.pub"), "--insecure-ignore-tlog"]
    out = _run([*verify, "--signature", "good.sig", str(blob)], tmp_path, env)
    assert out.returncode == 0, out.stderr
    out = _run([*verify, "--signature", "other.sig", str(blob)], tmp_path, env)
    assert out.returncode != 0


def test_airgap_import_of_openssl_key_works_in_cosign(tmp_path: Path) -> None:
    """A plain PEM (as openssl writes it) imported by airgap is a key cosign can sign with."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    exe = require_tool("cosign")
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "plain.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    result = CliRunner().invoke(cli, ["key", "import", str(tmp_path / "plain.pem"), "--output-prefix",
                                      str(tmp_path / "imported")], env={"COSIGN_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    out = _run([exe, "public-key", "--key", str(tmp_path / "imported.key")], tmp_path, _cosign_env(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.encode() == public_pem(key.public_key())
