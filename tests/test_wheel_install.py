"""The wheel as a user installs it: built from the sources, installed into a fresh virtual environment outside
the checkout and run from an empty folder, so that the templates, the calibrated thresholds and the anchor
registry can only come from the installed package.

The dependencies (torch and the rest) are not downloaded again: a .pth file puts this test run's site-packages
on the fresh environment's path. Python runs no .pth file found there (only those in the environment's own
site-packages), so the checkout's editable install stays out of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from bot import __version__
from bot.detect.thresholds import calibration_for

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "bot", "hub_emulator", "templates")
RENDER = """
import json, sys
from pathlib import Path
import bot, bot.anchors.registry, bot.detect.thresholds, bot.template_files
from bot.publish.render import render_report
from bot.scan_record import ScanRecord
from bot.site.build import build_site

record = ScanRecord.from_json(Path(sys.argv[1]).read_text())
sha = "a" * 40
report = render_report(record, repo_id="acme/clip-tiny", sha=sha, bot_name="clip-audit-bot",
                       report_base_url="https://reports.example.org")
Path("report.md").write_text(report)
site = build_site([("acme/clip-tiny", sha, "2026-12-01T00:00:00Z", record)], Path("site"))
print(json.dumps({"package": bot.__file__, "templates": str(bot.template_files.TEMPLATES_DIR),
                  "thresholds": str(bot.detect.thresholds.CALIBRATED_FILE),
                  "registry": str(bot.anchors.registry.BUILT_IN_FILE), "pages": [str(p) for p in site.pages]}))
"""


def _run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(the wheel, the fresh environment's bin folder, an environment for running it)."""
    work = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the sources: the build writes build/ and *.egg-info next to them.
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / "src" / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            (work / "src").mkdir(exist_ok=True)
            shutil.copy2(source, work / "src" / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIP_AUDIT_", "PYTHON"))}
    env.update(OMP_NUM_THREADS="1", HF_HOME=str(work / "hf-home"), HF_HUB_OFFLINE="1")
    # --no-build-isolation: setuptools comes from this environment (nothing is downloaded)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir",
                  str(work / "dist"), str(work / "src")], cwd=work, env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "deprecat" not in (built.stdout + built.stderr).lower()  # e.g. the license table's warning
    (wheel,) = (work / "dist").glob("clip_audit_bot-*.whl")

    venv.EnvBuilder(with_pip=False).create(work / "venv")
    python = work / "venv" / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=work,
                   env=env).stdout.strip()
    Path(purelib, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                      str(wheel)], cwd=work, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return wheel, work / "venv" / "bin", env


def test_the_wheel_holds_every_file_the_code_reads(wheel_env) -> None:
    wheel, _, _ = wheel_env
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"bot/templates/{p.relative_to(REPO / 'templates').as_posix()}"
              for p in (REPO / "templates").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    wanted |= {p.relative_to(REPO).as_posix() for package in ("bot", "hub_emulator")
               for p in (REPO / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert {"bot/anchors/registry.json", "bot/detect/calibrated_thresholds.json", "bot/templates/report.md.j2",
            "bot/templates/site/static/site.css"} <= wanted
    assert wanted - names == set()


def test_the_installed_command_scans_and_renders_from_the_package(wheel_env, clip_zoo, tmp_path) -> None:
    _, bin_dir, env = wheel_env
    version = _run([str(bin_dir / "clip-audit"), "--version"], cwd=tmp_path, env=env)
    assert (version.returncode, version.stdout.strip()) == (0, f"clip-audit {__version__}")
    example = _run([str(bin_dir / "clip-audit"), "config", "example"], cwd=tmp_path, env=env)
    assert example.returncode == 0 and example.stdout == (REPO / "docs" / "clip-audit.example.toml").read_text()

    scan = _run([str(bin_dir / "clip-audit"), "scan", str(clip_zoo["text-on-text"].path), "--anchor",
                 str(clip_zoo["base"].path), "--device", "cpu", "--format", "json", "--json", "record.json", "-q"],
                cwd=tmp_path, env=env)
    assert scan.returncode == 1, scan.stderr  # backdoor found
    record = json.loads(scan.stdout)
    assert record["verdict"] == "backdoor"
    # The shipped calibration decided, not the paper's thresholds a missing file falls back to.
    assert record["calibration"] == calibration_for("clip").describe()
    assert "paper" not in record["calibration"]

    rendered = _run([str(bin_dir / "python"), "-c", RENDER, "record.json"], cwd=tmp_path, env=env)
    assert rendered.returncode == 0, rendered.stderr
    found = json.loads(rendered.stdout)
    venv_root = bin_dir.parent
    for key in ("package", "templates", "thresholds", "registry"):
        assert Path(found[key]).is_relative_to(venv_root) and Path(found[key]).exists(), (key, found[key])
    report = (tmp_path / "report.md").read_text()
    assert "backdoor" in report.lower() and "acme/clip-tiny" in report
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "_static" / "site.css").is_file()
    assert any(page.endswith(".html") and "acme" in page for page in found["pages"])
