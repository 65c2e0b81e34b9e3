"""Parsing an untrusted JSON document that must be an object, with a one-line error naming what it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from airgap.errors import Error, IntegrityError


def json_object(data: bytes | str, what: str, error: Callable[[str], Error] = IntegrityError) -> dict[str, Any]:
    """``data`` parsed as a JSON object; anything else raises ``error`` (IntegrityError for data from a
    registry or a bundle, ConfigError for files the user gave us)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise error(f"{what}: not a JSON object")
    return doc
