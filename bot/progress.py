"""Progress bars for long work (zoo training, inversion, scans), quiet when the output is not a terminal.

Every bar in the package comes from `progress`: tqdm itself writes every update to a log or a pipe, which
turns CI logs and `clip-audit ... 2> file` into thousands of lines.
"""

from __future__ import annotations

from tqdm.auto import tqdm


def progress(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar that shows only on a terminal (disable=None), and never when `enabled` is false."""
    return tqdm(iterable, disable=None if enabled else True, **kwargs)
