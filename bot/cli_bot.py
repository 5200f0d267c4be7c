"""Bot commands: hub-emulator, watch, worker, serve, status."""

from __future__ import annotations

import threading
from pathlib import Path

from bot.errors import EXIT_CLEAN


def _settings(args):
    from bot.settings import load_settings

    overrides = {}
    for name in ("endpoint", "device", "db_path", "cache_dir", "outbox_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = str(value)
    if getattr(args, "dry_run", False):
        overrides["dry_run"] = "true"
    return load_settings(config_file=getattr(args, "config", None), overrides=overrides)


def _common(p) -> None:
    p.add_argument("--config", type=Path, help="TOML settings file (default ./clip-audit.toml when present)")
    p.add_argument("--endpoint", help="Hub endpoint (default HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--db-path", type=Path)
    p.add_argument("--cache-dir", type=Path)


def add_bot_commands(sub) -> None:
    p = sub.add_parser("hub-emulator", help="run the local Hugging Face Hub emulator")
    p.add_argument("rest", nargs="*", help="options passed to the emulator (see --help there)")
    p.set_defaults(func=_cmd_emulator)

    p = sub.add_parser("watch", help="poll the Hub for new or updated CLIP-family repos and queue scans")
    _common(p)
    p.add_argument("--once", action="store_true", help="one polling pass, then exit")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser("worker", help="run queued scans and publish the results")
    _common(p)
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--dry-run", action="store_true", help="write would-be posts to the outbox instead of the Hub")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("serve", help="webhook endpoint for mentions (FastAPI/uvicorn)")
    _common(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("status", help="queue and recent audits")
    _common(p)
    p.set_defaults(func=_cmd_status)


def _cmd_emulator(args) -> int:
    from bot.hub.emulator.__main__ import main as emulator_main

    return int(emulator_main(args.rest) or 0)


def _cmd_watch(args) -> int:
    from bot.service import Bot

    bot = Bot.from_settings(_settings(args))
    watcher = bot.watcher()
    if args.once:
        jobs = watcher.poll_once()
        print(f"queued {len(jobs)} scan(s)")
        return EXIT_CLEAN
    stop = threading.Event()
    try:
        watcher.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
    return EXIT_CLEAN


def _cmd_worker(args) -> int:
    from bot.service import Bot

    bot = Bot.from_settings(_settings(args))
    done = bot.worker().work(burst=args.burst)
    print(f"processed {done} job(s)")
    return EXIT_CLEAN


def _cmd_serve(args) -> int:
    import uvicorn

    from bot.errors import ConfigError
    from bot.mentions.webhook import create_app
    from bot.service import Bot, MentionQueue

    settings = _settings(args)
    if not settings.webhook_secret:
        raise ConfigError("serve needs a webhook secret: set CLIP_AUDIT_WEBHOOK_SECRET or webhook_secret in the TOML file")
    bot = Bot.from_settings(settings)
    mentions = MentionQueue(bot.dispatcher).start()
    app = create_app(secret=settings.webhook_secret, handle=mentions.put, bot_user_id=bot.bot_user_id())
    uvicorn.run(app, host=args.host or settings.webhook_host, port=args.port or settings.webhook_port,
                log_level="warning")
    mentions.stop()
    return EXIT_CLEAN


def _cmd_status(args) -> int:
    from bot.report_text import table
    from bot.state.store import Store

    settings = _settings(args)
    if not settings.db_path.is_file():
        print(f"no state database at {settings.db_path} yet: run `clip-audit watch` or `clip-audit demo` first")
        return EXIT_CLEAN
    store = Store(settings.db_path)
    counts = store.queue_counts()
    print("queue: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts else "queue: empty")
    rows = [[s.repo_id, s.sha[:12], s.verdict, str(getattr(s, "created_at", ""))] for s in store.latest_scans(20)]
    print()
    print(table(["repo", "sha", "verdict", "scanned"], rows) if rows else "no audits yet")
    skips = store.skips()
    if skips:
        print()
        print(table(["skipped repo", "sha", "reason"], [[k.repo_id, (k.sha or "")[:12], k.reason] for k in skips[:20]]))
    return EXIT_CLEAN


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole bot end to end against the bundled Hub emulator")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from bot.demo import run_demo

    return run_demo(cache_dir=args.cache_dir, device=args.device)
