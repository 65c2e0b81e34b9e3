"""What is wrong, said in the user's words (issue 17 item 5): each mistake a user makes with a bundle, a digest,
flags that contradict each other, a key prefix, a terminal, a deadline gets one line that names it, and the
exit code says whose fault it is (1: the data or the network, 2: the command line)."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.bundles import Built, make_bundle
from support.slowserver import SlowServer
from support.terminal import Terminal

from airgap.cli import cli
from airgap.keys.public import public_pem


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env)


def one_error(result: Any) -> str:
    """The last stderr line, which must be the command's one ``error:`` line (click's usage errors say Error:)."""
    last = result.stderr.strip().splitlines()[-1]
    assert last.lower().startswith("error: "), result.stderr
    return str(last.split(": ", 1)[1])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Built, Path, Path]]:
    tmp = tmp_path_factory.mktemp("usererr")
    b = make_bundle(tmp)
    (tmp / "demo.tar").write_bytes(b.data)
    (tmp / "release.pub").write_bytes(public_pem(b.public_key))
    yield b, tmp / "demo.tar", tmp / "release.pub"


# ---- bundles that are not bundles ---------------------------------------------------------------------------

def _plain_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("images/app.tar")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    return out.getvalue()


@pytest.mark.parametrize(("content", "message"), [
    (lambda data: b"", "bundle is empty (0 bytes)"),
    (gzip.compress, "this is gzip-compressed: airgap bundles are plain tar (gunzip it first)"),
    (bz2.compress, "this is bzip2-compressed: airgap bundles are plain tar (bunzip2 it first)"),
    (lambda data: _plain_tar(), "not an airgap bundle (no airgap-bundle.json first: it starts with 'images/app.tar')"),
    (lambda data: b"PK\x03\x04" + bytes(600), "not an airgap bundle (not a tar archive: a bundle starts with "
                                              "airgap-bundle.json)"),
], ids=["empty", "gzip", "bzip2", "plain-tar", "zip"])
@pytest.mark.parametrize("command", ["load", "inspect", "verify-bundle", "trust export"])
def test_what_the_file_is_when_it_is_not_a_bundle(built: tuple[Built, Path, Path], tmp_path: Path,
                                                  content: Any, message: str, command: str) -> None:
    b, _, pub = built
    path = tmp_path / "demo.tar"
    path.write_bytes(content(b.data))
    extra = {"load": ["--registry", "127.0.0.1:1", "--key", str(pub)], "inspect": [],
             "verify-bundle": ["--key", str(pub)], "trust export": ["-o", str(tmp_path / "t"), "--key", str(pub)]}
    result = run(*command.split(), str(path), *extra[command])
    assert result.exit_code == 1, result.output
    assert one_error(result) == message


def test_a_piped_gzip_is_named_too(built: tuple[Built, Path, Path]) -> None:
    b, _, pub = built
    result = CliRunner().invoke(cli, ["inspect", "-"], input=gzip.compress(b.data), catch_exceptions=False)
    assert result.exit_code == 1 and one_error(result).startswith("this is gzip-compressed")


# ---- flags ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["load", "--registry", "127.0.0.1:1"], ["inspect"], ["verify-bundle"],
                                     ["trust", "export", "-o", "out"]])
@pytest.mark.parametrize("digest", ["sha256:12", "47959f79d67ab25c6d06aca22cd88e2bc0fcfdf9f8988564272818f2092c0a62",
                                    "sha512:" + "a" * 64, "sha256:" + "g" * 64])
def test_a_malformed_bundle_digest_is_a_usage_error(built: tuple[Built, Path, Path], command: list[str],
                                                    digest: str) -> None:
    _, bundle, _ = built
    result = run(*command, str(bundle), "--bundle-digest", digest)
    assert result.exit_code == 2, result.output
    assert f"'{digest}' is not a sha256 digest" in one_error(result)


def test_a_bundle_digest_in_capitals_is_still_the_digest(built: tuple[Built, Path, Path]) -> None:
    b, bundle, _ = built
    result = run("inspect", str(bundle), "--bundle-digest", b.manifest.digest.upper().replace("SHA256", "sha256"))
    assert result.exit_code == 0, result.output
    assert "(pinned digest matched)" in result.stdout


@pytest.mark.parametrize(("args", "flags"), [
    (["verify", "--trust", "{tmp}", "--key", "{pub}", "127.0.0.1:1/a:1"], ("--trust", "--key")),
    (["verify", "--key", "{pub}", "--certificate-identity", "a@b", "--certificate-oidc-issuer", "https://i",
      "127.0.0.1:1/a:1"], ("--key", "--certificate-identity")),
    (["verify", "--trust", "{tmp}", "--insecure-ignore-tlog", "127.0.0.1:1/a:1"],
     ("--insecure-ignore-tlog", "--trust")),
    (["load", "{bundle}", "--registry", "127.0.0.1:1", "--key", "{pub}", "--rule", "a=b"],
     ("--rule", "--translate zarf")),
    (["load", "{bundle}", "--registry", "127.0.0.1:1", "--translate", "none", "--rule", "a=b", "--key", "{pub}"],
     ("--rule", "--translate none")),
    (["load", "{bundle}", "--registry", "127.0.0.1:1", "--key", "{pub}", "--allow-unsigned-bundle"],
     ("--allow-unsigned-bundle", "--key")),
    (["verify-bundle", "{bundle}", "--bundle-digest", "sha256:" + "a" * 64, "--allow-unsigned-bundle"],
     ("--allow-unsigned-bundle", "--bundle-digest")),
    (["trust", "export", "{bundle}", "-o", "{tmp}/t", "--key", "{pub}", "--allow-unsigned-bundle"],
     ("--allow-unsigned-bundle", "--key")),
    (["key", "generate", "--pkcs11", "pkcs11:token=t;object=k", "--password-file", "{pub}",
      "--output-prefix", "{tmp}/k"], ("--pkcs11", "--password-file")),
])
def test_conflicting_flags_are_a_usage_error_naming_both(built: tuple[Built, Path, Path], tmp_path: Path,
                                                         args: list[str], flags: tuple[str, str]) -> None:
    _, bundle, pub = built
    argv = [a.format(tmp=tmp_path, pub=pub, bundle=bundle) for a in args]
    result = run(*argv)
    assert result.exit_code == 2, result.output
    assert one_error(result).startswith(f"{flags[0]} and {flags[1]}"), result.stderr
    assert not (tmp_path / "t").exists() and not list(tmp_path.glob("k.*"))


@pytest.mark.parametrize("prefix", ["{tmp}/keys/", "", "{tmp}/keys/.", "./"])
@pytest.mark.parametrize("command", [["key", "generate"], ["key", "import", "{pub}"]])
def test_an_output_prefix_without_a_file_name_is_refused(built: tuple[Built, Path, Path], tmp_path: Path,
                                                         prefix: str, command: list[str]) -> None:
    _, _, pub = built
    (tmp_path / "keys").mkdir()
    argv = [a.format(pub=pub) for a in command] + ["--output-prefix", prefix.format(tmp=tmp_path)]
    result = run(*argv, env={"COSIGN_PASSWORD": "pw"})
    assert result.exit_code == 2, result.output
    assert "has no file name: give a prefix such as" in one_error(result)
    assert list((tmp_path / "keys").iterdir()) == []


def test_pack_to_stdout_on_a_terminal_is_refused(built: tuple[Built, Path, Path], tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("apiVersion: airgap/v1\nkind: Bundle\nmetadata: {name: x, version: '1'}\n"
                                        "images: [127.0.0.1:1/a:1]\n")
    term = Terminal.start(["pack", str(tmp_path / "spec.yaml"), "-o", "-"], stdout=None,
                          env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert term.wait(30) == 2
    assert term.text.strip().splitlines()[-1] == ("Error: -o - writes the bundle to stdout, which is a terminal: "
                                                  "redirect it (> demo.tar, | airgap load -) or give -o FILE")


# ---- deadlines ---------------------------------------------------------------------------------------------

@pytest.fixture
def slow() -> Iterator[SlowServer]:
    server = SlowServer("drip-headers")
    yield server
    server.stop()


def test_a_deadline_during_pack_names_the_registry_and_the_request(slow: SlowServer, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text("apiVersion: airgap/v1\nkind: Bundle\nmetadata: {name: x, version: '1'}\n"
                                        f"images: [{slow.host}/team/app:1.0]\n")
    result = run("pack", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "x.tar"), "--no-verify", "-t", "2s")
    assert result.exit_code == 1
    assert one_error(result) == f"deadline of 2s exceeded while GET {slow.host}/v2/team/app/manifests/1.0"
    assert not (tmp_path / "x.tar").exists()


def test_a_deadline_during_load_names_the_registry_and_the_request(built: tuple[Built, Path, Path],
                                                                   slow: SlowServer) -> None:
    _, bundle, pub = built
    result = run("load", str(bundle), "--registry", slow.host, "--key", str(pub), "-t", "2s")
    assert result.exit_code == 1
    message = one_error(result)
    assert message.startswith(f"deadline of 2s exceeded while HEAD {slow.host}/v2/"), message
