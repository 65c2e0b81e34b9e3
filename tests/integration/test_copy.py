"""`airgap copy` on real registries: byte-identical round trips, companions, referrers, auth and TLS."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import pusher_for
from support.images import (
    OCI_MANIFEST,
    Image,
    push_referrer,
    push_signature_tag,
    sha256,
)
from support.registries import Registry

from airgap.cli import cli


@pytest.fixture(autouse=True)
def blob_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own blob-location cache (never the user's)."""
    monkeypatch.setenv("AIRGAP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AIRGAP_BLOB_CACHE", raising=False)
    return tmp_path / "cache" / "blob-locations.json"


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result


def copy_json(src: str, dst: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run("copy", "--json", *extra, src, dst, env=env)
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_round_trip_registry_layout_registry_is_byte_identical(
    registry: Registry, registry2: Registry, make_image: Callable[..., Image], tmp_path: Path, docker: bool
) -> None:
    img = make_image(registry, "team/app", "1.0", platforms=("linux/amd64", "linux/arm64"),
                     layer_sizes=(300_000, 5000), base_sizes=(100_000,), docker=docker)
    p1, p2 = pusher_for(registry), pusher_for(registry2)
    sig = push_signature_tag(p1, "team/app", img.digest)
    child_sig = push_signature_tag(p1, "team/app", img.children["linux/arm64"], ".att")

    s1 = copy_json(f"{registry.host}/team/app:1.0", f"{registry2.host}/mirror/app")
    assert s1["digest"] == img.digest
    assert s1["platforms"] == ["linux/amd64", "linux/arm64"]
    assert s1["blobs"] == len(img.blobs) + 3  # image blobs + two signature payloads + their shared config
    assert sorted(s1["tags"]) == sorted([img.digest.replace(":", "-") + ".sig",
                                         img.children["linux/arm64"].replace(":", "-") + ".att"])
    data, ctype = p2.get_manifest("mirror/app", "1.0")
    assert data == img.manifest and sha256(data) == img.digest and ctype.startswith(img.media_type)
    for child in img.children.values():
        assert p2.get_manifest("mirror/app", child)[0] == pusher_for(registry).get_manifest("team/app", child)[0]
    assert sha256(p2.get_manifest("mirror/app", img.digest.replace(":", "-") + ".sig")[0]) == sig
    assert sha256(p2.get_manifest("mirror/app", img.children["linux/arm64"].replace(":", "-") + ".att")[0]) \
        == child_sig

    layout = tmp_path / "layout"
    copy_json(f"{registry2.host}/mirror/app:1.0", f"oci:{layout}:v1")
    index = json.loads((layout / "index.json").read_text())
    tagged = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    assert tagged["v1"] == img.digest
    assert (layout / "blobs" / "sha256" / img.digest.split(":")[1]).read_bytes() == img.manifest
    assert json.loads((layout / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"

    s3 = copy_json(f"oci:{layout}:v1", f"{registry.host}/back/app:2.0")
    assert s3["digest"] == img.digest
    assert p1.get_manifest("back/app", "2.0")[0] == img.manifest
    assert img.digest.replace(":", "-") + ".sig" in p1.tags("back/app")


def test_second_copy_skips_every_blob(registry: Registry, registry2: Registry,
                                      make_image: Callable[..., Image]) -> None:
    make_image(registry, "a/b", "1", platforms=("linux/amd64", "linux/arm64"), layer_sizes=(50_000,))
    first = copy_json(f"{registry.host}/a/b:1", f"{registry2.host}/a/b:1")
    assert first["blobs_copied"] == first["blobs"] > 0
    again = copy_json(f"{registry.host}/a/b:1", f"{registry2.host}/a/b:1")
    assert again["blobs_copied"] == 0 and again["bytes_copied"] == 0


def test_copy_within_a_registry_mounts_blobs(registry: Registry, make_image: Callable[..., Image]) -> None:
    img = make_image(registry, "src/app", "1", layer_sizes=(200_000,))
    summary = copy_json(f"{registry.host}/src/app:1", f"{registry.host}/dst/app:1")
    assert summary["blobs_copied"] == 0  # mounted, not uploaded
    assert pusher_for(registry).get_manifest("dst/app", "1")[0] == img.manifest


def test_shared_layers_are_mounted_from_where_an_earlier_copy_put_them(
    registry: Registry, registry2: Registry, make_image: Callable[..., Image], blob_cache: Path
) -> None:
    plats = ("linux/amd64", "linux/arm64")
    one = make_image(registry, "app/one", "1", platforms=plats, layer_sizes=(20_000,), base_sizes=(300_000,))
    two = make_image(registry, "app/two", "1", platforms=plats, layer_sizes=(20_000,), base_sizes=(300_000,))
    shared = set(one.blobs) & set(two.blobs)
    assert len(shared) == 2  # one base layer per platform
    first = copy_json(f"{registry.host}/app/one:1", f"{registry2.host}/mirror/one:1")
    assert first["blobs_copied"] == first["blobs"]
    # A separate process (the cache is on disk) copying into another repository of the same target.
    second = copy_json(f"{registry.host}/app/two:1", f"{registry2.host}/mirror/two:1")
    assert second["blobs_copied"] == second["blobs"] - len(shared)
    assert second["bytes_copied"] == second["bytes_total"] - 2 * 300_000
    p2 = pusher_for(registry2)
    assert p2.get_manifest("mirror/two", "1")[0] == two.manifest
    for digest in shared:  # really linked into the new repository, not just skipped
        assert p2.session.head(f"{registry2.url}/v2/mirror/two/blobs/{digest}").status_code == 200
    cached = json.loads(blob_cache.read_text())
    assert [registry2.host, sorted(shared)[0], ["mirror/one", "mirror/two"]] in cached["entries"]


@pytest.mark.parametrize("cache", ["stale", "garbage"])
def test_a_stale_or_broken_cache_only_costs_speed(
    registry: Registry, registry2: Registry, make_image: Callable[..., Image], blob_cache: Path, cache: str
) -> None:
    img = make_image(registry, "c/app", "1", layer_sizes=(50_000,))
    blob_cache.parent.mkdir(parents=True)
    if cache == "stale":  # the target is a fresh registry: every hinted repository is empty
        rows = [[registry2.host, d, ["gone/repo"]] for d in img.blobs]
        blob_cache.write_text(json.dumps({"version": 1, "entries": rows}))
    else:
        blob_cache.write_text('{"version": 1, "entries": [["h", "sha256:zz", 7]]')
    summary = copy_json(f"{registry.host}/c/app:1", f"{registry2.host}/c/app:1")
    assert summary["blobs_copied"] == summary["blobs"] == len(img.blobs)
    assert pusher_for(registry2).get_manifest("c/app", "1")[0] == img.manifest
    assert {row[1] for row in json.loads(blob_cache.read_text())["entries"]} >= set(img.blobs)


def test_referrers_via_fallback_tag_on_distribution2(registry: Registry, registry2: Registry,
                                                     make_image: Callable[..., Image], tmp_path: Path) -> None:
    img = make_image(registry, "r/app", "1", platforms=("linux/amd64", "linux/arm64"))
    ref = push_referrer(pusher_for(registry), "r/app", img.digest, len(img.manifest), fallback_tag=True)
    summary = copy_json(f"{registry.host}/r/app:1", f"{registry2.host}/r/app:1")
    assert summary["referrers"] == [ref]
    # The target has no Referrers API either: airgap maintains the fallback index there.
    index, _ = pusher_for(registry2).get_manifest("r/app", img.digest.replace(":", "-"))
    assert [m["digest"] for m in json.loads(index)["manifests"]] == [ref]
    # A layout keeps referrers as untagged index.json entries with the subject inside.
    copy_json(f"{registry2.host}/r/app:1", f"oci:{tmp_path / 'l'}:t")
    summary = copy_json(f"oci:{tmp_path / 'l'}:t", f"{registry.host}/again/app:1")
    assert summary["referrers"] == [ref]


def test_referrers_api_on_distribution3(referrers_registry: Registry, registry: Registry,
                                        make_image: Callable[..., Image]) -> None:
    reg3 = referrers_registry
    img = make_image(reg3, "r3/app", "1", platforms=("linux/amd64", "linux/arm64"))
    p3 = pusher_for(reg3)
    sbom = push_referrer(p3, "r3/app", img.digest, len(img.manifest))
    # A signature on the SBOM: a referrer of a referrer.
    sbom_len = len(p3.get_manifest("r3/app", sbom)[0])
    sig = push_referrer(p3, "r3/app", sbom, sbom_len, subject_type=OCI_MANIFEST,
                        artifact_type="application/vnd.dev.sigstore.bundle.v0.3+json", content=b'{"sig":1}')
    summary = copy_json(f"{reg3.host}/r3/app:1", f"{reg3.host}/copy/app:1")
    assert summary["referrers"] == [sbom, sig]
    listed = p3.session.get(f"{reg3.url}/v2/copy/app/referrers/{img.digest}").json()
    assert [m["digest"] for m in listed["manifests"]] == [sbom]
    # Into a pre-1.1 registry: the fallback tag carries them.
    summary = copy_json(f"{reg3.host}/r3/app:1", f"{registry.host}/old/app:1")
    assert summary["referrers"] == [sbom, sig]
    index, _ = pusher_for(registry).get_manifest("old/app", sbom.replace(":", "-"))
    assert [m["digest"] for m in json.loads(index)["manifests"]] == [sig]


def test_distribution3_round_trip(distribution3: Registry, registry: Registry,
                                  make_image: Callable[..., Image]) -> None:
    img = make_image(distribution3, "d3/app", "1", platforms=("linux/amd64", "linux/arm64"), docker=True)
    copy_json(f"{distribution3.host}/d3/app:1", f"{registry.host}/d2/app:1")
    copy_json(f"{registry.host}/d2/app:1", f"{distribution3.host}/back/app:1")
    assert pusher_for(distribution3).get_manifest("back/app", "1")[0] == img.manifest


def test_digest_pinned_source_and_destination_tag(registry: Registry, registry2: Registry,
                                                  make_image: Callable[..., Image]) -> None:
    img = make_image(registry, "p/app", None, layer_sizes=(1000,))
    summary = copy_json(f"{registry.host}/p/app@{img.digest}", f"{registry2.host}/p/app:pinned")
    assert summary["digest"] == img.digest
    assert pusher_for(registry2).tags("p/app") == ["pinned"]
    bad = "sha256:" + "1" * 64
    result = run("copy", f"{registry.host}/p/app@{img.digest}", f"{registry2.host}/p/app@{bad}")
    assert result.exit_code == 2 and "does not match" in result.stderr


def test_tls_and_basic_auth_with_ca_file_and_docker_config(
    tls_auth_registry: Registry, registry: Registry, make_image: Callable[..., Image], tmp_path: Path
) -> None:
    reg = tls_auth_registry
    assert reg.tls is not None
    img = make_image(reg, "secure/app", "1", platforms=("linux/amd64", "linux/arm64"))
    auth = base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    summary = copy_json(f"{reg.host}/secure/app:1", f"{registry.host}/plain/app:1",
                        "--ca-file", str(reg.tls.ca_pem), env=env)
    assert summary["digest"] == img.digest
    # And back into the TLS registry (push with credentials).
    copy_json(f"{registry.host}/plain/app:1", f"{reg.host}/pushed/app:1", "--ca-file", str(reg.tls.ca_pem),
              env=env)
    assert pusher_for(reg).get_manifest("pushed/app", "1")[0] == img.manifest

    no_ca = run("copy", f"{reg.host}/secure/app:1", f"{registry.host}/x/y:1", env=env)
    assert no_ca.exit_code == 1
    assert "not trusted" in no_ca.stderr and "--ca-file" in no_ca.stderr
    (tmp_path / "config.json").write_text("{}")
    no_creds = run("copy", "--ca-file", str(reg.tls.ca_pem), f"{reg.host}/secure/app:1",
                   f"{registry.host}/x/y:1", env=env)
    assert no_creds.exit_code == 1 and "credentials" in no_creds.stderr
    assert no_creds.stderr.count("\n") == 1  # one line, no traceback
    (tmp_path / "config.json").write_text(json.dumps({"auths": {reg.host: {
        "auth": base64.b64encode(b"airgap:wrong").decode()}}}))
    wrong = run("copy", "--ca-file", str(reg.tls.ca_pem), f"{reg.host}/secure/app:1",
                f"{registry.host}/x/y:1", env=env)
    assert wrong.exit_code == 1 and "access denied (401" in wrong.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{reg}/nope/missing:1", "oci:{tmp}/out"], 1, "not found"),
        (["{reg}/Bad/Upper:1", "oci:{tmp}/out"], 2, "invalid image reference"),
        (["oci:{tmp}/does-not-exist", "{reg}/x/y:1"], 2, "is not a directory"),
        (["127.0.0.1:1/closed/port:1", "oci:{tmp}/out"], 1, "failed after"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(registry: Registry, tmp_path: Path, args: list[str], code: int,
                                           message: str) -> None:
    argv = [a.format(reg=registry.host, tmp=tmp_path) for a in args]
    result = run("copy", *argv)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
