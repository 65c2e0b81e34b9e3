"""Text bound for a terminal, made inert: untrusted strings never reach it with control characters in them.

Refs, annotations, identities, registry error bodies and policy names come from untrusted places. Printed raw, an
escape sequence could move the cursor and redraw ``FAIL`` as ``OK``, a carriage return could overwrite a line,
and a bidirectional override could reorder what the user reads. Every C0 and C1 control character, DEL and the
Unicode bidi/format controls are shown escaped (``\\x1b``, ``\\u202e``) instead. :func:`printable` escapes newlines
too (one untrusted value may not start a line of its own); :func:`safe_text` keeps the newlines and tabs a command
put between its own lines. JSON output needs neither: ``json.dumps`` escapes them itself.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls; zero-width, bidi embedding/override/isolate marks and the BOM.
_FORMAT = "\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff"
_ALL = re.compile(f"[\x00-\x1f{_FORMAT}]")
_KEEP_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_FORMAT}]")  # all but tab (\x09) and newline (\x0a)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` with every control character escaped, newlines included: one untrusted value, one line."""
    return _ALL.sub(_escape, str(text))


def safe_text(text: object) -> str:
    """``text`` with every control character escaped except the newlines and tabs that separate its lines."""
    return _KEEP_LINES.sub(_escape, str(text))
