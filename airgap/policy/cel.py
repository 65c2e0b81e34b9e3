"""CEL conditions (Common Expression Language, via cel-python) for policies: compile once, evaluate many.

policy-controller evaluates attestation and spec-level policies in CUE or Rego; airgap evaluates CEL, the
language Kubernetes ValidatingAdmissionPolicy uses. ``celpy`` is imported lazily (it is not needed to start
the CLI). Compile errors are the policy author's mistake and raise :class:`PolicyError` at load time;
evaluation errors (a field missing from an untrusted predicate, a type mismatch) make the condition FALSE,
with the reason kept for the evidence: an attestation that cannot be evaluated does not satisfy a policy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airgap.errors import PolicyError


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class CelCondition:
    """A compiled CEL expression that must evaluate to a boolean."""

    source: str
    _program: Any = field(repr=False, compare=False, hash=False)

    @classmethod
    def compile(cls, source: str) -> CelCondition:
        """Compile ``source``; raise :class:`PolicyError` ``invalid CEL expression ...`` on a syntax error."""
        import celpy
        from celpy.celparser import CELParseError

        if not isinstance(source, str) or not source.strip():
            raise PolicyError("invalid CEL expression: empty")
        env = celpy.Environment()
        try:
            ast = env.compile(source)
            program = env.program(ast)
        except CELParseError as exc:
            line = getattr(exc, "line", None)
            col = getattr(exc, "column", None)
            at = f" at line {line} column {col}" if line is not None and col is not None else ""
            raise PolicyError(f"invalid CEL expression {_one_line(source)!r}: syntax error{at}") from None
        except Exception as exc:  # noqa: BLE001 - celpy raises assorted errors (lark) for bad input
            raise PolicyError(f"invalid CEL expression {_one_line(source)!r}: {_one_line(str(exc))}") from None
        return cls(source, program)

    def explain(self, variables: Mapping[str, Any]) -> tuple[bool, str]:
        """Evaluate with ``variables`` (JSON-like values); return ``(result, reason)``, never raise."""
        from celpy.adapter import json_to_cel

        try:
            activation = {k: json_to_cel(_jsonable(v)) for k, v in variables.items()}
            result = self._program.evaluate(activation)
        except Exception as exc:  # noqa: BLE001 - any evaluation failure means "not satisfied"
            return False, f"CEL {_one_line(self.source)!r}: evaluation failed: {_one_line(_cel_error(exc))}"
        if isinstance(result, Exception):  # celpy may return an error value instead of raising
            return False, f"CEL {_one_line(self.source)!r}: evaluation failed: {_one_line(_cel_error(result))}"
        if not isinstance(result, bool):  # celpy's BoolType subclasses int, not bool
            from celpy import celtypes

            if not isinstance(result, celtypes.BoolType):
                return False, f"CEL {_one_line(self.source)!r}: returned {type(result).__name__}, not a boolean"
        ok = bool(result)
        return ok, "" if ok else f"CEL {_one_line(self.source)!r} is false"

    def evaluate(self, variables: Mapping[str, Any]) -> bool:
        return self.explain(variables)[0]


def _cel_error(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    return str(args[0]) if args else type(exc).__name__


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so only JSON types reach CEL (bytes/tuples/dataclasses would confuse it)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))
