"""The one rule for text that ends up in a header, checked at validation and again at MIME building.

A value bound for a header (a subject, a display name, a custom header's value, a file name, a
content id, a rendered template subject) may not hold, as given or once its RFC 2047 encoded
words are decoded, a character that ``str.splitlines()`` treats as a line break, any other C0
or C1 control character except TAB, or a lone surrogate.

Why decoded too: Python's header parser decodes encoded words (``=?utf-8?q?a=0D=0Ab?=``), and
the folder of some Python releases (3.11.7 among them, the CVE-2024-6923 class) writes the
decoded line break out as a real one: a ``Bcc:`` line, or a blank line that ends the headers.
Mailhub must be safe on any patch release, so it never hands the library such a value.

Encoded words are decoded here the way the library does it (``email._encoded_words.decode``):
q or b, then the bytes decoded in the word's own charset, whatever Python codec that names
(``utf-7`` and ``unicode_escape`` can spell a line break without a control byte). The pattern
is looser than the library's and tries every "=?", so it finds at least every word the library
would decode.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import NamedTuple

#: What ``str.splitlines()`` splits on (\n \r \v \f \x1c-\x1e \x85 U+2028 U+2029), every other
#: C0 and C1 control character (TAB excepted), DEL, and lone surrogates (they cannot be encoded).
_FORBIDDEN = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
#: A lookahead, so that every "=?" starts a candidate: words may overlap ("=?a=?utf-8?q?..?=").
_ENCODED_WORD = re.compile(r"(?=(=\?([^?]*)\?([^?]*)\?(.*?)\?=))", re.DOTALL)
_Q_ESCAPE = re.compile(rb"=([a-fA-F0-9]{2})")
#: The control bytes of ASCII (TAB excepted): a CR is a CR whatever the word's charset says.
_FORBIDDEN_BYTE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")


class HeaderTextError(ValueError):
    """A value refused by the header rule; ``str()`` says which character and where."""


class HeaderTextProblem(NamedTuple):
    code: str  # "line_break" (any form splitlines() knows), "control_character" or
    # "nested_encoded_words"
    reason: str  # which character, and where

    def __str__(self) -> str:
        return self.reason


#: Encoded words inside encoded words: the library decodes one level and may write the result
#: out as it reads, so a reader decodes the next; beyond this many levels a value is refused.
_MAX_NESTING = 3


def header_text_problem(value: str, *, _level: int = 0) -> HeaderTextProblem | None:
    """Why ``value`` may not go into a header, or None when it may."""
    found = _FORBIDDEN.search(value)
    if found:
        where = f"at position {found.start()}" if not _level else "once decoded"
        return _problem(found.group(), where)
    if "=?" not in value:
        return None
    for word in _ENCODED_WORD.finditer(value):
        if _level == _MAX_NESTING:
            return HeaderTextProblem(
                "nested_encoded_words", f"nesting of encoded words deeper than {_MAX_NESTING}"
            )
        for decoded in _decodings(charset=word[2], encoding=word[3], payload=word[4]):
            if isinstance(decoded, bytes):
                found_byte = _FORBIDDEN_BYTE.search(decoded)
                problem = found_byte and _problem(
                    found_byte.group().decode("latin-1"), "once decoded"
                )
            else:
                problem = header_text_problem(decoded, _level=_level + 1)
            if problem:
                if _level:
                    return problem
                return problem._replace(reason=f"{problem.reason} (in {word[1]!r})")
    return None


def check_header_text(value: str, *, what: str) -> str:
    """``value`` itself, or ``HeaderTextError`` naming ``what`` (e.g. "the subject")."""
    problem = header_text_problem(value)
    if problem is not None:
        raise HeaderTextError(f"{what} holds a {problem}: not allowed in a header")
    return value


def _decodings(*, charset: str, encoding: str, payload: str) -> list[bytes | str]:
    """Every text the library could make of one encoded word (one for q; for b, each of its
    lenient base64 readings and the payload itself), decoded in the word's charset as the
    library decodes it."""
    raw = payload.encode("utf-8", "surrogatepass")
    kind = encoding.lower()
    if kind == "q":
        candidates = [
            _Q_ESCAPE.sub(lambda m: bytes.fromhex(m[1].decode()), raw.replace(b"_", b" "))
        ]
    elif kind == "b":
        # Base64 it cannot read, the library decodes as it stands, in the charset all the same.
        candidates = [raw]
        for padded in (raw + b"==="[: -len(raw) % 4 or 0], raw, raw + b"=="):
            try:
                candidates.append(base64.b64decode(padded, validate=False))
            except (binascii.Error, ValueError):
                continue
    else:
        return []  # not an encoded word to the library either: its text was checked as given
    charset = charset.partition("*")[0]  # RFC 2231 language suffix
    texts: list[bytes | str] = []
    for data in candidates:
        texts.append(data)
        try:
            texts.append(data.decode(charset, "surrogateescape"))
        except (LookupError, UnicodeError, TypeError, ValueError):
            texts.append(data.decode("ascii", "surrogateescape"))
    return texts


_NAMES = {
    "\r": "carriage return",
    "\n": "line feed",
    "\x00": "NUL",
    "\x85": "next line (NEL)",
    "\u2028": "line separator (U+2028)",
    "\u2029": "paragraph separator (U+2029)",
}


def _problem(char: str, where: str) -> HeaderTextProblem:
    code = "line_break" if len(f"a{char}b".splitlines()) > 1 else "control_character"
    return HeaderTextProblem(code, f"{_name(char)} {where}")


def _name(char: str) -> str:
    if char in _NAMES:
        return _NAMES[char]
    if "\ud800" <= char <= "\udfff":
        return f"lone surrogate (U+{ord(char):04X})"
    return f"control character (U+{ord(char):04X})"
