"""The bot's long-running commands: watch, worker, serve; and status, what the state database holds."""

from __future__ import annotations

import signal
import threading

from bot.cli.parser import add_alias, add_settings_options, settings_from_args
from bot.errors import EXIT_CLEAN, UsageError
from bot.settings import QUEUE_BACKENDS


def register(sub) -> None:
    p = sub.add_parser("watch", help="poll the Hub for new or updated CLIP-family repos and queue scans; "
                                     "answer mentions that webhooks missed")
    add_settings_options(p)
    p.add_argument("--once", action="store_true", help="one pass (uploads, then mentions), then exit")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser("worker", help="run queued scans and publish the results")
    add_settings_options(p)
    p.add_argument("--backend", dest="queue_backend", choices=QUEUE_BACKENDS,
                   help="sqlite: the state database's queue (one machine); celery: tasks from the Redis broker at "
                        "redis_url, one worker process per GPU (default: the queue_backend setting, sqlite)")
    p.add_argument("--once", dest="burst", action="store_true",
                   help="run until the queue is empty, then exit (sqlite backend)")
    add_alias(p, "--burst", dest="burst", action="store_true")
    p.add_argument("--concurrency", type=int, default=1,
                   help="celery backend: scans at once; keep 1 per GPU, one worker per GPU (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--name", help="celery backend: the worker's node name, e.g. gpu0@%%h (default: unique per process)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N (default: the device setting, auto)")
    p.add_argument("--dry-run", action="store_true", help="write would-be posts to the outbox instead of the Hub")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("serve", help="webhook endpoint for mentions (FastAPI/uvicorn)")
    add_settings_options(p)
    p.add_argument("--host", dest="webhook_host",
                   help="address to listen on (default: the webhook_host setting, 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", dest="webhook_port", type=int,
                   help="TCP port to listen on (default: the webhook_port setting, 8080)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("status", help="queue and recent audits")
    add_settings_options(p)
    p.set_defaults(func=_cmd_status)


def _cmd_watch(args) -> int:
    from bot.service import Bot

    bot = Bot.from_settings(settings_from_args(args))
    if args.once:
        jobs = bot.watcher().poll_once()
        answered = bot.mention_poller().poll_once()
        print(f"queued {len(jobs)} scan(s); answered {len(answered)} mention(s) found by polling")
        return EXIT_CLEAN
    stop = threading.Event()
    try:
        bot.watch_forever(stop)
    except KeyboardInterrupt:
        stop.set()
    return EXIT_CLEAN


def _cmd_worker(args) -> int:
    from bot.service import Bot

    settings = settings_from_args(args)
    if settings.queue_backend == "celery":
        if args.burst:
            raise UsageError("--once is for the sqlite backend; a Celery worker runs until SIGTERM")
        if args.concurrency < 1:
            raise UsageError("--concurrency must be 1 or more")
        from bot.distributed.tasks import run_worker

        run_worker(settings, concurrency=args.concurrency, name=args.name, verbose=getattr(args, "verbose", False))
        return EXIT_CLEAN
    bot = Bot.from_settings(settings)
    done = bot.worker().work(burst=args.burst)
    print(f"processed {done} job(s)")
    return EXIT_CLEAN


def _cmd_serve(args) -> int:
    import uvicorn

    from bot.errors import ConfigError
    from bot.mentions.webhook import create_app
    from bot.service import Bot

    settings = settings_from_args(args)
    if not settings.webhook_secret:
        raise ConfigError("serve needs a webhook secret: set CLIP_AUDIT_WEBHOOK_SECRET or webhook_secret in the "
                          "TOML file")
    bot = Bot.from_settings(settings)
    # Each delivery is stored before it is acknowledged; this thread answers them (and those left from before).
    mentions = bot.mention_processor().start()
    app = create_app(secret=settings.webhook_secret, handle=mentions.receive, bot_user_id=bot.bot_user_id())
    # uvicorn shuts down on SIGTERM/SIGINT, then raises the signal again to the handler that was there before:
    # with this one, serve returns (after the mention being answered is finished) instead of dying of it.
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.run(app, host=settings.webhook_host, port=settings.webhook_port, log_level="warning")
    finally:
        mentions.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_CLEAN


def _cmd_status(args) -> int:
    from bot.cli.output import table
    from bot.state import MentionStatus, Store

    settings = settings_from_args(args)
    if not settings.db_path.is_file():
        raise UsageError(f"no state database at {settings.db_path}: run `clip-audit watch` first, or pass --db-path")
    store = Store(settings.db_path)
    counts = store.queue_counts()
    print("queue: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts else "queue: empty")
    mentions = store.mention_counts()
    print("mentions: " + ", ".join(f"{k} {v}" for k, v in sorted(mentions.items())))
    failed = store.mention_events(MentionStatus.FAILED)[-5:]
    if failed:
        print(table(["failed mention", "thread", "why"],
                    [[m.event_id, f"{m.repo_id}#{m.discussion_num}", (m.last_error or "")[:70]] for m in failed]))
    from bot.site.build import iso_utc

    rows = []
    for scan in store.latest_scans(20):
        record = scan.record()
        rows.append([scan.repo_id, scan.sha[:12], record.family, scan.verdict, iso_utc(scan.created_at)])
    print()
    print(table(["repo", "sha", "family", "verdict", "scanned"], rows) if rows else "no audits yet")
    skips = store.skips()
    if skips:
        print()
        print(table(["skipped repo", "sha", "reason"],
                    [[k.repo_id, (k.sha or "")[:12], k.reason[:70]] for k in skips[:20]]))
    return EXIT_CLEAN
