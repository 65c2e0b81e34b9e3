"""``airgap load``: push a bundle into the local registry in one streaming pass, translating refs
(where each image goes: :mod:`~airgap.bundle.placement`).

Order, so that a load killed at any point leaves no tag pointing at missing or unverified content and a
re-run completes: the bundle manifest is trusted first (key, pinned digest, or an explicit opt-out, see
:class:`~airgap.bundle.reader.BundleReader`); blobs are read in tar order, each hashed to its digest before it
can be pushed (spooled to a temp file while hashing, then uploaded concurrently, ``-j``: see
:mod:`~airgap.bundle.load_blobs`), skipping what the registry already has; then manifests by digest,
children before indexes; then attachments (``.sig/.att/.sbom`` tags and referrers, re-homed into the
translated repository and the translated signature repository); then the image tags; last the translation
map artifact (``airgap/maps:<name>-<version>``).

Re-loading a loaded bundle is fast: when every final tag and the map artifact already resolve to what this
bundle would write, nothing is read beyond the trusted manifest and nothing is pushed. The map artifact is
pushed last, so its presence means everything before it completed.

A bundle that carries airgap's own image (:mod:`~airgap.bundle.selfcarry`) says where it landed, pinned by digest:
in the summary (``airgap_image``) and in the trust directory (``airgap-image.json``, for ``--trust-out`` and the
site), where ``airgap webhook manifests`` finds its default ``--image``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING, Any

from airgap import refs
from airgap.bundle.delta import check_attachments_carried, check_site, mount_omitted
from airgap.bundle.load_blobs import stream_blobs
from airgap.bundle.placement import Placed, plan_targets, translation_map
from airgap.bundle.selfcarry import TRUST_FILE, loaded_image, trust_record
from airgap.errors import BundleError, ConflictError, Error, IntegrityError
from airgap.oci import mediatypes as mt
from airgap.oci.deadline import carry  # pool workers run under the caller's deadline
from airgap.oci.manifest import Manifest
from airgap.progress import Progress
from airgap.refs import translate

if TYPE_CHECKING:
    from airgap.bundle.manifest import BundleManifest
    from airgap.keys.public import PublicKey
    from airgap.oci.registry import RegistryClient


CHUNK = 1024 * 1024


MAP_REPO = "airgap/maps"


MAP_ARTIFACT_TYPE = "application/vnd.airgap.translation-map.v1+json"


_EMPTY = b"{}"


@dataclass
class LoadSummary:
    registry: str
    bundle_digest: str
    signed_by: str | None
    images: list[dict[str, Any]]
    name: str = ""
    version: str = ""
    blobs_pushed: int = 0
    bytes_pushed: int = 0
    manifests_pushed: int = 0
    already_loaded: bool = False
    map_ref: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # with --force: what another bundle (or nobody) held
    delta: dict[str, Any] | None = None  # a delta bundle: kind, base, omitted blobs/bytes, mounts made
    airgap_image: str | None = None  # airgap's own image as loaded, pinned: HOST/REPO@sha256:...
    # The bundle's trust directory (trust/ entries and map.json), for a site to keep; not part of the JSON.
    trust_files: dict[str, bytes] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "trust_files"}


def map_artifact(tmap_bytes: bytes, name: str, version: str, created: int) -> tuple[Manifest, bytes]:
    """The OCI artifact holding map.json: empty config, one layer; deterministic bytes."""
    import json

    from airgap import digest as digests

    doc = {
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": MAP_ARTIFACT_TYPE,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": digests.of_bytes(_EMPTY), "size": len(_EMPTY)},
        "layers": [{"mediaType": "application/json", "digest": digests.of_bytes(tmap_bytes),
                    "size": len(tmap_bytes), "annotations": {"org.opencontainers.image.title": "map.json"}}],
        "annotations": {"dev.airgap.bundle.name": name, "dev.airgap.bundle.version": version,
                        "org.opencontainers.image.created": str(created)},
    }
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return Manifest.from_bytes(data, mt.OCI_MANIFEST), tmap_bytes


def map_tag(name: str, version: str) -> str:
    import re

    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{version}")[:128]
    return tag if re.match(r"[A-Za-z0-9_]", tag) else f"_{tag}"[:128]


def _heads(client: RegistryClient, checks: list[tuple[str, str, str]], jobs: int) -> list[str | None]:
    """The digest each ``(host, repo, tag)`` names now (None: absent), looked up concurrently."""
    def head(item: tuple[str, str, str]) -> str | None:
        desc = client.head_manifest(*item)
        return desc.digest if desc is not None else None

    with ThreadPoolExecutor(max_workers=max(1, min(jobs * 2, len(checks)))) as pool:
        return list(pool.map(carry(head), checks))


def _map_owner(manifest: Manifest) -> tuple[str, str]:
    """(bundle name, version) a map artifact says it records (empty when it says nothing)."""
    ann = manifest.annotations
    return ann.get("dev.airgap.bundle.name", ""), ann.get("dev.airgap.bundle.version", "")


def registry_owners(client: RegistryClient, map_host: str, map_repo: str
                    ) -> dict[tuple[str, str, str], tuple[str, str]]:
    """Who loaded each tag, as the registry's map artifacts (``airgap/maps:*``) record it: ``(repository, tag,
    digest)`` -> (bundle name, version). A tag belongs to the bundle whose map records it with the digest it holds
    (a later ``--force`` load took it over). A map that cannot be read records nothing (and so owns nothing)."""
    from airgap.refs.translation_map import TranslationMap

    owners: dict[tuple[str, str, str], tuple[str, str]] = {}
    for tag in client.list_tags(map_host, map_repo):
        try:
            manifest = client.get_manifest(map_host, map_repo, tag)
            if manifest.artifact_type != MAP_ARTIFACT_TYPE or len(manifest.blobs) < 2:
                continue
            layer = manifest.blobs[1]
            if layer.size > client.limits.max_json_bytes:
                continue
            tmap = TranslationMap.from_json(client.read_blob(map_host, map_repo, layer), f"map {tag}")
        except Error:
            continue
        owner = _map_owner(manifest)
        for entry in tmap.entries:
            if entry.local.tag:
                owners.setdefault((entry.local.repository, entry.local.tag, entry.digest), owner)
    return owners


def check_ownership(client: RegistryClient, name: str, placed: list[Placed], map_host: str, map_repo: str,
                    conflicts: list[tuple[str, str, str]], *, force: bool) -> list[str]:
    """Refuse to replace what another bundle (or nobody airgap knows) put in the registry: ``conflicts`` are the
    ``(repository, tag, digest now)`` that this load would change. A tag loaded by a bundle of the same name
    (an earlier or a rebuilt version) is ours to replace. With ``force`` the takeovers are returned, to be
    reported; without it they are a ConflictError naming them."""
    taken: list[str] = []
    for p in placed:
        for repo in p.repos:
            if repo == map_repo or repo.endswith(f"/{MAP_REPO}"):
                taken.append(f"{p.host}/{repo}: airgap's own translation-map repository")
    if conflicts:
        owners = registry_owners(client, map_host, map_repo)
        for repo, tag, now in conflicts:
            if repo == map_repo:
                owner = _map_owner(client.get_manifest(map_host, map_repo, tag))
            else:
                owner = owners.get((repo, tag, now), ("", ""))
            if owner[0] == name:
                continue
            held = f"bundle {owner[0]} {owner[1]}".rstrip() if owner[0] else "no airgap bundle"
            taken.append(f"{map_host}/{repo}:{tag} (now {now[:19]}..., loaded by {held})")
    if taken and not force:
        shown = "; ".join(taken[:5]) + (f"; and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise ConflictError(f"load would replace what bundle {name} does not own: {shown}. "
                            "Pass --force to replace it anyway")
    return taken


class _Manifests:
    """The bundle's manifests parsed on demand, with media types learnt from index.json and parents."""

    def __init__(self, kept: dict[str, bytes], index_json: bytes, max_bytes: int, max_depth: int) -> None:
        self.kept = kept
        self.max_depth = max_depth
        self.types: dict[str, str] = {}
        self.parsed: dict[str, Manifest] = {}
        index = Manifest.from_bytes(index_json, mt.OCI_INDEX, what="index.json")
        for desc in index.manifests:
            self.types[desc.digest] = desc.media_type

    def get(self, digest: str, media_type: str | None = None) -> Manifest:
        if digest not in self.parsed:
            data = self.kept.get(digest)
            if data is None:
                raise BundleError(f"bundle lists manifest {digest} but it was not among its blobs")
            manifest = Manifest.from_bytes(data, media_type or self.types.get(digest), expected_digest=digest,
                                           what=f"bundle manifest {digest}")
            for child in manifest.manifests:
                self.types.setdefault(child.digest, child.media_type)
            self.parsed[digest] = manifest
        return self.parsed[digest]

    def graph(self, digest: str, media_type: str | None = None, _depth: int = 1) -> list[Manifest]:
        """``digest`` and every child manifest, children first (no deeper than ``Limits.max_index_depth``)."""
        root = self.get(digest, media_type)
        out: list[Manifest] = []
        for child in root.manifests:
            if child.digest in self.kept:
                if _depth >= self.max_depth:
                    raise BundleError(f"bundle manifest {digest}: indexes nested more than {self.max_depth} deep")
                out += [m for m in self.graph(child.digest, child.media_type, _depth + 1) if m not in out]
        return [*out, root]


def push_image(client: RegistryClient, p: Placed, manifests: _Manifests) -> int:
    """Manifests children-first, attachments, then the tags; returns how many manifests were PUT."""
    count = 0
    entry = p.entry

    def put(repo: str, ref: str, m: Manifest) -> None:
        nonlocal count
        desc = client.head_manifest(p.host, repo, ref)
        if desc is None or desc.digest != m.digest:
            client.put_manifest(p.host, repo, ref, m)
            count += 1

    manifests.types.setdefault(entry.digest, entry.media_type)
    for digest in entry.manifests:
        manifests.get(entry.digest)  # learn the children's media types from the root
        put(p.repo, digest, manifests.get(digest))
    for att in entry.attachments:
        graph = manifests.graph(att.digest)
        top = graph[-1]
        for repo in p.repos:
            for m in graph:
                if repo != p.repo:
                    for blob in m.blobs:  # the signature repository: link the blobs pushed to the image repo
                        client.push_blob(p.host, repo, blob, _unreachable, mount_from=p.repo)
                if m is not top:
                    put(repo, m.digest, m)
            if att.tag:
                merged = _merged_signatures(client, p.host, repo, att.tag, top)
                put(repo, att.tag, merged or top)
            elif top.subject is not None:
                client.add_referrer(p.host, repo, top)
                count += 1
            else:
                put(repo, top.digest, top)
    root = manifests.get(entry.digest)
    for local in p.locals:
        put(local.repository, local.tag or root.digest, root)
    return count


def pushed_line(p: Placed, manifest: BundleManifest) -> str:
    """``pushed REF@DIGEST (N blobs, X MB)``: the line printed when an image's tags are in place (as crane and
    skopeo print one per image). N and X are the image's blobs, pushed now or already there."""
    from airgap.progress import human_bytes

    sizes = [manifest.blobs.get(d, manifest.omitted.get(d, 0)) for d in p.entry.blobs]
    ref = str(p.locals[-1])
    where = ref if "@" in ref else f"{ref}@{p.entry.digest}"
    return f"pushed {where} ({len(sizes)} blobs, {human_bytes(sum(sizes))})"


def _merged_signatures(client: RegistryClient, host: str, repo: str, tag: str, ours: Manifest) -> Manifest | None:
    """When ``tag`` (a cosign ``.sig``/``.att`` tag) already holds another signature manifest (another bundle's
    signatures of the same digest), the manifest holding its layers and then ours not already there, as cosign
    appends a signature: loading never drops what another signer attached. None when there is nothing to merge."""
    from airgap.signing.attach import push_bytes, signature_manifest

    if not tag.endswith((".sig", ".att")):
        return None
    desc = client.head_manifest(host, repo, tag)
    if desc is None or desc.digest == ours.digest:
        return None
    existing = client.get_manifest(host, repo, tag)
    if existing.is_index or existing.media_type not in mt.IMAGE_MANIFESTS:
        return None
    have = {(d.digest, tuple(sorted(d.annotations.items()))) for d in existing.blobs[1:]}
    new = [d for d in ours.blobs[1:] if (d.digest, tuple(sorted(d.annotations.items()))) not in have]
    if not new:
        return existing
    data, config = signature_manifest([*existing.blobs[1:], *new])
    push_bytes(client, host, repo, mt.OCI_CONFIG, config)
    return Manifest.from_bytes(data, mt.OCI_MANIFEST)


def _bytes_opener(data: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter([data])


def _unreachable() -> Iterator[bytes]:
    raise IntegrityError("blob to mount is missing from the image repository")


def _drain(source: IO[bytes]) -> None:
    """Consume the rest of a pipe, so a producer (``pack -o - |``) is not killed by SIGPIPE. Files (one, or the
    parts of a split bundle) are left unread: nothing upstream waits for them."""
    from airgap.bundle.source import PartsStream

    if isinstance(source, PartsStream):
        return
    try:
        if source.seekable():
            return
    except (AttributeError, OSError, ValueError):
        pass
    while source.read(CHUNK):
        pass


def load(source: IO[bytes], registry: str, *, translate_mode: str = "zarf", rules: Sequence[str] = (),
         key: PublicKey | Sequence[PublicKey] | None = None, bundle_digest: str | None = None,
         allow_unsigned: bool = False, client: RegistryClient | None = None, jobs: int = 4,
         map_out: str | None = None, trust_out: str | None = None, progress: bool | None = None,
         force: bool = False) -> LoadSummary:
    """Load the bundle read from ``source`` into ``registry`` (``HOST[:PORT][/PREFIX]``); see the module doc.

    A tag another bundle loaded (or that no airgap bundle loaded), and anything in ``airgap/maps``, is refused
    before anything is pushed unless ``force`` (then :attr:`LoadSummary.replaced` names what was taken over);
    a tag of a bundle with the same name (an upgrade, a rebuild) is replaced."""
    from airgap.bundle.reader import BundleReader
    from airgap.bundle.source import check_bundle_digest
    from airgap.oci.registry import RegistryClient

    started = time.monotonic()
    client = client or RegistryClient()
    target = translate._check_target(registry.rstrip("/"))
    prefix_rules = translate.PrefixRules.parse(rules) if rules else None
    reader = BundleReader(source, key=key, bundle_digest=bundle_digest, allow_unsigned=allow_unsigned,
                          limits=client.limits)
    check_bundle_digest(source, reader.digest)
    manifest = reader.manifest
    placed = plan_targets(manifest, target, translate_mode, prefix_rules)
    tmap = translation_map(placed)
    tmap_bytes = tmap.to_json()
    map_host = refs.api_host(target.split("/", 1)[0])
    map_repo = f"{target.split('/', 1)[1]}/{MAP_REPO}" if "/" in target else MAP_REPO
    tag = map_tag(manifest.name, manifest.version)
    map_manifest, map_blob = map_artifact(tmap_bytes, manifest.name, manifest.version, manifest.created)
    extra = {"map.json": tmap_bytes}
    own = loaded_image(manifest, placed)
    if own is not None:
        extra[TRUST_FILE] = trust_record(own[0], own[1], manifest.name, manifest.version)
    summary = LoadSummary(
        registry=target, bundle_digest=reader.digest, signed_by=reader.signed_by,
        images=[{"upstream": str(p.upstream), "digest": p.entry.digest, "local": [str(r) for r in p.locals],
                 "signature_repo": f"{p.locals[0].registry}/{p.sig_repo}" if p.sig_repo else None}
                for p in placed],
        map_ref=f"{target}/{MAP_REPO}:{tag}", name=manifest.name, version=manifest.version,
        trust_files={**{n.removeprefix("trust/"): d for n, d in reader.files.items() if n.startswith("trust/")},
                     **extra},
        airgap_image=own[1] if own is not None else None,
    )
    jobs = max(1, jobs)
    wanted = [(map_host, map_repo, tag, map_manifest.digest)]
    for p in placed:
        wanted += [(p.host, local.repository, local.tag or local.digest or "", p.entry.digest) for local in p.locals]
    now = _heads(client, [w[:3] for w in wanted], jobs)
    conflicts = [(repo, ref, current) for (_, repo, ref, ours), current in zip(wanted, now, strict=True)
                 if current is not None and current != ours and not ref.startswith("sha256:")]
    summary.replaced = check_ownership(client, manifest.name, placed, map_host, map_repo, conflicts, force=force)
    if manifest.delta is not None:
        summary.delta = {"kind": manifest.delta.kind, "base": manifest.delta.base,
                         "omitted_blobs": len(manifest.omitted), "omitted_bytes": manifest.delta.omitted_bytes,
                         "mounted": 0}
    if all(current == ours for (*_, ours), current in zip(wanted, now, strict=True)):
        summary.already_loaded = True
        _drain(source)
    else:
        mounts = check_site(client, manifest, placed, jobs=jobs)  # a delta: before anything is pushed
        with Progress(f"load {manifest.name} {manifest.version}", enabled=progress, verb="pushed") as meter:
            kept, uploader = stream_blobs(reader, client, placed, jobs=jobs,
                                          max_manifest=client.limits.max_manifest_bytes, meter=meter)
            summary.blobs_pushed, summary.bytes_pushed = uploader.pushed, uploader.bytes
            manifests = _Manifests(kept, reader.files["index.json"], client.limits.max_manifest_bytes,
                                   client.limits.max_index_depth)
            for p in placed:  # parse everything before pushing anything: a bad manifest fails the load early
                for digest in p.entry.manifests:
                    manifests.get(p.entry.digest, p.entry.media_type)
                    manifests.get(digest)
                for att in p.entry.attachments:
                    graph = manifests.graph(att.digest)
                    check_attachments_carried(manifest, att.digest, [b.digest for m in graph for b in m.blobs])
            if summary.delta is not None:
                summary.delta["mounted"] = mount_omitted(client, placed[0].host if placed else "", mounts, jobs=jobs)
            meter.set_status("pushing manifests and tags")

            def push(p: Placed) -> int:
                count = push_image(client, p, manifests)
                meter.note(pushed_line(p, manifest))
                return count

            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(placed) or 1))) as pool:
                summary.manifests_pushed = sum(pool.map(carry(push), placed))
            for desc, data in zip(map_manifest.blobs, (_EMPTY, map_blob), strict=True):
                client.push_blob(map_host, map_repo, desc, _bytes_opener(data))
            client.put_manifest(map_host, map_repo, tag, map_manifest)
    if map_out:
        tmap.save(map_out)
    if trust_out:
        from airgap.bundle.inspect import write_trust

        write_trust(reader.files, trust_out, extra=extra)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary
