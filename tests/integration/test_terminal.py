"""What a user at a terminal sees, on real processes with a real pseudo-terminal (tests/support/terminal.py):
the progress `load`, `pack` and `copy` draw tells the truth, and Ctrl-C stops a transfer at once, cleans up what
it was writing and exits 130 with one line.

The registries sit behind a loopback proxy (tests/support/faultproxy.py) that holds back its answers (uploads or
blob downloads), so a transfer takes seconds, and that records when each answer went back: what the registry had
acknowledged at any moment. The drawn text is parsed frame by frame; no screenshots.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.bundles import key_spec_text
from support.faultproxy import FaultProxy
from support.images import Pusher, push_image
from support.registries import Registry, find_tool, start_registry
from support.signing import KeyPair, write_keypair
from support.terminal import Terminal
from support.trustdirs import cip, key_authority, write_trust

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

REPOS = ("team/a", "team/b", "team/c")
LAYERS = (2_000_000, 1_000_000)
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
PUSHED = re.compile(r"(\d+(?:\.\d+)?) (B|kB|MB|GB|TB)/\S+ \S+ pushed")


@dataclass
class Scene:
    src: Registry
    key: KeyPair
    tmp: Path
    bundle: Path
    spec: Path
    registries: list[Registry]

    def registry(self) -> Registry:
        reg = start_registry(self.tmp / f"reg{len(self.registries)}")
        self.registries.append(reg)
        return reg


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    if find_tool("docker-registry") is None:
        pytest.skip("docker-registry is not installed (run scripts/install-peers.sh)")
    tmp = tmp_path_factory.mktemp("terminal")
    src = start_registry(tmp / "src")
    sc = Scene(src, write_keypair(tmp / "keys", "release"), tmp, tmp / "demo.tar", tmp / "spec.yaml", [src])
    try:
        pusher = Pusher(src.url)
        for repo in REPOS:
            push_image(pusher, repo, "1.0", layer_sizes=LAYERS)
            sign_image(f"{src.host}/{repo}:1.0", sc.key.signer, client=RegistryClient())
        (tmp / "release.pub").write_bytes(sc.key.public_pem)
        sc.spec.write_text(key_spec_text(src.host, REPOS))
        out = CliRunner().invoke(cli, ["pack", str(sc.spec), "-o", str(sc.bundle), "--key",
                                       str(sc.key.private_path)], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        yield sc
    finally:
        for reg in sc.registries:
            reg.stop()


@pytest.fixture
def proxies() -> Iterator[list[FaultProxy]]:
    started: list[FaultProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def slow(reg: Registry, proxies: list[FaultProxy], *, method: str, match: str, seconds: float) -> FaultProxy:
    """A proxy in front of ``reg`` that holds back its answer to each ``method`` request matching ``match``."""
    proxy = FaultProxy(reg.host).start()
    proxy.server.handle_error = lambda *args: None  # type: ignore[union-attr,method-assign] # clients hang up on ^C
    proxy.add("delay", match, methods=(method,), seconds=seconds)
    proxies.append(proxy)
    return proxy


def slow_pack_spec(scene: Scene, proxies: list[FaultProxy], tmp: Path, *, seconds: float) -> tuple[FaultProxy, Path]:
    """A pack spec (and its key) for the scene's images behind a proxy holding back each blob ``seconds``."""
    proxy = slow(scene.src, proxies, method="GET", match="/blobs/sha256:", seconds=seconds)
    spec = tmp / "spec.yaml"
    spec.write_text(key_spec_text(proxy.host, REPOS))
    (tmp / "release.pub").write_bytes(scene.key.public_pem)
    return proxy, spec


def env(tmp: Path) -> dict[str, str]:
    """The child's environment: its own temp directory (to check nothing is left in it) and blob cache."""
    (tmp / "tmpdir").mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp / "tmpdir"), AIRGAP_CACHE_DIR=str(tmp / "cache"),
                AIRGAP_BLOB_CACHE="off", COLUMNS="200")


def leftovers(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def catalog_tags(reg: Registry) -> dict[str, list[str]]:
    with urllib.request.urlopen(f"{reg.url}/v2/_catalog") as resp:  # noqa: S310 - loopback
        repos = json.load(resp)["repositories"] or []
    pusher = Pusher(reg.url)
    return {repo: tags for repo in repos if (tags := pusher.tags(repo))}


def acknowledged(proxy: FaultProxy, moment: float) -> int:
    """Bytes of blob uploads the registry had answered with success by ``moment``."""
    return sum(size for when, method, path, status, size in proxy.answered
               if when <= moment and method in ("PUT", "PATCH") and "/blobs/uploads/" in path
               and status in (201, 202))


def as_bytes(value: str, unit: str) -> float:
    return float(value) * UNITS[unit]


# ---- progress that tells the truth -------------------------------------------------------------------------


def test_load_draws_only_what_the_registry_acknowledged(scene: Scene, proxies: list[FaultProxy],
                                                        tmp_path: Path) -> None:
    dst = scene.registry()
    proxy = slow(dst, proxies, method="PUT", match="/blobs/uploads/", seconds=0.6)
    term = Terminal.start(["load", str(scene.bundle), "--registry", proxy.host, "--key", str(scene.tmp / "release.pub"),
                           "-j", "2"], env=env(tmp_path), stdout=tmp_path / "stdout")
    assert term.wait(120) == 0, term.text
    drawn = [(at, as_bytes(*m.groups())) for at, line in term.frames() if (m := PUSHED.search(line))]
    total = len(REPOS) * sum(LAYERS)
    assert len({value for _, value in drawn}) >= 3, f"too few distinct frames to judge: {term.text}"
    assert any(0 < value < total for _, value in drawn), term.text
    for at, value in drawn:  # read at `at`, so drawn before it: the registry had answered at least that much
        assert value <= acknowledged(proxy, at), (value, acknowledged(proxy, at), term.text)
    for repo in REPOS:  # one line per image when it is done, as crane and skopeo print them
        assert re.search(rf"pushed {re.escape(proxy.host)}/{repo}:1\.0@sha256:[0-9a-f]{{64}} \(5 blobs, 3\.0 MB\)",
                         term.text), term.text
    assert "loaded 3 image(s)" in term.stdout


def test_pack_and_copy_draw_progress_and_one_line_per_image(scene: Scene, proxies: list[FaultProxy],
                                                             tmp_path: Path) -> None:
    proxy, spec = slow_pack_spec(scene, proxies, tmp_path, seconds=0.3)
    term = Terminal.start(["pack", str(spec), "-o", str(tmp_path / "out.tar"), "-j", "2"], env=env(tmp_path),
                          stdout=tmp_path / "stdout")
    assert term.wait(120) == 0, term.text
    assert re.search(r"\d+(\.\d+)? [kM]?B/\S+ MB fetched", term.text), term.text
    for repo in REPOS:
        assert re.search(rf"packed {re.escape(proxy.host)}/{repo}:1\.0@sha256:[0-9a-f]{{64}} \(5 blobs, 3\.0 MB\)",
                         term.text), term.text

    dst = scene.registry()
    term = Terminal.start(["copy", f"{proxy.host}/team/a:1.0", f"{dst.host}/mirror/a:1.0"], env=env(tmp_path),
                          stdout=tmp_path / "stdout2")
    assert term.wait(120) == 0, term.text
    assert re.search(r"\d+(\.\d+)? [kM]?B/3\.0 MB copied", term.text), term.text
    assert re.search(rf"pushed {re.escape(dst.host)}/mirror/a:1\.0@sha256:[0-9a-f]{{64}} \(5 blobs, 3\.0 MB\)",
                     term.text), term.text


def test_off_a_terminal_only_the_lines_are_printed_and_json_prints_none(scene: Scene, tmp_path: Path) -> None:
    dst = scene.registry()
    out = CliRunner().invoke(cli, ["load", str(scene.bundle), "--registry", dst.host, "--key",
                                   str(scene.tmp / "release.pub")], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    lines = out.stderr.splitlines()
    assert len(lines) == len(REPOS) and all(line.startswith("pushed ") for line in lines), out.stderr
    assert "\x1b" not in out.stderr and "\r" not in out.stderr
    out = CliRunner().invoke(cli, ["copy", "--json", f"{scene.src.host}/team/b:1.0", f"oci:{tmp_path / 'l'}"],
                             catch_exceptions=False)
    assert out.exit_code == 0 and out.stderr == "", out.stderr


# ---- Ctrl-C ------------------------------------------------------------------------------------------------


def interrupt_when(term: Terminal, condition: Any, what: str) -> float:
    assert term.until(condition, 60), f"never saw {what}: {term.text}"
    return term.ctrl_c()


def downloading(term: Terminal, proxy: FaultProxy, drawing: str) -> Any:
    """This process is drawing its progress (so its handlers are installed) and a blob download was answered.
    The drawing matters: an earlier, interrupted process's held-back answers may still land after
    ``proxy.answered.clear()``, and a ^C typed before the new process set up its terminal is lost."""
    return lambda: drawing in term.text and any(m == "GET" and "/blobs/" in p for _, m, p, *_ in proxy.answered)


def check_interrupted(term: Terminal, pressed: float, drawing: str, *, code: int = 130,
                      line: str = "error: interrupted") -> None:
    """Exit 130 (143 after SIGTERM) with one line; the progress line stops being drawn at once (no frame read
    0.5 s after the signal)."""
    assert term.wait(60) == code, term.text
    last = term.text.rstrip().splitlines()[-1].strip()
    assert last.removeprefix("^C") == line, term.text  # ^C: the terminal's own echo
    late = [line for at, line in term.frames() if at > pressed + 0.5 and drawing in line]
    assert not late, late


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_during_load_exits_leaving_no_tag_and_no_temp_file(
        scene: Scene, proxies: list[FaultProxy], tmp_path: Path, signal_name: str) -> None:
    """^C exits 130; SIGTERM (kill, systemd, a CI job's timeout) 143, after the same cleanup."""
    dst = scene.registry()
    proxy = slow(dst, proxies, method="PUT", match="/blobs/uploads/", seconds=0.8)
    term = Terminal.start(["load", str(scene.bundle), "--registry", proxy.host, "--key",
                           str(scene.tmp / "release.pub"), "-j", "1", "--trust-out", str(tmp_path / "trust"),
                           "--map-out", str(tmp_path / "map.json")], env=env(tmp_path), stdout=tmp_path / "stdout")
    if signal_name == "SIGINT":
        check_interrupted(term, interrupt_when(term, lambda: acknowledged(proxy, float("inf")) > 0,
                                               "an upload acknowledged"), " pushed ")
    else:
        assert term.until(lambda: acknowledged(proxy, float("inf")) > 0, 60), term.text
        check_interrupted(term, term.terminate(), " pushed ", code=143, line="error: terminated")
    assert catalog_tags(dst) == {}  # tags go last: none was written
    assert leftovers(tmp_path / "tmpdir") == []  # the spool of blobs read from the bundle is gone
    assert not (tmp_path / "trust").exists() and not (tmp_path / "map.json").exists()
    assert term.stdout == ""


def test_ctrl_c_does_not_wait_for_a_registry_that_stopped_answering(scene: Scene, proxies: list[FaultProxy],
                                                                     tmp_path: Path) -> None:
    """A worker waiting for an answer that will not come (here: held back 60 s) wakes at ^C: the transport shuts
    its sockets down, and a connection broken by the interruption is not retried."""
    dst = scene.registry()
    proxy = slow(dst, proxies, method="PUT", match="/blobs/uploads/", seconds=60)
    term = Terminal.start(["load", str(scene.bundle), "--registry", proxy.host, "--key",
                           str(scene.tmp / "release.pub"), "-j", "4"], env=env(tmp_path), stdout=tmp_path / "stdout")
    assert term.until(lambda: any(m == "PUT" and "/blobs/uploads/" in p for m, p, _ in proxy.log), 60), term.text
    pressed = term.ctrl_c()
    assert term.wait(60) == 130, term.text
    assert time.monotonic() - pressed < 5, f"exit {time.monotonic() - pressed:.1f}s after ^C"
    assert term.text.rstrip().splitlines()[-1].strip().removeprefix("^C") == "error: interrupted", term.text
    assert catalog_tags(dst) == {}
    assert leftovers(tmp_path / "tmpdir") == []


def test_ctrl_c_during_pack_leaves_the_previous_output_untouched(scene: Scene, proxies: list[FaultProxy],
                                                                  tmp_path: Path) -> None:
    proxy, spec = slow_pack_spec(scene, proxies, tmp_path, seconds=0.8)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "demo.tar").write_bytes(b"the previous bundle")
    for args in (["-o", str(out_dir / "demo.tar")], ["-o", str(out_dir / "demo.tar"), "--cache", str(tmp_path / "c")],
                 ["-o", str(out_dir / "demo.tar"), "--split-size", "1M"]):
        proxy.answered.clear()
        term = Terminal.start(["pack", str(spec), *args, "--no-verify"], env=env(tmp_path), stdout=tmp_path / "stdout")
        pressed = interrupt_when(term, downloading(term, proxy, " fetched "), "a blob download")
        check_interrupted(term, pressed, " fetched ")
        assert leftovers(out_dir) == ["demo.tar"], args  # no temp file, no part
        assert (out_dir / "demo.tar").read_bytes() == b"the previous bundle"
        assert leftovers(tmp_path / "tmpdir") == [], args
        if (tmp_path / "c").exists():  # the cache keeps only complete, verified blobs
            assert not [p for p in leftovers(tmp_path / "c") if p.endswith(".part")]


def test_ctrl_c_during_copy_removes_what_it_wrote_and_nothing_else(scene: Scene, proxies: list[FaultProxy],
                                                                    tmp_path: Path) -> None:
    proxy = slow(scene.src, proxies, method="GET", match="/blobs/sha256:", seconds=0.8)
    existing = tmp_path / "existing"
    out = CliRunner().invoke(cli, ["copy", f"{scene.src.host}/team/b:1.0", f"oci:{existing}:b"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    before = {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()}
    dst = scene.registry()
    for target in (f"oci:{tmp_path / 'new'}:a", f"oci:{existing}:a", f"{dst.host}/mirror/a:1.0"):
        proxy.answered.clear()
        term = Terminal.start(["copy", f"{proxy.host}/team/a:1.0", target], env=env(tmp_path),
                              stdout=tmp_path / "stdout")
        pressed = interrupt_when(term, downloading(term, proxy, " copied "), "a blob download")
        check_interrupted(term, pressed, " copied ")
        assert not (tmp_path / "new").exists(), target  # a layout this copy created is gone
        assert {p: p.read_bytes() for p in existing.rglob("*") if p.is_file()} == before, target
        assert leftovers(tmp_path / "tmpdir") == []
    assert catalog_tags(dst) == {}


def test_ctrl_c_during_audit_writes_no_output(scene: Scene, proxies: list[FaultProxy], tmp_path: Path) -> None:
    proxy = slow(scene.src, proxies, method="GET", match="/manifests/", seconds=0.5)
    trust = write_trust(tmp_path / "trust", keys={"release": scene.key.public_pem},
                        policy=cip("team", key_authority("release"), f"{proxy.host}/team/**"))
    term = Terminal.start(["audit", "--registry", proxy.host, "--trust", str(trust), "-o", str(tmp_path / "out"),
                           "-j", "1"], env=env(tmp_path), stdout=tmp_path / "stdout")
    pressed = interrupt_when(term, lambda: any("/manifests/" in p for _, _, p, *_ in proxy.answered),
                             "a manifest read")
    check_interrupted(term, pressed, "audit")
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path / "tmpdir") == []


def test_ctrl_c_with_json_prints_the_error_document(scene: Scene, proxies: list[FaultProxy], tmp_path: Path) -> None:
    dst = scene.registry()
    proxy = slow(dst, proxies, method="PUT", match="/blobs/uploads/", seconds=0.8)
    term = Terminal.start(["load", str(scene.bundle), "--registry", proxy.host, "--key",
                           str(scene.tmp / "release.pub"), "--json"], env=env(tmp_path), stdout=tmp_path / "stdout")
    pressed = interrupt_when(term, lambda: acknowledged(proxy, float("inf")) > 0, "an upload acknowledged")
    check_interrupted(term, pressed, " pushed ")
    assert json.loads(term.stdout) == {"error": "interrupted", "exit_code": 130}
