"""Regular expressions written in Go's syntax (RE2), matched the way airgap matches them: the WHOLE string.

policy-controller (``issuerRegExp``/``subjectRegExp``), Kyverno (the same names in ``keyless``) and cosign
(``--certificate-identity-regexp``, ``--certificate-oidc-issuer-regexp``) compile these with Go's ``regexp``
package and call ``MatchString``: RE2 syntax, and a match ANYWHERE in the string is enough. airgap keeps its
stricter rule (the whole string must match, as if the pattern were ``^(?:...)$``; see
:func:`compile_go` and the warnings :class:`~airgap.policy.policyset.PolicySet` collects for unanchored
patterns), but reads every pattern with Go's syntax, never Python's:

* constructs RE2 lacks are refused with a one-line error instead of being given Python's meaning:
  backreferences (``\\1``, ``(?P=name)``), lookahead/lookbehind (``(?=``, ``(?!``, ``(?<=``, ``(?<!``),
  atomic groups ``(?>``, possessive quantifiers (``a*+``: Go calls any repeated repetition invalid),
  conditionals ``(?(1)...)``, comments ``(?#...)``, the flags ``x``/``a``/``L``/``u``, and escapes that
  are not RE2 or mean something else in Python (``\\Z``, ``\\u``, ``\\U``, ``\\N``, ``\\g``, ``[\\b]``...);
* constructs both have but with different meanings are translated to Python's spelling of Go's meaning:
  ``\\d``, ``\\s``, ``\\w``, ``\\b`` are ASCII (``[0-9]``, ``[\\t\\n\\f\\r ]``, ``[0-9A-Za-z_]``); ``$``
  without ``(?m)`` is the end of the text only (``\\z``; Python's ``$`` also matches before a final
  newline); ``\\12`` is an octal escape (a backreference in Python); ``\\x{263a}``, ``\\Q...\\E``,
  ``[[:alpha:]]`` and Go's scoped flags (``a(?i)b`` applies ``i`` up to the end of the group, ``U``
  swaps greedy and lazy) become their Python equivalents; a ``{`` that does not start a repetition is a
  literal (Python reads ``x{,3}`` as a repetition);
* what Python's ``re`` cannot express is refused rather than approximated: Unicode classes ``\\pL``,
  ``\\p{Greek}`` and ``\\C``.

One difference remains: under ``(?i)`` Python folds ``İ`` (U+0130) and ``ı`` (U+0131) with ``i``; Go does not.
Nothing here touches the network or the file system; patterns come from trusted policy files and the command
line, and their size and nesting are bounded anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from airgap.errors import PolicyError

MAX_LENGTH = 4096
MAX_DEPTH = 100
MAX_REPEAT = 1000  # Go's limit for {n,m}
MAX_RUNE = 0x10FFFF

_DIGIT = ((0x30, 0x39),)
_SPACE = ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20))  # RE2's \s: \t \n \f \r and space (not \v)
_WORD = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_PERL = {"d": _DIGIT, "s": _SPACE, "w": _WORD}
_POSIX = {
    "alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "ascii": ((0x00, 0x7F),),
    "blank": ((0x09, 0x09), (0x20, 0x20)),
    "cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "digit": _DIGIT,
    "graph": ((0x21, 0x7E),),
    "lower": ((0x61, 0x7A),),
    "print": ((0x20, 0x7E),),
    "punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "upper": ((0x41, 0x5A),),
    "word": _WORD,
    "xdigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
}
_CHAR_ESCAPES = {"a": 0x07, "f": 0x0C, "t": 0x09, "n": 0x0A, "r": 0x0D, "v": 0x0B}
_NOT_RE2_ESCAPES = {
    "Z": "\\Z is not RE2 (in Python it is the end of the string); write \\z or $",
    "u": "\\u is Python's Unicode escape, not RE2; write \\x{...}",
    "U": "\\U is Python's Unicode escape, not RE2; write \\x{...}",
    "N": "\\N{...} is Python's named-character escape, not RE2",
    "g": "\\g<...> is a Python backreference, not RE2",
    "k": "\\k<...> is a backreference, not RE2",
    "G": "\\G is not RE2",
    "K": "\\K is not RE2",
    "R": "\\R is not RE2",
    "X": "\\X is not RE2",
    "E": "\\E without \\Q is not RE2",
    "C": "\\C (any byte) is not supported",
}


def _regexp_error(source: str, message: str) -> PolicyError:
    return PolicyError(f"invalid regexp {source!r}: {message}")


@dataclass(frozen=True)
class GoRegexp:
    """A pattern in Go's syntax and its Python equivalent.

    ``python`` matches exactly what ``source`` matches in Go when both must match the whole string (use it
    with :func:`re.fullmatch`); ``anchored`` says whether every top-level alternative starts with ``^``/``\\A``
    and ends with ``$``/``\\z``, i.e. whether Go's search and airgap's whole-string match agree."""

    source: str
    python: str
    anchored: bool
    _compiled: re.Pattern[str] = field(repr=False, compare=False, hash=False)

    def fullmatch(self, text: str) -> bool:
        return self._compiled.fullmatch(text) is not None


def compile_go(source: str) -> GoRegexp:
    """Read ``source`` as Go's ``regexp`` does; raise :class:`PolicyError` ``invalid regexp '...': why``."""
    if not isinstance(source, str):
        raise PolicyError(f"invalid regexp: expected a string, got {type(source).__name__}")
    if len(source) > MAX_LENGTH:
        raise _regexp_error(source[:40] + "...", f"longer than {MAX_LENGTH} characters")
    parser = _Parser(source)
    python, alternatives = parser.alternation(_Flags(), 0)
    if parser.pos < len(source):  # only a ')' stops the top level early
        raise _regexp_error(source, "unexpected )")
    anchored = all(kinds and kinds[0] == "begin" and kinds[-1] == "end" for kinds in alternatives)
    try:
        compiled = re.compile(python)
    except re.error as exc:  # a translation bug, not the author's mistake: still refuse, never guess
        raise _regexp_error(source, f"cannot be translated ({exc})") from None
    return GoRegexp(source, python, anchored, compiled)


def wildcard_regexp(pattern: str) -> str:
    """Kyverno's wildcard (``*`` any run of characters, ``?`` exactly one) as a Python pattern for fullmatch."""
    return "".join("(?s:.*)" if c == "*" else "(?s:.)" if c == "?" else _literal(ord(c)) for c in pattern)


@dataclass(frozen=True)
class _Flags:
    i: bool = False  # fold case
    m: bool = False  # ^ and $ match at line boundaries
    s: bool = False  # . matches \n
    U: bool = False  # ungreedy: swap x* and x*?


@dataclass
class _Atom:
    python: str
    kind: str = "other"  # begin | end | flags | other
    single: bool = True  # can take a quantifier as is


_SPECIAL = frozenset(".^$*+?{}[]\\|()")
_CLASS_SPECIAL = frozenset("\\]^-[&~|")


def _char(cp: int, in_class: bool = False) -> str:
    """One code point in Python pattern syntax (escaped only where Python needs it, to stay readable)."""
    c = chr(cp)
    if c in (_CLASS_SPECIAL if in_class else _SPECIAL):
        return "\\" + c
    if 0x20 <= cp <= 0x7E or (cp > 0x7F and c.isprintable()):
        return c
    if cp < 0x100:
        return f"\\x{cp:02x}"
    return f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def _literal(cp: int, fold: bool = False) -> str:
    text = _char(cp)
    c = chr(cp)
    return f"(?i:{text})" if fold and c.lower() != c.upper() else text


def _complement(ranges: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    out, low = [], 0
    for lo, hi in sorted(ranges):
        if lo > low:
            out.append((low, lo - 1))
        low = max(low, hi + 1)
    if low <= MAX_RUNE:
        out.append((low, MAX_RUNE))
    return out


def _fold(ranges: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> list[tuple[int, int]]:
    """An ASCII class as Go folds it under ``(?i)``: both cases, plus the Kelvin sign (k) and long s (s)."""
    out = list(ranges)
    members = {cp for lo, hi in ranges for cp in range(lo, min(hi, 0x7F) + 1)}
    for cp in members:
        c = chr(cp)
        if c.isalpha():
            out.append((ord(c.swapcase()),) * 2)
    if members & {ord("k"), ord("K")}:
        out.append((0x212A, 0x212A))
    if members & {ord("s"), ord("S")}:
        out.append((0x17F, 0x17F))
    return out


def _perl_ranges(letter: str, fold: bool) -> list[tuple[int, int]]:
    """``\\d \\s \\w`` (and their negations ``\\D \\S \\W``) as explicit ranges, folded under ``(?i)`` first."""
    base = _PERL[letter.lower()]
    folded = _fold(base) if fold else list(base)
    return _complement(tuple(folded)) if letter.isupper() else folded


def _class_text(ranges: list[tuple[int, int]], negate: bool) -> str:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    if not merged:  # an empty set: nothing matches it (a negated full range)
        return "[^\\x00-\\U0010ffff]" if not negate else "(?s:.)"
    body = "".join(_char(lo, True) if lo == hi else f"{_char(lo, True)}-{_char(hi, True)}" for lo, hi in merged)
    return f"[{'^' if negate else ''}{body}]"


class _Parser:
    """Recursive descent over Go's regexp grammar (regexp/syntax with the Perl flags ``regexp.Compile`` uses),
    emitting Python as it goes. Flags are applied to each atom (``(?i:x)``, ``(?s:.)``, ``(?m:^)``) because
    Go's ``(?i)`` reaches across ``|`` to the end of its group, which no Python group boundary can mirror."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0

    def error(self, message: str) -> PolicyError:
        return _regexp_error(self.src, message)

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.src[i] if i < len(self.src) else ""

    # ---- structure -------------------------------------------------------------------------------

    def alternation(self, flags: _Flags, depth: int) -> tuple[str, list[list[str]]]:
        if depth > MAX_DEPTH:
            raise self.error(f"nested more than {MAX_DEPTH} groups deep")
        texts, kinds = [], []
        while True:
            atoms, flags = self.sequence(flags, depth)
            texts.append("".join(a.python for a in atoms))
            kinds.append([a.kind for a in atoms if a.kind != "flags"])
            if self.peek() != "|":
                return "|".join(texts), kinds
            self.pos += 1

    def sequence(self, flags: _Flags, depth: int) -> tuple[list[_Atom], _Flags]:
        atoms: list[_Atom] = []
        while self.pos < len(self.src) and self.peek() not in "|)":
            c = self.peek()
            if c in "*+?" or (c == "{" and self.repeat_spec() is not None):
                # Go's flag groups push nothing: a quantifier after (?i) takes the atom before it
                target = next((i for i in range(len(atoms) - 1, -1, -1) if atoms[i].kind != "flags"), None)
                if target is None:
                    raise self.error(f"missing argument to repetition operator {c}")
                atoms[target] = self.quantify(atoms[target], flags)
                continue
            if c == "(":
                atom, flags = self.group(flags, depth)
                atoms.append(atom)
                continue
            self.pos += 1
            if c == "[":
                atoms.append(_Atom(self.char_class(flags)))
            elif c == ".":
                atoms.append(_Atom("(?s:.)" if flags.s else "."))
            elif c == "^":
                atoms.append(_Atom("(?m:^)", single=False) if flags.m else _Atom("^", "begin", single=False))
            elif c == "$":
                if flags.m:
                    atoms.append(_Atom("(?m:$)", single=False))
                else:  # Go's $ is \z; Python's $ also matches before a final newline (the same at the very end)
                    atoms.append(_Atom("$" if self.pos == len(self.src) else "\\Z", "end", single=False))
            elif c == "\\" and self.peek() == "Q":  # \Q...\E: literals, a quantifier takes the last one only
                end = self.src.find("\\E", self.pos + 1)
                stop = len(self.src) if end < 0 else end
                atoms += [_Atom(_literal(ord(ch), flags.i)) for ch in self.src[self.pos + 1:stop]]
                self.pos = stop if end < 0 else end + 2
            elif c == "\\":
                atoms.append(self.escape(flags))
            else:
                atoms.append(_Atom(_literal(ord(c), flags.i)))
        return atoms, flags

    def quantify(self, atom: _Atom, flags: _Flags) -> _Atom:
        start, c = self.pos, self.peek()
        if c == "{":
            spec = self.repeat_spec()
            assert spec is not None  # noqa: S101 - the caller checked
            text, self.pos = spec
        else:
            text, self.pos = c, self.pos + 1
        lazy = self.peek() == "?"
        if lazy:
            self.pos += 1
        if flags.U:
            lazy = not lazy
        nxt = self.peek()
        if nxt in ("*", "+", "?") or (nxt == "{" and self.repeat_spec() is not None):
            raise self.error(f"invalid nested repetition operator {self.src[start:self.pos]}{nxt} "
                             "(possessive and repeated quantifiers are not RE2)")
        body = atom.python if atom.single else f"(?:{atom.python})"
        return _Atom(f"{body}{text}{'?' if lazy else ''}", single=False)

    def repeat_spec(self) -> tuple[str, int] | None:
        """``{n}``, ``{n,}``, ``{n,m}`` at the current position: (its Python text, the position after it);
        None when the ``{`` is a literal (Go's rule)."""
        m = re.compile(r"\{([0-9]+)(,([0-9]*))?\}").match(self.src, self.pos)
        if m is None:
            return None
        low = int(m.group(1))
        high = low if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
        if low > MAX_REPEAT or (high is not None and (high > MAX_REPEAT or high < low)):
            raise self.error(f"invalid repeat count {m.group(0)}")
        return m.group(0), m.end()

    def group(self, flags: _Flags, depth: int) -> tuple[_Atom, _Flags]:
        """At ``(``: a group (always non-capturing in Python), or a flag change for the rest of this group."""
        rest = self.src[self.pos:]
        inner = flags
        if rest.startswith("(?"):
            named = re.match(r"\(\?P?<([^>]*)>", rest)
            if named and not rest.startswith(("(?<=", "(?<!")):
                name = named.group(1)
                if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                    raise self.error(f"invalid named capture {named.group(0)}")
                self.pos += named.end()
            else:
                refused = self.refused_group(rest)
                if refused:
                    raise self.error(refused)
                m = re.match(r"\(\?([A-Za-z-]*)([:)])", rest)
                if m is None:
                    raise self.error(f"invalid or unsupported group {rest[:4]!r}")
                inner = self.flags(m.group(1), flags)
                self.pos += m.end()
                if m.group(2) == ")":  # (?i): for the rest of the current group
                    return _Atom("", "flags"), inner
        else:
            self.pos += 1
        python, _ = self.alternation(inner, depth + 1)
        if self.peek() != ")":
            raise self.error("missing closing )")
        self.pos += 1
        return _Atom(f"(?:{python})"), flags

    @staticmethod
    def refused_group(rest: str) -> str:
        for prefix, why in (("(?=", "lookahead (?=...) is not RE2"), ("(?!", "lookahead (?!...) is not RE2"),
                            ("(?<=", "lookbehind (?<=...) is not RE2"), ("(?<!", "lookbehind (?<!...) is not RE2"),
                            ("(?>", "atomic groups (?>...) are not RE2"),
                            ("(?(", "conditionals (?(...)...) are not RE2"),
                            ("(?#", "comments (?#...) are not RE2"),
                            ("(?P=", "backreferences (?P=name) are not RE2"),
                            ("(?P>", "recursion (?P>name) is not RE2"), ("(?R", "recursion (?R) is not RE2"),
                            ("(?|", "branch reset groups (?|...) are not RE2")):
            if rest.startswith(prefix):
                return why
        if re.match(r"\(\?[+-]?\d", rest) or rest.startswith("(?&"):
            return "recursion is not RE2"
        return ""

    def flags(self, text: str, flags: _Flags) -> _Flags:
        """Go's flag syntax: ``xyz``, ``-xyz`` or ``xy-z`` over ``i m s U`` (one ``-``, followed by a flag)."""
        on, _, off = text.partition("-")
        if "-" in off or ("-" in text and not off):
            raise self.error(f"invalid flags (?{text}...)")
        for letter in on + off:
            if letter == "x":
                raise self.error("the verbose flag (?x) is not RE2")
            if letter not in "imsU":
                raise self.error(f"the flag {letter!r} is not RE2 (RE2 has i, m, s and U)")
        changes = {letter: True for letter in on} | {letter: False for letter in off}
        return replace(flags, **changes)

    # ---- escapes and classes ---------------------------------------------------------------------

    def escape(self, flags: _Flags) -> _Atom:
        """After a ``\\`` outside a class."""
        c = self.peek()
        if not c:
            raise self.error("trailing backslash at end of expression")
        if c == "A":
            self.pos += 1
            return _Atom("\\A", "begin", single=False)
        if c == "z":
            self.pos += 1
            return _Atom("\\Z", "end", single=False)
        if c == "b":
            self.pos += 1
            return _Atom("(?a:\\b)")
        if c == "B":  # Python's \B never matches in an empty string; RE2's does (no word character on either side)
            self.pos += 1
            word = "[0-9A-Za-z_]"
            return _Atom(f"(?:(?<={word})(?={word})|(?<!{word})(?!{word}))")
        if c.lower() in _PERL:
            self.pos += 1
            return _Atom(_class_text(_perl_ranges(c, flags.i), False))
        if c in "pP":
            raise self.error(f"Unicode character classes (\\{c}...) are not supported")
        return _Atom(_literal(self.char_escape(), flags.i))

    def char_escape(self) -> int:
        """A ``\\`` escape that stands for one character (also inside classes); the position is past the
        backslash. Refuses what RE2 lacks and what Python would read differently."""
        c = self.peek()
        if not c:
            raise self.error("trailing backslash at end of expression")
        self.pos += 1
        if c in "1234567" and self.peek() and self.peek() in "01234567" or c == "0":
            value = int(c)
            for _ in range(2):
                if self.peek() and self.peek() in "01234567":
                    value = value * 8 + int(self.peek())
                    self.pos += 1
                else:
                    break
            return value
        if c in "0123456789":
            raise self.error(f"backreferences (\\{c}) are not RE2")
        if c == "x":
            m = re.compile(r"\{([0-9A-Fa-f]+)\}|([0-9A-Fa-f]{2})").match(self.src, self.pos)
            if m is None:
                raise self.error("invalid escape sequence \\x (write \\xFF or \\x{10FFFF})")
            value = int(m.group(1) or m.group(2), 16)
            if value > MAX_RUNE:
                raise self.error(f"invalid escape sequence \\x{m.group(0)}: beyond U+10FFFF")
            self.pos = m.end()
            return value
        if c in _CHAR_ESCAPES:
            return _CHAR_ESCAPES[c]
        if c.isascii() and not c.isalnum():
            return ord(c)  # escaped punctuation is itself
        if c in _NOT_RE2_ESCAPES:
            raise self.error(_NOT_RE2_ESCAPES[c])
        raise self.error(f"invalid escape sequence \\{c}")

    def char_class(self, flags: _Flags) -> str:
        """After ``[``: a bracket expression as Go reads it (``]`` first is literal, ``-`` is literal unless it
        makes a range, ``[:name:]`` POSIX classes, Perl classes inside), emitted as explicit ranges."""
        negate = self.peek() == "^"
        if negate:
            self.pos += 1
        literal: list[tuple[int, int]] = []  # folded by Python under (?i)
        named: list[tuple[int, int]] = []  # Perl and POSIX classes, already folded as Go folds them
        first = True
        while True:
            c = self.peek()
            if not c:
                raise self.error("missing closing ]")
            if c == "]" and not first:
                self.pos += 1
                break
            first = False
            if self.src.startswith("[:", self.pos):
                end = self.src.find(":]", self.pos + 2)
                if end >= 0:
                    name = self.src[self.pos + 2:end]
                    base = _POSIX.get(name.lstrip("^"))
                    if base is None:
                        raise self.error(f"invalid character class [:{name}:]")
                    folded = _fold(base) if flags.i else list(base)
                    named += _complement(tuple(folded)) if name.startswith("^") else folded
                    self.pos = end + 2
                    continue
            if c == "\\" and self.peek(1) in ("p", "P"):
                raise self.error(f"Unicode character classes (\\{self.peek(1)}...) are not supported")
            if c == "\\" and self.peek(1) and self.peek(1).lower() in _PERL:
                named += _perl_ranges(self.peek(1), flags.i)
                self.pos += 2
                continue
            low = self.class_char()
            high = low
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high = self.class_char()
                if high < low:
                    raise self.error(f"invalid character class range {chr(low)}-{chr(high)}")
            literal.append((low, high))
        if not flags.i:
            return _class_text(literal + named, negate)
        parts = ([f"(?i:{_class_text(literal, False)})"] if literal else []) + (
            [_class_text(named, False)] if named else [])
        union = parts[0] if len(parts) == 1 else f"(?:{'|'.join(parts)})"
        return f"(?:(?!{union})(?s:.))" if negate else union

    def class_char(self) -> int:
        c = self.peek()
        if c == "\\":
            self.pos += 1
            nxt = self.peek()
            if nxt == "b":
                raise self.error("\\b inside [...] is not RE2 (Python reads it as a backspace); write \\x08")
            if nxt and (nxt.lower() in _PERL or nxt in "pP"):
                raise self.error(f"invalid character class range (\\{nxt} cannot end a range)")
            return self.char_escape()
        self.pos += 1
        return ord(c)
