"""The strict JSON and YAML loaders (airgap.jsondoc, airgap.yamldoc): duplicate keys (guarantee 6) and hostile
structure (guarantee 7) are one-line errors naming the source, the line and the key, never another exception."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from airgap.config import Limits
from airgap.errors import ConfigError, IntegrityError, PolicyError
from airgap.jsondoc import json_object, load_json, locate_duplicate, nesting_depth_error
from airgap.yamldoc import StrictLoader, load, load_all

DEEP = 100_000

# ---- JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": 1, "a": 2}', r"^doc: line 1: a: duplicate key$"),
    ('{\n "critical": {\n  "type": "x",\n  "type": "y"\n }\n}', r"^doc: line 4: critical.type: duplicate key$"),
    ('{"a": [1, {"b": 1},\n {"c": 1, "c": 2}]}', r"^doc: line 2: a\[2\].c: duplicate key$"),
    ('{"a": 1, "\\u0061": 2}', r"^doc: line 1: a: duplicate key$"),  # equal once decoded
    ('{"x.y": {"k": 1, "k": 2}}', r'^doc: line 1: "x.y".k: duplicate key$'),
    ('[{"a":"}{:,", "a": 3}]', r"^doc: line 1: \[0\].a: duplicate key$"),  # brackets in strings are text
])
def test_json_duplicate_keys_name_line_and_path(text: str, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        load_json(text, "doc")
    with pytest.raises(IntegrityError, match=message):
        load_json(text.encode(), "doc")


def test_json_duplicate_error_class_is_the_callers() -> None:
    with pytest.raises(ConfigError, match=r"^keys.json: line 1: keys: duplicate key$"):
        json_object(b'{"keys": [], "keys": [{"name": "x"}]}', "keys.json", ConfigError)


@pytest.mark.parametrize("depth", [101, 5_000, DEEP])
@pytest.mark.parametrize(("open_", "close"), [("[", "]"), ('{"a":', "}")])
def test_json_nesting_is_bounded_before_parsing(depth: int, open_: str, close: str) -> None:
    text = open_ * depth + "1" + close * depth
    start = time.monotonic()
    with pytest.raises(IntegrityError, match=r"^doc: line 1: nested deeper than 100 levels$"):
        load_json(text.encode(), "doc")
    assert time.monotonic() - start < 1.0


def test_json_nesting_limit_is_exact_and_reports_the_line() -> None:
    limit = Limits().max_nesting_depth
    assert load_json("[" * limit + "]" * limit, "doc") is not None
    assert nesting_depth_error(b"[\n" * 150 + b"]" * 150, limit) == limit + 1
    # Brackets inside strings (with escaped quotes and backslashes around them) do not nest.
    tricky = '["\\\\", "\\"[[[", ' + '"' + "[" * 500 + '"]'
    assert load_json(tricky, "doc") == ["\\", '"[[[', "[" * 500]
    # An escaped backslash before the closing quote ends the string: what follows nests.
    with pytest.raises(IntegrityError, match="nested deeper"):
        load_json('["\\\\", ' + "[" * 200 + "]" * 200 + "]", "doc")


@pytest.mark.parametrize(("data", "message"), [
    (b"\xff{}", r"^doc: not valid JSON \(not UTF-8: invalid byte at offset 0\)$"),
    ("\ufeff{}".encode(), "not valid JSON"),  # json.loads(bytes) would skip a BOM; Go refuses it
    ('{"a": 1}'.encode("utf-16"), "not UTF-8"),  # json.loads(bytes) would guess UTF-16
    (b"{", r"^doc: not valid JSON \(Expecting property name enclosed in double quotes: line 1 column 2 "
           r"\(char 1\)\)$"),
    (b"[NaN]", r"NaN is not JSON"),
    (b"[-Infinity]", r"-Infinity is not JSON"),
    (b'["\\ud800"]', "unpaired UTF-16 surrogate"),
    (b'{"\\udc00": 1}', "unpaired UTF-16 surrogate"),
    (b"[" + b"1" * 5000 + b"]", "not valid JSON"),  # over Python's int digit limit
])
def test_json_refusals(data: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        load_json(data, "doc")


def test_json_wording_of_not_json_is_the_callers() -> None:
    with pytest.raises(IntegrityError, match=r"^body is not JSON \(doc\)$"):
        load_json(b"{", "doc", invalid="body is not JSON ({what})")
    with pytest.raises(IntegrityError, match=r"^doc: line 1: a: duplicate key$"):  # strictness keeps its wording
        load_json(b'{"a":1,"a":1}', "doc", invalid="body is not JSON")


def test_json_accepts_what_is_json() -> None:
    assert load_json(b'{"e": "\\ud83d\\ude00", "f": 1.5, "n": null}', "doc") == {"e": "\U0001f600", "f": 1.5,
                                                                               "n": None}
    with pytest.raises(IntegrityError, match="non-integer number 1.5"):
        load_json(b"[1.5]", "doc", integers_only=True)
    with pytest.raises(IntegrityError, match="^doc: not a JSON object$"):
        json_object(b"[]", "doc")


def test_locate_duplicate_finds_nothing_in_clean_text() -> None:
    assert locate_duplicate('{"a": {"b": 1}, "b": [{"a": 1}, {"a": 2}]}') is None


# ---- YAML ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ("kind: AirgapPolicy\nspec:\n  noMatchPolicy: deny\n  noMatchPolicy: allow\n",
     r"^p.yaml: line 4: spec.noMatchPolicy: duplicate key$"),
    ("spec:\n  authorities: [{key: {name: a}}]\n  authorities: [{static: {action: pass}}]\n",
     r"^p.yaml: line 3: spec.authorities: duplicate key$"),
    ("a: [{x: 1, x: 2}]\n", r"^p.yaml: line 1: a\[0\].x: duplicate key$"),
    ("1: a\n0x1: b\n", r"^p.yaml: line 2: 1: duplicate key$"),  # keys compare as the values they load as
    ("on: 1\ntrue: 2\n", r"^p.yaml: line 2: True: duplicate key$"),
    ("---\nok: 1\n---\na: 1\nb: 2\na: 3\n", r"^p.yaml: line 6: a: duplicate key$"),  # lines count across documents
    ("m: {<<: {a: 1}, <<: {b: 2}}\n", r'^p.yaml: line 1: m."<<": duplicate key$'),
])
def test_yaml_duplicate_keys_name_line_and_path(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_all(text, "p.yaml", PolicyError)


def test_yaml_merge_keys_override_but_never_ambiguously() -> None:
    doc = load("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n", "p.yaml")
    assert doc["m"] == {"x": 3, "y": 2}  # written keys override merged ones (YAML's merge semantics)
    assert load("a: &a {x: 1}\nb: &b {y: 2}\nm: {<<: [*a, *b]}\n", "p.yaml")["m"] == {"x": 1, "y": 2}
    with pytest.raises(ConfigError, match=r"^p.yaml: line 2: key x is merged in from two mappings"):
        load("a: &a {x: 1}\nb: &b {x: 2}\nm: {<<: [*a, *b]}\n", "p.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("- " * 101 + "x\n", r"^p.yaml: line 1: nested deeper than 100 levels$"),
    ("[" * 500 + "]" * 500, r"^p.yaml: line 1: nested deeper than 100 levels$"),
    ("[" * DEEP + "]" * DEEP, r"^p.yaml: invalid YAML at line 1 column \d+: exceeded maximum nesting depth$"),
    ("a: &a " + "[" * 60 + "]" * 60 + "\nb: " + "[" * 60 + "*a" + "]" * 60 + "\n",
     r"^p.yaml: line 2: nested deeper than 100 levels$"),  # an alias nests as deep as what it repeats
    ("a: &x [1, *x]\n", r"^p.yaml: line 1: a\[1\]: alias \*x repeats a node inside itself \(a cycle\)$"),
    ("a: &x {b: *x}\n", r"alias \*x repeats a node inside itself"),
    ("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)),
     r"^p.yaml: line \d+: expands to more than 1000000 nodes \(aliases repeat too much\)$"),
])
def test_yaml_hostile_structure_is_an_error(text: str, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(ConfigError, match=message):
        load_all(text, "p.yaml")
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize(("text", "message"), [
    ("!!set {a, b}\n", "tag 'set' is not supported"),
    ("a: !!binary aGk=\n", "tag 'binary' is not supported"),
    ("!!omap [a: 1]\n", "tag 'omap' is not supported"),
    ("? [1]\n: 2\n", "a mapping key must be a scalar"),
    ("d: 2024-02-30\n", r"invalid YAML at line 1 column 4: day is out of range for month"),
    ("n: 1" + "0" * 5000 + "\n", "invalid YAML at line 1 column 4: Exceeds the limit"),
    ("a: *nowhere\n", r"^p.yaml: line 1: alias \*nowhere names no anchor before it$"),
    ("a: &x 1\nb: &x 2\n", "anchor &x is defined twice"),
    ("a: \ud800\n", r"^p.yaml: line 1: holds an unpaired UTF-16 surrogate$"),
    ("a: !custom 1\n", "could not determine a constructor"),
    ("a: [1\n", r"^p.yaml: invalid YAML at line 2 column 1: "),
])
def test_yaml_refusals(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_all(text, "p.yaml")


def test_yaml_loads_what_the_safe_loader_loads() -> None:
    text = ("---\napiVersion: v1\nkind: X\nspec: {a: [1, 2.5, true, null, '0x1', 2024-01-02], b: &r {c: d},"
            " e: *r}\n---\n# empty\n---\n- one\n")
    assert load_all(text, "p.yaml") == list(yaml.safe_load_all(text))
    assert load("", "p.yaml") is None
    with pytest.raises(ConfigError, match="expected one YAML document, found 2"):
        load("a: 1\n---\nb: 2\n", "p.yaml")


def test_yaml_loader_runs_on_libyaml_when_pyyaml_has_it() -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml")
    from yaml._yaml import CParser

    assert issubclass(StrictLoader, CParser)


def test_yaml_loader_without_libyaml_is_as_strict() -> None:
    """PyYAML built without libyaml: the loader falls back to SafeLoader with the same composer."""
    import subprocess
    import sys

    code = ("import yaml; yaml.__with_libyaml__ = False\n"
            "from airgap.yamldoc import StrictLoader, load_all\n"
            "from airgap.errors import ConfigError\n"
            "assert StrictLoader.__mro__[1] is yaml.SafeLoader\n"
            "assert load_all('a: [1, {b: c}]', 'p') == [{'a': [1, {'b': 'c'}]}]\n"
            "for text in ('a: 1\\na: 2\\n', '- ' * 5000 + 'x', 'a: &x [*x]'):\n"
            "    try:\n"
            "        load_all(text, 'p')\n"
            "    except ConfigError as exc:\n"
            "        print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["p: line 2: a: duplicate key", "p: line 1: nested deeper than 100 levels",
                                "p: line 1: a[0]: alias *x repeats a node inside itself (a cycle)"]


def test_json_and_yaml_agree_on_a_json_document() -> None:
    text = json.dumps({"a": [1, {"b": "c"}], "d": None, "e": True})
    assert load(text, "doc") == load_json(text, "doc")
