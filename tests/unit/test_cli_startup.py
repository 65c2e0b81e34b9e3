"""`airgap --help` must stay fast: the CLI module may import click and nothing heavy."""

import subprocess
import sys

HEAVY = ("requests", "urllib3", "cryptography", "sigstore", "oras", "yaml", "concurrent.futures", "http.client",
         "ssl", "email.parser", "rich")


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from airgap.cli import cli\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    cli(['--help'], standalone_mode=False)\n"
        "assert 'Usage:' in buf.getvalue()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imported {out.stdout.strip()}"


# What a key-based `airgap verify` (and `airgap copy`) may not import. The registry path speaks HTTP through
# the standard library's http.client (airgap.oci.transport), which imports email.parser and ssl itself (so
# they load here now; what stays lazy is building TLS contexts and loading the system CA store, see
# tests/integration/test_transport.py); no third-party HTTP client, x509 only for certificates.
REGISTRY_PATH_HEAVY = ("requests", "urllib3", "oras", "sigstore", "yaml", "cryptography.x509", "rich")


def test_key_verify_and_copy_paths_import_no_third_party_http_library() -> None:
    code = (
        "import sys\n"
        "import airgap.oci.copy, airgap.oci.registry, airgap.verification.discover, airgap.verification.evaluate\n"
        "from airgap.verification.adhoc import policy_for_keys\n"
        "from airgap.verification.verifier import Verifier\n"
        "from airgap.keys.public import load_public_keys_pem\n"
        "from airgap.oci.registry import RegistryClient\n"
        "from airgap.verification.trust import Trust\n"
        "from cryptography.hazmat.primitives import serialization\n"
        "from cryptography.hazmat.primitives.asymmetric import ec\n"
        "pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(\n"
        "    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)\n"
        "load_public_keys_pem(pem)\n"
        "trust = Trust.from_keys([('k.pub', pem)])\n"
        "Verifier(trust, policy_for_keys(trust, require_tlog=False), RegistryClient())\n"
        f"print(','.join(m for m in {REGISTRY_PATH_HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the registry path imported {out.stdout.strip()}"
