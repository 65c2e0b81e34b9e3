"""Upstream ⇄ local image reference translation: Zarf's scheme, prefix rules, the translation map, aliases.

Forward (upstream -> local) is a pure function of the reference and the target. Reverse (local -> upstream)
only ever *looks things up*: a translation map written at load time, then reversed prefix rules. It never
guesses: a Zarf crc tag names a CRC-32 of the upstream repository, which cannot be inverted (the upstream
registry host is gone from the local path), so without the map a Zarf-translated ref reverses to ``None``.

Zarf (``src/pkg/transform/image.go``, followed exactly so Zarf clusters interoperate):

* the upstream is normalized the way distribution/reference does (``nginx:1.23.3`` ->
  ``docker.io/library/nginx:1.23.3``; a leading ``oci://`` is dropped);
* ``zarf`` mode: ``HOST/<path>:<tag>-zarf-<crc>`` where ``<path>`` is the repository WITHOUT the registry
  host and ``<crc>`` is ``zlib.crc32`` of ``registry/repository`` (no tag) as an unpadded decimal;
  a digest-pinned ref becomes ``HOST/<path>@<digest>`` (no crc, and a tag next to the digest is dropped);
* ``zarf-plain`` mode (``ImageTransformHostWithoutChecksum``, the plain tag Zarf also pushes):
  ``HOST/<path>:<tag>``, or ``HOST/<path>@<digest>`` when pinned (the digest wins over a tag);
* in both, a ref already on the target host is "already transformed" and returned unchanged. Zarf tests
  ``strings.HasPrefix(targetHost, host)``; airgap compares the normalized ``host:port`` exactly, so an image
  from ``127.0.0.1:5410`` is translated onto ``127.0.0.1:54102`` instead of being taken for local.

Known deviation: :func:`airgap.refs.parse` also folds ``registry-1.docker.io`` into ``docker.io`` (Zarf
folds only ``index.docker.io``), so such a spelling gets the ``docker.io`` crc.

Prefix rules (containers-registries.conf ``[[registry]] prefix/location``, OpenShift IDMS ``source/mirrors``):
ordered ``from=to`` pairs matched against ``registry/repository`` at a path-component boundary
(``docker.io`` matches ``docker.io/library/nginx``, never ``docker.iox/...``). The LONGEST matching ``from``
wins, as in registries.conf; among equal prefixes the first listed wins. Tag and digest are kept.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from airgap.errors import ConfigError
from airgap.refs import grammar as refs
from airgap.refs.grammar import Reference
from airgap.refs.translation_map import MapEntry, TranslationMap
from airgap.refs.translation_map import as_ref as _as_ref

__all__ = ["MODES", "Aliases", "Mode", "PrefixRule", "PrefixRules", "forward", "forward_repo", "reverse", "reverse_all",
           "zarf_crc", "zarf_forward"]

Mode = Literal["zarf", "zarf-plain", "prefix"]
MODES: tuple[str, ...] = ("zarf", "zarf-plain", "prefix")

_ZARF_TAG = re.compile(r"-zarf-(\d{1,10})$")
_HOST_RE = re.compile(
    r"^(?:localhost|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]+)?$"
)
_HUB_SPELLINGS = ("docker.io", "index.docker.io", "registry-1.docker.io")


def zarf_crc(name: str) -> int:
    """Zarf's checksum of a normalized repository name (``docker.io/library/nginx`` -> 3793515731)."""
    return zlib.crc32(name.encode())


def _check_target(target: str) -> str:
    host, _, _path = target.partition("/")
    if not target or target.endswith("/") or not _HOST_RE.match(host) or not (
        "." in host or ":" in host or host == "localhost" or host.startswith("[")
    ):
        raise ConfigError(
            f"invalid target registry {target!r}: expected HOST[:PORT][/PATH] where HOST has a '.' or a port "
            "or is localhost"
        )
    return target


def _build(text: str, what: str) -> Reference:
    try:
        return refs.parse(text, default_tag=None)
    except ConfigError as exc:
        raise ConfigError(f"cannot translate to {what}: {exc}") from None


def zarf_forward(ref: Reference | str, host: str, *, checksum: bool = True) -> Reference:
    """Zarf's ``ImageTransformHost`` (``checksum=True``) or ``ImageTransformHostWithoutChecksum``."""
    src = _as_ref(ref)
    target = _check_target(host)
    if refs.same_host(target.split("/", 1)[0], src.registry):  # already on the target: nothing to translate
        return src
    if src.digest:
        return _build(f"{target}/{src.repository}@{src.digest}", "zarf")
    tag = src.tag or "latest"
    if checksum:
        tag = f"{tag}-zarf-{zarf_crc(src.name)}"
    return _build(f"{target}/{src.repository}:{tag}", "zarf")


def _norm_prefix(text: str, what: str) -> str:
    """Normalize a rule prefix's Hub spelling (``index.docker.io`` -> ``docker.io``).

    Prefixes are namespaces, so no ``library/`` is inserted: write ``docker.io/library/nginx``.
    """
    prefix = text.strip().rstrip("/")
    host, sep, path = prefix.partition("/")
    if not prefix or not _HOST_RE.match(host) or any(c.isspace() for c in prefix) or "//" in prefix:
        raise ConfigError(f"invalid {what} {text!r}: expected HOST[:PORT][/PATH]")
    if host in _HUB_SPELLINGS:
        host = refs.DOCKER_HUB
    return f"{host}/{path}" if sep else host


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + "/")


@dataclass(frozen=True)
class PrefixRule:
    """One ``source -> target`` rule, both normalized prefixes of ``registry/repository``."""

    source: str
    target: str

    def __str__(self) -> str:
        return f"{self.source}={self.target}"


@dataclass(frozen=True)
class PrefixRules:
    """Ordered prefix rules; the longest matching prefix wins, then the first listed (see module docstring)."""

    rules: tuple[PrefixRule, ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> PrefixRules:
        """Parse ``FROM=TO`` (also ``FROM->TO``) strings, e.g. ``docker.io=127.0.0.1:31999/docker.io``."""
        rules: list[PrefixRule] = []
        for spec in specs:
            sep = "->" if "->" in spec else "="
            source, found, target = spec.partition(sep)
            if not found or not source.strip() or not target.strip():
                raise ConfigError(f"invalid prefix rule {spec!r}: expected FROM=TO")
            rules.append(PrefixRule(_norm_prefix(source, "prefix rule source"),
                                    _check_target(_norm_prefix(target, "prefix rule target"))))
        return cls(tuple(rules))

    def __iter__(self) -> Iterator[PrefixRule]:
        return iter(self.rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _best(self, name: str, side: Literal["source", "target"]) -> list[PrefixRule]:
        hits = [r for r in self.rules if _under(name, getattr(r, side))]
        if not hits:
            return []
        longest = max(len(getattr(r, side)) for r in hits)
        return [r for r in hits if len(getattr(r, side)) == longest]

    def forward(self, ref: Reference | str) -> Reference | None:
        """The local ref for ``ref``, or None when no rule's source covers it."""
        src = _as_ref(ref)
        hits = self._best(src.name, "source")
        if not hits:
            return None
        rule = hits[0]
        return _replace(src, rule.source, rule.target)

    def reverse(self, ref: Reference | str) -> tuple[Reference | None, str]:
        """The upstream ref for a local ``ref``, with how it was found or why not.

        A candidate is accepted only if forwarding it gives ``ref`` back: a local name that the rules
        could never have produced (a longer source prefix would have won) is refused, not guessed.
        """
        local = _as_ref(ref)
        hits = self._best(local.name, "target")
        if not hits:
            return None, f"no prefix rule target covers {local.name}"
        candidates = {_replace(local, r.source, r.target, reverse=True) for r in hits}
        if len(candidates) > 1:
            names = ", ".join(sorted(str(c) for c in candidates))
            return None, f"ambiguous: prefix rules map {local.name} back to {names}"
        (upstream,) = candidates
        if self.forward(upstream) != local:
            return None, f"{local.name} is not an image these prefix rules produce (a longer rule applies)"
        rule = hits[0]
        return upstream, f"prefix rule {rule}"


def _replace(ref: Reference, old: str, new: str, *, reverse: bool = False) -> Reference:
    if reverse:
        old, new = new, old
    name = new + ref.name[len(old):]
    text = name + (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")
    return _build(text, "prefix rule result")


def forward(ref: Reference | str, mode: Mode | str, host_or_rules: str | PrefixRules | Sequence[str]) -> Reference:
    """Translate an upstream ref to its local ref.

    ``mode`` is ``zarf`` / ``zarf-plain`` (``host_or_rules`` is the target ``HOST[:PORT][/PATH]``) or
    ``prefix`` (``host_or_rules`` is :class:`PrefixRules` or ``FROM=TO`` strings; a ref no rule covers is a
    :class:`ConfigError`, since pushing it anywhere would be a guess).
    """
    if mode in ("zarf", "zarf-plain"):
        if not isinstance(host_or_rules, str):
            raise ConfigError(f"translation mode {mode} needs a target host, not prefix rules")
        return zarf_forward(ref, host_or_rules, checksum=mode == "zarf")
    if mode == "prefix":
        if isinstance(host_or_rules, str):
            rules = PrefixRules.parse([host_or_rules])
        elif isinstance(host_or_rules, PrefixRules):
            rules = host_or_rules
        else:
            rules = PrefixRules.parse(host_or_rules)
        out = rules.forward(ref)
        if out is None:
            raise ConfigError(f"no prefix rule covers {_as_ref(ref).name}")
        return out
    raise ConfigError(f"unknown translation mode {mode!r}: expected one of {', '.join(MODES)}")


# --- reverse: through the translation map (airgap.refs.translation_map), then the rules --------------------


def _identities(entries: list[MapEntry], what: str) -> tuple[tuple[Reference, ...], str]:
    """The distinct upstream refs of ``entries`` (one repository, any number of tags), each with its digest
    when the entries agree on one; ``()`` and why when they name several upstream repositories."""
    names = sorted({e.upstream.name for e in entries})
    if len(names) > 1:
        return (), f"ambiguous: {what} maps to {', '.join(names)}"
    digests = {e.digest for e in entries}
    digest = digests.pop() if len(digests) == 1 else None
    tags = sorted({e.upstream.tag for e in entries}, key=lambda t: (t is None, t or ""))
    first = entries[0].upstream
    return tuple(Reference(first.registry, first.repository, tag, digest) for tag in tags), ""


def reverse_all(
    local_ref: Reference | str,
    *,
    tmap: TranslationMap | None = None,
    rules: PrefixRules | None = None,
    digest: str | None = None,
) -> tuple[tuple[Reference, ...], str]:
    """Every upstream identity of a local ref and how they were found, or ``((), why not)``.

    Order: the translation map by local ref (its tag's entries; for a bare digest, every upstream tag shipped
    with that digest: a policy scoped to any of those tags applies), then the map by digest (``digest`` or the
    ref's own) anywhere in the map, then reversed prefix rules. The map's answer carries the recorded
    manifest digest. A Zarf crc tag that the map does not know is refused (CRC-32 cannot be inverted and the
    upstream host is not in the path). Identities from several upstream repositories are ambiguous: refused.
    """
    local = _as_ref(local_ref)
    if tmap is not None:
        hits = tmap.by_local(local if local.digest or digest is None else local.with_digest(digest))
        if hits:
            ups, why = _identities(hits, f"translation map entry for {local}")
            return (ups, f"translation map: {local}") if ups else ((), why)
        want = digest or local.digest
        if want:
            hits = tmap.by_digest(want)
            if hits:
                ups, why = _identities(hits, f"digest {want}")
                return (ups, f"translation map: digest {want}") if ups else ((), why)
    if rules:
        up, why = rules.reverse(local)
        if up is not None:
            return (up,), why
        rule_why = why
    else:
        rule_why = "no prefix rules given"
    if local.tag and _ZARF_TAG.search(local.tag):
        return (), (
            f"{local} carries a Zarf crc tag: not reversible without the translation map "
            "(a CRC-32 cannot be inverted and the upstream registry is not in the local path)"
        )
    source = "no translation map" if tmap is None else "not in the translation map"
    return (), f"{local}: {source}; {rule_why}"


def reverse(
    local_ref: Reference | str,
    *,
    tmap: TranslationMap | None = None,
    rules: PrefixRules | None = None,
    digest: str | None = None,
) -> tuple[Reference | None, str]:
    """:func:`reverse_all` when one identity is wanted: the first (by tag), or ``(None, why not)``."""
    ups, how = reverse_all(local_ref, tmap=tmap, rules=rules, digest=digest)
    return (ups[0] if ups else None), how


def forward_repo(repo: Reference | str, tmap: TranslationMap | None = None,
                 rules: PrefixRules | None = None) -> Reference | None:
    """Where an upstream REPOSITORY (no tag: e.g. a policy ``source.oci``) lives locally, or None.

    Looked up, never computed from a guessed scheme: the translation map's entries for that upstream
    repository (they must agree on one local repository), then prefix rules. The result has no tag/digest.
    """
    up = _as_ref(repo) if isinstance(repo, Reference) else refs.parse(repo.removeprefix("oci://"), default_tag=None)
    if tmap is not None:
        names = {(e.local.registry, e.local.repository) for e in tmap.entries if e.upstream.name == up.name}
        if len(names) == 1:
            registry, repository = names.pop()
            return Reference(registry, repository)
        if len(names) > 1:
            return None
    if rules:
        local = rules.forward(Reference(up.registry, up.repository))
        if local is not None:
            return Reference(local.registry, local.repository)
    return None


# --- access aliases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aliases:
    """Where to reach a registry named in refs: ``127.0.0.1:31999=docker-registry.zarf.svc.cluster.local:5000``.

    Pod specs name the node-local address; a verifier inside the cluster reaches the same registry through
    its service name. Only the network address changes: refs, signatures and policy keep the ref's host.
    """

    mapping: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Aliases:
        seen: dict[str, str] = {}
        for spec in specs:
            ref_host, found, access = (s.strip() for s in spec.partition("="))
            if not found or not _HOST_RE.match(ref_host) or not _HOST_RE.match(access):
                raise ConfigError(f"invalid registry alias {spec!r}: expected REF_HOST[:PORT]=ACCESS_HOST[:PORT]")
            if seen.get(ref_host, access) != access:
                raise ConfigError(f"registry alias for {ref_host} given twice ({seen[ref_host]} and {access})")
            seen[ref_host] = access
        return cls(tuple(seen.items()))

    def access_host(self, ref_host: str) -> str:
        """The address to connect to for a ref on ``ref_host`` (itself when no alias is set)."""
        return dict(self.mapping).get(ref_host, ref_host)

    def __bool__(self) -> bool:
        return bool(self.mapping)
