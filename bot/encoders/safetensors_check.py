"""Validate a .safetensors file before any tensor is read from it.

A hostile or damaged upload should fail here with a one-line reason, not deep
inside the safetensors reader or, worse, by allocating a huge buffer. The checks
mirror what the format requires: an 8-byte little-endian header length, a JSON
header, and tensors whose byte ranges tile the data section exactly.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from bot.errors import CorruptCheckpointError, NothingScannableError

MAX_HEADER_BYTES = 25_000_000

# Bits per element; the sub-byte float types pack several elements per byte.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # offsets into the data section, which begins after the header
    end: int


@dataclass(frozen=True)
class SafetensorsSummary:
    path: Path
    file_bytes: int
    header_bytes: int
    tensors: tuple[TensorEntry, ...]
    metadata: dict[str, str] | None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {t.name: t.shape for t in self.tensors}


def check_safetensors(path: Path, *, max_bytes: int | None = None) -> SafetensorsSummary:
    """Parse and validate the header of `path` without reading tensor data.

    Raises CorruptCheckpointError for any structural problem and
    NothingScannableError when the file is larger than `max_bytes`.
    """
    path = Path(path)
    file_bytes = path.stat().st_size
    if max_bytes is not None and file_bytes > max_bytes:
        raise NothingScannableError(
            f"{path.name} is {file_bytes:,} bytes, over the size cap of {max_bytes:,} bytes; "
            "raise the cap to scan it")
    if file_bytes < 8:
        raise CorruptCheckpointError(
            f"{path.name} is truncated: {file_bytes} bytes, too short for the 8-byte safetensors header length")
    with path.open("rb") as handle:
        (header_bytes,) = struct.unpack("<Q", handle.read(8))
        if header_bytes > MAX_HEADER_BYTES:
            raise CorruptCheckpointError(
                f"{path.name} declares a {header_bytes:,}-byte safetensors header, over the "
                f"{MAX_HEADER_BYTES:,}-byte limit; the file is corrupt or not safetensors")
        if 8 + header_bytes > file_bytes:
            raise CorruptCheckpointError(
                f"{path.name} is truncated: the header needs {header_bytes:,} bytes but only "
                f"{file_bytes - 8:,} follow the length field")
        raw_header = handle.read(header_bytes)
    header = _parse_header(path, raw_header)
    metadata = _parse_metadata(path, header.pop("__metadata__", None))
    tensors = tuple(_parse_entry(path, name, entry) for name, entry in header.items())
    _check_tiling(path, tensors, data_bytes=file_bytes - 8 - header_bytes)
    return SafetensorsSummary(path=path, file_bytes=file_bytes, header_bytes=header_bytes,
                              tensors=tensors, metadata=metadata)


def _unique_keys(path: Path, pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are all different: with a tensor named twice, this check (where the last entry
    wins) and the safetensors reader could disagree about which bytes the tensor is."""
    header: dict = {}
    for key, value in pairs:
        if key in header:
            raise CorruptCheckpointError(f"{path.name}: the safetensors header names {key!r} twice")
        header[key] = value
    return header


def _parse_header(path: Path, raw: bytes) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=lambda pairs: _unique_keys(path, pairs))
    except ValueError as exc:  # bad UTF-8, bad JSON, a number past the int parser's digit limit
        raise CorruptCheckpointError(f"{path.name} has an unreadable safetensors header (not JSON: {exc})") from None
    except RecursionError:  # json's parser recurses once per nested array or object
        raise CorruptCheckpointError(f"{path.name} has a safetensors header nested too deep to be one") from None
    if not isinstance(header, dict):
        raise CorruptCheckpointError(f"{path.name} has a safetensors header that is not a JSON object")
    if not raw.startswith(b"{"):  # the format: the header begins with "{" (it may be padded after it, not before)
        raise CorruptCheckpointError(f"{path.name} has a safetensors header that does not start with '{{'")
    return header


def _parse_metadata(path: Path, metadata: object) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CorruptCheckpointError(f"{path.name} has a __metadata__ entry that is not a string-to-string map")
    return dict(metadata)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_entry(path: Path, name: str, entry: object) -> TensorEntry:
    where = f"{path.name}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise CorruptCheckpointError(f"{where} has a header entry that is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise CorruptCheckpointError(f"{where} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise CorruptCheckpointError(f"{where} has an invalid shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise CorruptCheckpointError(f"{where} has invalid data_offsets {offsets!r}")
    start, end = offsets
    if end < start:
        raise CorruptCheckpointError(f"{where} has data_offsets [{start}, {end}] that end before they start")
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - start:
        raise CorruptCheckpointError(
            f"{where} is {dtype}{shape}, which needs {bits / 8:g} bytes, but its data_offsets "
            f"[{start}, {end}] span {end - start} bytes")
    return TensorEntry(name=name, dtype=dtype, shape=tuple(shape), start=start, end=end)


def _check_tiling(path: Path, tensors: tuple[TensorEntry, ...], *, data_bytes: int) -> None:
    """Tensors must cover the data section back to back, as the format requires."""
    position = 0
    for tensor in sorted(tensors, key=lambda t: (t.start, t.end)):
        if tensor.start != position:
            problem = "overlaps the previous tensor" if tensor.start < position else "leaves a gap before it"
            raise CorruptCheckpointError(
                f"{path.name}: tensor {tensor.name!r} starts at byte {tensor.start} of the data section and "
                f"{problem} (expected {position}); bad data_offsets")
        position = tensor.end
    if position > data_bytes:
        raise CorruptCheckpointError(
            f"{path.name} is truncated: its tensors need {position:,} bytes of data but the file holds "
            f"{data_bytes:,}; download it again")
    if position < data_bytes:
        raise CorruptCheckpointError(
            f"{path.name} has {data_bytes - position:,} bytes after the last tensor that no tensor covers")
