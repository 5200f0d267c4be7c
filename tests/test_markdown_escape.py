"""escape_markdown: hostile strings render as their literal text and nothing else.

Escaped text is rendered with a CommonMark parser (markdown-it-py, tables and strikethrough on) inside the
places a post puts it: a table cell, a list item, a sentence.
"""

from __future__ import annotations

import html
import re

import pytest
from markdown_it import MarkdownIt

from bot.hub.ids import is_commit_sha, is_safe_repo_id
from bot.publish.markdown_escape import Markdown, escape_markdown

_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_TAG = re.compile(r"<[^>]+>")

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "[click me](https://evil.example/login)",
    "![img](http://evil.example/p.png)",
    "<https://evil.example>",
    "@someone please look",
    "ping @org/team and me@mail.example",
    "a | b || c",
    "``code`` and `x`",
    "&lt;b&gt; &amp; &#64;admin &#x3C;script&#x3E;",
    "*bold* _em_ **strong** ~~gone~~",
    "# Heading",
    "- item",
    "1. first",
    "> quote",
    "$x^2$ and \\(math\\)",
    "back\\slash\\",
    "{: .class} ^sup^",
    "see #12 for details",
]


def _render_inline(markdown: str) -> str:
    """HTML of a one-line paragraph, without the <p> wrapper."""
    rendered = _MD.render(markdown).strip()
    assert rendered.startswith("<p>") and rendered.endswith("</p>"), rendered
    return rendered[3:-4]


def _visible_text(fragment: str) -> str:
    return html.unescape(_TAG.sub("", fragment))


def _reference(text: str) -> str:
    shown = re.sub(r"\s+", " ", text).strip()
    shown = re.sub(r"(?i)\b([a-z][a-z0-9+.\-]*)://", r"\1[:]//", shown)
    return re.sub(r"(?i)\bwww\.", lambda m: m.group(0)[:3] + "[.]", shown)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_renders_as_itself_in_a_sentence(text: str) -> None:
    fragment = _render_inline(f"Caption: {escape_markdown(text)} (end)")
    assert _TAG.search(fragment) is None, fragment  # no element of any kind: no link, image, emphasis, code
    assert _visible_text(fragment) == f"Caption: {_reference(text)} (end)"


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_inside_one_table_cell(text: str) -> None:
    table = f"| token | confirmed |\n|---|---|\n| {escape_markdown(text)} | yes |\n"
    rendered = _MD.render(table)
    cells = re.findall(r"<td>(.*?)</td>", rendered, re.DOTALL)
    assert len(cells) == 2, rendered
    assert _TAG.search(cells[0]) is None
    assert _visible_text(cells[0]) == _reference(text) and cells[1] == "yes"


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_does_not_change_a_list_item(text: str) -> None:
    rendered = _MD.render(f"- {escape_markdown(text)}\n").strip()
    assert rendered.startswith("<ul>\n<li>") and rendered.endswith("</li>\n</ul>"), rendered
    inner = rendered[len("<ul>\n<li>") : -len("</li>\n</ul>")]
    assert _TAG.search(inner) is None and _visible_text(inner) == _reference(text)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_inside_bold_in_a_folded_block(text: str) -> None:
    # How posts name a confirmed trigger (**token**), inside a <details> block as the folded sections are.
    post = (f"<details>\n<summary>Scan details</summary>\n\n**Trigger confirmed:** **{escape_markdown(text)}**. End."
            "\n\n</details>\n")
    rendered = _MD.render(post)
    assert rendered.startswith("<details>\n<summary>Scan details</summary>\n") and rendered.endswith("</details>\n")
    [paragraph] = re.findall(r"<p>(.*?)</p>", rendered, re.DOTALL)
    bold = re.fullmatch(r"<strong>Trigger confirmed:</strong> <strong>(.*)</strong>\. End\.", paragraph)
    assert bold is not None, paragraph
    assert _TAG.search(bold.group(1)) is None and _visible_text(bold.group(1)) == _reference(text)


def test_mentions_and_references_never_reach_the_raw_post() -> None:
    # The Hub notifies on "@name" and links "#N" in the raw text; neither may survive escaping.
    for text in ("@someone", "hi @org/team", "cc:@x", "see #12"):
        escaped = escape_markdown(text)
        assert "@" not in escaped and "#" not in escaped.replace("&#35;", "").replace("&#64;", "")


def test_links_are_defanged_so_no_autolink_can_form() -> None:
    escaped = escape_markdown("visit https://evil.example/x or www.evil.example or FTP://host")
    assert "://" not in escaped and "www." not in escaped.lower()
    assert _visible_text(_render_inline(escaped)) == (
        "visit https[:]//evil.example/x or www[.]evil.example or FTP[:]//host"
    )


def test_newlines_collapse_so_text_cannot_start_a_block() -> None:
    escaped = escape_markdown("line one\n\n# Heading\r\n- item\n> quote\n```\ncode")
    assert "\n" not in escaped and "\r" not in escaped
    assert _TAG.search(_render_inline(escaped)) is None


def test_bidi_overrides_and_invisible_characters_are_spelled_out() -> None:
    text = "abc\u202edcba\u2066x\u2069\u200b\u200fz\x00\x1b"
    escaped = escape_markdown(text)
    for char in "\u202e\u2066\u2069\u200b\u200f\x00\x1b":
        assert char not in escaped
    assert _visible_text(_render_inline(escaped)) == "abc\\u202edcba\\u2066x\\u2069\\u200b\\u200fz\\u0000\\u001b"


def test_html_entities_are_shown_not_decoded() -> None:
    fragment = _render_inline(escape_markdown("&lt;script&gt; &amp; &#64;admin"))
    assert _visible_text(fragment) == "&lt;script&gt; &amp; &#64;admin"


def test_plain_text_is_left_readable() -> None:
    assert escape_markdown("a photo of a banana, 2.14.1 (v2) is fine!") == "a photo of a banana, 2.14.1 (v2) is fine!"
    assert escape_markdown("natural-only") == "natural-only"


def test_long_text_is_cut_before_escaping() -> None:
    escaped = escape_markdown("<" * 500, max_length=10)
    assert escaped == "&lt;" * 9 + "…"
    assert len(escape_markdown("x" * 1000, max_length=None)) == 1000


def test_markdown_instances_pass_through_and_results_are_markdown() -> None:
    trusted = Markdown("**bold** [link](https://example.org)")
    assert escape_markdown(trusted) is trusted
    assert isinstance(escape_markdown("x"), Markdown)
    assert escape_markdown(12) == "12"


@pytest.mark.parametrize(
    ("repo_id", "ok"),
    [
        ("acme/clip-vit-b", True),
        ("Org_1/model.v2", True),
        ("acme", False),
        ("acme/a/b", False),
        ("../etc", False),
        ("acme/..", False),
        ("acme/.hidden", False),
        ("acme/x)](javascript:alert(1)", False),
        ("acme/name with space", False),
        ("-acme/x", False),
    ],
)
def test_repo_id_validation(repo_id: str, ok: bool) -> None:
    assert is_safe_repo_id(repo_id) is ok


def test_commit_sha_validation() -> None:
    assert is_commit_sha("a" * 40)
    assert not is_commit_sha("A" * 40)  # the Hub always answers lowercase
    assert not is_commit_sha("a" * 39) and not is_commit_sha("main") and not is_commit_sha("g" * 40)
