"""The site inventory file: canonical bytes, strict parsing with errors naming the field, the detached signature
`pack --delta-key` checks, and what a delta packs against."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.bundles import make_signer

from airgap.errors import IntegrityError, VerificationError
from airgap.site.inventory import BlobRecord, Inventory, _created, read_inventory, write_inventory

A, B, M = ("sha256:" + hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"m"))


def sample() -> Inventory:
    return Inventory(registry="127.0.0.1:31999", created="2026-11-29T12:00:00Z",
                     repositories={"team/app": {"1.0": M}}, blobs={A: BlobRecord(10, ("team/app",)),
                                                                   B: BlobRecord(0, ("team/app", "team/other"))},
                     manifests=(M,), bundles=(("demo", "1.0.0"),))


def test_round_trip_digest_and_delta_base() -> None:
    inv = sample()
    data = inv.to_bytes()
    assert Inventory.from_bytes(data) == inv
    assert data == json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")).encode()
    doc = json.loads(data)
    assert doc["apiVersion"] == "airgap.dev/v1alpha1" and doc["kind"] == "SiteInventory"
    base = inv.delta_base()
    assert base.kind == "inventory" and base.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert dict(base.blobs) == {A: 10, B: 0}


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(kind="Bundle"), "not a site inventory"),
    (lambda d: d.update(extra=1), "unknown field 'extra'"),
    (lambda d: d.pop("blobs"), "required field 'blobs' missing"),
    (lambda d: d.update(created="yesterday"), "created: expected an RFC 3339"),
    (lambda d: d["blobs"].update({"md5:x": {"size": 1, "repos": ["r"]}}), "expected a sha256 digest"),
    (lambda d: d["blobs"][A].update(size=-1), r"size: expected a non-negative integer"),
    (lambda d: d["blobs"][A].update(repos=[]), "repos: expected a non-empty list"),
    (lambda d: d["manifests"].append("sha256:zz"), "manifests: expected a list of sha256 digests"),
    (lambda d: d["bundles"].append({"name": "x"}), r"bundles\[1\]: expected an object with name and version"),
    (lambda d: d["repositories"]["team/app"].update({"2.0": "latest"}), "expected tag -> sha256 digest"),
    (lambda d: d["blobs"][B].update(repos=["team/other", "team/app"]), "repos: not sorted"),
    (lambda d: d["manifests"].append(M), "manifests: not sorted, or listed twice"),
])
def test_strict(change: Callable[[dict[str, Any]], None], message: str) -> None:
    doc = json.loads(sample().to_bytes())
    change(doc)
    with pytest.raises(IntegrityError, match=message):
        Inventory.from_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def test_not_json_is_one_line() -> None:
    with pytest.raises(IntegrityError, match="inventory: not valid JSON"):
        Inventory.from_bytes(b"{nope")


def test_signed_file(tmp_path: Path) -> None:
    signer, other = make_signer(), make_signer()
    path = tmp_path / "inventory.json"
    assert write_inventory(sample(), path, signer=signer) == [str(path), f"{path}.sig"]
    loaded = read_inventory(path, key=signer.public_key)
    assert loaded.inventory == sample() and loaded.signed_by and loaded.digest == sample().digest
    with pytest.raises(VerificationError, match="inventory inventory.json.sig does not verify with the given key"):
        read_inventory(path, key=other.public_key)
    path.write_bytes(path.read_bytes().replace(b'"size":10', b'"size":11'))
    with pytest.raises(VerificationError, match="does not verify"):
        read_inventory(path, key=signer.public_key)
    write_inventory(sample(), path)  # unsigned: a stale signature is removed
    assert not Path(f"{path}.sig").exists() and read_inventory(path).signed_by is None
    with pytest.raises(VerificationError, match=r"is not signed \(no inventory.json.sig\)"):
        read_inventory(path, key=signer.public_key)


def test_created_honours_source_date_epoch() -> None:
    assert _created({"SOURCE_DATE_EPOCH": "1700000000"}) == "2023-11-14T22:13:20Z"
    assert _created({}).endswith("Z")
