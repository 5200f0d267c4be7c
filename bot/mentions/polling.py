"""Polling for mentions, the fallback for deliveries a webhook missed (or repos without one): read the open
discussions of the repos the bot has posted in, and store each new mention as a pending event for the
MentionProcessor, exactly as the webhook does.

A comment is stored under its Hub id, which is also the id a webhook delivery of the same comment carries:
whichever source sees it first records it, and the other finds it recorded. A comment the bot has already
answered (its reply marker is in the thread) is passed over too, even if the store does not know it.
Closed discussions are not read (a closed thread is the owner saying "done").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.errors import ClipAuditError, HubError, RateLimitedError, SkipRepo
from bot.hub.client import HubClient
from bot.mentions.dispatch import DispatchOutcome
from bot.mentions.events import MentionEvent
from bot.mentions.processor import MentionProcessor, store_mention
from bot.publish.render import reply_marker
from bot.state.store import Store

logger = logging.getLogger(__name__)

POLL_SOURCE = "poll"


def poll_mentions(api: HubClient, store: Store, *, bot_name: str, repo_ids: Iterable[str]) -> list[MentionEvent]:
    """New comments mentioning `bot_name` in the open discussions and PRs of `repo_ids`, oldest first per thread,
    each already recorded in the store as a pending mention event.

    Repos that are gone, private or have discussions disabled are skipped. When the Hub rate-limits the bot,
    polling stops there and what was found so far is returned; the remaining repos are read on the next poll.
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
        replies = [comment.content for comment in details.comments if comment.author.lower() == bot_name.lower()]
        for comment in details.comments:
            if comment.hidden or comment.author.lower() == bot_name.lower() or needle not in comment.content.lower():
                continue
            marker = reply_marker(comment.id)
            if (marker and any(marker in reply for reply in replies)) or store.knows_mention(comment.id):
                continue
            event = MentionEvent(event_id=comment.id, repo_id=repo_id, discussion_num=discussion.num,
                                 comment_id=comment.id, author=comment.author, text=comment.content,
                                 is_pull_request=discussion.is_pull_request)  # fmt: skip
            if store_mention(store, event, source=POLL_SOURCE):
                into.append(event)


class MentionPoller:
    """One polling pass over the repos the bot has posted in; then every stored mention that is due (found now,
    stored by the webhook, or waiting for a retry) is handled."""

    def __init__(self, api: HubClient, store: Store, processor: MentionProcessor, *, bot_name: str) -> None:
        self.api = api
        self.store = store
        self.processor = processor
        self.bot_name = bot_name

    def poll_once(self) -> list[DispatchOutcome]:
        """The outcomes of the mentions handled in this pass."""
        events = poll_mentions(self.api, self.store, bot_name=self.bot_name, repo_ids=self.store.repos_posted_in())
        if events:
            logger.info("mention poll: %d new mention(s)", len(events))
        try:
            return self.processor.process_due()
        except ClipAuditError as error:  # the store failed: the events stay stored for the next pass
            logger.warning("stored mentions could not be handled now: %s", error)
            return []
