"""Polling for mentions on repos without a webhook: read open discussions, hand on each new mention once.

Each comment is marked seen in the store before it is returned, under its Hub id, which is also the id a
webhook delivery of the same comment carries: whichever source sees a comment first handles it.
Closed discussions are not read (a closed thread is the owner saying "done").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from huggingface_hub import HfApi
from huggingface_hub.community import DiscussionComment
from huggingface_hub.errors import HfHubHTTPError

from bot.mentions.events import MentionEvent
from bot.publish.hub_errors import status_of
from bot.state.store import Store

logger = logging.getLogger(__name__)


def poll_mentions(api: HfApi, store: Store, *, bot_name: str, repo_ids: Iterable[str]) -> list[MentionEvent]:
    """New comments mentioning `bot_name` in the open discussions and PRs of `repo_ids`, oldest first per thread.

    Repos that are gone, private or have discussions disabled are skipped. When the Hub rate-limits the bot,
    polling stops there and what was found so far is returned (each returned event is already marked seen,
    so dropping it would lose it); the remaining repos are read on the next poll.
    """
    found: list[MentionEvent] = []
    for repo_id in repo_ids:
        try:
            _poll_repo(api, store, bot_name=bot_name, repo_id=repo_id, into=found)
        except HfHubHTTPError as error:
            status = status_of(error)
            if status == 429:
                logger.warning("rate-limited while polling %s for mentions; stopping this poll", repo_id)
                break
            logger.warning("skipping %s while polling for mentions (HTTP %s)", repo_id, status)
    return found


def _poll_repo(api: HfApi, store: Store, *, bot_name: str, repo_id: str, into: list[MentionEvent]) -> None:
    needle = f"@{bot_name}".lower()
    for discussion in api.get_repo_discussions(repo_id, discussion_status="open"):
        details = api.get_discussion_details(repo_id, discussion.num)
        for event in details.events:
            if not isinstance(event, DiscussionComment) or event.hidden or event.author == bot_name:
                continue
            if needle not in event.content.lower() or not store.mark_event_seen(event.id):
                continue
            into.append(
                MentionEvent(
                    event_id=event.id,
                    repo_id=repo_id,
                    discussion_num=discussion.num,
                    comment_id=event.id,
                    author=event.author,
                    text=event.content,
                    is_pull_request=discussion.is_pull_request,
                )
            )
