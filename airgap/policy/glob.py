"""Image globs as sigstore policy-controller writes them (``spec.images[].glob``), matched on normalized refs.

policy-controller (``pkg/apis/glob``) turns a glob into an anchored regexp: ``*`` is ``[^/]*`` (does not
cross ``/``), ``**`` is ``.*`` (crosses ``/``), ``.`` is literal, and only ``[A-Za-z0-9-_:/*.@]`` may appear
(anything else is an invalid glob). The bare globs ``*`` and ``*/*`` mean ``index.docker.io/library/*`` and
``index.docker.io/*/*``. airgap follows all of that, with these documented differences:

* **Docker Hub spellings.** Refs are normalized by :mod:`airgap.refs` to ``docker.io/...``; a glob may say
  ``docker.io``, ``index.docker.io`` or ``registry-1.docker.io``, and a wildcard host such as ``inde**`` is
  tried against both ``docker.io/...`` and ``index.docker.io/...``.
* **Globs without a registry** (first component has no ``.``/``:`` and is not ``localhost``) are Docker Hub
  names, as ``docker pull`` reads them: ``nginx`` is ``docker.io/library/nginx``, ``team/*`` is
  ``docker.io/team/*``. (policy-controller only matches these through a deprecated fallback against the
  un-normalized pod-spec string.) A glob whose first component has a wildcard (``*/**``, ``ghc**``) is
  taken as written: it spans registries. A single-component glob with ``**`` (``**``, ``**demo**``,
  ``foo**``) is tried both as written and as a Hub library name (``docker.io/library/foo**``).
* **Tags and digests.** A glob is matched against ``registry/repository`` WITHOUT tag or digest, unless the
  glob's last component contains ``:`` or ``@``; then it is matched against ``name:tag``, ``name@digest``
  and ``name:tag@digest`` (whichever the ref has). policy-controller matches ``name:tag`` (``:latest``
  assumed) or ``name@digest``, so ``*``/``**`` at the end behave the same; the difference is that a glob
  naming an exact repository (``ghcr.io/org/app``) covers every tag and digest of it here, where
  policy-controller would match it only when a pod names the image without a tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from airgap import refs
from airgap.errors import PolicyError
from airgap.refs import Reference

_VALID = re.compile(r"^[a-zA-Z0-9\-_:/*.@]+$")
_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


def _normalize(glob: str) -> str:
    if glob == "*":
        return "docker.io/library/*"
    if glob == "*/*":
        return "docker.io/*/*"
    first, sep, rest = glob.partition("/")
    if not sep:
        return f"docker.io/library/{glob}"
    if not ("." in first or ":" in first or "*" in first or first == "localhost"):
        return f"docker.io/{glob}"
    if first in _HUB:
        if "/" not in rest and "**" not in rest:
            rest = f"library/{rest}"
        return f"docker.io/{rest}"
    return glob


def _to_regex(glob: str) -> str:
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Glob:
    """A compiled image glob; ``text`` is what the policy says, ``normalized`` what is matched."""

    text: str
    normalized: str
    with_tag: bool
    patterns: tuple[re.Pattern[str], ...] = field(repr=False, compare=False)

    @classmethod
    def compile(cls, text: str) -> Glob:
        """Compile ``text``; raise :class:`PolicyError` (``invalid glob '...': ...``) when it cannot match refs."""
        if not isinstance(text, str) or not text:
            raise PolicyError("invalid glob: empty")
        if not _VALID.match(text):
            bad = sorted({c for c in text if not _VALID.match(c)})
            raise PolicyError(
                f"invalid glob {text!r}: character(s) {''.join(bad)!r} not allowed (use * and ** only; "
                "globs are not regexps)"
            )
        if "//" in text or text.startswith("/") or text.endswith("/"):
            raise PolicyError(f"invalid glob {text!r}: empty path component")
        normalized = _normalize(text)
        last = normalized.rsplit("/", 1)[-1]
        forms = [normalized] if "/" in text or "**" not in text else [text, normalized]
        return cls(text, normalized, ":" in last or "@" in last, tuple(re.compile(_to_regex(f)) for f in forms))

    def subjects(self, ref: Reference) -> list[str]:
        """The strings this glob is tried against for ``ref`` (see the module docstring)."""
        names = [ref.name]
        if ref.registry == refs.DOCKER_HUB:
            names.append(f"index.docker.io/{ref.repository}")
        if not self.with_tag:
            return names
        out = []
        for name in names:
            if ref.tag:
                out.append(f"{name}:{ref.tag}")
            if ref.digest:
                out.append(f"{name}@{ref.digest}")
                if ref.tag:
                    out.append(f"{name}:{ref.tag}@{ref.digest}")
        return out

    def matches(self, ref: Reference | str) -> bool:
        target = refs.parse(ref) if isinstance(ref, str) else ref
        return any(p.fullmatch(s) for p in self.patterns for s in self.subjects(target))

    def __str__(self) -> str:
        return self.text


def glob_match(glob: str, ref: Reference | str) -> bool:
    """True when ``glob`` matches ``ref`` (convenience for one-off checks; compile once for loops)."""
    return Glob.compile(glob).matches(ref)
