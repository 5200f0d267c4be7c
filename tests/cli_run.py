"""Running `clip-audit` in-process the way a shell would: the exit code and what it printed."""

from __future__ import annotations

from bot.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err
