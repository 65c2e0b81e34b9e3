"""Delta bundles: ship only what the site lacks, and refuse to load where the site does not hold the rest.

Pack side: a :class:`DeltaBase` says which blobs (digest and size) the site holds, from a site inventory (what its
registry held when ``airgap site inventory`` ran) or from an older bundle (the blobs it carried are assumed
loaded). :func:`omit` picks the image blobs (layers and configs) to leave out; a manifest, and every blob of a
signature, attestation or referrer, is always carried, so everything that is verified travels in the bundle. The
bundle manifest still pins every omitted blob (digest and size, see :class:`airgap.bundle.manifest.Delta`) and is
signed like any other: the description of the delta cannot be changed without breaking the signature.

Load side: :func:`check_site` runs before anything is pushed. Every omitted blob must be in the registry, with its
pinned size, in each repository that needs it, or in another repository of the registry it can be mounted from
(another target of this bundle first, then the catalog). Whatever is missing is listed in one error (digest,
size, image) and nothing is pushed; what must be mounted is mounted by :func:`mount_omitted` after the blob pass
and before any manifest (a registry refuses a manifest whose blobs it lacks).

The site's registry is not trusted to hold the right bytes under a digest any more than for a full load: the
registry addresses blobs by digest, so a blob it serves under a digest either is that content or is corrupt storage,
which ``airgap verify`` and the runtime catch when they pull it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airgap.bundle.manifest import DeltaBaseError
from airgap.errors import BundleError, RegistryError

if TYPE_CHECKING:
    from airgap.bundle.manifest import BundleManifest
    from airgap.bundle.pack_collect import Collected
    from airgap.bundle.placement import Placed
    from airgap.keys.public import PublicKey
    from airgap.oci.registry import RegistryClient

__all__ = ["DeltaBase", "DeltaBaseError", "Mount", "base_from_bundle", "check_attachments_carried", "check_site",
           "mount_omitted", "omit"]

_OCTET = "application/octet-stream"
MAX_LISTED = 20  # missing blobs named in the one-line error


@dataclass(frozen=True)
class DeltaBase:
    """What a delta is packed against: ``kind`` ``inventory`` (``digest`` = sha256 of the inventory file) or
    ``bundle`` (``digest`` = the older bundle's digest), and the blobs the site holds (digest -> size)."""

    kind: str
    digest: str
    blobs: Mapping[str, int]


def base_from_bundle(paths: str | Sequence[str], *, key: PublicKey | Sequence[PublicKey] | None = None
                     ) -> DeltaBase:
    """The blobs an older bundle carried (and those it left out as a delta: the site had them too). Only its
    manifest is read. With ``key``, its signature must verify; without, it is the packer's own file."""
    from airgap.bundle.inspect import read_bundle

    reader = read_bundle(paths, key=key, allow_unsigned=key is None)
    return DeltaBase("bundle", reader.digest, {**reader.manifest.blobs, **reader.manifest.omitted})


def omit(images: Sequence[Collected], base: DeltaBase) -> dict[str, int]:
    """The image blobs (layers, configs) of ``images`` that ``base`` holds with the same size: digest -> size.
    Never a manifest, and never a blob of an attachment (signatures, attestations, SBOMs, referrers)."""
    attached: set[str] = set()
    manifests: set[str] = set()
    for image in images:
        for m in (*image.extra_manifests, *(a.manifest for a in image.attachments)):
            manifests.add(m.digest)
            attached.update(d.digest for d in m.blobs)
        manifests.update(m.digest for m in image.manifests)
    out: dict[str, int] = {}
    for image in images:
        for m in image.manifests:
            for desc in m.blobs:
                digest = desc.digest
                if digest in attached or digest in manifests:
                    continue
                if base.blobs.get(digest) == desc.size:
                    out[digest] = desc.size
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Mount:
    repo: str
    digest: str
    size: int
    source: str  # the repository of the same registry that holds it


def _needs(manifest: BundleManifest, placed: Sequence[Placed]) -> dict[str, dict[str, list[str]]]:
    """omitted digest -> repository -> the images (upstream refs) that need it there."""
    omitted = manifest.omitted
    needs: dict[str, dict[str, list[str]]] = {}
    for p in placed:
        for digest in p.entry.blobs:
            if digest in omitted:
                needs.setdefault(digest, {}).setdefault(p.repo, []).append(p.entry.upstream)
    return needs


def _human(n: int) -> str:
    from airgap.progress import human_bytes

    return human_bytes(n)


def check_site(client: RegistryClient, manifest: BundleManifest, placed: Sequence[Placed], *,
               jobs: int = 4) -> list[Mount]:
    """Before a delta bundle pushes anything: every omitted blob is in place or mountable (see the module
    docstring). Returns the mounts to make; raises :class:`DeltaBaseError` listing every blob the registry lacks."""
    if manifest.delta is None or not manifest.omitted or not placed:
        return []
    host = placed[0].host
    omitted = manifest.omitted
    needs = _needs(manifest, placed)
    pairs = [(repo, digest) for digest, repos in needs.items() for repo in repos]
    sizes = _heads(client, host, pairs, jobs)
    holders: dict[str, str] = {}  # digest -> a repository holding it with the pinned size
    for (repo, digest), size in zip(pairs, sizes, strict=True):
        if size == omitted[digest]:
            holders.setdefault(digest, repo)
    lacking = [(repo, digest) for (repo, digest), size in zip(pairs, sizes, strict=True) if size != omitted[digest]]
    unfound = sorted({d for _, d in lacking if d not in holders})
    if unfound:
        holders.update(_search_catalog(client, host, unfound, {d: set(needs[d]) for d in unfound}, omitted, jobs))
    missing = sorted({d for _, d in lacking if d not in holders})
    if missing:
        shown = []
        for digest in missing[:MAX_LISTED]:
            images = sorted({ref for refs_ in needs[digest].values() for ref in refs_})
            shown.append(f"{digest} ({_human(omitted[digest])}, {', '.join(images)})")
        more = f"; and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        delta = manifest.delta
        raise DeltaBaseError(
            f"delta bundle {manifest.name} {manifest.version} (against {delta.kind} {delta.base[:19]}...) leaves "
            f"out {len(missing)} blob(s) that {host} does not hold: {'; '.join(shown)}{more}. Nothing was pushed: "
            "load what the delta was made against first, or a full bundle")
    return [Mount(repo, digest, omitted[digest], holders[digest]) for repo, digest in lacking]


def _heads(client: RegistryClient, host: str, pairs: list[tuple[str, str]], jobs: int) -> list[int | None]:
    if not pairs:
        return []

    def head(pair: tuple[str, str]) -> int | None:
        return client.blob_size(host, pair[0], pair[1])

    with ThreadPoolExecutor(max_workers=max(1, min(2 * jobs, len(pairs)))) as pool:
        return list(pool.map(head, pairs))


def _search_catalog(client: RegistryClient, host: str, digests: list[str], checked: Mapping[str, set[str]],
                    sizes: Mapping[str, int], jobs: int) -> dict[str, str]:
    """digest -> a repository of the catalog holding it with its pinned size (for those found)."""
    try:
        repos = client.list_repositories(host)
    except RegistryError:
        return {}  # no catalog (or no right to it): nothing to mount from but the bundle's own repositories

    def search(digest: str) -> tuple[str, str | None]:
        for repo in repos:
            if repo not in checked[digest] and client.blob_size(host, repo, digest) == sizes[digest]:
                return digest, repo
        return digest, None

    with ThreadPoolExecutor(max_workers=max(1, min(2 * jobs, len(digests)))) as pool:
        return {d: repo for d, repo in pool.map(search, digests) if repo is not None}


def mount_omitted(client: RegistryClient, host: str, mounts: Sequence[Mount], *, jobs: int = 4) -> int:
    """Mount each omitted blob into the repository that needs it; returns how many were mounted."""
    from airgap.oci.manifest import Descriptor

    if not mounts:
        return 0

    def mount(m: Mount) -> None:
        def refused() -> Iterator[bytes]:
            raise DeltaBaseError(f"{host} refused to mount {m.digest} from {m.source} into {m.repo}, and the delta "
                                 "bundle does not carry it")

        client.push_blob(host, m.repo, Descriptor(_OCTET, m.digest, m.size), refused, mount_from=m.source,
                         check_exists=False)

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(mounts)))) as pool:
        list(pool.map(mount, mounts))
    return len(mounts)


def check_attachments_carried(manifest: BundleManifest, attachment: str, blobs: Sequence[str]) -> None:
    """A delta must carry every blob of a signature, attestation or referrer (``blobs`` of the attachment
    manifest ``attachment`` and its children)."""
    for digest in blobs:
        if digest in manifest.omitted:
            raise BundleError(f"bundle leaves out {digest}, a blob of attachment {attachment}: a delta carries every "
                              "signature, attestation and referrer whole")
