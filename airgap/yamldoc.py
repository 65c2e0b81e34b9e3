"""The one strict YAML loader: every YAML document airgap reads (policy files, bundle specs, a bundle's
``trust/policy.yaml``) goes through :class:`StrictLoader`, via :func:`load_all` or :func:`load`.

It is PyYAML's safe loader (libyaml's C parser when PyYAML has it) with a composer of our own that refuses,
with the line (and the path of the key) in a one-line error:

* a key twice in one mapping (``policy.yaml: line 9: spec.authorities: duplicate key``), compared as the
  values they load as (``1`` and ``0x1``, ``true`` and ``yes`` are the same key): PyYAML keeps the last,
  so a second ``authorities:`` or ``noMatchPolicy:`` would silently win;
* nesting deeper than :attr:`airgap.config.Limits.max_nesting_depth`, counted as it is composed (so
  before any recursion over it) and through aliases (an alias nests as deep as what it repeats);
* aliases of an anchor inside itself (a cyclic document: every walk over it would recurse forever), and
  documents that aliases expand to more than :attr:`airgap.config.Limits.max_yaml_nodes` nodes;
* non-scalar keys, strings holding an unpaired surrogate, and the tags that do not map to JSON types
  (``!!set``, ``!!omap``, ``!!pairs``, ``!!binary``): every reader expects what Kubernetes would see.

Merge keys (``<<: *base``) keep their YAML meaning, which IS overriding: keys written in the mapping
override the merged ones (that is what merging is for, and what go-yaml and kubectl do). What stays
ambiguous is refused: two ``<<`` keys in one mapping (a duplicate key like any other) and a key that two
merged mappings both supply (PyYAML versions disagree on which of them wins).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from airgap.config import Limits
from airgap.errors import ConfigError, Error, first_line
from airgap.jsondoc import SURROGATE, key_text

ErrorFactory = Callable[[str], Error]

MAX_DEPTH = Limits().max_nesting_depth
MAX_NODES = Limits().max_yaml_nodes

MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_NON_JSON_TAGS = ("tag:yaml.org,2002:set", "tag:yaml.org,2002:omap", "tag:yaml.org,2002:pairs",
                  "tag:yaml.org,2002:binary")

_BASE = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader

if yaml.__with_libyaml__:
    class _SafeLoader(Composer, yaml.CSafeLoader):
        """libyaml's scanner and parser (the slow half of pure-Python PyYAML) with Python's composer in front
        of the C one in the MRO, so that ours (below) composes the nodes from libyaml's events."""
else:  # pragma: no cover - PyYAML built without libyaml
    _SafeLoader = yaml.SafeLoader  # type: ignore[misc,assignment]


class StrictYAMLError(MarkedYAMLError):
    """A document PyYAML would load that airgap refuses; ``path`` is the key path (``spec.authorities``),
    empty when the problem is not about one key."""

    def __init__(self, problem: str, mark: Any, path: str = "") -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.path = path


class StrictLoader(_SafeLoader):
    """PyYAML's safe loader (``CSafeLoader`` when PyYAML has libyaml, else ``SafeLoader``) with the composer
    and constructor changes described in the module docstring."""

    def __init__(self, stream: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
        surrogate = SURROGATE.search(stream)
        if surrogate:  # libyaml would fail to encode it; the pure parser would load it into strings
            at = surrogate.start()
            line = stream.count("\n", 0, at)
            raise StrictYAMLError("holds an unpaired UTF-16 surrogate",
                                  Mark("<text>", at, line, at - (stream.rfind("\n", 0, at) + 1), None, 0))
        _BASE.__init__(self, stream)  # type: ignore[arg-type]  # parser, constructor, resolver (not Composer's)
        Composer.__init__(self)
        self.max_depth, self.max_nodes = max_depth, max_nodes
        self._depth = 0
        self._nodes = 0
        self._path: list[str] = []
        self._shape: dict[Node, tuple[int, int]] = {}  # composed node -> (nodes it expands to, nesting height)

    # ---- composing ------------------------------------------------------------------------------

    def _where(self) -> str:
        out = ""
        for part in self._path:
            out = out + part if part.startswith("[") or not out else f"{out}.{part}"
        return out

    def _count(self, nodes: int, height: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > self.max_nodes:
            raise StrictYAMLError(f"expands to more than {self.max_nodes} nodes (aliases repeat too much)", mark)
        if self._depth + height > self.max_depth:
            raise StrictYAMLError(f"nested deeper than {self.max_depth} levels", mark)

    def compose_document(self) -> Node | None:
        self._nodes = 0
        self._shape = {}
        node = super().compose_document()
        self._shape = {}
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event: Any = self.get_event()
            target = self.anchors.get(event.anchor)
            if target is None:
                raise StrictYAMLError(f"alias *{event.anchor} names no anchor before it", event.start_mark)
            shape = self._shape.get(target)
            if shape is None:
                raise StrictYAMLError(f"alias *{event.anchor} repeats a node inside itself (a cycle)",
                                      event.start_mark, self._where())
            self._count(*shape, event.start_mark)
            return target
        event = self.peek_event()
        if event.anchor is not None and event.anchor in self.anchors:
            raise StrictYAMLError(f"anchor &{event.anchor} is defined twice", event.start_mark)
        self.descend_resolver(parent, index)
        before = self._nodes
        if self.check_event(ScalarEvent):
            self._count(1, 0, event.start_mark)
            node: Node = self.compose_scalar_node(event.anchor)
            if isinstance(node.value, str) and SURROGATE.search(node.value):
                raise StrictYAMLError("a string holds an unpaired UTF-16 surrogate", event.start_mark,
                                      self._where())
            height = 0
        else:
            self._depth += 1
            self._count(1, 0, event.start_mark)
            try:
                if self.check_event(MappingStartEvent):
                    node = self._compose_mapping(event.anchor)
                else:
                    node = self._compose_sequence(event.anchor)
                height = 1 + max((self._shape[n][1] for n in _children(node)), default=0)
            finally:
                self._depth -= 1
        self.ascend_resolver()
        self._shape[node] = (self._nodes - before, height)
        return node

    def _compose_sequence(self, anchor: str | None) -> Node:
        start: Any = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(SequenceNode, None, start.implicit)  # type: ignore[no-untyped-call]
        node = SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        index = 0
        while not self.check_event(SequenceEndEvent):
            self._path.append(f"[{index}]")
            node.value.append(self.compose_node(node, index))
            self._path.pop()
            index += 1
        end: Any = self.get_event()
        node.end_mark = end.end_mark
        return node

    def _compose_mapping(self, anchor: str | None) -> Node:
        start: Any = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(MappingNode, None, start.implicit)  # type: ignore[no-untyped-call]
        node = MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        seen: set[Hashable] = set()
        while not self.check_event(MappingEndEvent):
            key_node = self.compose_node(node, None)
            key = self.key_of(key_node)
            self._path.append(key_text(key))
            if key in seen:
                raise StrictYAMLError("duplicate key", key_node.start_mark, self._where())
            seen.add(key)
            node.value.append((key_node, self.compose_node(node, key_node)))
            self._path.pop()
        end: Any = self.get_event()
        node.end_mark = end.end_mark
        return node

    def key_of(self, node: Node) -> Hashable:
        """A mapping key as the value it loads as (merge keys as ``<<``); only scalars may be keys."""
        if not isinstance(node, ScalarNode):
            raise StrictYAMLError("a mapping key must be a scalar, not a sequence or mapping", node.start_mark,
                                  self._where())
        if node.tag in (MERGE_TAG, _VALUE_TAG):
            return str(node.value)
        key = self.construct_object(node)
        if not isinstance(key, Hashable):  # pragma: no cover - scalars construct to hashable values
            raise StrictYAMLError("unhashable key", node.start_mark, self._where())
        return key

    # ---- constructing ---------------------------------------------------------------------------

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        if node.tag in _NON_JSON_TAGS:
            raise ConstructorError(None, None, f"tag {node.tag.rsplit(':', 1)[-1]!r} is not supported "
                                   "(only what JSON can say)", node.start_mark)
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # e.g. a timestamp on 2024-02-30, an int of 5,000 digits
            raise ConstructorError(None, None, first_line(exc), node.start_mark) from None

    def flatten_mapping(self, node: MappingNode) -> None:
        """Merge keys, as the module docstring says: written keys win, merged sources must not collide."""
        merges = [value for key, value in node.value if key.tag == MERGE_TAG]
        for key, _ in node.value:
            if key.tag == _VALUE_TAG:
                key.tag = "tag:yaml.org,2002:str"
        if not merges:
            return
        own = [(k, v) for k, v in node.value if k.tag != MERGE_TAG]
        sources: list[MappingNode] = []
        for value in merges:
            subs = value.value if isinstance(value, SequenceNode) else [value]
            for sub in subs:
                if not isinstance(sub, MappingNode):
                    raise ConstructorError("while merging into a mapping", node.start_mark,
                                           f"expected a mapping to merge, found a {sub.id}", sub.start_mark)
                sources.append(sub)
        merged: dict[Hashable, tuple[Node, Node]] = {}
        for sub in sources:
            self.flatten_mapping(sub)
            for key_node, value_node in sub.value:
                key = self.key_of(key_node)
                if key in merged and merged[key][1] is not value_node:
                    raise StrictYAMLError(f"key {key_text(key)} is merged in from two mappings (which one "
                                          "wins is ambiguous)", key_node.start_mark)
                merged[key] = (key_node, value_node)
        written = {self.key_of(k) for k, _ in own}
        node.value = [pair for key, pair in merged.items() if key not in written] + own


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value)


def describe(exc: yaml.YAMLError) -> tuple[int, str]:
    """(1-based line or 0, one-line problem) of a YAML error; the problem starts with the key path when
    the error is about one key (``spec.authorities: duplicate key``)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 0
    problem = getattr(exc, "problem", None) or first_line(exc)
    path = getattr(exc, "path", "")
    return line, f"{path}: {problem}" if path else str(problem)


def _message(what: str, exc: yaml.YAMLError) -> str:
    line, problem = describe(exc)
    if isinstance(exc, StrictYAMLError):
        return f"{what}: line {line}: {problem}" if line else f"{what}: {problem}"
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"{what}: invalid YAML{at}: {problem}"


def load_all(text: str, what: str, error: ErrorFactory = ConfigError, *, max_depth: int = MAX_DEPTH,
             max_nodes: int = MAX_NODES) -> list[Any]:
    """Every document of a multi-document YAML stream, loaded strictly; ``error(message)`` otherwise."""
    try:
        loader = StrictLoader(text, max_depth=max_depth, max_nodes=max_nodes)
    except yaml.YAMLError as exc:
        raise error(_message(what, exc)) from None
    try:
        docs = []
        while loader.check_node():
            docs.append(loader.construct_document(loader.get_node()))
        return docs
    except yaml.YAMLError as exc:
        raise error(_message(what, exc)) from None
    finally:
        loader.dispose()


def load(text: str, what: str, error: ErrorFactory = ConfigError) -> Any:
    """The single document of ``text`` (None when empty), loaded strictly."""
    docs = load_all(text, what, error)
    if len(docs) > 1:
        raise error(f"{what}: expected one YAML document, found {len(docs)}")
    return docs[0] if docs else None
