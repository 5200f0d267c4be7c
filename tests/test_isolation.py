"""The job pipeline's isolation of untrusted weights: no credentials, no network, and a time and memory limit
whose breach costs one failed attempt, never the worker."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hub_fixtures import BOT_TOKEN, BOT_USER, CLIP_CONFIG, MERGES, VOCAB, transformers_clip_shapes, write_safetensors

from bot.errors import ScanFailed, ScanOutOfMemoryError, ScanTimeoutError
from bot.settings import GIB, Settings

# The real scanning child with a misbehaving scan in place of the detector (see the module's docstring).
MISBEHAVING_CHILD = [sys.executable, str(Path(__file__).with_name("scan_children.py"))]
TIMEOUT_S = 5.0        # the hanging scan sleeps an hour; the quick one writes a record in milliseconds
MEMORY_LIMIT = 6 * GIB  # above the ~3.3 GB torch and transformers map, far below what the hog asks for
WAIT_LIMIT = 60.0      # a deadline for the machine to catch up, not a timing assertion


def test_scanning_child_gets_no_secrets_and_no_way_out():
    from bot.scanning.isolation import DEAD_PROXY, child_environment

    env = child_environment({"HF_TOKEN": "hf_x", "CLIP_AUDIT_TOKEN": "y", "CLIP_AUDIT_WEBHOOK_SECRET": "z",
                             "HUGGING_FACE_HUB_TOKEN": "w", "MY_GITHUB_TOKEN": "v", "PATH": "/usr/bin",
                             "https_proxy": "http://proxy.corp:3128", "NO_PROXY": "*", "no_proxy": "*"})
    assert env == {"PATH": "/usr/bin", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   **{name: DEAD_PROXY for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                                                    "https_proxy", "all_proxy")}}  # fmt: skip


def test_the_network_guard_refuses_connections_and_lookups_but_not_local_ipc():
    # In a process of its own: the guard is an audit hook, which cannot be taken back.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        script = f"""
import socket, urllib.request
from bot.scanning.child import forbid_network
forbid_network()
for attempt in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=5),
                lambda: socket.getaddrinfo("localhost", 80),
                lambda: urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=5),
                lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", {port}))):
    try:
        attempt()
        print("reached")
    except OSError as error:
        print("refused", "may not use the network" in str(error))
left, right = socket.socketpair()
left.sendall(b"local")
print(right.recv(5).decode())
"""
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT_LIMIT)
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever connected
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:5] == ["refused True"] * 4 + ["local"]


def test_the_anchor_cache_loads_a_base_once_and_keeps_the_last_few(tmp_path):
    from bot.anchors.selection import LocalBase
    from bot.scanning.child import AnchorCache

    loads: list[str] = []

    def load(base):
        loads.append(base.id)
        return object()

    cache = AnchorCache(size=2)
    a, b, c = (LocalBase(id=n, path=tmp_path / n, sha=f"{n}-sha") for n in "abc")
    first = cache(a, load)
    assert cache(a, load) is first and loads == ["a"]
    cache(b, load)
    cache(a, load)           # a is the most recent again
    cache(c, load)           # ... so b is the one dropped
    assert loads == ["a", "b", "c"]
    cache(a, load)
    cache(b, load)
    assert loads == ["a", "b", "c", "b"]
    # another commit at the same path is another base
    cache(LocalBase(id="a", path=tmp_path / "a", sha="newer"), load)
    assert loads[-1] == "a"


def test_a_resident_scanner_keeps_one_token_free_child_and_replaces_it_when_it_dies(clip_zoo, tmp_path, monkeypatch):
    import os
    import signal

    import pytest

    from bot.anchors.selection import LocalBase
    from bot.errors import ClipAuditError
    from bot.scan_record import Verdict
    from bot.scanning.isolation import ResidentScanner
    from bot.settings import Settings
    from bot.zoo.catalog import anchor_name

    monkeypatch.setenv("HF_TOKEN", "hf_secret_the_child_must_not_see")
    base = clip_zoo["base"]
    bases = [LocalBase(id=anchor_name(base.recipe), path=base.path)]
    scanner = ResidentScanner(Settings(device="cpu", token="hf_secret_the_child_must_not_see"))
    try:
        clean = scanner.scan(clip_zoo["benign"].path, subfolder=None, candidates=bases, registered=[bases[0].id],
                             model_name="acme/benign", revision="a" * 40)
        pid = scanner._proc.pid
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"hf_secret_the_child_must_not_see" not in environ
        backdoor = scanner.scan(clip_zoo["text-on-pair"].path, subfolder=None, candidates=bases,
                                registered=[bases[0].id], model_name="mallory/pair", revision="b" * 40)
        assert (clean.verdict, backdoor.verdict) == (Verdict.CLEAN, Verdict.BACKDOOR)
        assert (clean.model, backdoor.model) == ("acme/benign", "mallory/pair")
        assert scanner._proc.pid == pid  # the same child took both scans

        os.kill(pid, signal.SIGKILL)
        scanner._proc.wait()
        empty = tmp_path / "empty"
        empty.mkdir()
        with pytest.raises(ClipAuditError, match="mallory/empty"):
            scanner.scan(empty, subfolder=None, candidates=bases, registered=[], model_name="mallory/empty",
                         revision="c" * 40)
        # a fresh child answered, and a scan that fails as a user's mistake does not end it
        assert scanner._proc is not None and scanner._proc.pid != pid and scanner._proc.poll() is None
    finally:
        scanner.close()
    assert scanner._proc is None


# -- limits, with the real child around a misbehaving scan --------------------------------------------------------


def _settings(**overrides: object) -> Settings:
    values = {"device": "cpu", "scan_timeout_seconds": TIMEOUT_S, "scan_memory_bytes": MEMORY_LIMIT, **overrides}
    return Settings(**values)  # type: ignore[arg-type]


def _scanner(resident: bool, settings: Settings):
    from bot.scanning.isolation import OneShotScanner, ResidentScanner

    kind = ResidentScanner if resident else OneShotScanner
    return kind(settings, command=MISBEHAVING_CHILD)


def _scan(scanner, tmp_path: Path, repo_id: str):
    return scanner.scan(tmp_path, subfolder=None, candidates=[], registered=[], model_name=repo_id,
                        revision="a" * 40)


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")  # a zombie is dead too
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_a_scan_past_its_time_is_killed_with_everything_it_started(tmp_path: Path, monkeypatch) -> None:
    pid_file = tmp_path / "grandchild.pid"
    monkeypatch.setenv("SCAN_CHILDREN_PID_FILE", str(pid_file))
    scanner = _scanner(True, _settings())
    try:
        assert _scan(scanner, tmp_path, "acme/quick").model == "acme/quick"
        child = scanner._proc
        with pytest.raises(ScanTimeoutError, match=r"acme/hang@aaaaaaaaaaaa timed out after 5 s"):
            _scan(scanner, tmp_path, "acme/hang")
        assert scanner._proc is None and child.returncode is not None  # the child was killed and reaped
        grandchild = int(pid_file.read_text())
        _wait_for(lambda: _gone(grandchild), "the hanging scan's own child to be killed with its group")
        assert _scan(scanner, tmp_path, "acme/quick-again").model == "acme/quick-again"  # a fresh child
    finally:
        scanner.close()


def test_a_one_shot_scan_past_its_time_is_killed(tmp_path: Path) -> None:
    # The one-shot limit covers the whole child, start-up included: it times out either way.
    with pytest.raises(ScanTimeoutError, match="timed out after 5 s"):
        _scan(_scanner(False, _settings()), tmp_path, "acme/hang")


@pytest.mark.parametrize("resident", [True, False], ids=["resident-child", "one-shot-child"])
def test_a_scan_past_its_memory_ends_as_out_of_memory(tmp_path: Path, resident: bool) -> None:
    scanner = _scanner(resident, _settings(scan_timeout_seconds=600.0))
    try:
        with pytest.raises(ScanOutOfMemoryError, match="ran out of memory") as failed:
            _scan(scanner, tmp_path, "acme/hog")
        assert str(MEMORY_LIMIT) in str(failed.value) and "can't allocate memory" in str(failed.value)
        assert scanner.close() is None and getattr(scanner, "_proc", None) is None
    finally:
        scanner.close()


def test_the_scanning_child_cannot_dial_out(tmp_path: Path) -> None:
    scanner = _scanner(True, _settings(scan_timeout_seconds=600.0))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        try:
            with pytest.raises(ScanFailed, match="may not use the network"):
                _scan(scanner, tmp_path, f"acme/dial-{listener.getsockname()[1]}")
        finally:
            scanner.close()
        listener.settimeout(0)
        with pytest.raises(BlockingIOError):
            listener.accept()


# -- the worker goes on ------------------------------------------------------------------------------------------


@pytest.fixture
def misbehaving_bot(hub, tmp_path: Path, monkeypatch) -> Iterator:
    from bot.service import Bot
    from bot.settings import load_settings

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # load_settings reads ./clip-audit.toml when there is one
    settings = load_settings(config_file=None, env={}, stored_token=lambda: None, overrides={
        "endpoint": hub.url, "token": BOT_TOKEN, "bot_name": BOT_USER, "db_path": tmp_path / "state.db",
        "cache_dir": tmp_path / "hub-cache", "anchor_cache": tmp_path / "no-anchors", "outbox_dir": tmp_path / "outbox",
        "device": "cpu", "scan_timeout_seconds": TIMEOUT_S, "scan_memory_bytes": MEMORY_LIMIT, "max_attempts": 3,
        "backoff_seconds": "600", "worker_idle_seconds": 0.05,
    })  # fmt: skip
    built = Bot.from_settings(settings)
    yield built
    built.store.close()


def test_a_hanging_or_hogging_scan_is_a_failed_attempt_and_the_worker_goes_on(hub, misbehaving_bot,
                                                                               tmp_path: Path) -> None:
    from bot.scanning.isolation import ResidentScanner
    from bot.state import JobStatus
    from bot.worker import Worker

    bot = misbehaving_bot
    weights = write_safetensors(tmp_path / "model.safetensors", transformers_clip_shapes())
    files = {"config.json": CLIP_CONFIG, "model.safetensors": weights, "vocab.json": VOCAB, "merges.txt": MERGES}
    shas = {}
    for at, repo_id in enumerate(("acme/hang", "acme/hog", "acme/quick"), start=1):
        shas[repo_id] = hub.state.create_repo(repo_id, files=files)
        bot.store.enqueue(repo_id=repo_id, sha=shas[repo_id], reason="new-upload", now=float(at))
    handler = bot.handler()
    handler.scanner = ResidentScanner(bot.settings, command=MISBEHAVING_CHILD)

    assert Worker(bot.store, bot.settings, handler=handler).work(burst=True) == 3

    hang, hog, quick = (bot.store.find_job(repo_id, sha) for repo_id, sha in shas.items())
    assert hang.status is JobStatus.QUEUED and hang.attempts == 1  # a failed attempt, retried after the backoff
    assert hang.last_error.startswith("ScanTimeoutError: scan of acme/hang@")
    assert "timed out after 5 s" in hang.last_error
    assert hog.status is JobStatus.QUEUED and hog.attempts == 1
    assert hog.last_error.startswith("ScanOutOfMemoryError: scan of acme/hog@") and "out of memory" in hog.last_error
    assert quick.status is JobStatus.DONE and bot.store.get_scan("acme/quick", shas["acme/quick"]) is not None
    assert bot.store.get_scan("acme/hang", shas["acme/hang"]) is None
    assert handler.scanner._proc is None  # the worker closed its child when it stopped
