"""The bundle manifest (``airgap-bundle.json``): what a bundle holds, pinned by digest, in canonical JSON.

The manifest is the first tar entry and the only thing a bundle signature covers, so it must pin everything
that follows: ``files`` gives the digest and size of every non-blob entry (trust files, ``oci-layout``,
``index.json``; never the manifest itself or its signature), ``blobs`` the size of every blob by digest.
A reader trusts the manifest first (signature, pinned digest, or an explicit opt-out) and then checks every
later entry against it, so nothing in the tar is used unless the trusted manifest vouches for it.

Canonical JSON: sorted keys, no insignificant whitespace, UTF-8, integers only. ``from_bytes`` refuses any
other serialisation, so one manifest has exactly one digest. Wire shape (``schema`` first for humans only)::

    {"blobBytes":N,"blobCount":N,"blobs":{"sha256:..":SIZE},"created":EPOCH,
     "files":{"index.json":{"digest":"sha256:..","size":N},...},
     "images":[{"ref":UPSTREAM,"digest":D,"mediaType":M,"platforms":[{"platform":"linux/amd64","digest":D}],
                "manifests":[D,...],"blobs":[D,...],"signatureRepo":REPO|null,
                "attachments":[{"kind":"signature","tag":"sha256-..sig"|null,"digest":D,"subject":D}]}],
     "keys":{KEY MANIFEST},"name":NAME,"schema":"airgap.dev/bundle/v1","version":VERSION}

A delta bundle (packed against what a site already holds) adds one field, so an older reader refuses it
(unknown field) rather than loading it as complete::

    "delta":{"schema":"airgap.dev/bundle-delta/v1","kind":"inventory"|"bundle","base":"sha256:..",
             "omitted":{"sha256:..":SIZE}}

``omitted`` are image blobs (layers, configs) the bundle does not carry because its base (a site inventory, or an
older bundle) says the site has them: they are still pinned (digest and size) and named by the images' ``blobs``,
but never among ``blobs`` (what the tar holds), and never a manifest or a signature/attestation/referrer's blob
(an image's ``digest``, ``platforms``, ``manifests`` and ``attachments`` must be carried).

A bundle that carries airgap itself (:mod:`airgap.bundle.selfcarry`) adds one field, again refused by an older
reader rather than half understood::

    "airgap":{"image":UPSTREAM,
              "cli":{"name":"OUT.airgap.pyz","digest":"sha256:..","size":N,"version":V,"python":"3.11",
                     "platform":"manylinux_2_28_x86_64"}}

``image`` (optional) says which of ``images`` is airgap's own container image (the one the webhook runs from);
``cli`` (optional) pins the single-file CLI ``pack --with-cli`` wrote beside the bundle, so the signature over this
manifest covers it too. At least one of the two is present.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airgap.errors import BundleError
from airgap.jsondoc import load_json

SCHEMA = "airgap.dev/bundle/v1"
DELTA_SCHEMA = "airgap.dev/bundle-delta/v1"
DELTA_KINDS = ("inventory", "bundle")
MANIFEST_NAME = "airgap-bundle.json"
SIGNATURE_NAME = "airgap-bundle.json.sig"
OCI_LAYOUT_NAME = "oci-layout"
INDEX_NAME = "index.json"
BLOB_PREFIX = "blobs/sha256/"
OCI_LAYOUT_BYTES = b'{"imageLayoutVersion":"1.0.0"}'
ATTACHMENT_KINDS = ("signature", "attestation", "sbom", "referrer")

_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_TRUST_NAME = re.compile(
    r"^trust/(?:keys/[A-Za-z0-9][A-Za-z0-9._-]*\.pub|keys\.json|trusted_root\.json"
    r"|trusted_roots/[A-Za-z0-9][A-Za-z0-9._-]*\.json|policy\.yaml)$"
)
_PLATFORM = re.compile(r"^[a-z0-9._-]+/[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)?$")
_CLI_NAME = re.compile(r"^[^./\\\x00-\x1f\x7f][^/\\\x00-\x1f\x7f]{0,243}\.airgap\.pyz$")
_CLI_PYTHON = re.compile(r"^3\.[0-9]{1,2}$")
_CLI_PLATFORM = re.compile(r"^manylinux_2_[0-9]{1,3}_[a-z0-9_]{1,16}$")
MAX_NAME = 99  # ustar's name field, without the prefix split


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the one serialisation a digest or signature may cover."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def blob_name(digest: str) -> str:
    """The tar entry name of a blob: ``blobs/sha256/<hex>``."""
    if not _SHA256.match(digest):
        raise BundleError(f"bundle blobs must be sha256 digests, got {digest!r}")
    return BLOB_PREFIX + digest.split(":", 1)[1]


def is_file_name(name: str) -> bool:
    """True for the names a bundle's ``files`` may list: trust files, ``oci-layout``, ``index.json``."""
    return name in (OCI_LAYOUT_NAME, INDEX_NAME) or (len(name) <= MAX_NAME and bool(_TRUST_NAME.match(name)))


def file_order(names: Iterable[str]) -> list[str]:
    """The order non-blob entries are written in after the manifest (and its signature): ``trust/`` files
    sorted by name, then ``oci-layout``, then ``index.json``."""
    names = list(names)
    rank = {OCI_LAYOUT_NAME: 1, INDEX_NAME: 2}
    return sorted(names, key=lambda n: (rank.get(n, 0), n))


@dataclass(frozen=True)
class FileEntry:
    digest: str
    size: int

    @classmethod
    def of(cls, data: bytes) -> FileEntry:
        return cls("sha256:" + hashlib.sha256(data).hexdigest(), len(data))


@dataclass(frozen=True)
class PlatformEntry:
    platform: str  # os/arch[/variant]
    digest: str


@dataclass(frozen=True)
class Attachment:
    """A manifest attached to an image: a ``.sig``/``.att``/``.sbom`` tag (``tag`` set) or a referrer."""

    kind: str  # one of ATTACHMENT_KINDS
    tag: str | None
    digest: str
    subject: str  # the digest it is attached to (the image, a platform child, or another attachment)


@dataclass(frozen=True)
class ImageEntry:
    """One image of the bundle. ``manifests`` are in push order (children first, root last); ``blobs`` are
    the non-manifest blobs (layers, configs) its repository needs; ``attachments`` in push order too."""

    upstream: str
    digest: str
    media_type: str
    platforms: tuple[PlatformEntry, ...] = ()
    manifests: tuple[str, ...] = ()
    blobs: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    signature_repo: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.upstream, "digest": self.digest, "mediaType": self.media_type,
            "platforms": [{"platform": p.platform, "digest": p.digest} for p in self.platforms],
            "manifests": list(self.manifests), "blobs": list(self.blobs),
            "attachments": [{"kind": a.kind, "tag": a.tag, "digest": a.digest, "subject": a.subject}
                            for a in self.attachments],
            "signatureRepo": self.signature_repo,
        }


@dataclass(frozen=True)
class CliPin:
    """The single-file CLI written beside the bundle (``OUT.airgap.pyz``): its file name (no directory), sha256
    and size, and what it runs on (see :mod:`airgap.bundle.cli_archive`)."""

    name: str
    digest: str
    size: int
    version: str  # airgap's version inside
    python: str  # "3.11"
    platform: str  # "manylinux_2_28_x86_64"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": self.digest, "size": self.size, "version": self.version,
                "python": self.python, "platform": self.platform}


@dataclass(frozen=True)
class SelfCarry:
    """What a bundle says about airgap itself: which image is airgap's own, and the CLI beside the bundle."""

    image: str | None = None  # the upstream ref of one of the bundle's images
    cli: CliPin | None = None

    def to_json(self) -> dict[str, Any]:
        return ({"image": self.image} if self.image is not None else {}) | (
            {"cli": self.cli.to_json()} if self.cli is not None else {})


class DeltaBaseError(BundleError):
    """The target registry does not hold the blobs a delta bundle leaves out: load the bundle (or the images) the
    delta was made against first, or load a full bundle. Nothing in the bundle is at fault."""


@dataclass(frozen=True)
class Delta:
    """What a delta bundle leaves out: image blobs its base (a site inventory or an older bundle, by digest)
    says the site has. See the module docstring."""

    kind: str  # one of DELTA_KINDS
    base: str  # sha256 of the inventory file, or the older bundle's digest
    omitted: Mapping[str, int] = field(default_factory=dict)  # digest -> size
    schema: str = DELTA_SCHEMA

    @property
    def omitted_bytes(self) -> int:
        return sum(self.omitted.values())

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "kind": self.kind, "base": self.base, "omitted": dict(self.omitted)}


@dataclass(frozen=True)
class BundleManifest:
    name: str
    version: str
    created: int
    images: tuple[ImageEntry, ...] = ()
    keys: Mapping[str, Any] = field(default_factory=dict)  # the key manifest (trust/keys.json's content)
    files: Mapping[str, FileEntry] = field(default_factory=dict)
    blobs: Mapping[str, int] = field(default_factory=dict)
    schema: str = SCHEMA
    delta: Delta | None = None
    airgap: SelfCarry | None = None

    @property
    def omitted(self) -> Mapping[str, int]:
        """Blobs a delta bundle pins but does not carry (empty for a full bundle)."""
        return self.delta.omitted if self.delta is not None else {}

    @property
    def blob_count(self) -> int:
        return len(self.blobs)

    @property
    def blob_bytes(self) -> int:
        return sum(self.blobs.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "name": self.name, "version": self.version, "created": self.created,
            "images": [i.to_json() for i in self.images], "keys": dict(self.keys),
            "files": {n: {"digest": f.digest, "size": f.size} for n, f in self.files.items()},
            "blobs": dict(self.blobs), "blobCount": self.blob_count, "blobBytes": self.blob_bytes,
        } | ({"delta": self.delta.to_json()} if self.delta is not None else {}) | (
            {"airgap": self.airgap.to_json()} if self.airgap is not None else {})

    def to_bytes(self) -> bytes:
        """The canonical bytes; validated with :meth:`from_bytes` so a writer cannot emit what a reader refuses."""
        data = canonical_json(self.to_json())
        BundleManifest.from_bytes(data)
        return data

    @property
    def digest(self) -> str:
        """``sha256:`` of :meth:`to_bytes`: what ``--bundle-digest`` pins."""
        return "sha256:" + hashlib.sha256(self.to_bytes()).hexdigest()

    def entry_names(self) -> list[str]:
        """Every entry after the manifest and its optional signature, in the order they must appear
        (blobs last, in any order the writer chose)."""
        return file_order(self.files) + [blob_name(d) for d in self.blobs]

    @classmethod
    def from_bytes(cls, data: bytes, what: str = MANIFEST_NAME) -> BundleManifest:
        """Parse and validate strictly; every error is a one-line BundleError naming the field."""
        doc = load_json(data, what, BundleError, integers_only=True)
        v = _Validator(what)
        d = v.mapping(doc, "", ("schema", "name", "version", "created", "images", "keys", "files", "blobs",
                                "blobCount", "blobBytes"), optional=("delta", "airgap"))
        if d["schema"] != SCHEMA:
            raise v.err("schema", f"unsupported bundle schema {d['schema']!r} (expected {SCHEMA})")
        blobs: dict[str, int] = {}
        for digest, size in v.mapping(d["blobs"], "blobs").items():
            if not _SHA256.match(digest):
                raise v.err(f"blobs[{digest!r}]", "expected a sha256 digest")
            blobs[digest] = v.int_(size, f"blobs[{digest}]")
        files: dict[str, FileEntry] = {}
        for name, entry in v.mapping(d["files"], "files").items():
            if not is_file_name(name):
                raise v.err(f"files[{name!r}]", "not an allowed bundle entry name")
            e = v.mapping(entry, f"files[{name}]", ("digest", "size"))
            files[name] = FileEntry(v.digest(e["digest"], f"files[{name}].digest"),
                                    v.int_(e["size"], f"files[{name}].size"))
        for required in (OCI_LAYOUT_NAME, INDEX_NAME):
            if required not in files:
                raise v.err("files", f"{required} is not listed")
        if v.int_(d["blobCount"], "blobCount") != len(blobs):
            raise v.err("blobCount", f"says {d['blobCount']}, blobs lists {len(blobs)}")
        if v.int_(d["blobBytes"], "blobBytes") != sum(blobs.values()):
            raise v.err("blobBytes", f"says {d['blobBytes']}, blobs add up to {sum(blobs.values())}")
        keys = v.mapping(d["keys"], "keys")
        if keys:
            for i, k in enumerate(v.list_(keys.get("keys"), "keys.keys")):
                v.str_(v.mapping(k, f"keys.keys[{i}]").get("name"), f"keys.keys[{i}].name")
        delta = _delta(v, d["delta"], blobs) if "delta" in d else None
        omitted = delta.omitted if delta is not None else {}
        images = tuple(_image(v, item, f"images[{i}]", blobs, omitted)
                       for i, item in enumerate(v.list_(d["images"], "images")))
        if delta is not None:
            named = {b for image in images for b in image.blobs}
            stray = sorted(set(omitted) - named)
            if stray:
                raise v.err(f"delta.omitted[{stray[0]!r}]", "no image names this blob")
        refs = [i.upstream for i in images]
        dupes = sorted({r for r in refs if refs.count(r) > 1})
        if dupes:
            raise v.err("images", f"image {dupes[0]!r} is listed twice")
        airgap = _self_carry(v, d["airgap"], refs) if "airgap" in d else None
        manifest = cls(name=v.str_(d["name"], "name"), version=v.str_(d["version"], "version"),
                       created=v.int_(d["created"], "created"), images=images, keys=keys, files=files,
                       blobs=blobs, delta=delta, airgap=airgap)
        if canonical_json(manifest.to_json()) != data:
            raise BundleError(f"{what}: not in canonical form (sorted keys, no whitespace, UTF-8)")
        return manifest


def _self_carry(v: _Validator, obj: Any, refs: list[str]) -> SelfCarry:
    m = v.mapping(obj, "airgap", (), optional=("image", "cli"))
    if not m:
        raise v.err("airgap", "expected image, cli or both")
    image = None
    if "image" in m:
        image = v.str_(m["image"], "airgap.image")
        if image not in refs:
            raise v.err("airgap.image", f"{image!r} is not one of the bundle's images")
    cli = None
    if "cli" in m:
        c = v.mapping(m["cli"], "airgap.cli", ("name", "digest", "size", "version", "python", "platform"))
        for key, pattern in (("name", _CLI_NAME), ("python", _CLI_PYTHON), ("platform", _CLI_PLATFORM)):
            if not pattern.match(v.str_(c[key], f"airgap.cli.{key}")):
                raise v.err(f"airgap.cli.{key}", f"malformed {c[key]!r}")
        cli = CliPin(c["name"], v.digest(c["digest"], "airgap.cli.digest"), v.int_(c["size"], "airgap.cli.size"),
                     v.str_(c["version"], "airgap.cli.version"), c["python"], c["platform"])
    return SelfCarry(image, cli)


def _delta(v: _Validator, obj: Any, blobs: Mapping[str, int]) -> Delta:
    m = v.mapping(obj, "delta", ("schema", "kind", "base", "omitted"))
    if m["schema"] != DELTA_SCHEMA:
        raise v.err("delta.schema", f"unsupported delta schema {m['schema']!r} (expected {DELTA_SCHEMA})")
    kind = v.str_(m["kind"], "delta.kind")
    if kind not in DELTA_KINDS:
        raise v.err("delta.kind", f"expected one of {', '.join(DELTA_KINDS)}, got {kind!r}")
    omitted: dict[str, int] = {}
    for digest, size in v.mapping(m["omitted"], "delta.omitted").items():
        if not _SHA256.match(digest):
            raise v.err(f"delta.omitted[{digest!r}]", "expected a sha256 digest")
        if digest in blobs:
            raise v.err(f"delta.omitted[{digest}]", "the blob is carried too (listed in blobs)")
        omitted[digest] = v.int_(size, f"delta.omitted[{digest}]")
    return Delta(kind, v.digest(m["base"], "delta.base"), omitted)


def _image(v: _Validator, obj: Any, path: str, blobs: Mapping[str, int],
           omitted: Mapping[str, int] | None = None) -> ImageEntry:
    m = v.mapping(obj, path, ("ref", "digest", "mediaType", "platforms", "manifests", "blobs", "attachments",
                              "signatureRepo"))
    ref = v.str_(m["ref"], f"{path}.ref")
    from airgap.errors import ConfigError
    from airgap.refs import parse

    try:
        parse(ref)
    except ConfigError as exc:
        raise v.err(f"{path}.ref", exc.message) from None

    def listed(obj: Any, where: str) -> str:
        digest = v.digest(obj, where)
        if digest not in blobs:
            why = "omitted by the delta: manifests and signatures are always carried" if digest in (omitted or {}) \
                else "not among the bundle's blobs"
            raise v.err(where, f"{digest} is {why}")
        return digest

    def pinned(obj: Any, where: str) -> str:
        """An image blob: carried, or omitted by a delta (still pinned by digest and size)."""
        digest = v.digest(obj, where)
        return digest if omitted and digest in omitted else listed(digest, where)

    platforms = []
    for j, p in enumerate(v.list_(m["platforms"], f"{path}.platforms")):
        pm = v.mapping(p, f"{path}.platforms[{j}]", ("platform", "digest"))
        plat = v.str_(pm["platform"], f"{path}.platforms[{j}].platform")
        if not _PLATFORM.match(plat):
            raise v.err(f"{path}.platforms[{j}].platform", f"expected os/arch[/variant], got {plat!r}")
        platforms.append(PlatformEntry(plat, listed(pm["digest"], f"{path}.platforms[{j}].digest")))
    attachments = []
    for j, a in enumerate(v.list_(m["attachments"], f"{path}.attachments")):
        apath = f"{path}.attachments[{j}]"
        am = v.mapping(a, apath, ("kind", "tag", "digest", "subject"))
        kind = v.str_(am["kind"], f"{apath}.kind")
        if kind not in ATTACHMENT_KINDS:
            raise v.err(f"{apath}.kind", f"expected one of {', '.join(ATTACHMENT_KINDS)}, got {kind!r}")
        tag = None if am["tag"] is None else v.str_(am["tag"], f"{apath}.tag")
        if tag is not None and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag):
            raise v.err(f"{apath}.tag", f"invalid tag {tag!r}")
        attachments.append(Attachment(kind, tag, listed(am["digest"], f"{apath}.digest"),
                                      v.digest(am["subject"], f"{apath}.subject")))
    sig_repo = m["signatureRepo"]
    return ImageEntry(
        upstream=ref,
        digest=listed(m["digest"], f"{path}.digest"),
        media_type=v.str_(m["mediaType"], f"{path}.mediaType"),
        platforms=tuple(platforms),
        manifests=tuple(listed(x, f"{path}.manifests[{j}]") for j, x in enumerate(v.list_(m["manifests"],
                                                                                            f"{path}.manifests"))),
        blobs=tuple(pinned(x, f"{path}.blobs[{j}]") for j, x in enumerate(v.list_(m["blobs"], f"{path}.blobs"))),
        attachments=tuple(attachments),
        signature_repo=None if sig_repo is None else v.str_(sig_repo, f"{path}.signatureRepo"),
    )


class _Validator:
    def __init__(self, what: str) -> None:
        self.what = what

    def err(self, path: str, msg: str) -> BundleError:
        return BundleError(f"{self.what}: {path}: {msg}" if path else f"{self.what}: {msg}")

    def mapping(self, obj: Any, path: str, required: tuple[str, ...] | None = None,
                optional: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise self.err(path, f"expected an object, got {_type(obj)}")
        if required is not None:
            for key in obj:
                if key not in required and key not in optional:
                    raise self.err(f"{path}.{key}" if path else key, "unknown field")
            for key in required:
                if key not in obj:
                    raise self.err(f"{path}.{key}" if path else key, "required field missing")
        return obj

    def list_(self, obj: Any, path: str) -> list[Any]:
        if not isinstance(obj, list):
            raise self.err(path, f"expected a list, got {_type(obj)}")
        return obj

    def str_(self, obj: Any, path: str) -> str:
        if not isinstance(obj, str) or not obj:
            raise self.err(path, f"expected a non-empty string, got {_type(obj)}")
        return obj

    def int_(self, obj: Any, path: str) -> int:
        if not isinstance(obj, int) or isinstance(obj, bool) or obj < 0:
            raise self.err(path, f"expected a non-negative integer, got {obj!r}")
        return obj

    def digest(self, obj: Any, path: str) -> str:
        if not isinstance(obj, str) or not _SHA256.match(obj):
            raise self.err(path, f"expected a sha256 digest, got {obj!r}")
        return str(obj)


def _type(obj: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            type(None): "null"}.get(type(obj), type(obj).__name__)
