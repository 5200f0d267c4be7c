"""The one shape every mention source (webhook, polling) hands to the dispatcher."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MentionEvent:
    event_id: str          # the comment's Hub id: the same comment has the same id from either source
    repo_id: str
    discussion_num: int
    comment_id: str
    author: str | None     # Hub user name; None when the source gave only an id (webhooks)
    text: str
    is_pull_request: bool
    author_id: str | None = None  # Hub user id, when the source gave one
