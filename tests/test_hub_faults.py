"""The bot's Hub boundary (bot/hub/) under the emulator's injected faults, through the real huggingface_hub client
over HTTP: rate limits and 503 bursts, connections dropped mid-answer, stalled and trickling answers.

What must hold: each fault becomes the bot's retryable error (RateLimitedError with the Hub's Retry-After,
HubUnavailableError), a stall ends at the bot's timeout instead of hanging it, and a write whose answer was lost
(the Hub did it, the connection dropped) is not made a second time when the caller retries.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # before huggingface_hub is imported

import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from hub_fixtures import BOT_TOKEN, BOT_USER  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402
from records import make_record  # noqa: E402

from bot.errors import HubUnavailableError, RateLimitedError  # noqa: E402
from bot.hub.client import HubClient, use_timeout  # noqa: E402
from bot.mentions.dispatch import MentionDispatcher  # noqa: E402
from bot.mentions.events import MentionEvent  # noqa: E402
from bot.mentions.processor import MentionProcessor, store_mention  # noqa: E402
from bot.publish.poster import PostAction, Publisher  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from bot.state import JobStatus, MentionStatus  # noqa: E402
from bot.state.store import Store  # noqa: E402
from bot.worker import Worker  # noqa: E402
from hub_emulator import EmulatorHandle  # noqa: E402
from hub_emulator.faults import fault_from_spec  # noqa: E402

REPO = "acme/clip-vit-b"
SHORT_TIMEOUT_S = 1.0  # the bot's Hub timeout in these tests: a stalled answer must end in it, not hang the test


@pytest.fixture
def short_timeout() -> Iterator[float]:
    """HubClients built in the test time out after SHORT_TIMEOUT_S; the process-wide client gets the default back
    afterwards, so that later tests are not cut short on a busy machine."""
    yield SHORT_TIMEOUT_S
    use_timeout(Settings.hub_timeout_seconds)


def _fault(hub: EmulatorHandle, **spec: Any) -> None:
    hub.state.faults.add(fault_from_spec(spec))


def _fired(hub: EmulatorHandle) -> list[int]:
    listing = hub.state.faults.listing()
    return [fault["fired"] for fault in listing["active"] + listing["spent"]]


def _client(hub: EmulatorHandle, timeout: float = Settings.hub_timeout_seconds) -> HubClient:
    return HubClient(endpoint=hub.url, token=BOT_TOKEN, timeout_s=timeout)


def _bot_posts(hub: EmulatorHandle) -> list[tuple[int, str]]:
    """(discussion number, text) of every post the bot made on REPO: opening posts and comments."""
    api = HfApi(endpoint=hub.url, token=BOT_TOKEN)
    posts = []
    for discussion in api.get_repo_discussions(REPO):
        details = api.get_discussion_details(REPO, discussion.num)
        posts += [(discussion.num, e.content) for e in details.events if e.type == "comment" and e.author == BOT_USER]
    return posts


# -- every fault is a retryable error of the bot's ------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "error", "retry_after"),
    [
        ({"status": 429, "retry_after": 7}, RateLimitedError, 7.0),
        ({"status": 503, "count": 3}, HubUnavailableError, None),
        ({"status": 503, "retry_after": 2}, RateLimitedError, 2.0),
        ({"kind": "drop"}, HubUnavailableError, None),
        ({"kind": "drop", "drop_after_bytes": 0}, HubUnavailableError, None),
        ({"kind": "stall", "stall_s": 600}, HubUnavailableError, None),
    ],
    ids=["429-retry-after", "503-burst", "503-retry-after", "drop-mid-body", "drop-after-headers", "stall"],
)
def test_each_fault_is_a_retryable_error_and_the_hub_recovers(hub: EmulatorHandle, short_timeout: float,
                                                              spec: dict[str, Any], error: type[Exception],
                                                              retry_after: float | None) -> None:  # fmt: skip
    sha = hub.state.create_repo(REPO)
    client = _client(hub, short_timeout)
    _fault(hub, path_prefix=f"/api/models/{REPO}", **spec)
    for _ in range(spec.get("count", 1)):
        with pytest.raises(error) as caught:
            client.model_info(REPO)
        if retry_after is not None:
            assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert client.model_info(REPO).sha == sha  # the burst is over
    assert _fired(hub) == [spec.get("count", 1)]


def test_a_slow_answer_within_the_timeout_arrives_whole(hub: EmulatorHandle, tmp_path: Path,
                                                        short_timeout: float) -> None:  # fmt: skip
    content = bytes(range(256)) * 16
    sha = hub.state.create_repo(REPO, files={"config.json": content})
    client = _client(hub, short_timeout)
    # 4 KiB at 8 KiB/s: half a second in all, each piece well inside the per-read timeout
    _fault(hub, kind="slow", path_prefix=f"/{REPO}/resolve/", bytes_per_s=8192)
    path = client.download(REPO, "config.json", revision=sha, cache_dir=tmp_path / "cache")
    assert path.read_bytes() == content and _fired(hub) == [1]


def test_list_pagination_rides_out_a_503_burst(hub: EmulatorHandle) -> None:
    for index in range(3):
        hub.state.create_repo(f"acme/clip-{index}", tags=["clip"])
    _fault(hub, path_prefix="/api/models", method="GET", status=503, count=2)
    # huggingface_hub retries listing pages itself (http_backoff); the bot sees the whole listing
    assert sorted(m.id for m in _client(hub).list_models(filter="clip")) == [f"acme/clip-{i}" for i in range(3)]


# -- writes whose answer was lost are not made twice ------------------------------------------------------------


def _publisher(hub: EmulatorHandle, store: Store, tmp_path: Path) -> Publisher:
    return Publisher(_client(hub), store, bot_name=BOT_USER, dry_run=False, outbox_dir=tmp_path / "outbox",
                     post_clean_results=False, report_base_url=None)  # fmt: skip


def test_a_report_whose_answer_was_dropped_is_not_posted_again(hub: EmulatorHandle, store: Store,
                                                               tmp_path: Path) -> None:  # fmt: skip
    first_sha = hub.state.create_repo(REPO)
    publisher = _publisher(hub, store, tmp_path)
    opening = make_record("backdoor", model=REPO, revision=first_sha)
    _fault(hub, kind="drop", path_prefix=f"/api/models/{REPO}/discussions", method="POST")
    with pytest.raises(HubUnavailableError):
        publisher.publish(opening, repo_id=REPO, sha=first_sha, requested=False)
    again = publisher.publish(opening, repo_id=REPO, sha=first_sha, requested=False)  # the worker's retry
    assert again.action is PostAction.SKIPPED_DUPLICATE

    second_sha = hub.state.push_revision(REPO, files={"notes.txt": b"v2"})
    update = make_record("backdoor", model=REPO, revision=second_sha)
    _fault(hub, kind="drop", path_prefix=f"/api/models/{REPO}/discussions", method="POST", drop_after_bytes=0)
    with pytest.raises(HubUnavailableError):
        publisher.publish(update, repo_id=REPO, sha=second_sha, requested=False)
    retried = publisher.publish(update, repo_id=REPO, sha=second_sha, requested=False)
    assert retried.action is PostAction.SKIPPED_DUPLICATE
    posts = _bot_posts(hub)
    assert [num for num, _ in posts] == [1, 1]  # one thread: its opening report and one comment for the update
    assert _fired(hub) == [1, 1]


def test_a_worker_retries_a_dropped_result_post_and_posts_it_once(hub: EmulatorHandle, store: Store,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    from bot.service import Bot

    sha = hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Is this safe?")
    settings = load_settings(config_file=None, env={}, stored_token=lambda: None, overrides={
        "endpoint": hub.url, "token": BOT_TOKEN, "bot_name": BOT_USER, "db_path": str(store.path),
        "cache_dir": str(tmp_path / "hub-cache"), "backoff_seconds": "0", "worker_idle_seconds": "0.05"})
    # Scanned before: the job only publishes (no model runs here); the requested answer goes to eve's thread.
    store.record_scan(repo_id=REPO, sha=sha, record_json=make_record("clean", model=REPO, revision=sha).to_json(),
                      verdict="clean")  # fmt: skip
    job = store.enqueue(repo_id=REPO, sha=sha, reason="mention", requested_by="eve", discussion_num=num)
    assert job is not None
    _fault(hub, kind="drop", path_prefix=f"/api/models/{REPO}/discussions/{num}/comment", method="POST")
    _fault(hub, status=503, count=2, path_prefix=f"/api/models/{REPO}/discussions/{num}", method="GET")

    bot = Bot.from_settings(settings)
    worker = Worker(bot.store, settings, handler=bot.handler())
    assert worker.work(burst=True) == 4  # 503, 503, the post whose answer was dropped, the retry that finds it
    done = store.get_job(job.id)
    assert done is not None and (done.status, done.attempts) == (JobStatus.DONE, 4)
    assert [n for n, _ in _bot_posts(hub)] == [num]


def test_a_mention_through_a_storm_of_faults_is_answered_once(hub: EmulatorHandle, store: Store,
                                                              tmp_path: Path) -> None:  # fmt: skip
    hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Is this safe?")
    comment = hub.state.add_comment(REPO, num, author="eve", text=f"@{BOT_USER} help")
    assert store_mention(store, MentionEvent(event_id=comment.id, repo_id=REPO, discussion_num=num,
                                             comment_id=comment.id, author=None, text=comment.data["raw"],
                                             is_pull_request=False), source="webhook")  # fmt: skip
    details = f"/api/models/{REPO}/discussions/{num}"
    _fault(hub, status=503, count=2, path_prefix=details, method="GET")
    _fault(hub, status=429, retry_after=1, path_prefix=details, method="GET")
    _fault(hub, kind="drop", path_prefix=details + "/comment", method="POST")
    api = _client(hub)
    dispatcher = MentionDispatcher(api, store, _publisher(hub, store, tmp_path), bot_name=BOT_USER)
    processor = MentionProcessor(store, dispatcher, max_attempts=10, backoff_seconds=(0.05,), lease_seconds=60,
                                 idle_seconds=0.05)  # fmt: skip
    deadline = time.monotonic() + 60  # bounds a loaded machine; nothing here is timed
    while store.get_mention(comment.id).status is MentionStatus.PENDING and time.monotonic() < deadline:  # type: ignore[union-attr]
        processor.process_due()
        time.sleep(0.05)
    row = store.get_mention(comment.id)
    assert row is not None and row.status is MentionStatus.HANDLED
    # 503, 503, 429 (then at least its Retry-After), the reply whose answer was dropped, the reread that finds it
    assert (row.attempts, row.outcome) == (5, "ignored: already answered in the thread")
    assert len(_bot_posts(hub)) == 1 and _fired(hub) == [2, 1, 1]
