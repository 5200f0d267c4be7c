"""Terminal output: the plain-text table and a scan record's summary (bot/cli/output.py), and progress bars that
stay off logs and pipes (bot/progress.py)."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from dataclasses import replace
from pathlib import Path

from records import make_record
from zoo_plan import TEST_BASE_STEPS

from bot.cli.output import summarize_record, table
from bot.scan_record import TargetCaption, TriggerCandidate, Verdict

# -- table ----------------------------------------------------------------------------------------------


def test_columns_are_as_wide_as_their_widest_cell_and_aligned() -> None:
    text = table(["name", "n"], [["a", "12345"], ["longer name", "7"]])
    lines = text.split("\n")
    assert [line.rstrip() for line in lines] == [
        "name         n",
        "-----------  -----",
        "a            12345",
        "longer name  7",
    ]
    # every line is padded to the full width, so the second column starts at the same offset everywhere
    assert len({len(line) for line in lines}) == 1
    assert [line[13:].rstrip() for line in lines] == ["n", "-----", "12345", "7"]


def test_a_header_wider_than_its_cells_sets_the_width() -> None:
    lines = table(["threshold", "x"], [["1", "y"]]).split("\n")
    assert lines[1] == "---------  -"
    assert lines[2] == "1          y"


def test_cells_that_are_not_strings_are_printed() -> None:
    lines = table(["k", "v"], [[1, 2.5], [None, True]]).split("\n")  # type: ignore[list-item]
    assert [line.rstrip() for line in lines[2:]] == ["1     2.5", "None  True"]


def test_an_empty_table_is_the_header_and_its_rule() -> None:
    assert table(["check", "score"], []) == "check  score\n-----  -----"


# -- summarize_record -----------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return text.split("\n")


def test_backdoor_summary() -> None:
    record = make_record(Verdict.BACKDOOR)
    lines = _lines(summarize_record(record))
    assert lines[:5] == [
        "model:   acme/clip-vit-b",
        "family:  clip (transformers-clip)",
        "anchor:  openai/clip-vit-base-patch32 (nearest trusted base by the weights, distance 0.018;"
        " next laion/CLIP-ViT-B-32-laion2B-s34B-b79K at 1.387)",
        "verdict: BACKDOOR",
        "",
    ]
    assert [line.rstrip() for line in lines[5:11]] == [
        "check             score  threshold  reading",
        "----------------  -----  ---------  -------------",
        "assimilation      0.970  0.800      backdoor-like",
        "same_target       0.995  0.900      backdoor-like",
        "different_target  0.990  0.950      backdoor-like",
        "landscape         0.960  0.800      evidence",
    ]
    assert lines[11:] == [
        "",
        "nearest trigger tokens: cf</w> (confirmed), mn</w>",
        "recovered target: a photo of a banana on a table; a yellow banana",
        "time: 47.9s on cpu (8 threads)",
    ]


def test_verdict_is_upper_cased() -> None:
    for verdict in Verdict:
        assert f"verdict: {verdict.value.upper()}" in _lines(summarize_record(make_record(verdict)))
    assert "verdict: NATURAL-ONLY" in _lines(summarize_record(make_record(Verdict.NATURAL_ONLY)))


def test_checks_short_of_their_threshold_read_normal_and_scores_are_rounded() -> None:
    record = make_record(Verdict.BACKDOOR)
    record = replace(record, checks=[replace(record.checks[0], score=0.52349, passed=False), *record.checks[1:]])
    rows = [line.split() for line in _lines(summarize_record(record)) if line.startswith("assimilation")]
    assert rows == [["assimilation", "0.523", "0.800", "normal"]]


def test_no_anchor_reads_none_and_notes_are_listed() -> None:
    record = make_record(Verdict.INCONCLUSIVE)
    record = replace(record, notes=[*record.notes, "anchor chosen by family default"])
    lines = _lines(summarize_record(record))
    assert "anchor:  none" in lines
    assert lines[-2:] == [
        "note: no anchor (clean base) model was available: the different-target check and the verdict need one",
        "note: anchor chosen by family default",
    ]
    assert not any(line.startswith(("nearest trigger", "recovered target")) for line in lines)


def test_clean_summary_has_no_triggers_target_or_notes() -> None:
    lines = _lines(summarize_record(make_record(Verdict.CLEAN)))
    assert lines[-1] == "time: 47.9s on cpu (8 threads)"
    assert [line.split()[-1] for line in lines[7:10]] == ["normal", "normal", "normal"]
    assert not any(line.startswith(("nearest trigger", "recovered target", "note:")) for line in lines)


def _trigger(token: str, *, confirmed: bool) -> TriggerCandidate:
    return TriggerCandidate(token=token, token_id=1, similarity=0.5, assimilation=0.5, target_agreement=0.5,
                            confirmed=confirmed)  # fmt: skip


def _targets(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("recovered target:")]


def test_recovered_target_only_for_findings_or_confirmed_triggers() -> None:
    captions = [TargetCaption("a red square", 0.9)]
    clean = replace(make_record(Verdict.CLEAN), target_captions=captions)

    unconfirmed = _lines(summarize_record(replace(clean, triggers=[_trigger("cf</w>", confirmed=False)])))
    assert "nearest trigger tokens: cf</w>" in unconfirmed
    assert _targets(unconfirmed) == []

    confirmed = _lines(summarize_record(replace(clean, triggers=[_trigger("mn</w>", confirmed=False),
                                                                 _trigger("cf</w>", confirmed=True)])))
    assert "nearest trigger tokens: mn</w>, cf</w> (confirmed)" in confirmed
    assert _targets(confirmed) == ["recovered target: a red square"]

    # findings show the target even when no trigger token was confirmed
    for verdict in (Verdict.BACKDOOR, Verdict.NATURAL_ONLY):
        record = replace(make_record(verdict), target_captions=captions, triggers=[_trigger("x", confirmed=False)])
        assert _targets(_lines(summarize_record(record))) == ["recovered target: a red square"]


def test_at_most_five_triggers_and_three_target_captions() -> None:
    triggers = [_trigger(f"t{i}", confirmed=i == 6) for i in range(8)]  # the only confirmed one is not shown
    captions = [TargetCaption(f"caption {i}", 0.9 - i / 10) for i in range(5)]
    record = replace(make_record(Verdict.BACKDOOR), triggers=triggers, target_captions=captions)
    lines = _lines(summarize_record(record))
    assert "nearest trigger tokens: t0, t1, t2, t3, t4" in lines
    assert _targets(lines) == ["recovered target: caption 0; caption 1; caption 2"]

    # a confirmed trigger beyond the first five still reveals the target of a non-finding
    record = replace(make_record(Verdict.CLEAN), triggers=triggers, target_captions=captions)
    assert _targets(_lines(summarize_record(record))) == ["recovered target: caption 0; caption 1; caption 2"]


def test_time_defaults_to_zero_without_a_total() -> None:
    record = replace(make_record(Verdict.CLEAN), timings={"prepare": 1.0}, device="cuda:0")
    assert _lines(summarize_record(record))[-1] == "time: 0.0s on cuda:0"


def test_a_record_without_checks_still_prints_the_table_header() -> None:
    record = replace(make_record(Verdict.INCONCLUSIVE), checks=[], notes=[])
    lines = _lines(summarize_record(record))
    header = lines.index("check  score  threshold  reading")
    assert lines[header - 1] == ""  # the table follows the head block's blank line
    assert lines[header + 1:header + 3] == ["-----  -----  ---------  -------", "time: 47.9s on cpu (8 threads)"]


# -- progress bars ----------------------------------------------------------------------------------------------


def _zoo_build(zoo_cache: Path, **streams) -> subprocess.Popen:
    """`clip-audit zoo build` of the test zoo's CLIP base: already built, so it only loads it, under its bar."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TQDM_")}
    argv = [sys.executable, "-m", "bot.cli", "zoo", "build", "--families", "clip", "--per-kind", "0",
            "--base-steps", str(TEST_BASE_STEPS), "--cache-root", str(zoo_cache)]
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, **streams)


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the last holder of the terminal's other end is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_progress_bars_are_quiet_when_the_output_is_not_a_terminal(clip_zoo, zoo_cache: Path) -> None:
    quiet = _zoo_build(zoo_cache, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = quiet.communicate(timeout=600)
    assert quiet.returncode == 0, err.decode(errors="replace")
    assert clip_zoo["base"].recipe.name in out.decode()  # it did the work: the table of what it built
    for stream in (out, err):
        assert b"\r" not in stream and b"\x1b[" not in stream  # no carriage return, no cursor movement
        assert b"zoo:" not in stream

    # The same command on a terminal draws its bar: the check above looks at a run that had one to hide.
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    shown = _zoo_build(zoo_cache, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    try:
        drawn = _read_all(leader)
    finally:
        os.close(leader)
    shown.communicate(timeout=600)
    assert shown.returncode == 0
    assert b"\r" in drawn and b"zoo:" in drawn
