"""Split media through the CLI on real registries: `pack --split-size` writes parts that `cat` back into the
single-file bundle, byte for byte; `load`, `verify-bundle` and `inspect` take them as files in any order, a
directory or the parts manifest, and stdin takes their concatenation. A missing, truncated, corrupted or foreign
part is one line naming it, and leaves nothing tagged."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.bundles import key_spec_text
from support.images import Pusher, push_image
from support.registries import Registry, find_tool, start_registry
from support.registry_content import snapshot
from support.signing import KeyPair, write_keypair

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

KIB = 1024
REPOS = ("team/one", "team/two", "team/three")


def run(args: list[str], **kwargs: Any) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


@dataclass
class Scenario:
    src: Registry
    key: KeyPair
    spec: Path
    single: Path  # pack -o
    parts_dir: Path  # pack --split-size 64K -o parts/b.tar
    tmp: Path
    registries: list[Registry]
    expected: dict[str, dict[str, str]]  # the content a load of the single file gives

    def registry(self) -> Registry:
        reg = start_registry(self.tmp / f"reg{len(self.registries)}")
        self.registries.append(reg)
        return reg

    @property
    def parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("b.tar.part-*"))


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    if find_tool("docker-registry") is None:
        pytest.skip("docker-registry is not installed (run scripts/install-peers.sh)")
    tmp = tmp_path_factory.mktemp("split")
    src = start_registry(tmp / "src")
    regs = [src]
    try:
        key = write_keypair(tmp / "keys", "release")
        pusher = Pusher(src.url)
        for repo in REPOS:
            push_image(pusher, repo, "1.0", platforms=("linux/amd64", "linux/arm64"),
                       layer_sizes=(150 * KIB, 3000))
            sign_image(f"{src.host}/{repo}:1.0", key.signer, client=RegistryClient(), recursive=True)
        (tmp / "release.pub").write_bytes(key.public_pem)
        spec = tmp / "spec.yaml"
        spec.write_text(key_spec_text(src.host, REPOS, "split"))
        out = run(["pack", str(spec), "-o", str(tmp / "b.tar"), "--key", str(key.private_path)])
        assert out.exit_code == 0, out.output
        (tmp / "parts").mkdir()
        out = run(["pack", str(spec), "-o", str(tmp / "parts" / "b.tar"), "--key", str(key.private_path),
                   "--split-size", "64K"])
        assert out.exit_code == 0, out.output
        assert "split into" in out.stdout
        sc = Scenario(src, key, spec, tmp / "b.tar", tmp / "parts", tmp, regs, {})
        ref = sc.registry()
        out = run(["load", str(sc.single), "--registry", ref.host, "--key", str(key.public_path)])
        assert out.exit_code == 0, out.output
        sc.expected = snapshot(ref.url)
        assert {f"team/{r}" for r in ("one", "two", "three")} <= set(sc.expected)
        yield sc
    finally:
        for reg in regs:
            reg.stop()


def test_parts_are_the_single_file_cut(sc: Scenario) -> None:
    data = sc.single.read_bytes()
    parts = sc.parts
    assert len(parts) == -(-len(data) // (64 * KIB)) >= 8
    assert b"".join(p.read_bytes() for p in parts) == data
    pm = json.loads((sc.parts_dir / "b.tar.parts.json").read_bytes())
    assert pm["size"] == len(data) and pm["partSize"] == 64 * KIB and pm["apiVersion"] == "airgap.dev/v1alpha1"
    digest = json.loads(run(["inspect", str(sc.single), "--json"]).stdout)["digest"]
    assert pm["bundleDigest"] == digest and pm["name"] == "split" and pm["version"] == "1.0.0"
    for part, listed in zip(parts, pm["parts"], strict=True):  # each part checks on its own (sha256sum -c)
        assert listed["name"] == part.name and listed["size"] == part.stat().st_size
        assert hashlib.sha256(part.read_bytes()).hexdigest() == listed["sha256"]
    assert (sc.parts_dir / "b.tar.parts.json.sig").exists()
    assert not list(sc.parts_dir.glob(".*"))  # no temp files left


def test_the_sequential_writer_cuts_the_same_parts(sc: Scenario, tmp_path: Path) -> None:
    """With --cache the bundle is written in order (not in place): the same parts, the same parts manifest."""
    out = run(["pack", str(sc.spec), "-o", str(tmp_path / "b.tar"), "--key", str(sc.key.private_path),
               "--split-size", "64K", "--cache", str(tmp_path / "cache"), "-j", "1", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["parts_manifest"] == str(tmp_path / "b.tar.parts.json")
    for name in [p.name for p in sc.parts] + ["b.tar.parts.json", "b.tar.parts.json.sig"]:
        assert (tmp_path / name).read_bytes() == (sc.parts_dir / name).read_bytes(), name
    # a smaller split later: the extra parts of the earlier pack are removed, never left to be mistaken for parts
    out = run(["pack", str(sc.spec), "-o", str(tmp_path / "b.tar"), "--split-size", "1M"])
    assert out.exit_code == 0, out.output
    assert [p.name for p in sorted(tmp_path.glob("b.tar.part-*"))] == ["b.tar.part-0001"]
    assert not (tmp_path / "b.tar.parts.json.sig").exists()  # unsigned now: the stale signature went too


def test_load_from_parts_in_every_form(sc: Scenario) -> None:
    parts = [str(p) for p in sc.parts]
    random.Random(4).shuffle(parts)
    forms = {"shuffled": parts, "directory": [str(sc.parts_dir)],
             "manifest": [str(sc.parts_dir / "b.tar.parts.json")]}
    for form, args in forms.items():
        dst = sc.registry()
        out = run(["load", *args, "--registry", dst.host, "--key", str(sc.key.public_path), "--json"])
        assert out.exit_code == 0, (form, out.output)
        summary = json.loads(out.stdout)
        assert summary["parts"]["signed_by"] == sc.key.key_id and len(summary["parts"]["parts"]) == len(parts)
        assert snapshot(dst.url) == sc.expected, form
        dst.stop()


def test_stdin_takes_the_concatenated_parts(sc: Scenario) -> None:
    dst = sc.registry()
    cat = subprocess.Popen(["cat", *map(str, sc.parts)], stdout=subprocess.PIPE)
    done = subprocess.run([sys.executable, "-m", "airgap.cli", "load", "-", "--registry", dst.host, "--key",
                           str(sc.key.public_path)], stdin=cat.stdout, capture_output=True, timeout=120,
                          env=dict(os.environ, AIRGAP_BLOB_CACHE="off"))
    assert cat.stdout is not None
    cat.stdout.close()
    assert cat.wait(timeout=30) == 0
    assert done.returncode == 0, done.stderr.decode()
    assert snapshot(dst.url) == sc.expected


def test_verify_bundle_and_inspect_take_parts(sc: Scenario, tmp_path: Path) -> None:
    out = run(["verify-bundle", str(sc.parts_dir), "--key", str(sc.key.public_path)])
    assert out.exit_code == 0, out.output
    assert out.stdout.count("OK  ") == 3 and "every part's sha256 matched" in out.stdout
    out = run(["inspect", *map(str, sc.parts[::-1]), "--key", str(sc.key.public_path)])
    assert out.exit_code == 0, out.output
    assert f"parts    {len(sc.parts)} x 65.5 kB (65536 bytes; " in out.stdout and sc.key.key_id in out.stdout
    info = json.loads(run(["inspect", str(sc.parts_dir / "b.tar.parts.json"), "--json"]).stdout)
    assert info["digest"] == json.loads(run(["inspect", str(sc.single), "--json"]).stdout)["digest"]
    assert run(["trust", "export", str(sc.parts_dir), "-o", str(tmp_path / "t"), "--key",
                str(sc.key.public_path)]).exit_code == 0
    # the parts manifest is checked with the key too, before any part is read
    other = write_keypair(tmp_path, "other")
    out = run(["verify-bundle", str(sc.parts_dir), "--key", str(other.public_path)])
    assert out.exit_code == 1 and out.stderr.strip() == "error: b.tar.parts.json.sig does not verify with the given key"


def damaged(sc: Scenario, tmp_path: Path, how: str) -> Path:
    copy = tmp_path / "parts"
    shutil.copytree(sc.parts_dir, copy)
    victim = copy / sc.parts[len(sc.parts) // 2].name
    if how == "missing":
        victim.unlink()
    elif how == "truncated":
        victim.write_bytes(victim.read_bytes()[:-100])
    elif how == "corrupted":
        data = bytearray(victim.read_bytes())
        data[777] ^= 0x40
        victim.write_bytes(bytes(data))
    elif how == "foreign":  # the same part of another bundle (same name and size, other bytes)
        other = tmp_path / "other"
        other.mkdir()
        (tmp_path / "other.yaml").write_text(key_spec_text(sc.src.host, REPOS[::-1], "other"))
        (tmp_path / "release.pub").write_bytes(sc.key.public_pem)
        out = run(["pack", str(tmp_path / "other.yaml"), "-o", str(other / "b.tar"), "--split-size", "64K"])
        assert out.exit_code == 0, out.output
        shutil.copy(other / victim.name, victim)
    elif how == "extra":
        (copy / "b.tar.part-0999").write_bytes(b"\0" * 512)
    return victim


MESSAGES = {
    "missing": "error: part {name} is missing (b.tar.parts.json lists {n} parts); nothing was read",
    "truncated": "error: part {path}: 65436 bytes, b.tar.parts.json lists 65536 (truncated, or a part of another "
                 "bundle)",
    "corrupted": "error: part {path}: sha256 ",
    "foreign": "error: part {path}: sha256 ",
    "extra": "error: unexpected extra part {dir}/b.tar.part-0999: b.tar.parts.json does not list it",
}


@pytest.mark.parametrize("how", list(MESSAGES))
def test_a_bad_part_is_named_and_nothing_is_tagged(sc: Scenario, tmp_path: Path, how: str) -> None:
    message = MESSAGES[how]
    victim = damaged(sc, tmp_path, how)
    dst = sc.registry()
    out = run(["load", str(victim.parent), "--registry", dst.host, "--key", str(sc.key.public_path)])
    assert out.exit_code == 1, out.output
    want = message.format(name=victim.name, path=victim, n=len(sc.parts), dir=victim.parent)
    assert out.stderr.startswith(want) and out.stderr.count("\n") == 1, out.stderr
    if how in ("corrupted", "foreign"):
        assert "(corrupted, or a part of another bundle)" in out.stderr
    assert snapshot(dst.url, check=False) == {}  # nothing tagged, no map
    dst.stop()


@pytest.mark.slow
def test_real_64m_parts_load_like_the_single_file(sc: Scenario, tmp_path: Path) -> None:
    """The size of the issue: 64M parts of a ~90 MB bundle."""
    push_image(Pusher(sc.src.url), "team/big", "1.0", layer_sizes=(90 * 1024 * 1024,))
    sign_image(f"{sc.src.host}/team/big:1.0", sc.key.signer, client=RegistryClient())
    (tmp_path / "release.pub").write_bytes(sc.key.public_pem)
    (tmp_path / "big.yaml").write_text(key_spec_text(sc.src.host, ("team/big",), "big"))
    t0 = time.monotonic()
    out = run(["pack", str(tmp_path / "big.yaml"), "-o", str(tmp_path / "big.tar"), "--split-size", "64M",
               "--key", str(sc.key.private_path)])
    assert out.exit_code == 0, out.output
    parts = sorted(tmp_path.glob("big.tar.part-*"))
    assert [p.stat().st_size for p in parts][0] == 64 * 1024 * 1024 and len(parts) == 2
    dst = sc.registry()
    out = run(["load", str(parts[1]), str(parts[0]), "--registry", dst.host, "--key", str(sc.key.public_path)])
    assert out.exit_code == 0, out.output
    content = snapshot(dst.url)
    assert content["team/big"]["1.0"] == RegistryClient().head_manifest(sc.src.host, "team/big", "1.0").digest  # type: ignore[union-attr]
    assert time.monotonic() - t0 < 40
    dst.stop()
