"""Who may see and change what, mirroring the Hub's rules closely enough for a bot to meet the same refusals."""

from __future__ import annotations

from . import api_errors
from .http_types import Request
from .records import Discussion, Repo
from .state import EmulatorState
from .validation import InvalidInput, validate_repo_id

# Gated repos still serve these to everyone, so that the card explaining the gate can be read.
UNGATED_FILES = frozenset({"README.md", ".gitattributes"})


def repo_id_from(params: dict[str, str]) -> str:
    return f"{params['owner']}/{params['name']}"


def visible_repo(state: EmulatorState, request: Request, repo_id: str, *, dataset: bool = False) -> Repo:
    """The repo (with `dataset`, the dataset repo) if the caller may see it; hold state.lock. Private repos look
    missing to anyone but the owner."""
    try:
        validate_repo_id(repo_id)
    except InvalidInput:
        raise api_errors.repo_not_found(repo_id, authenticated=request.user is not None) from None
    repo = (state.datasets if dataset else state.storage).get(repo_id)
    if repo is None or (repo.private and request.user != repo.owner):
        raise api_errors.repo_not_found(repo_id, authenticated=request.user is not None)
    return repo


def require_user(request: Request) -> str:
    if request.user is None:
        raise api_errors.unauthorized()
    return request.user


def check_file_access(repo: Repo, request: Request, path: str) -> None:
    if not repo.gated or path in UNGATED_FILES:
        return
    if request.user is not None and (request.user == repo.owner or request.user in repo.granted_users):
        return
    raise api_errors.gated_repo(repo.repo_id, authenticated=request.user is not None)


def check_can_push(repo: Repo, user: str, ref: str) -> None:
    """main belongs to the owner; refs/pr/N to the owner and the PR's author."""
    if user == repo.owner:
        return
    if ref.startswith("refs/pr/"):
        discussion = repo.discussion(int(ref.rsplit("/", 1)[1]))
        if discussion is not None and discussion.author == user:
            return
    raise api_errors.forbidden(
        f"You don't have the rights to push to {repo.repo_id} on {ref}: open a pull request instead (create_pr=True)"
    )


def check_can_change_status(repo: Repo, discussion: Discussion, user: str) -> None:
    if user not in (repo.owner, discussion.author):
        raise api_errors.forbidden("Only the author of the discussion or the repo owner can change its status")
