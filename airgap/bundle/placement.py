"""Where each bundled image goes at the target registry: its translated refs (``zarf``, ``prefix`` or ``none``),
its translated signature repository, and the translation map that records it all for the verifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airgap import refs
from airgap.errors import ConfigError
from airgap.refs import translate
from airgap.refs.translation_map import TranslationMap

if TYPE_CHECKING:
    from airgap.bundle.manifest import BundleManifest, ImageEntry


@dataclass
class Placed:
    """Where one image goes: its repository at the target and the refs (tags) that name it there."""

    entry: ImageEntry
    upstream: refs.Reference
    host: str  # API host of the target registry
    repo: str
    locals: list[refs.Reference]
    sig_repo: str | None  # translated signature repository (same host), when the image has one

    @property
    def repos(self) -> list[str]:
        return [self.repo] + ([self.sig_repo] if self.sig_repo and self.sig_repo != self.repo else [])


def _local_refs(upstream: refs.Reference, mode: str, target: str, rules: translate.PrefixRules | None
                ) -> list[refs.Reference]:
    if mode == "zarf":
        both = [translate.zarf_forward(upstream, target), translate.zarf_forward(upstream, target, checksum=False)]
        return list(dict.fromkeys(both))
    if mode == "prefix":
        assert rules is not None  # noqa: S101 - built by plan_targets
        return [translate.forward(upstream, "prefix", rules)]
    if mode == "none":
        return [translate.zarf_forward(upstream, target, checksum=False)]
    raise ConfigError(f"unknown translation {mode!r}: expected zarf, prefix or none")


def default_rules(manifest: BundleManifest, target: str) -> translate.PrefixRules:
    """Without ``--rule``: every upstream registry R goes under ``TARGET/R`` (registries.conf style; a port's
    ``:`` becomes ``-``, since a repository path cannot hold one: ``host:5000`` -> ``TARGET/host-5000``)."""
    hosts: set[str] = set()
    for entry in manifest.images:
        hosts.add(refs.parse(entry.upstream).registry)
        if entry.signature_repo:
            hosts.add(refs.parse(entry.signature_repo, default_tag=None).registry)
    return translate.PrefixRules.parse([f"{h}={target}/{h.replace(':', '-')}" for h in sorted(hosts)])


def plan_targets(manifest: BundleManifest, target: str, mode: str,
                 rules: translate.PrefixRules | None) -> list[Placed]:
    """Translate every image (and its signature repository) to the target registry."""
    if mode == "prefix" and not rules:
        rules = default_rules(manifest, target)
    out = []
    for entry in manifest.images:
        upstream = refs.parse(entry.upstream)
        local = _local_refs(upstream, mode, target, rules)
        sig_repo = None
        if entry.signature_repo:
            sig = refs.parse(entry.signature_repo, default_tag=None)
            sig_local = _local_refs(sig.with_tag("sig"), "none" if mode == "zarf" else mode, target, rules)[0]
            if refs.api_host(sig_local.registry) != refs.api_host(local[0].registry):
                raise ConfigError(f"signature repository {entry.signature_repo} translates to another registry "
                                  f"({sig_local.registry}) than its image")
            sig_repo = sig_local.repository
        out.append(Placed(entry, upstream, refs.api_host(local[0].registry), local[0].repository, local, sig_repo))
    return out


def translation_map(placed: list[Placed]) -> TranslationMap:
    """Every image ref pushed; each platform manifest under an index, by digest alone (no local tag), so that
    ``REPO@<platform digest>`` (what a node resolves an index to) translates back to the image's upstream refs;
    and every attachment tag pushed to a separate signature repository (so the verifier can find a policy's
    ``source`` repository through the map)."""
    tmap = TranslationMap()
    for p in placed:
        for local in p.locals:
            tmap.add(p.upstream, local, p.entry.digest)
        for platform in p.entry.platforms:
            if platform.digest != p.entry.digest:
                untagged = refs.Reference(p.locals[0].registry, p.locals[0].repository, None, platform.digest)
                tmap.add(p.upstream, untagged, platform.digest)
        if p.sig_repo and p.entry.signature_repo:
            sig = refs.parse(p.entry.signature_repo, default_tag=None)
            local_registry = p.locals[0].registry
            for att in p.entry.attachments:
                if att.tag:
                    tmap.add(sig.with_tag(att.tag), refs.Reference(local_registry, p.sig_repo, att.tag), att.digest)
    return tmap
