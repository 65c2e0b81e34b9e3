"""Field checks shared by the YAML documents airgap reads (policies, bundle specs): one wording everywhere.

Each reader keeps its own error type and location format; it passes an ``err(path, message)`` that builds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from airgap.errors import Error

ErrorFactory = Callable[[str, str], Error]


def type_name(obj: Any) -> str:
    """How a YAML value's type is named in messages (``mapping`` rather than ``dict``)."""
    return "nothing" if obj is None else type(obj).__name__.replace("dict", "mapping")


def check_fields(obj: Any, path: str, allowed: Sequence[str], required: Sequence[str], err: ErrorFactory
                 ) -> dict[str, Any]:
    """``obj`` as a mapping with only ``allowed`` keys and every ``required`` key non-empty."""
    if not isinstance(obj, dict):
        raise err(path, f"expected a mapping, got {type_name(obj)}")
    for key in obj:
        if key not in allowed:
            raise err(f"{path}.{key}" if path else str(key), f"unknown field (expected one of: {', '.join(allowed)})")
    for key in required:
        if obj.get(key) in (None, "", [], {}):
            raise err(f"{path}.{key}" if path else key, "required field missing")
    return obj
