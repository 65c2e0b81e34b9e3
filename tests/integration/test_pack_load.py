"""pack -> load -> verify round trips on real registries, through the CLI.

One module-scoped scenario: registry A holds three signed two-platform images (key-signed with every child
signed, keyless from the mini-Sigstore, key-signed with its signatures in a separate signature repository)
plus an SBOM referrer; a spec packs them; the bundle is loaded into registry B (zarf and prefix modes) and
`airgap verify --trust <trust-out>` decides the translated refs offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.fixtures_sigstore import push_keyless_signature
from support.images import Pusher, push_image, push_referrer
from support.registries import Registry, find_tool, start_registry
from support.signing import KeyPair, write_keypair

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.refs.translate import zarf_forward
from airgap.signing.sign import sign_image

IDENTITY = ("signer@airgap.test", "https://oidc.airgap.test")
PLATFORMS = ("linux/amd64", "linux/arm64")


def run(args: list[str], **kwargs: Any) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


def spec_text(host: str, *, roots: str, images: list[str] | None = None, name: str = "demo") -> str:
    images = images or [f"{host}/team/app0:1.0", f"{host}/team/keyless:1.0", f"{host}/team/sigsep:1.0"]
    listed = "\n".join(f"  - {i}" for i in images)
    return f"""\
apiVersion: airgap/v1
kind: Bundle
metadata: {{name: {name}, version: 1.0.0}}
created: 1700000000
images:
{listed}
keys:
  - {{name: release, path: release.pub}}
trustedRoots: [{roots}]
policies:
  - name: team
    images: [{{glob: "{host}/team/app*"}}]
    authorities: [{{key: {{name: release}}, ctlog: {{disabled: true}}}}]
  - name: keyless
    images: [{{glob: "{host}/team/keyless*"}}]
    authorities:
      - keyless:
          identities: [{{issuer: "{IDENTITY[1]}", subject: "{IDENTITY[0]}"}}]
  - name: separate
    images: [{{glob: "{host}/team/sigsep*"}}]
    authorities:
      - key: {{name: release}}
        ctlog: {{disabled: true}}
        source: [{{oci: "{host}/team/signatures"}}]
noMatchPolicy: deny
"""


@dataclass
class Scenario:
    src: Registry
    key: KeyPair
    spec: Path
    bundle: Path
    digests: dict[str, str]  # repo -> image digest
    tmp: Path
    registries: list[Registry]
    children: dict[str, list[str]] = field(default_factory=dict)  # repo -> its platform manifests' digests

    def new_registry(self) -> Registry:
        reg = start_registry(self.tmp / f"reg{len(self.registries)}")
        self.registries.append(reg)
        return reg


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, mini_sigstore: Any, mini_sigstore_files: Any
             ) -> Iterator[Scenario]:
    if find_tool("docker-registry") is None:
        pytest.skip("docker-registry is not installed (run scripts/install-peers.sh)")
    tmp = tmp_path_factory.mktemp("packload")
    src = start_registry(tmp / "src")
    sc = Scenario(src, write_keypair(tmp / "keys", "release"), tmp / "demo.yaml", tmp / "demo.tar", {}, tmp, [src])
    try:
        pusher = Pusher(src.url)
        client = RegistryClient()
        for repo in ("team/app0", "team/keyless", "team/sigsep"):
            image = push_image(pusher, repo, "1.0", platforms=PLATFORMS, layer_sizes=(3000, 70000))
            sc.digests[repo] = image.digest
            sc.children[repo] = sorted(image.children.values())
        sign_image(f"{src.host}/team/app0:1.0", sc.key.signer, client=client, recursive=True)
        push_referrer(pusher, "team/app0", sc.digests["team/app0"], 400, fallback_tag=True)
        who = mini_sigstore.issue(*IDENTITY)
        push_keyless_signature(src, "team/keyless", sc.digests["team/keyless"], who, sigstore=mini_sigstore)
        sign_image(f"{src.host}/team/sigsep:1.0", sc.key.signer, client=client,
                   signature_repo=f"{src.host}/team/signatures")
        (tmp / "release.pub").write_bytes(sc.key.public_pem)
        sc.spec.write_text(spec_text(src.host, roots=str(mini_sigstore_files.trusted_root)))
        out = run(["pack", str(sc.spec), "-o", str(sc.bundle), "--key", str(sc.key.private_path)])
        assert out.exit_code == 0, out.output
        yield sc
    finally:
        for reg in sc.registries:
            reg.stop()


def tags(reg: Registry, repo: str) -> set[str]:
    return set(Pusher(reg.url).tags(repo))


def test_pack_is_reproducible_and_signed(scenario: Scenario, tmp_path: Path) -> None:
    def pack(name: str, *extra: str) -> dict[str, Any]:
        out = run(["pack", str(scenario.spec), "-o", str(tmp_path / name), "--json", *extra])
        assert out.exit_code == 0, out.output
        return dict(json.loads(out.stdout))

    # in place and concurrently (a file), and sequentially through the cache: the same bytes
    one, two = pack("one.tar"), pack("two.tar", "-j", "1", "--cache", str(tmp_path / "cache"))
    first = hashlib.sha256((tmp_path / "one.tar").read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / "two.tar").read_bytes()).hexdigest() == first
    assert two["file_sha256"] == f"sha256:{first}" and one["signed_by"] is None
    pack("three.tar", "--cache", str(tmp_path / "cache"))  # from the cache, re-hashed
    assert hashlib.sha256((tmp_path / "three.tar").read_bytes()).hexdigest() == first
    # A signature covers the manifest: same bundle digest, one more entry; signatures are deterministic
    # (RFC 6979), so two signed packs are byte-identical too.
    signed = pack("signed.tar", "--key", str(scenario.key.private_path))
    pack("signed2.tar", "--key", str(scenario.key.private_path))
    assert (tmp_path / "signed.tar").read_bytes() == (tmp_path / "signed2.tar").read_bytes()
    assert signed["bundle_digest"] == one["bundle_digest"] == two["bundle_digest"]
    assert signed["signed_by"] == scenario.key.key_id
    assert {i["ref"].split(":1.0")[0].rsplit("/", 1)[1] for i in one["images"]} == {"app0", "keyless", "sigsep"}
    sep = next(i for i in one["images"] if "sigsep" in i["ref"])
    assert sep["signature_repo"] == f"{scenario.src.host}/team/signatures"
    assert not list(tmp_path.glob(".*.part"))


def test_verify_bundle_and_inspect(scenario: Scenario) -> None:
    out = run(["verify-bundle", str(scenario.bundle), "--key", str(scenario.key.public_path)])
    assert out.exit_code == 0, out.output
    assert out.stdout.count("OK  ") == 3 and scenario.key.key_id in out.stdout
    out = run(["verify-bundle", str(scenario.bundle)])
    assert out.exit_code == 1 and "not trusted" in out.stderr
    out = run(["inspect", str(scenario.bundle), "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert len(info["images"]) == 3 and info["signed"] is True


def test_load_zarf_round_trip_verifies_offline(scenario: Scenario, tmp_path: Path) -> None:
    dst = scenario.new_registry()
    trust = tmp_path / "trust"
    out = run(["load", str(scenario.bundle), "--registry", dst.host, "--key", str(scenario.key.public_path),
               "--trust-out", str(trust), "--map-out", str(tmp_path / "map.json"), "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["already_loaded"] is False and summary["blobs_pushed"] > 0
    local = {}
    for repo, digest in scenario.digests.items():
        up = f"{scenario.src.host}/{repo}:1.0"
        crc = zarf_forward(up, dst.host)
        assert {crc.tag, "1.0"} <= tags(dst, repo)
        local[repo] = str(crc)
        head = RegistryClient().head_manifest(dst.host, repo, crc.tag or "")
        assert head is not None and head.digest == digest
    # signatures re-homed: .sig tags in the translated repo and the translated signature repo
    sig_tag = scenario.digests["team/app0"].replace(":", "-") + ".sig"
    assert sig_tag in tags(dst, "team/app0")
    assert scenario.digests["team/sigsep"].replace(":", "-") + ".sig" in tags(dst, "team/signatures")
    # the SBOM referrer's fallback index came along
    assert scenario.digests["team/app0"].replace(":", "-") in tags(dst, "team/app0")
    assert "demo-1.0.0" in tags(dst, "airgap/maps")
    mapping = json.loads((tmp_path / "map.json").read_text())
    assert {m["local"] for m in mapping} >= set(local.values())
    assert (trust / "map.json").exists() and (trust / "keys" / "release.pub").exists()
    out = run(["verify", "--trust", str(trust), *local.values(),
               f"{dst.host}/team/app0:1.0"])
    assert out.exit_code == 0, out.output
    assert out.stdout.count("OK  ") == 4
    # A node resolves the index to its platform: the platform digest translates back to the same upstream ref
    # (app0 signed every child); sigsep's children are unsigned, so they are denied for that, not for origin.
    out = run(["verify", "--trust", str(trust), *(f"{dst.host}/team/app0@{d}" for d in scenario.children["team/app0"])])
    assert out.exit_code == 0, out.output
    assert out.stdout.count("OK  ") == len(PLATFORMS)
    child = scenario.children["team/sigsep"][0]
    out = run(["verify", "--trust", str(trust), "--json", f"{dst.host}/team/sigsep@{child}"])
    assert out.exit_code == 1, out.output
    (denied,) = json.loads(out.stdout)["results"]
    assert denied["upstream"] == f"{scenario.src.host}/team/sigsep:1.0@{child}"
    assert "came from" not in " ".join(denied["reasons"])

    # loading again changes nothing and is fast
    before = {r: tags(dst, r) for r in (*scenario.digests, "team/signatures", "airgap/maps")}
    t0 = time.monotonic()
    out = run(["load", str(scenario.bundle), "--registry", dst.host, "--key", str(scenario.key.public_path),
               "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["already_loaded"] is True
    assert time.monotonic() - t0 < 2.0
    assert {r: tags(dst, r) for r in before} == before


def test_load_refuses_untrusted_bundles(scenario: Scenario, tmp_path: Path) -> None:
    dst = scenario.new_registry()
    out = run(["load", str(scenario.bundle), "--registry", dst.host])
    assert out.exit_code == 1 and "not trusted" in out.stderr
    other = write_keypair(tmp_path, "other")
    out = run(["load", str(scenario.bundle), "--registry", dst.host, "--key", str(other.public_path)])
    assert out.exit_code == 1 and "does not verify" in out.stderr
    out = run(["load", str(scenario.bundle), "--registry", dst.host, "--bundle-digest", "sha256:" + "0" * 64])
    assert out.exit_code == 1 and "does not match" in out.stderr
    assert tags(dst, "team/app0") == set()
    digest = json.loads(run(["inspect", str(scenario.bundle), "--json"]).stdout)["digest"]
    out = run(["load", str(scenario.bundle), "--registry", f"{dst.host}/mirror", "--translate", "prefix",
               "--bundle-digest", digest, "--trust-out", str(tmp_path / "trust")])
    assert out.exit_code == 0, out.output
    local = f"{dst.host}/mirror/{scenario.src.host.replace(':', '-')}/team/keyless:1.0"
    assert run(["verify", "--trust", str(tmp_path / "trust"), local]).exit_code == 0


def test_pack_reports_every_policy_failure(scenario: Scenario, tmp_path: Path, mini_sigstore_files: Any) -> None:
    pusher = Pusher(scenario.src.url)
    push_image(pusher, "team/app-unsigned", "1", platforms=PLATFORMS)
    push_image(pusher, "team/app-unsigned2", "1")
    (tmp_path / "release.pub").write_bytes(scenario.key.public_pem)
    spec = tmp_path / "bad.yaml"
    host = scenario.src.host
    spec.write_text(spec_text(host, roots=str(mini_sigstore_files.trusted_root),
                              images=[f"{host}/team/app0:1.0", f"{host}/team/app-unsigned:1",
                                      f"{host}/team/app-unsigned2:1"]))
    # Verification runs alongside the download into a temp file (in place, and sequentially with --cache):
    # a failure names every image, stops the download and leaves nothing behind. On stdout, nothing is written.
    for extra in ([], ["--cache", str(tmp_path / "cache")]):
        out = run(["pack", str(spec), "-o", str(tmp_path / "b.tar"), *extra])
        assert out.exit_code == 1, out.output
        assert "2 of 3 image(s) failed" in out.stderr and "app-unsigned2" in out.stderr
        assert not (tmp_path / "b.tar").exists() and not list(tmp_path.glob(".b.tar*")), extra
    out = run(["pack", str(spec), "-o", "-"])
    assert out.exit_code == 1 and "2 of 3 image(s) failed" in out.stderr and out.stdout_bytes == b""
    out = run(["pack", str(spec), "-o", str(tmp_path / "b.tar"), "--no-verify"])
    assert out.exit_code == 0, out.output
    out = run(["verify-bundle", str(tmp_path / "b.tar"), "--allow-unsigned-bundle"])
    assert out.exit_code == 1 and sum(line.startswith("FAIL ") for line in out.stdout.splitlines()) == 2


def test_pack_to_stdout_piped_into_load(scenario: Scenario, tmp_path: Path) -> None:
    dst = scenario.new_registry()
    airgap = [sys.executable, "-m", "airgap.cli"]
    env = dict(os.environ, AIRGAP_BLOB_CACHE="off")
    packer = subprocess.Popen([*airgap, "pack", str(scenario.spec), "-o", "-", "--key", str(scenario.key.private_path),
                               "--cache", str(tmp_path / "cache")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env)
    loaded = subprocess.run([*airgap, "load", "-", "--registry", dst.host, "--key", str(scenario.key.public_path)],
                            stdin=packer.stdout, capture_output=True, env=env, timeout=120)
    assert packer.stdout is not None
    packer.stdout.close()
    assert packer.wait(timeout=60) == 0, packer.stderr.read() if packer.stderr else ""
    assert loaded.returncode == 0, loaded.stderr.decode()
    assert "bundle digest" in (packer.stderr.read().decode() if packer.stderr else "")
    assert "1.0" in tags(dst, "team/keyless")
    assert list((tmp_path / "cache" / "blobs" / "sha256").iterdir())


def test_collect_skips_referrer_tags_the_listing_lacks(scenario: Scenario) -> None:
    """Without the Referrers API, only the fallback tags the tag list holds are fetched (each miss costs the
    registry a request), and a present one still brings its referrers."""
    from airgap.bundle.pack_collect import collect_image
    from airgap.oci.manifest import referrers_tag

    class Recording(RegistryClient):
        paths: list[str] = []

        def request(self, method: str, host: str, path_or_url: str, **kwargs: Any) -> Any:
            self.paths.append(path_or_url)
            return super().request(method, host, path_or_url, **kwargs)

    client = Recording()
    image = collect_image(client, f"{scenario.src.host}/team/app0:1.0", None, None)
    root = scenario.digests["team/app0"]
    fallback = [p for p in client.paths if "/manifests/sha256-" in p and not p.endswith((".sig", ".att", ".sbom"))]
    assert fallback == [f"/v2/team/app0/manifests/{referrers_tag(root)}"]
    assert [a.subject for a in image.attachments if a.kind == "referrer"] == [root]
    assert len([a for a in image.attachments if a.kind == "signature"]) == 3  # the index and both platforms


def test_load_takes_blobs_in_any_order(scenario: Scenario, tmp_path: Path) -> None:
    """The manifest pins every blob's digest and size, not where it sits among the blobs: a bundle whose
    blobs were rewritten in another order (same manifest, same signature) loads the same."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_bundle_tamper import join, split

    from airgap.bundle.manifest import BLOB_PREFIX

    entries = split(scenario.bundle.read_bytes())
    first = next(i for i, e in enumerate(entries) if e[0].startswith(BLOB_PREFIX))
    reordered = tmp_path / "reordered.tar"
    reordered.write_bytes(join(entries[:first] + entries[first:][::-1]))
    dst = scenario.new_registry()
    out = run(["load", str(reordered), "--registry", dst.host, "--key", str(scenario.key.public_path), "--json"])
    assert out.exit_code == 0, out.output
    for repo, digest in scenario.digests.items():
        head = RegistryClient().head_manifest(dst.host, repo, "1.0")
        assert head is not None and head.digest == digest
