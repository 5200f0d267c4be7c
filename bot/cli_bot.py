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
    p.add_argument("--data-dir", type=Path, default=Path("cache/hub-emulator"), help="where repos persist")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8900)
    p.add_argument("--token", action="append", default=[], metavar="TOKEN=USER",
                   help="accepted token and its user (repeatable; or HUB_EMULATOR_TOKENS=t1=u1,t2=u2)")
    p.add_argument("--webhook-url", help="POST webhook events here")
    p.add_argument("--seed", type=Path, help="JSON seed file (see bot/hub/emulator/seed.py)")
    p.add_argument("--seed-zoo", type=Path, metavar="CACHE_DIR",
                   help="upload every built zoo model under CACHE_DIR/zoo (e.g. cache) at start")
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
    import os

    from bot.errors import UsageError
    from bot.hub.emulator import EmulatorConfig, build_state, create_server, serve_until_interrupted

    tokens = {}
    for pair in [p for p in os.environ.get("HUB_EMULATOR_TOKENS", "").split(",") if p.strip()] + args.token:
        token, sep, user = pair.partition("=")
        if not sep or not token or not user:
            raise UsageError(f"--token must look like TOKEN=USER, got {pair.split('=')[0][:4]}...")
        tokens[token] = user
    config = EmulatorConfig(data_dir=args.data_dir, host=args.host, port=args.port, tokens=tokens,
                            webhook_url=args.webhook_url,
                            webhook_secret=os.environ.get("HUB_EMULATOR_WEBHOOK_SECRET"),
                            admin_token=os.environ.get("HUB_EMULATOR_ADMIN_TOKEN"), seed_file=args.seed)
    state = build_state(config)
    if args.seed_zoo is not None:
        from bot.zoo.hub_seed import seed_zoo

        created = seed_zoo(state, args.seed_zoo)
        print(f"seeded {len(created)} zoo repo(s) from {args.seed_zoo / 'zoo'}")
    server = create_server(config, state)
    print(f"Hub emulator on {server.url} (data in {args.data_dir}); Ctrl-C stops it", flush=True)
    serve_until_interrupted(server)
    return EXIT_CLEAN


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
        print(table(["skipped repo", "sha", "reason"], [[k.repo_id, (k.sha or "")[:12], k.reason[:70]] for k in skips[:20]]))
    return EXIT_CLEAN


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole bot end to end against the bundled Hub emulator")
    p.add_argument("--cache-dir", type=Path, default=Path("cache"))
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from bot.demo import run_demo

    return run_demo(cache_dir=args.cache_dir, device=args.device)
