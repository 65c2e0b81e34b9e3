"""A trust directory written from a bundle (``load --trust-out``, ``inspect --trust-out``) changes as one piece."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import airgap.fileio
from airgap.bundle.inspect import write_trust
from airgap.errors import ConfigError


def _bundle_files(version: str) -> dict[str, bytes]:
    return {"trust/keys/release.pub": f"key {version}\n".encode(),
            "trust/policy.yaml": f"policy {version}\n".encode(),
            "trust/trusted_root.json": f'{{"v": "{version}"}}'.encode(),
            "images/ignored": b"not trust"}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_trust_directory_is_written_whole_and_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "trust"
    assert write_trust(_bundle_files("v1"), out, extra={"map.json": b"{}"}) == [
        "keys/release.pub", "map.json", "policy.yaml", "trusted_root.json"]
    assert _tree(out)["policy.yaml"] == b"policy v1\n" and oct(
        (out / "keys/release.pub").stat().st_mode & 0o777) == "0o644"
    write_trust(_bundle_files("v2"), out, extra={"map.json": b"{}"})
    assert _tree(out)["keys/release.pub"] == b"key v2\n" and _tree(out)["policy.yaml"] == b"policy v2\n"


def test_an_interrupted_write_leaves_the_old_trust_as_it_was(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "trust"
    write_trust(_bundle_files("v1"), out)
    before = _tree(out)
    calls = {"n": 0}
    real_chmod = airgap.fileio.os.chmod

    def interrupted(path: Any, mode: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C after the first file of the new trust is complete
            raise KeyboardInterrupt
        real_chmod(path, mode)

    monkeypatch.setattr(airgap.fileio.os, "chmod", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_trust(_bundle_files("v2"), out)
    monkeypatch.undo()
    # Never the new key beside the old policy: every file is v1's, and no temp file is left behind.
    assert _tree(out) == before
    assert not [p for p in out.rglob(".*")]


def test_a_directory_holding_files_of_another_origin_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "trust"
    (out / "keys").mkdir(parents=True)
    (out / "keys" / "stale.pub").write_bytes(b"someone else's key")
    with pytest.raises(ConfigError, match="holds files not from this bundle"):
        write_trust(_bundle_files("v1"), out)
    assert _tree(out) == {"keys/stale.pub": b"someone else's key"}
