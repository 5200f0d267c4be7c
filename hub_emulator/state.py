"""EmulatorState: the emulator's single source of truth, shared by the HTTP routes and the Python seeding API.

All mutations take one re-entrant lock and are persisted before the lock is released. File contents are
staged into the blob store before taking the lock, so large uploads do not block other requests.
Permission checks (who may push where) live in the HTTP routes: this API is the admin's and bypasses them.
Discussions and pull requests are run by discussion_ops.DiscussionOps, to which the methods below delegate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from . import api_errors
from .derived import DEFAULT_GITATTRIBUTES, derive_commit_facts, is_lfs_path, render_readme, split_front_matter
from .discussion_ops import DiscussionOps
from .faults import FaultInjector
from .ids import commit_sha, git_blob_sha1, lfs_pointer, normalize_date, now_iso, object_id_for
from .records import Commit, Discussion, Event, FileEntry, Repo
from .storage import RepoStorage
from .validation import MAIN_BRANCH, is_commit_sha, ref_name_of, validate_repo_id, validate_repo_path
from .webhooks import WebhookDispatcher, content_payload, repo_created_payload

FileSource = bytes | Path
GatedSetting = bool | Literal["auto", "manual"]


@dataclass(frozen=True, slots=True)
class CommitResult:
    sha: str
    pr_num: int | None = None


def _gated_mode(gated: GatedSetting) -> Literal["auto", "manual", False]:
    if gated is True:
        return "auto"
    if gated in (False, "auto", "manual"):
        return gated  # type: ignore[return-value]
    raise api_errors.bad_request(f"gated must be false, true, 'auto' or 'manual', got {gated!r}")


class EmulatorState:
    def __init__(
        self,
        data_dir: Path | str,
        *,
        tokens: Mapping[str, str] | None = None,
        webhooks: WebhookDispatcher | None = None,
        public_url: str = "http://127.0.0.1",
        list_page_size: int = 1000,
        discussion_page_size: int = 50,
    ) -> None:
        self.lock = threading.RLock()
        self.list_page_size = list_page_size
        self.discussion_page_size = discussion_page_size
        self.started_at = now_iso()
        self.storage = RepoStorage(Path(data_dir))
        # Dataset repos: their own namespace (a model and a dataset may share an id), read-only over HTTP.
        self.datasets = RepoStorage(Path(data_dir), documents="datasets")
        self.webhooks = webhooks
        self.public_url = public_url.rstrip("/")
        self.faults = FaultInjector()
        self._tokens: dict[str, str] = dict(tokens or {})
        self._discussions = DiscussionOps(self)

    # -- identity ---------------------------------------------------------------------------------------

    def add_token(self, token: str, user: str) -> None:
        with self.lock:
            self._tokens[token] = user

    def user_for_token(self, token: str) -> str | None:
        with self.lock:
            return self._tokens.get(token)

    @staticmethod
    def user_id(user: str) -> str:
        return object_id_for(user)

    # -- reads --------------------------------------------------------------------------------------------

    def repo(self, repo_id: str) -> Repo:
        """The live record (hold `self.lock` while reading it); RepoNotFound if absent."""
        repo = self.storage.get(repo_id)
        if repo is None:
            raise api_errors.repo_not_found(repo_id)
        return repo

    def has_repo(self, repo_id: str) -> bool:
        return self.storage.get(repo_id) is not None

    def repos(self) -> list[Repo]:
        return self.storage.all()

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """A branch name, refs/pr/N or a full commit sha -> the commit; RevisionNotFound otherwise."""
        ref = ref_name_of(revision)
        if ref is not None and ref in repo.refs:
            return repo.commits[repo.refs[ref]]
        if is_commit_sha(revision) and revision in repo.commits:
            return repo.commits[revision]
        raise api_errors.revision_not_found(revision)

    def read_blob_prefix(self, entry: FileEntry, length: int) -> bytes:
        with self.storage.blobs.open(entry.sha256) as handle:
            return handle.read(length)

    def blob_path(self, entry: FileEntry) -> Path:
        return self.storage.blobs.path_of(entry.sha256)

    # -- repo lifecycle -----------------------------------------------------------------------------------

    def create_repo(
        self,
        repo_id: str,
        *,
        files: Mapping[str, FileSource] | None = None,
        tags: Iterable[str] = (),
        pipeline_tag: str | None = None,
        library_name: str | None = None,
        card_data: dict[str, Any] | None = None,
        created_at: str | datetime | None = None,
        gated: GatedSetting = False,
        private: bool = False,
        discussions_disabled: bool = False,
        author: str | None = None,
    ) -> str:
        """Creates a repo whose first commit holds `files` (plus .gitattributes, and a README built from
        card_data when none is given). Returns the commit sha."""
        validate_repo_id(repo_id)
        gated_mode = _gated_mode(gated)
        sources: dict[str, FileSource] = {".gitattributes": DEFAULT_GITATTRIBUTES.encode(), **(files or {})}
        if card_data is not None and "README.md" not in sources:
            sources["README.md"] = render_readme(card_data, f"\n# {repo_id.split('/')[1]}\n")
        staged = self._stage_files(sources)
        date = normalize_date(created_at)
        with self.lock:
            if self.storage.get(repo_id) is not None:
                raise api_errors.conflict(f"You already created this model repo: {repo_id}")
            repo = Repo(
                repo_id=repo_id,
                object_id=object_id_for(f"repo:{repo_id}"),
                created_at=date,
                refs={},
                commits={},
                tags=list(tags),
                pipeline_tag=pipeline_tag,
                library_name=library_name,
                private=private,
                gated=gated_mode,
                discussions_disabled=discussions_disabled,
            )
            commit = self._new_commit(
                repo, parent=None, additions=staged, summary="initial commit", author=author or repo.owner, date=date
            )
            repo.refs[MAIN_BRANCH] = commit.sha
            self.storage.save(repo)
            self._emit(repo, repo_created_payload(repo=repo, base_url=self.public_url, webhook_id=self._webhook_id))
            self._emit_content(repo, MAIN_BRANCH, None, commit.sha)
            return commit.sha

    def create_dataset(
        self,
        repo_id: str,
        *,
        files: Mapping[str, FileSource] | None = None,
        private: bool = False,
        author: str | None = None,
        created_at: str | datetime | None = None,
    ) -> str:
        """Creates a dataset repo whose first commit holds `files` (plus .gitattributes). Returns the commit sha.

        Dataset repos are served read-only (info, paths-info, downloads): enough for a client that fetches a
        dataset's files pinned to a commit."""
        validate_repo_id(repo_id)
        staged = self._stage_files({".gitattributes": DEFAULT_GITATTRIBUTES.encode(), **(files or {})})
        date = normalize_date(created_at)
        with self.lock:
            if self.datasets.get(repo_id) is not None:
                raise api_errors.conflict(f"You already created this dataset repo: {repo_id}")
            repo = Repo(repo_id=repo_id, object_id=object_id_for(f"dataset:{repo_id}"), created_at=date, refs={},
                        commits={}, private=private)
            commit = self._new_commit(repo, parent=None, additions=staged, summary="initial commit",
                                      author=author or repo.owner, date=date)
            repo.refs[MAIN_BRANCH] = commit.sha
            self.datasets.save(repo)
            return commit.sha

    def push_revision(
        self,
        repo_id: str,
        *,
        files: Mapping[str, FileSource] | None = None,
        deleted: Iterable[str] = (),
        message: str = "Upload files",
        description: str = "",
        author: str | None = None,
        date: str | datetime | None = None,
        card_data: dict[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        pipeline_tag: str | None = None,
        library_name: str | None = None,
    ) -> str:
        """Pushes a new commit to main as the repo owner (or `author`); optionally updates metadata. Returns the sha."""
        sources = dict(files or {})
        with self.lock:
            repo = self.repo(repo_id)
            if card_data is not None and "README.md" not in sources:
                readme = repo.head.files.get("README.md")
                old_text = self.read_blob_prefix(readme, readme.size).decode("utf-8", "replace") if readme else ""
                body = split_front_matter(old_text)[1] if old_text else f"\n# {repo.repo_id.split('/')[1]}\n"
                sources["README.md"] = render_readme(card_data, body)
            result = self.commit(
                repo_id,
                revision=MAIN_BRANCH,
                additions=sources,
                deletions=deleted,
                summary=message,
                description=description,
                author=author or repo.owner,
                date=date,
            )
            if tags is not None:
                repo.tags = list(tags)
            if pipeline_tag is not None:
                repo.pipeline_tag = pipeline_tag
            if library_name is not None:
                repo.library_name = library_name
            self.storage.save(repo)
            return result.sha

    def update_settings(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        gated: GatedSetting | None = None,
        discussions_disabled: bool | None = None,
    ) -> None:
        with self.lock:
            repo = self.repo(repo_id)
            if private is not None:
                repo.private = private
            if gated is not None:
                repo.gated = _gated_mode(gated)
            if discussions_disabled is not None:
                repo.discussions_disabled = discussions_disabled
            self.storage.save(repo)

    def grant_access(self, repo_id: str, user: str) -> None:
        """Approves `user`'s access request to a gated repo."""
        with self.lock:
            repo = self.repo(repo_id)
            if user not in repo.granted_users:
                repo.granted_users.append(user)
            self.storage.save(repo)

    # -- commits ----------------------------------------------------------------------------------------

    def commit(
        self,
        repo_id: str,
        *,
        revision: str = MAIN_BRANCH,
        additions: Mapping[str, FileSource] | None = None,
        deletions: Iterable[str] = (),
        deleted_folders: Iterable[str] = (),
        summary: str,
        description: str = "",
        author: str,
        create_pr: bool = False,
        parent_commit: str | None = None,
        date: str | datetime | None = None,
    ) -> CommitResult:
        """Commits to main or refs/pr/N, or (create_pr) opens a PR on top of main. No permission checks."""
        staged = self._stage_files(additions or {})
        when = normalize_date(date)
        with self.lock:
            repo = self.repo(repo_id)
            ref = ref_name_of(revision)
            if ref is None:
                if is_commit_sha(revision):
                    raise api_errors.bad_request("Cannot commit to a commit id, commit to a branch instead")
                raise api_errors.revision_not_found(revision)
            if ref not in repo.refs:
                raise api_errors.revision_not_found(revision)
            if create_pr and ref != MAIN_BRANCH:
                raise api_errors.bad_request("create_pr is only supported on top of the main branch")
            if create_pr and repo.discussions_disabled:
                raise api_errors.discussions_disabled()
            parent = repo.commits[repo.refs[ref]]
            if parent_commit is not None and parent_commit != parent.sha:
                raise api_errors.HubApiError(412, "A commit has happened since. Please refresh and try again.")
            commit = self._new_commit(
                repo,
                parent=parent,
                additions=staged,
                deletions=deletions,
                deleted_folders=deleted_folders,
                summary=summary,
                description=description,
                author=author,
                date=when,
            )
            if create_pr:
                discussion = self._open_pull_request(repo, commit=commit, author=author, description=description)
                self.storage.save(repo)
                return CommitResult(commit.sha, discussion.num)
            old_sha = repo.refs[ref]
            repo.refs[ref] = commit.sha
            self._record_pr_commit(repo, ref, commit)
            self.storage.save(repo)
            self._emit_content(repo, ref, old_sha, commit.sha)
            return CommitResult(commit.sha, None)

    def _stage_files(self, sources: Mapping[str, FileSource]) -> dict[str, FileEntry]:
        staged: dict[str, FileEntry] = {}
        blobs = self.storage.blobs
        for path, source in sources.items():
            validate_repo_path(path)
            if isinstance(source, Path):
                sha256 = blobs.put_file(source)
            elif isinstance(source, (bytes, bytearray, memoryview)):
                sha256 = blobs.put_bytes(bytes(source))
            else:
                raise TypeError(f"file {path!r}: expected bytes or Path, got {type(source).__name__}")
            size = blobs.path_of(sha256).stat().st_size
            if is_lfs_path(path, size):
                pointer = lfs_pointer(sha256, size)
                staged[path] = FileEntry(sha256, size, git_blob_sha1(pointer), True, len(pointer))
            else:
                staged[path] = FileEntry(sha256, size, git_blob_sha1(blobs.read(sha256)), False)
        return staged

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
    ) -> Commit:
        files = dict(parent.files) if parent is not None else {}
        for path in deletions:
            if files.pop(path, None) is None:
                raise api_errors.entry_not_found(f"{path} (A file with this name doesn't exist)")
        for folder in deleted_folders:
            prefix = folder.rstrip("/") + "/"
            doomed = [path for path in files if path.startswith(prefix)]
            if not doomed:
                raise api_errors.entry_not_found(f"{folder} (A folder with this name doesn't exist)")
            for path in doomed:
                del files[path]
        files.update(additions)
        identity = {
            "parent": parent.sha if parent else None,
            "files": {path: entry.etag for path, entry in sorted(files.items())},
            "summary": summary,
            "author": author,
            "date": date,
        }
        commit = Commit(
            sha=commit_sha(identity),
            parent=parent.sha if parent else None,
            summary=summary,
            description=description,
            author=author,
            date=date,
            files=files,
        )
        derive_commit_facts(commit, self.read_blob_prefix)
        repo.commits[commit.sha] = commit
        return commit

    # -- discussions and pull requests (discussion_ops.DiscussionOps does the work) ----------------------

    def discussion(self, repo: Repo, num: int) -> Discussion:
        return self._discussions.discussion(repo, num)

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
        return self._discussions.create_discussion(
            repo_id, author=author, title=title, description=description, pull_request=pull_request, date=date
        )

    def add_comment(
        self, repo_id: str, num: int, *, author: str, text: str, date: str | datetime | None = None
    ) -> Event:
        return self._discussions.add_comment(repo_id, num, author=author, text=text, date=date)

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
        return self._discussions.change_status(repo_id, num, author=author, status=status, comment=comment)

    def merge_pull_request(self, repo_id: str, num: int, *, author: str, comment: str | None = None) -> str:
        """Applies the PR's changes (relative to where it branched) on top of main. Returns the merge commit sha."""
        return self._discussions.merge_pull_request(repo_id, num, author=author, comment=comment)

    def pr_diff(self, repo: Repo, discussion: Discussion) -> str:
        """A git-style diff of the PR against the commit it branched from (text files in full, binaries by name)."""
        return self._discussions.pr_diff(repo, discussion)

    def _open_pull_request(self, repo: Repo, *, commit: Commit, author: str, description: str) -> Discussion:
        return self._discussions._open_pull_request(repo, commit=commit, author=author, description=description)

    def _record_pr_commit(self, repo: Repo, ref: str, commit: Commit) -> None:
        self._discussions._record_pr_commit(repo, ref, commit)

    # -- webhooks -----------------------------------------------------------------------------------------

    @property
    def _webhook_id(self) -> str:
        return self.webhooks.webhook_id if self.webhooks else ""

    def _emit(self, repo: Repo, payload: dict[str, Any]) -> None:
        if self.webhooks is not None:
            self.webhooks.submit(repo.repo_id, payload)

    def _emit_content(self, repo: Repo, ref: str, old_sha: str | None, new_sha: str) -> None:
        if self.webhooks is None:
            return
        payload = content_payload(
            repo=repo, ref=ref, old_sha=old_sha, new_sha=new_sha, base_url=self.public_url, webhook_id=self._webhook_id
        )
        self._emit(repo, payload)
