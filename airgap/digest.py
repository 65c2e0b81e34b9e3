"""Content digests and streaming verification.

Threat model: every byte from a registry, a layout or a bundle is untrusted until it hashes to the digest
we asked for. Streams are verified on the fly with bounded memory, and the *last* chunk is held back until
the digest is confirmed, so a consumer (an upload, a file) never receives a complete stream of wrong bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator

from airgap.errors import IntegrityError

_DIGEST_RE = re.compile(r"^(sha256):([a-f0-9]{64})$|^(sha512):([a-f0-9]{128})$")


def validate(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256/sha512 digest, else raise IntegrityError."""
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise IntegrityError(f"malformed digest {digest!r}")
    return digest


def algorithm(digest: str) -> str:
    return validate(digest).split(":", 1)[0]


def hex_part(digest: str) -> str:
    return validate(digest).split(":", 1)[1]


def of_bytes(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


def check_bytes(data: bytes, expected: str, what: str, size: int | None = None) -> None:
    """Raise IntegrityError unless ``data`` has digest ``expected`` (and ``size`` when given)."""
    if size is not None and len(data) != size:
        raise IntegrityError(f"{what}: size {len(data)} does not match the expected {size}")
    actual = of_bytes(data, algorithm(expected))
    if actual != expected:
        raise IntegrityError(f"{what}: content digest {actual} does not match the expected {expected}")


def verified_stream(
    chunks: Iterable[bytes], expected: str, size: int | None, what: str
) -> Iterator[bytes]:
    """Yield ``chunks`` unchanged while hashing; raise IntegrityError on a size or digest mismatch.

    Reading stops as soon as more than ``size`` bytes arrive (a hostile endless stream cannot exhaust
    memory or disk), and the final chunk is only yielded after the digest matched.
    """
    hasher = hashlib.new(algorithm(expected))
    seen = 0
    held: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        seen += len(chunk)
        if size is not None and seen > size:
            raise IntegrityError(f"{what}: more than the expected {size} bytes")
        hasher.update(chunk)
        if held is not None:
            yield held
        held = chunk
    if size is not None and seen != size:
        raise IntegrityError(f"{what}: got {seen} bytes, expected {size}")
    actual = f"{hasher.name}:{hasher.hexdigest()}"
    if actual != expected:
        raise IntegrityError(f"{what}: content digest {actual} does not match the expected {expected}")
    if held is not None:
        yield held
