"""Look inside a bundle without loading it: what it holds (``inspect``) and its trust directory (``trust_export``).

Both read only the manifest, its signature and the small entries before the blobs (a bundle of many GB is
inspected in milliseconds), with the same checks as ``load``: every entry read is pinned by the manifest.
``inspect`` reports whether the bundle is signed and, given a key or a pinned digest, whether that holds;
without either it still answers (it loads nothing) but says the content is unverified. ``trust_export``
writes files other tools will trust, so it fails closed like ``load``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airgap.bundle.manifest import SIGNATURE_NAME, BundleManifest
from airgap.bundle.reader import BundleReader
from airgap.config import Limits
from airgap.errors import BundleError, ConfigError
from airgap.fileio import write_files

if TYPE_CHECKING:
    from airgap.keys.public import PublicKey

TRUST_PREFIX = "trust/"


def open_bundle(path: str | os.PathLike[str]) -> IO[bytes]:
    """Open a bundle file for reading, or stdin for ``-``; a missing file is a ConfigError."""
    if str(path) == "-":
        import sys

        return sys.stdin.buffer
    try:
        return open(path, "rb")  # noqa: SIM115 -- the caller closes it
    except OSError as exc:
        raise ConfigError(f"cannot open bundle {path}: {exc.strerror or exc}") from None


BundlePaths = str | os.PathLike[str] | Sequence[str]


def _args(path: BundlePaths) -> list[str]:
    return [os.fspath(path)] if isinstance(path, (str, os.PathLike)) else [str(p) for p in path]


def read_bundle(path: BundlePaths, *, key: PublicKey | Sequence[PublicKey] | None = None,
                bundle_digest: str | None = None, allow_unsigned: bool = False, check_blobs: bool = False,
                limits: Limits | None = None) -> BundleReader:
    """Read a bundle's manifest and small entries (and, with ``check_blobs``, verify every blob too). ``path``
    is a file, ``-``, or the parts of a split bundle (:mod:`airgap.bundle.source`); the reader's ``parts``
    attribute is then the checked :class:`~airgap.bundle.source.PartSet`."""
    from airgap.bundle.source import check_bundle_digest, open_source

    with open_source(_args(path), key=key, bundle_digest=bundle_digest) as source:
        reader = BundleReader(source.stream, key=key, bundle_digest=bundle_digest, allow_unsigned=allow_unsigned,
                              limits=limits)
        check_bundle_digest(source.stream, reader.digest)
        if check_blobs:
            reader.finish()
        reader.parts = source.parts
        return reader


def inspect(path: BundlePaths, *, key: PublicKey | Sequence[PublicKey] | None = None,
            bundle_digest: str | None = None, check_blobs: bool = False,
            limits: Limits | None = None) -> dict[str, Any]:
    """A JSON-able description of the bundle: digest, signature, images, keys, policies, roots, sizes."""
    reader = read_bundle(path, key=key, bundle_digest=bundle_digest, allow_unsigned=True,
                         check_blobs=check_blobs, limits=limits)
    where = _args(path)
    return describe(reader, where[0] if len(where) == 1 else " ".join(where),
                    verified=bool(key) or bundle_digest is not None, blobs_checked=check_blobs)


def describe(reader: BundleReader, where: str = "", *, verified: bool = False,
             blobs_checked: bool = False) -> dict[str, Any]:
    """:func:`inspect`'s report for a reader that has read the bundle's header entries (``inspect --json``:
    snake_case keys, sizes in bytes, ``created`` an RFC 3339 time or null when the bundle does not say)."""
    m = reader.manifest
    return {
        "bundle": where,
        "digest": reader.digest,
        "name": m.name,
        "version": m.version,
        "created": _rfc3339(m.created),
        "schema": m.schema,
        "signed": reader.signature is not None,
        "signed_by": reader.signed_by,
        "trusted": verified,
        "blobs_verified": blobs_checked,
        "images": [_image(m, i) for i in range(len(m.images))],
        "keys": [{"name": k.get("name"), "id": k.get("id"), "algorithm": k.get("algorithm"),
                  "policies": k.get("policies", [])} for k in m.keys.get("keys", [])],
        "policies": _policies(reader.files.get("trust/policy.yaml", b"")),
        "trusted_roots": sorted(_root_name(n) for n in reader.files
                                if n == "trust/trusted_root.json" or n.startswith("trust/trusted_roots/")),
        "files": {n: {"digest": f.digest, "size": f.size} for n, f in m.files.items()},
        "blob_count": m.blob_count,
        "blob_bytes": m.blob_bytes,
        "bytes": reader.bytes_read if blobs_checked else None,
        "parts": reader.parts.describe() if reader.parts is not None else None,
        "delta": {"kind": m.delta.kind, "base": m.delta.base, "omitted_blobs": len(m.omitted),
                  "omitted_bytes": m.delta.omitted_bytes} if m.delta is not None else None,
        "airgap": m.airgap.to_json() if m.airgap is not None else None,
    }


def _rfc3339(epoch: int) -> str | None:
    """A bundle's ``created`` (seconds since the epoch, 0 when its spec gave none) as an RFC 3339 time."""
    if not epoch:
        return None
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _root_name(name: str) -> str:
    return "default" if name == "trust/trusted_root.json" else Path(name).stem


def _image(m: BundleManifest, index: int) -> dict[str, Any]:
    img = m.images[index]
    digests = {img.digest, *img.manifests, *img.blobs, *(a.digest for a in img.attachments)}

    def count(kind: str) -> int:
        return sum(1 for a in img.attachments if a.kind == kind)

    return {
        "ref": img.upstream, "digest": img.digest, "media_type": img.media_type,
        "platforms": [{"platform": p.platform, "digest": p.digest} for p in img.platforms],
        "signatures": count("signature"), "attestations": count("attestation"), "sboms": count("sbom"),
        "referrers": count("referrer"), "signature_repo": img.signature_repo,
        "bytes": sum(m.blobs.get(d, 0) for d in digests),
        "omitted_bytes": sum(m.omitted.get(d, 0) for d in digests),
    }


def _policies(text: bytes) -> dict[str, Any]:
    """Policy names, globs and authority kinds, read without resolving keys (inspect verifies nothing)."""
    if not text:
        return {"policies": [], "settings": {}}
    from airgap.yamldoc import load_all

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError("trust/policy.yaml: not UTF-8") from None
    docs = [d for d in load_all(decoded, "trust/policy.yaml", BundleError) if isinstance(d, dict)]
    out: list[dict[str, Any]] = []
    settings: dict[str, Any] = {}
    for doc in docs:
        raw_spec = doc.get("spec")
        spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
        if doc.get("kind") == "AirgapPolicy":
            settings = dict(spec)
            continue
        raw_auths = spec.get("authorities")
        auths: list[Any] = raw_auths if isinstance(raw_auths, list) else []
        meta = doc.get("metadata")
        raw_images = spec.get("images")
        out.append({
            "name": meta.get("name") if isinstance(meta, dict) else None,
            "images": [g.get("glob") for g in raw_images if isinstance(g, dict)]
            if isinstance(raw_images, list) else [],
            "authorities": [next((k for k in ("key", "keyless", "static") if isinstance(a, dict) and k in a), "?")
                            for a in auths],
        })
    # The policy is only read here, never checked: keep what JSON can print (YAML dates become text).
    return {"policies": json.loads(json.dumps(out, default=str)),
            "settings": json.loads(json.dumps(settings, default=str))}


def render(info: Mapping[str, Any]) -> str:
    """The human-readable form of :func:`inspect`'s report. A bundle is untrusted until its signature is
    checked (and inspect also reads unsigned ones): every value from it is made one inert line."""
    from airgap.terminal import printable as q

    if info["signed_by"]:
        sig = f"signed, verified with key {info['signed_by']}"
    elif info["signed"]:
        sig = f"signed ({SIGNATURE_NAME}), signature NOT checked (pass --key)"
    else:
        sig = "unsigned"
    lines = [
        f"bundle   {q(info['name'])} {q(info['version'])}  ({q(info['bundle'])})",
        f"digest   {info['digest']}" + ("  (pinned digest matched)" if info["trusted"] and not info["signed_by"]
                                         else ""),
        f"trust    {sig}",
        f"created  {info['created'] or 'not recorded'}",
        f"content  {len(info['images'])} image(s), {info['blob_count']} blobs, {_size(info['blob_bytes'])}",
    ]
    delta = info.get("delta")
    if delta:
        lines.append(f"delta    against {q(delta['kind'])} {q(delta['base'])}: {delta['omitted_blobs']} blob(s) "
                     f"({_size(delta['omitted_bytes'])}) left out, the site must hold them")
    own = info.get("airgap") or {}
    if own.get("image"):
        lines.append(f"airgap   image {q(own['image'])} (airgap's own: the webhook's default after load)")
    if own.get("cli"):
        c = own["cli"]
        lines.append(f"airgap   CLI {q(c['name'])} {q(c['digest'])} ({_size(c['size'])}, airgap {q(c['version'])}, "
                     f"CPython {q(c['python'])} {q(c['platform'])})")
    parts = info.get("parts")
    if parts:
        signed = f", signed, verified with key {parts['signed_by']}" if parts["signed_by"] else ""
        lines.append(f"parts    {len(parts['parts'])} x {_size(parts['part_size'])} ({parts['part_size']} bytes; "
                     f"{_size(parts['size'])} in all), "
                     f"{q(parts['manifest'])}{signed}")
    lines.append("images:")
    for img in info["images"]:
        plats = ", ".join(q(p["platform"]) for p in img["platforms"]) or "single manifest"
        lines.append(f"  {q(img['ref'])}")
        lines.append(f"    {q(img['digest'])}  {_size(img['bytes'])}  [{plats}]")
        extras = [f"{img[k]} {k}" for k in ("signatures", "attestations", "sboms", "referrers") if img[k]]
        lines.append("    " + (", ".join(extras) if extras else "no signatures or attestations"))
        if img["signature_repo"]:
            lines.append(f"    signatures from {q(img['signature_repo'])}")
    lines.append("keys:" if info["keys"] else "keys: none")
    for k in info["keys"]:
        used = f"  (policies: {', '.join(q(x) for x in k['policies'])})" if k["policies"] else ""
        lines.append(f"  {q(k['name'])}  {q(k['id'])}  {q(k['algorithm'])}{used}")
    pol = info["policies"]
    lines.append("policies:" if pol["policies"] else "policies: none")
    for p in pol["policies"]:
        lines.append(f"  {q(p['name'])}: {', '.join(q(g) for g in p['images'])} <- "
                     f"{', '.join(q(a) for a in p['authorities'])}")
    if pol["settings"]:
        lines.append("  settings: " + ", ".join(f"{q(k)}={q(v)}" for k, v in sorted(pol["settings"].items())))
    lines.append("trusted roots: " + (", ".join(q(r) for r in info["trusted_roots"]) or
                                      "none (Sigstore public-good built in)"))
    return "\n".join(lines)


def _size(n: int) -> str:
    """Decimal units, as the progress meters and the load/pack summaries print them (one size unit)."""
    from airgap.progress import human_bytes

    return human_bytes(n)


def trust_export(path: BundlePaths, out_dir: str | os.PathLike[str], *,
                 key: PublicKey | Sequence[PublicKey] | None = None, bundle_digest: str | None = None,
                 allow_unsigned: bool = False, limits: Limits | None = None) -> list[str]:
    """Write the bundle's trust directory (keys/, keys.json, trusted roots, policy.yaml) to ``out_dir``."""
    reader = read_bundle(path, key=key, bundle_digest=bundle_digest, allow_unsigned=allow_unsigned,
                         limits=limits)
    return write_trust(reader.files, out_dir)


def write_trust(files: Mapping[str, bytes], out_dir: str | os.PathLike[str], *,
                extra: Mapping[str, bytes] | None = None) -> list[str]:
    """Write the ``trust/...`` entries of a read bundle (plus ``extra``, e.g. ``{"map.json": ...}``) into
    ``out_dir`` as a trust directory :meth:`airgap.verification.trust.Trust.load` reads. The files are replaced
    as one change (:func:`airgap.fileio.write_files`). A directory holding other files is refused: a stale key
    there would be trusted too."""
    out = Path(out_dir)
    wanted = {n[len(TRUST_PREFIX):]: data for n, data in files.items() if n.startswith(TRUST_PREFIX)}
    wanted.update(extra or {})
    for rel in wanted:
        if rel.startswith("/") or any(p in ("", ".", "..") for p in rel.split("/")):
            raise BundleError(f"refusing to write trust file {rel!r}")
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"{out} exists and is not a directory")
        stray = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                       if p.is_file() and str(p.relative_to(out)) not in wanted)
        if stray:
            raise ConfigError(f"trust directory {out} holds files not from this bundle ({', '.join(stray[:3])}); "
                              "use an empty directory")
    for rel in wanted:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
    # As one change: every file is complete before the first is renamed into place, so an interrupted load
    # leaves the directory as it was (never new keys beside an old policy, or keys without their policy).
    write_files(out, dict(sorted(wanted.items())), mode=0o644)
    return sorted(wanted)
