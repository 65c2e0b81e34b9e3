"""The one strict JSON loader: every JSON document airgap reads (from a registry, a bundle, a cluster or a
file the user gave) goes through :func:`load_json` or :func:`json_object`.

Stricter than :func:`json.loads`, and each refusal is a one-line error naming the source and the line:

* a key twice in one object (``trust/keys.json: line 4: keys: duplicate key``): Python keeps the last value,
  other parsers the first, so a signed payload or a policy with a second ``authorities`` means different
  things to different readers. Refused, never silently resolved (fail closed);
* nesting deeper than :attr:`airgap.config.Limits.max_nesting_depth`, checked by a linear scan BEFORE the
  recursive parser runs, so a document nested 100,000 deep is an error, not a RecursionError;
* bytes that are not UTF-8 (``json.loads`` would also guess UTF-16/32 and skip a BOM; Go reads UTF-8 only);
* ``NaN``/``Infinity`` (not JSON) and, on request, any non-integer number;
* strings holding an unpaired UTF-16 surrogate (``"\\ud800"``): Python keeps it as a character nothing can
  encode, Go turns it into U+FFFD, so the two would disagree on what was signed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any, NoReturn

from airgap.config import Limits
from airgap.errors import Error, IntegrityError, first_line

ErrorFactory = Callable[[str], Error]

MAX_DEPTH = Limits().max_nesting_depth

# A JSON string lexeme (unrolled so the regex engine does not backtrack per character).
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKEN = re.compile(_STRING + r"|[\[\]{},:]")
# Only brackets and newlines matter to the depth scan (newlines to say where the limit was crossed).
_KEEP = b"[]{}\n"
_DROP = bytes(b for b in range(256) if b not in _KEEP)
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_CHUNK = 1 << 16
SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$@/-]{1,64}")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return doc


def _not_json(text: str) -> NoReturn:
    raise ValueError(f"{text} is not JSON")


def _not_integer(text: str) -> NoReturn:
    raise ValueError(f"non-integer number {text[:40]}")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_not_json)
_INTEGERS = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_not_json, parse_float=_not_integer)


def nesting_depth_error(data: bytes, max_depth: int) -> int | None:
    """The 1-based line where ``data`` (JSON text) first nests deeper than ``max_depth``, None when it does
    not. Linear time, no recursion, all in C-level loops: escaped backslashes and quotes are dropped, so
    every remaining quote opens or closes a string; what lies outside strings is reduced to brackets and
    newlines (strings hold no raw newline), and the depth is a running sum of +1/-1, a chunk at a time.
    Exact on any prefix that is valid JSON, which is all the recursive parser ever descends into."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return None
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[0::2]).translate(None, _DROP)
    depth = 0
    for start in range(0, len(brackets), _CHUNK):
        chunk = brackets[start:start + _CHUNK]
        running = list(accumulate(map(_STEP.__getitem__, chunk), initial=depth))
        if max(running) > max_depth:
            # Depth moves by one per bracket: the first value over the limit is exactly limit + 1.
            at = start + running.index(max_depth + 1) - 1
            return brackets.count(b"\n", 0, at) + 1
        depth = running[-1]
    return None


def key_text(key: object) -> str:
    """How a key is shown in a path: as is when plain (``authorities``), else quoted and cut short."""
    text = str(key)
    return text if _PLAIN_KEY.fullmatch(text) else json.dumps(text[:64])


def _key_path(prefix: str, key: str) -> str:
    shown = key_text(key)
    return f"{prefix}.{shown}" if prefix else shown


def locate_duplicate(text: str) -> tuple[int, str] | None:
    """(line, path) of the first key that repeats within one object of ``text``, None when none does.

    Only called once :func:`json.loads` has reported a duplicate (its hook does not know where it was),
    so this lexeme walk never runs on documents that parse."""
    # One frame per open object/array: its path, the keys seen (None for an array), the current key/index.
    paths: list[str] = []
    keys: list[set[str] | None] = []
    current: list[Any] = []
    last_string = ""
    for match in _TOKEN.finditer(text):
        lexeme = match.group()
        if lexeme[0] == '"':
            last_string = lexeme
        elif lexeme == ":" and keys:
            seen = keys[-1]
            if seen is None:
                continue
            try:
                key = json.loads(last_string)
            except ValueError:
                return None
            if key in seen:
                return text.count("\n", 0, match.start()) + 1, _key_path(paths[-1], key)
            seen.add(key)
            current[-1] = key
        elif lexeme in "[{":
            if not paths:
                path = ""
            elif keys[-1] is not None:
                path = _key_path(paths[-1], current[-1])
            else:
                path = f"{paths[-1]}[{current[-1]}]"
            paths.append(path)
            keys.append(set() if lexeme == "{" else None)
            current.append("" if lexeme == "{" else 0)
        elif lexeme in "]}":
            if paths:
                del paths[-1], keys[-1], current[-1]
        elif lexeme == "," and keys and keys[-1] is None:
            current[-1] += 1
    return None


def _has_surrogate(doc: Any) -> bool:
    todo = [doc]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            todo.extend(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def load_json(data: bytes | str, what: str, error: ErrorFactory = IntegrityError, *,
              integers_only: bool = False, max_depth: int = MAX_DEPTH,
              invalid: str = "{what}: not valid JSON ({detail})") -> Any:
    """``data`` parsed strictly (see the module docstring); any refusal raises ``error`` (IntegrityError for
    data from a registry or a bundle, ConfigError for files the user gave us) with a one-line message that
    starts with ``what``. ``invalid`` words the message for bytes that are not JSON at all (not UTF-8, a
    syntax error), with ``{what}`` and ``{detail}`` (the parser's reason) filled in."""
    if isinstance(data, str):
        text = data
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise error(f"{what}: holds an unpaired UTF-16 surrogate") from None
    else:
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(invalid.format(what=what, detail=f"not UTF-8: invalid byte at offset {exc.start}")) from None
    line = nesting_depth_error(raw, max_depth)
    if line is not None:
        raise error(f"{what}: line {line}: nested deeper than {max_depth} levels")
    try:
        doc = (_INTEGERS if integers_only else _DECODER).decode(text)
    except _DuplicateKey as dup:
        found = locate_duplicate(text)
        if found is None:
            raise error(f"{what}: duplicate key {json.dumps(dup.key[:64])}") from None
        raise error(f"{what}: line {found[0]}: {found[1]}: duplicate key") from None
    except ValueError as exc:
        raise error(invalid.format(what=what, detail=first_line(exc))) from None
    except RecursionError:  # not reachable after the depth scan; kept so no parser path can crash
        raise error(f"{what}: nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text) and _has_surrogate(doc):
        raise error(f"{what}: a string holds an unpaired UTF-16 surrogate")
    return doc


def json_object(data: bytes | str, what: str, error: ErrorFactory = IntegrityError) -> dict[str, Any]:
    """``data`` parsed by :func:`load_json` as a JSON object; anything else raises ``error``."""
    doc = load_json(data, what, error)
    if not isinstance(doc, dict):
        raise error(f"{what}: not a JSON object")
    return doc


def check_document(doc: dict[str, Any], fields: Sequence[str], api_version: str, kind: str, noun: str,
                   err: ErrorFactory) -> None:
    """A versioned document of ours: exactly ``fields`` (the first unknown one, else the first missing one, is
    the error) and the expected ``apiVersion`` and ``kind`` (else it is "not a NOUN")."""
    unknown = sorted(set(doc) - set(fields))
    missing = [f for f in fields if f not in doc]
    if unknown or missing:
        raise err(f"unknown field {unknown[0]!r}" if unknown else f"required field {missing[0]!r} missing")
    if doc["apiVersion"] != api_version or doc["kind"] != kind:
        raise err(f"not a {noun} (apiVersion {doc['apiVersion']!r}, kind {doc['kind']!r}; expected "
                  f"{api_version} {kind})")
