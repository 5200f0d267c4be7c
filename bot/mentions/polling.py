"""Polling for mentions, the fallback for deliveries a webhook missed (or repos without one): read the open
discussions of the repos the bot has posted in, and hand on each new mention once.

Each comment is marked seen in the store before it is returned, under its Hub id, which is also the id a
webhook delivery of the same comment carries: whichever source sees a comment first handles it.
Closed discussions are not read (a closed thread is the owner saying "done").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.errors import ClipAuditError, HubError, RateLimitedError, SkipRepo
from bot.hub.client import HubClient
from bot.mentions.dispatch import DispatchOutcome, MentionDispatcher
from bot.mentions.events import MentionEvent
from bot.state.store import Store

logger = logging.getLogger(__name__)

def poll_mentions(api: HubClient, store: Store, *, bot_name: str, repo_ids: Iterable[str]) -> list[MentionEvent]:
    """New comments mentioning `bot_name` in the open discussions and PRs of `repo_ids`, oldest first per thread.

    Repos that are gone, private or have discussions disabled are skipped. When the Hub rate-limits the bot,
    polling stops there and what was found so far is returned (each returned event is already marked seen,
    so dropping it would lose it); the remaining repos are read on the next poll.
    """
    found: list[MentionEvent] = []
    for repo_id in repo_ids:
        try:
            _poll_repo(api, store, bot_name=bot_name, repo_id=repo_id, into=found)
        except RateLimitedError:
            logger.warning("rate-limited while polling %s for mentions; stopping this poll", repo_id)
            break
        except (SkipRepo, HubError) as error:  # gone, private, discussions off, a 5xx: read it next time
            logger.warning("skipping %s while polling for mentions: %s", repo_id, error)
    return found


def _poll_repo(api: HubClient, store: Store, *, bot_name: str, repo_id: str, into: list[MentionEvent]) -> None:
    needle = f"@{bot_name}".lower()
    for discussion in api.discussions(repo_id, status="open"):
        details = api.discussion_details(repo_id, discussion.num)
        for comment in details.comments:
            if comment.hidden or comment.author == bot_name:
                continue
            if needle not in comment.content.lower() or not store.mark_event_seen(comment.id):
                continue
            into.append(MentionEvent(event_id=comment.id, repo_id=repo_id, discussion_num=discussion.num,
                                     comment_id=comment.id, author=comment.author, text=comment.content,
                                     is_pull_request=discussion.is_pull_request))  # fmt: skip


class MentionPoller:
    """One polling pass over the repos the bot has posted in, each new mention handed to the dispatcher."""

    def __init__(self, api: HubClient, store: Store, dispatcher: MentionDispatcher, *, bot_name: str) -> None:
        self.api = api
        self.store = store
        self.dispatcher = dispatcher
        self.bot_name = bot_name

    def poll_once(self) -> list[DispatchOutcome]:
        events = poll_mentions(self.api, self.store, bot_name=self.bot_name, repo_ids=self.store.repos_posted_in())
        outcomes = []
        for event in events:
            try:
                outcomes.append(self.dispatcher.handle(event))
            except ClipAuditError as error:  # one failing mention must not stop the others
                logger.warning("mention %s on %s#%d could not be answered: %s", event.event_id, event.repo_id,
                               event.discussion_num, error)  # fmt: skip
        if events:
            logger.info("mention poll: %d new mention(s)", len(events))
        return outcomes
