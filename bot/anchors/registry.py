"""The registry of trusted bases: registry.json (shipped, reviewed like code) plus the operator's own file.

Each entry names a repo (and a subfolder for diffusers text encoders), its family and architecture
fingerprint, and the commit it is pinned to when that is known. An entry without a sha is pinned on first use
(the store keeps the pin) and a later change of the repo is refused. Operators add entries with
`clip-audit anchors add`, which writes the file the `anchors_file` setting names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.anchors.fingerprint import Fingerprint
from bot.errors import ConfigError
from bot.fileio import atomic_write_text
from bot.formats import FAMILIES
from bot.hub.ids import is_commit_sha, is_safe_repo_id

BUILT_IN_FILE = Path(__file__).with_name("registry.json")
REGISTRY_VERSION = 1
_SUBFOLDER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class AnchorEntry:
    repo_id: str
    subfolder: str | None       # diffusers: "text_encoder", "text_encoder_2"; None: the repo root
    fingerprint: Fingerprint
    heads: int | None
    sha: str | None             # the reviewed commit; None: pinned on first use
    note: str
    source: str                 # "built-in" | the operator file's path

    @property
    def id(self) -> str:
        """What reports and pins call the entry: `owner/name` or `owner/name:subfolder`."""
        return f"{self.repo_id}:{self.subfolder}" if self.subfolder else self.repo_id

    def to_json(self) -> dict[str, Any]:
        fp = self.fingerprint
        data: dict[str, Any] = {"repo_id": self.repo_id}
        if self.subfolder:
            data["subfolder"] = self.subfolder
        data.update(family=fp.family, fingerprint={"hidden": fp.hidden, "layers": fp.layers, "vocab": fp.vocab,
                                                   "positions": fp.positions},
                    heads=self.heads, sha=self.sha, note=self.note)  # fmt: skip
        return data


@dataclass(frozen=True)
class Registry:
    entries: tuple[AnchorEntry, ...]

    def candidates(self, fingerprint: Fingerprint) -> list[AnchorEntry]:
        """Entries whose tower has exactly this shape: the only bases the suspect can be a fine-tune of."""
        return [entry for entry in self.entries if entry.fingerprint == fingerprint]

    def get(self, anchor_id: str) -> AnchorEntry | None:
        """The entry with exactly this id (`owner/name` or `owner/name:subfolder`)."""
        return next((entry for entry in self.entries if entry.id == anchor_id), None)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(entry.id for entry in self.entries)


def _entry(raw: Any, *, source: str, where: str) -> AnchorEntry:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: an entry must be an object")
    repo_id, family, subfolder = raw.get("repo_id"), raw.get("family"), raw.get("subfolder")
    fp, sha, heads = raw.get("fingerprint"), raw.get("sha"), raw.get("heads")
    if not isinstance(repo_id, str) or not is_safe_repo_id(repo_id):
        raise ConfigError(f"{where}: repo_id {repo_id!r} is not a Hub repo id")
    if family not in FAMILIES:
        raise ConfigError(f"{where}: family {family!r} is not one of {', '.join(FAMILIES)}")
    if subfolder is not None and (not isinstance(subfolder, str) or not subfolder
                                  or not set(subfolder) <= _SUBFOLDER_CHARS):  # fmt: skip
        raise ConfigError(f"{where}: subfolder {subfolder!r} is not a plain folder name")
    if sha is not None and (not isinstance(sha, str) or not is_commit_sha(sha)):
        raise ConfigError(f"{where}: sha {sha!r} is not a full 40-hex commit sha")
    if heads is not None and (not isinstance(heads, int) or isinstance(heads, bool) or heads < 1):
        raise ConfigError(f"{where}: heads must be a positive integer")
    dims = {}
    for name in ("hidden", "layers", "vocab", "positions"):
        value = fp.get(name) if isinstance(fp, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: fingerprint.{name} must be a positive integer")
        dims[name] = value
    note = raw.get("note") or ""
    if not isinstance(note, str):
        raise ConfigError(f"{where}: note must be a string")
    return AnchorEntry(repo_id=repo_id, subfolder=subfolder, fingerprint=Fingerprint(family=family, **dims),
                       heads=heads, sha=sha, note=note[:200], source=source)  # fmt: skip


def read_entries(path: Path, *, source: str) -> list[AnchorEntry]:
    """The entries of one registry file.

    Raises:
        ConfigError: unreadable, not JSON, another version, or an invalid entry.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"cannot read the anchor registry {path}: {exc}") from None
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list) or data.get("version") != REGISTRY_VERSION:
        raise ConfigError(f"{path}: not a version-{REGISTRY_VERSION} anchor registry "
                          f'({{"version": {REGISTRY_VERSION}, "entries": [...]}})')
    return [_entry(raw, source=source, where=f"{path} entry {i + 1}") for i, raw in enumerate(entries)]


def load_registry(operator_file: Path | None = None) -> Registry:
    """The built-in entries, then the operator's (an operator entry with the same id replaces a built-in one)."""
    entries = {entry.id: entry for entry in read_entries(BUILT_IN_FILE, source="built-in")}
    if operator_file is not None and Path(operator_file).is_file():
        for entry in read_entries(operator_file, source=str(operator_file)):
            entries[entry.id] = entry
    return Registry(tuple(entries.values()))


def add_entry(operator_file: Path, entry: AnchorEntry) -> None:
    """Adds (or replaces) `entry` in the operator's registry file, creating it when needed."""
    existing = read_entries(operator_file, source=str(operator_file)) if Path(operator_file).is_file() else []
    kept = [e for e in existing if e.id != entry.id] + [entry]
    document = {"version": REGISTRY_VERSION, "entries": [e.to_json() for e in kept]}
    atomic_write_text(Path(operator_file), json.dumps(document, indent=1) + "\n")
