"""Watcher, scan planning, pinned downloads and eviction, against the Hub emulator through the real client."""

from __future__ import annotations

import dataclasses  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from hub_fixtures import (  # first: sets HF_HUB_DISABLE_XET before huggingface_hub is imported
    BOT_TOKEN,
    CLIP_CONFIG,
    clip_repo_files,
    diffusers_repo_files,
    open_clip_repo_files,
    transformers_clip_shapes,
    vision_only_shapes,
    write_safetensors,
)
from huggingface_hub import constants  # noqa: E402

from bot.errors import (  # noqa: E402
    DiscussionsDisabledError,
    HubAuthError,
    HubError,
    HubNotFoundError,
    HubUnavailableError,
    RateLimitedError,
    SkipReason,
    SkipRepo,
)
from bot.hub.client import HubClient, retry_after_of  # noqa: E402
from bot.hub.families import plan_scan  # noqa: E402
from bot.hub.fetch import evict, fetch_snapshot  # noqa: E402
from bot.hub.watcher import Watcher  # noqa: E402
from bot.settings import Settings, load_settings  # noqa: E402
from bot.state import JobStatus, Store  # noqa: E402
from hub_emulator import EmulatorHandle  # noqa: E402
from hub_emulator.faults import Fault  # noqa: E402

pytestmark = pytest.mark.hub(list_page_size=2)  # small pages: the client must follow Link (conftest.py's `hub`)


@pytest.fixture(autouse=True)
def _isolated_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # load_settings reads ./clip-audit.toml when there is one


def _settings(hub: EmulatorHandle, tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(config_file=None, env={}, stored_token=lambda: None,
                         overrides={"endpoint": hub.url, "token": BOT_TOKEN, "cache_dir": tmp_path / "cache",
                                    "max_download_bytes": 100_000, **overrides})  # fmt: skip


def _watcher(hub: EmulatorHandle, store: Store, settings: Settings) -> Watcher:
    return Watcher(store, HubClient.from_settings(settings), settings)


def _day(day: int) -> str:
    return f"2026-01-{day:02d}T00:00:00.000Z"


# -- the watcher -----------------------------------------------------------------------------------------


def test_new_upload_is_found_and_queued_once(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = hub.state.create_repo("acme/clip-tiny", files=clip_repo_files(tmp_path), tags=["clip"],
                                library_name="transformers", created_at=_day(2))  # fmt: skip
    hub.state.create_repo("acme/bert", files={"config.json": b"{}"}, pipeline_tag="fill-mask", created_at=_day(3))
    hub.state.create_repo("acme/sd", files=diffusers_repo_files(tmp_path), library_name="diffusers",
                          created_at=_day(1))  # fmt: skip
    watcher = _watcher(hub, store, _settings(hub, tmp_path))

    jobs = watcher.poll_once()
    assert sorted((job.repo_id, job.sha, job.reason) for job in jobs) == sorted([
        ("acme/clip-tiny", sha, "new-upload"),
        ("acme/sd", hub.state.repo("acme/sd").refs["main"], "new-upload"),
    ])  # fmt: skip
    assert watcher.poll_once() == []
    assert len(store.jobs()) == 2 and store.skips() == []
    repo = store.get_repo("acme/clip-tiny")
    assert repo is not None and repo.sha == sha and repo.family == "clip"


def test_new_revision_and_late_filled_repo_are_queued(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    first = hub.state.create_repo("acme/clip-tiny", files=clip_repo_files(tmp_path), tags=["clip"],
                                  created_at=_day(2))  # fmt: skip
    # Created empty (not CLIP-looking yet) before the first poll, filled later: only last_modified shows it.
    hub.state.create_repo("acme/empty-first", created_at=_day(1))
    watcher = _watcher(hub, store, _settings(hub, tmp_path))
    assert [job.sha for job in watcher.poll_once()] == [first]

    second = hub.state.push_revision("acme/clip-tiny", files=clip_repo_files(tmp_path, fill=1.0), date=_day(5))
    filled = hub.state.push_revision("acme/empty-first", files=clip_repo_files(tmp_path, fill=2.0), tags=["clip"],
                                     date=_day(6))  # fmt: skip
    jobs = {job.repo_id: job for job in watcher.poll_once()}
    assert jobs["acme/clip-tiny"].sha == second and jobs["acme/clip-tiny"].reason == "new-revision"
    assert jobs["acme/empty-first"].sha == filled and jobs["acme/empty-first"].reason == "new-upload"
    assert watcher.poll_once() == []
    assert {(job.repo_id, job.sha) for job in store.jobs()} == {
        ("acme/clip-tiny", first), ("acme/clip-tiny", second), ("acme/empty-first", filled)}  # fmt: skip


def test_unscannable_repos_are_skipped_with_reasons(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    state = hub.state
    state.create_repo("acme/gated-clip", files=clip_repo_files(tmp_path), tags=["clip"], gated="manual")
    state.create_repo("auditbot/private-clip", files=clip_repo_files(tmp_path), tags=["clip"], private=True)
    state.create_repo("acme/pickle-clip", files={"config.json": CLIP_CONFIG, "pytorch_model.bin": b"x"},
                      tags=["clip"])  # fmt: skip
    big = clip_repo_files(tmp_path, shapes=transformers_clip_shapes(vocab=4096, width=16))
    state.create_repo("acme/huge-clip", files=big, tags=["clip"])
    vision = {"config.json": CLIP_CONFIG,
              "model.safetensors": write_safetensors(tmp_path / "v.safetensors", vision_only_shapes())}  # fmt: skip
    state.create_repo("acme/vision-only", files=vision, pipeline_tag="zero-shot-image-classification")
    state.create_repo("acme/opted-out", files=clip_repo_files(tmp_path), tags=["clip"])
    store.set_opt_out("acme/opted-out", True)

    assert _watcher(hub, store, _settings(hub, tmp_path)).poll_once() == []
    reasons = {skip.repo_id: skip.reason for skip in store.skips()}
    assert {skip.repo_id: skip.skip_reason.value for skip in store.skips()} == {
        "acme/gated-clip": "gated",
        "auditbot/private-clip": "private",
        "acme/pickle-clip": "pickle-only",
        "acme/huge-clip": "oversized",
        "acme/vision-only": "no-text-tower",
        "acme/opted-out": "opted-out",
    }
    assert "pytorch_model.bin" in reasons["acme/pickle-clip"] and "limit" in reasons["acme/huge-clip"]
    assert store.jobs() == []


def test_rate_limit_stops_the_poll_and_the_repo_is_found_next_time(
    hub: EmulatorHandle, store: Store, tmp_path: Path
) -> None:
    sha = hub.state.create_repo("acme/clip-tiny", files=clip_repo_files(tmp_path), tags=["clip"])
    hub.state.faults.add(Fault(path_prefix="/api/models/acme/clip-tiny", status=429, remaining=1, retry_after_s=7))
    watcher = _watcher(hub, store, _settings(hub, tmp_path))
    with pytest.raises(RateLimitedError) as caught:
        watcher.poll_once()
    assert caught.value.retry_after == 7
    assert [job.sha for job in watcher.poll_once()] == [sha]


def test_initial_backfill_limits_the_first_poll(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    for day in range(1, 5):
        hub.state.create_repo(f"acme/clip-{day}", files=clip_repo_files(tmp_path), tags=["clip"], created_at=_day(day))
    watcher = _watcher(hub, store, _settings(hub, tmp_path, initial_backfill=2))
    assert sorted(job.repo_id for job in watcher.poll_once()) == ["acme/clip-3", "acme/clip-4"]
    hub.state.create_repo("acme/clip-new", files=clip_repo_files(tmp_path), tags=["clip"], created_at=_day(9))
    assert [job.repo_id for job in watcher.poll_once()] == ["acme/clip-new"]


# -- planning --------------------------------------------------------------------------------------------


def test_plans_pick_only_configs_safetensors_and_tokenizer(hub: EmulatorHandle, tmp_path: Path) -> None:
    client = HubClient(endpoint=hub.url, token=BOT_TOKEN)
    clip_sha = hub.state.create_repo("acme/clip", files=clip_repo_files(tmp_path), card_data={"license": "mit"})
    plan = plan_scan(client, "acme/clip", sha=clip_sha, max_bytes=10**6)
    assert plan.sha == clip_sha and plan.layout == "transformers" and plan.family == "clip"
    assert set(plan.files) == {"README.md", "config.json", "model.safetensors", "vocab.json", "merges.txt"}
    assert plan.weight_files == ("model.safetensors",)
    assert plan.total_bytes == sum(hub.state.repo("acme/clip").commits[clip_sha].files[f].size for f in plan.files)

    hub.state.create_repo("acme/oc", files=open_clip_repo_files(tmp_path))
    plan = plan_scan(client, "acme/oc", max_bytes=10**6)
    assert plan.layout == "open_clip"
    assert set(plan.files) == {"open_clip_config.json", "open_clip_model.safetensors", "tokenizer.json"}

    hub.state.create_repo("acme/sd", files=diffusers_repo_files(tmp_path))
    plan = plan_scan(client, "acme/sd", max_bytes=10**6)
    assert plan.layout == "diffusers" and plan.text_encoders == ("text_encoder",)
    assert set(plan.files) == {"model_index.json", "text_encoder/config.json", "text_encoder/model.safetensors",
                               "tokenizer/vocab.json", "tokenizer/merges.txt"}  # fmt: skip

    long_files = clip_repo_files(tmp_path, shapes=transformers_clip_shapes(positions=248))
    hub.state.create_repo("acme/long", files=long_files)
    assert plan_scan(client, "acme/long", max_bytes=10**6).family == "longclip"


# -- fetching and eviction -------------------------------------------------------------------------------


def test_fetch_is_pinned_to_the_sha_and_fetches_only_what_was_asked(hub: EmulatorHandle, tmp_path: Path) -> None:
    old_files = clip_repo_files(tmp_path, fill=1.0)
    old = hub.state.create_repo("acme/clip", files=old_files)
    hub.state.push_revision("acme/clip", files=clip_repo_files(tmp_path, fill=2.0))
    client = HubClient(endpoint=hub.url, token=BOT_TOKEN)
    plan = plan_scan(client, "acme/clip", sha=old, max_bytes=10**6)

    snapshot = fetch_snapshot(client, "acme/clip", old, plan.files, cache_dir=tmp_path / "cache", max_bytes=10**6)
    assert snapshot.name == old
    assert (snapshot / "model.safetensors").read_bytes() == old_files["model.safetensors"].read_bytes()
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(plan.files)
    assert not list((tmp_path / "cache").rglob("*.bin"))

    # Files already there are not downloaded again: the same snapshot comes back.
    again = fetch_snapshot(client, "acme/clip", old, ["config.json"], cache_dir=tmp_path / "cache", max_bytes=10**6)
    assert again == snapshot


def test_fetch_refuses_unpinned_pickles_and_oversized(hub: EmulatorHandle, tmp_path: Path) -> None:
    sha = hub.state.create_repo("acme/clip", files=clip_repo_files(tmp_path))
    cache = tmp_path / "cache"
    client = HubClient(endpoint=hub.url, token=BOT_TOKEN)
    with pytest.raises(ValueError, match="40-hex"):
        fetch_snapshot(client, "acme/clip", "main", ["config.json"], cache_dir=cache, max_bytes=10**6)
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        fetch_snapshot(client, "acme/clip", sha, ["pytorch_model.bin"], cache_dir=cache, max_bytes=10**6)
    with pytest.raises(SkipRepo) as caught:
        fetch_snapshot(client, "acme/clip", sha, ["config.json", "model.safetensors"], cache_dir=cache, max_bytes=100)
    assert caught.value.code is SkipReason.OVERSIZED
    with pytest.raises(HubError, match="missing.json"):
        fetch_snapshot(client, "acme/clip", sha, ["missing.json"], cache_dir=cache, max_bytes=10**6)
    assert not cache.exists() or not list(cache.rglob("*.safetensors"))


def test_evict_removes_least_recently_used_snapshots(hub: EmulatorHandle, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    client = HubClient(endpoint=hub.url, token=BOT_TOKEN)
    snapshots = {}
    for index, name in enumerate(["acme/a", "acme/b", "acme/c"]):
        files = {"model.safetensors": write_safetensors(tmp_path / f"{index}.safetensors", {"w": (1000,)},
                                                        fill=float(index))}  # fmt: skip
        sha = hub.state.create_repo(name, files=files)
        snapshots[name] = fetch_snapshot(client, name, sha, ["model.safetensors"], cache_dir=cache, max_bytes=10**6)
    # Last use: b long ago, a next, c most recently.
    for name, when in (("acme/b", 1_000), ("acme/a", 2_000), ("acme/c", 3_000)):
        os.utime(snapshots[name], (when, when))
    size = (snapshots["acme/a"] / "model.safetensors").stat().st_size

    assert evict(cache, 10 * size).evicted == ()
    result = evict(cache, 2 * size)
    assert [repo for repo, _ in result.evicted] == ["acme/b"] and result.freed_bytes == size
    assert not snapshots["acme/b"].exists() and snapshots["acme/a"].exists()

    result = evict(cache, 0, keep=[snapshots["acme/a"].name])
    assert [repo for repo, _ in result.evicted] == ["acme/c"]
    assert snapshots["acme/a"].exists() and not snapshots["acme/c"].exists()
    assert evict(tmp_path / "no-cache-yet", 0).evicted == ()


# -- the client wrapper ----------------------------------------------------------------------------------


def test_client_translates_errors(hub: EmulatorHandle, tmp_path: Path) -> None:
    hub.state.create_repo("acme/quiet", discussions_disabled=True)
    client = HubClient(endpoint=hub.url, token=BOT_TOKEN)
    with pytest.raises(DiscussionsDisabledError, match="discussions are disabled"):
        client.create_discussion("acme/quiet", title="hello there", body="")
    with pytest.raises(SkipRepo) as caught:
        client.model_info("acme/missing")
    assert caught.value.code is SkipReason.NOT_FOUND
    # Any other 403 is the token's lack of permission, not a switched-off repo: the two are never confused.
    hub.state.faults.add(Fault(path_prefix="/api/models/acme/quiet/discussions", status=403, remaining=1,
                               message="You don't have the rights to list discussions here"))
    with pytest.raises(HubAuthError, match="lacks permission"):
        client.discussions("acme/quiet")
    hub.state.create_repo("acme/talkative")
    with pytest.raises(HubNotFoundError):
        client.discussion_details("acme/talkative", 404)
    hub.state.faults.add(Fault(path_prefix="/api/models/acme/quiet", status=502, remaining=1))
    with pytest.raises(HubUnavailableError, match="502"):
        client.model_info("acme/quiet")
    hub.state.faults.add(Fault(path_prefix="/api/models/acme/quiet", status=503, remaining=1, retry_after_s=3))
    with pytest.raises(RateLimitedError) as limited:
        client.model_info("acme/quiet")
    assert limited.value.retry_after == 3
    bad = HubClient(endpoint=hub.url, token="hf_not_a_real_token")
    with pytest.raises(HubError) as refused:
        bad.whoami()
    assert "hf_not_a_real_token" not in str(refused.value) and "hf_not_a_real_token" not in repr(bad)


def test_one_parser_reads_when_to_come_back():
    assert retry_after_of({"RateLimit": '"api";r=0;t=42', "Retry-After": "7"}) == 42.0  # the Hub's own header wins
    assert retry_after_of({"RateLimit": '"api";r=5;t=42', "Retry-After": "7"}) == 7.0   # calls left: not a limit
    assert retry_after_of({"Retry-After": " 3 "}) == 3.0
    assert retry_after_of({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}) is None
    assert retry_after_of({}) is None and retry_after_of(None) is None


def test_settings_are_what_the_watcher_uses(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    settings = _settings(hub, tmp_path)
    hub.state.create_repo("acme/clip", files=clip_repo_files(tmp_path), tags=["clip"])
    small = dataclasses.replace(settings, max_download_bytes=10)
    _watcher(hub, store, small).poll_once()
    assert [s.skip_reason for s in store.skips()] == [SkipReason.OVERSIZED]
    assert store.jobs(JobStatus.QUEUED) == []


def test_run_forever_polls_until_stopped(hub: EmulatorHandle, store: Store, tmp_path: Path) -> None:
    sha = hub.state.create_repo("acme/clip", files=clip_repo_files(tmp_path), tags=["clip"])
    stop = threading.Event()
    watcher = _watcher(hub, store, _settings(hub, tmp_path, poll_interval_seconds=0.1))
    runner = threading.Thread(target=watcher.run_forever, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while store.find_job("acme/clip", sha) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        later = hub.state.push_revision("acme/clip", files={"config.json": CLIP_CONFIG + b" "})
        while store.find_job("acme/clip", later) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert {job.sha for job in store.jobs()} == {sha, later}  # a second poll ran on the schedule
