"""Image reference grammar: parse, normalize, and print references the way docker/cosign/Zarf do.

Grammar (distribution/reference): ``[domain[:port]/]path[:tag][@algorithm:hex]``. The first path component
is a domain when it contains ``.`` or ``:`` or is ``localhost`` (or is uppercase-free and a loopback literal);
otherwise the reference is on Docker Hub, where single-component paths live under ``library/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airgap.errors import ConfigError

DOCKER_HUB = "docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
_DOMAIN_RE = re.compile(
    r"^(?:localhost|\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]+)?$"
)


@dataclass(frozen=True)
class Reference:
    """A fully normalized image reference: ``registry`` is never empty, Hub images carry ``library/``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` with neither tag nor digest (what Zarf hashes, what cosign signs)."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest when pinned, else the tag (``latest`` by default)."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def with_tag(self, tag: str | None) -> Reference:
        return Reference(self.registry, self.repository, tag, self.digest)

    def with_repository(self, registry: str, repository: str) -> Reference:
        return Reference(registry, repository, self.tag, self.digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first, rest
    return DOCKER_HUB, name


def parse(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalize an image reference; raise :class:`ConfigError` naming what is wrong.

    ``nginx`` -> ``docker.io/library/nginx:latest``; ``index.docker.io/x/y@sha256:..`` ->
    ``docker.io/x/y@sha256:..``. A digest-only reference gets no default tag.
    """
    raw = text.strip()
    if not raw or any(c.isspace() for c in raw):
        raise ConfigError(f"invalid image reference {text!r}: empty or contains whitespace")
    rest, _, digest = raw.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise ConfigError(f"invalid image reference {text!r}: bad digest {digest!r}")
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise ConfigError(f"invalid image reference {text!r}: bad tag {tag!r}")
    domain, path = _split_domain(rest)
    if not _DOMAIN_RE.match(domain):
        raise ConfigError(f"invalid image reference {text!r}: bad registry host {domain!r}")
    if domain in _HUB_ALIASES:
        domain = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not _PATH_RE.match(path):
        raise ConfigError(
            f"invalid image reference {text!r}: repository {path!r} must be lowercase "
            "components of [a-z0-9] separated by '.', '_', '__' or '-'"
        )
    if tag is None and not digest:
        tag = default_tag
    return Reference(domain, path, tag, digest or None)


def host_key(host: str) -> str:
    """A registry host as compared: ``host[:port]`` lowercased (DNS names are case-insensitive), without a
    trailing dot. Hosts are compared whole, never by prefix: ``127.0.0.1:5410`` is not ``127.0.0.1:54102``."""
    name, sep, port = host.rpartition(":") if host.count(":") == 1 or "]:" in host else (host, "", "")
    return f"{name.lower().rstrip('.')}{sep}{port}"


def same_host(a: str, b: str) -> bool:
    """True when two registry hosts are the same ``host[:port]`` (see :func:`host_key`)."""
    return host_key(a) == host_key(b)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``[::1]``, with or without a port."""
    if host.startswith("["):
        return host.split("]")[0] == "[::1"
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return hostname == "localhost" or hostname.startswith("127.")


def api_host(registry: str) -> str:
    """The host that serves the registry API for ``registry`` (Docker Hub's API lives elsewhere)."""
    return "registry-1.docker.io" if registry == DOCKER_HUB else registry
