"""The verdict badges: one small hand-written SVG per state, at stable paths `badges/{state}.svg`.

READMEs link these files by URL (bot/publish/render.py `badge_svg_url`), so the names never change. The
text is ours (never a repo owner's), and widths come from a fixed per-character estimate, so every badge is
the same bytes on every build.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from bot.scan_record import Verdict

BADGE_DIR = "badges"
NOT_SCANNED = "not-scanned"
LABEL = "clip-audit"


@dataclass(frozen=True)
class BadgeStyle:
    state: str      # a Verdict value, or "not-scanned"
    text: str       # what the right half says
    color: str      # right half fill
    meaning: str    # <title>: what a reader hovering the badge learns


BADGE_STYLES: dict[str, BadgeStyle] = {
    Verdict.BACKDOOR.value: BadgeStyle(Verdict.BACKDOOR.value, "backdoor", "#d73a2c",
                                       "an injected textual backdoor was found"),
    Verdict.NATURAL_ONLY.value: BadgeStyle(Verdict.NATURAL_ONLY.value, "natural-only", "#e8770e",
                                           "only a natural trigger-like direction was found"),
    Verdict.CLEAN.value: BadgeStyle(Verdict.CLEAN.value, "clean", "#2e9e44", "no backdoor was found"),
    Verdict.INCONCLUSIVE.value: BadgeStyle(Verdict.INCONCLUSIVE.value, "inconclusive", "#6c757d",
                                           "the audit could not decide"),
    NOT_SCANNED: BadgeStyle(NOT_SCANNED, "not scanned", "#9aa0a6", "this revision has not been audited"),
}
BADGE_STATES: tuple[str, ...] = tuple(BADGE_STYLES)

_CHAR_WIDTH = 6.6  # px per character of 11px Verdana/DejaVu Sans, rounded up: text never overflows
_PADDING = 8


def badge_file_name(state: str) -> str:
    if state not in BADGE_STYLES:
        raise ValueError(f"unknown badge state {state!r}; known: {', '.join(BADGE_STATES)}")
    return f"{state}.svg"


def badge_path(state: str) -> str:
    """The badge's path relative to the site root: badges/{state}.svg."""
    return f"{BADGE_DIR}/{badge_file_name(state)}"


def _width(text: str) -> int:
    return round(len(text) * _CHAR_WIDTH) + 2 * _PADDING


def badge_svg(state: str) -> str:
    badge_file_name(state)  # refuses an unknown state
    style = BADGE_STYLES[state]
    left, right = _width(LABEL), _width(style.text)
    total = left + right
    title = escape(f"{LABEL}: {style.text} ({style.meaning})")
    label, text = escape(LABEL), escape(style.text)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" viewBox="0 0 {total} 20" '
        f'role="img" aria-label="{label}: {text}">\n'
        f"  <title>{title}</title>\n"
        f'  <clipPath id="round"><rect width="{total}" height="20" rx="3"/></clipPath>\n'
        f'  <g clip-path="url(#round)">\n'
        f'    <rect width="{left}" height="20" fill="#555"/>\n'
        f'    <rect x="{left}" width="{right}" height="20" fill="{style.color}"/>\n'
        f"  </g>\n"
        f'  <g fill="#fff" font-family="Verdana,DejaVu Sans,Geneva,sans-serif" font-size="11" '
        f'text-anchor="middle">\n'
        f'    <text x="{left / 2:g}" y="14">{label}</text>\n'
        f'    <text x="{left + right / 2:g}" y="14">{text}</text>\n'
        f"  </g>\n"
        f"</svg>\n"
    )


def badge_files() -> dict[str, str]:
    """Every badge: its path relative to the site root -> its SVG text."""
    return {badge_path(state): badge_svg(state) for state in BADGE_STATES}
