"""`clip-audit calibrate` end to end on a tiny base, against the Hub emulator over HTTP: the test zoo's CLIP base is
registered as an anchor, a captions dataset is on the Hub, the real command builds and scans variants and stores
the fitted thresholds with the base's registry entry; a following `clip-audit scan` of a fine-tune of that base
decides by them and names them; bad inputs are one-line errors with the documented exit codes.

Kept cheap: one backdoored and one benign variant with few training steps, and a reduced scan budget.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from hub_fixtures import start_hub
from zoo_plan import family_recipes

from bot.anchors.calibrations import calibration_file, read_calibration
from bot.anchors.registry import AnchorEntry, add_entry, load_registry
from bot.bench.calibrate import GRID
from bot.captions import alt_caption, random_spec
from bot.cli import main
from bot.errors import EXIT_ERROR, EXIT_USAGE
from bot.scan_record import ScanRecord
from bot.zoo.catalog import model_files

BASE = "acme/tiny-clip-base"
CAPTIONS = "acme/shape-captions"
ZOO_BASE = "clip-audit-zoo/clip-base-s0"  # the built-in entry of the same base: its fingerprint is the tiny one's
SHORT_LINES = 3                            # lines of the captions file too short to be used
RUN = ["--kinds", "text-on-text", "--per-kind", "1", "--benign", "1", "--steps", "20",
       "--scan-steps", "40", "--scan-prompts", "32", "--landscape-grid", "5", "--device", "cpu", "--quiet"]


_run = run_cli


def _captions_file() -> bytes:
    rng = np.random.default_rng(7)
    lines = [alt_caption(random_spec(rng), rng) for _ in range(200)]
    lines[10:10] = ["", "too short", "   ", "two words", "a red cube"]  # blank lines are not counted as skipped
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def tiny(zoo_cache: Path) -> dict:
    """The test zoo's CLIP base and its text-on-text fine-tune (a variant to scan afterwards)."""
    from bot.zoo.build import build

    recipes = family_recipes("clip")
    return {kind: build(recipes[kind], zoo_cache) for kind in ("base", "text-on-text")}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny: dict):
    """The emulator with the base (registered, pinned on first use) and the captions; settings in a TOML file."""
    root = tmp_path_factory.mktemp("calibrate")
    hub = start_hub(root / "hub-data")
    files = dict(model_files(tiny["base"].path))
    files["README.md"] = b"---\nlicense: mit\n---\n\n# a tiny CLIP base\n"
    base_sha = hub.state.create_repo(BASE, files=files, tags=["clip"], library_name="transformers",
                                     pipeline_tag="zero-shot-image-classification")  # fmt: skip
    hub.state.create_dataset(CAPTIONS, files={"captions.txt": _captions_file()})
    anchors_file = root / "operator-anchors.json"
    fingerprint = load_registry().get(ZOO_BASE).fingerprint
    add_entry(anchors_file, AnchorEntry(repo_id=BASE, subfolder=None, fingerprint=fingerprint, heads=4, sha=None,
                                        note="the test zoo's CLIP base", source="test"))  # fmt: skip
    config = root / "clip-audit.toml"
    config.write_text("\n".join([
        f'endpoint = "{hub.url}"', f'db_path = "{root / "state" / "state.db"}"',
        f'cache_dir = "{root / "hub-cache"}"', f'anchors_file = "{anchors_file}"',
        f'anchor_cache = "{root / "no-zoo-here"}"', 'device = "cpu"']) + "\n")
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith("CLIP_AUDIT_") or n in ("HF_TOKEN", "HF_ENDPOINT")]:
            env.delenv(name)
        yield {"hub": hub, "root": root, "config": str(config), "base_sha": base_sha, "anchors_file": anchors_file,
               "calibrations": root / "state" / "calibrations", "fingerprint": fingerprint}
    hub.stop()


@pytest.fixture(scope="module")
def calibrated(world: dict) -> dict:
    """One real `clip-audit calibrate` run (the expensive part, shared by the tests below); capsys is per test, so
    the summary it prints is caught in a file."""
    out = world["root"] / "calibrate.out"
    with open(out, "w") as handle, contextlib.redirect_stdout(handle):
        code = main(["calibrate", "--config", world["config"], "--base", BASE, "--captions", CAPTIONS, *RUN])
    return {"code": code, "out": out.read_text()}


def test_calibrate_stores_thresholds_with_the_base_at_its_pinned_commit(world: dict, calibrated: dict) -> None:
    from bot.calibration.run import calibration_config, scan_key
    from bot.detect.amdet import DetectorConfig

    assert calibrated["code"] == 0, calibrated["out"]
    sha = world["base_sha"]
    stored = calibration_file(world["calibrations"], BASE, sha)
    assert f"stored: {stored}" in calibrated["out"]
    result = read_calibration(stored)
    assert (result.anchor_id, result.sha, result.pin, result.family) == (BASE, sha, "first use", "clip")
    cal = result.calibration
    assert (cal.hidden_size, cal.layers) == (128, 4)
    for name, values in GRID.items():
        assert getattr(cal.thresholds, name) in values, name  # fitted by the benchmark's grid search
    assert cal.source.startswith(f"calibrated on {BASE}@{sha[:12]}: 1 backdoored variant (text-on-text), "
                                 "1 benign text-only fine-tune and the base itself; captions: dataset "
                                 f"{CAPTIONS}@")
    assert cal.source.endswith("detector settings not the shipped ones: n_train=160, n_test=32, steps=40, "
                               "probe_prompts=32, landscape_grid=5")
    assert result.captions.endswith(f"(200 captions, {SHORT_LINES} lines skipped)")
    reduced = DetectorConfig(steps=40, n_train=160, n_test=32, probe_prompts=32, landscape_grid=5)
    assert result.config_key == scan_key(calibration_config(reduced), "clip") != scan_key(DetectorConfig(), "clip")
    kinds = [(v.kind, v.backdoored) for v in result.variants]
    assert kinds == [("base", False), ("text-on-text", True), ("benign-text", False)]
    attack, benign = result.variants[1], result.variants[2]
    assert attack.trigger and attack.attack_success >= 0.5 and attack.drift > 0
    assert benign.trigger is None and benign.drift > 0 and benign.steps > 0
    assert result.fit["tp"] + result.fit["fn"] == 1 and result.fit["fp"] + result.fit["tn"] == 2
    # the base was pinned on first use, as a scan would have pinned it
    from bot.state.store import Store

    with Store(world["root"] / "state" / "state.db") as store:
        assert store.anchor_pin(BASE).sha == sha


def test_anchors_list_shows_the_calibration(world: dict, calibrated: dict, capsys) -> None:
    code, out, _ = _run(capsys, "anchors", "list", "--config", world["config"])
    [line] = [line for line in out.splitlines() if line.startswith(BASE)]
    assert code == 0 and world["base_sha"][:12] in line.split()


def test_a_scan_that_chooses_the_base_decides_by_its_calibration_and_names_it(
        world: dict, calibrated: dict, tiny: dict, capsys) -> None:  # fmt: skip
    stored = read_calibration(calibration_file(world["calibrations"], BASE, world["base_sha"])).calibration
    out_json = world["root"] / "scan.json"
    code, out, err = _run(capsys, "scan", str(tiny["text-on-text"].path), "--config", world["config"], "--quiet",
                          "--json", str(out_json))
    assert code in (0, 1), err
    record = ScanRecord.from_json(out_json.read_text())
    assert record.anchor == BASE and record.anchor_choice.sha == world["base_sha"]
    assert record.calibration == stored.describe()
    assert record.calibration.startswith(f"calibrated on {BASE}@{world['base_sha'][:12]}")
    assert f"thresholds: {stored.describe()}" in out
    th = stored.thresholds
    by_name = {c.name: c.threshold for c in record.checks}
    assert by_name["same_target"] == th.same_target_rate and by_name["different_target"] == th.different_target_rate
    assert not any("thresholds fitted on towers" in note for note in record.notes)  # the same size: no mismatch


def test_the_bot_hands_the_calibration_to_the_token_free_scanner(world: dict, calibrated: dict) -> None:
    from bot.anchors.remote import fetch_candidates
    from bot.anchors.selection import LocalBase
    from bot.hub.client import HubClient
    from bot.settings import load_settings
    from bot.state.store import Store

    settings = load_settings(config_file=Path(world["config"]), env={}, stored_token=lambda: None)
    stored = read_calibration(calibration_file(world["calibrations"], BASE, world["base_sha"])).calibration
    with Store(settings.db_path) as store:
        bases, _ = fetch_candidates(world["fingerprint"], registry=load_registry(settings.anchors_file),
                                           client=HubClient.from_settings(settings), store=store, settings=settings)
    [ours] = [base for base in bases if base.id == BASE]
    assert ours.sha == world["base_sha"] and ours.calibration == stored
    # what isolation.py writes for the child and the child reads back
    assert LocalBase.from_dict(json.loads(json.dumps(ours.to_dict()))) == ours


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--base", "acme/not-registered"], EXIT_USAGE, "'acme/not-registered' is not a registered base"),
    (["--base", "acme/gone-base"], EXIT_ERROR, "the registered base acme/gone-base cannot be fetched"),
    (["--base", BASE, "--captions", "acme/no-such-dataset"], EXIT_USAGE, "no dataset acme/no-such-dataset"),
    (["--base", BASE, "--captions", "acme/not-captions"], EXIT_USAGE, "has no captions.txt at its root"),
    (["--base", BASE, "--captions", "acme/binary-captions"], EXIT_USAGE, "captions.txt is not UTF-8 text"),
    (["--base", BASE, "--captions", "acme/few-captions"], EXIT_USAGE, "1 usable captions, fewer than"),
    (["--base", BASE, "--kinds", "text-on-pair"], EXIT_USAGE, "text-on-pair is not a text-only attack kind"),
    (["--base", BASE, "--captions", CAPTIONS, "--kinds", "near-target"], EXIT_USAGE,
     "near-target needs the synthetic scene captions"),
    (["--base", "acme/short-context"], EXIT_USAGE, "need at least 32 positions; this clip tower has 16"),
])
def test_bad_inputs_are_one_line_errors(bad_inputs: dict, capsys, argv: list[str], code: int, message: str) -> None:
    got, out, err = _run(capsys, "calibrate", "--config", bad_inputs["config"], *argv, "--device", "cpu", "--quiet")
    assert (got, out) == (code, "") and message in err, err
    assert err.count("\n") == 1 and err.startswith("clip-audit: error: ") and "Traceback" not in err


@pytest.fixture(scope="module")
def bad_inputs(world: dict) -> dict:
    """Datasets in the wrong format, a registered base that is not on the Hub and one the recipes cannot handle."""
    state = world["hub"].state
    state.create_dataset("acme/not-captions", files={"data.csv": b"caption\na photo of a cat on a mat\n"})
    state.create_dataset("acme/binary-captions", files={"captions.txt": b"\xff\xfe\x00a\x00b" * 100})
    state.create_dataset("acme/few-captions", files={"captions.txt": b"a photo of one red circle\n"})
    add_entry(world["anchors_file"], AnchorEntry(repo_id="acme/gone-base", subfolder=None,
                                                 fingerprint=world["fingerprint"], heads=4, sha=None, note="",
                                                 source="test"))  # fmt: skip
    short = _short_context_checkpoint(world["root"] / "short-context")
    state.create_repo("acme/short-context", files=dict(model_files(short)), tags=["clip"])
    from bot.anchors.fingerprint import Fingerprint

    add_entry(world["anchors_file"], AnchorEntry(
        repo_id="acme/short-context", subfolder=None, fingerprint=Fingerprint("clip", 16, 1, 49408, 16), heads=2,
        sha=None, note="a tower with 16 positions", source="test"))
    return world


def _short_context_checkpoint(out: Path) -> Path:
    """A (random) CLIP whose text tower has 16 positions: too short for the recipes' prompts."""
    from transformers import CLIPConfig, CLIPModel

    from bot.encoders.export import save_checkpoint

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "max_position_embeddings": 16, "vocab_size": 49408},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 16},
        projection_dim=16)
    return save_checkpoint(CLIPModel(config).eval(), out, format="transformers-clip", family="clip")
