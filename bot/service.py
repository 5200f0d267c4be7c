"""Wiring: build the bot's parts from one Settings object."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.errors import ClipAuditError
from bot.hub.client import HubClient
from bot.mentions.dispatch import MentionDispatcher
from bot.mentions.polling import MentionPoller
from bot.mentions.processor import MentionProcessor
from bot.pipeline import JobHandler
from bot.publish.poster import Publisher
from bot.settings import Settings
from bot.state.store import Store

if TYPE_CHECKING:
    from bot.distributed.enqueue import CeleryQueue

logger = logging.getLogger(__name__)


@dataclass
class Bot:
    settings: Settings
    store: Store
    api: HubClient
    publisher: Publisher
    dispatcher: MentionDispatcher
    # queue_backend "celery": where queued jobs are sent (the watcher's and the mentions'); None: nowhere, the
    # built-in worker takes them from the store.
    queue: CeleryQueue | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Bot":
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_path)
        api = HubClient.from_settings(settings)
        publisher = Publisher(api, store, bot_name=settings.bot_name, dry_run=settings.dry_run,
                              outbox_dir=settings.outbox_dir, post_clean_results=settings.post_clean_results,
                              report_base_url=settings.report_base_url)
        queue = None
        if settings.queue_backend == "celery":
            from bot.distributed.enqueue import CeleryQueue

            queue = CeleryQueue(settings)
        dispatcher = MentionDispatcher(api, store, publisher, bot_name=settings.bot_name,
                                       submit=queue.submit if queue else None)  # fmt: skip
        return cls(settings=settings, store=store, api=api, publisher=publisher, dispatcher=dispatcher, queue=queue)

    def handler(self) -> JobHandler:
        return JobHandler(store=self.store, api=self.api, settings=self.settings, publisher=self.publisher)

    def worker(self):
        from bot.worker import Worker

        return Worker(self.store, self.settings, handler=self.handler())

    def watcher(self):
        from bot.hub.watcher import Watcher

        return Watcher(self.store, self.api, self.settings, submit=self.queue.submit if self.queue else None)

    def mention_processor(self) -> MentionProcessor:
        """Handles the stored mentions (`serve` runs one on a thread; `watch` drains due ones on its loop)."""
        s = self.settings
        return MentionProcessor(self.store, self.dispatcher, max_attempts=s.mention_max_attempts,
                                backoff_seconds=s.mention_backoff_seconds, lease_seconds=s.lease_seconds,
                                idle_seconds=s.worker_idle_seconds)  # fmt: skip

    def mention_poller(self, processor: MentionProcessor | None = None) -> MentionPoller:
        return MentionPoller(self.api, self.store, processor or self.mention_processor(),
                             bot_name=self.settings.bot_name)  # fmt: skip

    def watch_forever(self, stop: threading.Event) -> None:
        """`clip-audit watch`: new uploads every poll_interval_seconds; as the fallback for lost webhook
        deliveries, mentions in the repos the bot has posted in every mention_poll_seconds; and the stored
        mentions that are due (recorded by a webhook with no `serve` running, or waiting for a retry) every
        worker_idle_seconds."""
        processor = self.mention_processor()
        poller = self.mention_poller(processor)

        def poll_mentions() -> None:
            try:
                poller.poll_once()
            except ClipAuditError as error:  # the next pass tries again; the watcher keeps running
                logger.warning("mention poll failed: %s", error)

        def handle_due_mentions() -> None:
            try:
                processor.process_due()
            except ClipAuditError as error:
                logger.warning("stored mentions could not be handled now: %s", error)

        also = [(self.settings.mention_poll_seconds, poll_mentions),
                (self.settings.worker_idle_seconds, handle_due_mentions)]
        if self.queue is not None:
            queue = self.queue

            def resubmit(waiting_longer_than: float | None) -> None:
                try:
                    queue.resubmit(self.store, waiting_longer_than=waiting_longer_than)
                except ClipAuditError as error:
                    logger.warning("queued jobs could not be sent to the broker again now: %s", error)

            # Jobs the broker may not hold (it was down when they were queued, or restarted and lost them): all
            # of them now, then those left waiting past the visibility timeout. A duplicate task is a no-op.
            resubmit(None)
            also.append((self.settings.poll_interval_seconds,
                         lambda: resubmit(self.settings.broker_visibility_seconds)))
        self.watcher().run_forever(stop, also=also)

    def bot_user_id(self) -> str | None:
        try:
            return self.api.whoami().get("id")
        except Exception as error:  # noqa: BLE001 - the webhook still works; it just can't spot its own id
            logger.warning("whoami failed (%s): the bot cannot recognise its own comments by id", type(error).__name__)
            return None
