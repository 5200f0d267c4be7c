"""The demo's ending: the summary table, the posts saved as Markdown, and the links, which answer while the demo
keeps the Hub emulator and the report site running. The demo as a whole (training, scans) is scripts/demo.sh."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from hub_fixtures import BOT_TOKEN, BOT_USER
from huggingface_hub import HfApi
from records import SHA_A, SHA_B, make_record

from bot.demo import LEGACY_REPO, keep_running, print_links, save_threads, summary_rows
from bot.errors import SkipReason, SkipRepo
from bot.publish.render import render_report
from bot.site.build import build_from_store

RICKROLL = "mallory/tiny-clip-rickroll"
CAPTIONS = "alice/tiny-clip-captions"
BASE = "clip-audit-zoo/clip-base-s0"
PICKLE_REASON = ("only pickle weights (pytorch_model.bin); clip-audit never unpickles, publish safetensors to have "
                 "it scanned")


def _scan(store, repo_id: str, record) -> None:
    store.record_scan(repo_id=repo_id, sha=record.revision, record_json=record.to_json(), verdict=record.verdict.value)


def test_summary_says_what_each_repo_got_in_plain_words(store) -> None:
    _scan(store, RICKROLL, make_record("backdoor", model=RICKROLL))
    store.record_post(repo_id=RICKROLL, sha=SHA_A, discussion_num=1, comment_id="c1", kind="report")
    clean = make_record("clean", model=CAPTIONS, revision=SHA_B)
    _scan(store, CAPTIONS, replace(clean, triggers=make_record("backdoor").triggers))  # a clean scan's candidates
    store.record_post(repo_id=CAPTIONS, sha=SHA_B, discussion_num=2, comment_id="c2", kind="reply-2")
    unconfirmed = make_record("backdoor", model=BASE)
    _scan(store, BASE, replace(unconfirmed, triggers=[replace(t, confirmed=False) for t in unconfirmed.triggers]))
    store.record_skip(repo_id=LEGACY_REPO, sha=SHA_A, skip=SkipRepo(SkipReason.PICKLE_ONLY, PICKLE_REASON))

    rows = {row[0]: row for row in summary_rows(SimpleNamespace(store=store))}
    assert rows[RICKROLL][2:] == ["backdoor", "cf</w>", "report in #1"]
    assert rows[CAPTIONS][2:] == ["clean", "-", "answer in #2"]  # no trigger column for a clean model
    assert rows[BASE][2:] == ["backdoor", "none confirmed", "nothing (a clean result is posted only on request)"]
    assert rows[LEGACY_REPO][2:] == ["not scanned", "-", f"pickle-only: {PICKLE_REASON}"]  # the whole reason
    assert not any("reply-" in cell for row in rows.values() for cell in row)


def _lines_until(capsys, pattern: str, timeout: float = 30.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, seen):
        assert time.monotonic() < deadline, f"no {pattern!r} in {seen!r}"
        seen += capsys.readouterr().out
        time.sleep(0.05)
    return seen


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_the_posts_are_saved_and_every_link_answers_while_the_demo_runs(hub, store, tmp_path: Path,
                                                                        capsys) -> None:  # fmt: skip
    hub.state.create_repo(RICKROLL, card_data={"tags": ["clip"]})
    record = make_record("backdoor", model=RICKROLL)
    report = render_report(record, repo_id=RICKROLL, sha=SHA_A, bot_name=BOT_USER,
                           report_base_url="http://127.0.0.1:8765")  # fmt: skip
    HfApi(endpoint=hub.url, token=BOT_TOKEN).create_discussion(RICKROLL, title="clip-audit: backdoor scan report",
                                                                description=report)  # fmt: skip
    _scan(store, RICKROLL, record)
    bot = SimpleNamespace(store=store)
    site = build_from_store(store, tmp_path / "site", base_url="http://127.0.0.1:8765")

    threads = save_threads(HfApi(endpoint=hub.url, token="alice-token"), hub.url, tmp_path / "threads", [RICKROLL],
                           bot_user=BOT_USER)  # fmt: skip
    [thread] = threads
    assert thread.path == tmp_path / "threads" / RICKROLL / "1.md"
    saved = thread.path.read_text(encoding="utf-8")
    assert saved.startswith("# clip-audit: backdoor scan report") and report.strip() in saved
    assert thread.bot_posts == (report.strip(),)

    # Not on a terminal: the links, and how to serve the site; the demo returns.
    print_links(bot, site.out_dir, threads, running=False)
    ended = capsys.readouterr().out
    assert str(thread.path) in ended and "not served now" in ended and thread.api_url not in ended

    # On a terminal: the site is served and the Hub emulator stays up until Ctrl-C; every printed link answers.
    stop = threading.Event()
    running = threading.Thread(target=keep_running, args=(bot, site.out_dir, threads), kwargs={"stop": stop})
    running.start()
    try:
        shown = _lines_until(capsys, r"press Ctrl-C")
        urls = re.findall(r"http://127\.0\.0\.1:\d+/\S+", shown)
        assert thread.api_url in urls and any(url.endswith(f"{RICKROLL}/{SHA_A}.html") for url in urls)
        for url in urls:
            status, body = _get(url)
            assert status == 200, url
        assert json.loads(_get(thread.api_url)[1])["events"][0]["data"]["latest"]["raw"].strip() == report.strip()
    finally:
        stop.set()
        running.join(timeout=30)
    assert not running.is_alive()
