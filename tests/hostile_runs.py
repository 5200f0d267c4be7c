"""How each case of the hostile-input corpus (tests/hostile_corpus.py) is run, as a user, the worker or the Hub
would hit the bot with it, and what counts as a clear outcome.

A clear outcome:
  - a scan ends with an exit code the case allows (never 0 or 1 for garbage), prints no record, and says why in
    one line on stderr ("clip-audit: error: ..."), with no traceback; a well-formed checkpoint's tower loads;
  - the scanning child reports the same reason as a failed attempt, within its time limit;
  - rendered text adds no HTML, link, mention, line, table cell, code span or invisible character to a post, and
    the mention parser reads at most a command with a safe revision out of it; an impossible repo id is refused;
  - every webhook delivery gets the 2xx or 4xx its case allows, never a 5xx or a dropped connection, and
    `clip-audit serve` is still up afterwards, its memory not grown by what it refused;
  - nothing is ever unpickled and no repo code runs (no marker file appears).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import unicodedata
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from hostile_corpus import (
    LOADS,
    MARKERS,
    REPO,
    SECRET,
    CliCase,
    Delivery,
    Files,
    ScanCase,
    TextCase,
    all_cases,
    payload,
)
from hub_fixtures import BOT_TOKEN, BOT_USER

from bot.errors import EXIT_ERROR, EXIT_NOTHING_SCANNABLE

SHA = "0123456789abcdef0123456789abcdef01234567"
CHILD_TIMEOUT_SECONDS = 120  # a scan of any case here is refused in well under a second; a hang is a failure
MEMORY_GROWTH_LIMIT = 64 * 2**20  # what refusing 200 MiB of uploads may add to `serve`'s resident memory
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Outcome:
    family: str
    name: str
    what: str
    route: str                     # how the case was run
    result: str                    # "exit 2", "loads", "HTTP 400", "inert", "refused"
    message: str = ""              # what the user (or the Hub) was told, one line, paths relative to the case
    problems: tuple[str, ...] = ()


# -- building a case on disk ---------------------------------------------------------------------------------


def materialize(files: Files, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)
    return directory


def markers_under(directory: Path) -> list[str]:
    """Marker files (a pickle was loaded, repo code ran) anywhere under `directory`."""
    return sorted(str(p.relative_to(directory)) for marker in MARKERS for p in directory.rglob(marker))


def _case_dir(root: Path, case: ScanCase | CliCase) -> Path:
    return root / case.family / case.name


def _shown(text: str, *paths: Path) -> str:
    """`text` with the scratch folders replaced by short names, so that the recorded table does not depend on them."""
    for path, name in zip(paths, ("<case>", "<corpus>")):
        text = text.replace(str(path), name)
    return text


# -- the command line, in this process ------------------------------------------------------------------------


def cli_in_process(argv: Sequence[str]) -> tuple[int, str, str]:
    """`clip-audit ARGV` through bot.cli.main, as a shell would see it: (exit code, stdout, stderr)."""
    from bot.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def judge_exit(code: int, out: str, err: str, allowed: frozenset[int], *, printed_ok: bool = False) -> list[str]:
    """What is wrong with how a command ended: an exit code the case does not allow, a traceback, more or less
    than one line saying why (argparse's usage lines aside), an unforeseen error, a record printed."""
    problems = []
    if code not in allowed:
        problems.append(f"exit {code}, expected {' or '.join(map(str, sorted(allowed)))}")
    if "Traceback" in err:
        problems.append("a traceback on stderr")
    if code == 0:
        return problems
    said = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    if len(said) != 1:
        problems.append(f"{len(said)} lines on stderr, not one: {said[:3]}")
    elif not re.match(r"clip-audit( [\w-]+)*: error: ", said[0]):
        problems.append(f"not a clear error: {said[0][:160]}")
    if out.strip() and not printed_ok:
        problems.append("printed a result for input it refused")
    return problems


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("usage:", " "))]
    return lines[-1] if lines else ""


# -- scan cases ------------------------------------------------------------------------------------------------


def _scan_argv(target: Path, root: Path) -> list[str]:
    """`scan TARGET` with settings that cannot reach outside the corpus: an empty settings file and anchor cache."""
    settings = root / "empty.toml"
    if not settings.exists():
        settings.write_text("")
        (root / "no-anchors").mkdir(exist_ok=True)
    return ["scan", str(target), "--quiet", "--config", str(settings), "--anchor-cache", str(root / "no-anchors")]


def run_scan_in_process(case: ScanCase, root: Path) -> Outcome:
    """The loader first (what every scan calls); a case it refuses then goes through `clip-audit scan` in this
    process for its exit code and message. A case that loads is never scanned (the detector is not its test)."""
    from bot.encoders.load import load_text_encoder
    from bot.errors import ClipAuditError

    directory = materialize(case.files, _case_dir(root, case))
    target = directory / case.target if case.target else directory
    problems: list[str] = []
    try:
        load_text_encoder(target)
    except ClipAuditError:
        loaded = False
    except Exception as error:  # noqa: BLE001 - recorded: the CLI below shows how a user meets it
        loaded = False
        problems.append(f"the loader raised {type(error).__name__}, not a clip-audit error")
    else:
        loaded = True
    if loaded:
        outcome = Outcome(case.family, case.name, case.what, "loader", "loads")
        if LOADS not in case.expect:
            problems.append("loaded: this input must be refused")
    else:
        code, out, err = cli_in_process(_scan_argv(target, root))
        problems += judge_exit(code, out, err, case.expect)
        outcome = Outcome(case.family, case.name, case.what, "clip-audit scan (in process)", f"exit {code}",
                          _shown(_error_line(err), directory, root))  # fmt: skip
    problems += [f"marker {m}: a pickle was loaded or repo code ran" for m in markers_under(directory.parent)]
    return replace(outcome, problems=tuple(problems))


def run_scan_process(case: ScanCase, root: Path) -> Outcome:
    """`python -m bot.cli scan` (the `clip-audit` entry point) in its own process, with no Hub to reach."""
    directory = materialize(case.files, _case_dir(root, case))
    target = directory / case.target if case.target else directory
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIP_AUDIT_")}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "bot.cli", *_scan_argv(target, root)], capture_output=True,
                          text=True, env=env, cwd=root, timeout=600, check=False)  # fmt: skip
    problems = judge_exit(done.returncode, done.stdout, done.stderr, case.expect)
    problems += [f"marker {m}: a pickle was loaded or repo code ran" for m in markers_under(directory.parent)]
    return Outcome(case.family, case.name, case.what, "clip-audit scan (own process)", f"exit {done.returncode}",
                   _shown(_error_line(done.stderr), directory, root), tuple(problems))  # fmt: skip


def run_scan_processes(cases: Sequence[ScanCase], root: Path) -> list[Outcome]:
    """run_scan_process for each case, two at a time (each process spends seconds importing torch)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda case: run_scan_process(case, root), cases))


@contextlib.contextmanager
def scanning_child() -> Iterator[object]:
    """The worker's resident scanning child (bot/scanning/isolation.py): no token, no network, a time limit."""
    from bot.scanning.isolation import ResidentScanner
    from bot.settings import load_settings

    settings = load_settings(config_file=None, env={}, overrides={
        "device": "cpu", "scan_timeout_seconds": str(CHILD_TIMEOUT_SECONDS)})  # fmt: skip
    scanner = ResidentScanner(settings)
    try:
        yield scanner
    finally:
        scanner.close()


def run_scan_child(case: ScanCase, root: Path, scanner) -> Outcome:
    """One scan in the scanning child, as the worker asks for it: a failed attempt must carry the reason."""
    from bot.errors import NothingScannableError, ScanFailed, ScanOutOfMemoryError, ScanTimeoutError

    directory = materialize(case.files, _case_dir(root, case))
    target = directory / case.target if case.target else directory
    problems: list[str] = []
    try:
        scanner.scan(target, subfolder=None, candidates=[], registered=[], model_name=f"hostile/{case.name}",
                     revision=SHA)  # fmt: skip
    except (ScanTimeoutError, ScanOutOfMemoryError) as error:
        result, message = type(error).__name__, str(error)
        problems.append(f"the child did not refuse it in time or memory: {result}")
    except NothingScannableError as error:
        result, message = "nothing scannable", str(error)
        if EXIT_NOTHING_SCANNABLE not in case.expect:
            problems.append("reported as nothing scannable")
    except ScanFailed as error:
        result, message = "failed attempt", str(error)
        if EXIT_ERROR not in case.expect:
            problems.append("reported as a failed scan")
    else:
        result, message = "scanned", ""
        problems.append("scanned: this input must be refused")
    if message and ("scan failed: " not in message or "Traceback" in message):
        problems.append("the child's reason is missing or is a traceback")
    problems += [f"marker {m}: a pickle was loaded or repo code ran" for m in markers_under(directory.parent)]
    code = re.search(r"\(exit (\d+)\)", message)
    return Outcome(case.family, case.name, case.what, "scanning child (worker)",
                   f"{result} (child exit {code.group(1)})" if code else result,
                   _shown(message.partition("scan failed: ")[2] or message, directory, root), tuple(problems))


# -- text through the renderer and the mention parser -----------------------------------------------------------

_UNESCAPED_LINK = re.compile(r"(?<!\\)\]\(")
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
_SAFE_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,99}$")


def markup_census(markdown: str) -> dict[str, int]:
    """What a post's Markdown could do to the Hub page, counted: lines, HTML, mentions, links, autolinks, table
    pipes, code spans, headings and invisible characters."""
    return {
        "lines": markdown.count("\n"),
        "html": markdown.count("<"),
        "mentions": markdown.count("@"),
        "links": len(_UNESCAPED_LINK.findall(markdown)),
        "urls": markdown.count("://") + markdown.lower().count("www."),
        "pipes": markdown.count("|"),
        "code": markdown.count("`"),
        "headings": len(re.findall(r"(?m)^\s*#", markdown)),
        "invisible": sum(1 for char in markdown if char != "\n" and unicodedata.category(char) in _INVISIBLE),
    }


def _renders(text: str) -> dict[str, str]:
    """Every post that prints owner- or commenter-controlled text, with `text` in each such place."""
    from records import make_record

    from bot.publish.markdown_escape import escape_markdown
    from bot.publish.render import render_ack, render_help, render_report, render_revision_comment

    base = make_record("backdoor", model=REPO, revision=SHA)
    record = replace(
        base, notes=[text], target_captions=[replace(c, caption=text) for c in base.target_captions],
        triggers=[replace(t, token=text) for t in base.triggers],
        anchor_choice=replace(base.anchor_choice, card_claim=text, finding=text))  # fmt: skip
    links = {"repo_id": REPO, "bot_name": BOT_USER}
    return {
        "escape_markdown": escape_markdown(text),
        "ack scan-not-possible": render_ack("scan-not-possible", requester=text, sha=SHA, reason=text, **links),
        "ack revision-not-found": render_ack("revision-not-found", requester=text, revision=text, **links),
        "help": render_help(requester=text, **links),
        "report": render_report(record, sha=SHA, report_base_url=None, **links),
        "revision comment": render_revision_comment(record, sha=SHA, report_base_url=None, **links),
    }


_BASELINE: dict[str, dict[str, int]] = {}


def run_text_case(case: TextCase) -> Outcome:
    from bot.errors import WebhookError
    from bot.hub.ids import is_safe_repo_id
    from bot.mentions.commands import parse_command
    from bot.mentions.webhook import mention_from_payload
    from bot.publish.render import render_ack

    problems: list[str] = []
    if case.repo_id:
        if is_safe_repo_id(case.text):
            problems.append("accepted as a Hub repo id")
        try:
            render_ack("opted-out", repo_id=case.text, bot_name=BOT_USER, requester="eve")
            problems.append("the renderer printed it as a repo id")
        except ValueError:
            pass
        try:
            mention_from_payload(payload("c-1", **{"repo.name": case.text}), bot_user_id=None)
            problems.append("a webhook payload naming it was accepted")
        except WebhookError:
            pass
        return Outcome("text", case.name, case.what, "renderer, webhook parser", "refused",
                       "not a Hub repo id", tuple(problems))  # fmt: skip
    if not _BASELINE:
        _BASELINE.update({name: markup_census(text) for name, text in _renders("plain words").items()})
    longest = 0
    for where, rendered in _renders(case.text).items():
        census, baseline = markup_census(rendered), _BASELINE[where]
        problems += [f"{where}: {key} {baseline[key]} -> {census[key]}" for key in census
                     if census[key] != baseline[key]]  # fmt: skip
        longest = max(longest, len(rendered))
        if len(rendered) > 20_000:
            problems.append(f"{where}: {len(rendered):,} characters, the text was not cut")
    commands = [parse_command(text, bot_name=BOT_USER) for text in (case.text, f"@{BOT_USER} scan {case.text}")]
    for command in commands:
        if command is not None and command.revision is not None and not _SAFE_REVISION.match(command.revision):
            problems.append(f"the parser read an unsafe revision {command.revision!r:.60}")
    parsed = ", ".join("none" if c is None else c.kind + (f" {c.revision}" if c.revision else "") for c in commands)
    return Outcome("text", case.name, case.what, "renderer, mention parser", "inert",
                   f"posts stay as they are (longest {longest:,} chars); parsed as: {parsed[:80]}", tuple(problems))


# -- webhooks against `clip-audit serve` -----------------------------------------------------------------------


@dataclass
class Serve:
    process: subprocess.Popen
    port: int
    log: Path
    db: Path
    accepted: list[str] = field(default_factory=list)  # names of the deliveries answered 202

    def alive(self) -> bool:
        if self.process.poll() is not None:
            return False
        try:
            with _NO_PROXY.open(f"http://127.0.0.1:{self.port}/health", timeout=10) as response:
                return response.status == 200
        except OSError:
            return False

    def resident_bytes(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")


@contextlib.contextmanager
def serving(hub_url: str, workdir: Path) -> Iterator[Serve]:
    """`clip-audit serve` in its own process, its webhook secret SECRET, its Hub the emulator at `hub_url`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIP_AUDIT_", "HF_"))}
    env.update({"HF_HUB_DISABLE_XET": "1", "HF_HOME": str(workdir / "hf-home"), "OMP_NUM_THREADS": "1",
                "CLIP_AUDIT_ENDPOINT": hub_url, "CLIP_AUDIT_TOKEN": BOT_TOKEN, "CLIP_AUDIT_BOT_NAME": BOT_USER,
                "CLIP_AUDIT_DB_PATH": str(workdir / "state.db"), "CLIP_AUDIT_CACHE_DIR": str(workdir / "hub-cache"),
                "CLIP_AUDIT_WEBHOOK_SECRET": SECRET})  # fmt: skip
    log = workdir / "serve.log"
    with log.open("w") as sink:
        command = [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(command, env=env, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT)
    serve = Serve(process, port, log, workdir / "state.db")
    try:
        deadline = time.monotonic() + 300  # imports take a while on a busy machine
        while not serve.alive():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`clip-audit serve` did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield serve
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def exchange(port: int, delivery: Delivery) -> tuple[int | None, str]:
    """Sends one delivery over a fresh connection; (status, body) of the answer, or (None, why there was none).

    The body is sent piece by piece; once the server has answered (it may refuse before the body ends), nothing
    more is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(delivery.head)
        for piece in _pieces(delivery):
            if select.select([sock], [], [], 0)[0]:  # answered (or closed) before the body ended
                break
            try:
                sock.sendall(piece)
            except OSError:  # the server refused and closed while the body was still coming
                break
        answer = b""
        try:
            while len(answer) < 65536:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except OSError as error:
            if not answer:
                return None, f"no answer ({type(error).__name__})"
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    if match is None:
        return None, f"no HTTP answer ({answer[:60]!r})"
    return int(match.group(1)), answer.partition(b"\r\n\r\n")[2][:200].decode("utf-8", "replace")


def _pieces(delivery: Delivery) -> Iterator[bytes]:
    for _ in range(delivery.repeat):
        yield from delivery.body
    if delivery.end:
        yield delivery.end


def run_delivery(serve: Serve, delivery: Delivery) -> Outcome:
    status, body = exchange(serve.port, delivery)
    problems = []
    if status is None:
        problems.append(body)
    elif status >= 500:
        problems.append(f"HTTP {status}: a server error")
    elif status not in delivery.allowed:
        problems.append(f"HTTP {status}, expected {' or '.join(map(str, sorted(delivery.allowed)))}")
    if status == 202:
        serve.accepted.append(delivery.name)
    return Outcome("webhook", delivery.name, delivery.what, "clip-audit serve over HTTP",
                   "no answer" if status is None else f"HTTP {status}", " ".join(body.split())[:120], tuple(problems))


def run_deliveries(serve: Serve, cases: Sequence[Delivery]) -> list[Outcome]:
    """Every delivery in order; the oversized ones are measured: refusing them must not grow the server."""
    outcomes = []
    for delivery in cases:
        before = serve.resident_bytes()
        outcome = run_delivery(serve, delivery)
        grown = serve.resident_bytes() - before
        if delivery.repeat > 1:
            outcome = replace(outcome, message=f"{outcome.message} (resident memory {grown / 2**20:+.1f} MiB)")
            if grown > MEMORY_GROWTH_LIMIT:
                outcome = replace(outcome, problems=(*outcome.problems, f"serve grew by {grown / 2**20:.0f} MiB"))
        if not serve.alive():
            outcome = replace(outcome, problems=(*outcome.problems, "`clip-audit serve` is down after it"))
        outcomes.append(outcome)
    return outcomes


def stored_events(db: Path) -> list[str]:
    from bot.state.store import Store

    with Store(db) as store:
        return [event.event_id for event in store.mention_events()]


# -- commands against broken state -----------------------------------------------------------------------------


def run_cli_case(case: CliCase, root: Path) -> Outcome:
    directory = materialize(case.files, _case_dir(root, case))
    argv = [arg.replace("{dir}", str(directory)) for arg in case.argv]
    code, out, err = cli_in_process(argv)
    problems = judge_exit(code, out, err, case.allowed, printed_ok=True)
    return Outcome("cli", case.name, case.what, "clip-audit (in process)", f"exit {code}",
                   _shown(_error_line(err), directory, root), tuple(problems))  # fmt: skip


# -- everything, and the summary ---------------------------------------------------------------------------------


def run_everything() -> list[Outcome]:
    """Every case, the way tests/test_hostile_inputs.py runs them (for the report: no pytest needed)."""
    import logging
    import tempfile

    from hub_fixtures import start_hub

    logging.basicConfig(level=logging.WARNING)  # before bot.cli.main does: log lines go to this stderr
    families = all_cases()
    scans = [case for family in ("safetensors", "config", "repo") for case in families[family]]
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="hostile-corpus-") as tmp:
        root = Path(tmp)
        outcomes += [run_scan_in_process(case, root / "in-process") for case in scans]
        outcomes += run_scan_processes([case for case in scans if "cli" in case.processes], root / "process")
        with scanning_child() as scanner:
            outcomes += [run_scan_child(case, root / "child", scanner) for case in scans if "child" in case.processes]
        outcomes += [run_text_case(case) for case in families["text"]]
        outcomes += [run_cli_case(case, root / "cli") for case in families["cli"]]
        hub = start_hub(root / "hub-data")
        try:
            with serving(hub.url, root / "serve") as serve:
                outcomes += run_deliveries(serve, families["webhook"])
        finally:
            hub.stop()
    return outcomes


def write_table(outcomes: Sequence[Outcome], path: Path) -> Path:
    """Every outcome, one tab-separated line each (family, case, route, result, problems, message)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["family\tcase\troute\tresult\tproblems\tmessage"]
    lines += [f"{o.family}\t{o.name}\t{o.route}\t{o.result}\t{'; '.join(o.problems) or 'none'}\t{o.message}"
              for o in outcomes]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_report(outcomes: Sequence[Outcome], path: Path) -> None:
    """docs/hostile-inputs.md: families, counts and outcomes, then every case."""
    from bot.publish.markdown_escape import escape_markdown

    families: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        families.setdefault(outcome.family, []).append(outcome)
    cases = {(o.family, o.name) for o in outcomes}
    lines = [
        "# Hostile inputs",
        "",
        f"{len(cases)} hostile inputs, generated by `tests/hostile_corpus.py` into a scratch folder (nothing binary "
        "is committed), each run as a user, the worker or the Hub would hit the bot with it "
        f"({len(outcomes)} runs: a subset also goes through `clip-audit scan` in its own process and through the "
        "worker's scanning child). `tests/test_hostile_inputs.py` runs them all and fails on any case without a "
        "clear outcome; this page is regenerated with",
        "",
        "```bash",
        ".venv/bin/python tests/hostile_corpus.py --report docs/hostile-inputs.md",
        "```",
        "",
        "A clear outcome (tests/hostile_runs.py): a scan of garbage exits 2 (error) or 3 (nothing scannable), never "
        "0 or 1, with one line on stderr and no traceback; a well-formed checkpoint loads; the scanning child "
        "reports the reason as a failed attempt within its time limit; rendered text adds no HTML, link, mention, "
        "line, cell or invisible character to a post; a webhook delivery gets a 2xx or 4xx, never a 5xx, and "
        "`clip-audit serve` stays up with its memory bounded; no pickle is ever loaded and no repo code runs "
        "(marker files that either would create never appear).",
        "",
        "| family | cases | runs | outcomes | problems |",
        "|---|---|---|---|---|",
    ]
    for family, items in families.items():
        results: dict[str, int] = {}
        for outcome in items:
            results[f"{outcome.result} ({outcome.route})"] = results.get(f"{outcome.result} ({outcome.route})", 0) + 1
        summary = "; ".join(f"{result}: {count}" for result, count in sorted(results.items()))
        names = {o.name for o in items}
        lines.append(f"| {family} | {len(names)} | {len(items)} | {summary} | "
                     f"{sum(1 for o in items if o.problems)} |")
    for family, items in families.items():
        lines += ["", f"## {family}", "", "| case | input | route | outcome | what was said |", "|---|---|---|---|---|"]
        for o in items:
            said = escape_markdown(o.message, max_length=140) if o.message else ""
            problems = f" **problem: {escape_markdown('; '.join(o.problems))}**" if o.problems else ""
            lines.append(f"| {o.name} | {escape_markdown(o.what, max_length=120)} | {o.route} | {o.result}"
                         f"{problems} | {said} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

