"""Where the Hub post and report site templates are: one lookup for bot/publish and bot/site.

The repository keeps them at its top level (templates/); the wheel installs that folder inside the package, as
bot/templates (setup.py). An installed package finds its own copy; a checkout (an editable install, the tests)
finds the top-level folder. Nothing else is searched: a missing folder fails on the first template read, with
the installed path in the message.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _templates_dir() -> Path:
    installed = _PACKAGE / "templates"
    checkout = _PACKAGE.parent / "templates"
    if not installed.is_dir() and (_PACKAGE.parent / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    return installed


TEMPLATES_DIR = _templates_dir()
