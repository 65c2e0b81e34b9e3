"""The single-file CLI (``pack --with-cli``): its target, its reproducible bytes, and its bootstrap's extraction and
refusals, on small wheels made here (the real wheels and a real run are in tests/integration/test_selfcarry.py)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from airgap.bundle import cli_bootstrap
from airgap.bundle.cli_archive import PendingArchive, Target, check_beside, requirements, write_archive
from airgap.errors import ConfigError, IntegrityError


def make_wheel(directory: Path, name: str = "demo_pkg", members: dict[str, bytes] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-1.0-py3-none-any.whl"
    members = members if members is not None else {
        f"{name}/__init__.py": b"VALUE = 1\n",
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{name}-1.0.data/purelib/{name}_extra.py": b"EXTRA = 2\n",
        f"{name}-1.0.data/scripts/{name}-tool": b"#!/bin/sh\n",
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in members.items():
            z.writestr(member, data)
    return path


def test_target_parse_and_tags() -> None:
    t = Target.parse(None, None)
    assert (t.python, t.platform, t.abi) == ("3.11", "manylinux_2_28_x86_64", "cp311")
    tags = t.platform_tags()
    assert tags[0] == "manylinux_2_28_x86_64" and tags[23] == "manylinux_2_5_x86_64"
    assert tags[24:] == ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    assert "manylinux_2_29_x86_64" not in tags
    arm = Target.parse("3.12", "manylinux_2_17_aarch64")
    assert arm.platform_tags()[-1] == "manylinux2014_aarch64" and arm.abi == "cp312"
    assert ["--python-version", "3.12"] == arm.pip_args()[1:3]
    with pytest.raises(ConfigError, match="--cli-python: expected 3.11 or later"):
        Target.parse("3.10", None)
    with pytest.raises(ConfigError, match="--cli-platform: expected manylinux_2_<glibc minor>_<arch>"):
        Target.parse(None, "win_amd64")


def test_requirements_are_the_runtime_ones() -> None:
    reqs = requirements()
    assert any(r.startswith("cryptography") for r in reqs) and any(r.startswith("sigstore") for r in reqs)
    assert not any("extra" in r for r in reqs) and reqs == sorted(reqs)


def test_the_archive_is_reproducible_and_stored(tmp_path: Path) -> None:
    wheels = [make_wheel(tmp_path / "wheels"), make_wheel(tmp_path / "wheels", "other_pkg")]
    one, two = tmp_path / "one.pyz", tmp_path / "two.pyz"
    info = write_archive(one, sorted(wheels), Target(), 1_700_000_000)
    write_archive(two, sorted(wheels), Target(), 1_700_000_000)
    assert one.read_bytes() == two.read_bytes()
    assert one.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    write_archive(two, sorted(wheels), Target(), 1_700_000_002)
    assert one.read_bytes() != two.read_bytes()  # the time is SOURCE_DATE_EPOCH's
    with zipfile.ZipFile(one) as z:
        names = z.namelist()
        assert names == sorted(names) and names[0] == "__main__.py"
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
        assert {i.date_time for i in z.infolist()} == {(2023, 11, 14, 22, 13, 20)}
        assert {i.external_attr >> 16 for i in z.infolist()} == {0o100644}
        assert "site/airgap/cli.py" in names and "site/airgap/py.typed" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert z.read("__main__.py") == Path(cli_bootstrap.__file__).read_bytes()
        assert z.read("wheels/demo_pkg-1.0-py3-none-any.whl") == wheels[0].read_bytes()
        assert json.loads(z.read("airgap-pyz.json")) == info
        assert b"Requires-Dist: cryptography" in z.read("site/airgap-0.1.0.dist-info/METADATA")
    assert info["wheels"][0] == {"name": wheels[0].name, "size": wheels[0].stat().st_size,
                                 "sha256": hashlib.sha256(wheels[0].read_bytes()).hexdigest()}
    old = tmp_path / "old.pyz"  # before 1980: zip's earliest time
    write_archive(old, [], Target(), 0)
    with zipfile.ZipFile(old) as z:
        assert z.infolist()[0].date_time == (1980, 1, 1, 0, 0, 0)


def test_the_bootstrap_extracts_airgap_and_the_wheels(tmp_path: Path) -> None:
    pyz = tmp_path / "a.pyz"
    info = write_archive(pyz, [make_wheel(tmp_path / "wheels")], Target(), 1_700_000_000)
    target = tmp_path / "cache" / "digest"
    target.parent.mkdir()
    with zipfile.ZipFile(pyz) as z:
        cli_bootstrap.extract(z, info, str(target.parent), str(target))
    site = target / "site"
    assert (site / "airgap" / "bundle" / "cli_bootstrap.py").is_file()
    assert (site / "demo_pkg" / "__init__.py").read_bytes() == b"VALUE = 1\n"
    assert (site / "demo_pkg_extra.py").is_file()  # .data/purelib lands in site-packages
    assert not list(site.rglob("demo_pkg-tool"))  # .data/scripts is not needed
    assert (target / cli_bootstrap.COMPLETE).is_file()
    assert [p.name for p in target.parent.iterdir()] == ["digest"]  # no temp directory left


@pytest.mark.parametrize("member", ["../evil.py", "/etc/evil", "a/../../evil", "c:/evil", "a\\..\\evil"])
def test_the_bootstrap_refuses_a_wheel_that_escapes(tmp_path: Path, member: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    pyz = tmp_path / "a.pyz"
    info = write_archive(pyz, [make_wheel(tmp_path / "wheels", members={member: b"x"})], Target(), 0)
    with zipfile.ZipFile(pyz) as z, pytest.raises(SystemExit):
        cli_bootstrap.extract(z, info, str(tmp_path), str(tmp_path / "target"))
    assert "refusing the archive member" in capsys.readouterr().err
    assert not (tmp_path / "target").exists() and not (tmp_path.parent / "evil.py").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_bootstrap_refuses_a_wheel_that_is_not_what_it_lists(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pyz = tmp_path / "a.pyz"
    info = write_archive(pyz, [make_wheel(tmp_path / "wheels")], Target(), 0)
    info["wheels"][0]["sha256"] = "0" * 64
    with zipfile.ZipFile(pyz) as z, pytest.raises(SystemExit):
        cli_bootstrap.extract(z, info, str(tmp_path), str(tmp_path / "target"))
    assert "does not match its sha256" in capsys.readouterr().err


@pytest.mark.parametrize(("python", "platform", "message"), [
    ("3.12", "manylinux_2_28_x86_64", "carries wheels for CPython 3.12 on manylinux_2_28_x86_64; this is CPython"),
    ("3.11", "manylinux_2_28_aarch64", "this machine is x86_64"),
    ("3.11", "manylinux_2_99_x86_64", "need glibc 2.99 or later; this system has glibc"),
])
def test_the_bootstrap_refuses_another_host(python: str, platform: str, message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import platform as host

    if host.machine() != "x86_64":
        pytest.skip("the expectations name x86_64")
    cli_bootstrap.check_host({"python": "3.11", "platform": "manylinux_2_17_x86_64"})  # this host: fine
    with pytest.raises(SystemExit):
        cli_bootstrap.check_host({"python": python, "platform": platform})
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_bootstrap_refuses_a_system_without_glibc(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import platform as host

    def musl(name: str) -> str:
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(os, "confstr", musl)
    with pytest.raises(SystemExit):
        cli_bootstrap.check_host({"python": "3.11", "platform": f"manylinux_2_17_{host.machine()}"})
    assert "need glibc 2.17 or later; this system has no glibc" in capsys.readouterr().err


def test_the_cache_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("AIRGAP_PYZ_CACHE", str(shared))
    with pytest.raises(SystemExit):
        cli_bootstrap.cache_root()
    assert "writable by others" in capsys.readouterr().err
    monkeypatch.setenv("AIRGAP_PYZ_CACHE", str(tmp_path / "mine"))
    assert cli_bootstrap.cache_root() == str(tmp_path / "mine") and (tmp_path / "mine").stat().st_mode & 0o777 == 0o700


def test_pending_archive_commits_with_its_checksum_or_leaves_nothing(tmp_path: Path) -> None:
    from airgap.bundle.manifest import CliPin

    pending = PendingArchive(str(tmp_path / "demo.tar"), Target())
    pending.build([make_wheel(tmp_path / "wheels")], 0)
    pending.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheels"]
    (tmp_path / "demo.tar.airgap.pyz.sig").write_text("stale")
    pending = PendingArchive(str(tmp_path / "demo.tar"), Target())
    pending.build([make_wheel(tmp_path / "wheels")], 0)
    written = pending.commit(None)
    pyz = tmp_path / "demo.tar.airgap.pyz"
    digest = hashlib.sha256(pyz.read_bytes()).hexdigest()
    assert written == [str(pyz), f"{pyz}.sha256"] and not (tmp_path / "demo.tar.airgap.pyz.sig").exists()
    assert (tmp_path / "demo.tar.airgap.pyz.sha256").read_text() == f"{digest}  demo.tar.airgap.pyz\n"
    assert pyz.stat().st_mode & 0o777 == 0o755
    pin = pending.pin
    assert pin == CliPin("demo.tar.airgap.pyz", f"sha256:{digest}", pyz.stat().st_size, "0.1.0", "3.11",
                         "manylinux_2_28_x86_64")
    assert check_beside(tmp_path, pin) == "ok"
    assert check_beside(tmp_path / "wheels", pin) == "missing"
    pyz.write_bytes(pyz.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="is not the sha256:.* the bundle manifest pins"):
        check_beside(tmp_path, pin)


def test_a_broken_archive_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    broken = tmp_path / "broken.pyz"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("__main__.py", Path(cli_bootstrap.__file__).read_bytes())
        z.writestr("airgap-pyz.json", b'{"python": "3.11", "platform": "manylinux"}')
    done = subprocess.run([sys.executable, "-I", str(broken), "--help"], capture_output=True, text=True,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60, check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: {broken} is not an airgap.pyz this bootstrap understands (")
    assert done.stderr.count("\n") == 1
