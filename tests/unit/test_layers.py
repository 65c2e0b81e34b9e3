"""The package's layers hold: each wing imports only the wings below it, the pure wings (checks, policy, keys,
refs) never reach the network, and no module imports its way back into a circle (the contracts are in
pyproject.toml, ``[tool.importlinter]``; import-linter follows imports inside functions too)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_import_contracts_are_kept(tmp_path: Path) -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    out = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout
