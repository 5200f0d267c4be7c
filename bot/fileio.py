"""Writing files so that a reader (another process, a web server) sees the old content or the new, never half."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write_bytes(path: Path, content: bytes) -> None:
    """Writes `content` to a hidden sibling, then renames it over `path` (creating parent folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A leading dot and a pid: no repo path or concurrent writer can take this name.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(content)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
