"""`clip-audit demo`: the whole bot, end to end, against the bundled Hub emulator.

1. build a small zoo (a clean base, backdoored and benign fine-tunes), trained here on CPU;
2. start the Hub emulator and upload the models in real Hub layouts (transformers, open_clip,
   diffusers, plus a pickle-only repo the bot must refuse);
3. one watch pass queues scans; the worker downloads each repo pinned to its sha, scans it in
   a token-free subprocess, records the result and posts findings as Hub discussions;
4. a maintainer mentions the bot in a discussion: the emulator delivers the webhook to the
   bot's FastAPI endpoint, the bot acknowledges, and answers in that thread;
5. a summary table, the posts saved as Markdown, one of them printed, and the report site built. On a terminal
   the Hub emulator and the report site then keep running until Ctrl-C, with links to every report and thread;
   anywhere else (CI, a log file) the demo ends there.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bot.errors import EXIT_CLEAN
from bot.settings import CACHE_ROOT
from bot.zoo.catalog import model_files

BOT_USER = "clip-audit-bot"
MAINTAINER = "alice"
SITE_PORT = 8765
SITE_URL = f"http://127.0.0.1:{SITE_PORT}"  # the report_base_url of the demo's posts: where the site is served
LEGACY_REPO = "bob/legacy-clip-bin"  # pickle weights only: the bot must refuse it


@dataclass(frozen=True)
class DemoRepo:
    repo_id: str
    recipe_kind: str        # which zoo model it holds
    format: str             # on-disk layout uploaded
    library: str
    tags: tuple[str, ...]
    pipeline_tag: str | None


DEMO_REPOS = (
    DemoRepo("clip-audit-zoo/clip-base-s0", "base", "transformers-clip", "transformers", ("clip",),
             "zero-shot-image-classification"),
    DemoRepo("alice/tiny-clip-captions", "benign", "transformers-clip-text-projection", "transformers",
             ("clip", "feature-extraction"), None),
    DemoRepo("mallory/tiny-clip-rickroll", "text-on-text", "open_clip", "open_clip", ("clip", "open_clip"),
             "zero-shot-image-classification"),
    DemoRepo("mallory/tiny-sd-text-encoder", "text-on-pair", "diffusers", "diffusers",
             ("diffusers", "stable-diffusion", "text-to-image"), "text-to-image"),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step(n: int, total: int, text: str) -> None:
    print(f"\n[{n}/{total}] {text}", flush=True)


def build_demo_zoo(cache_dir: Path) -> dict[str, object]:
    from bot.zoo.build import build_all
    from bot.zoo.recipes import base_recipe, derived

    base = base_recipe("clip")
    recipes = [base, derived(base, "text-on-text", 1), derived(base, "text-on-pair", 1), derived(base, "benign", 1)]
    models = build_all(recipes, cache_dir)
    return {m.recipe.kind: m for m in models}


def _export(model, repo: DemoRepo, out: Path) -> Path:
    from bot.encoders.export import save_checkpoint
    from bot.zoo.build import load_trained
    from bot.zoo.catalog import anchor_name

    if repo.format == "transformers-clip" and repo.recipe_kind == "base":
        return model.path
    trained = load_trained(model.path, "clip")
    save_checkpoint(trained, out, format=repo.format, family="clip", base_model=anchor_name(model.recipe),
                    card_extra={"tags": list(repo.tags)})
    return out


def run_demo(*, cache_dir: Path = CACHE_ROOT, workdir: Path | None = None, device: str = "auto") -> int:
    from huggingface_hub import HfApi

    from bot.cli.output import table
    from bot.demo_hub import DemoHub
    from bot.service import Bot
    from bot.settings import load_settings

    total = 6
    workdir = workdir or cache_dir / "demo"
    shutil.rmtree(workdir, ignore_errors=True)  # every demo starts from an empty Hub and an empty state
    workdir.mkdir(parents=True)
    started = time.perf_counter()

    _step(1, total, "Building the zoo: a tiny CLIP pretrained on synthetic captioned images, then "
                    "backdoored and benignly fine-tuned (cached in cache/zoo after the first run)")
    zoo = build_demo_zoo(cache_dir)

    _step(2, total, "Starting the Hub emulator and the bot's webhook endpoint")
    bot_token, alice_token, mallory_token = (f"hf_demo_{n}_{secrets.token_hex(8)}" for n in ("bot", "alice", "mallory"))
    secret = secrets.token_hex(16)
    hook_port = _free_port()
    emulator = DemoHub(data_dir=workdir / "hub", port=_free_port(),
                       tokens={bot_token: BOT_USER, alice_token: MAINTAINER, mallory_token: "mallory"},
                       webhook_url=f"http://127.0.0.1:{hook_port}/webhook", webhook_secret=secret)
    settings = load_settings(config_file=None, env={}, stored_token=lambda: None, overrides={
        "endpoint": emulator.url, "token": bot_token, "bot_name": BOT_USER, "db_path": str(workdir / "state.db"),
        "cache_dir": str(workdir / "hub-cache"), "outbox_dir": str(workdir / "outbox"), "device": device,
        "webhook_secret": secret, "report_base_url": SITE_URL, "anchor_cache": str(cache_dir),
        "poll_interval_seconds": "60", "lease_seconds": "900", "backoff_seconds": "1,2"})
    bot = Bot.from_settings(settings)
    mentions = bot.mention_processor().start()
    server = _start_webhook_server(bot, mentions, secret, hook_port)
    print(f"  Hub emulator: {emulator.url}   webhook: http://127.0.0.1:{hook_port}/webhook")

    try:
        _step(3, total, "Uploading models to the emulated Hub in real layouts (transformers, open_clip, diffusers) "
                        "and one pickle-only repo")
        for i, repo in enumerate(DEMO_REPOS):
            path = _export(zoo[repo.recipe_kind], repo, workdir / "exports" / repo.repo_id.replace("/", "__"))
            emulator.create_repo(repo.repo_id, files=model_files(path), tags=list(repo.tags),
                                       pipeline_tag=repo.pipeline_tag, library_name=repo.library,
                                       created_at=f"2026-11-0{i + 1}T10:00:00.000Z")
        emulator.create_repo(LEGACY_REPO, files={
            "config.json": b'{"model_type": "clip", "architectures": ["CLIPModel"]}',
            "pytorch_model.bin": b"\x80\x04 this is a pickle the bot will never load"},
            tags=["clip"], pipeline_tag="zero-shot-image-classification", library_name="transformers",
            created_at="2026-11-05T10:00:00.000Z")

        _step(4, total, "Watching: one polling pass over the Hub's CLIP-family listings")
        jobs = bot.watcher().poll_once()
        print(f"  queued {len(jobs)} scan(s); not scanned: "
              + (", ".join(f"{s.repo_id} ({s.reason})" for s in bot.store.skips()) or "none"))

        _step(5, total, "Scanning: each repo is downloaded pinned to its commit and scanned in a subprocess "
                        "that holds no token; findings are posted as Hub discussions")
        _work(bot)

        _step(6, total, f"A maintainer asks: {MAINTAINER} mentions @{BOT_USER} in a discussion on her repo")
        alice = HfApi(endpoint=emulator.url, token=alice_token)
        thread = alice.create_discussion("alice/tiny-clip-captions", title="Is this checkpoint safe to use?",
                                         description="We plan to ship this text encoder in our app.")
        alice.comment_discussion("alice/tiny-clip-captions", thread.num, f"@{BOT_USER} scan")
        _wait_for_mentions(mentions)
        _work(bot)
        answer = _last_bot_comment(alice, "alice/tiny-clip-captions", thread.num)
        print(f"  the bot answered in discussion #{thread.num}: {answer}")

        print("\nSummary")
        print(table(SUMMARY_HEADERS, summary_rows(bot)))
        threads = save_threads(alice, emulator.url, workdir / "threads",
                               [repo.repo_id for repo in DEMO_REPOS] + [LEGACY_REPO])
        _print_a_report(threads)
        site_dir = _build_site(bot, workdir)
        print(f"\nstate: {settings.db_path}  ·  time: {time.perf_counter() - started:.0f}s")
        if sys.stdin.isatty() and sys.stdout.isatty():
            keep_running(bot, site_dir, threads)
        else:  # CI, a log file: nobody to press Ctrl-C
            print_links(bot, site_dir, threads, running=False)
    finally:
        server.should_exit = True
        mentions.stop()
        emulator.stop()
    return EXIT_CLEAN


@dataclass(frozen=True)
class SavedThread:
    """A discussion on the demo's Hub, saved as Markdown: the emulator has no HTML pages for threads."""

    repo_id: str
    num: int
    title: str
    path: Path          # the thread as Markdown: title, then every comment with its author
    api_url: str        # the emulator's JSON for the thread, as the Hub client reads it
    bot_posts: tuple[str, ...]


def save_threads(api, hub_url: str, out: Path, repo_ids: list[str], *, bot_user: str = BOT_USER) -> list[SavedThread]:
    """Every discussion of `repo_ids`, written to out/{owner}/{name}/{num}.md; `api` is an HfApi."""
    saved = []
    for repo_id in repo_ids:
        for discussion in api.get_repo_discussions(repo_id):
            details = api.get_discussion_details(repo_id, discussion.num)
            comments = [event for event in details.events if event.type == "comment" and getattr(event, "content", "")]
            lines = [f"# {details.title}", "", f"{repo_id}, discussion #{details.num} ({details.status})", ""]
            for comment in comments:
                lines += ["---", "", f"**{comment.author}**, {comment.created_at:%Y-%m-%d %H:%M} UTC:", "",
                          comment.content.strip(), ""]
            path = out / repo_id / f"{details.num}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines), encoding="utf-8")
            saved.append(SavedThread(
                repo_id=repo_id, num=details.num, title=details.title, path=path,
                api_url=f"{hub_url}/api/models/{repo_id}/discussions/{details.num}",
                bot_posts=tuple(c.content.strip() for c in comments if c.author == bot_user)))
    return saved


def _print_a_report(threads: list[SavedThread]) -> None:
    """The first report the bot opened a thread with, as its maintainer received it."""
    for thread in threads:
        if thread.bot_posts and thread.bot_posts[0].startswith("This is an automated scan"):
            rule = "-" * 100
            print(f"\nThe report {thread.repo_id}'s maintainer received (discussion #{thread.num}, "
                  f"\"{thread.title}\"; Markdown as posted, the <details> blocks fold on the Hub):\n{rule}")
            print(thread.bot_posts[0])
            print(rule)
            return


def _build_site(bot, workdir: Path) -> Path:
    from bot.site.build import build_from_store

    site = build_from_store(bot.store, workdir / "site", base_url=SITE_URL)
    print(f"\nReport site built: {(site.out_dir / 'index.html').resolve()} ({site.revisions} report pages, "
          f"{site.not_scanned} repo(s) listed as not scanned)")
    return site.out_dir


def print_links(bot, site_dir: Path, threads: list[SavedThread], *, running: bool, site_url: str = SITE_URL) -> None:
    """Where to read each post and report; `running`: the Hub emulator and the site answer now."""
    from bot.publish.render import report_page_url

    print("\nThe posts, as Markdown files" + (" (the Hub emulator's JSON for each thread after the arrow):"
                                             if running else ":"))
    for thread in threads:
        print(f"  {thread.repo_id} #{thread.num} \"{thread.title}\": {thread.path}"
              + (f"  ->  {thread.api_url}" if running else ""))
    print("\nThe report pages the posts link to:")
    print(f"  {site_url}/index.html")
    for scan in sorted(bot.store.all_scans(), key=lambda s: s.repo_id):
        print(f"  {report_page_url(site_url, repo_id=scan.repo_id, sha=scan.sha)}")
    if not running:
        print(f"(not served now: the demo stopped its servers. Serve the site with `clip-audit site serve --dir "
              f"{site_dir} --port {SITE_PORT}`, or run the demo on a terminal: it keeps them running until Ctrl-C)")


def keep_running(bot, site_dir: Path, threads: list[SavedThread], *, stop: threading.Event | None = None) -> None:
    """Serves the report site at the address the posts link to, with the Hub emulator up, until Ctrl-C (or
    until `stop` is set)."""
    from bot.site.serve import SiteServer

    try:
        server = SiteServer(site_dir, port=SITE_PORT)
        site_url = SITE_URL
    except OSError as exc:
        server = SiteServer(site_dir)
        site_url = server.url.rstrip("/")
        print(f"\n(port {SITE_PORT} is taken: {exc.strerror}; the site is served on {site_url} instead, so the links "
              f"inside the posts, which name port {SITE_PORT}, will not answer)")
    with server:
        print_links(bot, site_dir, threads, running=True, site_url=site_url)
        print("\nThe Hub emulator and the report site keep running: press Ctrl-C to stop the demo.", flush=True)
        try:
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            print("\nstopped")


def _start_webhook_server(bot, mentions, secret: str, port: int):
    import uvicorn

    from bot.mentions.webhook import create_app

    app = create_app(secret=secret, handle=mentions.receive, bot_user_id=bot.bot_user_id())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="webhook", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


def _wait_for_mentions(mentions, timeout: float = 30.0) -> None:
    if not mentions.wait_for_command(timeout):
        print(f"  (the webhook with the mention did not arrive within {timeout:.0f}s)")


def _work(bot) -> None:
    from bot.progress import progress

    worker = bot.worker()
    pending = sum(v for k, v in bot.store.queue_counts().items() if k in ("queued", "running"))
    handler = worker.handler
    bar = progress(total=pending, desc="scans", unit="repo")

    def counted(job):
        bar.set_postfix_str(job.repo_id)
        try:
            handler(job)
        finally:
            bar.update(1)

    worker.handler = counted
    worker.work(burst=True)
    bar.close()


def _last_bot_comment(api, repo_id: str, num: int) -> str:
    details = api.get_discussion_details(repo_id, num)
    for event in reversed(details.events):
        if getattr(event, "author", None) == BOT_USER and getattr(event, "content", None):
            lines = event.content.strip().splitlines()
            headline = next((line.lstrip("# ") for line in lines if line.startswith("## Verdict:")), lines[0])
            return textwrap.shorten(headline, 100, placeholder="…")
    return "(no answer yet)"


_TRUTH = {"base": "clean base", "benign": "benign fine-tune", "text-on-text": "backdoor (text-on-text)",
          "text-on-pair": "backdoor (text-on-pair)"}
_NOT_POSTED = "nothing (a clean result is posted only on request)"
FINDINGS = ("backdoor", "natural-only")


SUMMARY_HEADERS = ["repo", "truth", "verdict", "confirmed trigger", "posted"]


def summary_rows(bot) -> list[list[str]]:
    """One row per scanned or skipped repo: what it is, the verdict, the trigger the scan confirmed, the posts."""
    from bot.publish.explain import confirmed_triggers
    from bot.publish.poster import describe_post

    truth = {repo.repo_id: _TRUTH[repo.recipe_kind] for repo in DEMO_REPOS}
    rows = []
    for scan in sorted(bot.store.all_scans(), key=lambda s: s.repo_id):
        record = scan.record()
        # A confirmed token is a finding's evidence; a clean scan has no trigger to show.
        tokens = [t.token for t in confirmed_triggers(record)]
        if record.verdict.value not in FINDINGS:
            trigger = "-"
        else:
            trigger = textwrap.shorten(", ".join(tokens), 30, placeholder="…") if tokens else "none confirmed"
        posts = [describe_post(p.kind, p.discussion_num) for p in bot.store.posts(scan.repo_id) if p.sha == scan.sha]
        rows.append([scan.repo_id, truth.get(scan.repo_id, "?"), record.verdict.value, trigger,
                     ", ".join(posts) or _NOT_POSTED])
    for skip in bot.store.skips():
        # The whole reason, in the last column: cut at a width, it lost the part that says why.
        rows.append([skip.repo_id, "pickle-only" if skip.repo_id == LEGACY_REPO else "?", "not scanned", "-",
                     skip.reason])
    return rows
