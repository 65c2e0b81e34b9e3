"""Where `load` records airgap's own image, and how `webhook manifests` finds it: a trust directory's
airgap-image.json, a site's airgapImage (the most recent load that carried one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airgap.bundle.selfcarry import TRUST_FILE, read_record, recorded_image, trust_record
from airgap.errors import ConfigError
from airgap.verification.scopes import SiteBundle, SiteState

D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
PINNED = f"127.0.0.1:31999/tools/airgap@{D1}"


def test_a_trust_directory_records_the_pinned_image(tmp_path: Path) -> None:
    data = trust_record("registry.example.com/tools/airgap:0.1.0", PINNED, "kit", "1.0.0")
    assert json.loads(data) == {"schema": "airgap.dev/airgap-image/v1", "image": PINNED, "bundle": "kit",
                                "upstream": "registry.example.com/tools/airgap:0.1.0", "version": "1.0.0"}
    assert recorded_image(tmp_path) is None
    (tmp_path / TRUST_FILE).write_bytes(data)
    assert recorded_image(tmp_path) == PINNED


@pytest.mark.parametrize(("doc", "message"), [
    ({"schema": "airgap.dev/airgap-image/v2"}, "not an airgap image record"),
    ({"image": "127.0.0.1:31999/tools/airgap:0.1.0"}, "expected an image ref pinned by digest"),
    ({"image": "not a ref@" + D1}, "expected an image ref pinned by digest"),
    ({"image": 5}, "expected an image ref pinned by digest"),
    ({"extra": 1}, "not an airgap image record"),
])
def test_a_malformed_record_is_refused(doc: dict[str, object], message: str) -> None:
    record = json.loads(trust_record("x/y:1", PINNED, "kit", "1")) | doc
    with pytest.raises(ConfigError, match=f"^trust/{TRUST_FILE}: .*{message}"):
        read_record(json.dumps(record).encode(), f"trust/{TRUST_FILE}")


def bundle(name: str, image: str | None) -> SiteBundle:
    return SiteBundle(name=name, version="1", digest=D2, signer=None, loaded_at="2025-01-01T00:00:00Z",
                      registry="127.0.0.1:31999", trust_dir=f"bundles/{name}-222222222222", airgap_image=image)


def test_a_site_records_it_per_bundle_and_the_newest_wins(tmp_path: Path) -> None:
    newer = f"127.0.0.1:31999/tools/airgap@{D2}"
    state = SiteState([bundle("old-kit", PINNED), bundle("apps", None), bundle("new-kit", newer), bundle("x", None)])
    (tmp_path / "site.json").write_bytes(state.to_bytes())
    assert recorded_image(tmp_path) == newer
    loaded = SiteState.load(tmp_path)
    assert loaded.bundles == state.bundles
    assert "airgapImage" not in json.loads(state.to_bytes())["bundles"][1]  # only where a bundle carried one
    (tmp_path / "site.json").write_bytes(SiteState([bundle("apps", None)]).to_bytes())
    assert recorded_image(tmp_path) is None


def test_a_site_state_with_a_bad_airgap_image_is_refused(tmp_path: Path) -> None:
    doc = json.loads(SiteState([bundle("kit", PINNED)]).to_bytes())
    doc["bundles"][0]["airgapImage"] = "127.0.0.1:31999/tools/airgap:latest"
    with pytest.raises(ConfigError, match=r"bundles\[0\].airgapImage: missing or malformed"):
        SiteState.from_bytes(json.dumps(doc).encode(), "site.json")
    doc["bundles"][0]["airgapImages"] = PINNED
    with pytest.raises(ConfigError, match="expected exactly the fields"):
        SiteState.from_bytes(json.dumps(doc).encode(), "site.json")
