"""Kyverno attestation ``conditions`` (``any``/``all`` of ``key``/``operator``/``value``) translated to CEL.

Kyverno evaluates each condition's ``key`` (``"{{ path }}"``, JMESPath over the statement's predicate) against a
``value`` with operators whose exact behaviour is Go code: string equality with wildcards, numbers and strings
coerced into each other, Kubernetes quantities, durations and semantic versions, set operators that match
wildcards in both directions. airgap supports the documented core of it, translated to a CEL expression over
``predicate`` (see :mod:`airgap.policy.cel`), and refuses the rest at load time instead of guessing:

* ``key``: ``"{{ a.b[0].\\"c-d\\" }}"``: field names (plain or JSON-quoted) and ``[N]`` indexes; no functions,
  filters, projections or variables outside the predicate. A key missing from the predicate fails the condition.
* ``value``: a literal; no ``{{ }}`` variables.
* ``Equals``/``NotEquals`` (``Equal``/``NotEqual``): a string (``*`` and ``?`` are wildcards, as in Kyverno), a
  number or a boolean; the key must be of the same type (a string ``"5"`` does not equal the number 5).
  Strings that Kyverno would read as a quantity (``"1"``, ``"10Gi"``) or a duration (``"1h"``) are refused:
  Kyverno compares those by amount.
* ``AnyIn``/``AllIn``/``AnyNotIn``/``AllNotIn`` (and the deprecated ``In``/``NotIn``): the value a list of
  strings (wildcards allowed), the key a string or a list of strings. An element that is not a string, or a
  key that itself contains ``*``/``?`` (Kyverno matches it as a pattern too), never counts as "not in".
* ``GreaterThan``, ``GreaterThanOrEquals``, ``LessThan``, ``LessThanOrEquals``: a number; the key must be one.
* The ``Duration*`` operators and everything else are refused.

Wherever Kyverno's coercions could make a condition true that CEL would not, the translation is the stricter one:
a condition airgap calls true, Kyverno calls true.
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airgap.policy.cip import Doc

_EQUALS = {"Equals": "==", "Equal": "==", "NotEquals": "!=", "NotEqual": "!="}
_SETS = ("AnyIn", "AllIn", "AnyNotIn", "AllNotIn", "In", "NotIn")
_NUMERIC = {"GreaterThan": ">", "GreaterThanOrEquals": ">=", "LessThan": "<", "LessThanOrEquals": "<="}
_DURATIONS = ("DurationGreaterThanOrEquals", "DurationGreaterThan", "DurationLessThanOrEquals", "DurationLessThan")
# k8s.io/apimachinery resource.Quantity and Go's time.ParseDuration, as Kyverno tries them on strings
QUANTITY = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$"
_DURATION = re.compile(r"[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+")
_PATH = re.compile(r'\s*((?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")(?:\[[0-9]+\])*'
                   r'(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")(?:\[[0-9]+\])*)*)\s*')
_SEGMENT = re.compile(r'([A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)*")((?:\[[0-9]+\])*)')


def cel_string(text: str) -> str:
    """``text`` as a CEL string literal."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _re2_wildcard(pattern: str) -> str:
    """A Kyverno wildcard as an anchored RE2 pattern (for CEL's ``matches``)."""
    body = "".join("(?s:.*)" if c == "*" else "(?s:.)" if c == "?" else
                   ("\\" + c if c in "\\.+*?()|[]{}^$" else c) for c in pattern)
    return f"^{body}$"


def conditions_cel(doc: Doc, conditions: Any, path: str) -> str:
    """The CEL expression for an attestation's ``conditions`` (a list of ``{any: [...], all: [...]}``, all of
    which must hold)."""
    parts = []
    for i, item in enumerate(doc.list_(conditions, path)):
        ipath = f"{path}[{i}]"
        if isinstance(item, dict) and ("key" in item or "operator" in item):
            raise doc.err(ipath, "expected a mapping with any and/or all (write the condition under all:)")
        block = doc.fields(item, ipath, ("any", "all"))
        if not block.get("any") and not block.get("all"):
            raise doc.err(ipath, "expected a non-empty any or all list")
        terms = []
        for kind, join in (("any", " || "), ("all", " && ")):
            if kind in block:
                entries = doc.list_(block[kind], f"{ipath}.{kind}")
                if not entries:
                    raise doc.err(f"{ipath}.{kind}", "empty list (Kyverno calls an empty any false)")
                terms.append("(" + join.join(_condition(doc, c, f"{ipath}.{kind}[{j}]")
                                             for j, c in enumerate(entries)) + ")")
        parts.append(" && ".join(terms))
    if not parts:
        raise doc.err(path, "empty list")
    return " && ".join(f"({p})" for p in parts) if len(parts) > 1 else parts[0]


def _key(doc: Doc, raw: Any, path: str) -> str:
    """``"{{ a.b[0] }}"`` as ``predicate["a"]["b"][0]``."""
    text = doc.str_(raw, path)
    m = re.fullmatch(r"\{\{(.*)\}\}", text.strip(), re.DOTALL)
    if m is None:
        raise doc.err(path, f"expected a {{{{ field.path }}}} over the predicate, got {text!r}")
    inner = m.group(1)
    if _PATH.fullmatch(inner) is None:
        raise doc.err(path, f"unsupported JMESPath {inner.strip()!r}: only field names and [N] indexes are "
                            "supported (no functions, filters, projections or pipes)")
    out = "predicate"
    for segment in _SEGMENT.finditer(inner.strip()):
        name, indexes = segment.group(1), segment.group(2)
        try:
            field = json.loads(name) if name.startswith('"') else name
        except ValueError:
            raise doc.err(path, f"invalid quoted field {name}") from None
        out += f"[{cel_string(field)}]" + indexes
    return out


def _number(doc: Doc, value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise doc.err(path, f"expected a number, got {value!r}")
    return repr(float(value))


def _condition(doc: Doc, raw: Any, path: str) -> str:
    c = doc.fields(raw, path, ("key", "operator", "value", "message"), ("key", "operator"))
    operator = doc.str_(c["operator"], f"{path}.operator")
    key = _key(doc, c["key"], f"{path}.key")
    value = c.get("value")
    vpath = f"{path}.value"
    if isinstance(value, str) and "{{" in value:
        raise doc.err(vpath, "variables ({{ }}) in values are not supported")
    numeric = f"type({key}) in [int, uint, double]"
    if operator in _EQUALS:
        op = _EQUALS[operator]
        if isinstance(value, bool):
            return f"(type({key}) == bool && {key} {op} {'true' if value else 'false'})"
        if isinstance(value, int | float):
            return f"({numeric} && double({key}) {op} {_number(doc, value, vpath)})"
        if not isinstance(value, str):
            raise doc.err(vpath, f"{operator} compares a string, a number or a boolean, got {type(value).__name__} "
                                 "(compare lists with AnyIn/AllIn)")
        if re.fullmatch(QUANTITY, value) or _DURATION.fullmatch(value):
            raise doc.err(vpath, f"{value!r} reads as a quantity or a duration, which Kyverno compares by amount; "
                                 "not supported")
        if "*" in value or "?" in value:
            matched = f"{key}.matches({cel_string(_re2_wildcard(value))})"
            # Kyverno compares a key that reads as a quantity as a quantity: never equal to a pattern
            guard = f"type({key}) == string && !{key}.matches({cel_string(QUANTITY)})"
            return f"({guard} && {'!' if op == '!=' else ''}{matched})"
        return f"(type({key}) == string && {key} {op} {cel_string(value)})"
    if operator in _SETS:
        values = doc.list_(value, vpath) if isinstance(value, list) else None
        if values is None:
            raise doc.err(vpath, f"{operator} needs a list of strings")
        for j, v in enumerate(values):
            if not isinstance(v, str) or "{{" in v:
                raise doc.err(f"{vpath}[{j}]", f"expected a string without variables, got {v!r}")
        plain = [v for v in values if "*" not in v and "?" not in v]
        tests = ([f"e in [{', '.join(cel_string(v) for v in plain)}]"] if plain else []) + [
            f"e.matches({cel_string(_re2_wildcard(v))})" for v in values if v not in plain]
        found = " || ".join(tests) or "false"
        member = f"(type(e) == string && ({found}))"
        # "not in" only when sure: a string without wildcards of its own (Kyverno also matches the key as a pattern)
        absent = f'(type(e) == string && !e.contains("*") && !e.contains("?") && !({found}))'
        elements = f"(type({key}) == list ? {key} : [{key}])"
        macro, test = {"AnyIn": ("exists", member), "AllIn": ("all", member), "In": ("all", member),
                       "AnyNotIn": ("exists", absent), "AllNotIn": ("all", absent),
                       "NotIn": ("all", absent)}[operator]
        return f"{elements}.{macro}(e, {test})"
    if operator in _NUMERIC:
        if isinstance(value, str):
            raise doc.err(vpath, f"{operator} with a string (a quantity or a version in Kyverno) is not supported; "
                                 "give a number")
        return f"({numeric} && double({key}) {_NUMERIC[operator]} {_number(doc, value, vpath)})"
    if operator in _DURATIONS:
        raise doc.err(f"{path}.operator", f"{operator} is not supported (durations)")
    raise doc.err(f"{path}.operator", f"unsupported operator {operator!r} (supported: "
                  + ", ".join([*_EQUALS, *_SETS, *_NUMERIC]) + ")")
