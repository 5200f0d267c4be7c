"""The command line: usage errors, refusals and their exit codes, without stack traces."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from cli_run import run_cli

from bot.cli import main
from bot.errors import EXIT_ERROR, EXIT_NOTHING_SCANNABLE, EXIT_USAGE

_run = run_cli


def test_no_command_is_a_usage_error(capsys):
    code, _, err = _run(capsys)
    assert code == EXIT_USAGE and "required" in err


def test_unknown_option_is_a_usage_error(capsys):
    code, _, err = _run(capsys, "scan", "x", "--frobnicate")
    assert code == EXIT_USAGE and "unrecognized arguments" in err


def test_missing_path_is_a_usage_error(capsys, tmp_path):
    code, _, err = _run(capsys, "scan", str(tmp_path / "nope"))
    assert code == EXIT_USAGE and "does not exist" in err and "Traceback" not in err


def test_pickle_only_repo_is_refused_without_unpickling(capsys, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip", "architectures": ["CLIPModel"]}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04 not really a pickle")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must never be called"))
    code, _, err = _run(capsys, "scan", str(tmp_path), "--quiet")
    assert code == EXIT_NOTHING_SCANNABLE and "pickle" in err.lower() and "Traceback" not in err


def test_truncated_safetensors_is_an_error_with_a_clear_message(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "clip_text_model", "architectures": ["CLIPTextModel"], "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 49408,
        "max_position_embeddings": 77}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 100)
    code, _, err = _run(capsys, "scan", str(tmp_path), "--quiet")
    assert code == EXIT_ERROR and "Traceback" not in err and "model.safetensors" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_gpu_is_a_usage_error(capsys, tmp_path):
    code, _, err = _run(capsys, "scan", str(tmp_path), "--device", "cuda")
    assert code == EXIT_USAGE and "CUDA" in err


def test_a_file_is_a_usage_error_like_a_missing_path(capsys, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not a folder")
    code, out, err = _run(capsys, "scan", str(tmp_path / "model.safetensors"))
    assert code == EXIT_USAGE and out == "" and "is a file" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [("status",), ("site", "build"), ("site", "build", "--out", "site")])
def test_a_command_without_its_state_database_is_a_usage_error(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    for flag in ("--db-path", "--db"):  # --db: site build's older spelling, still accepted
        code, out, err = _run(capsys, *argv, flag, str(tmp_path / "none.db"))
        assert code == EXIT_USAGE and out == "" and f"no state database at {tmp_path / 'none.db'}" in err


def test_version(capsys):
    from bot import __version__

    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out == f"clip-audit {__version__}\n"


@pytest.mark.parametrize("argv", [("-v", "config", "example"), ("config", "example", "-v"),
                                  ("config", "-v", "example"), ("config", "example", "--verbose")])
def test_verbose_is_accepted_before_and_after_the_subcommand(argv):
    from bot.cli import build_parser

    args = build_parser().parse_args(list(argv))
    assert args.verbose is True and args.quiet is False


@pytest.mark.parametrize("argv", [("-q", "scan", "x"), ("scan", "x", "-q"), ("scan", "x", "--quiet")])
def test_quiet_is_accepted_before_and_after_the_subcommand(argv):
    from bot.cli import build_parser

    args = build_parser().parse_args(list(argv))
    assert args.quiet is True and args.verbose is False


def test_verbose_and_quiet_together_are_a_usage_error(capsys):
    code, _, err = _run(capsys, "-v", "config", "example", "-q")
    assert code == EXIT_USAGE and "cannot be used together" in err


def test_every_option_of_every_command_has_help():
    import argparse

    from bot.cli import build_parser
    from bot.cli.parser import command_parsers

    root = build_parser()
    missing = []
    for path, parser in [((), root), *command_parsers(root)]:
        visible = {action.dest for action in parser._actions if action.help != argparse.SUPPRESS}
        for action in parser._actions:
            name = " ".join(("clip-audit", *path, "/".join(action.option_strings) or action.dest))
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{name} {choice.dest}" for choice in action._choices_actions if not choice.help]
            elif action.help == argparse.SUPPRESS:
                assert action.dest in visible, f"{name} is hidden but is no older spelling of a shown option"
            elif not action.help:
                missing.append(name)
    assert missing == []


def test_older_spellings_still_work():
    from pathlib import Path

    from bot.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["worker", "--burst"]).burst is True
    assert parser.parse_args(["worker", "--once"]).burst is True
    assert parser.parse_args(["zoo", "list", "--cache-dir", "elsewhere"]).cache_root == Path("elsewhere")
    assert parser.parse_args(["zoo", "list"]).cache_root == Path("cache")
    assert parser.parse_args(["demo", "--cache-root", "x"]).cache_root == Path("x")
    assert parser.parse_args(["site", "build", "--db", "s.db"]).db_path == Path("s.db")


def test_serve_takes_host_and_port_as_settings(tmp_path, monkeypatch):
    from bot.cli import build_parser
    from bot.cli.parser import settings_from_args

    monkeypatch.chdir(tmp_path)  # no ./clip-audit.toml
    monkeypatch.setenv("CLIP_AUDIT_WEBHOOK_PORT", "7000")  # the flag wins over the environment
    settings = settings_from_args(build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9000"]))
    assert (settings.webhook_host, settings.webhook_port) == ("0.0.0.0", 9000)


def test_zoo_build_rejects_bad_numbers(capsys):
    code, _, err = _run(capsys, "zoo", "build", "--per-kind", "-1")
    assert code == EXIT_USAGE and "per-kind" in err


def test_an_unexpected_failure_is_one_line_and_exit_2_never_1(tmp_path, capsys, monkeypatch) -> None:
    import bot.cli.scan
    from bot.cli import main

    def broken(args):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr(bot.cli.scan, "_cmd_scan", broken)
    assert main(["scan", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    expected = "clip-audit: unexpected error: RuntimeError: something nobody foresaw (run with -v for the traceback)"
    assert err == expected + "\n"
    assert main(["-v", "scan", str(tmp_path)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_library_exiting_inside_a_command_is_exit_2_never_a_verdict(tmp_path, capsys, monkeypatch) -> None:
    import socket

    # `serve` on a port that is taken: uvicorn logs why and calls sys.exit(3), which would read as "nothing
    # scannable" (and a library's sys.exit(1) as "backdoor found").
    monkeypatch.chdir(tmp_path)  # settings read ./clip-audit.toml when there is one
    for name, value in {"CLIP_AUDIT_WEBHOOK_SECRET": "s3cret", "CLIP_AUDIT_ENDPOINT": "http://127.0.0.1:9",
                        "CLIP_AUDIT_DB_PATH": str(tmp_path / "state.db"), "HF_HOME": str(tmp_path / "hf")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        code = main(["serve", "--port", str(taken.getsockname()[1])])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert err.splitlines()[-1] == "clip-audit: error: serve stopped (exit status 3); see the messages above"
    assert "Traceback" not in err


def test_a_command_exiting_1_is_exit_2_and_a_clean_exit_stays_0(tmp_path, capsys, monkeypatch) -> None:
    import sys

    import bot.cli.scan

    monkeypatch.setattr(bot.cli.scan, "_cmd_scan", lambda args: sys.exit(1))
    assert main(["scan", str(tmp_path)]) == EXIT_ERROR
    assert capsys.readouterr().err == "clip-audit: error: scan stopped (exit status 1); see the messages above\n"
    monkeypatch.setattr(bot.cli.scan, "_cmd_scan", lambda args: sys.exit(0))
    with pytest.raises(SystemExit) as clean:
        main(["scan", str(tmp_path)])
    assert clean.value.code == 0
