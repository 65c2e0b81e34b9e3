"""The JSON Schemas of airgap's ``--json`` documents (``schemas/``), for tests that check what a command printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry as SchemaRegistry
from referencing import Resource

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
BASE = "https://airgap.dev/schemas/"


def schema_registry() -> SchemaRegistry:
    resources = [(BASE + p.name, Resource.from_contents(json.loads(p.read_text())))
                 for p in sorted(SCHEMAS_DIR.glob("*.schema.json"))]
    return SchemaRegistry().with_resources(resources)


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=schema_registry())


def check(name: str, doc: Any) -> None:
    """``doc`` is valid against ``schemas/NAME.schema.json`` (the first few errors, by path, when not)."""
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{name}: {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
