"""`airgap load` killed with SIGKILL at random points, then re-run: it completes, every tag resolves to
complete content at every moment, and the registry ends with exactly the tags of an uninterrupted load."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.images import Pusher, push_image
from support.registries import Registry, find_tool, start_registry
from support.signing import write_keypair

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

REPOS = ("team/a", "team/b", "team/c", "team/d")


def run(args: list[str]) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    if find_tool("docker-registry") is None:
        pytest.skip("docker-registry is not installed (run scripts/install-peers.sh)")
    tmp = tmp_path_factory.mktemp("resume")
    src = start_registry(tmp / "src")
    try:
        key = write_keypair(tmp / "keys", "release")
        pusher = Pusher(src.url)
        for repo in REPOS:
            push_image(pusher, repo, "1.0", platforms=("linux/amd64", "linux/arm64"),
                       layer_sizes=(3 * 1024 * 1024, 2 * 1024 * 1024, 4096))
            sign_image(f"{src.host}/{repo}:1.0", key.signer, client=RegistryClient(), recursive=True)
        (tmp / "release.pub").write_bytes(key.public_pem)
        images = "\n".join(f"  - {src.host}/{r}:1.0" for r in REPOS)
        (tmp / "spec.yaml").write_text(f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: resume, version: "2"}}
images:
{images}
keys: [{{name: release, path: release.pub}}]
policies:
  - name: team
    images: [{{glob: "{src.host}/team/**"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
""")
        out = run(["pack", str(tmp / "spec.yaml"), "-o", str(tmp / "b.tar"), "--key", str(key.private_path)])
        assert out.exit_code == 0, out.output
        yield tmp / "b.tar", key.public_path, tmp
    finally:
        src.stop()


def snapshot(reg: Registry) -> dict[str, dict[str, str]]:
    """repo -> tag -> digest, after checking that each tag's whole graph is in the registry."""
    client = RegistryClient()
    out: dict[str, dict[str, str]] = {}
    for repo in (*REPOS, "airgap/maps"):
        for tag in Pusher(reg.url).tags(repo):
            todo = [client.get_manifest(reg.host, repo, tag)]
            out.setdefault(repo, {})[tag] = todo[0].digest
            while todo:
                m = todo.pop()
                for blob in m.blobs:
                    assert client.blob_exists(reg.host, repo, blob.digest), f"{repo}:{tag} -> missing {blob.digest}"
                todo += [client.get_manifest(reg.host, repo, c.digest) for c in m.manifests]
    return out


def test_killed_load_resumes_to_the_same_state(bundle: tuple[Path, Path, Path]) -> None:
    path, pub, tmp = bundle
    regs: list[Registry] = []
    try:
        clean = start_registry(tmp / "clean")
        regs.append(clean)

        def argv(host: str) -> list[str]:
            return [sys.executable, "-m", "airgap.cli", "load", str(path), "--registry", host, "--key", str(pub),
                    "-j", "2"]

        env = dict(os.environ, AIRGAP_BLOB_CACHE="off")
        t0 = time.monotonic()
        done = subprocess.run(argv(clean.host), capture_output=True, env=env, timeout=120)
        elapsed = time.monotonic() - t0
        assert done.returncode == 0, done.stderr.decode()
        expected = snapshot(clean)
        assert all(expected.get(r) for r in REPOS)
        killed_mid_way = 0
        for seed in (1, 2, 3, 4):
            reg = start_registry(tmp / f"r{seed}")
            regs.append(reg)
            delay = random.Random(seed).uniform(0.25, max(0.3, elapsed * 0.95))
            proc = subprocess.Popen(argv(reg.host), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env)
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed_mid_way += 1
            proc.wait(timeout=30)
            partial = snapshot(reg)  # every tag present now already resolves to complete content
            for repo, tagged in partial.items():
                for tag, digest in tagged.items():
                    assert repo == "airgap/maps" or expected[repo][tag] == digest, f"{repo}:{tag} -> {digest}"
            out = run(["load", str(path), "--registry", reg.host, "--key", str(pub)])
            assert out.exit_code == 0, out.output
            final = snapshot(reg)
            # the map names this registry's host, so only its tag is compared
            assert {r: set(t) for r, t in final.items()} == {r: set(t) for r, t in expected.items()}
            assert {r: t for r, t in final.items() if r != "airgap/maps"} == \
                {r: t for r, t in expected.items() if r != "airgap/maps"}
            reg.stop()
        assert killed_mid_way >= 2, f"load ({elapsed:.2f}s) finished before most kills: the test proves little"
    finally:
        for reg in regs:
            reg.stop()
