"""Training captions for `clip-audit calibrate`: the synthetic caption grammar, or a Hub dataset's captions.txt.

The dataset format (docs/zoo.md, "Calibrating a real base"): one file, `captions.txt`, at the root of a Hub
dataset repo, UTF-8, one caption per line. Blank lines are ignored; lines of fewer than MIN_WORDS words are
skipped (a trigger placed strictly mid-sentence needs room) and so are lines longer than MAX_CAPTION_CHARS.
The file may be at most MAX_CAPTIONS_BYTES (refused before download) and the first MAX_CAPTIONS usable lines
are used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bot.captions import synthetic_captions
from bot.errors import CaptionsDatasetError

CAPTIONS_FILE = "captions.txt"
MAX_CAPTIONS_BYTES = 32 * 1024**2
MAX_CAPTIONS = 200_000
MAX_CAPTION_CHARS = 1_000
# "trigger-middle" inserts the trigger strictly inside a caption: after its second word, before its last
MIN_WORDS = 4
# fewer distinct captions than one training batch (64 clean + 32 poisoned) would repeat within every step
MIN_CAPTIONS = 96

Sampler = Callable[[np.random.Generator, int], list[str]]


@dataclass(frozen=True)
class CaptionCorpus:
    """Where the training captions come from, and how to draw them."""

    source: str                                      # for the calibration's record, e.g. "dataset acme/caps@1a2b3c"
    captions: tuple[str, ...] = field(default=(), repr=False)  # empty: drawn fresh from the synthetic grammar
    skipped: int = 0                                 # lines of the file that were not used

    @property
    def synthetic(self) -> bool:
        """The synthetic grammar describes scenes, so a caption can be recoloured (the near-target attack)."""
        return not self.captions

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        if self.synthetic:
            return synthetic_captions(rng, n)
        return [self.captions[i] for i in rng.integers(len(self.captions), size=n)]

    def describe(self) -> str:
        if self.synthetic:
            return self.source
        skipped = f", {self.skipped} lines skipped" if self.skipped else ""
        return f"{self.source} ({len(self.captions)} captions{skipped})"


SYNTHETIC = CaptionCorpus(source="the synthetic shapes captions (bot/captions.py)")


def parse_captions(data: bytes, *, source: str) -> CaptionCorpus:
    """The captions of a captions.txt file's bytes.

    Raises:
        CaptionsDatasetError: over the size cap, not UTF-8 text, or fewer than MIN_CAPTIONS usable lines.
    """
    where = f"{source}: {CAPTIONS_FILE}"
    if len(data) > MAX_CAPTIONS_BYTES:
        raise CaptionsDatasetError(f"{where} is {len(data)} bytes, over the {MAX_CAPTIONS_BYTES} byte limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaptionsDatasetError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if "\x00" in text:
        raise CaptionsDatasetError(f"{where} holds NUL bytes: not a text file of captions")
    captions: list[str] = []
    skipped = 0
    for line in text.splitlines():
        caption = " ".join(line.split())
        if not caption:
            continue
        if len(caption.split(" ")) < MIN_WORDS or len(caption) > MAX_CAPTION_CHARS or len(captions) >= MAX_CAPTIONS:
            skipped += 1
            continue
        captions.append(caption)
    if len(captions) < MIN_CAPTIONS:
        raise CaptionsDatasetError(
            f"{where} has {len(captions)} usable captions, fewer than the {MIN_CAPTIONS} needed (one caption per "
            f"line, at least {MIN_WORDS} words and at most {MAX_CAPTION_CHARS} characters each)")
    return CaptionCorpus(source=source, captions=tuple(captions), skipped=skipped)
