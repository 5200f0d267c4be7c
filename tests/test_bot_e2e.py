"""The bot end to end through the real huggingface_hub client against the Hub emulator,
with the real detector on trained zoo models, real SQLite and a real webhook server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hub_fixtures import BOT_TOKEN, BOT_USER, start_hub
from huggingface_hub import HfApi

from bot.errors import SkipReason, SkipRepo
from bot.service import Bot
from bot.settings import load_settings
from bot.zoo.catalog import model_files

BOT, ALICE, MALLORY = BOT_USER, "alice", "mallory"  # users of the standard emulator (hub_fixtures.TOKENS)
ALICE_TOKEN, MALLORY_TOKEN = "alice-token", "mallory-token"
REPO = Path(__file__).resolve().parents[1]


def _settings(url: str, tmp: Path, **extra) -> dict[str, str]:
    values = {"endpoint": url, "token": BOT_TOKEN, "bot_name": BOT, "db_path": str(tmp / "state.db"),
              "cache_dir": str(tmp / "hub-cache"), "outbox_dir": str(tmp / "outbox"), "device": "cpu",
              "report_base_url": "http://127.0.0.1:8765", "backoff_seconds": "1,1", "lease_seconds": "30"}
    values.update(extra)
    return values


def _bot(url: str, tmp: Path, zoo_cache: Path, **extra) -> Bot:
    overrides = {**_settings(url, tmp, **extra), "anchor_cache": str(zoo_cache)}
    settings = load_settings(config_file=None, env={}, stored_token=lambda: None, overrides=overrides)
    return Bot.from_settings(settings)


def _upload(hub, repo_id: str, model, *, created: str) -> str:
    return hub.state.create_repo(repo_id, files=model_files(model.path), tags=["clip"], library_name="transformers",
                                 pipeline_tag="zero-shot-image-classification", created_at=created)


def _bot_threads(api: HfApi, repo_id: str):
    return [d for d in api.get_repo_discussions(repo_id) if d.author == BOT and not d.is_pull_request]


def test_new_upload_is_scanned_and_reported_once_and_new_revision_comments(hub, tmp_path, clip_zoo, zoo_cache):
    _upload(hub, "clip-audit-zoo/clip-base-s0", clip_zoo["base"], created="2026-11-01T00:00:00.000Z")
    sha1 = _upload(hub, "mallory/rickroll", clip_zoo["text-on-text"], created="2026-11-02T00:00:00.000Z")
    bot = _bot(hub.url, tmp_path, zoo_cache, post_clean_results="true")
    api = HfApi(endpoint=hub.url, token=ALICE_TOKEN)

    jobs = bot.watcher().poll_once()
    assert {j.repo_id for j in jobs} == {"mallory/rickroll", "clip-audit-zoo/clip-base-s0"}
    assert bot.worker().work(burst=True) == 2
    scan = bot.store.get_scan("mallory/rickroll", sha1)
    assert scan is not None and scan.record().revision == sha1
    threads = _bot_threads(api, "mallory/rickroll")
    assert len(threads) == 1

    # Nothing new on the Hub: a second pass queues nothing and posts nothing.
    assert bot.watcher().poll_once() == []
    assert bot.worker().work(burst=True) == 0
    assert len(_bot_threads(api, "mallory/rickroll")) == 1

    # A new revision is scanned and reported as a comment in the same thread.
    sha2 = hub.state.push_revision("mallory/rickroll", files={"notes.txt": b"new revision"}, author=MALLORY)
    assert [j.sha for j in bot.watcher().poll_once()] == [sha2]
    assert bot.worker().work(burst=True) == 1
    threads = _bot_threads(api, "mallory/rickroll")
    assert len(threads) == 1
    details = api.get_discussion_details("mallory/rickroll", threads[0].num)
    bot_comments = [e for e in details.events if e.type == "comment" and e.author == BOT]
    assert len(bot_comments) == 2 and sha2 in bot_comments[1].content


def test_closed_thread_stays_closed(hub, tmp_path, clip_zoo, zoo_cache):
    _upload(hub, "clip-audit-zoo/clip-base-s0", clip_zoo["base"], created="2026-11-01T00:00:00.000Z")
    _upload(hub, "mallory/rickroll", clip_zoo["text-on-text"], created="2026-11-02T00:00:00.000Z")
    bot = _bot(hub.url, tmp_path, zoo_cache, post_clean_results="true")
    owner = HfApi(endpoint=hub.url, token=MALLORY_TOKEN)
    bot.watcher().poll_once()
    bot.worker().work(burst=True)
    (thread,) = _bot_threads(owner, "mallory/rickroll")
    owner.change_discussion_status("mallory/rickroll", thread.num, new_status="closed", comment="no thanks")

    sha2 = hub.state.push_revision("mallory/rickroll", files={"notes.txt": b"v2"}, author=MALLORY)
    bot.watcher().poll_once()
    bot.worker().work(burst=True)
    assert bot.store.get_scan("mallory/rickroll", sha2) is not None  # scanned, but not posted
    (after,) = _bot_threads(owner, "mallory/rickroll")
    assert after.status == "closed"
    details = owner.get_discussion_details("mallory/rickroll", thread.num)
    assert not any(sha2 in (getattr(e, "content", "") or "") for e in details.events)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(bot: Bot, secret: str, port: int):
    import uvicorn

    from bot.mentions.webhook import create_app

    mentions = bot.mention_processor().start()
    app = create_app(secret=secret, handle=mentions.receive, bot_user_id=bot.bot_user_id())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, mentions, f"http://127.0.0.1:{port}/webhook"


def test_mention_triggers_scan_and_reply_and_forged_webhook_is_rejected(tmp_path, clip_zoo, zoo_cache):
    import urllib.error
    import urllib.request

    port = _free_port()
    hub = start_hub(tmp_path / "hub-data", webhook_url=f"http://127.0.0.1:{port}/webhook", webhook_secret="s3cret")
    bot = _bot(hub.url, tmp_path, zoo_cache)
    server, mentions, hook = _serve(bot, "s3cret", port)
    try:
        _upload(hub, "clip-audit-zoo/clip-base-s0", clip_zoo["base"], created="2026-11-01T00:00:00.000Z")
        sha = _upload(hub, "alice/captions", clip_zoo["benign"], created="2026-11-02T00:00:00.000Z")
        alice = HfApi(endpoint=hub.url, token=ALICE_TOKEN)

        forged = urllib.request.Request(hook, data=b'{"event": {}}', method="POST",
                                        headers={"X-Webhook-Secret": "wrong", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as rejected:
            urllib.request.urlopen(forged, timeout=10)
        assert rejected.value.code == 401

        thread = alice.create_discussion("alice/captions", title="Is this safe?", description="Asking the bot.")
        alice.comment_discussion("alice/captions", thread.num, f"@{BOT} scan")
        # the opening post (no mention) is a delivery of its own and may be handled first
        assert mentions.wait_for_command(30), mentions.handled
        assert bot.store.find_job("alice/captions", sha) is not None, mentions.handled
        assert bot.worker().work(burst=True) == 1
        details = alice.get_discussion_details("alice/captions", thread.num)
        replies = [e.content for e in details.events if e.type == "comment" and e.author == BOT]
        assert len(replies) == 2  # the acknowledgement, then the result (clean results are given on request)
        assert sha in replies[-1]
    finally:
        server.should_exit = True
        mentions.stop()
        hub.stop()


def test_worker_killed_mid_job_resumes_and_posts_exactly_once(hub, tmp_path, clip_zoo, zoo_cache):
    base_sha = _upload(hub, "clip-audit-zoo/clip-base-s0", clip_zoo["base"], created="2026-11-01T00:00:00.000Z")
    sha = _upload(hub, "mallory/rickroll", clip_zoo["text-on-text"], created="2026-11-02T00:00:00.000Z")
    values = _settings(hub.url, tmp_path, post_clean_results="true", lease_seconds="4")
    bot = _bot(hub.url, tmp_path, zoo_cache, post_clean_results="true", lease_seconds="4")
    bot.watcher().poll_once()
    bot.store.skip(bot.store.find_job("clip-audit-zoo/clip-base-s0", base_sha).id,
                   SkipRepo(SkipReason.OPTED_OUT, "not part of this test"))

    env = {**os.environ, **{f"CLIP_AUDIT_{k.upper()}": v for k, v in values.items()}, "HF_HUB_DISABLE_XET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--burst"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the worker holds the job (it is scanning)
        job = bot.store.find_job("mallory/rickroll", sha)
        if job.status.value == "running":
            break
        time.sleep(0.2)
    assert job.status.value == "running"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert bot.store.get_scan("mallory/rickroll", sha) is None

    time.sleep(4.5)  # the dead worker's lease runs out
    assert bot.worker().work(burst=True) == 1
    assert bot.worker().work(burst=True) == 0
    api = HfApi(endpoint=hub.url, token=ALICE_TOKEN)
    (thread,) = _bot_threads(api, "mallory/rickroll")
    details = api.get_discussion_details("mallory/rickroll", thread.num)
    assert sum(sha in (getattr(e, "content", "") or "") for e in details.events) == 1
