"""Scan one local checkpoint directory in this process: load, choose the anchor, run AMDET, return the record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from bot.anchors.fingerprint import Fingerprint
from bot.anchors.selection import (
    LocalBase,
    choose_anchor,
    explicit_choice,
    tower_fingerprint,
)
from bot.detect.amdet import Amdet, DetectorConfig
from bot.encoders.layout import inspect_checkpoint
from bot.encoders.load import load_text_encoder
from bot.encoders.text_encoder import TextEncoder
from bot.errors import AnchorError
from bot.scan_record import ScanRecord
from bot.scanning.device import select_device


def scan_path(path: Path, *, anchor: Path | None = None,
              candidates: Callable[[Fingerprint | None], Sequence[LocalBase]] = lambda _: (),
              registered: Collection[str] = (),
              device: str = "auto", config: DetectorConfig | None = None, model_name: str | None = None,
              revision: str | None = None, subfolder: str | None = None, max_bytes: int | None = None,
              anchor_cache: Callable[[LocalBase, Callable[[LocalBase], TextEncoder]], TextEncoder] | None = None,
              ) -> ScanRecord:
    """Scans the checkpoint at `path`.

    Args:
        anchor: a clean base a person chose (`--anchor`): used as it is, and the report says so.
        candidates: given the suspect's fingerprint, the registered bases held locally; the nearest by the
            weights is the anchor when it is near enough for a fine-tune (bot/anchors/selection.py).
            Without an anchor the verdict is inconclusive. The chosen base's calibration, when it carries
            one (`clip-audit calibrate`), decides the verdict instead of the family's.
        registered: every registry id, so that the report tells a card naming a trusted base of another
            architecture from one naming an untrusted repo.
        anchor_cache: anchor_cache(base, load) -> the base's encoder, loaded with `load` or kept from before
            (a resident scanning child keeps the bases it scans against).
    """
    path = Path(path)
    dev = select_device(device)
    info = inspect_checkpoint(path, subfolder=subfolder)
    suspect = load_text_encoder(path, device=dev, subfolder=subfolder, max_bytes=max_bytes)
    calibration = None  # an explicit --anchor is not a registry entry: the family's calibration decides
    if anchor is not None:
        anchor_encoder = load_text_encoder(anchor, device=dev, max_bytes=max_bytes)
        if anchor_encoder.family != suspect.family or anchor_encoder.hidden_size != suspect.hidden_size:
            raise AnchorError(
                f"anchor {anchor} is a {anchor_encoder.family} tower with hidden size "
                f"{anchor_encoder.hidden_size}, the suspect a {suspect.family} tower with hidden size "
                f"{suspect.hidden_size}: pass --anchor with the base this model was fine-tuned from")
        choice = explicit_choice(str(anchor), card_claim=info.base_model)
    else:
        def read(base: LocalBase) -> TextEncoder:
            return load_text_encoder(base.path, device=dev, subfolder=base.subfolder, max_bytes=max_bytes)

        def load(base: LocalBase) -> TextEncoder:
            return read(base) if anchor_cache is None else anchor_cache(base, read)

        bases = candidates(tower_fingerprint(suspect))
        anchor_encoder, choice = choose_anchor(suspect, bases, load=load, card_claim=info.base_model,
                                               registered=registered)
        if anchor_encoder is not None:
            chosen = next(base for base in bases if (base.id, base.sha) == (choice.anchor, choice.sha))
            calibration = chosen.calibration
    record = Amdet(config).scan(suspect, anchor_encoder, model=model_name or str(path), revision=revision,
                                anchor_name=choice.anchor if anchor_encoder is not None else None,
                                calibration=calibration)
    return dataclasses.replace(record, anchor_choice=choice)
