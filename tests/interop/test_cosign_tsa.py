"""RFC 3161 timestamps from real cosign v2: ``cosign sign --timestamp-server-url`` against the mini TSA
(:mod:`support.minitsa`, ``openssl ts -reply`` on loopback HTTP), then ``airgap verify`` with a trust dir whose
``trusted_root.json`` names that TSA and a policy with ``rfc3161timestamp``; and real ``cosign verify
--timestamp-certificate-chain`` accepts the same signature, which shows the mini TSA is a real one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_tool
from support.images import Pusher
from support.minisigstore import MiniSigstore
from support.minitsa import MiniTSA, add_tsa
from support.trustdirs import cip, key_authority, write_trust

from airgap.checks import cosign as cosign_format
from airgap.cli import cli

pytestmark = pytest.mark.peer("cosign")
PASSWORD = "tsa-pass"


def run_cosign(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home), COSIGN_PASSWORD=PASSWORD, COSIGN_YES="true", TUF_ROOT=str(home / "tuf"))
    return subprocess.run([require_tool("cosign"), *args], capture_output=True, text=True, env=env,  # noqa: S603
                          timeout=120, cwd=home, check=False)


def trust_dir(path: Path, pub: Path, tsa: MiniTSA | None, *, rfc3161: bool) -> Path:
    root = MiniSigstore().trusted_root()
    timestamped = key_authority("release", tlog=True) + "      rfc3161timestamp: {trustRootRef: default}\n"
    return write_trust(path, keys={"release": pub.read_bytes()}, trusted_root=add_tsa(root, tsa) if tsa else root,
                       policy=cip("tsa", timestamped if rfc3161 else key_authority("release")))


def test_cosign_timestamped_signature(registry: Any, make_image: Any, tsa: MiniTSA, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = run_cosign(["generate-key-pair", "--output-key-prefix", "release"], home)
    assert out.returncode == 0, out.stderr
    key, pub = home / "release.key", home / "release.pub"
    image = make_image(registry, "tsa/app", "1.0")
    ref = f"{registry.host}/tsa/app@{image.digest}"
    with tsa.serve() as url:
        out = run_cosign(["sign", "--key", str(key), "--tlog-upload=false", "--allow-http-registry",
                          "--timestamp-server-url", url, ref], home)
    assert out.returncode == 0, out.stderr

    # cosign wrote the annotation airgap reads
    pusher = Pusher(registry.url)
    data, _ = pusher.get_manifest("tsa/app", image.digest.replace(":", "-") + ".sig")
    layer = json.loads(data)["layers"][0]
    assert "SignedRFC3161Timestamp" in json.loads(layer["annotations"][cosign_format.ANN_RFC3161])

    # real cosign accepts it with the mini TSA's chain
    out = run_cosign(["verify", "--key", str(pub), "--insecure-ignore-tlog", "--allow-insecure-registry",
                      "--timestamp-certificate-chain", str(tsa.chain_pem), ref], home)
    assert out.returncode == 0, out.stderr

    # airgap: timestamp required by the policy, verified against the trusted root's TSA
    trust = trust_dir(tmp_path / "trust", pub, tsa, rfc3161=True)
    result = CliRunner().invoke(cli, ["verify", "--trust", str(trust), "--json", ref], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "CN=airgap-test-tsa" in result.output and '"timestamp"' in result.output

    # the timestamp is verified whenever present: a root without the TSA fails closed, as cosign does
    no_tsa = trust_dir(tmp_path / "no-tsa", pub, None, rfc3161=False)
    result = CliRunner().invoke(cli, ["verify", "--trust", str(no_tsa), ref], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "no timestamp authorities" in result.output
    out = run_cosign(["verify", "--key", str(pub), "--insecure-ignore-tlog", "--allow-insecure-registry", ref], home)
    assert out.returncode != 0
