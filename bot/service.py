"""Wiring: build the bot's parts from one Settings object."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

from bot.errors import ClipAuditError
from bot.hub.client import HubClient
from bot.mentions.dispatch import MentionDispatcher
from bot.mentions.events import MentionEvent
from bot.mentions.polling import MentionPoller
from bot.pipeline import JobHandler
from bot.publish.poster import Publisher
from bot.settings import Settings
from bot.state.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Bot:
    settings: Settings
    store: Store
    api: HubClient
    publisher: Publisher
    dispatcher: MentionDispatcher

    @classmethod
    def from_settings(cls, settings: Settings) -> "Bot":
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_path)
        api = HubClient.from_settings(settings)
        publisher = Publisher(api, store, bot_name=settings.bot_name, dry_run=settings.dry_run,
                              outbox_dir=settings.outbox_dir, post_clean_results=settings.post_clean_results,
                              report_base_url=settings.report_base_url)
        dispatcher = MentionDispatcher(api, store, publisher, bot_name=settings.bot_name)
        return cls(settings=settings, store=store, api=api, publisher=publisher, dispatcher=dispatcher)

    def handler(self) -> JobHandler:
        return JobHandler(store=self.store, api=self.api, settings=self.settings, publisher=self.publisher)

    def worker(self):
        from bot.worker import Worker

        return Worker(self.store, self.settings, handler=self.handler())

    def watcher(self):
        from bot.hub.watcher import Watcher

        return Watcher(self.store, self.api, self.settings)

    def mention_poller(self) -> MentionPoller:
        return MentionPoller(self.api, self.store, self.dispatcher, bot_name=self.settings.bot_name)

    def watch_forever(self, stop: threading.Event) -> None:
        """`clip-audit watch`: new uploads every poll_interval_seconds and, as the fallback for lost webhook
        deliveries, mentions in the repos the bot has posted in every mention_poll_seconds."""
        poller = self.mention_poller()

        def poll_mentions() -> None:
            try:
                poller.poll_once()
            except ClipAuditError as error:  # the next pass tries again; the watcher keeps running
                logger.warning("mention poll failed: %s", error)

        self.watcher().run_forever(stop, also=((self.settings.mention_poll_seconds, poll_mentions),))

    def bot_user_id(self) -> str | None:
        try:
            return self.api.whoami().get("id")
        except Exception as error:  # noqa: BLE001 - the webhook still works; it just can't spot its own id
            logger.warning("whoami failed (%s): the bot cannot recognise its own comments by id", type(error).__name__)
            return None


class MentionQueue:
    """The webhook handler only enqueues; a background thread dispatches (acks, enqueues scans)."""

    def __init__(self, dispatcher: MentionDispatcher) -> None:
        self.dispatcher = dispatcher
        self.events: queue.Queue[MentionEvent | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="mentions", daemon=True)
        self.handled: list = []

    def start(self) -> "MentionQueue":
        self.thread.start()
        return self

    def put(self, event: MentionEvent) -> None:
        self.events.put(event)

    def _run(self) -> None:
        while True:
            event = self.events.get()
            if event is None:
                return
            try:
                self.handled.append(self.dispatcher.handle_new(event))
            except Exception:  # noqa: BLE001 - one bad mention must not stop the others
                logger.exception("handling mention %s failed", event.event_id)
            finally:
                self.events.task_done()

    def drain(self) -> None:
        self.events.join()

    def wait_for_command(self, timeout: float) -> bool:
        """Block until a delivered comment that addressed the bot was handled (bounded). Webhooks
        arrive asynchronously and a thread's opening post comes as a delivery of its own, so
        "something was handled" does not mean the comment with the command was."""
        deadline = time.monotonic() + timeout
        while not any(outcome.command for outcome in self.handled) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.drain()
        return any(outcome.command for outcome in self.handled)

    def stop(self) -> None:
        self.events.put(None)
        self.thread.join(timeout=10)
