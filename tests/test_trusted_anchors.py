"""Trusted anchors through the real bot: the registry and the weights choose the clean base, never the card.

Every scan here runs the whole pipeline against the Hub emulator over HTTP: plan, fetch pinned to the sha,
fetch the registered candidate bases pinned to theirs, choose by the weights in the token-free child, scan,
record, publish.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hub_fixtures import BOT_TOKEN, BOT_USER

from bot.anchors.registry import AnchorEntry, add_entry, load_registry
from bot.hub.client import HubClient
from bot.scan_record import ScanRecord, Verdict
from bot.service import Bot
from bot.settings import load_settings
from bot.zoo.catalog import model_files

BASE = "clip-audit-zoo/clip-base-s0"
SECOND = "clip-audit-zoo/clip-base-s1"


def _bot(hub, tmp_path: Path, **extra: str) -> Bot:
    overrides = {"endpoint": hub.url, "token": BOT_TOKEN, "bot_name": BOT_USER, "db_path": str(tmp_path / "state.db"),
                 "cache_dir": str(tmp_path / "hub-cache"), "outbox_dir": str(tmp_path / "outbox"),
                 "anchors_file": str(tmp_path / "operator-anchors.json"), "backoff_seconds": "1",
                 "device": "cpu", **extra}  # fmt: skip
    return Bot.from_settings(load_settings(config_file=None, env={}, stored_token=lambda: None, overrides=overrides))


def _upload(hub, repo_id: str, model, *, card_base: str | None = None) -> str:
    files: dict = dict(model_files(model.path))
    card = "---\nlicense: mit\n" + (f"base_model: {card_base}\n" if card_base else "") + "---\n\n# a CLIP fine-tune\n"
    files["README.md"] = card.encode()
    return hub.state.create_repo(repo_id, files=files, tags=["clip"], library_name="transformers",
                                 pipeline_tag="zero-shot-image-classification")  # fmt: skip


def _scan_all(bot: Bot, jobs: dict[str, str]) -> dict[str, ScanRecord]:
    for repo_id, sha in jobs.items():
        bot.store.enqueue(repo_id=repo_id, sha=sha, reason="new-upload")
    bot.worker().work(burst=True)
    records = {}
    for repo_id, sha in jobs.items():
        scan = bot.store.get_scan(repo_id, sha)
        assert scan is not None, f"{repo_id} was not scanned: {bot.store.find_job(repo_id, sha)}"
        records[repo_id] = scan.record()
    return records


def test_a_card_never_launders_a_backdoor_and_a_moved_base_is_not_followed(hub, tmp_path: Path, clip_zoo) -> None:
    base_sha = _upload(hub, BASE, clip_zoo["base"])
    backdoored = clip_zoo["text-on-pair"]
    jobs = {"mallory/names-itself": _upload(hub, "mallory/names-itself", backdoored, card_base="mallory/names-itself")}
    bot = _bot(hub, tmp_path)
    first = _scan_all(bot, jobs)["mallory/names-itself"]
    assert first.verdict is Verdict.BACKDOOR
    choice = first.anchor_choice
    assert choice is not None and (choice.how, choice.anchor, choice.sha, choice.pin) == (
        "registry", BASE, base_sha, "first use")
    assert "mallory/names-itself" in choice.finding and "not a trusted base" in choice.finding
    assert bot.store.anchor_pin(BASE).sha == base_sha

    # The base's repo is rewritten under the same name (here: with the backdoored weights themselves).
    moved = hub.state.push_revision(BASE, files={"model.safetensors": backdoored.path / "model.safetensors"})
    later = {
        "mallory/names-a-twin": _upload(hub, "mallory/names-a-twin", backdoored, card_base="mallory/twin"),
        "mallory/twin": _upload(hub, "mallory/twin", backdoored),
        "mallory/names-a-clean-looking-repo": _upload(hub, "mallory/names-a-clean-looking-repo", backdoored,
                                                      card_base="mallory/clean-looking"),
        "mallory/clean-looking": _upload(hub, "mallory/clean-looking", clip_zoo["benign"]),
    }
    records = _scan_all(bot, {k: v for k, v in later.items() if k != "mallory/clean-looking"})
    for repo_id, record in records.items():
        assert record.verdict is Verdict.BACKDOOR, repo_id
        choice = record.anchor_choice
        assert (choice.anchor, choice.sha, choice.moved_to) == (BASE, base_sha, moved), repo_id
    assert "mallory/twin" in records["mallory/names-a-twin"].anchor_choice.finding
    assert records["mallory/twin"].anchor_choice.finding is None  # its card names nothing
    assert "mallory/clean-looking" in records["mallory/names-a-clean-looking-repo"].anchor_choice.finding

    # The findings are posted: the report says how the anchor was chosen and what the card claimed.
    client = HubClient(endpoint=hub.url, token=BOT_TOKEN)
    [thread] = [d for d in client.discussions("mallory/names-a-twin") if d.author == BOT_USER]
    report = client.discussion_details("mallory/names-a-twin", thread.num).comments[0].content
    assert "How the anchor was chosen" in report and "did not follow the move" in report
    assert "The model card and the weights disagree" in report and "mallory/twin" in report


def test_the_weights_pick_among_registered_bases_and_a_stranger_is_inconclusive(
        hub, tmp_path: Path, clip_zoo, clip_second_base) -> None:  # fmt: skip
    _upload(hub, BASE, clip_zoo["base"])
    second_sha = _upload(hub, SECOND, clip_second_base["base"])
    jobs = {"alice/claims-the-other-base": _upload(hub, "alice/claims-the-other-base", clip_zoo["benign"],
                                                   card_base=SECOND),
            "bob/fine-tune-of-an-unregistered-base": _upload(hub, "bob/fine-tune-of-an-unregistered-base",
                                                             clip_second_base["benign"], card_base=BASE)}

    # Without the second base registered: its fine-tune has no anchor and is never compared with a stranger.
    bot = _bot(hub, tmp_path)
    unregistered = "bob/fine-tune-of-an-unregistered-base"
    stranger = _scan_all(bot, {unregistered: jobs[unregistered]})
    record = stranger[unregistered]
    assert record.verdict is Verdict.INCONCLUSIVE and record.anchor is None
    assert record.anchor_choice.how == "none" and "not registered" in record.anchor_choice.reason
    assert [c.anchor for c in record.anchor_choice.candidates] == [BASE]
    assert record.anchor_choice.candidates[0].distance > 1
    assert BASE in record.anchor_choice.finding and "too far" in record.anchor_choice.finding

    # The operator registers the second base: both are candidates, and the weights pick the right one.
    fingerprint = load_registry().get(BASE).fingerprint
    add_entry(tmp_path / "operator-anchors.json", AnchorEntry(
        repo_id=SECOND, subfolder=None, fingerprint=fingerprint, heads=4, sha=second_sha, note="seed 1", source="test"))
    bot = _bot(hub, tmp_path / "second", anchors_file=str(tmp_path / "operator-anchors.json"))
    claimed = _scan_all(bot, {"alice/claims-the-other-base": jobs["alice/claims-the-other-base"]})
    record = claimed["alice/claims-the-other-base"]
    assert record.verdict is Verdict.CLEAN and record.anchor == BASE
    choice = record.anchor_choice
    assert (choice.anchor, choice.runner_up, choice.pin) == (BASE, SECOND, "first use")
    assert [c.anchor for c in choice.candidates] == [BASE, SECOND]
    assert choice.distance < 0.1 < 1 < choice.runner_up_distance
    assert SECOND in choice.finding and BASE in choice.finding
    assert json.loads((tmp_path / "operator-anchors.json").read_text())["entries"][0]["sha"] == second_sha


def test_anchors_commands_add_list_and_verify_against_the_hub(hub, tmp_path: Path, monkeypatch, capsys) -> None:
    from hub_fixtures import clip_repo_files, transformers_clip_shapes

    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("CLIP_AUDIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLIP_AUDIT_ENDPOINT", hub.url)
    monkeypatch.setenv("CLIP_AUDIT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("CLIP_AUDIT_DB_PATH", str(tmp_path / "state.db"))
    shapes = {**transformers_clip_shapes(), "text_model.encoder.layers.0.mlp.fc1.weight": (32, 8)}
    sha = hub.state.create_repo("acme/our-base", files=clip_repo_files(tmp_path, shapes=shapes), tags=["clip"])

    assert main(["anchors", "add", "acme/our-base", "--note", "our own pretrained base"]) == 0
    added = capsys.readouterr().out
    assert f"registered acme/our-base at {sha}" in added and "clip-audit-anchors.json" in added
    entry = load_registry(tmp_path / "clip-audit-anchors.json").get("acme/our-base")
    assert entry is not None and entry.sha == sha and entry.source.endswith("clip-audit-anchors.json")
    assert (entry.fingerprint.hidden, entry.fingerprint.layers, entry.fingerprint.vocab) == (8, 1, 16)

    assert main(["anchors", "list"]) == 0
    listed = capsys.readouterr().out
    assert "acme/our-base" in listed and f"{sha[:12]} (registry)" in listed and "openai/clip-vit-base-patch32" in listed

    moved = hub.state.push_revision("acme/our-base", files={"notes.txt": b"a change under the same name"})
    assert main(["anchors", "verify"]) == 2  # the public bases are not on this Hub, and ours moved
    verified = capsys.readouterr().out
    [ours] = [line for line in verified.splitlines() if line.startswith("acme/our-base")]
    assert f"moved to {moved[:12]}" in ours and "the pin is kept" in ours
    [openai] = [line for line in verified.splitlines() if line.startswith("openai/clip-vit-base-patch32 ")]
    assert "unreachable" in openai

    assert main(["anchors", "add", "not a repo id"]) == 4
    assert main(["anchors", "add", "acme/our-base", "--subfolder", "text_encoder"]) == 4
    assert "no text tower in text_encoder" in capsys.readouterr().err
