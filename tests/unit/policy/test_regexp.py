"""Go (RE2) regexps in policies and on the command line: refused constructs, Go's meaning where Python's differs,
anchoring warnings, and a differential test against RE2 itself (google-re2, the engine cel-python uses)."""

from __future__ import annotations

import random

import pytest

from airgap.errors import ConfigError, PolicyError
from airgap.policy.policyset import PolicySet
from airgap.policy.regexp import compile_go, wildcard_regexp
from airgap.verification.adhoc import policy_for_identity
from airgap.verification.trust import Trust

# --- constructs RE2 lacks, or that Python would read differently: refused with a clear one-line error ----------

REFUSED = [
    ("(a)\\1", "backreferences (\\1) are not RE2"),
    ("\\9", "backreferences (\\9) are not RE2"),
    ("(?P<n>a)(?P=n)", "backreferences (?P=name) are not RE2"),
    ("a(?=b)", "lookahead (?=...) is not RE2"),
    ("a(?!b)", "lookahead (?!...) is not RE2"),
    ("(?<=a)b", "lookbehind (?<=...) is not RE2"),
    ("(?<!a)b", "lookbehind (?<!...) is not RE2"),
    ("(?>a+)b", "atomic groups (?>...) are not RE2"),
    ("a*+", "invalid nested repetition operator *+ (possessive and repeated quantifiers are not RE2)"),
    ("a++", "invalid nested repetition operator ++"),
    ("a?+", "invalid nested repetition operator ?+"),
    ("a{2}+", "invalid nested repetition operator {2}+"),
    ("a**", "invalid nested repetition operator **"),
    ("a*??", "invalid nested repetition operator *??"),
    ("(a)?(?(1)b|c)", "conditionals (?(...)...) are not RE2"),
    ("a(?#comment)", "comments (?#...) are not RE2"),
    ("(?R)", "recursion (?R) is not RE2"),
    ("(?1)", "recursion is not RE2"),
    ("(?|a)", "branch reset groups (?|...) are not RE2"),
    ("a\\Z", "\\Z is not RE2 (in Python it is the end of the string); write \\z or $"),
    ("\\u00e9", "\\u is Python's Unicode escape, not RE2; write \\x{...}"),
    ("\\U0001F600", "\\U is Python's Unicode escape, not RE2"),
    ("\\N{DASH}", "\\N{...} is Python's named-character escape, not RE2"),
    ("\\g<1>", "\\g<...> is a Python backreference, not RE2"),
    ("[\\b]", "\\b inside [...] is not RE2 (Python reads it as a backspace); write \\x08"),
    ("\\e", "invalid escape sequence \\e"),
    ("\\E", "\\E without \\Q is not RE2"),
    ("(?x)a b", "the verbose flag (?x) is not RE2"),
    ("(?a)\\w", "the flag 'a' is not RE2 (RE2 has i, m, s and U)"),
    ("(?L)a", "the flag 'L' is not RE2"),
    ("(?i-)a", "invalid flags (?i-...)"),
    ("\\pL", "Unicode character classes (\\p...) are not supported"),
    ("\\p{Greek}", "Unicode character classes (\\p...) are not supported"),
    ("\\C", "\\C (any byte) is not supported"),
    ("(", "missing closing )"),
    ("a)", "unexpected )"),
    ("[a", "missing closing ]"),
    ("[z-a]", "invalid character class range z-a"),
    ("[a-\\d]", "invalid character class range (\\d cannot end a range)"),
    ("[[:alfa:]]", "invalid character class [:alfa:]"),
    ("*a", "missing argument to repetition operator *"),
    ("a|+", "missing argument to repetition operator +"),
    ("(?i)*", "missing argument to repetition operator *"),
    ("[\\pL]", "Unicode character classes (\\p...) are not supported"),
    ("a{1001}", "invalid repeat count {1001}"),
    ("a{3,2}", "invalid repeat count {3,2}"),
    ("(?P<a-b>x)", "invalid named capture (?P<a-b>"),
    ("\\x{110000}", "invalid escape sequence \\x{110000}: beyond U+10FFFF"),
    ("\\xg", "invalid escape sequence \\x"),
    ("a\\", "trailing backslash at end of expression"),
]


@pytest.mark.parametrize(("pattern", "message"), REFUSED)
def test_constructs_re2_lacks_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        compile_go(pattern)
    assert str(err.value).startswith(f"invalid regexp {pattern!r}: {message}"), str(err.value)
    assert "\n" not in str(err.value)


# --- valid in both, different meanings: Go's meaning wins ------------------------------------------------------

MEANING = [
    # (pattern, whole strings it matches, whole strings it does not)
    ("\\d+", ["0123456789"], ["\u0663", "x"]),  # ASCII digits only; Python's \d is Unicode
    ("\\w+", ["a_Z9"], ["\u00e9", "\u4e2d"]),  # ASCII word characters only
    ("\\s", [" ", "\t", "\n", "\f", "\r"], ["\v", "\u00a0", "\u2003"]),  # RE2's \s has no \v and no Unicode spaces
    ("a\\b", ["a"], []),
    ("\\B", [""], []),  # no word character on either side: not a boundary (Python's \B never matches "")
    ("^a$", ["a"], ["a\n"]),  # Go's $ is the end of the text, Python's also before a final newline
    ("a$\\n", [], ["a\n"]),
    ("(?m)a$\\n^b", ["a\nb"], []),
    ("\\12", ["\n"], []),  # octal escape in Go, backreference 12 in Python
    ("\\0", ["\x00"], []),
    ("\\101\\x41\\x{41}", ["AAA"], []),
    ("x{,3}", ["x{,3}"], ["x", "xxx"]),  # not a repetition in Go: a literal {
    ("a{2}b{1,}c{1,2}", ["aabbcc", "aabc"], ["abc"]),
    ("\\Qa.b*\\E", ["a.b*"], ["axbb"]),
    ("\\Qab\\E+", ["abbb"], ["abab"]),  # the quantifier takes the last quoted character only
    ("[[:alpha:]][[:^digit:]][[:xdigit:]]", ["aZf"], ["a1f", "1aa"]),
    ("[^\\d]", ["a", "\n"], ["5"]),
    ("[\\D5]", ["a", "5"], []),
    ("[^\\Wa]", ["b", "_"], ["a", "-"]),
    ("[]a]+", ["]a]"], []),
    ("[a-]+", ["a-a"], []),
    ("a(?i)b|c", ["aB", "C"], ["Ab"]),  # (?i) reaches across | to the end of the group
    ("(?i:a)b", ["Ab"], ["AB"]),
    ("(?i)k", ["K", "\u212a"], []),  # Go folds the Kelvin sign with k
    ("(?i)\\W", ["-"], ["k", "\u212a", "\u017f"]),  # folded before negation, as Go does
    ("(?U)a+", ["aaa"], []),
    ("(?s).", ["\n"], []),
    (".", ["x"], ["\n"]),
    ("(?P<name>a)(?<other>b)(?P<name>c)", ["abc"], []),  # Go allows a name twice; Python would not
    ("(?)a", ["a"], []),
    ("a(?i)*", ["", "aaa"], ["A"]),  # a flag group pushes nothing: the quantifier takes the a before it
    ("a*(?i)+", ["", "aa"], []),
    ("caf\\x{e9}", ["caf\u00e9"], []),
    ("", [""], ["a"]),
]


@pytest.mark.parametrize(("pattern", "good", "bad"), MEANING)
def test_go_meaning_where_python_differs(pattern: str, good: list[str], bad: list[str]) -> None:
    compiled = compile_go(pattern)
    for text in good:
        assert compiled.fullmatch(text), (pattern, compiled.python, text)
    for text in bad:
        assert not compiled.fullmatch(text), (pattern, compiled.python, text)


def test_translation_stays_readable() -> None:
    assert compile_go("https://github.com/acme/.*").python == "https://github.com/acme/.*"
    assert compile_go("^https://token\\.actions\\.githubusercontent\\.com$").python == (
        "^https://token\\.actions\\.githubusercontent\\.com$")
    assert compile_go(".*@airgap[.]test").python == ".*@airgap[.]test"


@pytest.mark.parametrize(("pattern", "anchored"), [
    ("^a$", True), ("\\Aa\\z", True), ("^a$|^b$", True), ("(?i)^a$", True), ("^(a|b)$", True),
    ("a", False), ("^a", False), ("a$", False), ("^a|b$", False), ("(?m)^a$", False), ("^a$|b", False),
    ("(^a$)", False), ("^*a$", False), (".*", False), ("", False),
])
def test_anchored(pattern: str, anchored: bool) -> None:
    assert compile_go(pattern).anchored is anchored


def test_kyverno_wildcards() -> None:
    import re

    assert re.fullmatch(wildcard_regexp("*@nirmata.com"), "jim@nirmata.com")
    assert not re.fullmatch(wildcard_regexp("*@nirmata.com"), "jim@nirmataXcom")
    assert re.fullmatch(wildcard_regexp("my-bucket?abc*"), "my-bucket/abc\nx")
    assert not re.fullmatch(wildcard_regexp("a?"), "a")


# --- differential test against RE2 itself -----------------------------------------------------------------------

_ATOMS = ["a", "b", "A", ".", "\\d", "\\D", "\\s", "\\w", "\\W", "\\b", "\\B", "^", "$", "\\A", "\\z", "[ab]",
          "[^a]", "[a-c]", "[[:alpha:]]", "[[:^digit:]]", "[\\d_]", "[^\\D]", "\\x41", "\\x{61}", "\\101", "\\.",
          "\\n", "\n", "\u00e9", "\u00c9", "k", "K", "\u212a", "{", "}", "]", "\\Qa.\\E", "-", "[]a]", "[a-]"]
_FLAGS = ["(?i)", "(?s)", "(?m)", "(?U)", "(?i-s)", ""]
_TEXT = ["a", "b", "A", "B", "\n", " ", "_", "1", ".", "\u00e9", "\u00c9", "k", "K", "\u212a", "{", "}", "]", "-"]


def _random_pattern(rng: random.Random, depth: int = 0) -> str:
    out = ""
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.15 and depth < 3:
            atom = rng.choice(["(", "(?:", "(?i:", "(?s:"]) + _random_pattern(rng, depth + 1) + ")"
        elif roll < 0.22 and depth < 3:
            atom = f"(?:{_random_pattern(rng, depth + 1)}|{_random_pattern(rng, depth + 1)})"
        elif roll < 0.3:
            atom = rng.choice(_FLAGS)
        else:
            atom = rng.choice(_ATOMS)
        if rng.random() < 0.3 and atom not in _FLAGS:
            atom += rng.choice(["*", "+", "?", "*?", "+?", "??", "{2}", "{1,}", "{0,2}", "{1,2}?"])
        out += atom
    return out


def test_same_whole_string_matches_as_re2() -> None:
    re2 = pytest.importorskip("re2")  # google-re2: installed with cel-python, which evaluates CEL's matches() with it
    rng = random.Random(20240611)
    for _ in range(600):
        pattern = _random_pattern(rng)
        if rng.random() < 0.3:
            pattern = f"^{pattern}$"
        ours, theirs = compile_go(pattern), re2.compile(pattern)
        for _ in range(20):
            text = "".join(rng.choice(_TEXT) for _ in range(rng.randint(0, 6)))
            assert ours.fullmatch(text) == (theirs.fullmatch(text) is not None), (pattern, ours.python, text)


def test_re2_refuses_what_we_refuse_as_not_re2() -> None:
    re2 = pytest.importorskip("re2")
    quiet = re2.Options()
    quiet.log_errors = False
    for pattern, message in REFUSED:
        if "not supported" in message:  # RE2 has these (\pL, \C); airgap's Python matcher cannot express them
            continue
        with pytest.raises(re2.error):
            re2.compile(pattern, quiet)


# --- where regexps come from: policies and the command line ----------------------------------------------------

def _keyless(identity: str) -> str:
    return ("apiVersion: policy.sigstore.dev/v1beta1\nkind: ClusterImagePolicy\nmetadata: {name: ci}\nspec:\n"
            "  images: [{glob: '**'}]\n  authorities:\n  - keyless:\n      identities:\n"
            f"      - {identity}\n")


def test_policy_regexps_use_go_syntax_and_unanchored_ones_warn_once_per_policy() -> None:
    ps = PolicySet.from_yaml(_keyless("{issuer: https://i, subjectRegExp: '^ci@[a-z]+\\.test$'}"), "p.yaml")
    assert ps.warnings == []
    text = _keyless("{issuerRegExp: 'https://i.*', subjectRegExp: '.*@acme[.]test'}")
    ps = PolicySet.from_yaml(text, "p.yaml")
    assert ps.warnings == [
        "p.yaml: document 1 (ci): regexp not anchored with ^...$: spec.authorities[0].keyless.identities[0]."
        "issuerRegExp 'https://i.*', spec.authorities[0].keyless.identities[0].subjectRegExp '.*@acme[.]test'; "
        "airgap matches the whole string (as if written ^(?:...)$), policy-controller, Kyverno and cosign (Go) "
        "accept a match anywhere in it"]
    (identity,) = ps.policies[0].authorities[0].keyless.identities  # type: ignore[union-attr]
    assert identity.matches("ci@acme.test", "https://issuer")
    assert not identity.matches("ci@acme.test\n", "https://issuer")
    with pytest.raises(PolicyError) as err:
        PolicySet.from_yaml(_keyless("{issuer: https://i, subjectRegExp: '(?=ci)ci@.*'}"), "p.yaml")
    assert str(err.value) == ("p.yaml: document 1 (ci): spec.authorities[0].keyless.identities[0].subjectRegExp: "
                              "invalid regexp '(?=ci)ci@.*': lookahead (?=...) is not RE2")


def test_command_line_regexps_use_go_syntax() -> None:
    trust = Trust()
    ps = policy_for_identity(trust, identity=None, identity_regexp="^ci@acme\\.test$", issuer="https://i",
                             issuer_regexp=None, require_tlog=True)
    assert ps.warnings == []
    ps = policy_for_identity(trust, identity=None, identity_regexp="ci@\\d+\\.test", issuer=None,
                             issuer_regexp="^https://i$", require_tlog=True)
    assert ps.warnings == ["command line: regexp not anchored with ^...$: --certificate-identity-regexp "
                           "'ci@\\\\d+\\\\.test'; airgap matches the whole string (as if written ^(?:...)$), "
                           "cosign (Go) accepts a match anywhere in it"]
    (identity,) = ps.policies[0].authorities[0].keyless.identities  # type: ignore[union-attr]
    assert identity.matches("ci@42.test", "https://i") and not identity.matches("ci@\u0664\u0662.test", "https://i")
    with pytest.raises(ConfigError) as err:
        policy_for_identity(trust, identity=None, identity_regexp="(a)\\1", issuer="https://i", issuer_regexp=None,
                            require_tlog=True)
    assert str(err.value) == ("--certificate-identity-regexp: invalid regexp '(a)\\\\1': backreferences (\\1) are "
                              "not RE2")
