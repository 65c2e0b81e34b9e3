"""PEM blocks: every block of a file as (type, DER), refusing headers, and the encoding back."""

from __future__ import annotations

import base64
import binascii
import re

from airgap.errors import ConfigError

_PEM_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block in ``data`` as (type, DER bytes), in order. Headers inside a block are refused."""
    blocks = []
    for match in _PEM_RE.finditer(data):
        body = match.group(2)
        if b":" in body:
            raise ConfigError(f"PEM block {match.group(1).decode()} has headers; re-export it without them")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except binascii.Error:
            raise ConfigError(f"PEM block {match.group(1).decode()} is not valid base64") from None
        blocks.append((match.group(1).decode(), der))
    return blocks


def pem_encode(pem_type: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"".join([f"-----BEGIN {pem_type}-----\n".encode(), *(line + b"\n" for line in lines),
                     f"-----END {pem_type}-----\n".encode()])
