"""The worker's job handler (bot/pipeline.py:JobHandler) against the Hub emulator over HTTP and a real SQLite
store, wired by Bot.from_settings. No model is trained: these jobs either reuse a stored record or never
reach the detector."""

from __future__ import annotations

import dataclasses  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hub_fixtures import (  # first: sets HF_HUB_DISABLE_XET before huggingface_hub is imported
    BOT_TOKEN,
    BOT_USER,
    CLIP_CONFIG,
    MERGES,
    OWNER_TOKEN,
    VOCAB,
    isolate_client,
    transformers_clip_shapes,
    write_safetensors,
)
from huggingface_hub import HfApi  # noqa: E402
from records import make_record  # noqa: E402

from bot.errors import ClipAuditError, ScanFailed, SkipReason, SkipRepo  # noqa: E402
from bot.publish.poster import THREAD_TITLE, reply_kind  # noqa: E402
from bot.publish.render import scanned_commit_marker  # noqa: E402
from bot.scan_record import Verdict  # noqa: E402
from bot.service import Bot  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.state import Job  # noqa: E402
from hub_emulator import EmulatorHandle  # noqa: E402

REPO = "acme/clip-tiny"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_client(tmp_path, monkeypatch)


@pytest.fixture
def bot(hub: EmulatorHandle, tmp_path: Path) -> Iterator[Bot]:
    settings = load_settings(config_file=None, env={}, stored_token=lambda: None, overrides={
        "endpoint": hub.url, "token": BOT_TOKEN, "bot_name": BOT_USER, "db_path": tmp_path / "state" / "state.db",
        "cache_dir": tmp_path / "hub-cache", "anchor_cache": tmp_path / "no-anchors", "outbox_dir": tmp_path / "outbox",
        "device": "cpu", "max_download_bytes": 1_000_000, "report_base_url": "https://reports.example.org",
    })  # fmt: skip
    built = Bot.from_settings(settings)
    yield built
    built.store.close()


def _owner(hub: EmulatorHandle) -> HfApi:
    return HfApi(endpoint=hub.url, token=OWNER_TOKEN)


def _bot_threads(hub: EmulatorHandle, repo_id: str = REPO) -> list:
    return [d for d in _owner(hub).get_repo_discussions(repo_id) if d.author == BOT_USER]


def _job(bot: Bot, repo_id: str, sha: str, **fields: object) -> Job:
    job = bot.store.enqueue(repo_id=repo_id, sha=sha, reason=str(fields.pop("reason", "new-upload")), **fields)
    assert job is not None
    return job


def _pickle_only_files() -> dict[str, bytes]:
    return {"config.json": CLIP_CONFIG, "pytorch_model.bin": b"pickle bytes we never download"}


def _downloaded(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.rglob("*") if p.is_file()] if cache_dir.exists() else []


# -- (a) a stored scan is published, not scanned again ------------------------------------------------------


def test_stored_backdoor_scan_is_published_without_scanning(hub: EmulatorHandle, bot: Bot) -> None:
    # The repo holds nothing scannable: had the handler planned a scan, it would have raised SkipRepo.
    sha = hub.state.create_repo(REPO, files=_pickle_only_files(), tags=["clip"], library_name="transformers")
    record = make_record(Verdict.BACKDOOR, model=REPO, revision=sha)
    bot.store.record_scan(repo_id=REPO, sha=sha, record_json=record.to_json(), verdict=record.verdict.value)
    stored = bot.store.get_scan(REPO, sha)
    assert stored is not None

    bot.handler()(_job(bot, REPO, sha))

    (thread,) = _bot_threads(hub)
    assert thread.title == THREAD_TITLE and thread.status == "open" and not thread.is_pull_request
    details = _owner(hub).get_discussion_details(REPO, thread.num)
    opening = details.events[0]
    assert opening.author == BOT_USER and scanned_commit_marker(sha) in opening.content
    assert "backdoor" in opening.content.lower()

    (post,) = bot.store.posts(REPO)
    assert (post.sha, post.kind, post.discussion_num) == (sha, "report", thread.num)
    assert bot.store.get_thread(REPO).discussion_num == thread.num
    # nothing was scanned or downloaded, and the stored record is the one that was there
    assert bot.store.get_scan(REPO, sha) == stored
    assert [s.repo_id for s in bot.store.all_scans()] == [REPO]
    assert _downloaded(bot.settings.cache_dir) == []

    # The job running again (a retry after a crash) posts nothing new.
    bot.handler()(bot.store.find_job(REPO, sha))
    assert len(_bot_threads(hub)) == 1
    assert len(_owner(hub).get_discussion_details(REPO, thread.num).events) == len(details.events)
    assert len(bot.store.posts(REPO)) == 1


def test_stored_clean_scan_is_not_posted_unprompted(hub: EmulatorHandle, bot: Bot) -> None:
    sha = hub.state.create_repo(REPO, files=_pickle_only_files())
    record = make_record(Verdict.CLEAN, model=REPO, revision=sha)
    bot.store.record_scan(repo_id=REPO, sha=sha, record_json=record.to_json(), verdict="clean")

    bot.handler()(_job(bot, REPO, sha))

    assert _bot_threads(hub) == []
    assert bot.store.posts(REPO) == []


def test_stored_scan_requested_in_a_discussion_is_answered_there(hub: EmulatorHandle, bot: Bot) -> None:
    sha = hub.state.create_repo(REPO, files=_pickle_only_files())
    record = make_record(Verdict.CLEAN, model=REPO, revision=sha)
    bot.store.record_scan(repo_id=REPO, sha=sha, record_json=record.to_json(), verdict="clean")
    asked = _owner(hub).create_discussion(REPO, title="Is this safe?", description="@auditbot scan")

    bot.handler()(_job(bot, REPO, sha, reason="mention", requested_by="acme", discussion_num=asked.num))

    assert _bot_threads(hub) == []  # answered where asked, no thread of its own
    details = _owner(hub).get_discussion_details(REPO, asked.num)
    replies = [e.content for e in details.events if e.type == "comment" and e.author == BOT_USER]
    assert len(replies) == 1 and scanned_commit_marker(sha) in replies[0]
    assert [(p.kind, p.discussion_num) for p in bot.store.posts(REPO)] == [(reply_kind(asked.num), asked.num)]


def test_stored_record_for_another_commit_is_refused(hub: EmulatorHandle, bot: Bot) -> None:
    sha = hub.state.create_repo(REPO, files=_pickle_only_files())
    other = "f" * 40
    record = make_record(Verdict.BACKDOOR, model=REPO, revision=other)
    bot.store.record_scan(repo_id=REPO, sha=sha, record_json=record.to_json(), verdict="backdoor")

    with pytest.raises(ValueError, match="record is for revision"):
        bot.handler()(_job(bot, REPO, sha))
    assert _bot_threads(hub) == [] and bot.store.posts(REPO) == []


# -- (b) a pickle-only repo is refused by the planner -------------------------------------------------------


def test_pickle_only_repo_is_skipped_and_records_no_scan(hub: EmulatorHandle, bot: Bot) -> None:
    sha = hub.state.create_repo(REPO, files={**_pickle_only_files(), "vocab.json": VOCAB, "merges.txt": MERGES},
                                tags=["clip"], library_name="transformers")  # fmt: skip

    with pytest.raises(SkipRepo) as skipped:
        bot.handler()(_job(bot, REPO, sha))

    assert skipped.value.code is SkipReason.PICKLE_ONLY
    assert "pytorch_model.bin" in skipped.value.reason
    assert bot.store.get_scan(REPO, sha) is None and bot.store.all_scans() == []
    assert bot.store.posts(REPO) == [] and _bot_threads(hub) == []
    assert _downloaded(bot.settings.cache_dir) == []  # the pickle (or anything else) was never fetched


# -- (c) corrupt safetensors ----------------------------------------------------------------------------------


def test_unreadable_safetensors_header_fails_the_job_and_records_no_scan(hub: EmulatorHandle, bot: Bot) -> None:
    garbage = struct.pack("<Q", 40) + b"{this is not a safetensors header at all!"
    sha = hub.state.create_repo(REPO, files={"config.json": CLIP_CONFIG, "model.safetensors": garbage,
                                             "vocab.json": VOCAB, "merges.txt": MERGES})  # fmt: skip

    with pytest.raises(ClipAuditError) as failed:
        bot.handler()(_job(bot, REPO, sha))

    assert isinstance(failed.value, SkipRepo) and failed.value.code is SkipReason.CORRUPT
    assert "model.safetensors" in failed.value.reason
    assert bot.store.get_scan(REPO, sha) is None and bot.store.all_scans() == []
    assert bot.store.posts(REPO) == [] and _bot_threads(hub) == []


def _truncated(path: Path, tmp_path: Path) -> Path:
    """A safetensors file whose header is valid but whose tensor data stops halfway."""
    whole = write_safetensors(tmp_path / "whole.safetensors", transformers_clip_shapes())
    data = whole.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    end = max(entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__")
    assert len(data) == 8 + header_len + end
    path.write_bytes(data[:8 + header_len + end // 2])
    return path


@pytest.mark.parametrize("resident", [True, False], ids=["resident-child", "one-shot-child"])
def test_truncated_safetensors_fails_in_the_scanner_and_records_no_scan(hub: EmulatorHandle, bot: Bot,
                                                                        tmp_path: Path, resident: bool) -> None:
    # The header passes planning (it names a text tower); the scanning child finds the data cut short.
    weights = _truncated(tmp_path / "truncated.safetensors", tmp_path)
    sha = hub.state.create_repo(REPO, files={"config.json": CLIP_CONFIG, "model.safetensors": weights,
                                             "vocab.json": VOCAB, "merges.txt": MERGES})  # fmt: skip
    bot.settings = dataclasses.replace(bot.settings, resident_scanner=resident)
    handler = bot.handler()

    with pytest.raises(ClipAuditError) as failed:
        try:
            handler(_job(bot, REPO, sha))
        finally:
            handler.close()

    assert isinstance(failed.value, ScanFailed), failed.value
    assert "truncated" in str(failed.value) and sha[:12] in str(failed.value)
    assert bot.store.get_scan(REPO, sha) is None and bot.store.all_scans() == []
    assert bot.store.posts(REPO) == [] and _bot_threads(hub) == []
    # the pinned snapshot was fetched (without the record ever being written)
    assert (bot.settings.cache_dir / f"models--{REPO.replace('/', '--')}" / "snapshots" / sha).is_dir()

