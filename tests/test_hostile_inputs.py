"""The hostile-input corpus (tests/hostile_corpus.py, issue 13): every case gets a recorded, clear outcome.

Scan cases go through the loader and `clip-audit scan` in this process, a subset through `clip-audit scan` in its
own process and through the worker's scanning child; text through the renderer and the mention parser; webhook
deliveries over HTTP to a real `clip-audit serve`; broken state through every command. What a clear outcome is:
tests/hostile_runs.py. Every outcome is written to hostile-outcomes.tsv in this module's temporary folder;
docs/hostile-inputs.md is the same table, rewritten by `python tests/hostile_corpus.py --report
docs/hostile-inputs.md`.
"""

from __future__ import annotations

import pickletools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_corpus import CUSTOM_CODE, all_cases, marker_pickle
from hostile_runs import (
    Outcome,
    run_cli_case,
    run_deliveries,
    run_scan_child,
    run_scan_in_process,
    run_scan_processes,
    run_text_case,
    scanning_child,
    serving,
    stored_events,
    write_table,
)

SCAN_FAMILIES = ("safetensors", "config", "repo")


@pytest.fixture(scope="module")
def cases() -> dict[str, list]:
    return all_cases()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def recorded(corpus_dir: Path) -> Iterator[list[Outcome]]:
    """Every outcome of this module's tests; written as a table once they have run."""
    outcomes: list[Outcome] = []
    yield outcomes
    table = write_table(outcomes, corpus_dir / "hostile-outcomes.tsv")
    print(f"\n{len(outcomes)} hostile-input outcomes recorded in {table}")


def _record(outcomes: list[Outcome], recorded: list[Outcome]) -> None:
    recorded.extend(outcomes)
    failures = [f"{o.family}/{o.name} via {o.route}: {o.result}: {'; '.join(o.problems)}" for o in outcomes
                if o.problems]  # fmt: skip
    assert not failures, "\n".join(failures)


def test_the_corpus_holds_over_200_distinct_cases_in_every_family(cases: dict[str, list]) -> None:
    names = [(case.family, case.name) for family in cases.values() for case in family]
    assert len(names) >= 200
    assert len(set(names)) == len(names)
    assert set(cases) == {*SCAN_FAMILIES, "text", "webhook", "cli"} and all(cases.values())


def test_the_markers_are_what_loading_a_pickle_or_running_repo_code_would_leave(tmp_path: Path) -> None:
    # The corpus's pickles and .py files really would leave their markers: finding none means none ran.
    marker_pickle(tmp_path / "pytorch_model.bin")
    opcodes = [(op.name, arg) for op, arg, _ in pickletools.genops((tmp_path / "pytorch_model.bin").read_bytes())]
    # pathlib.Path.touch(<folder>/UNPICKLED), called (REDUCE) when the pickle is loaded
    assert {("SHORT_BINUNICODE", "pathlib"), ("SHORT_BINUNICODE", "Path.touch"), ("SHORT_BINUNICODE", "UNPICKLED"),
            ("STACK_GLOBAL", None), ("REDUCE", None)} <= set(opcodes)
    (tmp_path / "modeling_evil.py").write_bytes(CUSTOM_CODE)
    subprocess.run([sys.executable, str(tmp_path / "modeling_evil.py")], check=True, timeout=60)
    assert (tmp_path / "EXECUTED").is_file()


@pytest.mark.parametrize("family", SCAN_FAMILIES)
def test_every_scan_case_is_refused_in_one_clear_line_or_loads_when_well_formed(
        cases: dict[str, list], corpus_dir: Path, recorded: list[Outcome], family: str) -> None:  # fmt: skip
    _record([run_scan_in_process(case, corpus_dir / "in-process") for case in cases[family]], recorded)


def test_a_subset_through_clip_audit_scan_in_its_own_process(cases: dict[str, list], corpus_dir: Path,
                                                             recorded: list[Outcome]) -> None:  # fmt: skip
    subset = [case for family in SCAN_FAMILIES for case in cases[family] if "cli" in case.processes]
    assert len(subset) >= 4
    _record(run_scan_processes(subset, corpus_dir / "process"), recorded)


def test_a_subset_through_the_workers_scanning_child_fails_fast_with_its_reason(
        cases: dict[str, list], corpus_dir: Path, recorded: list[Outcome]) -> None:  # fmt: skip
    subset = [case for family in SCAN_FAMILIES for case in cases[family] if "child" in case.processes]
    assert len(subset) >= 10
    with scanning_child() as scanner:
        _record([run_scan_child(case, corpus_dir / "child", scanner) for case in subset], recorded)


def test_hostile_text_renders_inert_and_parses_safely(cases: dict[str, list], recorded: list[Outcome]) -> None:
    _record([run_text_case(case) for case in cases["text"]], recorded)


def test_every_command_meets_broken_state_with_one_clear_line(cases: dict[str, list], corpus_dir: Path,
                                                               recorded: list[Outcome]) -> None:  # fmt: skip
    _record([run_cli_case(case, corpus_dir / "cli") for case in cases["cli"]], recorded)


def test_every_webhook_delivery_gets_a_2xx_or_4xx_and_serve_stays_up(hub, tmp_path: Path, cases: dict[str, list],
                                                                     recorded: list[Outcome]) -> None:  # fmt: skip
    with serving(hub.url, tmp_path / "serve") as serve:
        outcomes = run_deliveries(serve, cases["webhook"])
        still_up = serve.alive()
    log = serve.log.read_text(errors="replace")
    assert still_up, log[-3000:]
    assert serve.process.returncode == 0, log[-3000:]  # it stopped cleanly on SIGTERM
    assert "Traceback" not in log, log[-3000:]
    # each delivery answered 202 was stored once; nothing else was
    assert len(stored_events(serve.db)) == len(serve.accepted) >= 10
    _record(outcomes, recorded)
