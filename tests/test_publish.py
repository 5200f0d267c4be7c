"""Publisher against the Hub emulator, through the real huggingface_hub client over HTTP."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # before huggingface_hub is imported

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hub_fixtures import BOT_USER  # noqa: E402
from huggingface_hub import HfApi  # noqa: E402
from records import make_record  # noqa: E402

from bot.errors import HubAuthError, RateLimitedError  # noqa: E402
from bot.hub.client import HubClient  # noqa: E402
from bot.publish.poster import BADGE_PR_TITLE, THREAD_TITLE, Publisher  # noqa: E402
from bot.publish.render import scanned_commit_marker  # noqa: E402
from bot.state.store import Store  # noqa: E402
from hub_emulator import EmulatorHandle  # noqa: E402
from hub_emulator.faults import Fault  # noqa: E402

BOT = BOT_USER
REPO = "acme/clip-vit-b"
SITE = "https://reports.example.org"


def _api(hub: EmulatorHandle, token: str = "bot-token") -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def _publisher(hub: EmulatorHandle, store: Store, tmp_path: Path, **overrides: object) -> Publisher:
    options: dict[str, object] = {"bot_name": BOT, "dry_run": False, "outbox_dir": tmp_path / "outbox",
                                  "post_clean_results": False, "report_base_url": SITE}  # fmt: skip
    options.update(overrides)
    return Publisher(HubClient(endpoint=hub.url, token="bot-token"), store, **options)  # type: ignore[arg-type]


def _bot_threads(hub: EmulatorHandle, repo_id: str = REPO) -> list[tuple[int, str]]:
    return [(d.num, d.status) for d in _api(hub).get_repo_discussions(repo_id) if d.author == BOT]


def _bot_comments(hub: EmulatorHandle, num: int, repo_id: str = REPO) -> list[str]:
    details = _api(hub).get_discussion_details(repo_id, num)
    return [event.content for event in details.events if event.type == "comment" and event.author == BOT]


def _repo(hub: EmulatorHandle, repo_id: str = REPO, **options: object) -> str:
    card = {"license": "mit", "tags": ["clip"]}
    return hub.state.create_repo(repo_id, card_data=card, **options)  # type: ignore[arg-type]


def test_first_finding_opens_one_thread_and_is_never_posted_twice(hub: EmulatorHandle, store: Store,
                                                                  tmp_path: Path) -> None:  # fmt: skip
    sha = _repo(hub)
    publisher = _publisher(hub, store, tmp_path)
    record = make_record("backdoor", model=REPO, revision=sha)

    first = publisher.publish(record, repo_id=REPO, sha=sha, requested=False)
    assert first.action == "created-thread" and first.discussion_num == 1
    assert first.url == f"{hub.url}/{REPO}/discussions/1"
    [discussion] = list(_api(hub).get_repo_discussions(REPO))
    assert (discussion.title, discussion.author, discussion.status) == (THREAD_TITLE, BOT, "open")
    [opening] = _bot_comments(hub, 1)
    assert scanned_commit_marker(sha) in opening and "likely backdoor" in opening
    assert store.has_post(REPO, sha) and store.get_thread(REPO).discussion_num == 1  # type: ignore[union-attr]

    assert publisher.publish(record, repo_id=REPO, sha=sha, requested=False).action == "skipped-duplicate"
    # A fresh store (state lost) still finds the thread and the post on the Hub.
    with Store(tmp_path / "fresh.db") as fresh:
        again = _publisher(hub, fresh, tmp_path).publish(record, repo_id=REPO, sha=sha, requested=False)
        assert (again.action, again.discussion_num) == ("skipped-duplicate", 1)
        assert fresh.has_post(REPO, sha)
    assert _bot_threads(hub) == [(1, "open")] and len(_bot_comments(hub, 1)) == 1


def test_a_later_revision_becomes_a_comment_in_the_same_thread(hub: EmulatorHandle, store: Store,
                                                               tmp_path: Path) -> None:  # fmt: skip
    first_sha = _repo(hub)
    publisher = _publisher(hub, store, tmp_path)
    publisher.publish(make_record("backdoor", revision=first_sha), repo_id=REPO, sha=first_sha, requested=False)
    hub.state.create_discussion(REPO, author="eve", title="Unrelated question")
    second_sha = hub.state.push_revision(REPO, files={"notes.txt": b"v2"})

    # Found through the Hub (author + title), not the store, to show the lookup works on its own.
    with Store(tmp_path / "fresh.db") as fresh:
        outcome = _publisher(hub, fresh, tmp_path).publish(
            make_record("natural-only", revision=second_sha), repo_id=REPO, sha=second_sha, requested=False
        )
    assert (outcome.action, outcome.discussion_num) == ("commented", 1)
    assert outcome.url is not None and outcome.url.startswith(f"{hub.url}/{REPO}/discussions/1#")
    comments = _bot_comments(hub, 1)
    assert len(comments) == 2 and scanned_commit_marker(second_sha) in comments[1]
    assert "New commit scanned" in comments[1] and "natural shortcut" in comments[1]
    assert _bot_threads(hub) == [(1, "open")]


def test_a_closed_thread_stays_closed(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    first_sha = _repo(hub)
    publisher = _publisher(hub, store, tmp_path)
    publisher.publish(make_record("backdoor", revision=first_sha), repo_id=REPO, sha=first_sha, requested=False)
    hub.state.change_status(REPO, 1, author="acme", status="closed", comment="Thanks, handled.")
    second_sha = hub.state.push_revision(REPO, files={"notes.txt": b"v2"})
    record = make_record("backdoor", revision=second_sha)

    outcome = publisher.publish(record, repo_id=REPO, sha=second_sha, requested=False)
    assert (outcome.action, outcome.discussion_num) == ("skipped-closed", 1) and "closed" in outcome.detail
    assert store.get_thread(REPO).status == "closed"  # type: ignore[union-attr]
    with Store(tmp_path / "fresh.db") as fresh:  # the Hub lookup reaches the same decision
        assert _publisher(hub, fresh, tmp_path).publish(record, repo_id=REPO, sha=second_sha,
                                                        requested=False).action == "skipped-closed"  # fmt: skip
    assert _bot_threads(hub) == [(1, "closed")] and len(_bot_comments(hub, 1)) == 1
    assert not store.has_post(REPO, second_sha)


def test_opted_out_repos_get_nothing_unprompted(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = _repo(hub)
    store.set_opt_out(REPO, True)
    publisher = _publisher(hub, store, tmp_path)
    record = make_record("backdoor", revision=sha)
    assert publisher.publish(record, repo_id=REPO, sha=sha, requested=False).action == "skipped-opted-out"
    assert publisher.offer_badge(record, repo_id=REPO, sha=sha) is None
    assert list(_api(hub).get_repo_discussions(REPO)) == []

    asked_in = hub.state.create_discussion(REPO, author="acme", title="Please check again")
    answered = publisher.publish(record, repo_id=REPO, sha=sha, requested=True, discussion_num=asked_in)
    assert (answered.action, answered.discussion_num) == ("commented", asked_in)


def test_clean_results_are_given_on_request_only(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = _repo(hub)
    publisher = _publisher(hub, store, tmp_path)
    clean = make_record("clean", revision=sha)
    for record in (clean, make_record("inconclusive", revision=sha)):
        assert publisher.publish(record, repo_id=REPO, sha=sha, requested=False).action == "skipped-clean"
    assert list(_api(hub).get_repo_discussions(REPO)) == []

    asked_in = _api(hub, "eve-token").create_discussion(REPO, title="Is this model safe?").num
    answered = publisher.publish(clean, repo_id=REPO, sha=sha, requested=True, discussion_num=asked_in)
    assert (answered.action, answered.discussion_num) == ("commented", asked_in)
    [reply] = _bot_comments(hub, asked_in)
    assert "no textual backdoor found" in reply and "not a proof" in reply
    assert publisher.publish(clean, repo_id=REPO, sha=sha, requested=True,
                             discussion_num=asked_in).action == "skipped-duplicate"  # fmt: skip
    assert _bot_threads(hub) == []  # the request was answered where it was made

    chatty = _publisher(hub, store, tmp_path, post_clean_results=True)
    assert chatty.publish(clean, repo_id=REPO, sha=sha, requested=False).action == "created-thread"


def test_disabled_discussions_are_a_recorded_skip(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = _repo(hub, discussions_disabled=True)
    publisher = _publisher(hub, store, tmp_path)
    record = make_record("backdoor", revision=sha)
    outcome = publisher.publish(record, repo_id=REPO, sha=sha, requested=False)
    assert outcome.action == "skipped-disabled" and "disabled" in outcome.detail
    assert not store.has_post(REPO, sha)
    assert publisher.offer_badge(record, repo_id=REPO, sha=sha, requested=True) is None


def test_a_token_without_permission_is_an_error_not_a_disabled_repo(hub: EmulatorHandle, store: Store,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    sha = _repo(hub)
    hub.state.faults.add(Fault(path_prefix=f"/api/models/{REPO}/discussions", method="POST", status=403, remaining=5,
                               message="You don't have the rights to create a discussion here"))  # fmt: skip
    publisher = _publisher(hub, store, tmp_path)
    with pytest.raises(HubAuthError, match="lacks permission"):
        publisher.publish(make_record("backdoor", revision=sha), repo_id=REPO, sha=sha, requested=False)
    assert not store.has_post(REPO, sha)  # nothing recorded: the job fails visibly and can be run again


def test_rate_limits_surface_as_retryable_errors(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = _repo(hub)
    hub.state.faults.add(Fault(path_prefix=f"/api/models/{REPO}/discussions", status=429, remaining=1,
                               method="POST", retry_after_s=7))  # fmt: skip
    publisher = _publisher(hub, store, tmp_path)
    with pytest.raises(RateLimitedError) as caught:
        publisher.publish(make_record("backdoor", revision=sha), repo_id=REPO, sha=sha, requested=False)
    assert caught.value.retry_after == 7
    assert not store.has_post(REPO, sha)
    assert publisher.publish(make_record("backdoor", revision=sha), repo_id=REPO, sha=sha,
                             requested=False).action == "created-thread"  # fmt: skip


def test_dry_run_writes_the_outbox_instead_of_posting(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = _repo(hub)
    publisher = _publisher(hub, store, tmp_path, dry_run=True)
    record = make_record("backdoor", revision=sha)
    outcome = publisher.publish(record, repo_id=REPO, sha=sha, requested=False)
    assert outcome.action == "dry-run" and outcome.url is not None
    written = Path(outcome.url).read_text(encoding="utf-8")
    assert Path(outcome.url).parent == tmp_path / "outbox" / "acme__clip-vit-b"
    assert "new discussion titled" in written and scanned_commit_marker(sha) in written
    assert publisher.offer_badge(record, repo_id=REPO, sha=sha) is None
    assert (tmp_path / "outbox" / "acme__clip-vit-b" / f"{sha}-badge-pr.md").is_file()
    assert list(_api(hub).get_repo_discussions(REPO)) == [] and store.posts(REPO) == []


def test_badge_pull_request_adds_one_line_once(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = _repo(hub)
    publisher = _publisher(hub, store, tmp_path)
    record = make_record("clean", revision=sha)

    pr_num = publisher.offer_badge(record, repo_id=REPO, sha=sha, requested=True)
    assert pr_num == 1
    [pr] = list(_api(hub).get_repo_discussions(REPO, discussion_type="pull_request"))
    assert (pr.num, pr.title, pr.author, pr.is_pull_request, pr.status) == (1, BADGE_PR_TITLE, BOT, True, "open")
    details = _api(hub).get_discussion_details(REPO, 1)
    badge = f"[![clip-audit: clean]({SITE}/badges/clean.svg)]({SITE}/{REPO}/{sha}.html)"
    diff = (details.diff or "").splitlines()
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    assert badge in added and removed == []
    assert [line for line in added if line.strip()] == [badge]
    assert details.events[0].content.startswith("This pull request adds one line to the README")
    readme = _api(hub).hf_hub_download(REPO, "README.md", revision="refs/pr/1", cache_dir=tmp_path / "dl")
    text = Path(readme).read_text()
    assert text.startswith("---\n") and text.index("license: mit") < text.index(badge) < text.index("# clip-vit-b")
    assert _api(hub).model_info(REPO).sha == sha  # main untouched

    assert publisher.offer_badge(record, repo_id=REPO, sha=sha, requested=True) == 1
    with Store(tmp_path / "fresh.db") as fresh:  # found on the Hub when the store forgot it
        assert _publisher(hub, fresh, tmp_path).offer_badge(record, repo_id=REPO, sha=sha, requested=True) == 1
    assert len(list(_api(hub).get_repo_discussions(REPO, discussion_type="pull_request"))) == 1


def test_publish_refuses_a_mismatched_target(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = _repo(hub)
    publisher = _publisher(hub, store, tmp_path)
    with pytest.raises(ValueError):
        publisher.publish(make_record("backdoor", revision=sha), repo_id=REPO, sha="0" * 40, requested=False)
    with pytest.raises(ValueError):
        publisher.publish(make_record("backdoor", revision=sha), repo_id="acme/../x", sha=sha, requested=False)


def test_a_thread_the_store_knows_as_closed_is_not_even_looked_up(hub: EmulatorHandle, store: Store,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    sha = _repo(hub)
    publisher = _publisher(hub, store, tmp_path)
    publisher.publish(make_record("backdoor", revision=sha), repo_id=REPO, sha=sha, requested=False)
    store.mark_thread_closed(REPO)  # closed once; if the owner reopens it, they can still ask with a mention
    second_sha = hub.state.push_revision(REPO, files={"notes.txt": b"v2"})
    outcome = publisher.publish(make_record("backdoor", revision=second_sha), repo_id=REPO, sha=second_sha,
                                requested=False)  # fmt: skip
    assert outcome.action == "skipped-closed" and len(_bot_comments(hub, 1)) == 1


def test_no_badge_pr_when_the_readme_already_has_one(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    readme = f"---\nlicense: mit\n---\n\n[![clip-audit: clean]({SITE}/badges/clean.svg)](x)\n# Model\n".encode()
    sha = hub.state.create_repo(REPO, files={"README.md": readme})
    publisher = _publisher(hub, store, tmp_path)
    assert publisher.offer_badge(make_record("clean", revision=sha), repo_id=REPO, sha=sha, requested=True) is None
    assert list(_api(hub).get_repo_discussions(REPO)) == [] and store.get_badge_pr(REPO) is None
