"""The site inventory: what a disconnected site's registry holds, written at the site and carried back to the
connected side, where ``airgap pack --delta inventory.json`` leaves out every image blob the site already has.

Wire shape (canonical JSON: sorted keys, no whitespace; ``apiVersion`` versions it)::

    {"apiVersion":"airgap.dev/v1alpha1","kind":"SiteInventory","registry":HOST,"created":RFC3339,
     "repositories":{"team/app":{"1.0":"sha256:.."}},
     "blobs":{"sha256:..":{"size":N,"repos":["team/app",...]}},"manifests":["sha256:.."],
     "bundles":[{"name":NAME,"version":VERSION}]}

``repositories`` is every repository of the catalog with its tags (and the digest each names); ``manifests`` every
manifest reachable from a tag (index children included); ``blobs`` every config and layer those manifests name
that the registry answered a HEAD for with the listed size, with the repositories holding it; ``bundles`` the
bundles ``airgap load`` recorded (the translation-map artifacts in ``airgap/maps``, by their
``dev.airgap.bundle.name``/``version`` annotations). Those map repositories are airgap's bookkeeping: listed, but
their blobs and manifests are not images and are left out.

The inventory's digest (sha256 of the file) names the base of a delta packed against it. With a key it is signed
(``inventory.json.sig``, base64, the detached scheme of bundle signatures: ``cosign verify-blob`` checks it), and
``pack --delta-key`` refuses an inventory whose signature does not verify: a forged inventory could only make a
delta leave out blobs the site lacks (which ``load`` then refuses), never ship unverified content.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airgap.errors import ConfigError, Error, IntegrityError, VerificationError
from airgap.fileio import read_capped

if TYPE_CHECKING:
    from airgap.bundle.delta import DeltaBase
    from airgap.keys.private import Signer
    from airgap.keys.public import PublicKey
    from airgap.oci.manifest import Manifest
    from airgap.oci.registry import RegistryClient

API_VERSION = "airgap.dev/v1alpha1"
KIND = "SiteInventory"
MAX_INVENTORY_BYTES = 256 * 1024 * 1024
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_RFC3339 = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
_FIELDS = ("apiVersion", "kind", "registry", "created", "repositories", "blobs", "manifests", "bundles")


@dataclass(frozen=True)
class BlobRecord:
    size: int
    repos: tuple[str, ...]


@dataclass(frozen=True)
class Inventory:
    registry: str
    created: str  # RFC 3339, UTC, seconds
    repositories: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # repo -> tag -> digest
    blobs: Mapping[str, BlobRecord] = field(default_factory=dict)
    manifests: tuple[str, ...] = ()
    bundles: tuple[tuple[str, str], ...] = ()  # (name, version)

    def to_json(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION, "kind": KIND, "registry": self.registry, "created": self.created,
            "repositories": {r: dict(t) for r, t in self.repositories.items()},
            "blobs": {d: {"size": b.size, "repos": list(b.repos)} for d, b in self.blobs.items()},
            "manifests": list(self.manifests),
            "bundles": [{"name": n, "version": v} for n, v in self.bundles],
        }

    def to_bytes(self) -> bytes:
        from airgap.bundle.manifest import canonical_json

        data = canonical_json(self.to_json())
        Inventory.from_bytes(data)
        return data

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.to_bytes()).hexdigest()

    def delta_base(self) -> DeltaBase:
        """What ``pack --delta`` needs: the blobs the site holds (digest -> size) and this inventory's digest."""
        from airgap.bundle.delta import DeltaBase

        return DeltaBase("inventory", self.digest, {d: b.size for d, b in self.blobs.items()})

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "inventory") -> Inventory:
        """Parse and validate strictly (canonical form only); every error is one line naming ``what``."""
        from airgap.bundle.manifest import canonical_json
        from airgap.jsondoc import check_document, json_object

        doc = json_object(data, what, IntegrityError)

        def err(msg: str) -> IntegrityError:
            return IntegrityError(f"{what}: {msg}")

        check_document(doc, _FIELDS, API_VERSION, KIND, "site inventory", err)
        if not isinstance(doc["registry"], str) or not doc["registry"]:
            raise err("registry: expected a non-empty string")
        if not isinstance(doc["created"], str) or not _RFC3339.match(doc["created"]):
            raise err("created: expected an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)")
        repos: dict[str, dict[str, str]] = {}
        if not isinstance(doc["repositories"], dict):
            raise err("repositories: expected an object")
        for repo, tags in doc["repositories"].items():
            if not isinstance(tags, dict) or not all(isinstance(t, str) and isinstance(d, str) and _SHA256.match(d)
                                                     for t, d in tags.items()):
                raise err(f"repositories[{repo!r}]: expected tag -> sha256 digest")
            repos[repo] = dict(tags)
        blobs: dict[str, BlobRecord] = {}
        if not isinstance(doc["blobs"], dict):
            raise err("blobs: expected an object")
        for digest, record in doc["blobs"].items():
            if not _SHA256.match(digest):
                raise err(f"blobs[{digest!r}]: expected a sha256 digest")
            if not isinstance(record, dict) or set(record) != {"size", "repos"}:
                raise err(f"blobs[{digest}]: expected an object with size and repos")
            size, holders = record["size"], record["repos"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise err(f"blobs[{digest}].size: expected a non-negative integer")
            if not isinstance(holders, list) or not holders or not all(isinstance(r, str) and r for r in holders):
                raise err(f"blobs[{digest}].repos: expected a non-empty list of repositories")
            blobs[digest] = BlobRecord(size, tuple(holders))
        manifests = doc["manifests"]
        if not isinstance(manifests, list) or not all(isinstance(d, str) and _SHA256.match(d) for d in manifests):
            raise err("manifests: expected a list of sha256 digests")
        bundles = []
        if not isinstance(doc["bundles"], list):
            raise err("bundles: expected a list")
        for i, b in enumerate(doc["bundles"]):
            if not isinstance(b, dict) or set(b) != {"name", "version"} or not all(
                    isinstance(x, str) for x in b.values()):
                raise err(f"bundles[{i}]: expected an object with name and version")
            bundles.append((b["name"], b["version"]))
        inventory = cls(doc["registry"], doc["created"], repos, blobs, tuple(manifests), tuple(bundles))
        lists = [("manifests", list(manifests)), ("bundles", bundles)]
        lists += [(f"blobs[{d}].repos", list(b.repos)) for d, b in blobs.items()]
        for where, items in lists:
            if items != sorted(set(items)):
                raise err(f"{where}: not sorted, or listed twice (not in canonical form)")
        if canonical_json(inventory.to_json()) != data:
            raise err("not in canonical form (sorted keys, sorted lists, no whitespace, UTF-8)")
        return inventory


# ---- taking the inventory -------------------------------------------------------------------------


def _created(env: Mapping[str, str]) -> str:
    """Now (UTC, seconds), or ``SOURCE_DATE_EPOCH`` when set (reproducible output, as for bundles)."""
    epoch = env.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        if not epoch.isdigit():
            raise ConfigError(f"SOURCE_DATE_EPOCH: expected a non-negative integer, got {epoch!r}")
        when = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
    else:
        when = datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_map_repo(repo: str) -> bool:
    from airgap.bundle.load import MAP_REPO

    return repo == MAP_REPO or repo.endswith(f"/{MAP_REPO}")


@dataclass
class _Repo:
    tags: dict[str, str] = field(default_factory=dict)
    manifests: set[str] = field(default_factory=set)
    blobs: dict[str, int] = field(default_factory=dict)  # as the manifests list them
    bundles: set[tuple[str, str]] = field(default_factory=set)


def _walk(client: RegistryClient, host: str, repo: str) -> _Repo:
    """Every tag of ``repo``, the manifests reachable from them and the blobs those name (as listed)."""
    from airgap.bundle.load import MAP_ARTIFACT_TYPE

    out = _Repo()
    seen: dict[str, Manifest] = {}
    for tag in client.list_tags(host, repo):
        root = client.get_manifest(host, repo, tag)
        out.tags[tag] = root.digest
        if _is_map_repo(repo):
            ann = root.annotations
            if root.artifact_type == MAP_ARTIFACT_TYPE and ann.get("dev.airgap.bundle.name"):
                out.bundles.add((ann["dev.airgap.bundle.name"], ann.get("dev.airgap.bundle.version", "")))
            continue
        todo = [root]
        count = 0
        while todo:
            count += 1
            if count > 10_000:
                raise IntegrityError(f"{host}/{repo}:{tag}: more than 10,000 manifests under one tag")
            m = todo.pop()
            if m.digest in seen:
                continue
            seen[m.digest] = m
            out.manifests.add(m.digest)
            for desc in m.blobs:
                out.blobs.setdefault(desc.digest, desc.size)
            todo += [client.get_manifest(host, repo, c.digest, cached=True) for c in m.manifests
                     if c.digest not in seen]
    return out


def take_inventory(client: RegistryClient, registry: str, *, jobs: int = 4,
                   env: Mapping[str, str] | None = None) -> Inventory:
    """Walk the registry ``registry`` (``HOST[:PORT]``): the catalog, every tag, the manifests they reach, and a
    HEAD for every (repository, blob) pair so only blobs really there, with their listed size, are recorded."""
    from airgap import refs

    if "/" in registry.strip("/"):
        raise ConfigError(f"--registry takes a registry (HOST[:PORT]), not a repository path: {registry!r}")
    host = refs.api_host(registry.strip("/"))
    created = _created(os.environ if env is None else env)
    repos = client.list_repositories(host)
    jobs = max(1, jobs)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs * 2, len(repos) or 1))) as pool:
        walked = dict(zip(repos, pool.map(lambda r: _walk(client, host, r), repos), strict=True))
    pairs = [(repo, digest, size) for repo, w in walked.items() for digest, size in w.blobs.items()]

    def head(pair: tuple[str, str, int]) -> bool:
        return client.blob_size(host, pair[0], pair[1]) == pair[2]

    with ThreadPoolExecutor(max_workers=max(1, min(jobs * 2, len(pairs) or 1))) as pool:
        present = [p for p, there in zip(pairs, pool.map(head, pairs), strict=True) if there]
    holders: dict[str, tuple[int, list[str]]] = {}
    for repo, digest, size in present:
        holders.setdefault(digest, (size, []))[1].append(repo)
    return Inventory(
        registry=registry.strip("/"), created=created,
        repositories={r: dict(sorted(w.tags.items())) for r, w in sorted(walked.items()) if w.tags},
        blobs={d: BlobRecord(s, tuple(sorted(rs))) for d, (s, rs) in sorted(holders.items())},
        manifests=tuple(sorted({d for w in walked.values() for d in w.manifests})),
        bundles=tuple(sorted({b for w in walked.values() for b in w.bundles})),
    )


# ---- files ----------------------------------------------------------------------------------------


def write_inventory(inventory: Inventory, path: str | os.PathLike[str], *, signer: Signer | None = None
                    ) -> list[str]:
    """Write the inventory atomically (and ``PATH.sig`` with a signer; a stale one is removed without)."""
    from airgap.bundle.detached import sign_detached
    from airgap.fileio import write_atomic

    target = Path(path)
    data = inventory.to_bytes()
    sig = Path(f"{target}.sig")
    if signer is None:
        sig.unlink(missing_ok=True)
    write_atomic(target, data, mode=0o644)
    if signer is None:
        return [str(target)]
    write_atomic(sig, sign_detached(signer, data), mode=0o644)
    return [str(target), str(sig)]


@dataclass(frozen=True)
class LoadedInventory:
    inventory: Inventory
    digest: str
    signed_by: str | None


def read_inventory(path: str | os.PathLike[str], *, key: PublicKey | Sequence[PublicKey] | None = None
                   ) -> LoadedInventory:
    """Read and check an inventory; with ``key``, ``PATH.sig`` must verify with it (fail closed)."""
    from airgap.bundle.detached import verify_detached

    target = Path(path)
    data = read_capped(target, MAX_INVENTORY_BYTES, "inventory", too_large=IntegrityError)
    signed_by = None
    keys = [] if key is None else list(key) if isinstance(key, Sequence) else [key]
    if keys:
        sig = Path(f"{target}.sig")
        try:
            signature = sig.read_bytes() if sig.is_file() else None
        except OSError as exc:
            raise ConfigError(f"cannot read {sig}: {exc.strerror or exc}") from None

        def fail(message: str) -> Error:
            return VerificationError(f"inventory {message}")

        signed_by = verify_detached(keys, signature, data, target.name, error=fail)
    inventory = Inventory.from_bytes(data, target.name)
    return LoadedInventory(inventory, "sha256:" + hashlib.sha256(data).hexdigest(), signed_by)
