"""Scan one local checkpoint directory in this process: load, find the anchor, run AMDET, return the record."""

from __future__ import annotations

from pathlib import Path

from bot.scanning.anchors import resolve_anchor
from bot.detect.amdet import Amdet, DetectorConfig
from bot.scan_record import ScanRecord
from bot.scanning.device import select_device
from bot.encoders.layout import inspect_checkpoint
from bot.encoders.load import load_text_encoder
from bot.errors import AnchorError
from bot.settings import CACHE_ROOT


def scan_path(path: Path, *, anchor: Path | None = None, device: str = "auto",
              config: DetectorConfig | None = None, anchor_cache: Path = CACHE_ROOT,
              model_name: str | None = None, revision: str | None = None, subfolder: str | None = None,
              max_bytes: int | None = None, extra_anchors: dict[str, Path] | None = None,
              anchor_name: str | None = None) -> ScanRecord:
    path = Path(path)
    dev = select_device(device)
    info = inspect_checkpoint(path, subfolder=subfolder)
    suspect = load_text_encoder(path, device=dev, subfolder=subfolder, max_bytes=max_bytes)
    found = resolve_anchor(info, explicit=anchor, anchor_cache=anchor_cache, extra=extra_anchors)
    anchor_encoder = None
    notes = []
    if found is not None:
        anchor_encoder = load_text_encoder(found.path, device=dev)
        if anchor_encoder.family != suspect.family or anchor_encoder.hidden_size != suspect.hidden_size:
            raise AnchorError(
                f"anchor {found.name} is a {anchor_encoder.family} tower with hidden size "
                f"{anchor_encoder.hidden_size}, the suspect a {suspect.family} tower with hidden size "
                f"{suspect.hidden_size}: pass --anchor with the base this model was fine-tuned from")
        notes.append(f"anchor chosen by {found.how}")
    record = Amdet(config).scan(suspect, anchor_encoder, model=model_name or str(path), revision=revision,
                                anchor_name=(anchor_name or found.name) if found else None)
    if notes:
        record.notes.extend(notes)
    if info.base_model:
        record.notes.append(f"model card names base model {info.base_model}")
    return record
