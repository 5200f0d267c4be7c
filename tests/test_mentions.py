"""Mentions: command parsing, the webhook receiver on a real uvicorn server, dispatch and polling via the emulator."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # before huggingface_hub is imported

import json  # noqa: E402
import queue  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from hub_fixtures import BOT_USER, start_hub  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402
from records import make_record  # noqa: E402

from bot.errors import ConfigError  # noqa: E402
from bot.hub.client import HubClient  # noqa: E402
from bot.mentions.commands import Command, parse_command  # noqa: E402
from bot.mentions.dispatch import MentionDispatcher  # noqa: E402
from bot.mentions.events import MentionEvent  # noqa: E402
from bot.mentions.polling import poll_mentions  # noqa: E402
from bot.mentions.webhook import create_app  # noqa: E402
from bot.publish.poster import Publisher  # noqa: E402
from bot.publish.render import scanned_commit_marker  # noqa: E402
from bot.state.store import Store  # noqa: E402
from hub_emulator import EmulatorHandle, EmulatorState  # noqa: E402

BOT = BOT_USER
SECRET = "s3cret-value"
REPO = "acme/clip-vit-b"
SITE = "https://reports.example.org"
SHA = "0123456789abcdef0123456789abcdef01234567"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# -- command parsing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@auditbot scan", Command("scan")),
        ("@AuditBot SCAN please", Command("scan")),
        ("Hi @auditbot, scan!", Command("scan")),
        ("@auditbot: scan main.", Command("scan", "main")),
        ("@auditbot rescan feature/v2-fix", Command("scan", "feature/v2-fix")),
        (f"@auditbot scan {SHA.upper()}", Command("scan", SHA)),
        (f"@auditbot scan revision `{SHA}`", Command("scan", SHA)),
        ("@auditbot can you please scan this again?", Command("scan")),
        ("@auditbot scan ../../etc/passwd", Command("help")),
        ("@auditbot scan refs/pr/1", Command("help")),
        ("@auditbot scan main..evil", Command("help")),
        ("@auditbot scan -rf", Command("help")),
        ("@auditbot badge", Command("badge")),
        ("@auditbot help", Command("help")),
        ("@auditbot", Command("help")),
        ("@auditbot opt-out", Command("opt-out")),
        ("@auditbot opt out.", Command("opt-out")),
        ("@auditbot OptOut", Command("opt-out")),
        ("@auditbot opt-in!", Command("opt-in")),
        ("thanks @auditbot!\n@auditbot badge", Command("badge")),
        ("@auditbot thanks!", None),
        ("thanks @auditbot!", None),
        ("scan please", None),
        ("@otherbot scan", None),
        ("@auditbot-dev scan", None),
        ("@auditbot_x scan", None),
        ("mail me at me@auditbot scan", None),
        ("> @auditbot scan\nquoted only", None),
        ("```\n@auditbot scan\n```", None),
        ("use `@auditbot scan` to ask", None),
        ("&#64;auditbot scan", None),
    ],
)
def test_parse_command(text: str, expected: Command | None) -> None:
    assert parse_command(text, bot_name=BOT) == expected


# -- a real uvicorn server in a thread ----------------------------------------------------------------------------


@contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _wait_until_up(url: str) -> None:
    for _ in range(500):
        try:
            with _NO_PROXY.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            threading.Event().wait(0.01)
    raise RuntimeError(f"{url} never answered")


def _post(url: str, payload: Any, *, secret: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Webhook-Secret"] = secret
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _NO_PROXY.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _comment_payload(*, author_id: str, content: str, hidden: bool = False, comment_id: str = "c1",
                     scope: str = "discussion.comment") -> dict[str, Any]:  # fmt: skip
    return {
        "event": {"action": "create", "scope": scope},
        "repo": {"type": "model", "name": REPO, "id": "r1", "headSha": SHA},
        "discussion": {"num": 3, "title": "Q", "status": "open", "isPullRequest": False, "author": {"id": "u9"}},
        "comment": {"id": comment_id, "author": {"id": author_id}, "content": content, "hidden": hidden},
        "webhook": {"id": "w1", "version": 3},
    }


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[MentionEvent]]]:
    handled: list[MentionEvent] = []
    with _serve(create_app(secret=SECRET, handle=handled.append, bot_user_id="bot-id")) as url:
        yield url, handled


def test_webhook_accepts_a_signed_comment_once(receiver: tuple[str, list[MentionEvent]]) -> None:
    url, handled = receiver
    status, body = _post(url + "/webhook", _comment_payload(author_id="eve-id", content="@auditbot scan"),
                         secret=SECRET)  # fmt: skip
    assert (status, body) == (202, {"status": "accepted"})
    assert handled == [MentionEvent(event_id="c1", repo_id=REPO, discussion_num=3, comment_id="c1", author=None,
                                    text="@auditbot scan", is_pull_request=False, author_id="eve-id")]  # fmt: skip


@pytest.mark.parametrize("secret", [None, "", "s3cret-valuf", SECRET + "x", "S3CRET-VALUE"])
def test_webhook_rejects_a_forged_secret(receiver: tuple[str, list[MentionEvent]], secret: str | None) -> None:
    url, handled = receiver
    status, body = _post(url + "/webhook", _comment_payload(author_id="eve-id", content="@auditbot scan"),
                         secret=secret)  # fmt: skip
    assert (status, body) == (401, {"status": "unauthorized"})
    assert handled == []


@pytest.mark.parametrize(
    "payload",
    [
        _comment_payload(author_id="bot-id", content="@auditbot scan"),  # the bot itself
        _comment_payload(author_id="eve-id", content="@auditbot scan", hidden=True),
        {**_comment_payload(author_id="eve-id", content="x"), "event": {"action": "update", "scope": "discussion"}},
        {**_comment_payload(author_id="eve-id", content="x"), "event": {"action": "update", "scope": "repo.content"}},
        {**_comment_payload(author_id="eve-id", content="x"), "repo": {"type": "dataset", "name": "a/b"}},
    ],
)
def test_webhook_ignores_what_is_not_a_human_comment(receiver: tuple[str, list[MentionEvent]],
                                                      payload: dict[str, Any]) -> None:  # fmt: skip
    url, handled = receiver
    assert _post(url + "/webhook", payload, secret=SECRET) == (200, {"status": "ignored"})
    assert handled == []


def test_webhook_rejects_malformed_payloads(receiver: tuple[str, list[MentionEvent]]) -> None:
    url, handled = receiver
    assert _post(url + "/webhook", b"{not json", secret=SECRET)[0] == 400
    broken = _comment_payload(author_id="eve-id", content="x")
    del broken["comment"]["id"]
    assert _post(url + "/webhook", broken, secret=SECRET) == (400, {"status": "malformed"})
    assert handled == []


def _with(path: str, value: Any) -> dict[str, Any]:
    """A valid comment payload with one field (dotted path) replaced."""
    payload = _comment_payload(author_id="eve-id", content="@auditbot scan")
    *parents, last = path.split(".")
    block = payload
    for key in parents:
        block = block[key]
    block[last] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("event.scope", ["discussion.comment"]),   # unhashable: was an HTTP 500
        ("event.scope", {"a": 1}),
        ("event", "discussion.comment"),
        ("discussion.num", -3),
        ("discussion.num", 0),
        ("discussion.num", "3"),                   # no coercion: the Hub sends numbers
        ("discussion.num", True),
        ("discussion", None),
        ("repo.name", "../../etc/passwd"),
        ("repo.name", "owner/name/extra"),
        ("repo", ["model"]),
        ("comment.author", "eve"),
        ("comment.content", 42),
        ("comment.hidden", "no"),
    ],
)
def test_webhook_answers_400_to_every_malformed_field(receiver: tuple[str, list[MentionEvent]], path: str,
                                                       value: Any) -> None:  # fmt: skip
    url, handled = receiver
    assert _post(url + "/webhook", _with(path, value), secret=SECRET) == (400, {"status": "malformed"})
    assert handled == []


def test_webhook_refuses_deep_nesting_and_non_objects_without_parsing_them(
        receiver: tuple[str, list[MentionEvent]]) -> None:  # fmt: skip
    url, handled = receiver
    deep = b"[" * 50_000 + b"]" * 50_000     # a RecursionError in json.loads: was an HTTP 500
    assert _post(url + "/webhook", deep, secret=SECRET) == (400, {"status": "malformed"})
    nested = _comment_payload(author_id="eve-id", content="x")
    nested["comment"]["extra"] = json.loads("[" * 40 + "]" * 40)
    assert _post(url + "/webhook", nested, secret=SECRET) == (400, {"status": "malformed"})
    # brackets inside strings are text, not nesting
    quoted = _comment_payload(author_id="eve-id", content="[[[[" * 20 + '\\"{{{{' * 20)
    assert _post(url + "/webhook", quoted, secret=SECRET)[0] == 202
    for body in (b"[]", b"42", b'"x"', b"null", b"\xff\xfe"):
        assert _post(url + "/webhook", body, secret=SECRET) == (400, {"status": "malformed"})
    assert len(handled) == 1


def test_webhook_caps_a_chunked_body_while_it_streams(receiver: tuple[str, list[MentionEvent]]) -> None:
    import http.client
    from urllib.parse import urlsplit

    from bot.mentions.webhook import MAX_BODY_BYTES

    url, handled = receiver
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def chunks():
        piece = b" " * 65536
        for _ in range(MAX_BODY_BYTES // len(piece) + 8):  # no Content-Length, just over the cap
            yield piece

    connection.request("POST", "/webhook", body=chunks(), encode_chunked=True,
                       headers={"X-Webhook-Secret": SECRET, "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read()) == {"status": "too large"}
    connection.close()
    assert handled == []


def test_webhook_health_and_empty_secret_refused(receiver: tuple[str, list[MentionEvent]]) -> None:
    url, _ = receiver
    with _NO_PROXY.open(url + "/health", timeout=10) as response:
        assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}
    with pytest.raises(ConfigError, match="secret"):
        create_app(secret="", handle=lambda event: None, bot_user_id=None)


# -- end to end: emulator -> webhook -> dispatcher -> Hub ---------------------------------------------------------


def _dispatcher(url: str, store: Store, tmp_path: Path) -> MentionDispatcher:
    api = HubClient(endpoint=url, token="bot-token")
    publisher = Publisher(api, store, bot_name=BOT, dry_run=False, outbox_dir=tmp_path / "outbox",
                          post_clean_results=False, report_base_url=SITE)  # fmt: skip
    return MentionDispatcher(api, store, publisher, bot_name=BOT)


def _bot_comments(hub: EmulatorHandle, num: int) -> list[str]:
    details = HfApi(endpoint=hub.url, token="bot-token").get_discussion_details(REPO, num)
    return [event.content for event in details.events if event.type == "comment" and event.author == BOT]


@contextmanager
def _hub_with_webhook(tmp_path: Path) -> Iterator[tuple[EmulatorHandle, "queue.Queue[MentionEvent]"]]:
    events: queue.Queue[MentionEvent] = queue.Queue()
    app = create_app(secret=SECRET, handle=events.put, bot_user_id=EmulatorState.user_id(BOT))
    with _serve(app) as url:
        hub = start_hub(tmp_path / "hub-data", webhook_url=url + "/webhook", webhook_secret=SECRET)
        try:
            yield hub, events
        finally:
            hub.stop()


def test_a_mention_travels_from_the_hub_to_an_acknowledged_job(tmp_path: Path, store: Store) -> None:
    with _hub_with_webhook(tmp_path) as (hub, events):
        sha = hub.state.create_repo(REPO, card_data={"license": "mit"})
        num = hub.state.create_discussion(REPO, author="eve", title="Backdoor?", description="Is this safe?")
        hub.state.add_comment(REPO, num, author="eve", text="@auditbot scan main please")
        dispatcher = _dispatcher(hub.url, store, tmp_path)
        opening = events.get(timeout=10)  # the new discussion's opening comment: no command in it
        assert (opening.discussion_num, opening.text) == (num, "Is this safe?")
        assert dispatcher.handle_new(opening).action == "ignored"
        event = events.get(timeout=10)
        assert (event.repo_id, event.discussion_num, event.author, event.text) == (
            REPO, num, None, "@auditbot scan main please")  # fmt: skip

        outcome = dispatcher.handle_new(event)
        assert (outcome.action, outcome.detail) == ("answered", "scan-queued")
        job = store.find_job(REPO, sha)
        assert job is not None and (job.reason, job.requested_by, job.discussion_num, job.revision) == (
            "mention", "eve", num, "main")  # fmt: skip
        [ack] = _bot_comments(hub, num)
        assert f"`{sha}`" in ack and "is queued" in ack and "@" not in ack

        # The bot's own ack came back through the webhook and was ignored; the same event is handled once.
        assert hub.state.webhooks is not None and hub.state.webhooks.flush()
        statuses = [entry["status"] for entry in hub.state.webhooks.log()]
        assert statuses[-1] == 200 and statuses.count(202) == 2
        assert events.empty()
        assert dispatcher.handle_new(event).detail == "already handled"
        assert poll_mentions(HubClient(endpoint=hub.url, token="bot-token"), store, bot_name=BOT,
                             repo_ids=[REPO]) == []
        assert len(_bot_comments(hub, num)) == 1


def _mention(hub: EmulatorHandle, num: int, author: str, text: str) -> MentionEvent:
    event = hub.state.add_comment(REPO, num, author=author, text=text)
    return MentionEvent(event_id=event.id, repo_id=REPO, discussion_num=num, comment_id=event.id, author=author,
                        text=text, is_pull_request=False)  # fmt: skip


def test_a_scanned_commit_gets_its_result_in_the_asking_thread(hub: EmulatorHandle, store: Store,
                                                               tmp_path: Path) -> None:  # fmt: skip
    sha = hub.state.create_repo(REPO)
    store.record_scan(repo_id=REPO, sha=sha, record_json=make_record("clean", revision=sha).to_json(),
                      verdict="clean")  # fmt: skip
    num = hub.state.create_discussion(REPO, author="eve", title="Clean?")
    dispatcher = _dispatcher(hub.url, store, tmp_path)

    outcome = dispatcher.handle(_mention(hub, num, "eve", "@auditbot scan"))
    assert (outcome.action, outcome.detail) == ("posted-result", "commented")
    [report] = _bot_comments(hub, num)
    assert scanned_commit_marker(sha) in report and "no textual backdoor found" in report
    again = dispatcher.handle(_mention(hub, num, "eve", "@auditbot scan"))
    assert again.detail == "already-reported" and len(_bot_comments(hub, num)) == 2
    assert store.find_job(REPO, sha) is None  # nothing re-queued


def test_revision_not_found_help_and_self_mentions(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Questions")
    dispatcher = _dispatcher(hub.url, store, tmp_path)
    assert dispatcher.handle(_mention(hub, num, "eve", "@auditbot scan no-such-branch")).detail == "revision-not-found"
    assert dispatcher.handle(_mention(hub, num, "eve", "@auditbot help")).detail == "help"
    assert dispatcher.handle(_mention(hub, num, BOT, "@auditbot help")).action == "ignored"
    assert dispatcher.handle(_mention(hub, num, "eve", "nice model")).action == "ignored"
    replies = [text for text in _bot_comments(hub, num) if text != "@auditbot help"]
    assert len(replies) == 2 and "no\\-such\\-branch" not in replies[0] and "no-such-branch" in replies[0]
    assert "opt-out" in replies[1]


def test_opt_out_is_honoured_from_the_owner_only(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Stop it")
    dispatcher = _dispatcher(hub.url, store, tmp_path)
    assert dispatcher.handle(_mention(hub, num, "eve", "@auditbot opt-out")).detail == "not-owner"
    assert not store.is_opted_out(REPO)
    assert dispatcher.handle(_mention(hub, num, "acme", "@auditbot opt-out")).detail == "opted-out"
    assert store.is_opted_out(REPO)
    assert dispatcher.handle(_mention(hub, num, "acme", "@auditbot opt-in")).detail == "opted-in"
    assert not store.is_opted_out(REPO)
    assert len(_bot_comments(hub, num)) == 3


def test_badge_needs_a_scan_of_the_head_then_opens_one_pr(hub: EmulatorHandle, store: Store,
                                                          tmp_path: Path) -> None:  # fmt: skip
    sha = hub.state.create_repo(REPO, card_data={"license": "mit"})
    num = hub.state.create_discussion(REPO, author="acme", title="Badge")
    dispatcher = _dispatcher(hub.url, store, tmp_path)
    assert dispatcher.handle(_mention(hub, num, "acme", "@auditbot badge")).detail == "badge-needs-scan"
    store.record_scan(repo_id=REPO, sha=sha, record_json=make_record("clean", revision=sha).to_json(),
                      verdict="clean")  # fmt: skip
    assert dispatcher.handle(_mention(hub, num, "acme", "@auditbot badge")).detail == "badge-offered"
    assert dispatcher.handle(_mention(hub, num, "eve", "@auditbot badge")).detail == "badge-already-offered"
    prs = list(HfApi(endpoint=hub.url, token="bot-token").get_repo_discussions(REPO, discussion_type="pull_request"))
    assert len(prs) == 1 and "pull request #" in _bot_comments(hub, num)[1]


def test_polling_finds_each_mention_exactly_once(hub: EmulatorHandle, store: Store) -> None:
    hub.state.create_repo(REPO)
    hub.state.create_repo("acme/quiet", discussions_disabled=True)
    api = HubClient(endpoint=hub.url, token="bot-token")
    num = hub.state.create_discussion(REPO, author="eve", title="Ping", description="@auditbot help")
    hub.state.add_comment(REPO, num, author="eve", text="unrelated")
    api.comment(REPO, num, "@auditbot scan (the bot quoting itself)")
    closed = hub.state.create_discussion(REPO, author="eve", title="Old", description="@auditbot scan")
    hub.state.change_status(REPO, closed, author="eve", status="closed")

    found = poll_mentions(api, store, bot_name=BOT, repo_ids=[REPO, "acme/quiet", "acme/missing"])
    assert [(e.discussion_num, e.author, e.text) for e in found] == [(num, "eve", "@auditbot help")]
    assert poll_mentions(api, store, bot_name=BOT, repo_ids=[REPO]) == []
    later = hub.state.add_comment(REPO, num, author="acme", text="@AUDITBOT opt-out")
    again = poll_mentions(api, store, bot_name=BOT, repo_ids=[REPO])
    assert [(e.event_id, e.author) for e in again] == [(later.id, "acme")]


def test_waiting_for_a_mention_is_not_fooled_by_the_opening_post():
    from bot.mentions.dispatch import DispatchOutcome
    from bot.service import MentionQueue

    class Dispatcher:  # the opening post of a thread carries no command; the comment does
        def handle_new(self, event: str) -> DispatchOutcome:
            if event == "opening post":
                return DispatchOutcome("ignored", detail="no command addressed to the bot")
            return DispatchOutcome("answered", parse_command("@clip-audit-bot help", bot_name="clip-audit-bot"), "help")

    mentions = MentionQueue(Dispatcher()).start()  # type: ignore[arg-type]
    try:
        mentions.put("opening post")
        assert not mentions.wait_for_command(0.3)
        mentions.put("comment")
        assert mentions.wait_for_command(10)
        assert [o.action for o in mentions.handled] == ["ignored", "answered"]
    finally:
        mentions.stop()


# -- the polling fallback inside `clip-audit watch` -----------------------------------------------------------


def _watch_env(hub: EmulatorHandle, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIP_AUDIT_", "HF_"))}
    env.update({"HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
                "CLIP_AUDIT_ENDPOINT": hub.url, "CLIP_AUDIT_TOKEN": "bot-token", "CLIP_AUDIT_BOT_NAME": BOT,
                "CLIP_AUDIT_DB_PATH": str(tmp_path / "state.db"), "CLIP_AUDIT_CACHE_DIR": str(tmp_path / "hub-cache"),
                "CLIP_AUDIT_INITIAL_BACKFILL": "0"})  # fmt: skip
    return env


def test_watch_once_answers_a_mention_that_no_webhook_delivered(hub: EmulatorHandle, tmp_path: Path) -> None:
    import subprocess
    import sys

    sha = hub.state.create_repo(REPO)
    with Store(tmp_path / "state.db") as store:  # the bot once posted a report here
        Publisher(HubClient(endpoint=hub.url, token="bot-token"), store, bot_name=BOT, dry_run=False,
                  outbox_dir=tmp_path / "outbox", post_clean_results=False, report_base_url=SITE,
                  ).publish(make_record("backdoor", revision=sha), repo_id=REPO, sha=sha, requested=False)
        assert store.repos_posted_in() == [REPO]
    num = hub.state.create_discussion(REPO, author="eve", title="Help?", description="What can the bot do?")
    hub.state.add_comment(REPO, num, author="eve", text="@auditbot help")  # this emulator sends no webhooks

    cmd = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main(sys.argv[1:]))", "watch", "--once"]
    done = subprocess.run(cmd, env=_watch_env(hub, tmp_path), capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "answered 1 mention(s)" in done.stdout
    [answer] = _bot_comments(hub, num)
    assert answer.startswith("Hi eve, here is what auditbot understands")  # the help it asked for

    again = subprocess.run(cmd, env=_watch_env(hub, tmp_path), capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0 and "answered 0 mention(s)" in again.stdout
    assert len(_bot_comments(hub, num)) == 1  # each mention is answered once


def test_the_watch_loop_polls_mentions_on_its_own_schedule(hub: EmulatorHandle, tmp_path: Path) -> None:
    import time

    from bot.service import Bot
    from bot.settings import load_settings

    sha = hub.state.create_repo(REPO)
    settings = load_settings(config_file=None, env={}, stored_token=lambda: None, overrides={
        "endpoint": hub.url, "token": "bot-token", "bot_name": BOT, "db_path": str(tmp_path / "state.db"),
        "cache_dir": str(tmp_path / "hub-cache"), "poll_interval_seconds": "3600", "mention_poll_seconds": "0.2",
        "initial_backfill": "0"})  # fmt: skip
    bot = Bot.from_settings(settings)
    bot.publisher.publish(make_record("backdoor", revision=sha), repo_id=REPO, sha=sha, requested=False)
    stop = threading.Event()
    loop = threading.Thread(target=bot.watch_forever, args=(stop,), daemon=True)
    loop.start()
    try:
        num = hub.state.create_discussion(REPO, author="acme", title="Quiet please", description="")
        hub.state.add_comment(REPO, num, author="acme", text="@auditbot opt-out")
        deadline = time.monotonic() + 30
        while not bot.store.is_opted_out(REPO) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bot.store.is_opted_out(REPO)
    finally:
        stop.set()
        loop.join(timeout=10)
    assert not loop.is_alive()
    assert len(_bot_comments(hub, num)) == 1
