"""Mentions: command parsing, the webhook receiver on a real uvicorn server, dispatch and polling via the emulator."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # before huggingface_hub is imported

import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
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

from bot.errors import ConfigError, StoreError  # noqa: E402
from bot.hub.client import HubClient  # noqa: E402
from bot.mentions.commands import Command, parse_command  # noqa: E402
from bot.mentions.dispatch import MentionDispatcher  # noqa: E402
from bot.mentions.events import MentionEvent  # noqa: E402
from bot.mentions.polling import poll_mentions  # noqa: E402
from bot.mentions.processor import MentionProcessor, store_mention  # noqa: E402
from bot.mentions.webhook import create_app  # noqa: E402
from bot.publish.poster import Publisher  # noqa: E402
from bot.publish.render import scanned_commit_marker  # noqa: E402
from bot.state import MentionStatus  # noqa: E402
from bot.state.store import Store  # noqa: E402
from hub_emulator import EmulatorHandle, EmulatorState  # noqa: E402
from hub_emulator.faults import Fault  # noqa: E402

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
                     scope: str = "discussion.comment", num: int = 3) -> dict[str, Any]:  # fmt: skip
    return {
        "event": {"action": "create", "scope": scope},
        "repo": {"type": "model", "name": REPO, "id": "r1", "headSha": SHA},
        "discussion": {"num": num, "title": "Q", "status": "open", "isPullRequest": False, "author": {"id": "u9"}},
        "comment": {"id": comment_id, "author": {"id": author_id}, "content": content, "hidden": hidden},
        "webhook": {"id": "w1", "version": 3},
    }


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[MentionEvent]]]:
    handled: list[MentionEvent] = []

    def record(event: MentionEvent) -> bool:
        handled.append(event)
        return True

    with _serve(create_app(secret=SECRET, handle=record, bot_user_id="bot-id")) as url:
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


def test_webhook_stores_before_it_answers_and_a_redelivery_is_a_2xx(tmp_path: Path, store: Store) -> None:
    processor = _processor(store, _dispatcher("http://127.0.0.1:9", store, tmp_path))  # never started: no Hub
    payload = _comment_payload(author_id="eve-id", content="@auditbot help", comment_id="c42")
    with _serve(create_app(secret=SECRET, handle=processor.receive, bot_user_id="bot-id")) as url:
        assert _post(url + "/webhook", payload, secret=SECRET) == (202, {"status": "accepted"})
        [row] = store.mention_events()  # written before the answer went back
        assert (row.event_id, row.repo_id, row.discussion_num, row.author, row.author_id, row.text, row.source,
                row.status, row.attempts) == ("c42", REPO, 3, None, "eve-id", "@auditbot help", "webhook",
                                              MentionStatus.PENDING, 0)  # fmt: skip
        assert _post(url + "/webhook", payload, secret=SECRET) == (200, {"status": "duplicate"})
        assert store.mention_events() == [row]


def test_webhook_answers_503_with_retry_after_when_the_store_cannot_take_the_event() -> None:
    from bot.mentions.webhook import RETRY_AFTER_SECONDS

    def broken(event: MentionEvent) -> bool:
        raise StoreError("state database state.db: cannot record a mention (database is locked)")

    payload = _comment_payload(author_id="eve-id", content="@auditbot help")
    with _serve(create_app(secret=SECRET, handle=broken, bot_user_id="bot-id")) as url:
        request = urllib.request.Request(url + "/webhook", data=json.dumps(payload).encode(), method="POST",
                                         headers={"X-Webhook-Secret": SECRET, "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as answered:
            _NO_PROXY.open(request, timeout=10)
    assert answered.value.code == 503 and answered.value.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert json.loads(answered.value.read()) == {"status": "unavailable"}


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


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()  # the store stamps new mentions with the real time

    def __call__(self) -> float:
        return self.now


def _processor(store: Store, dispatcher: Any, *, clock: Any = time.time, max_attempts: int = 4,
               backoff: tuple[float, ...] = (10.0, 60.0)) -> MentionProcessor:  # fmt: skip
    return MentionProcessor(store, dispatcher, max_attempts=max_attempts, backoff_seconds=backoff, lease_seconds=60.0,
                            idle_seconds=0.05, clock=clock)  # fmt: skip


def _bot_comments(hub: EmulatorHandle, num: int) -> list[str]:
    details = HfApi(endpoint=hub.url, token="bot-token").get_discussion_details(REPO, num)
    return [event.content for event in details.events if event.type == "comment" and event.author == BOT]


@contextmanager
def _hub_with_webhook(tmp_path: Path, store: Store, *,
                      backoff: tuple[float, ...] = (10.0, 60.0)) -> Iterator[tuple[EmulatorHandle, MentionProcessor]]:
    """The emulator delivering to a real webhook server that stores each event; nothing handles them until the
    test calls the processor's process_due (or starts it)."""
    with _serve(create_app(secret=SECRET, handle=lambda event: processor.receive(event),
                           bot_user_id=EmulatorState.user_id(BOT))) as url:  # fmt: skip
        hub = start_hub(tmp_path / "hub-data", webhook_url=url + "/webhook", webhook_secret=SECRET)
        processor = _processor(store, _dispatcher(hub.url, store, tmp_path), backoff=backoff)
        try:
            yield hub, processor
        finally:
            processor.stop()
            hub.stop()


def test_a_mention_travels_from_the_hub_to_an_acknowledged_job(tmp_path: Path, store: Store) -> None:
    with _hub_with_webhook(tmp_path, store) as (hub, processor):
        sha = hub.state.create_repo(REPO, card_data={"license": "mit"})
        num = hub.state.create_discussion(REPO, author="eve", title="Backdoor?", description="Is this safe?")
        comment = hub.state.add_comment(REPO, num, author="eve", text="@auditbot scan main please")
        assert hub.state.webhooks is not None and hub.state.webhooks.flush()
        opening, event = store.mention_events()  # both deliveries stored; nothing handled yet
        assert (opening.text, event.event_id, event.author, event.status) == (
            "Is this safe?", comment.id, None, MentionStatus.PENDING)  # fmt: skip

        outcomes = processor.process_due()
        assert [(o.action, o.detail) for o in outcomes] == [("ignored", "no command addressed to the bot"),
                                                            ("answered", "scan-queued")]  # fmt: skip
        assert [(m.status, m.outcome) for m in store.mention_events()] == [
            (MentionStatus.HANDLED, "ignored: no command addressed to the bot"),
            (MentionStatus.HANDLED, "answered: scan-queued")]  # fmt: skip
        job = store.find_job(REPO, sha)
        assert job is not None and (job.reason, job.requested_by, job.discussion_num, job.revision) == (
            "mention", "eve", num, "main")  # fmt: skip
        [ack] = _bot_comments(hub, num)
        assert f"`{sha}`" in ack and "is queued" in ack and "@" not in ack
        assert ack.endswith(f"<!-- clip-audit reply to {comment.id} -->\n")  # invisible on the Hub

        # The bot's own ack came back through the webhook and was ignored; a redelivery is stored once.
        assert hub.state.webhooks.flush()
        log = hub.state.webhooks.log()
        statuses = [entry["status"] for entry in log]
        assert statuses[-1] == 200 and statuses.count(202) == 2
        [delivery] = [entry for entry in log if entry["payload"].get("comment", {}).get("id") == comment.id]
        redelivered = _post(delivery["url"], delivery["payload"], secret=SECRET)
        assert redelivered == (200, {"status": "duplicate"})
        assert processor.process_due() == [] and len(store.mention_events()) == 2
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


def test_waiting_for_a_mention_is_not_fooled_by_the_opening_post(store: Store) -> None:
    from bot.mentions.dispatch import DispatchOutcome

    class Dispatcher:  # the opening post of a thread carries no command; the comment does
        def handle(self, event: MentionEvent, *, reread: bool = False) -> DispatchOutcome:
            if event.text == "opening post":
                return DispatchOutcome("ignored", detail="no command addressed to the bot")
            return DispatchOutcome("answered", parse_command("@clip-audit-bot help", bot_name="clip-audit-bot"), "help")

    def event(comment_id: str, text: str) -> MentionEvent:
        return MentionEvent(event_id=comment_id, repo_id=REPO, discussion_num=1, comment_id=comment_id, author=None,
                            text=text, is_pull_request=False)  # fmt: skip

    mentions = _processor(store, Dispatcher()).start()
    try:
        assert mentions.receive(event("c1", "opening post"))
        assert not mentions.wait_for_command(0.3)
        assert mentions.receive(event("c2", "comment"))
        assert mentions.wait_for_command(10)
        assert [o.action for o in mentions.handled] == ["ignored", "answered"]
    finally:
        mentions.stop()


# -- durable mentions: Hub faults, a killed `serve`, redeliveries -------------------------------------------------


def _wait_for(condition: Any, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit  # a deadline for a loaded machine, not a timing assertion
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _details_path(num: int) -> str:
    return f"/api/models/{REPO}/discussions/{num}"


def _stored_mention(store: Store, hub: EmulatorHandle, num: int, text: str) -> str:
    """A comment on the Hub whose webhook delivery was stored (as the receiver stores it: no author name)."""
    comment = hub.state.add_comment(REPO, num, author="eve", text=text)
    assert store_mention(store, MentionEvent(event_id=comment.id, repo_id=REPO, discussion_num=num,
                                             comment_id=comment.id, author=None, text=text, is_pull_request=False,
                                             author_id=EmulatorState.user_id("eve")), source="webhook")  # fmt: skip
    return comment.id


def test_a_server_error_on_the_comment_read_is_retried_and_answered_once(tmp_path: Path, store: Store) -> None:
    with _hub_with_webhook(tmp_path, store, backoff=(0.05,)) as (hub, processor):
        hub.state.create_repo(REPO)
        hub.state.faults.add(Fault(path_prefix=_details_path(1), method="GET", status=500, remaining=1))
        processor.start()
        num = hub.state.create_discussion(REPO, author="eve", title="Help", description="@auditbot help")
        assert num == 1 and hub.state.webhooks is not None and hub.state.webhooks.flush()
        _wait_for(lambda: [m.status for m in store.mention_events()] == [MentionStatus.HANDLED], "the answer")
        [row] = store.mention_events()
        assert (row.attempts, row.outcome) == (2, "answered: help")
        assert row.last_error is not None and row.last_error.startswith("HubUnavailableError: cannot read")
        [reply] = _bot_comments(hub, num)
        assert reply.startswith("Hi eve, here is what auditbot understands")


def test_a_rate_limited_read_waits_for_retry_after_then_answers(hub: EmulatorHandle, store: Store,
                                                                tmp_path: Path) -> None:  # fmt: skip
    hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Help")
    event_id = _stored_mention(store, hub, num, "@auditbot help")
    hub.state.faults.add(Fault(path_prefix=_details_path(num), method="GET", status=429, remaining=1, retry_after_s=30))
    clock = FakeClock()
    processor = _processor(store, _dispatcher(hub.url, store, tmp_path), clock=clock, backoff=(5.0,))
    started = clock.now

    assert processor.process_due() == []
    waiting = store.get_mention(event_id)
    assert waiting is not None and waiting.status is MentionStatus.PENDING and waiting.attempts == 1
    assert waiting.next_attempt_at == started + 30  # Retry-After beats the backoff (5 s)
    assert waiting.last_error is not None and waiting.last_error.startswith("RateLimitedError")
    clock.now = started + 29
    assert processor.process_due() == []  # not due yet
    clock.now = started + 30
    assert [o.detail for o in processor.process_due()] == ["help"]
    assert len(_bot_comments(hub, num)) == 1


@pytest.mark.parametrize(
    ("method", "path", "message", "error"),
    [
        ("GET", "", "Discussions are disabled for this repo", "DiscussionsDisabledError"),
        ("POST", "/comment", "Forbidden: the token may not write here", "HubAuthError"),
    ],
    ids=["read-discussions-disabled", "reply-forbidden"],
)
def test_a_permanent_403_is_recorded_and_not_retried(hub: EmulatorHandle, store: Store, tmp_path: Path, method: str,
                                                     path: str, message: str, error: str) -> None:  # fmt: skip
    hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Help")
    event_id = _stored_mention(store, hub, num, "@auditbot help")
    hub.state.faults.add(Fault(path_prefix=_details_path(num) + path, method=method, status=403, remaining=100,
                               message=message))  # fmt: skip
    clock = FakeClock()
    processor = _processor(store, _dispatcher(hub.url, store, tmp_path), clock=clock)

    assert processor.process_due() == []
    failed = store.get_mention(event_id)
    assert failed is not None and (failed.status, failed.attempts) == (MentionStatus.FAILED, 1)
    assert failed.last_error is not None and failed.last_error.startswith(f"{error}: ")
    clock.now += 86_400
    assert processor.process_due() == []
    assert store.get_mention(event_id) == failed  # never taken again
    hub.state.faults.clear()
    assert _bot_comments(hub, num) == []


def test_transient_errors_are_given_up_after_the_last_attempt(hub: EmulatorHandle, store: Store,
                                                              tmp_path: Path) -> None:  # fmt: skip
    hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Help")
    event_id = _stored_mention(store, hub, num, "@auditbot help")
    hub.state.faults.add(Fault(path_prefix=_details_path(num), method="GET", status=503, remaining=100))
    clock = FakeClock()
    processor = _processor(store, _dispatcher(hub.url, store, tmp_path), clock=clock, max_attempts=3, backoff=(5.0,))

    for attempt in (1, 2, 3):
        assert processor.process_due() == []
        row = store.get_mention(event_id)
        assert row is not None and row.attempts == attempt
        clock.now += 5
    assert row.status is MentionStatus.FAILED and row.last_error is not None
    assert row.last_error.startswith("HubUnavailableError: cannot read") and "503" in row.last_error
    clock.now += 86_400
    assert processor.process_due() == [] and store.get_mention(event_id) == row


def test_a_retry_after_an_unrecorded_reply_does_not_answer_twice(hub: EmulatorHandle, store: Store, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Help")
    event_id = _stored_mention(store, hub, num, "@auditbot help")
    clock = FakeClock()
    processor = _processor(store, _dispatcher(hub.url, store, tmp_path), clock=clock)

    def crashed(*args: Any, **kwargs: Any) -> bool:  # the reply is posted, then the process stops
        raise StoreError("state database state.db: cannot update a mention (disk I/O error)")

    with monkeypatch.context() as patched:
        patched.setattr(store, "finish_mention", crashed)
        assert [o.detail for o in processor.process_due()] == ["help"]
    assert store.get_mention(event_id).status is MentionStatus.RUNNING  # type: ignore[union-attr]
    clock.now += 61  # the lease ends; the next try rereads the thread and finds the reply
    assert [o.detail for o in processor.process_due()] == ["already answered in the thread"]
    done = store.get_mention(event_id)
    assert done is not None and (done.status, done.attempts) == (MentionStatus.HANDLED, 2)
    assert len(_bot_comments(hub, num)) == 1


def test_polling_picks_up_a_lost_delivery_and_never_answers_twice(hub: EmulatorHandle, store: Store,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    hub.state.create_repo(REPO)
    api = HubClient(endpoint=hub.url, token="bot-token")
    num = hub.state.create_discussion(REPO, author="eve", title="Help", description="@auditbot help")
    processor = _processor(store, _dispatcher(hub.url, store, tmp_path))

    [found] = poll_mentions(api, store, bot_name=BOT, repo_ids=[REPO])  # no webhook ever delivered it
    assert store.get_mention(found.event_id).source == "poll"  # type: ignore[union-attr]
    assert [o.detail for o in processor.process_due()] == ["help"]
    assert poll_mentions(api, store, bot_name=BOT, repo_ids=[REPO]) == []
    # Even with its state lost, the bot finds its reply in the thread and does not answer again.
    with Store(tmp_path / "fresh" / "state.db") as fresh:
        assert poll_mentions(api, fresh, bot_name=BOT, repo_ids=[REPO]) == []
    assert len(_bot_comments(hub, num)) == 1


def _serve_env(hub: EmulatorHandle, tmp_path: Path) -> dict[str, str]:
    return {**_watch_env(hub, tmp_path), "CLIP_AUDIT_WEBHOOK_SECRET": SECRET, "CLIP_AUDIT_LEASE_SECONDS": "1",
            "CLIP_AUDIT_MENTION_MAX_ATTEMPTS": "1000", "CLIP_AUDIT_MENTION_BACKOFF_SECONDS": "0.2",
            "CLIP_AUDIT_WORKER_IDLE_SECONDS": "0.2"}  # fmt: skip


def _start_serve(hub: EmulatorHandle, tmp_path: Path, port: int) -> subprocess.Popen[str]:
    log = open(tmp_path / f"serve-{port}.log", "a", encoding="utf-8")  # noqa: SIM115 - closed with the process
    cmd = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main(sys.argv[1:]))", "serve",
           "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(cmd, env=_serve_env(hub, tmp_path), cwd=tmp_path, stdout=log, stderr=log, text=True)
    log.close()

    def up() -> bool:
        assert process.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
        try:
            with _NO_PROXY.open(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        _wait_for(up, "`clip-audit serve` to answer")  # a process starting: imports take seconds on a busy machine
    except BaseException:
        process.kill()
        process.wait(timeout=60)
        raise
    return process


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_killed_right_after_the_202_answers_the_mention_once_restarted(hub: EmulatorHandle,
                                                                            tmp_path: Path) -> None:  # fmt: skip
    import signal

    hub.state.create_repo(REPO)
    num = hub.state.create_discussion(REPO, author="eve", title="Help")
    comment = hub.state.add_comment(REPO, num, author="eve", text="@auditbot help")
    payload = _comment_payload(author_id=EmulatorState.user_id("eve"), content="@auditbot help", comment_id=comment.id,
                               num=num)  # fmt: skip
    # While the first server runs, the Hub fails every read of the thread: it cannot answer before it is killed.
    hub.state.faults.add(Fault(path_prefix=_details_path(num), method="GET", status=500, remaining=1_000_000))
    port = _free_port()
    first = _start_serve(hub, tmp_path, port)
    try:
        assert _post(f"http://127.0.0.1:{port}/webhook", payload, secret=SECRET) == (202, {"status": "accepted"})
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    with Store(tmp_path / "state.db") as store:
        stored = store.get_mention(comment.id)
        assert stored is not None and stored.status in (MentionStatus.PENDING, MentionStatus.RUNNING)
    hub.state.faults.clear()
    assert _bot_comments(hub, num) == []
    second = _start_serve(hub, tmp_path, port)
    try:
        with Store(tmp_path / "state.db") as store:
            _wait_for(lambda: store.get_mention(comment.id).status is MentionStatus.HANDLED,  # type: ignore[union-attr]
                      "the restarted server to answer the stored mention")
            # the Hub redelivers (it never saw the first 202 arrive, say): stored once, answered once
            again = _post(f"http://127.0.0.1:{port}/webhook", payload, secret=SECRET)
            assert again == (200, {"status": "duplicate"})
            assert [m.event_id for m in store.mention_events()] == [comment.id]
            assert store.get_mention(comment.id).outcome == "answered: help"  # type: ignore[union-attr]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    assert second.returncode == 0, (tmp_path / f"serve-{port}.log").read_text()
    [reply] = _bot_comments(hub, num)
    assert reply.startswith("Hi eve, here is what auditbot understands")


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
