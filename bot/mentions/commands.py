"""Reading the command a comment addresses to the bot: "@bot scan [revision]", "badge", "help", "opt-out", "opt-in".

Only text right after "@<bot_name>" counts; quoted lines ("> ...") and code blocks are ignored, so quoting the
bot's own help, or showing an example in code, never triggers anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bot.hub.ids import is_commit_sha

CommandKind = Literal["scan", "badge", "help", "opt-out", "opt-in"]

_VERBS: dict[str, CommandKind] = {
    "scan": "scan", "rescan": "scan", "re-scan": "scan", "audit": "scan", "check": "scan",
    "badge": "badge",
    "help": "help", "commands": "help", "usage": "help",
    "opt-out": "opt-out", "optout": "opt-out", "opt_out": "opt-out", "unsubscribe": "opt-out",
    "opt-in": "opt-in", "optin": "opt-in", "opt_in": "opt-in", "subscribe": "opt-in",
}  # fmt: skip
_POLITE = frozenset({"please", "pls", "plz", "kindly", "hey", "hi", "hello", "can", "could", "would", "you"})
# Words after "scan" that are not a revision ("@bot scan this again please").
_NOT_REVISION = frozenset({"please", "pls", "plz", "again", "now", "this", "it", "the", "model", "repo", "thanks",
                           "thank", "latest", "head", "for", "me", "us"})  # fmt: skip
_REVISION_PREFIX = frozenset({"revision", "rev", "branch", "commit", "sha", "at", "of", "on", "ref"})

# Branch names we accept: git-safe, no "..", no leading "-" or "/", no refs/ tricks beyond plain names.
_BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,99}$")
_TRAILING_PUNCT = ".,;:!?)]}\"'`*"
_LEADING_PUNCT = "([{\"'`*"


@dataclass(frozen=True)
class Command:
    kind: CommandKind
    revision: str | None = None  # scan only: a 40-hex sha (lowercased) or a branch name; None means main


def _mention_pattern(bot_name: str) -> re.Pattern[str]:
    # Not preceded by a word character or another "@"/"/" (an e-mail address, a URL path), not followed by one.
    return re.compile(rf"(?<![\w@/.])@{re.escape(bot_name)}(?![\w\-])", re.IGNORECASE)


def _addressable_lines(text: str) -> list[str]:
    """Lines outside fenced code blocks and quotes, without inline code that shows a mention."""
    lines: list[str] = []
    in_fence = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            in_fence = not in_fence
            continue
        if in_fence or stripped.startswith(">"):
            continue
        lines.append(_INLINE_CODE.sub(_without_shown_mention, line))
    return lines


# An inline code span: one backtick, then up to the next. Each match ends at the first backtick it meets, so a
# comment's length costs linear time (a pattern like `[^`]*@[^`]*` backtracks quadratically over a long run of
# "@" after an unclosed backtick).
_INLINE_CODE = re.compile(r"`[^`]*`")


def _without_shown_mention(span: re.Match[str]) -> str:
    return " " if "@" in span.group(0) else span.group(0)


def _words(rest: str) -> list[str]:
    words = []
    for raw in rest.split():
        word = raw.strip(_LEADING_PUNCT).rstrip(_TRAILING_PUNCT)
        if word:
            words.append(word)
    return words


def _is_safe_branch(name: str) -> bool:
    return (
        bool(_BRANCH.match(name))
        and ".." not in name
        and "//" not in name
        and not name.endswith(("/", ".", ".lock"))
        and not name.lower().startswith("refs/")
    )


def _verb(words: list[str]) -> tuple[CommandKind | None, list[str]]:
    index = 0
    while index < len(words) and words[index].lower().strip(",:;-") in _POLITE:
        index += 1
    if index >= len(words):
        return None, []
    first = words[index].lower().strip(",:;")
    if first == "opt" and index + 1 < len(words) and words[index + 1].lower() in ("out", "in"):
        return _VERBS[f"opt-{words[index + 1].lower()}"], words[index + 2 :]
    return _VERBS.get(first), words[index + 1 :]


def _scan_revision(words: list[str]) -> tuple[bool, str | None]:
    """(understood, revision): the first word after "scan" that is not filler, if any."""
    for word in words:
        lowered = word.lower()
        if lowered in _NOT_REVISION or lowered in _REVISION_PREFIX:
            continue
        if is_commit_sha(lowered):
            return True, lowered
        if _is_safe_branch(word):
            return True, word
        return False, None
    return True, None


def parse_command(text: str, *, bot_name: str) -> Command | None:
    """The first command addressed to `bot_name` in a comment, or None when the comment addresses none.

    A mention alone on its line ("@bot") or a scan with an unusable revision gets help; other text around a
    mention ("@bot thanks!", "thanks @bot") is not a command.
    """
    mention = _mention_pattern(bot_name)
    bare_mention = False
    for line in _addressable_lines(text):
        indent = len(line) - len(line.lstrip())
        for match in mention.finditer(line):
            # "@bot scan @bot help": each mention reads up to the next one (searched in place: slicing the rest
            # of the line for each of a comment's thousands of mentions would cost quadratic time)
            following = mention.search(line, match.end())
            words = _words(line[match.end() : following.start() if following else len(line)])
            if not words:
                # "@bot" on its own asks what the bot can do; "thanks @bot!" does not.
                bare_mention = bare_mention or match.start() <= indent
                continue
            kind, tail = _verb(words)
            if kind is None:
                continue
            if kind != "scan":
                return Command(kind)
            understood, revision = _scan_revision(tail[:3])
            return Command("scan", revision) if understood else Command("help")
    return Command("help") if bare_mention else None
