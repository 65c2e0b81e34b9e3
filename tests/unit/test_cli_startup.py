"""`airgap --help` must stay fast: the CLI module may import click and nothing heavy."""

import subprocess
import sys

HEAVY = ("requests", "urllib3", "cryptography", "sigstore", "oras", "yaml", "concurrent.futures")


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
