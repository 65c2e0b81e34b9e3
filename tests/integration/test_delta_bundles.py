"""Delta bundles through the CLI on real registries.

The site (a registry) loads version 1 of a bundle of three signed two-platform images (one with an SBOM referrer)
and writes its signed inventory; upstream, two of the images change; version 2 is packed as a delta against the
inventory (and against the old bundle file with --since) and as a full bundle. The delta loaded over version 1
gives exactly the registry content of version 1 then the full version 2; loaded where the site does not hold what
it leaves out, it fails before pushing anything, listing every missing blob; its description is covered by the
bundle signature; and `pack --delta-key` checks the inventory's signature.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support.bundles import key_spec_text
from support.images import Pusher, push_image, push_referrer
from support.registries import Registry, find_tool, start_registry
from support.registry_content import catalog, snapshot
from support.signing import KeyPair, write_keypair

from airgap.cli import cli
from airgap.oci.registry import RegistryClient
from airgap.signing.sign import sign_image

KIB = 1024
REPOS = ("team/a", "team/b", "team/c")
CHANGED = ("team/a", "team/b")


def run(args: list[str], **kwargs: Any) -> Any:
    return CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)


def push(src: Registry, repo: str, seed: str, key: KeyPair) -> str:
    image = push_image(Pusher(src.url), repo, "1.0", platforms=("linux/amd64", "linux/arm64"),
                       base_sizes=(90 * KIB,), layer_sizes=(40 * KIB, 3000), seed=seed)
    sign_image(f"{src.host}/{repo}:1.0", key.signer, client=RegistryClient(), recursive=True)
    return image.digest


@dataclass
class Scenario:
    src: Registry
    release: KeyPair
    site_key: KeyPair
    tmp: Path
    full1: Path
    full2: Path
    delta: Path  # v2 against the site's inventory (signed with the release key)
    since: Path  # v2 against full1
    inventory: Path
    site: Registry  # full1 loaded, inventory taken (the delta is NOT loaded here by the fixture)
    registries: list[Registry]

    def registry(self) -> Registry:
        reg = start_registry(self.tmp / f"reg{len(self.registries)}")
        self.registries.append(reg)
        return reg

    def load(self, bundle: Path | str, reg: Registry | str, *extra: str) -> Any:
        host = reg if isinstance(reg, str) else reg.host
        return run(["load", str(bundle), "--registry", host, "--key", str(self.release.public_path), *extra])


def pack(spec: Path, out: Path, key: KeyPair, *extra: str) -> dict[str, Any]:
    res = run(["pack", str(spec), "-o", str(out), "--key", str(key.private_path), "--json", *extra])
    assert res.exit_code == 0, res.output
    return dict(json.loads(res.stdout))


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    if find_tool("docker-registry") is None:
        pytest.skip("docker-registry is not installed (run scripts/install-peers.sh)")
    tmp = tmp_path_factory.mktemp("delta")
    src = start_registry(tmp / "src")
    regs = [src]
    try:
        release = write_keypair(tmp / "keys", "release")
        site_key = write_keypair(tmp / "keys", "site")
        digests = {repo: push(src, repo, f"{repo}-v1", release) for repo in REPOS}
        push_referrer(Pusher(src.url), "team/c", digests["team/c"], 400, fallback_tag=True)
        (tmp / "release.pub").write_bytes(release.public_pem)
        (tmp / "v1.yaml").write_text(key_spec_text(src.host, REPOS, "site", "1.0.0"))
        pack(tmp / "v1.yaml", tmp / "full1.tar", release)
        site = start_registry(tmp / "site")
        regs.append(site)
        out = run(["load", str(tmp / "full1.tar"), "--registry", site.host, "--key", str(release.public_path)])
        assert out.exit_code == 0, out.output
        out = run(["site", "inventory", "--registry", site.host, "-o", str(tmp / "inventory.json"), "--key",
                   str(site_key.private_path)])
        assert out.exit_code == 0, out.output
        for repo in CHANGED:  # upstream moves on: two images change (new app layers and configs, same base)
            push(src, repo, f"{repo}-v2", release)
        (tmp / "v2.yaml").write_text(key_spec_text(src.host, REPOS, "site", "2.0.0"))
        pack(tmp / "v2.yaml", tmp / "full2.tar", release)
        pack(tmp / "v2.yaml", tmp / "delta.tar", release, "--delta", str(tmp / "inventory.json"),
             "--delta-key", str(site_key.public_path))
        pack(tmp / "v2.yaml", tmp / "since.tar", release, "--since", str(tmp / "full1.tar"))
        yield Scenario(src, release, site_key, tmp, tmp / "full1.tar", tmp / "full2.tar", tmp / "delta.tar",
                       tmp / "since.tar", tmp / "inventory.json", site, regs)
    finally:
        for reg in regs:
            reg.stop()


def test_inventory_describes_the_site(sc: Scenario) -> None:
    doc = json.loads(sc.inventory.read_bytes())
    assert doc["apiVersion"] == "airgap.dev/v1alpha1" and doc["kind"] == "SiteInventory"
    assert doc["registry"] == sc.site.host and doc["created"].endswith("Z")
    assert doc["bundles"] == [{"name": "site", "version": "1.0.0"}]
    assert set(REPOS) <= set(doc["repositories"]) and "airgap/maps" in doc["repositories"]
    assert doc["repositories"]["team/a"]["1.0"] == RegistryClient().head_manifest(sc.site.host, "team/a",
                                                                                  "1.0").digest  # type: ignore[union-attr]
    full1 = json.loads(run(["inspect", str(sc.full1), "--json"]).stdout)
    manifest = _bundle_manifest(sc.full1)
    for image in manifest["images"]:  # every layer and config of version 1 is there, in its repository
        repo = image["ref"].split("/", 1)[1].rsplit(":", 1)[0]
        for digest in image["blobs"]:
            assert repo in doc["blobs"][digest]["repos"] and doc["blobs"][digest]["size"] == manifest["blobs"][digest]
        assert image["digest"] in doc["manifests"]
    assert full1["blob_count"] > 0
    raw = sc.inventory.read_bytes()
    assert raw == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()  # canonical
    assert Path(f"{sc.inventory}.sig").exists()


def _bundle_manifest(bundle: Path) -> dict[str, Any]:
    import tarfile

    with tarfile.open(bundle) as tf:
        member = tf.extractfile("airgap-bundle.json")
        assert member is not None
        return dict(json.loads(member.read()))


def test_delta_carries_only_what_the_site_lacks(sc: Scenario) -> None:
    delta, full2 = _bundle_manifest(sc.delta), _bundle_manifest(sc.full2)
    inventory = json.loads(sc.inventory.read_bytes())
    assert delta["delta"]["kind"] == "inventory" and delta["delta"]["schema"] == "airgap.dev/bundle-delta/v1"
    assert delta["delta"]["base"] == "sha256:" + __import__("hashlib").sha256(sc.inventory.read_bytes()).hexdigest()
    omitted = delta["delta"]["omitted"]
    assert omitted and all(inventory["blobs"][d]["size"] == s for d, s in omitted.items())
    assert set(delta["blobs"]) | set(omitted) == set(full2["blobs"]) and not set(delta["blobs"]) & set(omitted)
    manifests = {d for i in full2["images"] for d in (*i["manifests"], *(a["digest"] for a in i["attachments"]))}
    assert manifests <= set(delta["blobs"])  # every manifest and signature travels
    new = [d for d in delta["blobs"] if d not in manifests and d not in inventory["blobs"]]
    assert new  # the changed images' new layers and configs
    assert sc.delta.stat().st_size < sc.full2.stat().st_size / 2
    info = json.loads(run(["inspect", str(sc.delta), "--json"]).stdout)
    assert info["delta"] == {"kind": "inventory", "base": delta["delta"]["base"], "omitted_blobs": len(omitted),
                             "omitted_bytes": sum(omitted.values())}
    text = run(["inspect", str(sc.delta)]).stdout
    assert f"delta    against inventory {delta['delta']['base']}: {len(omitted)} blob(s)" in text


def test_verify_bundle_of_a_delta_says_what_it_could_not_check(sc: Scenario) -> None:
    out = run(["verify-bundle", str(sc.delta), "--key", str(sc.release.public_path)])
    assert out.exit_code == 0, out.output
    assert out.stdout.count("OK  ") == 3
    omitted = _bundle_manifest(sc.delta)["delta"]["omitted"]
    assert f"{len(omitted)} blob(s)" in out.stdout and "NOT checked here, the delta leaves them out" in out.stdout
    for digest in omitted:
        assert digest in out.stdout
    js = json.loads(run(["verify-bundle", str(sc.delta), "--key", str(sc.release.public_path), "--json"]).stdout)
    assert {u["digest"] for u in js["delta"]["unchecked"]} == set(omitted)


def test_full_then_delta_equals_full_then_full(sc: Scenario) -> None:
    reference = sc.registry()
    for bundle in (sc.full1, sc.full2):
        out = sc.load(bundle, reference)
        assert out.exit_code == 0, out.output
    out = sc.load(sc.delta, sc.site, "--json")
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["delta"]["omitted_blobs"] == len(_bundle_manifest(sc.delta)["delta"]["omitted"])
    assert snapshot(sc.site.url) == snapshot(reference.url)
    # loading it again pushes nothing
    out = sc.load(sc.delta, sc.site, "--json")
    assert out.exit_code == 0 and json.loads(out.stdout)["already_loaded"] is True


def test_since_an_older_bundle(sc: Scenario) -> None:
    delta = _bundle_manifest(sc.since)["delta"]
    assert delta["kind"] == "bundle"
    assert delta["base"] == json.loads(run(["inspect", str(sc.full1), "--json"]).stdout)["digest"]
    site, reference = sc.registry(), sc.registry()
    for reg, bundles in ((site, (sc.full1, sc.since)), (reference, (sc.full1, sc.full2))):
        for bundle in bundles:
            out = sc.load(bundle, reg)
            assert out.exit_code == 0, out.output
    assert snapshot(site.url) == snapshot(reference.url)
    # --delta-key checks the older bundle's signature too
    argv = ["pack", str(sc.tmp / "v2.yaml"), "-o", str(sc.tmp / "since-checked.tar"), "--since", str(sc.full1)]
    assert run([*argv, "--delta-key", str(sc.release.public_path)]).exit_code == 0
    out = run([*argv, "--delta-key", str(sc.site_key.public_path)])
    assert out.exit_code == 1 and "bundle signature (airgap-bundle.json.sig) does not verify" in out.stderr


def test_a_site_that_lacks_the_base_is_refused_before_anything_is_pushed(sc: Scenario) -> None:
    empty = sc.registry()
    out = sc.load(sc.delta, empty)
    assert out.exit_code == 1 and out.stderr.count("\n") == 1, out.output
    omitted = _bundle_manifest(sc.delta)["delta"]["omitted"]
    assert out.stderr.startswith("error: delta bundle site 2.0.0 (against inventory sha256:")
    assert f"leaves out {len(omitted)} blob(s) that {empty.host} does not hold" in out.stderr
    for digest in omitted:
        assert digest in out.stderr
    assert f"{sc.src.host}/team/c:1.0" in out.stderr and "Nothing was pushed" in out.stderr
    assert catalog(empty.url) == []  # nothing pushed at all: no repository exists
    # a site holding another bundle with version 1 of team/b only: the shared base layers are there (and would
    # be mounted), team/c's layers are not
    partial = sc.registry()
    spec = sc.tmp / "only-b.yaml"
    spec.write_text((sc.tmp / "v1.yaml").read_text().replace(f"  - {sc.src.host}/team/a:1.0\n", "")
                    .replace(f"  - {sc.src.host}/team/c:1.0\n", "").replace("name: site", "name: other"))
    pack(spec, sc.tmp / "only-b.tar", sc.release)
    assert sc.load(sc.tmp / "only-b.tar", partial).exit_code == 0
    before = snapshot(partial.url)
    out = sc.load(sc.delta, partial)
    assert out.exit_code == 1 and "does not hold" in out.stderr, out.output
    c_blobs = {d for i in _bundle_manifest(sc.delta)["images"] if "team/c" in i["ref"] for d in i["blobs"]}
    missing = [d for d in omitted if d in out.stderr]
    assert missing and set(missing) <= c_blobs and len(missing) < len(omitted)
    assert snapshot(partial.url) == before and catalog(partial.url) == sorted(before)  # nothing pushed


def test_blobs_elsewhere_in_the_registry_are_mounted(sc: Scenario) -> None:
    """Version 1 loaded under a prefix: the delta (loaded with zarf refs) finds the blobs it leaves out in the
    other repositories through the catalog, and mounts them."""
    reg = sc.registry()
    out = sc.load(sc.full1, f"{reg.host}/mirror", "--translate", "prefix")
    assert out.exit_code == 0, out.output
    out = sc.load(sc.delta, reg, "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["delta"]["mounted"] > 0
    reference = sc.registry()
    assert sc.load(sc.full2, reference).exit_code == 0
    got = {r: t for r, t in snapshot(reg.url).items() if not r.startswith("mirror/")}
    assert got == snapshot(reference.url)


def _rewrite(bundle: Path, out: Path, change: Any, *, signer: Any = None) -> Path:
    """``bundle`` with its manifest changed by ``change(doc)`` (kept canonical), re-signed by ``signer`` or with
    the original signature left in place."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_bundle_tamper import entry, join, split

    from airgap.bundle.manifest import canonical_json

    entries = split(bundle.read_bytes())
    name, _header, data = entries[0]
    doc = json.loads(data.rstrip(b"\0"))
    change(doc)
    new = canonical_json(doc)
    rest = entries[1:]
    if signer is not None:
        rest = [entry("airgap-bundle.json.sig", base64.b64encode(signer.sign(new))), *rest[1:]]
    out.write_bytes(join([entry(name, new), *rest]))
    return out


def test_the_delta_description_is_signed(sc: Scenario, tmp_path: Path) -> None:
    site = sc.registry()
    assert sc.load(sc.full1, site).exit_code == 0
    before = snapshot(site.url)
    digest = json.loads(run(["inspect", str(sc.delta), "--json"]).stdout)["digest"]

    def rebase(doc: dict[str, Any]) -> None:
        doc["delta"]["base"] = "sha256:" + "1" * 64

    def unomit(doc: dict[str, Any]) -> None:  # claim one more blob is at the site
        layer = next(d for i in doc["images"] for d in i["blobs"] if d in doc["blobs"] and d not in
                     {a["digest"] for a in i["attachments"]})
        size = doc["blobs"].pop(layer)
        doc["delta"]["omitted"][layer] = size
        doc["blobCount"] -= 1
        doc["blobBytes"] -= size

    def full(doc: dict[str, Any]) -> None:  # pretend it is a complete bundle
        del doc["delta"]

    def omit_manifest(doc: dict[str, Any]) -> None:
        index = doc["images"][0]["digest"]
        doc["delta"]["omitted"][index] = doc["blobs"].pop(index)
        doc["blobCount"] -= 1
        doc["blobBytes"] -= doc["delta"]["omitted"][index]

    cases = [
        (rebase, ["--key", str(sc.release.public_path)], "bundle signature (airgap-bundle.json.sig) does not verify"),
        (rebase, ["--bundle-digest", digest], "does not match the pinned"),
        (unomit, ["--key", str(sc.release.public_path)], "does not verify"),
        (full, ["--key", str(sc.release.public_path)], "does not verify"),
        (full, ["--allow-unsigned-bundle"], "is not among the bundle's blobs"),
        (omit_manifest, ["--allow-unsigned-bundle"], "omitted by the delta: manifests and signatures are always "
                                                     "carried"),
    ]
    for i, (change, trust, message) in enumerate(cases):
        bad = _rewrite(sc.delta, tmp_path / f"bad{i}.tar", change)
        out = run(["load", str(bad), "--registry", site.host, *trust])
        assert out.exit_code == 1 and message in out.stderr and out.stderr.count("\n") == 1, (i, out.output)
        assert snapshot(site.url) == before, i
    # re-signed by someone else: refused by the release key
    bad = _rewrite(sc.delta, tmp_path / "resigned.tar", rebase, signer=sc.site_key.signer)
    out = run(["load", str(bad), "--registry", site.host, "--key", str(sc.release.public_path)])
    assert out.exit_code == 1 and "does not verify" in out.stderr


def test_pack_checks_the_inventory_signature(sc: Scenario, tmp_path: Path) -> None:
    spec = sc.tmp / "v2.yaml"

    def pack_delta(inventory: Path, key: Path) -> Any:
        return run(["pack", str(spec), "-o", str(tmp_path / "d.tar"), "--delta", str(inventory),
                    "--delta-key", str(key)])

    other = write_keypair(tmp_path / "k", "other")
    out = pack_delta(sc.inventory, other.public_path)
    assert out.exit_code == 1 and out.stderr == "error: inventory inventory.json.sig does not verify with the " \
                                                "given key\n", out.output
    tampered = tmp_path / "inventory.json"
    doc = json.loads(sc.inventory.read_bytes())
    doc["blobs"][sorted(doc["blobs"])[0]]["size"] += 1
    tampered.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    (tmp_path / "inventory.json.sig").write_bytes(Path(f"{sc.inventory}.sig").read_bytes())
    out = pack_delta(tampered, sc.site_key.public_path)
    assert out.exit_code == 1 and "does not verify" in out.stderr
    (tmp_path / "inventory.json.sig").unlink()
    out = pack_delta(tampered, sc.site_key.public_path)
    assert out.exit_code == 1 and "is not signed (no inventory.json.sig)" in out.stderr
    out = pack_delta(sc.inventory, sc.site_key.public_path)
    assert out.exit_code == 0, out.output
    def digest(bundle: Path) -> str:
        return str(json.loads(run(["inspect", str(bundle), "--json"]).stdout)["digest"])

    assert digest(tmp_path / "d.tar") == digest(sc.delta)  # reproducible: the same delta, unsigned
    out = run(["pack", str(spec), "-o", str(tmp_path / "x.tar"), "--delta", str(sc.inventory), "--since",
               str(sc.full1)])
    assert out.exit_code == 2 and "give one" in out.stderr


def test_a_split_delta(sc: Scenario, tmp_path: Path) -> None:
    """Split media and deltas compose: a delta in parts loads from its directory; where the site lacks what it
    leaves out, the error is the site's, not blamed on a part."""
    parts = tmp_path / "parts"
    parts.mkdir()
    pack(sc.tmp / "v2.yaml", parts / "delta.tar", sc.release, "--delta", str(sc.inventory), "--split-size", "32K")
    assert b"".join(p.read_bytes() for p in sorted(parts.glob("delta.tar.part-*"))) == sc.delta.read_bytes()
    out = sc.load(parts, sc.registry())
    assert out.exit_code == 1 and "does not hold" in out.stderr and "part" not in out.stderr.split(":")[1]
    site = sc.registry()
    assert sc.load(sc.full1, site).exit_code == 0
    out = sc.load(parts, site)
    assert out.exit_code == 0, out.output
    assert "read from" in out.stdout and "delta against inventory" in out.stdout
