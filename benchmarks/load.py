"""Load under faults: many new repos and a burst of mentions while the bot runs against a flaky Hub.

    python benchmarks/load.py                   # 1,000 new repos, 500 mention events, faults on (docs/reliability.md)
    python benchmarks/load.py --quick           # 50 repos, 40 events (tests/test_load.py)

The Hub emulator runs as its own process (bot/demo_hub.py) with injected faults: 429s with Retry-After and RateLimit
headers, 503 bursts, connections dropped after the Hub handled the request (before and during the answer's body),
and stalls longer than the bot's Hub timeout. The bot runs as a user runs it: `clip-audit serve` (the webhook
endpoint the emulator delivers to, redelivering with backoff), `clip-audit watch` and `clip-audit worker`, three
processes sharing the default SQLite state. With faults on, `serve` is also killed (SIGKILL) halfway through the
burst and started again.

1. the services start, then `--repos` new CLIP-tagged repos are uploaded: most are pickle-only or have no weights
   (the watcher sees each and records why it is not scanned); `--real-models` of them hold the test zoo's tiny CLIP
   base and are uploaded last, just before the burst (when the zoo is built; it is never trained here): each is
   scanned for real, queued by the first mention or by the watcher, whichever comes first;
2. the faults are armed; a burst of `--events` mentions follows, as fast as the admin API takes them: half open a
   new discussion with the mention, half comment in a discussion opened before; most ask for a scan (a job each),
   some for help; a fifth of the repos are asked about twice (the second asker is told the scan is queued or
   done); the real models are asked about first;
3. once every mention and job is settled, the faults are cleared and the Hub and the state database are read.

Invariants (exit 1 if one fails): every repo triaged; every webhook delivery of a mention delivered; every
mention handled and answered exactly once in its thread; every asked-for scan has its job; every job finished
(done or skipped) exactly once: one job per (repo, sha), no lease lost while running, and each result asked for
posted exactly once in the thread that asked. Measured: mentions acknowledged per second over the burst, and the
p50/p95/max latency from a mention's comment to the bot's acknowledgement (both stamped by the Hub; the scans
themselves are not in it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # before huggingface_hub is imported

from bot.demo_hub import DemoHub  # noqa: E402

BOT_USER = "clip-audit-bot"
ASKERS = ("alice", "bob", "carol")
THREAD_TITLE = "Is this checkpoint safe to use?"
SETTLE_POLL_S = 1.0
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class LoadPlan:
    repos: int
    events: int
    real_models: int        # repos holding the zoo's tiny CLIP base: each scanned for real
    faults: bool = True
    deadline_s: float = 1800.0  # give up waiting for the bot to settle after this long (a failure, not a hang)

    def __post_init__(self) -> None:
        if not (1 <= self.real_models + 1 <= self.repos and self.events >= 1):
            raise ValueError("need at least one repo more than --real-models, and one event")


FULL = LoadPlan(repos=1000, events=500, real_models=2)
QUICK = LoadPlan(repos=50, events=40, real_models=0, deadline_s=600.0)

# Armed for the burst; each recurs (burst failures, then `gap` requests let through) until cleared. The bot's Hub
# timeout (HUB_TIMEOUT_S) is shorter than the stall, so a stalled call fails and is retried.
HUB_TIMEOUT_S = 2.0
FAULTS: tuple[dict[str, Any], ...] = (
    {"status": 429, "retry_after": 1, "path_prefix": "/api/models/", "method": "GET", "burst": 2, "gap": 60},
    {"status": 503, "path_prefix": "/api/", "burst": 3, "gap": 80},
    {"kind": "drop", "path_prefix": "/api/models/", "method": "POST", "burst": 1, "gap": 12},
    {"kind": "drop", "path_prefix": "/api/", "method": "GET", "burst": 1, "gap": 70, "drop_after_bytes": 0},
    {"kind": "drop", "path_prefix": "/api/models/", "method": "GET", "burst": 1, "gap": 90},
    {"kind": "stall", "stall_s": HUB_TIMEOUT_S + 2, "path_prefix": "/api/models/", "method": "GET", "burst": 1,
     "gap": 250},
)
FAULT_COUNT = 10**6  # "until cleared"


@dataclass
class LoadReport:
    plan: LoadPlan
    problems: list[str] = field(default_factory=list)
    repos_triaged: int = 0
    mentions: int = 0
    acks: int = 0
    jobs: dict[str, int] = field(default_factory=dict)
    results_posted: int = 0
    latencies_s: list[float] = field(default_factory=list)
    first_try_latencies_s: list[float] = field(default_factory=list)  # mentions whose webhook got through at once
    burst_s: float = 0.0          # first mention to last acknowledgement (Hub timestamps)
    post_s: float = 0.0           # how long posting the burst took the script
    settle_s: float = 0.0         # from the end of the burst until the bot had settled everything
    triage_s: float = 0.0         # first repo created to the last one triaged by the watcher
    faults_fired: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, int] = field(default_factory=dict)
    redelivered: int = 0          # webhook deliveries that needed more than one attempt
    mention_retries: int = 0      # mention attempts beyond the first, over all mentions
    job_retries: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def throughput(self) -> float:
        """Mentions acknowledged per second over the burst."""
        return self.acks / self.burst_s if self.burst_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_s")
        data.pop("first_try_latencies_s")
        data.update(ok=self.ok, throughput_per_s=round(self.throughput, 2), p50_s=percentile(self.latencies_s, 0.5),
                    p95_s=percentile(self.latencies_s, 0.95), max_s=round(max(self.latencies_s, default=0.0), 3),
                    mean_s=round(statistics.fmean(self.latencies_s), 3) if self.latencies_s else 0.0,
                    first_try=len(self.first_try_latencies_s),
                    first_try_p50_s=percentile(self.first_try_latencies_s, 0.5),
                    first_try_p95_s=percentile(self.first_try_latencies_s, 0.95))
        return data


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, rounded to the millisecond the Hub stamps comments with; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)


# -- processes --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """One `clip-audit` command as its own process, its output in workdir/<name>.log."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "bot.cli", *args], env=env, cwd=workdir,
                                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"`clip-audit {self.name}` exited with {self.process.returncode}; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _bot_env(workdir: Path, *, hub_url: str, token: str, secret: str, port: int, plan: LoadPlan) -> dict[str, str]:
    settings = {
        "ENDPOINT": hub_url, "TOKEN": token, "BOT_NAME": BOT_USER, "DB_PATH": str(workdir / "state.db"),
        "CACHE_DIR": str(workdir / "hub-cache"), "OUTBOX_DIR": str(workdir / "outbox"), "DEVICE": "cpu",
        "WEBHOOK_SECRET": secret, "WEBHOOK_PORT": str(port), "ANCHOR_CACHE": str(workdir / "anchors"),
        # every repo of the run is new to the watcher: its first pass reads them all, later ones from its cursors
        "INITIAL_BACKFILL": str(plan.repos + 100), "POLL_INTERVAL_SECONDS": "5", "MENTION_POLL_SECONDS": "30",
        "WORKER_IDLE_SECONDS": "0.2", "LEASE_SECONDS": "60", "HUB_TIMEOUT_SECONDS": str(HUB_TIMEOUT_S),
        # retries come fast here (the faults recur every few dozen requests) and often enough to outlast them
        "MAX_ATTEMPTS": "12", "BACKOFF_SECONDS": "0.5,1,2,4", "MENTION_MAX_ATTEMPTS": "12",
        "MENTION_BACKOFF_SECONDS": "0.5,1,2,4",
    }  # fmt: skip
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLIP_AUDIT_", "HF_"))}
    env.update({f"CLIP_AUDIT_{key}": value for key, value in settings.items()})
    env.update(HF_HUB_DISABLE_XET="1", HF_HOME=str(workdir / "hf-home"), OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    return env


def _wait_for_health(url: str, service: Service, limit_s: float = 120.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        service.check_running()
        try:
            with _LOCAL.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"`clip-audit {service.name}` did not answer {url} within {limit_s:.0f}s")


# -- the run ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    repo_id: str
    sha: str
    kind: str  # "real" | "pickle-only" | "no-weights"


def _repo_id(index: int) -> str:
    return f"load-{index % 25:02d}/clip-{index:04d}"


def _upload(hub: DemoHub, index: int, real_model: Path | None) -> Upload:
    from bot.zoo.catalog import model_files

    config = json.dumps({"model_type": "clip", "architectures": ["CLIPModel"], "load_index": index}).encode()
    if real_model is not None:
        kind, files = "real", model_files(real_model)
    elif index % 5 == 4:
        kind, files = "no-weights", {"config.json": config}
    else:
        kind, files = "pickle-only", {"config.json": config, "pytorch_model.bin": b"\x80\x04 pickled weights"}
    sha = hub.create_repo(_repo_id(index), files=files, tags=["clip"], pipeline_tag="zero-shot-image-classification",
                          library_name="transformers")  # fmt: skip
    return Upload(_repo_id(index), sha, kind)


@dataclass(frozen=True)
class Ask:
    repo_id: str
    asker: str
    text: str
    opens_thread: bool   # the mention is the opening post of a new discussion (else a comment in an older one)
    num: int = 0         # the discussion (known once posted)


def _plan_asks(plan: LoadPlan) -> list[Ask]:
    """Mentions over the repos, the real models first (each in a discussion of its own, as they are uploaded just
    before the burst); a fifth of the repos asked about twice."""
    targets = max(1, min(plan.repos, plan.events - plan.events // 5))
    asks = []
    for index in range(plan.events):
        target = index % targets
        verb = "help" if index % 10 == 9 else "scan"
        asks.append(Ask(_repo_id(target), ASKERS[index % len(ASKERS)], f"Hi @{BOT_USER} {verb} please",
                        opens_thread=index % 2 == 0 or target < plan.real_models))  # fmt: skip
    return asks


def _prepare_threads(hub: DemoHub, asks: list[Ask]) -> list[Ask]:
    """Opens, before the burst, the discussions the commenting mentions go to."""
    ready = []
    for ask in asks:
        num = 0 if ask.opens_thread else hub.open_discussion(ask.repo_id, author=ask.asker, title=THREAD_TITLE,
                                                             description="We plan to ship this text encoder.")
        ready.append(Ask(ask.repo_id, ask.asker, ask.text, ask.opens_thread, num))
    return ready


def _burst(hub: DemoHub, asks: list[Ask], *, midway: Any = None) -> list[Ask]:
    """Posts the mentions; `midway()` is called when half of them are out."""
    posted = []
    for index, ask in enumerate(asks):
        if midway is not None and index == len(asks) // 2:
            midway()
        if ask.opens_thread:
            num = hub.open_discussion(ask.repo_id, author=ask.asker, title=THREAD_TITLE, description=ask.text)
        else:
            hub.comment(ask.repo_id, ask.num, author=ask.asker, text=ask.text)
            num = ask.num
        posted.append(Ask(ask.repo_id, ask.asker, ask.text, ask.opens_thread, num))
    return posted


def _settled(store: Any, plan: LoadPlan, uploads: list[Upload], hub: DemoHub) -> bool:
    from bot.state import JobStatus, MentionStatus

    mentions = store.mention_events()
    asked = [m for m in mentions if f"@{BOT_USER}" in m.text]
    if len(asked) < plan.events or any(m.status in (MentionStatus.PENDING, MentionStatus.RUNNING) for m in mentions):
        return False
    if any(job.status in (JobStatus.QUEUED, JobStatus.RUNNING) for job in store.jobs()):
        return False
    if _triaged(store, uploads) < len(uploads):
        return False
    return hub.webhook_deliveries()["counts"].get("pending", 0) == 0


def _triaged(store: Any, uploads: list[Upload]) -> int:
    skipped = {(skip.repo_id, skip.sha) for skip in store.skips()}
    queued = {(job.repo_id, job.sha) for job in store.jobs()}
    return sum(1 for upload in uploads if (upload.repo_id, upload.sha) in skipped | queued)


def _stamp(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else datetime.fromisoformat(str(value)).timestamp()


def _verify(report: LoadReport, *, hub: DemoHub, token: str, store: Any, uploads: list[Upload], asks: list[Ask],
            worker_log: str, uploads_started: float) -> None:  # fmt: skip
    from huggingface_hub import HfApi

    from bot.publish.render import reply_marker, scanned_commit_marker
    from bot.state import JobStatus, MentionStatus

    problems = report.problems
    api = HfApi(endpoint=hub.url, token=token)

    report.repos_triaged = _triaged(store, uploads)
    if report.repos_triaged != len(uploads):
        problems.append(f"{len(uploads) - report.repos_triaged} repo(s) never triaged by the watcher")
    stamps = [skip.created_at for skip in store.skips()] + [job.created_at for job in store.jobs()]
    report.triage_s = max(stamps) - uploads_started if stamps else 0.0

    deliveries = hub.webhook_deliveries(flush=True)
    report.deliveries = deliveries["counts"]
    report.redelivered = sum(1 for d in deliveries["deliveries"] if len(d["attempts"]) > 1)
    delivered = {d["comment_id"] for d in deliveries["deliveries"] if d["outcome"] == "delivered"}
    at_once = {d["comment_id"] for d in deliveries["deliveries"] if len(d["attempts"]) == 1}

    rows = {row.event_id: row for row in store.mention_events()}
    jobs = store.jobs()
    by_commit = Counter((job.repo_id, job.sha) for job in jobs)
    report.jobs = dict(Counter(job.status.value for job in jobs))
    report.job_retries = sum(max(0, job.attempts - 1) for job in jobs)
    if any(count > 1 for count in by_commit.values()):
        problems.append("a (repo, sha) was queued more than once")
    unfinished = [job for job in jobs if job.status not in (JobStatus.DONE, JobStatus.SKIPPED)]
    if unfinished:
        problems.append(f"{len(unfinished)} job(s) not finished: "
                        + ", ".join(f"{j.repo_id} {j.status.value} ({j.last_error})" for j in unfinished[:5]))
    for line in ("after its lease was lost", "another worker also posted"):
        if line in worker_log:
            problems.append(f"the worker log says a job ran twice: {line!r}")

    heads = {upload.repo_id: upload.sha for upload in uploads}
    first_mention = last_ack = None
    threads = {(ask.repo_id, ask.num) for ask in asks}
    for repo_id, num in sorted(threads):
        events = api.get_discussion_details(repo_id, num).events
        comments = [e for e in events if e.type == "comment"]
        bot_posts = [e for e in comments if e.author == BOT_USER]
        for mention in (e for e in comments if e.author in ASKERS and f"@{BOT_USER}" in e.content):
            report.mentions += 1
            row = rows.get(mention.id)
            if mention.id not in delivered:
                problems.append(f"the webhook delivery of mention {mention.id} ({repo_id}#{num}) never got through")
            if row is None or row.status is not MentionStatus.HANDLED:
                problems.append(f"mention {mention.id} ({repo_id}#{num}) not handled: {row and row.status.value}")
                continue
            report.mention_retries += max(0, row.attempts - 1)
            answers = [e for e in bot_posts if reply_marker(mention.id) in e.content]
            if (row.outcome or "").startswith("posted-result"):  # scanned before: the result itself is the answer
                answers += [e for e in bot_posts if scanned_commit_marker(heads[repo_id]) in e.content]
            if len(answers) != 1:
                problems.append(f"mention {mention.id} ({repo_id}#{num}) answered {len(answers)} times")
                continue
            report.acks += 1
            asked_at, answered_at = _stamp(mention.created_at), _stamp(answers[0].created_at)
            report.latencies_s.append(answered_at - asked_at)
            if mention.id in at_once:
                report.first_try_latencies_s.append(answered_at - asked_at)
            first_mention = asked_at if first_mention is None else min(first_mention, asked_at)
            last_ack = answered_at if last_ack is None else max(last_ack, answered_at)
            if "scan" in mention.content and store.find_job(repo_id, heads[repo_id]) is None:
                problems.append(f"mention {mention.id} asked for a scan of {repo_id}; no job was queued")
        results = [e for e in bot_posts if scanned_commit_marker(heads[repo_id]) in e.content]
        report.results_posted += len(results)
        asked_here = any((j.repo_id, j.discussion_num, j.status) == (repo_id, num, JobStatus.DONE) for j in jobs)
        if len(results) > 1 or (asked_here and len(results) != 1):
            problems.append(f"the result of {repo_id}@{heads[repo_id][:8]} posted {len(results)} times in #{num}")
    if report.mentions != len(asks):
        problems.append(f"{len(asks)} mentions were posted, {report.mentions} found in their threads")
    if first_mention is not None and last_ack is not None:
        report.burst_s = last_ack - first_mention
    fired = hub.faults()
    for fault in fired["active"] + fired["spent"]:
        name = fault["kind"] if fault["kind"] != "status" else str(fault["status"])
        report.faults_fired[name] = report.faults_fired.get(name, 0) + fault["fired"]


def run(plan: LoadPlan, workdir: Path, *, log: Any = print) -> LoadReport:
    """One load run in `workdir` (emptied first); the report's `problems` list every invariant that failed."""
    import secrets

    from bot.state.store import Store
    from bot.zoo.catalog import load_zoo_model
    from bot.zoo.recipes import base_recipe

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    report = LoadReport(plan)
    real = load_zoo_model(REPO_ROOT / "cache", base_recipe("clip")) if plan.real_models else None
    if plan.real_models and real is None:
        log("  (the zoo's CLIP base is not built: no real scans in this run; `clip-audit zoo build` builds it)")
    token, secret = f"hf_load_{secrets.token_hex(8)}", secrets.token_hex(16)
    serve_port = _free_port()
    tokens = {token: BOT_USER, **{f"hf_{who}_{secrets.token_hex(4)}": who for who in ASKERS}}
    hub = DemoHub(data_dir=workdir / "hub", port=_free_port(), tokens=tokens,
                  webhook_url=f"http://127.0.0.1:{serve_port}/webhook", webhook_secret=secret,
                  options=("--webhook-backoff", "0.5", "--webhook-attempts", "10"))  # fmt: skip
    env = _bot_env(workdir, hub_url=hub.url, token=token, secret=secret, port=serve_port, plan=plan)
    services: list[Service] = []
    store = None
    try:
        serve = Service("serve", ["serve"], env, workdir)
        services.append(serve)
        _wait_for_health(f"http://127.0.0.1:{serve_port}/health", serve)
        services += [Service("watch", ["watch"], env, workdir), Service("worker", ["worker"], env, workdir)]
        log(f"  Hub emulator {hub.url}; serve, watch and worker running (logs in {workdir})")

        uploads_started = time.time()
        real_slots = plan.real_models if real is not None else 0
        uploads = [_upload(hub, index, None) for index in range(real_slots, plan.repos)]
        log(f"  uploaded {len(uploads)} repos in {time.time() - uploads_started:.0f}s")
        asks = _prepare_threads(hub, _plan_asks(plan))
        # The real models last, right before the burst that asks about them first: the mention usually queues
        # their scan before the watcher does, and the result then goes to the asking thread (exactly once).
        uploads = [_upload(hub, index, real.path) for index in range(real_slots)] + uploads  # type: ignore[union-attr]
        if plan.faults:
            for spec in FAULTS:
                hub.add_fault({**spec, "count": FAULT_COUNT})

        def crash_serve() -> None:
            # `serve` dies mid-burst and comes back: the deliveries it misses fail, and the Hub redelivers them
            services[0].stop(signal.SIGKILL)
            services[0] = Service("serve-restarted", ["serve"], env, workdir)

        burst_started = time.time()
        asks = _burst(hub, asks, midway=crash_serve if plan.faults else None)
        report.post_s = time.time() - burst_started
        log(f"  posted {len(asks)} mentions in {report.post_s:.1f}s"
            + (" with faults on; `serve` killed and restarted halfway" if plan.faults else ""))

        store = Store(workdir / "state.db")
        settle_started = time.monotonic()
        while not _settled(store, plan, uploads, hub):
            for service in services:
                service.check_running()
            if time.monotonic() - settle_started > plan.deadline_s:
                report.problems.append(f"the bot had not settled after {plan.deadline_s:.0f}s: "
                                       f"queue {store.queue_counts()}, mentions {store.mention_counts()}")
                break
            time.sleep(SETTLE_POLL_S)
        report.settle_s = time.monotonic() - settle_started
        log(f"  settled {report.settle_s:.0f}s after the burst")
        hub.clear_faults()
        for service in reversed(services):  # the worker first: it finishes its job (warm shutdown)
            service.stop(signal.SIGINT if service.name == "watch" else signal.SIGTERM)
        _verify(report, hub=hub, token=token, store=store, uploads=uploads, asks=asks,
                worker_log=services[-1].log(), uploads_started=uploads_started)  # fmt: skip
    finally:
        for service in services:
            service.stop(signal.SIGKILL, timeout=10)
        if store is not None:
            store.close()
        hub.stop()
    return report


def render(report: LoadReport) -> str:
    data = report.to_json()
    plan = report.plan
    lines = [
        f"repos {plan.repos} (real scans {plan.real_models}), mention events {plan.events}, "
        f"faults {'on' if plan.faults else 'off'}",
        f"repos triaged (skip recorded or job queued): {report.repos_triaged} in {report.triage_s:.0f}s",
        f"mentions answered once: {report.acks}/{report.mentions}; jobs: {report.jobs}; "
        f"results posted: {report.results_posted}",
        f"acknowledgement latency: p50 {data['p50_s']:.2f}s, p95 {data['p95_s']:.2f}s, max {data['max_s']:.2f}s; "
        f"the {data['first_try']} whose webhook got through at the first attempt: p50 {data['first_try_p50_s']:.2f}s, "
        f"p95 {data['first_try_p95_s']:.2f}s",
        f"throughput: {data['throughput_per_s']:.2f} mentions acknowledged per second "
        f"({report.acks} over {report.burst_s:.0f}s; the burst took {report.post_s:.1f}s to post)",
        f"faults fired: {report.faults_fired}; webhook deliveries {report.deliveries}, "
        f"{report.redelivered} redelivered",
        f"retries: {report.mention_retries} mention attempt(s), {report.job_retries} job attempt(s)",
    ]
    lines.append("invariants: all hold" if report.ok else "INVARIANTS FAILED:\n  " + "\n  ".join(report.problems))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.repos} repos, {QUICK.events} events")
    parser.add_argument("--repos", type=int, help=f"new repos (default {FULL.repos})")
    parser.add_argument("--events", type=int, help=f"mention events in the burst (default {FULL.events})")
    parser.add_argument("--real-models", type=int, help=f"repos scanned for real (default {FULL.real_models})")
    parser.add_argument("--no-faults", action="store_true", help="a run without injected faults")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "cache" / "load", help="emptied first")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = LoadPlan(repos=args.repos or base.repos, events=args.events or base.events,
                    real_models=base.real_models if args.real_models is None else args.real_models,
                    faults=not args.no_faults, deadline_s=base.deadline_s)  # fmt: skip
    started = time.monotonic()
    report = run(plan, args.workdir)
    print(render(report))
    print(f"wall time {time.monotonic() - started:.0f}s")
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
