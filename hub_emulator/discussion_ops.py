"""Discussion and pull-request operations, run against the state that owns the repos.

EmulatorState holds one DiscussionOps and delegates its discussion methods to it. The dependency runs one way:
this module knows the state only through DiscussionHost, the few members it needs (lock, repo lookup,
persistence, commits, blob reads and webhook emission), so it never imports state.py.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Literal, Protocol

from . import api_errors
from .ids import new_object_id, normalize_date
from .records import Commit, Discussion, Event, FileEntry, Repo
from .storage import RepoStorage
from .validation import MAIN_BRANCH
from .webhooks import WebhookDispatcher, comment_payload, discussion_payload


class DiscussionHost(Protocol):
    """What the discussion operations use of the state that owns the repos (EmulatorState provides it).

    Attributes are read at each call, not captured, so a later change (server binding sets public_url) shows.
    """

    @property
    def lock(self) -> AbstractContextManager[Any]: ...

    @property
    def storage(self) -> RepoStorage: ...

    @property
    def webhooks(self) -> WebhookDispatcher | None: ...

    @property
    def public_url(self) -> str: ...

    @property
    def _webhook_id(self) -> str: ...

    def repo(self, repo_id: str) -> Repo: ...

    def read_blob_prefix(self, entry: FileEntry, length: int) -> bytes: ...

    def _new_commit(
        self,
        repo: Repo,
        *,
        parent: Commit | None,
        additions: Mapping[str, FileEntry],
        deletions: Iterable[str] = (),
        deleted_folders: Iterable[str] = (),
        summary: str,
        description: str = "",
        author: str,
        date: str,
    ) -> Commit: ...

    def _emit(self, repo: Repo, payload: dict[str, Any]) -> None: ...

    def _emit_content(self, repo: Repo, ref: str, old_sha: str | None, new_sha: str) -> None: ...


TITLE_MIN, TITLE_MAX = 3, 200
_DIFF_TEXT_LIMIT = 1_000_000


def _event(kind: str, author: str, date: str, data: dict) -> Event:
    return Event(id=new_object_id(), type=kind, created_at=date, author=author, data=data)


def _comment(author: str, text: str, date: str) -> Event:
    return _event("comment", author, date, {"edited": False, "hidden": False, "raw": text})


class DiscussionOps:
    """Opens, comments on, closes and merges discussions and PRs of `host`'s repos, under `host.lock`."""

    def __init__(self, host: DiscussionHost) -> None:
        self._host = host

    def discussion(self, repo: Repo, num: int) -> Discussion:
        found = repo.discussion(num)
        if found is None:
            raise api_errors.not_found(f"Discussion #{num} not found")
        return found

    def create_discussion(
        self,
        repo_id: str,
        *,
        author: str,
        title: str,
        description: str = "",
        pull_request: bool = False,
        date: str | datetime | None = None,
    ) -> int:
        """Opens a discussion (or a draft PR whose refs/pr/N points at main). Returns its number."""
        title = title.strip()
        if not TITLE_MIN <= len(title) <= TITLE_MAX:
            raise api_errors.bad_request(f"Title must be between {TITLE_MIN} and {TITLE_MAX} characters")
        when = normalize_date(date)
        with self._host.lock:
            repo = self._host.repo(repo_id)
            if repo.discussions_disabled:
                raise api_errors.discussions_disabled()
            opening = _comment(author, description, when)
            discussion = Discussion(
                id=new_object_id(),
                num=len(repo.discussions) + 1,
                title=title,
                author=author,
                created_at=when,
                status="draft" if pull_request else "open",
                is_pull_request=pull_request,
                events=[opening],
            )
            if pull_request:
                discussion.base_sha = repo.refs[MAIN_BRANCH]
                repo.refs[discussion.pr_ref] = discussion.base_sha
            repo.discussions.append(discussion)
            self._host.storage.save(repo)
            self._emit_discussion(repo, discussion, action="create", comment=opening)
            return discussion.num

    def add_comment(
        self, repo_id: str, num: int, *, author: str, text: str, date: str | datetime | None = None
    ) -> Event:
        if not text.strip():
            raise api_errors.bad_request("Comment cannot be empty")
        with self._host.lock:
            repo = self._host.repo(repo_id)
            if repo.discussions_disabled:
                raise api_errors.discussions_disabled()
            discussion = self.discussion(repo, num)
            event = _comment(author, text, normalize_date(date))
            discussion.events.append(event)
            self._host.storage.save(repo)
            self._host._emit(repo, self._comment_payload(repo, discussion, event))
            return event

    def change_status(
        self,
        repo_id: str,
        num: int,
        *,
        author: str,
        status: Literal["open", "closed"],
        comment: str | None = None,
    ) -> Event:
        """Closes or reopens; an optional comment is posted first, as the Hub does."""
        if status not in ("open", "closed"):
            raise api_errors.bad_request("status must be 'open' or 'closed'")
        with self._host.lock:
            repo = self._host.repo(repo_id)
            if repo.discussions_disabled:
                raise api_errors.discussions_disabled()
            discussion = self.discussion(repo, num)
            if discussion.status == "merged":
                raise api_errors.bad_request("A merged pull request cannot change status")
            when = normalize_date(None)
            if comment and comment.strip():
                note = _comment(author, comment.strip(), when)
                discussion.events.append(note)
                self._host._emit(repo, self._comment_payload(repo, discussion, note))
            event = _event("status-change", author, when, {"status": status})
            discussion.events.append(event)
            discussion.status = status
            self._host.storage.save(repo)
            self._emit_discussion(repo, discussion, action="update", comment=None)
            return event

    def merge_pull_request(
        self, repo_id: str, num: int, *, author: str, comment: str | None = None
    ) -> str:
        """Applies the PR's changes (relative to where it branched) on top of main. Returns the merge commit sha."""
        with self._host.lock:
            repo = self._host.repo(repo_id)
            discussion = self.discussion(repo, num)
            if not discussion.is_pull_request or discussion.status != "open":
                raise api_errors.bad_request("Only an open pull request can be merged")
            base = repo.commits[discussion.base_sha or repo.refs[MAIN_BRANCH]]
            head = repo.commits[repo.refs[discussion.pr_ref]]
            changed = {path: entry for path, entry in head.files.items() if base.files.get(path) != entry}
            main = repo.head
            removed = [path for path in base.files if path not in head.files and path in main.files]
            when = normalize_date(None)
            merge = self._host._new_commit(
                repo,
                parent=main,
                additions=changed,
                deletions=removed,
                summary=f"{discussion.title} (#{num})",
                author=author,
                date=when,
            )
            old_sha = main.sha
            repo.refs[MAIN_BRANCH] = merge.sha
            if comment and comment.strip():
                discussion.events.append(_comment(author, comment.strip(), when))
            discussion.events.append(_event("status-change", author, when, {"status": "merged"}))
            discussion.status = "merged"
            discussion.merge_commit = merge.sha
            self._host.storage.save(repo)
            self._emit_discussion(repo, discussion, action="update", comment=None)
            self._host._emit_content(repo, MAIN_BRANCH, old_sha, merge.sha)
            return merge.sha

    def pr_diff(self, repo: Repo, discussion: Discussion) -> str:
        """A git-style diff of the PR against the commit it branched from (text files in full, binaries by name)."""
        base = repo.commits[discussion.base_sha or repo.refs[MAIN_BRANCH]]
        head = repo.commits[repo.refs[discussion.pr_ref]]
        chunks: list[str] = []
        for path in sorted(set(base.files) | set(head.files)):
            old, new = base.files.get(path), head.files.get(path)
            if old == new:
                continue
            chunks.append(f"diff --git a/{path} b/{path}\n")
            old_text, new_text = self._text_of(old), self._text_of(new)
            if old_text is None or new_text is None:
                chunks.append(f"Binary files a/{path} and b/{path} differ\n")
                continue
            chunks.extend(
                difflib.unified_diff(
                    old_text.splitlines(keepends=True),
                    new_text.splitlines(keepends=True),
                    fromfile=f"a/{path}" if old else "/dev/null",
                    tofile=f"b/{path}" if new else "/dev/null",
                )
            )
        return "".join(chunks)

    def _text_of(self, entry: FileEntry | None) -> str | None:
        if entry is None:
            return ""
        if entry.lfs or entry.size > _DIFF_TEXT_LIMIT:
            return None
        try:
            return self._host.read_blob_prefix(entry, entry.size).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def _open_pull_request(
        self, repo: Repo, *, commit: Commit, author: str, description: str
    ) -> Discussion:
        """A PR created by create_commit(create_pr=True): opening comment, then the commit."""
        opening = _comment(author, description, commit.date)
        discussion = Discussion(
            id=new_object_id(),
            num=len(repo.discussions) + 1,
            title=commit.summary,
            author=author,
            created_at=commit.date,
            status="open",
            is_pull_request=True,
            events=[opening, _event("commit", author, commit.date, {"subject": commit.summary, "oid": commit.sha})],
            base_sha=commit.parent,
        )
        repo.discussions.append(discussion)
        repo.refs[discussion.pr_ref] = commit.sha
        self._emit_discussion(repo, discussion, action="create", comment=opening)
        self._host._emit_content(repo, discussion.pr_ref, None, commit.sha)
        return discussion

    def _record_pr_commit(self, repo: Repo, ref: str, commit: Commit) -> None:
        """A push to refs/pr/N shows up in the PR's timeline and takes a draft PR out of draft."""
        if ref == MAIN_BRANCH:
            return
        discussion = repo.discussion(int(ref.rsplit("/", 1)[1]))
        if discussion is None:
            return
        discussion.events.append(
            _event("commit", commit.author, commit.date, {"subject": commit.summary, "oid": commit.sha})
        )
        if discussion.status == "draft":
            discussion.status = "open"

    def _comment_payload(self, repo: Repo, discussion: Discussion, event: Event) -> dict:
        return comment_payload(
            repo=repo, discussion=discussion, comment=event, base_url=self._host.public_url, webhook_id=self._host._webhook_id
        )

    def _emit_discussion(
        self, repo: Repo, discussion: Discussion, *, action: str, comment: Event | None
    ) -> None:
        if self._host.webhooks is None:
            return
        payload = discussion_payload(
            action=action,
            repo=repo,
            discussion=discussion,
            comment=comment,
            base_url=self._host.public_url,
            webhook_id=self._host._webhook_id,
        )
        self._host._emit(repo, payload)
