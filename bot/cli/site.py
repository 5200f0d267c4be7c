"""`clip-audit site build` and `clip-audit site serve`: the static report site from the state database."""

from __future__ import annotations

from pathlib import Path

from bot.cli.parser import add_settings_options, settings_from_args, subcommands
from bot.errors import EXIT_CLEAN, UsageError
from bot.settings import CACHE_ROOT

DEFAULT_SITE_DIR = CACHE_ROOT / "site"


def register(sub) -> None:
    p = sub.add_parser("site", help="static report site (HTML pages, plots, badges) from the scan records")
    ssub = subcommands(p, "site_command")
    b = ssub.add_parser("build", help="build the site from every scan in the state database")
    add_settings_options(b)
    b.add_argument("--out", type=Path, default=DEFAULT_SITE_DIR, help=f"output directory (default {DEFAULT_SITE_DIR})")
    b.add_argument("--redraw", action="store_true", help="redraw every plot, even those drawn from the same record")
    b.set_defaults(func=_cmd_build)
    s = ssub.add_parser("serve", help="preview a built site on http://127.0.0.1")
    s.add_argument("--dir", type=Path, default=DEFAULT_SITE_DIR, dest="site_dir",
                   help=f"built site directory (default {DEFAULT_SITE_DIR})")
    s.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    s.set_defaults(func=_cmd_serve)


def _cmd_build(args) -> int:
    from bot.site.build import build_from_store
    from bot.state.store import Store

    settings = settings_from_args(args)
    if not settings.db_path.is_file():
        raise UsageError(f"no state database at {settings.db_path}: run `clip-audit watch` first, or pass --db-path")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file; the site needs a folder")
    with Store(settings.db_path) as store:
        summary = build_from_store(store, args.out, base_url=settings.report_base_url, reuse_plots=not args.redraw)
    counts = ", ".join(f"{count} {verdict}" for verdict, count in summary.latest_verdicts.items())
    print(f"built {summary.out_dir}/index.html: {summary.repos} repos, {summary.revisions} revisions ({counts})")
    for refused in summary.refused:
        print(f"left out {refused.repo_id!r} @ {refused.sha!r}: {refused.reason}")
    return EXIT_CLEAN


def _cmd_serve(args) -> int:
    import signal
    import threading

    from bot.site.serve import serve_forever

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port (0-65535)")
    if not (args.site_dir / "index.html").is_file():
        raise UsageError(f"no built site in {args.site_dir}; run `clip-audit site build` first")
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (docker stop, systemd) ends the preview as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve_forever(args.site_dir, port=args.port, stop=stop)
    except OSError as exc:
        raise UsageError(f"cannot serve on 127.0.0.1:{args.port}: {exc}") from None
    except KeyboardInterrupt:
        pass
    return EXIT_CLEAN
