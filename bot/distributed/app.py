"""The Celery application: a Redis broker, JSON messages only, and the delivery guarantees scans need.

- acks_late: a task's message is acknowledged when the task ends, not when it starts, so the broker still holds
  the job of a worker that dies mid-scan;
- reject_on_worker_lost: when the process running a task dies (the kernel's OOM killer, a SIGKILL), the message
  goes back to the queue at once, not after the visibility timeout;
- prefetch 1: a worker process reserves only the task it runs (a scan takes minutes to hours; a reserved second
  task would wait behind it while another GPU sits idle);
- the broker's visibility timeout: a delivered task not acknowledged for Settings.broker_visibility_seconds
  (above the longest scan) is handed to another worker, which is how the job of a worker lost whole (the machine
  gone) comes back.
"""

from __future__ import annotations

from celery import Celery

from bot.settings import Settings

SCAN_TASK = "clip_audit.scan"
SCAN_QUEUE = "clip-audit-scans"
# Messages are JSON: a pickled message would run code chosen by whoever can write to the broker.
_SERIALIZER = "json"
# kombu looks for messages whose visibility timeout passed every unacked_restore_interval seconds; a tenth of
# the timeout (and never less often than its default, 100 s) brings a dead worker's task back soon after it.
_RESTORE_FRACTION = 0.1
_RESTORE_MAX_SECONDS = 100.0


def celery_app(settings: Settings) -> Celery:
    """The bot's Celery application for `settings` (its broker is settings.redis_url)."""
    app = Celery("clip_audit", broker=settings.redis_url, set_as_current=False)
    visibility = settings.broker_visibility_seconds
    app.conf.update(
        broker_transport_options={
            "visibility_timeout": visibility,
            "unacked_restore_interval": min(visibility * _RESTORE_FRACTION, _RESTORE_MAX_SECONDS),
            "unacked_restore_throttle": 1,  # every sweep looks: the interval alone sets the pace
        },
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A broker connection lost mid-scan does not cancel the scan: the message comes back (acks_late) and its
        # second delivery waits for this one's lease in the store (Store.claim) instead of running the job again.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_serializer=_SERIALIZER,
        result_serializer=_SERIALIZER,
        accept_content=[_SERIALIZER],
        task_ignore_result=True,  # outcomes live in the state database
        task_default_queue=SCAN_QUEUE,
    )
    return app
