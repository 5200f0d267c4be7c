"""Adding the clip-audit badge line to a README: after the YAML front matter, exactly once."""

from __future__ import annotations

import re

_FRONT_MATTER = re.compile(r"\A(\ufeff?---[ \t]*\r?\n.*?\r?\n---[ \t]*)(\r?\n|\Z)", re.DOTALL)


def add_badge_line(readme: str | None, badge_line: str, *, already_there: str) -> str | None:
    """The README with `badge_line` added as its own paragraph right after the front matter (or at the top).

    Args:
        readme: the current README text; None when the repo has none.
        badge_line: one line of Markdown.
        already_there: a substring (the badge image's base URL) whose presence means a badge was already added.

    Returns:
        The new README text, or None when the README already carries a clip-audit badge.
    """
    if "\n" in badge_line or "\r" in badge_line:
        raise ValueError("the badge must be a single line")
    text = readme or ""
    if already_there in text:
        return None
    newline = "\r\n" if "\r\n" in text else "\n"
    match = _FRONT_MATTER.match(text)
    if match is None:
        rest = text.lstrip("\r\n")
        return badge_line + newline + (newline + rest if rest else "")
    front = match.group(1)
    rest = text[match.end():].lstrip("\r\n")
    return front + newline + newline + badge_line + newline + (newline + rest if rest else "")
