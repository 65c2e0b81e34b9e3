"""The README's first command, ``./scripts/demo.sh``, run as a user runs it: it must end with the demo image
verified offline at the disconnected registry, the unsigned one refused and the audit written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support.registries import find_tool

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_end_to_end(tmp_path: Path) -> None:
    if find_tool("docker-registry") is None:
        pytest.skip("docker-registry is not installed (run scripts/install-peers.sh)")
    work = tmp_path / "demo"
    out = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "AIRGAP_DEMO_DIR": str(work)}, check=False)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    assert "==> demo complete:" in out.stdout + out.stderr
    assert "an unsigned image was allowed" not in out.stderr
    audit = json.loads((work / "audit" / "audit.json").read_text())
    assert audit["images"] and (work / "trust" / "map.json").is_file()
