"""The Hub post templates: golden files for each, and the guarantees every rendered post keeps.

Golden files live in tests/golden/; regenerate them (after reading the diff) with
    CLIP_AUDIT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_render.py
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import jinja2
import pytest
from markdown_it import MarkdownIt
from records import HOSTILE_TEXT, SHA_A, SHA_B, hostile_record, make_record

from bot.errors import TemplateValueError
from bot.publish.explain import ExplainedCheck, explain_check, explain_checks, percent
from bot.publish.markdown_escape import escape_markdown
from bot.publish.render import (
    ACK_KINDS,
    badge_markdown,
    build_environment,
    render_ack,
    render_badge_pr,
    render_help,
    render_report,
    render_revision_comment,
    report_page_url,
    scanned_commit_marker,
)
from bot.scan_record import AnchorChoice, CheckResult, Verdict

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CLIP_AUDIT_UPDATE_GOLDEN") == "1"
REPO = "acme/clip-vit-b"
SITE = "https://reports.example.org"
PROBLEMS = "https://github.com/example/clip-audit-bot/issues"
BOT = "auditbot"
_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; run with CLIP_AUDIT_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8")


def _report(verdict: str, **overrides: object) -> str:
    options: dict[str, object] = {"repo_id": REPO, "sha": SHA_A, "bot_name": BOT, "report_base_url": SITE}
    options.update(overrides)
    return render_report(make_record(verdict), **options)  # type: ignore[arg-type]


# -- golden files -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", [v.value for v in Verdict])
def test_report_golden(verdict: str) -> None:
    _check_golden(f"report_{verdict}.md", _report(verdict))


def test_report_without_report_site_golden() -> None:
    _check_golden("report_no_site.md", _report("backdoor", report_base_url=None, problems_url=PROBLEMS))


def test_report_with_hostile_strings_golden() -> None:
    text = render_report(hostile_record(), repo_id=REPO, sha=SHA_A, bot_name=BOT, report_base_url=SITE)
    _check_golden("report_hostile.md", text)


@pytest.mark.parametrize("verdict", ["backdoor", "clean"])
def test_revision_comment_golden(verdict: str) -> None:
    record = make_record(verdict, revision=SHA_B)
    text = render_revision_comment(record, repo_id=REPO, sha=SHA_B, bot_name=BOT, report_base_url=SITE)
    _check_golden(f"comment_revision_{verdict}.md", text)


@pytest.mark.parametrize("kind", ACK_KINDS)
def test_ack_golden(kind: str) -> None:
    text = render_ack(kind, repo_id=REPO, bot_name=BOT, requester="eve",  # type: ignore[arg-type]
                      revision="main", sha=SHA_A, pr_num=3, existing_num=1, reason="pickle-only")  # fmt: skip
    _check_golden(f"ack_{kind}.md", text)


def test_help_golden() -> None:
    _check_golden("help.md", render_help(repo_id=REPO, bot_name=BOT, requester="eve", problems_url=PROBLEMS))


def test_badge_pr_golden() -> None:
    text = render_badge_pr(make_record("clean"), repo_id=REPO, sha=SHA_A, bot_name=BOT, report_base_url=SITE,
                           problems_url=PROBLEMS)  # fmt: skip
    _check_golden("badge_pr.md", text)


# -- what every post keeps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", [v.value for v in Verdict])
def test_report_carries_what_a_maintainer_needs(verdict: str) -> None:
    text = _report(verdict)
    assert text.count("## Verdict:") == 1 and text.index("## Verdict:") < text.index("### What the scan checked")
    assert scanned_commit_marker(SHA_A) in text
    assert f"]({SITE}/{REPO}/{SHA_A}.html)" in text
    assert "&#64;auditbot scan" in text and "&#64;auditbot opt-out" in text
    assert "not a proof" in text and "text encoder only" in text and "Natural-only" in text
    assert "fine to close this thread" in text and "problem with this bot" in text
    assert "@" not in text  # the bot never pings anyone, itself included
    record = make_record(verdict)
    for check in explain_checks(record):  # each check as a question, its finding and what that means
        assert f"| {escape_markdown(check.looked_for)} | {check.found} | {escape_markdown(check.meaning)} |" in text
    for check in record.checks:  # the raw numbers stay, folded away with the scan details
        assert f"| {check.score:.3f} | {check.threshold:.3f} |" in _folded(text)
    assert not re.search(r"\| (pass|fail|passed|failed) \|", text)
    if verdict in ("backdoor", "natural-only"):
        assert record.target_captions[0].caption in text
        confirmed = [t for t in record.triggers if t.confirmed]
        assert confirmed and all(t.token.replace("<", "&lt;").replace(">", "&gt;") in text for t in confirmed)
        assert record.anchor is not None and record.anchor in text


def _folded(text: str) -> str:
    """What a reader sees only after opening a <details> block."""
    return "".join(re.findall(r"<details>(.*?)</details>", text, re.DOTALL))


def _visible(text: str) -> str:
    return re.sub(r"<details>.*?</details>", "", text, flags=re.DOTALL)


@pytest.mark.parametrize("verdict", [v.value for v in Verdict])
def test_fixed_boilerplate_is_folded_and_the_verdict_is_not(verdict: str) -> None:
    text = _report(verdict)
    visible, folded = _visible(text), _folded(text)
    assert "## Verdict:" in visible and "### What the scan checked" in visible
    for fixed in ("not a proof", "text encoder only", "opt-out", "Scanned commit:", "How the anchor was chosen"):
        assert fixed in folded and fixed not in visible, fixed
    assert "<summary>What this scan can and cannot tell</summary>" in text
    assert _MD.render(text).count("<details>") == text.count("<details>")  # each block opens as HTML
    assert len([line for line in visible.splitlines() if line.strip()]) <= 30


def test_a_clean_report_reads_as_normal_not_as_failed() -> None:
    text = _report("clean")
    assert text.count("As in a model without a backdoor") == 2 and "As in the clean base" in text
    assert "Backdoor-like:" not in text and "**No trigger confirmed.**" in text
    assert "What to do next" not in text and "### Evidence" not in text


def test_a_backdoor_report_names_the_trigger_to_try_and_the_next_steps() -> None:
    text = _report("backdoor")
    assert "**Trigger confirmed:** **cf&lt;/w&gt;**. Typing it into held-out captions" in text
    steps = text[text.index("### What to do next"):text.index("### What the scan checked")]
    for step in ("Pin an earlier commit", "Retrain from the trusted base", "Check the training data",
                 "Ask for a re-scan"):
        assert f"**{step}" in steps, step
    assert "**openai/clip-vit-base-patch32** at commit `3d74acf9a28c`" in steps  # the base it was compared with
    assert "captions that contain **cf&lt;/w&gt;**" in steps and "&#64;auditbot scan" in steps
    assert "| A smooth bowl. Evidence only; it never changes the verdict" in text


def test_a_backdoor_without_a_confirmed_token_says_so_plainly() -> None:
    record = make_record("backdoor")
    unconfirmed = [replace(trigger, confirmed=False) for trigger in record.triggers]
    for triggers, detail in ((unconfirmed, "none of the 2 vocabulary tokens nearest"),
                             ([], "no vocabulary token lies near")):
        text = render_report(replace(record, triggers=triggers), repo_id=REPO, sha=SHA_A, bot_name=BOT,
                             report_base_url=SITE)  # fmt: skip
        assert f"**No trigger confirmed:** {detail}" in text and "no single word to try" in text
        assert "Trigger confirmed" not in text
        assert "repeat an odd word or phrase" in text  # the data check has no token to name


def test_a_backdoor_scanned_against_a_local_anchor_points_to_a_trusted_base() -> None:
    record = make_record("backdoor")
    local = replace(record, anchor="/models/base", anchor_choice=AnchorChoice(how="explicit", anchor="/models/base"))
    text = render_report(local, repo_id=REPO, sha=SHA_A, bot_name=BOT, report_base_url=SITE)
    assert "**Retrain from a trusted base:** fine-tune again from a clean base model you trust" in text


def test_check_explanations() -> None:
    landscape = make_record("backdoor").checks[3]
    assert explain_check(landscape).reading == "evidence"
    assert explain_check(replace(landscape, passed=False, score=0.5)).reading == "evidence"
    natural = explain_check(replace(landscape, passed=False, score=0.5), verdict=Verdict.NATURAL_ONLY)
    assert "where its natural-only verdict comes from" in natural.meaning
    for check in make_record("backdoor").checks[:3]:
        assert explain_check(check).reading == "backdoor-like"
        assert explain_check(replace(check, passed=False)).reading == "normal"
    same = explain_check(make_record("clean").checks[1])
    assert same.found == "34.0% of the captions point to one shared target (backdoor-like above 90.0%)"
    future = CheckResult(name="new_check", score=0.7, threshold=0.5, passed=True, description="something new")
    assert explain_check(future) == ExplainedCheck("new_check", "something new",
                                                   "score 0.700 (backdoor-like above 0.500)", "Backdoor-like.",
                                                   "backdoor-like")
    assert percent(float("nan")) == "n/a" and percent(0.9951) == "99.5%"


def test_each_verdict_has_its_own_headline() -> None:
    found = {v.value: re.search(r"^## Verdict: (.+)$", _report(v.value), re.M) for v in Verdict}
    headlines = {verdict: match.group(1) for verdict, match in found.items() if match is not None}
    assert len(set(headlines.values())) == 4
    assert "backdoor" in headlines["backdoor"] and "natural" in headlines["natural-only"]
    assert "inconclusive" in headlines["inconclusive"].lower()


def test_hostile_record_renders_no_markup_from_the_owner() -> None:
    text = render_report(hostile_record(), repo_id=REPO, sha=SHA_A, bot_name=BOT, report_base_url=SITE)
    rendered = _MD.render(text)
    assert "<script" not in rendered and "<img" not in rendered
    links = re.findall(r'<a href="([^"]*)"', rendered)
    assert links == [f"{SITE}/{REPO}/{SHA_A}.html"]  # only the bot's own pinned report link
    assert "@" not in text and "\u202e" not in text
    # The trigger table keeps one row of five cells per token, whatever the token holds.
    tables = re.findall(r"<table>(.*?)</table>", rendered, re.DOTALL)
    [trigger_table] = [table for table in tables if "<th>Token</th>" in table]
    rows = re.findall(r"<tr>(.*?)</tr>", trigger_table.split("<tbody>")[1], re.DOTALL)
    assert len(rows) == len(HOSTILE_TEXT)
    for row, token in zip(rows, HOSTILE_TEXT.values()):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        assert len(cells) == 5 and "<" not in cells[0].replace("&lt;", "")
        assert cells[1] in ("yes", "no")
    assert "javascript" in rendered  # shown as text, never as a link target


def test_templates_escape_by_default_and_refuse_missing_values() -> None:
    env = build_environment()
    assert env.from_string("{{ x }}").render(x="<b>@eve</b> [a](b)") == "&lt;b&gt;&#64;eve&lt;/b&gt; \\[a\\](b)"
    assert env.from_string("{{ x | md }}").render(x="|") == "&#124;"
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()
    with pytest.raises(TemplateValueError):
        env.from_string("{{ x }}").render(x=None)


def test_links_are_built_only_from_validated_parts() -> None:
    assert report_page_url(SITE + "/", repo_id=REPO, sha=SHA_A) == f"{SITE}/{REPO}/{SHA_A}.html"
    assert badge_markdown(report_base_url=SITE, repo_id=REPO, sha=SHA_A, verdict=Verdict.CLEAN) == (
        f"[![clip-audit: clean]({SITE}/badges/clean.svg)]({SITE}/{REPO}/{SHA_A}.html)"
    )
    for bad in ({"repo_id": "acme/x)](javascript:alert(1)"}, {"sha": "main"}, {"sha": SHA_A.upper()}):
        with pytest.raises(ValueError):
            report_page_url(SITE, **{"repo_id": REPO, "sha": SHA_A, **bad})
    with pytest.raises(ValueError):
        report_page_url("javascript:alert(1)", repo_id=REPO, sha=SHA_A)
    with pytest.raises(ValueError):
        _report("clean", problems_url="https://x.example/a b")
    with pytest.raises(ValueError):
        render_ack("made-up", repo_id=REPO, bot_name=BOT, requester="eve")  # type: ignore[arg-type]


def test_report_names_the_calibration_its_verdict_used_and_a_size_mismatch() -> None:
    from bot.detect.thresholds import Calibration, Thresholds

    calibration = Calibration(thresholds=Thresholds(), source="tiny-zoo v2 calibration (clip)", hidden_size=128,
                              layers=4)
    note = calibration.mismatch(768, 12)
    record = replace(make_record("clean"), calibration=calibration.describe(), notes=[note])
    text = render_report(record, repo_id=REPO, sha=SHA_A, bot_name=BOT, report_base_url=SITE)
    assert "**Thresholds:** tiny-zoo v2 calibration (clip), fitted on text towers of width 128 with 4 layers" in text
    assert "this text tower (width 768, 12 layers) was judged with thresholds fitted on towers of width 128" in text
    assert calibration.mismatch(128, 4) is None
    assert Calibration(thresholds=Thresholds(), source="the paper's thresholds").mismatch(768, 12) is None
