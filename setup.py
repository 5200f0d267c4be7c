"""What the wheel holds; the rest of the build is in pyproject.toml.

The packages `bot` and `hub_emulator`, the data files bot reads at run time, and the top-level templates/ folder
(the Hub posts' and the report site's templates) installed as bot/templates, where bot/template_files.py finds
it. Each folder under templates/ is listed as a package of its own, so that setuptools ships its files without
warning that a data folder looks importable.
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup

ROOT = Path(__file__).resolve().parent
TEMPLATES = "templates"
TEMPLATE_PACKAGE = "bot.templates"


def template_packages() -> list[str]:
    folders = [path for path in sorted((ROOT / TEMPLATES).rglob("*")) if path.is_dir()]
    return [TEMPLATE_PACKAGE, *(".".join((TEMPLATE_PACKAGE, *path.relative_to(ROOT / TEMPLATES).parts))
                                for path in folders if "__pycache__" not in path.parts)]


CODE = find_namespace_packages(include=["bot", "bot.*", "hub_emulator", "hub_emulator.*"],
                               exclude=["*.__pycache__", "*.__pycache__.*"])

setup(
    packages=[*CODE, *template_packages()],
    package_dir={TEMPLATE_PACKAGE: TEMPLATES},
    package_data={
        "bot.anchors": ["registry.json"],
        "bot.detect": ["calibrated_thresholds.json"],
        **{name: ["*"] for name in template_packages()},
    },
)
