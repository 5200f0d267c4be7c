"""Turning untrusted text (repo names, card text, trigger tokens, captions) into inert Markdown.

Everything a repo owner controls passes through `escape_markdown` before it reaches a Hub post. The result
renders as the literal text it came from, on one line, and cannot:
  - open HTML tags or entities, links, images, autolinks or emphasis;
  - break out of a table cell (pipes) or start a block (headings, lists, quotes, code fences);
  - mention (and so notify) anyone, or reference another discussion;
  - reorder the surrounding text with unicode bidi controls or hide characters behind zero-width ones.

`Markdown` marks text that is already safe to place in a post, so that templates escape everything else.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

__all__ = ["Markdown", "escape_markdown"]

DEFAULT_MAX_LENGTH = 300
_ELLIPSIS = "…"

# Characters replaced by an HTML numeric reference rather than a backslash escape: HTML metacharacters,
# and characters the Hub may act on in the raw text (mentions, discussion references, table cells).
_ENTITY = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "@": "&#64;",
    "#": "&#35;",
    "|": "&#124;",
    "`": "&#96;",
}
# Inline syntax that works anywhere in a line: emphasis, strikethrough, link brackets, math, attributes.
# `(`, `)`, `!` and `:` need no escape once `[`, `]` and `<` are escaped and bare links are defanged.
_BACKSLASH = set("\\*_{}[]~^$")
# Block syntax only counts at the start of a line; escaped text may be placed there (list items, cells).
_BLOCK_START = re.compile(r"^(?:[-+=]|\d{1,9}(?=[.)](?: |$)))")
_URL_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*)://")
_WWW = re.compile(r"(?i)\bwww\.")
# Invisible or layout-changing code points: bidi embeddings/overrides/isolates, marks, zero-width characters.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"}
_WHITESPACE_RUN = re.compile(r"[ \t\r\n\f\v]+")
_SOLID = re.compile(r"\S")


class Markdown(str):
    """Text that is safe to place in a post as it is: template literals, or the output of escape_markdown."""

    __slots__ = ()


def _visible_code_point(char: str) -> str:
    return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"


def _neutralize_invisible(text: str) -> str:
    out: list[str] = []
    for char in text:
        if char in " \t\r\n\f\v":
            out.append(" ")
        elif unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            # Shown, not dropped: an audit should make a hidden character in a trigger token visible.
            out.append(_visible_code_point(char))
        else:
            out.append(char)
    return _WHITESPACE_RUN.sub(" ", "".join(out))


def _enough_of(text: str, max_length: int) -> str:
    """A prefix of `text` that escapes to the same cut line as all of it: once it holds more than max_length
    characters that are not whitespace (each prints as at least one), the rest would be cut off anyway. A
    megabyte-long trigger token or caption costs no more than a short one."""
    solid = next(itertools.islice(_SOLID.finditer(text), max_length, None), None)
    return text if solid is None else text[: solid.end()]


def _defang_links(text: str) -> str:
    """`https://x` -> `https[:]//x`, `www.x` -> `www[.]x`: no autolink can form, the address stays readable."""
    text = _URL_SCHEME.sub(lambda m: f"{m.group(1)}[:]//", text)
    return _WWW.sub(lambda m: f"{m.group(0)[:3]}[.]", text)


def _escape_char(char: str) -> str:
    if char in _ENTITY:
        return _ENTITY[char]
    if char in _BACKSLASH:
        return "\\" + char
    return char


def escape_markdown(text: object, *, max_length: int | None = DEFAULT_MAX_LENGTH) -> Markdown:
    """Escapes untrusted text for inline use in Markdown (table cells, list items, sentences).

    Args:
        text: any value; it is converted with str() first.
        max_length: longer text is cut (before escaping, so no escape is split) and ends with an ellipsis;
            None keeps everything.

    Returns:
        A single line of Markdown that renders as the original text.
    """
    if isinstance(text, Markdown):
        return text
    source = str(text)
    if max_length is not None:
        source = _enough_of(source, max_length)
    plain = _neutralize_invisible(source).strip()
    if max_length is not None and len(plain) > max_length:
        plain = plain[: max(max_length - 1, 0)].rstrip() + _ELLIPSIS
    plain = _defang_links(plain)
    escaped = "".join(_escape_char(char) for char in plain)
    start = _BLOCK_START.match(escaped)
    if start is not None:
        # "- x" -> "\- x"; "1. x" -> "1\. x": the text stays inline wherever a template puts it.
        end = start.end()
        escaped = "\\" + escaped if escaped[0] in "-+=" else escaped[:end] + "\\" + escaped[end:]
    return Markdown(escaped)
